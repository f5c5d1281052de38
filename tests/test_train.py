"""The one train step: gradients, masks, compile-once, vmap over seeds, learning."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from jax.flatten_util import ravel_pytree

from helpers import BACKBONES, MLP, batch_of, dense_set, token_set
from mtlx import losses as losses_lib
from mtlx.architectures import ARCHITECTURES, build_model, shared_mask
from mtlx.config import run_config
from mtlx.data import get_task_set
from mtlx.data.pipeline import BatchOrder, gather
from mtlx.train import _tap_gram, build_run, init_state, make_optimizer, make_train_step, train_and_evaluate
from mtlx.layers import BiLSTM, Dense, Embed
from mtlx.tasks import Task, TaskSet
from mtlx.weighting import get_weighting
from mtlx.weighting.base import Weighting


def probe_weighting(w, needs, coef=None):
    """A test weighting: fixed loss weights w; with a Jacobian J, direction =
    J^T w; with a Gram matrix ("gram"), direction = the coefficients ``coef``
    of J^T coef; records what it was given (J, or the Gram matrix)."""
    w = jnp.asarray(w, jnp.float32)

    def combine(losses, grads, state, key):
        direction = {"jacobian": lambda: grads.T @ w, "gram": lambda: None if coef is None else jnp.asarray(coef)}
        return w, direction.get(needs, lambda: None)(), state, {"grads": grads}

    return Weighting("probe", lambda T: (), combine, needs)


def one_step(model, ts, weighting, batch, lr=0.1, seed=0, **step_options):
    tx = make_optimizer("sgd", lr)
    st = init_state(model, weighting, tx, ts.num_tasks, batch["inputs"], seed)
    new, m = jax.jit(make_train_step(model, ts.tasks, weighting, tx, **step_options))(st, batch)
    return st, new, m


JACOBIAN_CASES = [(a, {"num_experts": 2} if a in ("mmoe", "omoe") else {}, "mlp") for a in sorted(ARCHITECTURES)] + [
    ("hard", {"split": 1}, "mlp"), ("hard", {"split": 0}, "mlp"), ("hard", {}, "bilstm"), ("sluice", {}, "bilstm"),
    ("hard", {"split": 2}, "cnn"), ("hard", {}, "dense_on_tokens")]
# a shared Dense block reading (B, L, d) tokens: its Gram sums over B*L positions
CASE_BACKBONES = {**BACKBONES, "dense_on_tokens": ((Embed(30, 8), Dense(6), BiLSTM(4)), token_set)}


@pytest.mark.parametrize("arch,opts,backbone", JACOBIAN_CASES)
@pytest.mark.parametrize("needs", ["jacobian", "gram"])
def test_jacobian_rows_and_update_against_per_task_gradients(arch, opts, backbone, needs):
    """The weighting sees rows = dL_t/d(shared params), one per task ("gram":
    their Gram matrix, every shared Dense block's part formed without its
    rows); the update is -lr * (sum_t w_t dL_t/dtheta + dpenalty/dtheta) for
    EVERY parameter -- as computed here from T separate jax.grad calls, and
    as static weighting's one backward pass gives it. A "gram" weighting's
    coefficients c give the shared parameters sum_t c_t dL_t/dtheta instead."""
    blocks, make = CASE_BACKBONES[backbone]
    ts = make()
    batch = batch_of(ts)
    T = ts.num_tasks
    model = build_model(arch, ts, blocks, **opts)
    w = [0.3, 1.7, 0.5][:T]
    st, new, m = one_step(model, ts, probe_weighting(w, needs), batch, ghost=True)
    params = st.params["model"]
    mask = shared_mask(model, params)

    def objective(p, t):
        preds, aux = model.apply({"params": p}, batch["inputs"])
        return losses_lib.task_losses(ts.tasks, preds, batch)[t] if t >= 0 else sum(aux.values(), jnp.zeros(()))

    per_task = [jax.grad(objective)(params, t) for t in range(T)]
    penalty = jax.grad(objective)(params, -1)
    shared_flat = lambda g: ravel_pytree(jax.tree_util.tree_map(lambda k, x: x if k else None, mask, g))[0]
    J = np.stack([shared_flat(g) for g in per_task])
    assert J.shape[1] == sum(x.size for x, k in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)) if k)
    if needs == "gram":
        np.testing.assert_allclose(m["info"]["grads"], J @ J.T, rtol=2e-4, atol=1e-6 * np.abs(J @ J.T).max())
    else:
        np.testing.assert_allclose(m["info"]["grads"], J, rtol=2e-4, atol=1e-6)
    want = jax.tree_util.tree_map(lambda p, pen, *g: p - 0.1 * (sum(wi * gi for wi, gi in zip(w, g)) + pen),
                                  params, penalty, *per_task)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    jax.tree_util.tree_map(close, new.params["model"], want)
    _, new_static, _ = one_step(model, ts, get_weighting("static", weights=w), batch)
    jax.tree_util.tree_map(close, new.params["model"], new_static.params["model"])
    if needs == "gram":
        c = [0.9, -0.4, 1.3][:T]
        _, new, _ = one_step(model, ts, probe_weighting(w, needs, coef=c), batch, ghost=True)
        want = jax.tree_util.tree_map(
            lambda k, p, pen, *g: p - 0.1 * (sum(wi * gi for wi, gi in zip(c if k else w, g)) + pen),
            mask, params, penalty, *per_task)
        jax.tree_util.tree_map(close, new.params["model"], want)


@pytest.mark.parametrize("arch,needs", [("cross_stitch", "jacobian"), ("hard", "gram")])
def test_jacobian_chunks_equal_one_vmap(arch, needs):
    ts = dense_set()
    batch = batch_of(ts)
    model = build_model(arch, ts, MLP)
    w = probe_weighting([1.0, 1.0, 1.0], needs)
    tx = make_optimizer("sgd", 0.1)
    st = init_state(model, w, tx, 3, batch["inputs"], 0)
    (s1, m1), (s2, m2) = (jax.jit(make_train_step(model, ts.tasks, w, tx, jacobian_chunk=c, ghost=True))(st, batch)
                          for c in (0, 2))
    np.testing.assert_allclose(m1["info"]["grads"], m2["info"]["grads"], rtol=1e-5, atol=1e-7)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), s1.params, s2.params)


def _shapes_in(jaxpr):
    """The shapes of every value a (closed) jaxpr computes, nested jaxprs included."""
    out = set()
    for eqn in jaxpr.eqns:
        out |= {tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape")}
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    out |= _shapes_in(sub)
    return out


def test_ghost_path_never_forms_the_kernel_rows():
    """With the ghost Gram, a shared Dense layer's per-task kernel gradients
    (T, d, h) are never computed; without it they are. ``ghost=None`` picks
    per layer by cost: the wide first layer (d=200 > batch 24) is ghosted,
    the narrow second (d=16) keeps its rows."""
    rng = np.random.default_rng(0)
    n, T = 24, 3
    names = ("a", "b", "c")
    split = {"inputs": rng.standard_normal((n, 200)).astype(np.float32),
             "targets": {k: rng.integers(0, 2, n).astype(np.int32) for k in names},
             "weights": {k: np.ones(n, np.float32) for k in names}}
    ts = TaskSet("wide", tuple(Task(k, "classification", 2) for k in names), (200,), "dense", splits={"train": split})
    model = build_model("hard", ts, (Dense(16), Dense(12)))
    w = get_weighting("mgda")
    tx = make_optimizer("sgd", 0.1)
    st = init_state(model, w, tx, T, split["inputs"], 0)
    wide, narrow = (T, 200, 16), (T, 16, 12)
    shapes = {g: _shapes_in(jax.make_jaxpr(make_train_step(model, ts.tasks, w, tx, ghost=g))(st, split).jaxpr)
              for g in (False, True, None)}
    assert wide in shapes[False] and narrow in shapes[False]
    assert wide not in shapes[True] and narrow not in shapes[True]
    assert wide not in shapes[None] and narrow in shapes[None]


REPRESENTATION_CASES = [  # (arch, opts, backbone, the module whose output is z, how MGDA-UB reads z)
    ("hard", {}, "mlp", "shared_2", "tap: Dense head"), ("hard", {"split": 1}, "mlp", "shared_0", "tap: Dense column"),
    ("hard", {"split": 1}, "cnn", "shared_0", "copies: Conv column"), ("hard", {"split": 2}, "cnn", "shared_1", "tap"),
    ("hard", {}, "bilstm", "shared_2", "tap on tokens"),
    ("hard", {"split": 2}, "bilstm", "shared_1", "copies: BiLSTM column"), ("mmoe", {"num_experts": 3}, "mlp", "expert_2", "copies")]


@pytest.mark.parametrize("arch,opts,backbone,where,how", REPRESENTATION_CASES)
def test_representation_gradients_are_per_task_gradients_of_the_shared_output(arch, opts, backbone, where, how):
    """MGDA-UB's rows are dL_t/dz for the SHARED z (trunk output; MMoE's
    experts), checked against jacrev of the losses w.r.t. a delta added to
    that module's output (intercepted, independent of how the step gets them)."""
    blocks, make = BACKBONES[backbone]
    ts = make()
    batch = batch_of(ts)
    T = ts.num_tasks
    model = build_model(arch, ts, blocks, **opts)
    st, _, m = one_step(model, ts, probe_weighting([1.0] * T, "representation"), batch)
    params = st.params["model"]
    perts = model.init(jax.random.PRNGKey(0), batch["inputs"])["perturbations"]
    names = {k[-1] for k in flatten_dict(perts)}   # exactly one of the two mechanisms
    assert ("shared_rep_pre" in names) == how.startswith("tap") != ("shared_rep" in names)
    seen = {}

    def apply_with(delta):
        """The model with ``delta`` added to the output of module ``where`` (z)."""
        def add_delta(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name != "__call__" or context.module.name != where:
                return out
            seen["z"] = out.shape
            return out + delta

        with nn.intercept_methods(add_delta):
            preds, _ = model.apply({"params": params}, batch["inputs"])
        return preds

    plain = apply_with(0.0)
    J = jax.jacrev(lambda d: losses_lib.task_losses(ts.tasks, apply_with(d), batch))(jnp.zeros(seen["z"]))
    J = np.asarray(J.reshape(T, -1), np.float64)
    assert np.all(np.linalg.norm(J, axis=1) > 0)
    M = J @ J.T   # the weighting gets the Gram matrix of the rows
    np.testing.assert_allclose(m["info"]["grads"], M, rtol=1e-4, atol=1e-6 * np.max(np.diag(M)))
    # zero perturbations (tap or copies) leave the predictions unchanged
    zeros = jax.tree_util.tree_map(jnp.zeros_like, perts)
    pert, _ = model.apply({"params": params, "perturbations": zeros}, batch["inputs"])
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), plain, pert)


