"""Shared by the weighting tests: host-built PRNG keys, one cached jitted ``combine`` per
weighting configuration, and the shapes they share.

Most tests use the shapes of the vmap test (T=3 tasks, P=10 shared parameters, R=6
representation units) and one cached jitted ``combine`` per weighting configuration, so
each weighting compiles once unbatched and once vmapped (XLA:CPU compile time dominates
these files' run time).
"""

import jax
import numpy as np

from mtlx.weighting import get_weighting, init_state, on_jacobian

T3, P10, R6 = 3, 10, 6
_CACHE = {}


def key(i):
    """A threefry PRNG key built on the host (no device computation to compile)."""
    return jax.random.wrap_key_data(np.array([0, i], np.uint32))


KEY = key(0)


def jitted(name, **opts):
    """(weighting, its jitted combine), cached per configuration: for "gram"
    weightings on the Jacobian (:func:`on_jacobian`), with the direction
    ``G^T c`` the train step takes."""
    config = (name, tuple(sorted(opts.items())))
    if config not in _CACHE:
        w = get_weighting(name, **opts)
        _CACHE[config] = (w, jax.jit(on_jacobian(w)))
    return _CACHE[config]


def f32(x):
    return np.asarray(x, np.float32)


def run(name, losses, grads=None, state=None, key=KEY, **opts):
    w, f = jitted(name, **opts)
    state = init_state(w, len(losses), P10 if grads is None else np.shape(grads)[-1]) if state is None else state
    return f(f32(losses), None if grads is None else f32(grads), state, key)


def pad(G, P=P10):
    """Zero-pad gradients to P columns (same geometry, shared compiled shapes)."""
    G = np.asarray(G, np.float64)
    return np.concatenate([G, np.zeros((G.shape[0], P - G.shape[1]))], axis=1)


