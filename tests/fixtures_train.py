"""Tiny task sets, backbones and shared compiled programs for the train-step tests.

Registered in tests/conftest.py (``pytest_plugins``). Shapes are the smallest
that keep every code path alive: batch 6-8, widths 2-5, sequences of length
4, 2-3 tasks (XLA:CPU compile time dominates these tests, so each program is
built once per session and reused).
"""

import functools

import jax
import jax.numpy as jnp
import pytest

from helpers import batch_of, dense_set, image_set, token_set
from mtlx.layers import BiLSTM, Conv, Dense, Embed
from mtlx.weighting.base import Weighting

MLP = (Dense(4), Dense(4), Dense(4))          # even widths: sluice splits them into 2 subspaces
CNN = (Conv(2, 5), Conv(3, 3), Dense(4))      # 12x12 images -> 4x4 -> 1x1
LSTM = (Embed(30, 4), BiLSTM(3), BiLSTM(2))
SETS = {"mlp": (MLP, lambda: dense_set(n=8, dim=5)), "cnn": (CNN, lambda: image_set(n=6)),
        "bilstm": (LSTM, lambda: token_set(n=6, length=4)),
        # a shared Dense block reading (B, L, d) tokens: its Gram sums over B*L positions
        "dense_on_tokens": ((Embed(30, 4), Dense(3), BiLSTM(2)), lambda: token_set(n=6, length=4))}
LR, MIXING_LR = 0.1, 1.0
EXPERTS = {"mmoe": {"num_experts": 2}, "omoe": {"num_experts": 2}}


def lr_of(name: str) -> float:
    """The learning rate the step must apply to top-level parameter ``name`` (the mixing units' own)."""
    return MIXING_LR if name.startswith("mix_") else LR


@functools.lru_cache(maxsize=None)
def tiny(backbone: str):
    """``(blocks, task set, batch)`` of a backbone (built once per session)."""
    blocks, make = SETS[backbone]
    ts = make()
    return blocks, ts, batch_of(ts)


def probe_weighting(w, needs, coef=None):
    """A test weighting: fixed loss weights w; with a Jacobian J, direction =
    J^T w; with a Gram matrix ("gram"), direction = the coefficients ``coef``
    of J^T coef (None: the weighted sum); records what it was given."""
    w = jnp.asarray(w, jnp.float32)

    def combine(losses, grads, state, key):
        direction = {"jacobian": lambda: grads.T @ w, "gram": lambda: None if coef is None else jnp.asarray(coef)}
        return w, direction.get(needs, lambda: None)(), state, {"grads": grads}

    return Weighting("probe", lambda T: (), combine, needs)


# Test programs are small and run once or twice: XLA:CPU's backend optimisations (LLVM -O0
# instead of -O2) cost more than they save here; the values are the same up to rounding.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def jit(fn, **kw):
    """``jax.jit`` for test programs: compiled without the backend optimisations."""
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kw)


def stack(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


@pytest.fixture(scope="session")
def tiny_set():
    """``tiny(backbone) -> (blocks, task set, batch)``, shared by every test of the session."""
    return tiny
