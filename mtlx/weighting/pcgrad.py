"""PCGrad (Yu, Kumar, Gupta, Levine, Hausman & Finn, "Gradient Surgery for
Multi-Task Learning", NeurIPS 2020)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from mtlx.weighting.base import Weighting, no_state


def pcgrad_coefficients(M: jnp.ndarray, orders: jnp.ndarray) -> jnp.ndarray:
    """PCGrad's projections expressed in the span of the task gradients.

    ``M = G G^T`` (T, T); ``orders[i]`` is the order (a permutation of
    0..T-1) in which task i visits the other tasks. Returns ``C`` (T, T) with
    ``g_i^PC = sum_s C[i, s] g_s``, i.e. ``G_PC = C G``. Per Algorithm 1: for
    each ``j != i`` in order, if ``g_i^PC . g_j < 0`` then
    ``g_i^PC <- g_i^PC - (g_i^PC . g_j / ||g_j||^2) g_j``. Working with
    coefficients makes every dot product ``(C M)[i, j]``: O(T^3) work after the
    Gram matrix instead of O(T^2 P).
    """
    T = M.shape[0]
    sq = jnp.diag(M)
    rows = jnp.arange(T)

    def step(k, C):
        j = orders[:, k]                                   # (T,) task visited by each i
        dots = jnp.sum(C * M[:, j].T, axis=1)              # g_i^PC . g_j
        conflict = (j != rows) & (dots < 0.0) & (sq[j] > 0.0)
        coef = jnp.where(conflict, dots / jnp.where(sq[j] > 0, sq[j], 1.0), 0.0)
        return C.at[rows, j].add(-coef)

    return lax.fori_loop(0, T, step, jnp.eye(T, dtype=M.dtype))


def random_orders(key, T: int) -> jnp.ndarray:
    """One independent uniformly random permutation of the tasks per task
    (T, T): the argsort of i.i.d. uniforms (ties have probability ~0)."""
    return jnp.argsort(jax.random.uniform(key, (T, T)), axis=1).astype(jnp.int32)


def pcgrad(reduction: str = "sum") -> Weighting:
    """PCGrad, Yu et al. (2020), Algorithm 1 (the projection
    ``g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j`` when ``g_i . g_j < 0``).

    Each task gradient ``g_i`` is projected in turn onto the normal plane of
    every other task gradient ``g_j`` it conflicts with, visiting the
    ``j != i`` in a random order drawn from ``key`` independently for each
    ``i`` (as the reference code's per-task shuffle). Conflicts are tested
    against the *original* ``g_j`` and the running projected ``g_i``.
    ``direction = sum_i g_i^PC = G^T C^T 1`` (``needs="gram"``;
    ``reduction="sum"``, the paper's update; "mean" divides by T); ``weights``
    are ones, so task-specific parameters get the gradient of ``sum_t L_t``
    (as in the reference code).

    Note: for T = 2 the result never conflicts with either original gradient;
    for T >= 3 a later projection can re-introduce a conflict with an earlier
    ``g_j`` - that is the algorithm as published, not a bug.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"pcgrad: reduction={reduction!r} is not valid; choose 'sum' or 'mean'")

    def combine(losses, M, state, key):
        T = M.shape[0]
        C = pcgrad_coefficients(jax.lax.stop_gradient(M).astype(jnp.float32), random_orders(key, T))
        coef = jnp.sum(C, axis=0)
        if reduction == "mean":
            coef = coef / T
        return jnp.ones_like(losses), coef, state, {}

    return Weighting("pcgrad", no_state, combine, "gram")
