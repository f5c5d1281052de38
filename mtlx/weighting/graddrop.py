"""GradDrop (Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov, "Just
Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign Dropout",
NeurIPS 2020)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting, is_number, no_state


def graddrop_direction(G: jnp.ndarray, key, leak: float = 0.0) -> jnp.ndarray:
    """Gradient Sign Dropout on a (T, P) gradient matrix, Chen et al. (2020),
    Algorithm 1, applied per coordinate of the shared parameters::

        P    = 0.5 * (1 + sum_i g_i / sum_i |g_i|)            (sign purity, in [0, 1])
        U    ~ Uniform(0, 1)                                  (one draw per coordinate)
        M_i  = [P > U] [g_i > 0] + [P < U] [g_i < 0]
        out  = sum_i (leak + (1 - leak) M_i) g_i

    With ``leak=0`` every coordinate keeps only the positive or only the
    negative components. Coordinates with ``sum |g| = 0`` get ``P = 0.5``.
    Computed without any (T, P) mask: with ``s = sum_i g_i`` and
    ``a = sum_i |g_i|`` (two matvecs), the kept positive components sum to
    ``(s + a) / 2`` and the negative ones to ``(s - a) / 2``.
    """
    T = G.shape[0]
    Gf = G.astype(jnp.float32)
    ones = jnp.ones((T,), jnp.float32)
    s = jnp.matmul(ones, Gf, precision=solvers.HIGHEST)
    a = jnp.matmul(ones, jnp.abs(Gf), precision=solvers.HIGHEST)
    purity = 0.5 * (1.0 + jnp.where(a > 0, s / jnp.where(a > 0, a, 1.0), 0.0))
    U = jax.random.uniform(key, purity.shape, jnp.float32)
    kept = jnp.where(purity > U, 0.5 * (s + a), jnp.where(purity < U, 0.5 * (s - a), 0.0))
    return (leak * s + (1.0 - leak) * kept).astype(G.dtype)


def graddrop(leak: float = 0.0) -> Weighting:
    """GradDrop, Chen et al. (2020): ``direction`` is the sign-dropped sum of the
    per-task gradients of the shared parameters (``needs="jacobian"``; the
    paper inserts the layer at activations - the per-coordinate rule is
    the same). ``leak=0`` (paper default for pure GradDrop); ``weights`` ones.
    Randomness from ``key``.
    """
    if is_number(leak) and not 0.0 <= leak <= 1.0:
        raise ValueError(f"graddrop: leak must be in [0, 1], got {leak}")

    def combine(losses, grads, state, key):
        d = graddrop_direction(jax.lax.stop_gradient(grads), key, leak)
        return jnp.ones_like(losses), d, state, {}

    return Weighting("graddrop", no_state, combine, "jacobian")
