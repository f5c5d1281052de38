"""``launch.bench --parts=peer``: mtlx's train steps against the same steps in plain PyTorch.

For the MLP (784-256-256) and the LeNet trunk (conv 10@5, conv 20@5, FC 50) with T linear
10-way heads, hard sharing, Adam, cross-entropy: equal weighting (one backward of the summed
loss), and MGDA (Sener & Koltun, 2018) and PCGrad (Yu et al., 2020) the way a PyTorch
multi-task library pays for them: a loop of T backward passes (``torch.autograd.grad`` of each
task's loss, the graph retained), the shared gradients flattened into a (T, P) matrix, then the
combination (MGDA: min-norm weights on the simplex by Frank-Wolfe on the T x T Gram, Sener &
Koltun's Algorithm 2; PCGrad: each task's gradient projected off every conflicting other, in a
random order, then summed) and the Adam update. The JAX steps are mtlx's own
(``make_train_step``). Each framework runs in processes of its own (JAX never runs where PyTorch
has, nor the other way round), whole processes alternated, several per side, each timing its
steps in interleaved rounds with a 2048 x 2048 float32 matmul of its framework; a row gives the
median ms/step of each side over its processes and their ratio (jax / torch: below 1, mtlx is
faster). Timing both in one process, as this part did before, favoured PyTorch: its LeNet step
took 13-15 ms right after XLA's steps, 21-28 ms in a process of its own.

PyTorch is an optional extra, never a dependency of mtlx or its tests:
``pip install -e ".[bench]"`` (on a CPU machine install the CPU wheel first,
``pip install torch --index-url https://download.pytorch.org/whl/cpu``). Without it the part is
skipped with a message saying so.

``--peer_jax_python=PY`` adds mtlx's steps under another interpreter as a third side, e.g. the
newest jax, which needs Python >= 3.12 (this project's CI runs 3.11, where jax 0.10.2 is the newest)::

  python3.12 -m venv /tmp/venv312 && /tmp/venv312/bin/pip install -e . "jax>=0.12"
  python -m launch.bench --parts=peer --peer_jax_python=/tmp/venv312/bin/python
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np

from mtlx.architectures import build_model
from mtlx.weighting import get_weighting

WEIGHTINGS = ("equal", "mgda", "pcgrad")
SKIP_MESSAGE = ("peer: skipped: PyTorch is not installed. It is an optional extra: "
                "pip install -e '.[bench]' (CPU wheel: pip install torch --index-url "
                "https://download.pytorch.org/whl/cpu)")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository (launch/..)
FW_ITERS = 20  # Frank-Wolfe iterations of the min-norm solver (a T x T problem: negligible either way)


def import_torch():
    """torch, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_model(torch, backbone: str, num_tasks: int):
    """The hard-sharing model: the trunk (launch.bench's ``MLP`` or ``CNN`` layers) and T linear heads."""
    nn = torch.nn
    if backbone == "mlp":
        trunk = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        width = 256
    else:  # conv -> ReLU -> 2x2 max-pool, twice (as mtlx's Conv block), then FC 50
        trunk = nn.Sequential(nn.Conv2d(1, 10, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(10, 20, 5), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(320, 50), nn.ReLU())
        width = 50
    return nn.ModuleDict({"trunk": trunk, "heads": nn.ModuleList([nn.Linear(width, 10) for _ in range(num_tasks)])})


def min_norm_weights(torch, gram):
    """argmin_{w in simplex} w^T G w by Frank-Wolfe (Sener & Koltun, 2018, Algorithm 2)."""
    T = gram.shape[0]
    w = torch.full((T,), 1.0 / T, dtype=gram.dtype)
    for _ in range(FW_ITERS):
        gw = gram @ w
        t = int(torch.argmin(gw))
        # line search between w and the vertex e_t: min_g |(1-g) v + g u|^2 with v = Jw, u = J e_t
        vv, uu, uv = w @ gw, gram[t, t], gw[t]
        denom = vv + uu - 2 * uv
        gamma = float(torch.clamp((vv - uv) / denom, 0.0, 1.0)) if float(denom) > 1e-12 else 0.0
        w = (1 - gamma) * w
        w[t] += gamma
    return w


def pcgrad_combine(torch, rows, gen):
    """PCGrad (Yu et al., 2020, Algorithm 1): each g_i loses its component along every g_j
    (random order) it conflicts with (g_i . g_j < 0); the projected rows are summed."""
    out = rows.clone()
    T = rows.shape[0]
    for i in range(T):
        for j in gen.permutation(T):
            if j == i:
                continue
            dot = out[i] @ rows[j]
            if dot < 0:
                out[i] -= dot / (rows[j] @ rows[j]) * rows[j]
    return out.sum(0)


def torch_step(torch, model, x, ys, weighting: str):
    """A zero-argument callable: one train step (forward, backward(s), combination, Adam)."""
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    shared = list(model["trunk"].parameters())
    gen = np.random.default_rng(0)
    ce = torch.nn.functional.cross_entropy
    for p in model.parameters():
        p.grad = torch.zeros_like(p)

    def step():
        opt.zero_grad(set_to_none=False)
        z = model["trunk"](x)
        losses = [ce(h(z), y) for h, y in zip(model["heads"], ys)]
        if weighting == "equal":
            sum(losses).backward()
        else:
            rows = []
            for t, (loss, head) in enumerate(zip(losses, model["heads"])):
                head_params = list(head.parameters())
                grads = torch.autograd.grad(loss, shared + head_params, retain_graph=t < len(losses) - 1)
                rows.append(torch.cat([g.reshape(-1) for g in grads[:len(shared)]]))
                for p, g in zip(head_params, grads[len(shared):]):
                    p.grad.copy_(g)
            rows = torch.stack(rows)
            g = (min_norm_weights(torch, rows @ rows.T) @ rows if weighting == "mgda"
                 else pcgrad_combine(torch, rows, gen))
            torch.nn.utils.vector_to_parameters(g, [p.grad for p in shared])
        opt.step()

    return step


def torch_matmul_call(torch, n=2048):
    a = torch.randn(n, n)
    return (lambda: a @ a), 2 * n**3


def _inputs(B, backbone, T, batch_size):
    blocks, shape, kind = (B.MLP, (784,), "dense") if backbone == "mlp" else (B.CNN, (28, 28, 1), "image")
    return blocks, B.task_set(T, shape, kind, batch_size)   # the same random batch in every process


def side_calls(B, side, backbone, T, weightings, batch_size, matmul_n):
    """One framework's zero-argument calls for one (backbone, T): each weighting's step and an
    n x n matmul; with the JAX steps' FLOP counts (None for PyTorch)."""
    blocks, ts = _inputs(B, backbone, T, batch_size)
    if side == "jax":
        batch = jax.device_put(ts.splits["train"])
        model = build_model("hard", ts, blocks)
        calls, flops = {}, {}
        for w in weightings:
            compiled, state = B.compiled_step(model, ts, get_weighting(w), batch)
            flops[w] = B.cost(compiled)[0]
            calls[w] = B.threaded(compiled, state, batch)
        calls["matmul"], _ = B.matmul_call(matmul_n)
        return calls, flops
    torch = import_torch()
    tmodel = torch_model(torch, backbone, T)
    x = torch.from_numpy(np.asarray(ts.splits["train"]["inputs"]))
    x = x.permute(0, 3, 1, 2).contiguous() if backbone == "cnn" else x  # NHWC -> NCHW
    ys = [torch.from_numpy(np.asarray(ts.splits["train"]["targets"][t.name]).astype(np.int64)) for t in ts.tasks]
    calls = {w: torch_step(torch, tmodel, x, ys, w) for w in weightings}
    calls["matmul"], _ = torch_matmul_call(torch, matmul_n)
    return calls, None


def child(spec: dict) -> dict:
    """In a process of its own: one side's median seconds per call (and FLOPs), as JSON-able."""
    from launch import bench as B

    calls, flops = side_calls(B, spec["side"], spec["backbone"], spec["tasks"], spec["weightings"],
                              spec["batch_size"], spec["matmul_n"])
    return {"secs": B.time_all(calls, spec["iters"], spec["inner_rounds"]), "flops": flops}


def _in_process(spec: dict) -> dict:
    """:func:`child` in a fresh interpreter (JAX and PyTorch never share a process: PyTorch's
    steps measured 1.7x faster in a process where XLA had run, 13-15 ms against 21-28 ms alone for
    the LeNet at T = 2, so timing both in one process does not compare what a user gets).
    ``spec["python"]``: the interpreter (default this one; ``ALT``'s is another jax's)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([spec.get("python") or sys.executable, "-m", "launch.bench_peer", json.dumps(spec)],
                         capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


ALT = "jax_alt"  # the JAX side once more, under another interpreter (--peer_jax_python: e.g. a newer jax)


def alt_jax_version(python: str) -> str:
    """The jax version importable by the interpreter ``python``."""
    out = subprocess.run([python, "-c", "import jax; print(jax.__version__)"], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def _side_by_side(backbone, T, weightings, batch_size, iters, rounds, matmul_n, alt_python="") -> tuple:
    """Medians over ``rounds`` of whole processes alternated (jax, torch[, jax_alt] / the reverse, ...):
    ({side: {entry: median seconds}}, the JAX steps' FLOPs)."""
    sides = ("jax", "torch") + ((ALT,) if alt_python else ())
    samples = {side: [] for side in sides}
    flops = None
    for r in range(rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            spec = {"side": "jax" if side == ALT else side, "backbone": backbone, "tasks": T,
                    "weightings": list(weightings), "batch_size": batch_size, "iters": iters, "inner_rounds": 2,
                    "matmul_n": matmul_n, "python": alt_python if side == ALT else ""}
            res = _in_process(spec)
            samples[side].append(res["secs"])
            flops = flops or (res["flops"] if side == "jax" else None)
    return {side: {k: float(np.median([s[k] for s in v])) for k in v[0]} for side, v in samples.items()}, flops


def run_peer(B, backbones=("mlp", "cnn"), tasks=(2, 10), weightings=WEIGHTINGS, batch_size=256, iters=4, rounds=5,
             matmul_n=2048, alt_python=""):
    """The peer comparison as {'rows': [...], ...}, or None (with ``SKIP_MESSAGE``) without torch.
    ``B`` is the launch.bench module (passed in: under ``python -m`` it is ``__main__``). Each side
    runs in processes of its own, ``rounds`` of them alternated; each process times ``iters`` calls
    per entry in 2 interleaved rounds; a row's times are the medians over the processes. ``alt_python``:
    an interpreter with another jax, whose mtlx steps are timed as a third side (``alt_*`` fields)."""
    torch = import_torch()
    if torch is None:
        print(SKIP_MESSAGE, flush=True)
        return None
    rows = []
    for backbone in backbones:
        for T in tasks:
            med, flops = _side_by_side(backbone, T, weightings, batch_size, iters, rounds, matmul_n, alt_python)
            rows += _rows(backbone, T, weightings, med, flops, matmul_n)
    out = {"batch_size": batch_size, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "jax": jax.__version__, "processes_per_side": rounds, "load_average": list(os.getloadavg()),
           "cpus": os.cpu_count(), "rows": rows}
    return {**out, "alt_jax": alt_jax_version(alt_python), "alt_python": alt_python} if alt_python else out


def _rows(backbone, T, weightings, med, flops, matmul_n) -> list:
    mm = 2 * matmul_n**3
    jx, tc, alt = med["jax"], med["torch"], med.get(ALT)
    jmm, tmm = mm / jx["matmul"] / 1e9, mm / tc["matmul"] / 1e9
    rows = []
    for w in weightings:
        j, t = jx[w], tc[w]
        row = {"backbone": backbone, "tasks": T, "weighting": w, "jax_ms": 1e3 * j, "torch_ms": 1e3 * t,
               "jax_over_torch": j / t, "jax_fraction_of_matmul": flops[w] / j / 1e9 / jmm,
               "jax_matmul_gflop_per_s": jmm, "torch_matmul_gflop_per_s": tmm}
        if alt is not None:
            row.update({"alt_ms": 1e3 * alt[w], "alt_over_torch": alt[w] / t})
        rows.append(row)
        print(f"{backbone:4s} T={T:2d} {w:7s} jax {1e3 * j:8.2f} ms  torch {1e3 * t:8.2f} ms  jax/torch {j / t:5.2f}"
              + (f"  alt jax {1e3 * alt[w]:8.2f} ms ({alt[w] / t:5.2f})" if alt is not None else "")
              + f"  (matmul jax {jmm:.0f}, torch {tmm:.0f} GFLOP/s)", flush=True)
    return rows


def bench_peer(B):
    """The ``peer`` part of ``launch.bench`` (module ``B``; its flags --batch_size, --iters)."""
    return run_peer(B, batch_size=B.FLAGS.batch_size, iters=B.FLAGS.iters, alt_python=B.FLAGS.peer_jax_python)


def summary_lines(res) -> list:
    """results/bench/README.md's peer table."""
    lines = [f"PyTorch {res['torch']} ({res['torch_threads']} threads), batch {res['batch_size']}; "
             "mtlx / PyTorch < 1: mtlx's step is faster. MGDA / PCGrad in PyTorch: a loop of T backward passes. "
             "PyTorch is an optional extra (`pip install -e \".[bench]\"`, CPU wheel); see launch/bench_peer.py.",
             f"Load average (1, 5, 15 min) at the end: {res.get('load_average', '?')} on {res.get('cpus', '?')} cores: "
             "PyTorch's thread pool slows down far more than XLA's when the cores are oversubscribed, so read "
             "the ratios only from a run on an otherwise idle machine."]
    alt = res.get("alt_jax")
    if alt:
        lines.append(f"The mtlx steps also ran under jax {alt} ({res['alt_python']}, `--peer_jax_python`), as a "
                     f"third side of the same alternation; the other mtlx columns are jax {res.get('jax', '?')}.")
    extra = (f" mtlx ms, jax {alt} | mtlx (jax {alt}) / PyTorch |", "---|---|") if alt else ("", "")
    lines += ["", "| backbone | T | weighting | mtlx ms | PyTorch ms | mtlx / PyTorch | mtlx % of matmul | "
              "matmul GFLOP/s (jax, torch) |" + extra[0], "|---|---|---|---|---|---|---|---|" + extra[1]]
    for r in res["rows"]:
        lines.append(f"| {r['backbone']} | {r['tasks']} | {r['weighting']} | {r['jax_ms']:.2f} | {r['torch_ms']:.2f} | "
                     f"{r['jax_over_torch']:.2f} | {100 * r['jax_fraction_of_matmul']:.0f}% | "
                     f"{r['jax_matmul_gflop_per_s']:.0f}, {r['torch_matmul_gflop_per_s']:.0f} |"
                     + (f" {r['alt_ms']:.2f} | {r['alt_over_torch']:.2f} |" if alt else ""))
    return lines


if __name__ == "__main__":  # a child process of _in_process: one JSON spec in, one JSON line out
    print(json.dumps(child(json.loads(sys.argv[1]))), flush=True)
