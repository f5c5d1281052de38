"""Equivalences between architectures in their limits, and the layers' exactness."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import BACKBONES, MLP, batch_of, dense_set, image_set, token_set
from mtlx.architectures import ARCHITECTURES, build_model, shared_mask
from mtlx.architectures.soft import trace_penalty
from mtlx.layers import BiLSTM, Conv, Embed, im2col_conv, max_pool, xla_conv
from mtlx.tasks import Task, TaskSet, task_losses

KEY = jax.random.PRNGKey(0)


def init(model, x, key=KEY):
    return jax.jit(model.init)(key, x)["params"]


def outputs_and_grads(model, params, ts, batch):
    def loss(p):
        preds, aux = model.apply({"params": p}, batch["inputs"])
        return jnp.sum(task_losses(ts.tasks, preds, batch)), preds

    (l, preds), g = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)  # jit: op-by-op is slow on CPU
    return preds, g


def assert_trees_close(a, b, atol=1e-6):
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5), a, b)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_cross_stitch_identity_equals_single_task(backbone):
    blocks, make = BACKBONES[backbone]
    ts = make()
    batch = batch_of(ts)
    st = build_model("single_task", ts, blocks, head_hidden=(5,))
    cs = build_model("cross_stitch", ts, blocks, head_hidden=(5,), units="channel")
    p_st = init(st, batch["inputs"])
    p_cs = dict(init(cs, batch["inputs"], jax.random.PRNGKey(1)))
    mix = [k for k in p_cs if k.startswith("mix_")]
    assert len(mix) == len(blocks) - 1
    for k in mix:  # identity mixing: alpha[t, s, c] = [t == s]
        p_cs[k] = jnp.broadcast_to(jnp.eye(ts.num_tasks)[..., None], p_cs[k].shape)
    p_cs.update(p_st)
    preds_st, g_st = outputs_and_grads(st, p_st, ts, batch)
    preds_cs, g_cs = outputs_and_grads(cs, p_cs, ts, batch)
    assert_trees_close(preds_st, preds_cs)
    assert_trees_close(g_st, {k: g_cs[k] for k in g_st})
    # ...and the stitch units do get a gradient (they are not dead parameters)
    assert any(float(jnp.abs(g_cs[k]).sum()) > 0 for k in mix)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_hard_split_zero_equals_single_task(backbone):
    blocks, make = BACKBONES[backbone]
    ts = make()
    batch = batch_of(ts)
    st = build_model("single_task", ts, blocks)
    hard = build_model("hard", ts, blocks, split=0)
    p = init(st, batch["inputs"])
    assert jax.tree_util.tree_structure(p) == jax.tree_util.tree_structure(init(hard, batch["inputs"]))
    a, ga = outputs_and_grads(st, p, ts, batch)
    b, gb = outputs_and_grads(hard, p, ts, batch)
    assert_trees_close(a, b)
    assert_trees_close(ga, gb)


def equal_width_set():
    """dense_set's inputs with three 3-way classification tasks (one output width)."""
    base = dense_set()
    split = dict(base.splits["train"])
    rng = np.random.default_rng(1)
    names = ("a", "b", "c")
    split["targets"] = {k: rng.integers(0, 3, len(split["inputs"])).astype(np.int32) for k in names}
    split["weights"] = {k: np.ones(len(split["inputs"]), np.float32) for k in names}
    return TaskSet("tiny_equal", tuple(Task(k, "classification", 3) for k in names), base.input_shape, "dense",
                   splits={"train": split})


@pytest.mark.parametrize("make_set", [dense_set, equal_width_set])
def test_hard_full_split_shares_trunk_and_matches_manual_forward(make_set):
    """Task t's prediction is head t's output (sliced to its width), for mixed and equal widths."""
    ts = make_set()
    batch = batch_of(ts)
    hard = build_model("hard", ts, MLP)  # share every block
    p = init(hard, batch["inputs"])
    h = batch["inputs"]
    for i, spec in enumerate(MLP):
        h = spec.apply(p[f"shared_{i}"], h)
    w = p["task_head_out"]
    preds = hard.apply({"params": p}, batch["inputs"])[0]
    for t, task in enumerate(ts.tasks):
        manual = h @ w["kernel"][t] + w["bias"][t]
        np.testing.assert_allclose(preds[task.name], manual[:, : task.num_outputs], atol=1e-5)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_sluice_one_subspace_last_layer_equals_cross_stitch(backbone):
    blocks, make = BACKBONES[backbone]
    ts = make()
    batch = batch_of(ts)
    L = len(blocks)
    cs = build_model("cross_stitch", ts, blocks, stitch_after=tuple(range(L)))
    sl = build_model("sluice", ts, blocks, subspaces=1)
    p_cs = dict(init(cs, batch["inputs"]))
    rng = np.random.default_rng(0)
    for i in range(L):  # random (not identity) mixing, so the test sees the mixing
        p_cs[f"mix_stitch_{i}"] = jnp.asarray(rng.uniform(0, 1, (ts.num_tasks, ts.num_tasks)), jnp.float32)
    p_sl = dict(init(sl, batch["inputs"]))
    for k in p_cs:
        p_sl[k.replace("mix_stitch", "mix_alpha")] = p_cs[k]
    n_eligible = p_sl["mix_beta"].shape[1]
    p_sl["mix_beta"] = jnp.zeros_like(p_sl["mix_beta"]).at[:, n_eligible - 1].set(1.0)
    a, ga = outputs_and_grads(cs, p_cs, ts, batch)
    b, gb = outputs_and_grads(sl, p_sl, ts, batch)
    assert_trees_close(a, b, atol=1e-5)
    assert_trees_close(ga, {k.replace("mix_alpha", "mix_stitch"): v for k, v in gb.items() if k != "mix_beta"}, atol=1e-5)


