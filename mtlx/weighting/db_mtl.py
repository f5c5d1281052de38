"""DB-MTL (Lin, Jiang, Ye, Zhang, Chen, Chen, Liu & Kwok, "Dual-Balancing for Multi-Task Learning",
arXiv:2308.12029, 2023)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting
from mtlx.weighting.moco import decayed
from mtlx.weighting.param_state import require_num_params


class DBMTLState(NamedTuple):
    ema: jnp.ndarray   # (T, P) the EMA of the log-loss gradients (0 at start)
    step: jnp.ndarray  # () int32: calls so far


def db_mtl_update(G, losses, state: DBMTLState, beta, beta_sigma, eps):
    """DB-MTL's two balancing steps (Lin et al. 2023, Sec. 3) on the (T, P) Jacobian ``G``.

    Loss-scale balancing: every task's loss is replaced by ``log(L_t + eps)``, whose
    gradient is ``g_t / (L_t + eps)``. Gradient-magnitude balancing: with the EMA

        h_t <- beta_k h_t + (1 - beta_k) g_t / (L_t + eps),     beta_k = beta / k^beta_sigma

    the shared direction is ``d = max_s ||h_s|| * sum_t h_t / ||h_t||`` (every task's
    normalised gradient scaled to the largest norm). Returns ``(d, new state)``.
    """
    k = state.step + 1
    b = decayed(beta, beta_sigma, k)
    logg = G / (losses[:, None] + eps)
    H = b * state.ema + (1.0 - b) * logg
    norms = jnp.sqrt(jnp.maximum(jnp.sum(H * H, axis=1), 0.0))
    scale = solvers.safe_div(jnp.max(norms), norms)
    return solvers.combine_rows(scale, H), DBMTLState(ema=H, step=k)


def db_mtl(beta: float = 0.9, beta_sigma: float = 0.0, eps: float = 1e-8) -> Weighting:
    """DB-MTL (``needs="jacobian"``): shared direction from :func:`db_mtl_update`;
    ``weights = 1 / (L_t + eps)`` (task-specific parameters get the gradient of
    ``sum_t log(L_t + eps)``, the loss-scale balancing). Defaults: LibMTL's
    (``beta=0.9``, constant).

    "jacobian", and a per-parameter state (``init(num_tasks, num_params)``): the EMA of
    past gradients is no function of the current Gram matrix.
    """

    def init(num_tasks, num_params: Optional[int] = None):
        P = require_num_params("db_mtl", num_params)
        return DBMTLState(ema=jnp.zeros((num_tasks, P), jnp.float32), step=jnp.zeros((), jnp.int32))

    def combine(losses, grads, state, key):
        L = jax.lax.stop_gradient(losses).astype(jnp.float32)
        G = jax.lax.stop_gradient(grads).astype(jnp.float32)
        d, new_state = db_mtl_update(G, L, state, beta, beta_sigma, eps)
        return (1.0 / (L + eps)).astype(losses.dtype), d.astype(grads.dtype), new_state, {}

    return Weighting("db_mtl", init, combine, "jacobian")