@pytest.mark.parametrize("ghost", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 4), (3, 5, 7, 4), (12, 9, 2)])
def test_tap_gram_with_and_without_the_rows(shape, ghost):
    """Both ways of forming MGDA-UB's Gram from a tapped Dense layer equal the
    Gram of the explicit rows dL_t/dz = delta_t W_t^T (float64 reference)."""
    rng = np.random.default_rng(sum(shape))
    T, h, d = shape[0], shape[-1], 6
    delta = rng.standard_normal(shape).astype(np.float32)
    W = rng.standard_normal((T, d, h)).astype(np.float32)
    deltas = {"task_head_out": {"shared_rep_pre": jnp.asarray(delta)}}
    params = {"task_head_out": {"kernel": jnp.asarray(W), "bias": jnp.zeros((T, h))}}
    got = jax.jit(lambda a, p: _tap_gram(a, p, ghost=ghost))(deltas, params)
    rows = np.einsum("t...h,tdh->t...d", delta.astype(np.float64), W.astype(np.float64)).reshape(T, -1)
    np.testing.assert_allclose(got, rows @ rows.T, rtol=1e-5, atol=1e-5 * np.max(np.sum(rows**2, 1)))


def test_masked_example_does_not_change_its_task_gradient():
    ts = dense_set(n=32)
    batch = batch_of(ts)
    model = build_model("hard", ts, MLP, split=1)
    params = model.init(jax.random.PRNGKey(0), batch["inputs"])["params"]

    def grads(b):
        def loss(p, t):
            preds, _ = model.apply({"params": p}, b["inputs"])
            return losses_lib.task_losses(ts.tasks, preds, b)[t]
        return [jax.grad(loss)(params, t) for t in range(3)]

    masked = jax.tree_util.tree_map(np.copy, batch)
    masked["weights"]["cls"][:5] = 0.0
    changed = jax.tree_util.tree_map(np.copy, masked)
    changed["targets"]["cls"][:5] = (changed["targets"]["cls"][:5] + 1) % 3  # other labels where masked
    g_masked, g_changed = grads(masked), grads(changed)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), g_masked[0], g_changed[0])
    # and the mask matters: without it the same label change moves the gradient
    unmasked = jax.tree_util.tree_map(np.copy, changed)
    unmasked["weights"]["cls"][:5] = 1.0
    diff = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), grads(unmasked)[0], g_masked[0])
    assert max(jax.tree_util.tree_leaves(diff)) > 1e-4


