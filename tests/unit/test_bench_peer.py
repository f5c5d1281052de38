"""launch.bench's peer part: it runs on a tiny shape when PyTorch is installed and is skipped with
a clear message (nothing written) when it is not; its PyTorch combinations are the definitions."""

import numpy as np
import pytest

from launch import bench, bench_peer


def test_peer_part_is_skipped_with_a_message_without_torch(monkeypatch, capsys):
    monkeypatch.setattr(bench_peer, "import_torch", lambda: None)
    assert bench_peer.run_peer(bench, batch_size=4, iters=1, rounds=1) is None
    out = capsys.readouterr().out
    assert "skipped" in out and "PyTorch is not installed" in out and ".[bench]" in out


def test_peer_part_runs_on_a_tiny_shape(monkeypatch):
    """The table from each side's processes (here one real process for PyTorch's side, JAX's in this
    one: the subprocess plumbing is tested once without paying for two fresh JAX starts)."""
    pytest.importorskip("torch")
    real = bench_peer._in_process
    monkeypatch.setattr(bench_peer, "_in_process", lambda spec: real(spec) if spec["side"] == "torch"
                        else bench_peer.child(spec))
    res = bench_peer.run_peer(bench, backbones=("mlp",), tasks=(2,), weightings=("equal",), batch_size=4, iters=1,
                              rounds=1, matmul_n=64)
    rows = res["rows"]
    assert [(r["backbone"], r["tasks"], r["weighting"]) for r in rows] == [("mlp", 2, "equal")]
    for r in rows:
        assert r["jax_ms"] > 0 and r["torch_ms"] > 0
        assert r["jax_over_torch"] == pytest.approx(r["jax_ms"] / r["torch_ms"])
    table = bench_peer.summary_lines(res)
    assert len([line for line in table if line.startswith("| mlp") or line.startswith("| cnn")]) == len(rows)


def test_torch_min_norm_weights_and_pcgrad_are_the_definitions():
    """MGDA on two gradients: the min-norm point of their segment, w1 = clip((g2-g1).g2 / |g1-g2|^2)
    (Sener & Koltun, 2018, Algorithm 1); PCGrad on two conflicting ones: each projected onto the
    other's normal plane, then summed (Yu et al., 2020)."""
    torch = pytest.importorskip("torch")
    g = torch.tensor([[1.0, 0.0], [-0.5, 1.0]], dtype=torch.float64)
    w = bench_peer.min_norm_weights(torch, g @ g.T)
    w1 = float(((g[1] - g[0]) @ g[1]) / ((g[0] - g[1]) @ (g[0] - g[1])))
    np.testing.assert_allclose(w.numpy(), [w1, 1 - w1], atol=1e-6)
    g1, g2 = g[0].numpy(), g[1].numpy()
    want = (g1 - (g1 @ g2) / (g2 @ g2) * g2) + (g2 - (g2 @ g1) / (g1 @ g1) * g1)
    got = bench_peer.pcgrad_combine(torch, g, np.random.default_rng(0))
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


@pytest.mark.parametrize("backbone,weighting", [("mlp", "mgda"), ("cnn", "pcgrad"), ("cnn", "equal")])
def test_torch_steps_update_every_parameter(backbone, weighting):
    """The PyTorch steps (the loop of T backwards for MGDA/PCGrad): every shared and head
    parameter gets a gradient and moves."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = bench_peer.torch_model(torch, backbone, 3)
    before = [p.detach().clone() for p in model.parameters()]
    x = torch.rand(4, 784) if backbone == "mlp" else torch.rand(4, 1, 28, 28)
    ys = [torch.randint(0, 10, (4,)) for _ in range(3)]
    bench_peer.torch_step(torch, model, x, ys, weighting)()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_another_jax_interpreter_is_a_third_side_of_the_alternation(monkeypatch):
    """--peer_jax_python: the JAX steps once more under that interpreter, alternated with the other
    two sides (order reversed every round), its medians and ratio in two more table columns."""
    seen = []

    def fake(spec):
        seen.append((spec["side"], spec["python"]))
        secs = 0.005 if spec["python"] else {"jax": 0.010, "torch": 0.020}[spec["side"]]
        return {"secs": {"equal": secs, "matmul": 0.001}, "flops": {"equal": 1e6} if spec["side"] == "jax" else None}

    monkeypatch.setattr(bench_peer, "_in_process", fake)
    med, flops = bench_peer._side_by_side("mlp", 2, ("equal",), 4, 1, 2, 64, alt_python="/alt/python")
    alt = ("jax", "/alt/python")
    assert seen == [("jax", ""), ("torch", ""), alt, alt, ("torch", ""), ("jax", "")]
    (row,) = bench_peer._rows("mlp", 2, ("equal",), med, flops, 64)
    assert row["jax_over_torch"] == pytest.approx(0.5) and row["alt_ms"] == pytest.approx(5.0)
    assert row["alt_over_torch"] == pytest.approx(0.25)
    res = {"batch_size": 4, "torch": "2.x", "torch_threads": 2, "jax": "0.10.2", "rows": [row], "alt_jax": "0.12",
           "alt_python": "/alt/python"}
    table = bench_peer.summary_lines(res)
    header = next(line for line in table if line.startswith("| backbone"))
    body = next(line for line in table if line.startswith("| mlp"))
    assert header.count("|") == body.count("|") == 11 and "jax 0.12" in header
    assert body.endswith(" 5.00 | 0.25 |")
    plain = bench_peer.summary_lines({**res, "alt_jax": None})
    assert next(line for line in plain if line.startswith("| mlp")).count("|") == 9
