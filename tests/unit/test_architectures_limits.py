"""Architectures against their definitions: equivalences in their limits (hard
split 0 == single_task, cross-stitch identity == single_task, sluice with one
subspace == cross-stitch, MMoE with one expert == shared bottom), penalties and
gates by hand, the shared mask, and finite non-zero gradients everywhere.

The backbone-parametrised comparisons come from one jitted function per
backbone (``limits``, compiled once per session); the others jit one function each."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures_archs import HEAD_HIDDEN, TINY_BACKBONES, TINY_MLP, batch, task_set, tiny_dense, tiny_equal
from mtlx import taps
from mtlx.architectures import ARCHITECTURES, build_model, shared_mask
from mtlx.architectures.soft import trace_penalty
from mtlx.losses import task_losses

BACKBONES = sorted(TINY_BACKBONES)
SINGLE = {"sluice": {"subspaces": 2}, "cross_stitch": {"units": "channel"}, "mmoe": {"num_experts": 2},
          "omoe": {"num_experts": 2}, "tensor_factorised": {"rank": 2}}  # each architecture's canonical options


def assert_trees_close(a, b, atol=1e-6):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    jax.tree_util.tree_map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-5),
                           a, b)


def mixing(params):
    return sorted(k for k in params if taps.is_mixing(k))


def loss_and_grads(model, ts, params, b):
    """(predictions, gradient of the summed task losses plus aux penalties) at ``params``."""

    def loss(p):
        preds, aux = model.apply({"params": p}, b["inputs"])
        return jnp.sum(task_losses(ts.tasks, preds, b)) + sum(aux.values()), preds

    g, preds = jax.grad(loss, has_aux=True)(params)
    return preds, g


@functools.lru_cache(maxsize=None)
def limits(backbone):
    """Everything the backbone-parametrised tests below compare, from ONE jitted function
    per backbone (one XLA compile for all the models: about half the time of compiling
    each apart). Models: every architecture with its canonical options, hard with
    split=0, cross-stitch after every block, sluice with one subspace."""
    ts, blocks = task_set(backbone), TINY_BACKBONES[backbone][0]
    L, T = len(blocks), ts.num_tasks

    def build(name, **options):
        return build_model(name, ts, blocks, head_hidden=HEAD_HIDDEN, **options)

    models = {name: build(name, **SINGLE.get(name, {})) for name in ARCHITECTURES}
    hard0, cs_all, sl1 = build("hard", split=0), build("cross_stitch", stitch_after=tuple(range(L))), build(
        "sluice", subspaces=1)
    alphas = np.random.default_rng(0).uniform(0, 1, (L, T, T)).astype(np.float32)  # random, not identity, mixing
    stitch = [taps.mixing_name("stitch", i) for i in range(L)]
    to_alpha = dict(zip(stitch, (taps.mixing_name("alpha", i) for i in range(L))))
    beta = taps.mixing_name("beta")

    @jax.jit
    def run(key, b):
        params = {name: m.init(key, b["inputs"])["params"] for name, m in models.items()}
        out = {"every": {name: loss_and_grads(m, ts, params[name], b) for name, m in models.items()}}
        p_st = params["single_task"]
        out["hard_split_0"] = (out["every"]["single_task"], loss_and_grads(hard0, ts, p_st, b))
        # cross-stitch with identity units alpha[t, s, c] = [t == s] and single_task's columns and heads
        p_cs = dict(models["cross_stitch"].init(jax.random.fold_in(key, 1), b["inputs"])["params"])
        p_cs.update({k: jnp.broadcast_to(jnp.eye(T)[..., None], v.shape) for k, v in p_cs.items() if taps.is_mixing(k)})
        p_cs.update(p_st)
        out["cross_stitch_identity"] = (out["every"]["single_task"], loss_and_grads(models["cross_stitch"], ts, p_cs, b))
        # sluice with one subspace, the cross-stitch's units as alphas and beta on the last block
        p_all = dict(cs_all.init(key, b["inputs"])["params"], **dict(zip(stitch, alphas)))
        p_sl = dict(sl1.init(key, b["inputs"])["params"])
        p_sl.update({to_alpha.get(k, k): v for k, v in p_all.items()})
        p_sl[beta] = jnp.zeros_like(p_sl[beta]).at[:, -1].set(1.0)
        out["sluice_one_subspace"] = (loss_and_grads(cs_all, ts, p_all, b), loss_and_grads(sl1, ts, p_sl, b),
                                      sl1.apply({"params": p_sl}, b["inputs"])[1])
        return out

    return jax.device_get(run(jax.random.key(0, impl="rbg"), batch(backbone))), {
        "hard0": hard0, "models": models, "stitch": stitch, "to_alpha": to_alpha, "beta": beta}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_architecture_gives_finite_nonzero_gradients(backbone):
    (out, _), ts = limits(backbone), task_set(backbone)
    x = batch(backbone)["inputs"]
    for name in ARCHITECTURES:
        preds, g = out["every"][name]
        leaves = jax.tree_util.tree_leaves(g)
        assert all(np.all(np.isfinite(leaf)) for leaf in leaves), (backbone, name)
        assert sum(float(np.abs(leaf).sum()) for leaf in leaves) > 0, (backbone, name)
        for t in ts.tasks:  # prediction layout: (B, C) or per token (B, L, C)
            assert preds[t.name].shape == x.shape[:1 + (t.kind == "tagging")] + (t.num_outputs,), (backbone, name)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_cross_stitch_identity_equals_single_task(backbone):
    out, info = limits(backbone)
    (preds_st, g_st), (preds_cs, g_cs) = out["cross_stitch_identity"]
    mix = mixing(g_cs)
    assert mix == info["stitch"][:-1]  # after every block but the last
    assert_trees_close(preds_st, preds_cs)
    assert_trees_close(g_st, {k: g_cs[k] for k in g_st})
    assert any(float(np.abs(g_cs[k]).sum()) > 0 for k in mix)  # the units are not dead parameters


@pytest.mark.parametrize("backbone", BACKBONES)
def test_hard_split_zero_equals_single_task(backbone):
    out, info = limits(backbone)
    x = batch(backbone)["inputs"]
    shapes = [jax.eval_shape(m.init, jax.random.PRNGKey(0), x)["params"]
              for m in (info["models"]["single_task"], info["hard0"])]
    assert jax.tree_util.tree_structure(shapes[0]) == jax.tree_util.tree_structure(shapes[1])
    (a, ga), (b, gb) = out["hard_split_0"]
    assert_trees_close(a, b)
    assert_trees_close(ga, gb)


@pytest.mark.parametrize("make_set", [tiny_dense, tiny_equal])
def test_hard_full_split_shares_trunk_and_matches_manual_forward(make_set):
    """Task t's prediction is head t's output (sliced to its width), for mixed and equal widths."""
    ts = make_set()
    x = ts.splits["train"]["inputs"]
    hard = build_model("hard", ts, TINY_MLP)  # share every block
    p = jax.jit(hard.init)(jax.random.PRNGKey(0), x)["params"]
    h = x
    for i, spec in enumerate(TINY_MLP):
        h = spec.apply(p[f"shared_{i}"], h)
    w = p["task_head_out"]
    preds = jax.jit(hard.apply)({"params": p}, x)[0]
    for t, task in enumerate(ts.tasks):
        manual = h @ w["kernel"][t] + w["bias"][t]
        np.testing.assert_allclose(preds[task.name], manual[:, : task.num_outputs], atol=1e-5)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_sluice_one_subspace_last_layer_equals_cross_stitch(backbone):
    out, info = limits(backbone)
    (a, ga), (b, gb), aux = out["sluice_one_subspace"]
    assert aux == {}  # one subspace: no orthogonality penalty
    assert_trees_close(a, b, atol=1e-5)
    assert_trees_close({info["to_alpha"].get(k, k): v for k, v in ga.items()},
                       {k: v for k, v in gb.items() if k != info["beta"]}, atol=1e-5)


def test_sluice_orthogonality_penalty_matches_definition():
    """lambda * sum_t ||H_{t,1}^T H_{t,2} / N||_F^2 over the alpha-mixed subspaces of one block."""
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    blocks = TINY_MLP[:1]  # 6 units -> 2 subspaces of 3
    sl = build_model("sluice", ts, blocks, subspaces=2, orthogonality=0.5)
    p = jax.jit(sl.init)(jax.random.PRNGKey(0), x)["params"]
    _, aux = jax.jit(sl.apply)({"params": p}, x)
    T, n = ts.num_tasks, x.shape[0]
    cols = np.stack([blocks[0].apply(jax.tree_util.tree_map(lambda a, t=t: a[t], p["task_column_0"]), x)
                     for t in range(T)])  # (T, N, 6)
    units = cols.reshape(T, n, 2, 3).transpose(0, 2, 1, 3).reshape(T * 2, n, 3)  # rows (t, g)
    mixed = np.einsum("ab,bnd->and", np.asarray(p[taps.mixing_name("alpha", 0)]), units).reshape(T, 2, n, 3)
    want = 0.5 * sum(np.sum((mixed[t, 0].T @ mixed[t, 1] / n) ** 2) for t in range(T))
    assert want > 0
    np.testing.assert_allclose(float(aux["orthogonality"]), want, rtol=1e-4)


def test_mmoe_one_expert_equals_shared_bottom():
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    moe = build_model("mmoe", ts, TINY_MLP, head_hidden=HEAD_HIDDEN, num_experts=1)
    hard = build_model("hard", ts, TINY_MLP, head_hidden=HEAD_HIDDEN)

    @jax.jit
    def run(key):
        p_m = moe.init(key, x)["params"]
        p_h = dict(hard.init(key, x)["params"])
        p_h.update({f"shared_{i}": jax.tree_util.tree_map(lambda a: a[0], p_m[f"expert_{i}"])
                    for i in range(len(TINY_MLP))})
        p_h.update({k: v for k, v in p_m.items() if k.startswith("task_")})
        return moe.apply({"params": p_m}, x)[0], hard.apply({"params": p_h}, x)[0]

    a, b = run(jax.random.key(0, impl="rbg"))
    assert_trees_close(a, b, atol=1e-5)


def test_mmoe_gates_are_per_task_and_omoe_shares_one():
    """With identical towers for every task, OMoE (one gate) must give every task the same
    prediction, MMoE (a gate per task) different ones, and each task's gate mixture must be
    softmax(W_t x) of its own slice of the gate (Ma et al. 2018, Eq. 6-7)."""
    ts = tiny_equal()
    x = ts.splits["train"]["inputs"]
    models = {name: build_model(name, ts, TINY_MLP[:1], num_experts=3) for name in ("mmoe", "omoe")}

    @jax.jit
    def run(key):
        out = {}
        for name, model in models.items():  # identical towers: every task gets task 0's output layer
            p = dict(model.init(key, x)["params"])
            p["task_head_out"] = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a[:1], a.shape), p["task_head_out"])
            out[name] = (p, model.apply({"params": p}, x)[0])
        return out

    out = run(jax.random.key(0, impl="rbg"))
    outs = {name: [preds[t.name] for t in ts.tasks] for name, (_, preds) in out.items()}
    p, preds = out["mmoe"]  # the mixture by hand for task 1
    experts = np.stack([TINY_MLP[0].apply(jax.tree_util.tree_map(lambda a, e=e: a[e], p["expert_0"]), x) for e in range(3)])
    logits = x @ np.asarray(p["gate"]["kernel"]) + np.asarray(p["gate"]["bias"])
    g = np.asarray(jax.nn.softmax(logits.reshape(-1, ts.num_tasks, 3)[:, 1], axis=-1))
    mixed = np.einsum("be,ebd->bd", g, experts)
    w = p["task_head_out"]
    np.testing.assert_allclose(preds["b"], mixed @ np.asarray(w["kernel"][1]) + np.asarray(w["bias"][1]), atol=1e-5)
    for a in outs["omoe"][1:]:
        np.testing.assert_allclose(a, outs["omoe"][0], atol=1e-6)
    assert float(jnp.abs(outs["mmoe"][1] - outs["mmoe"][0]).max()) > 1e-4


def test_soft_sharing_penalties():
    """soft_l2: sum_l sum_t ||W_lt - mean_s W_ls||^2; soft_trace: sum_l ||[vec W_l1 .. vec W_lT]||_*."""
    ts = tiny_dense()
    x, T = ts.splits["train"]["inputs"], ts.num_tasks
    st, l2, tr = (build_model(name, ts, TINY_MLP, **opts) for name, opts in
                  (("single_task", {}), ("soft_l2", {"strength": 1.0}), ("soft_trace", {"strength": 1.0})))

    @jax.jit
    def run(key):
        p = st.init(key, x)["params"]
        return p, l2.apply({"params": p}, x), tr.apply({"params": p}, x), st.apply({"params": p}, x)

    p, (preds_l2, aux_l2), (_, aux_tr), (preds_st, _) = run(jax.random.key(0, impl="rbg"))
    assert_trees_close(preds_l2, preds_st)
    kernels = [np.asarray(p[f"task_column_{i}"]["kernel"], np.float64) for i in range(len(TINY_MLP))]
    want_l2 = sum(np.sum((k - k.mean(0)) ** 2) for k in kernels)
    want_tr = sum(np.linalg.svd(k.reshape(T, -1), compute_uv=False).sum() for k in kernels)
    np.testing.assert_allclose(float(aux_l2["soft_l2"]), want_l2, rtol=1e-5)
    np.testing.assert_allclose(float(aux_tr["soft_trace"]), want_tr, rtol=1e-4)
    np.testing.assert_allclose(float(trace_penalty(jnp.eye(3)[:, None, :] * jnp.ones((3, 4, 3)))), 3 * 2.0, rtol=1e-5)


def test_shared_mask_per_architecture():
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    expect = {"single_task": set(), "hard": {"shared_0", "shared_1", "shared_2"},
              "cross_stitch": {"task_column_0", "task_column_1", "task_column_2",
                               taps.mixing_name("stitch", 0), taps.mixing_name("stitch", 1)},
              "mmoe": {"expert_0", "expert_1", "expert_2", "gate"},
              "tensor_factorised": {"factorised_0", "factorised_1", "factorised_2"}}
    for name, want in expect.items():
        model = build_model(name, ts, TINY_MLP, **SINGLE.get(name, {}))
        mask = shared_mask(model, jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"])
        got = {k for k, v in mask.items() if all(jax.tree_util.tree_leaves(v))}
        assert got == want, name
        assert not any(any(jax.tree_util.tree_leaves(v)) for k, v in mask.items() if k not in want), name
