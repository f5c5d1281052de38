"""The per-task gradient engine (mtlx.grads) inside the one train step, against definitions:
per-task gradients (the rows of jax.jacrev of the T losses), J J^T for the Gram, the SGD update
-lr * (sum_t w_t g_t + dpenalty) for every parameter (the mixing units at their own lr)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from jax.flatten_util import ravel_pytree

from fixtures_train import EXPERTS, LR, MIXING_LR, jit, lr_of, probe_weighting, tiny
from mtlx import losses as losses_lib
from mtlx.architectures import ARCHITECTURES, build_model, shared_mask
from mtlx.grads import tap_gram
from mtlx.layers import Dense
from mtlx.optim import make_optimizer
from mtlx.tasks import Task, TaskSet
from mtlx.train import init_state, make_train_step
from mtlx.weighting import get_weighting

W, C = [0.3, 1.7, 0.5], [0.9, -0.4, 1.3]

JACOBIAN_CASES = [(a, {**EXPERTS.get(a, {}), **({"gumbel": False} if a == "ltb" else {})}, "mlp")
                  for a in sorted(ARCHITECTURES)] + [
    ("hard", {"split": 1}, "mlp"), ("hard", {"split": 0}, "mlp"), ("hard", {}, "bilstm"), ("sluice", {}, "bilstm"),
    ("hard", {"split": 2}, "cnn"), ("hard", {}, "dense_on_tokens")]


def avals(tree):
    return jax.tree_util.tree_map(lambda a: (a.shape, a.dtype, getattr(a, "weak_type", False)), tree)


@functools.lru_cache(maxsize=None)
def jacobian_case(arch, opts, backbone):
    """One jitted program per case: the initial state, the step of every per-task-gradient path
    (probe weightings; chunked and unchunked task axes; ghost Gram on and off) and of a
    loss-based weighting ("none"), and the reference: the Jacobian of (L_1, ..., L_T, penalty)."""
    blocks, ts, batch = tiny(backbone)
    T = ts.num_tasks
    model = build_model(arch, ts, blocks, **dict(opts))
    w, c = W[:T], C[:T]
    tx = make_optimizer("sgd", LR, mixing_learning_rate=MIXING_LR)
    paths = {"jacobian": (probe_weighting(w, "jacobian"), {"jacobian_chunk": 2}),
             "gram": (probe_weighting(w, "gram"), {"ghost": False}),
             "gram_coef": (probe_weighting(w, "gram", coef=c), {"ghost": True, "jacobian_chunk": 2}),
             "none": (get_weighting("static", weights=w), {})}
    steps = {k: make_train_step(model, ts.tasks, wt, tx, **o) for k, (wt, o) in paths.items()}

    def program(key, batch):
        state = init_state(model, paths["none"][0], tx, T, batch["inputs"], key)  # no weighting here has state

        def terms(p):  # (L_1, ..., L_T, penalty): the rows of their Jacobian are the per-task gradients
            preds, aux = model.apply({"params": p}, batch["inputs"])
            return jnp.append(losses_lib.task_losses(ts.tasks, preds, batch), sum(aux.values(), jnp.zeros(())))

        rows = jax.jacrev(terms)(state.params["model"])
        reference = [jax.tree_util.tree_map(lambda r: r[t], rows) for t in range(-1, T)]
        return state, {k: steps[k](state, batch) for k in steps}, reference

    return model, ts, jit(program)(jax.random.PRNGKey(0), batch)


@pytest.mark.parametrize("arch,opts,backbone", JACOBIAN_CASES)
def test_jacobian_rows_and_update_against_per_task_gradients(arch, opts, backbone):
    """The weighting sees rows = dL_t/d(shared params), one per task ("gram":
    their Gram matrix, with the shared Dense blocks' part formed without their
    rows and with them); the update is -lr * (sum_t w_t dL_t/dtheta +
    dpenalty/dtheta) for EVERY parameter, whether the weighting gives a
    direction J^T w, nothing (the weighted sum) or, with a loss-based weighting,
    nothing at all (one backward pass). A "gram" weighting's coefficients c give
    the shared parameters sum_t c_t dL_t/dtheta instead. Mixing units move at
    their own learning rate. Every path maps the state to a state of identical
    shapes, dtypes and weak types: jit compiles it once for the whole run."""
    model, ts, (state, out, (penalty, *per_task)) = jacobian_case(arch, tuple(sorted(opts.items())), backbone)
    T = ts.num_tasks
    params = state.params["model"]
    mask = shared_mask(model, params)
    shared_flat = lambda g: ravel_pytree(jax.tree_util.tree_map(lambda k, x: x if k else None, mask, g))[0]
    J = np.stack([shared_flat(g) for g in per_task]).astype(np.float64)
    assert J.shape[1] == sum(x.size for x, k in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)) if k)
    np.testing.assert_allclose(out["jacobian"][1]["info"]["grads"], J, rtol=2e-4, atol=1e-6)
    for path in ("gram", "gram_coef"):
        np.testing.assert_allclose(out[path][1]["info"]["grads"], J @ J.T, rtol=2e-4, atol=1e-6 * np.abs(J @ J.T).max())
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)
    lrs = {k: jax.tree_util.tree_map(lambda _: lr_of(k), v) for k, v in params.items()}
    for path, coef in (("jacobian", W), ("gram", W), ("none", W), ("gram_coef", C)):
        want = jax.tree_util.tree_map(
            lambda k, lr, p, pen, *g: p - lr * (sum(wi * gi for wi, gi in zip(coef[:T] if k else W[:T], g)) + pen),
            mask, lrs, params, penalty, *per_task)
        jax.tree_util.tree_map(close, out[path][0].params["model"], want)
        assert avals(out[path][0]) == avals(state), path


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
    blocks, ts, batch = tiny(backbone)
    T = ts.num_tasks
    model = build_model(arch, ts, blocks, **opts)
    tx = make_optimizer("sgd", 0.1)
    w = probe_weighting([1.0] * T, "representation")
    perts = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch["inputs"])["perturbations"]
    names = {k[-1] for k in flatten_dict(perts)}   # exactly one of the two mechanisms
    assert ("shared_rep_pre" in names) == how.startswith("tap") != ("shared_rep" in names)
    seen = {}

    def apply_with(params, delta, perturbations=None):
        """The model with ``delta`` added to the output of module ``where`` (z)."""
        def add_delta(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name != "__call__" or context.module.name != where:
                return out
            seen["z"] = out.shape
            return out + delta

        variables = {"params": params, **({"perturbations": perturbations} if perturbations else {})}
        with nn.intercept_methods(add_delta):
            return model.apply(variables, batch["inputs"])[0]

    step = make_train_step(model, ts.tasks, w, tx)

    @jit
    def program(key, batch):
        st = init_state(model, w, tx, T, batch["inputs"], key)
        params = st.params["model"]
        apply_with(params, 0.0)   # traced once more: seen["z"], the shape of z
        J = jax.jacrev(lambda d: losses_lib.task_losses(ts.tasks, apply_with(params, d), batch))(jnp.zeros(seen["z"]))
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), perts)
        return step(st, batch)[1]["info"]["grads"], J, apply_with(params, 0.0), apply_with(params, 0.0, zeros)

    gram, J, plain, perturbed = program(jax.random.PRNGKey(0), batch)
    J = np.asarray(J.reshape(T, -1), np.float64)
    assert np.all(np.linalg.norm(J, axis=1) > 0)
    M = J @ J.T   # the weighting gets the Gram matrix of the rows
    np.testing.assert_allclose(gram, M, rtol=1e-4, atol=1e-6 * np.max(np.diag(M)))
    # zero perturbations (tap or copies) leave the predictions unchanged
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), plain, perturbed)


@pytest.mark.parametrize("shape", [(3, 5, 4), (3, 5, 7, 4), (12, 9, 2)])
def test_tap_gram_with_and_without_the_rows(shape):
    """Both ways of forming MGDA-UB's Gram from a tapped Dense layer equal the
    Gram of the explicit rows dL_t/dz = delta_t W_t^T (float64 reference)."""
    rng = np.random.default_rng(sum(shape))
    T, h, d = shape[0], shape[-1], 6
    delta = rng.standard_normal(shape).astype(np.float32)
    W_ = rng.standard_normal((T, d, h)).astype(np.float32)
    deltas = {"task_head_out": {"shared_rep_pre": jnp.asarray(delta)}}
    params = {"task_head_out": {"kernel": jnp.asarray(W_), "bias": jnp.zeros((T, h))}}
    both = jit(lambda a, p: [tap_gram(a, p, ghost=g) for g in (True, False)])(deltas, params)
    rows = np.einsum("t...h,tdh->t...d", delta.astype(np.float64), W_.astype(np.float64)).reshape(T, -1)
    for got in both:
        np.testing.assert_allclose(got, rows @ rows.T, rtol=1e-5, atol=1e-5 * np.max(np.sum(rows**2, 1)))