def test_step_compiles_once_and_vmap_over_seeds_equals_separate_runs():
    ts = get_task_set("synthetic_classification", num_tasks=3, dim=8, n_train=256, n_validation=0, n_test=64)
    model = build_model("cross_stitch", ts, [{"kind": "dense", "features": 16}] * 2)
    w = get_weighting("equal")
    tx = make_optimizer("adam", 1e-2, mixing_learning_rate=0.1)
    data = ts.splits["train"]
    seeds = [0, 1, 2]
    orders = [BatchOrder(256, 32, s) for s in seeds]
    step = jax.jit(make_train_step(model, ts.tasks, w, tx))
    separate = []
    for s, order in zip(seeds, orders):
        st = init_state(model, w, tx, 3, data["inputs"][:2], s)
        for i in range(12):
            st, _ = step(st, gather(data, order(i)))
        separate.append(st)
    assert step._cache_size() == 1  # 36 calls, one compilation
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[init_state(model, w, tx, 3, data["inputs"][:2], s) for s in seeds])
    vstep = jax.jit(jax.vmap(make_train_step(model, ts.tasks, w, tx)))
    for i in range(12):
        batch = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[gather(data, o(i)) for o in orders])
        stacked, _ = vstep(stacked, batch)
    for k, st in enumerate(separate):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[k], b, rtol=2e-5, atol=2e-6),
                               stacked.params, st.params)


