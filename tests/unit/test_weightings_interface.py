"""Every loss weighting's interface: jittable, vmappable over a leading seed axis with the
numbers of separate calls, and named NamedTuple states (the definitions:
tests/unit/test_weightings_definitions.py)."""

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtlx.weighting import WEIGHTINGS, get_weighting, init_state, on_jacobian
from weighting_helpers import KEY, P10, R6, T3, f32, jitted, key


# --------------------------------------------------------------------------
# Every weighting: jittable, and vmappable over a leading seed axis
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_jit_vmap_over_seeds_matches_separate_calls(name):
    opts = {"weights": (1.0, 2.0, 3.0)} if name == "static" else {}
    w, single = jitted(name, **opts)
    batched = jax.jit(jax.vmap(on_jacobian(w)))
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    S = 3
    dim = {"none": None, "jacobian": P10, "gram": P10, "representation": R6, "lookahead": P10}[w.needs]
    state1 = jax.tree.map(np.asarray, init_state(w, T3, P10))
    states = jax.tree.map(lambda x: np.stack([x] * S), state1)
    singles = [state1] * S
    for step in range(2):   # the second step runs from non-initial states
        seeds = [10 * step + s for s in range(S)]
        keys = jax.random.wrap_key_data(np.array([[0, i] for i in seeds], np.uint32))
        losses = f32(rng.uniform(0.2, 2.0, (S, T3)))
        grads = None if dim is None else f32(rng.standard_normal((S, T3, dim)))
        if w.needs == "representation":   # the rows' Gram matrix
            grads = f32(np.einsum("str,sur->stu", grads, grads))
        out_b = jax.tree.map(np.asarray, batched(losses, grads, states, keys))
        states = out_b[2]
        for s in range(S):
            out_s = single(losses[s], None if grads is None else grads[s], singles[s], key(seeds[s]))
            out_s = jax.tree.map(np.asarray, out_s)
            singles[s] = out_s[2]
            got = jax.tree.map(lambda x: x[s], out_b)
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(out_s)):
                np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                           rtol=2e-4, atol=2e-5)
            weights, direction = out_s[0], out_s[1]
            assert weights.shape == (T3,) and np.all(np.isfinite(weights))
            if direction is not None:
                assert w.needs in ("jacobian", "gram") and direction.shape == (P10,)
                assert np.all(np.isfinite(direction))


STATE_FIELDS = {  # the named fields of each weighting's state (optax style); () for EmptyState
    "auto_lambda": ("lam", "opt_state"),
    "dwa": ("count", "acc", "history", "blocks"), "famo": ("logits", "opt_state", "prev_losses", "has_prev"),
    "gradnorm": ("weights", "opt_state", "initial_losses", "started"), "mgda": ("weights",),
    "mgda_ub": ("weights",), "nash_mtl": ("alpha", "step"), "gradvac": ("targets",), "modo": ("lam",),
    "sdmgrad": ("w",), "stch": ("count", "acc"), "moco": ("tracked", "lam", "step"), "db_mtl": ("ema", "step"),
    "excess_mtl": ("weights", "sq_sum", "initial", "started")}


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_states_are_named_tuples(name):
    """init's state and combine's new state are the same NamedTuple type, with named fields."""
    opts = {"weights": (1.0, 2.0, 3.0)} if name == "static" else {}
    w = get_weighting(name, **opts)
    state = init_state(w, T3, P10)
    assert isinstance(state, tuple) and hasattr(state, "_fields"), (name, state)
    assert state._fields == STATE_FIELDS.get(name, ()), name
    grads = {"none": None, "representation": (T3, T3)}.get(w.needs, (T3, P10))  # the step's input by kind
    grads = None if grads is None else jax.ShapeDtypeStruct(grads, jnp.float32)
    f = jax.eval_shape(on_jacobian(w), jax.ShapeDtypeStruct((T3,), jnp.float32), grads, state, KEY)
    assert type(f[2]) is type(state), name
    imtl = get_weighting("imtl", loss_scaling=True).init(T3)
    assert imtl._fields == ("log_scale", "opt_state")