def test_sluice_orthogonality_penalty_matches_definition():
    """lambda * sum_t ||H_{t,1}^T H_{t,2} / N||_F^2 over the alpha-mixed subspaces of one block."""
    ts = dense_set()
    batch = batch_of(ts)
    blocks = MLP[:1]  # 16 units -> 2 subspaces of 8
    sl = build_model("sluice", ts, blocks, subspaces=2, orthogonality=0.5)
    p = init(sl, batch["inputs"])
    _, aux = sl.apply({"params": p}, batch["inputs"])
    T, n = ts.num_tasks, batch["inputs"].shape[0]
    cols = np.stack([blocks[0].apply(jax.tree_util.tree_map(lambda a, t=t: a[t], p["task_column_0"]), batch["inputs"])
                     for t in range(T)])  # (T, N, 16)
    units = cols.reshape(T, n, 2, 8).transpose(0, 2, 1, 3).reshape(T * 2, n, 8)  # rows (t, g)
    mixed = np.einsum("ab,bnd->and", np.asarray(p["mix_alpha_0"]), units).reshape(T, 2, n, 8)
    want = 0.5 * sum(np.sum((mixed[t, 0].T @ mixed[t, 1] / n) ** 2) for t in range(T))
    np.testing.assert_allclose(float(aux["orthogonality"]), want, rtol=1e-4)


def test_mmoe_one_expert_equals_shared_bottom():
    ts = dense_set()
    batch = batch_of(ts)
    moe = build_model("mmoe", ts, MLP, head_hidden=(6,), num_experts=1)
    hard = build_model("hard", ts, MLP, head_hidden=(6,))
    p_m = init(moe, batch["inputs"])
    p_h = dict(init(hard, batch["inputs"]))
    for i in range(len(MLP)):
        p_h[f"shared_{i}"] = jax.tree_util.tree_map(lambda a: a[0], p_m[f"expert_{i}"])
    for k in p_m:
        if k.startswith("task_"):
            p_h[k] = p_m[k]
    a = moe.apply({"params": p_m}, batch["inputs"])[0]
    b = hard.apply({"params": p_h}, batch["inputs"])[0]
    assert_trees_close(a, b, atol=1e-5)


def test_mmoe_gates_are_per_task_and_omoe_shares_one():
    """With identical towers for every task, OMoE (one gate) must give every task the same
    prediction, MMoE (a gate per task) different ones, and each task's gate mixture must be
    softmax(W_t x) of its own slice of the gate (Ma et al. 2018, Eq. 6-7)."""
    ts = dense_set()
    x = batch_of(ts)["inputs"]
    outs = {}
    for name in ("mmoe", "omoe"):
        model = build_model(name, ts, MLP[:1], num_experts=3)
        p = dict(init(model, x))
        p["task_head_out"] = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[:1], a.shape), p["task_head_out"])
        preds, _ = model.apply({"params": p}, x)
        outs[name] = [preds[t.name][:, 0] for t in ts.tasks]
        if name == "mmoe":  # the mixture by hand for task 1
            experts = jnp.stack([MLP[0].apply(jax.tree_util.tree_map(lambda a, e=e: a[e], p["expert_0"]), x)
                                 for e in range(3)])
            logits = x @ p["gate"]["kernel"] + p["gate"]["bias"]
            g = jax.nn.softmax(logits.reshape(-1, ts.num_tasks, 3)[:, 1], axis=-1)
            mixed = jnp.einsum("be,ebd->bd", g, experts)
            w = p["task_head_out"]
            np.testing.assert_allclose(preds["bin"], (mixed @ w["kernel"][1] + w["bias"][1])[:, :2], atol=1e-5)
    for a in outs["omoe"][1:]:
        np.testing.assert_allclose(a, outs["omoe"][0], atol=1e-6)
    assert float(jnp.abs(outs["mmoe"][1] - outs["mmoe"][0]).max()) > 1e-4


