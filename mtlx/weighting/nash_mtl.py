"""Nash-MTL (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya,
"Multi-Task Learning as a Bargaining Game", ICML 2022)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting


class NashMTLState(NamedTuple):
    alpha: jnp.ndarray  # (T,) the last solution (reused between updates)
    step: jnp.ndarray   # () int32: calls so far


def nash_weights(M: jnp.ndarray, *, max_iters: int = 100, tol: float = 1e-12, ridge: float = 1e-6):
    """Solve the Nash bargaining condition ``alpha_i (M alpha)_i = 1``, ``alpha > 0``.

    Navon et al. (2022), Sec. 3 (the bargaining solution's characterisation): with
    ``M = G G^T`` the solution of ``G G^T alpha = 1/alpha`` gives the Nash
    bargaining direction ``G^T alpha``. That condition is exactly the
    stationarity condition of the strictly convex, self-concordant

        F(alpha) = 1/2 alpha^T M alpha - sum_i log alpha_i,

    so we minimise F by damped Newton (Nesterov & Nemirovski's step
    ``1/(1 + lambda)``, ``lambda`` the Newton decrement), which stays in
    ``alpha > 0`` without a line search and converges quadratically near the
    solution; at most ``max_iters`` iterations, stop when ``lambda^2 < tol``.
    The reference code instead runs <= 20 iterations of a CCP with cvxpy/ECOS
    on the host.

    Scale invariance per task: with ``n_i = ||g_i||`` and ``C = M / (n n^T)``
    (the cosines), ``beta = n * alpha`` solves ``beta_i (C beta)_i = 1``, so
    we solve on ``C`` (+ ``ridge * I``, which keeps the problem bounded when
    gradients are linearly dependent) and return ``alpha = beta / n``:
    rescaling one task's gradient by ``s`` rescales its ``alpha`` by ``1/s``
    and changes nothing else, however small ``s`` is (the cosines are
    accurate in float32 whatever the norms). Start: ``beta = 1`` (exact for
    orthogonal gradients), rescaled to the best multiple.

    Degenerate inputs: a task whose gradient is zero at float32 resolution
    (``||g_i||^2 <= 1e-30``, an absolute threshold: the Gram matrix's float32
    entries lose their relative accuracy below it) has no finite solution
    (``alpha_i -> inf``); it is left out of the solve and gets the mean alpha
    of the others (all ones when every gradient is zero, e.g. no shared
    parameters). With linearly dependent gradients of mixed signs (e.g. a
    Pareto-stationary point) no solution exists either; the ridge then bounds
    ``beta`` (large, up to ~1e3).
    """
    M = M.astype(jnp.float32)
    dg = jnp.diag(M)
    deg = ~(dg > 1e-30)
    n = jnp.sqrt(jnp.where(deg, 1.0, dg))
    C = jnp.where(deg[:, None] | deg[None, :], 0.0, M / (n[:, None] * n[None, :]))
    C = C + jnp.diag(jnp.where(deg, 1.0, 0.0)) + ridge * jnp.eye(M.shape[0], dtype=jnp.float32)
    T = M.shape[0]
    b0 = jnp.ones((T,), jnp.float32) * jnp.sqrt(T / jnp.sum(C))
    alpha = solvers.barrier_newton(C, b0, 1.0, max_iters, tol) / n
    n_ok = jnp.sum(~deg)
    fill = jnp.where(n_ok > 0, jnp.sum(jnp.where(deg, 0.0, alpha)) / jnp.maximum(n_ok, 1), 1.0)
    return jnp.where(deg, fill, alpha)


def nash_mtl(max_norm: float = 1.0, update_weights_every: int = 1, max_iters: int = 100) -> Weighting:
    """Nash-MTL, Navon et al. (2022), Algorithm 1 (``needs="gram"``).

    ``alpha`` solves ``G G^T alpha = 1/alpha`` (:func:`nash_weights`);
    ``weights = alpha`` (the reference code back-propagates
    ``sum_t alpha_t L_t``, so task-specific parameters get alpha-weighted
    gradients) and ``direction = G^T alpha`` rescaled to norm at most
    ``max_norm`` (the reference code's ``clip_grad_norm_`` on the shared
    parameters, default 1.0; ``max_norm=0`` disables). Note
    ``||G^T alpha||^2 = alpha^T M alpha = T`` at the solution, so with the
    default the shared direction always has norm 1.
    ``update_weights_every=k`` recomputes ``alpha`` every k calls and reuses
    the previous one in between (reference code option; default 1).
    """
    if update_weights_every < 1:
        raise ValueError(f"nash_mtl: update_weights_every must be >= 1, got {update_weights_every}")

    def init(num_tasks):
        return NashMTLState(alpha=jnp.ones((num_tasks,), jnp.float32), step=jnp.zeros((), jnp.int32))

    def combine(losses, M, state, key):
        M = jax.lax.stop_gradient(M).astype(jnp.float32)
        if update_weights_every == 1:
            alpha = nash_weights(M, max_iters=max_iters)
        else:
            alpha = lax.cond(state.step % update_weights_every == 0,
                             lambda: nash_weights(M, max_iters=max_iters), lambda: state.alpha)
        # max_norm > 0: ||G^T alpha|| = sqrt(alpha^T M alpha) clipped to it
        norm = jnp.sqrt(jnp.maximum(alpha @ M @ alpha, 0.0))
        coef = jnp.where(jnp.asarray(max_norm) > 0, alpha * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30)), alpha)
        new_state = NashMTLState(alpha=alpha, step=state.step + 1)
        return alpha.astype(losses.dtype), coef, new_state, {}

    return Weighting("nash_mtl", init, combine, "gram")
