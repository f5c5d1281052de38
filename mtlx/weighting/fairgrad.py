"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting, no_state

_TINY = 1e-30


def fairgrad_weights(M: jnp.ndarray, alpha, *, max_iters: int = 100, tol: float = 1e-10):
    """FairGrad's weights on ``M = G G^T``: the positive solution of (Ban & Ji 2024, Sec. 4)::

        (G G^T w)_i = w_i^(-1/alpha)        for every task i

    the condition for ``d = G^T w`` to maximise the alpha-fair utility
    ``sum_i (g_i . d)^(1 - alpha) / (1 - alpha)`` over a ball (``alpha = 1``:
    ``sum_i log(g_i . d)``, proportional fairness, i.e. Nash-MTL's ``w_i (M w)_i = 1``).
    The condition is the stationarity of the strictly convex

        F(w) = 1/2 w^T M w - sum_i h(w_i),   h'(w) = w^(-1/alpha)

    (``h = log`` at alpha = 1, else ``w^(1 - 1/alpha) / (1 - 1/alpha)``), minimised here by
    damped Newton steps ``1/(1 + lambda)`` (``lambda`` the Newton decrement), cut to stay in
    ``w > 0``, at most ``max_iters``, until ``lambda^2 < tol``. The authors' code solves the
    same equations by least squares with scipy on the host.

    Scale: with ``M = s Mn`` (``s = max diag M``), ``w = s^(-alpha/(1+alpha)) wn`` where
    ``wn`` solves the condition on ``Mn``; solved on ``Mn + 1e-6 I`` (the ridge keeps it
    bounded for linearly dependent gradients). A task whose gradient is zero at float32
    resolution (``||g_i||^2 <= 1e-12 s``) has no finite solution; it gets the mean ``w`` of
    the others (its row adds nothing to the direction). All-zero ``M``: ``w = 1``.
    """
    T = M.shape[0]
    M = M.astype(jnp.float32)
    s = jnp.max(jnp.diag(M))
    ok = s > _TINY
    Mn = jnp.where(ok, M / jnp.where(ok, s, 1.0), 0.0) + 1e-6 * jnp.eye(T, dtype=jnp.float32)
    p = 1.0 / alpha

    wn = solvers.barrier_newton(Mn, jnp.ones((T,), jnp.float32), p, max_iters, tol, to_boundary=True)
    scale = jnp.where(ok, jnp.power(jnp.where(ok, s, 1.0), -alpha / (1.0 + alpha)), 1.0)
    w = wn * scale
    deg = ~(jnp.diag(M) > 1e-12 * s)
    n_ok = jnp.sum(~deg)
    fill = jnp.sum(jnp.where(deg, 0.0, w)) / jnp.maximum(n_ok, 1)
    return jnp.where(ok, jnp.where(deg, fill, w), 1.0)


def fairgrad(alpha: float = 1.0, max_norm: float = 0.0, max_iters: int = 100) -> Weighting:
    """FairGrad, Ban & Ji (2024), Algorithm 1 (``needs="gram"``).

    ``w`` solves ``G G^T w = w^(-1/alpha)`` (:func:`fairgrad_weights`); ``direction = G^T w``
    and ``weights = w`` (the authors' code back-propagates ``sum_t w_t L_t``, as Nash-MTL's).
    ``alpha=1`` (LibMTL's default; the paper sweeps it) is Nash-MTL's bargaining solution;
    larger alpha leans towards max-min fairness. ``max_norm > 0`` rescales the direction
    to at most that norm (off by default). ``alpha`` must be > 0; it enters only
    arithmetic, so it can be a traced value.
    """
    if isinstance(alpha, (int, float)) and not alpha > 0:
        raise ValueError(f"fairgrad: alpha={alpha!r} is not valid; it must be > 0")

    def combine(losses, M, state, key):
        M = jax.lax.stop_gradient(M).astype(jnp.float32)
        w = fairgrad_weights(M, alpha, max_iters=max_iters)
        norm = jnp.sqrt(jnp.maximum(w @ M @ w, 0.0))
        clip = jnp.where(max_norm > 0, jnp.minimum(1.0, max_norm / jnp.maximum(norm, _TINY)), 1.0)
        return w.astype(losses.dtype), w * clip, state, {}

    return Weighting("fairgrad", no_state, combine, "gram")