def test_mixing_units_get_their_own_learning_rate():
    ts = dense_set()
    batch = batch_of(ts)
    model = build_model("cross_stitch", ts, MLP)
    w = get_weighting("equal")
    tx = make_optimizer("sgd", 0.01, mixing_learning_rate=1.0)
    st = init_state(model, w, tx, 3, batch["inputs"], 0)
    new, _ = jax.jit(make_train_step(model, ts.tasks, w, tx))(st, batch)

    def total(p):
        preds, _ = model.apply({"params": p}, batch["inputs"])
        return jnp.sum(losses_lib.task_losses(ts.tasks, preds, batch))

    g = jax.grad(total)(st.params["model"])
    for k, lr in (("mix_stitch_0", 1.0), ("task_column_0", 0.01)):
        want = jax.tree_util.tree_map(lambda p, gi: p - lr * gi, st.params["model"][k], g[k])
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new.params["model"][k], want)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_short_run_lowers_every_task_loss_on_mmoe_synthetic(arch):
    cfg = run_config()
    cfg.task_set.name = "mmoe_synthetic"
    cfg.task_set.options = {"correlation": 0.5, "dim": 16, "n_train": 1024, "n_validation": 0, "n_test": 256}
    cfg.backbone.blocks = [{"kind": "dense", "features": 32}] * 2
    cfg.architecture.name = arch
    cfg.architecture.options = {"num_experts": 2} if arch in ("mmoe", "omoe") else {}
    cfg.optimizer.learning_rate = 3e-3
    cfg.steps, cfg.batch_size, cfg.eval_every, cfg.log_every = 150, 64, 150, 150
    run = build_run(cfg)
    test = run.task_set.splits["test"]
    st0 = init_state(run.model, run.weighting, run.tx, 2, test["inputs"][:2], 0)
    preds0, _ = run.model.apply({"params": st0.params["model"]}, test["inputs"])
    before = {t.name: losses_lib.compute_metrics(t, preds0[t.name], test["targets"][t.name], test["weights"][t.name])["mse"]
              for t in run.task_set.tasks}
    summary = train_and_evaluate(cfg)
    for t in run.task_set.tasks:
        assert summary["metrics"][t.name]["mse"] < 0.8 * before[t.name], (arch, t.name, before, summary["metrics"])
