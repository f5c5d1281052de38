"""MoCo (Fernando, Shen, Liu, Chaudhury, Murugesan & Chen, "Mitigating Gradient Bias
in Multi-objective Learning: A Provably Convergent Approach", ICLR 2023)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting
from mtlx.weighting.param_state import require_num_params


class MoCoState(NamedTuple):
    tracked: jnp.ndarray  # (T, P) Y, the tracked task gradients (0 at start)
    lam: jnp.ndarray      # (T,) lambda, on the simplex (uniform at start)
    step: jnp.ndarray     # () int32: calls so far


def decayed(rate, sigma, k):
    """``rate / k^sigma`` at call ``k >= 1`` (the papers' decaying step sizes; sigma = 0: constant)."""
    return rate / jnp.power(k.astype(jnp.float32), sigma)


def moco_update(G, state: MoCoState, beta, beta_sigma, gamma, gamma_sigma, rho):
    """One MoCo step (Fernando et al. 2023, Algorithm 1) on the (T, P) Jacobian ``G``::

        Y   <- Y - beta_k (Y - G)                                 (gradient tracking)
        lam <- Proj_simplex(lam - gamma_k (Y Y^T + rho I) lam)
        d    = Y^T lam

    with ``beta_k = beta / k^beta_sigma`` and ``gamma_k = gamma / k^gamma_sigma`` at call
    ``k``. Returns ``(d, new state)``. (The paper also projects each ``y_i`` onto a ball
    of radius ``L_i``, a bound used by its analysis; that ball is taken as unbounded.)
    """
    k = state.step + 1
    Y = state.tracked - decayed(beta, beta_sigma, k) * (state.tracked - G)
    YY = solvers.gram(Y)
    lam = solvers.project_simplex(state.lam - decayed(gamma, gamma_sigma, k) * (YY @ state.lam + rho * state.lam))
    return solvers.combine_rows(lam, Y), MoCoState(tracked=Y, lam=lam, step=k)


def moco(beta: float = 0.5, beta_sigma: float = 0.5, gamma: float = 0.1, gamma_sigma: float = 0.5,
         rho: float = 0.0) -> Weighting:
    """MoCo (``needs="jacobian"``): the direction ``Y^T lam`` of the tracked gradients
    (:func:`moco_update`). ``weights`` are ones (task-specific parameters get their own
    gradients). Defaults: LibMTL's (beta 0.5, gamma 0.1, both decaying as k^-0.5, rho 0).

    "jacobian", and a per-parameter state (``init(num_tasks, num_params)``): ``Y`` is a
    running average of past Jacobians, which no function of the current Gram matrix gives.
    """

    def init(num_tasks, num_params: Optional[int] = None):
        P = require_num_params("moco", num_params)
        return MoCoState(tracked=jnp.zeros((num_tasks, P), jnp.float32),
                         lam=jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32), step=jnp.zeros((), jnp.int32))

    def combine(losses, grads, state, key):
        G = jax.lax.stop_gradient(grads).astype(jnp.float32)
        d, new_state = moco_update(G, state, beta, beta_sigma, gamma, gamma_sigma, rho)
        return jnp.ones_like(losses), d.astype(grads.dtype), new_state, {"lambda": new_state.lam}

    return Weighting("moco", init, combine, "jacobian")
