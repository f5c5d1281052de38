"""DualProj (TorchJD's ``DualProj``; the projection of Lopez-Paz & Ranzato, "Gradient
Episodic Memory for Continual Learning", NeurIPS 2017, Eq. 11-13, applied to the mean
gradient; Quinton & Rey, arXiv:2406.16232, 2024)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting, no_state


def dualproj_weights(M: jnp.ndarray, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> jnp.ndarray:
    """Weights ``w`` with ``G^T w`` the projection of the mean gradient ``G^T u``
    (``u = 1/T``) onto the dual cone ``{v : G v >= 0}`` of the task gradients.

    GEM's dual (Lopez-Paz & Ranzato 2017, Eq. 13; Quinton & Rey 2024, Prop. 1): the
    projection is ``G^T (u + mu)`` with ``mu = argmin_{mu >= 0} 1/2 mu^T M mu + (M u)^T mu``,
    solved in-jit by :func:`solvers.nonneg_qp`. As TorchJD, ``M`` is first divided by its
    trace (zero below ``norm_eps``) and ``reg_eps * I`` is added.
    """
    T = M.shape[0]
    M = M.astype(jnp.float32)
    tr = jnp.trace(M)
    Mn = jnp.where(tr < norm_eps, 0.0, M / jnp.where(tr > 0, tr, 1.0))
    Mr = Mn + reg_eps * jnp.eye(T, dtype=jnp.float32)
    u = jnp.full((T,), 1.0 / T, jnp.float32)
    return u + solvers.nonneg_qp(Mr, Mr @ u)


def dualproj(norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> Weighting:
    """DualProj (``needs="gram"``): ``direction = G^T w`` (:func:`dualproj_weights`), the
    closest vector to the mean gradient that conflicts with no task gradient; equal to
    the mean when that conflicts with none. ``weights`` are ones. ``norm_eps``,
    ``reg_eps``: TorchJD's defaults."""

    def combine(losses, M, state, key):
        w = dualproj_weights(jax.lax.stop_gradient(M), norm_eps, reg_eps)
        return jnp.ones_like(losses), w, state, {"aggregation_weights": w}

    return Weighting("dualproj", no_state, combine, "gram")
