"""SDMGrad (Xiao, Ban & Ji, "Direction-oriented Multi-objective Learning: Simple and
Provable Stochastic Algorithms", NeurIPS 2023)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting


class SDMGradState(NamedTuple):
    w: jnp.ndarray  # (T,) the simplex weights (uniform at start; warm start of the next call)


def sdmgrad_weights(M: jnp.ndarray, w: jnp.ndarray, lam, num_iters: int, lr, momentum) -> jnp.ndarray:
    """SDMGrad's inner problem (Xiao et al. 2023, Sec. 4, Algorithm 1)::

        min_{w in simplex} 1/2 || G^T w + lam g0 ||^2,      g0 = mean_t g_t

    by ``num_iters`` projected stochastic-gradient steps from ``w``, the gradient being
    ``G G^T w + lam G g0 = M w + lam M 1 / T``. As the authors' code, ``M`` is first divided
    by the squared mean gradient norm (scale-free steps) and the steps use heavy-ball
    momentum (``momentum``; the buffer starts at 0 each call). The step is
    ``min(lr, 1 / tr(Mn))``: the code's ``lr = 5`` times the curvature (up to ``tr(Mn) >= T``)
    is far above 2, so its iterates bounce between faces of the simplex and depend on
    rounding; capped at ``1 / tr(Mn) <= 1 / lambda_max`` they converge to the inner
    problem's solution (warm-started from the previous call's ``w``)."""
    T = M.shape[0]
    scale = jnp.mean(jnp.sqrt(jnp.maximum(jnp.diag(M), 0.0))) ** 2
    Mn = solvers.safe_div(M, scale)
    Mg0 = jnp.mean(Mn, axis=1)
    eta = jnp.minimum(lr, solvers.safe_div(1.0, jnp.trace(Mn)))

    def step(_, c):
        w, buf = c
        buf = momentum * buf + (Mn @ w + lam * Mg0)
        return solvers.project_simplex(w - eta * buf), buf

    w, _ = lax.fori_loop(0, num_iters, step, (w, jnp.zeros((T,), M.dtype)))
    return w


def sdmgrad(lam: float = 0.3, num_iters: int = 20, lr: float = 5.0, momentum: float = 0.5) -> Weighting:
    """SDMGrad (``needs="gram"``): ``w`` from :func:`sdmgrad_weights` (kept in the state),
    ``direction = (G^T w + lam g0) / (1 + lam)``, ``weights`` ones. ``lam=0.3``,
    ``num_iters=20``: LibMTL's defaults; ``lr=5`` (capped, see :func:`sdmgrad_weights`),
    ``momentum=0.5``: the authors' inner optimiser. ``lam`` trades the min-norm (MGDA-like, 0) against the mean direction.

    Deviation: the paper uses three independent mini-batches (two for the ``w`` steps,
    one for the direction); the step gives one Jacobian, so they are the same batch.
    """

    def init(num_tasks):
        return SDMGradState(w=jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32))

    def combine(losses, M, state, key):
        T = losses.shape[0]
        M = jax.lax.stop_gradient(M).astype(jnp.float32)
        w = sdmgrad_weights(M, state.w, lam, num_iters, lr, momentum)
        coef = (w + lam / T) / (1.0 + lam)
        return jnp.ones_like(losses), coef, SDMGradState(w=w), {"w": w}

    return Weighting("sdmgrad", init, combine, "gram")