def test_soft_sharing_penalties():
    ts = dense_set()
    x = batch_of(ts)["inputs"]
    st = build_model("single_task", ts, MLP)
    p = init(st, x)
    l2 = build_model("soft_l2", ts, MLP, strength=1.0)
    tr = build_model("soft_trace", ts, MLP, strength=1.0)
    preds_l2, aux_l2 = l2.apply({"params": p}, x)
    _, aux_tr = tr.apply({"params": p}, x)
    assert_trees_close(preds_l2, st.apply({"params": p}, x)[0])
    want_l2 = sum(float(np.sum((np.asarray(p[f"task_column_{i}"]["kernel"]) - np.asarray(p[f"task_column_{i}"]["kernel"]).mean(0)) ** 2))
                  for i in range(len(MLP)))
    want_tr = sum(float(np.linalg.svd(np.asarray(p[f"task_column_{i}"]["kernel"]).reshape(3, -1), compute_uv=False).sum())
                  for i in range(len(MLP)))
    np.testing.assert_allclose(float(aux_l2["soft_l2"]), want_l2, rtol=1e-5)
    np.testing.assert_allclose(float(aux_tr["soft_trace"]), want_tr, rtol=1e-4)
    np.testing.assert_allclose(float(trace_penalty(jnp.eye(3)[:, None, :] * jnp.ones((3, 4, 3)))), 3 * 2.0, rtol=1e-5)


def test_shared_mask_per_architecture():
    ts = dense_set()
    x = batch_of(ts)["inputs"]
    expect = {"single_task": set(), "hard": {"shared_0", "shared_1", "shared_2"},
              "cross_stitch": {"task_column_0", "task_column_1", "task_column_2", "mix_stitch_0", "mix_stitch_1"},
              "mmoe": {"expert_0", "expert_1", "expert_2", "gate"}}
    for name, want in expect.items():
        model = build_model(name, ts, MLP)
        mask = shared_mask(model, init(model, x))
        got = {k for k, v in mask.items() if all(jax.tree_util.tree_leaves(v))}
        assert got == want, name


def test_every_architecture_every_backbone_gives_finite_nonzero_gradients():
    for backbone, (blocks, make) in BACKBONES.items():
        ts = make()
        batch = batch_of(ts)
        for name in ARCHITECTURES:
            opts = {"subspaces": 2} if name == "sluice" else {}
            model = build_model(name, ts, blocks, **opts)
            p = init(model, batch["inputs"])
            preds, g = outputs_and_grads(model, p, ts, batch)
            leaves = jax.tree_util.tree_leaves(g)
            assert all(np.all(np.isfinite(l)) for l in leaves), (backbone, name)
            assert sum(float(jnp.abs(l).sum()) for l in leaves) > 0, (backbone, name)
            for t in ts.tasks:  # prediction layout: (B, C) or per token (B, L, C)
                assert preds[t.name].shape[-1] == t.num_outputs


def test_im2col_conv_and_reshape_pool_equal_xla():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 11, 11, 2)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((5, 5, 2, 4)), jnp.float32)
    np.testing.assert_allclose(im2col_conv(x, k), xla_conv(x, k), atol=1e-4)
    y = jnp.asarray(rng.standard_normal((2, 8, 8, 3)), jnp.float32)
    np.testing.assert_allclose(max_pool(y, 2), nn.max_pool(y, (2, 2), (2, 2)))
    c = Conv(4, 5, impl="im2col"), Conv(4, 5, impl="xla")
    w = c[0].init(KEY, (11, 11, 2))
    np.testing.assert_allclose(c[0].apply(w, x), c[1].apply(w, x), atol=1e-4)


def test_bilstm_ignores_padding():
    lstm, emb = BiLSTM(5), Embed(20, 4)
    we, wl = emb.init(KEY, (6,)), lstm.init(jax.random.PRNGKey(1), (6, 4))
    ids = jnp.array([[3, 7, 2, 9, 0, 0]])
    mask = ids > 0
    out = lstm.apply(wl, emb.apply(we, ids), mask)
    short = lstm.apply(wl, emb.apply(we, ids[:, :4]), mask[:, :4])
    np.testing.assert_allclose(out[:, :4], short, atol=1e-6)
    # a reverse pass really runs right to left: changing the last token changes the first output
    out2 = lstm.apply(wl, emb.apply(we, ids.at[0, 3].set(5)), mask)
    assert float(jnp.abs(out2[0, 0, 5:] - out[0, 0, 5:]).max()) > 1e-6
    np.testing.assert_allclose(out2[0, 0, :5], out[0, 0, :5], atol=1e-7)
