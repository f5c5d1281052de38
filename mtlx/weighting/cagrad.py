"""CAGrad (Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for
Multi-task Learning", NeurIPS 2021).

float32 and the Gram matrix: a quadratic form ``w^T M w`` (w in the
simplex) is known only to about ``e = eps_f32 max_i ||g_i||^2`` (the
Gram's own rounding), so ``||g_w||`` below ``sqrt(e) ~ 3.5e-4 max||g||``
(near a Pareto-stationary point) is noise. Hence every norm from ``M``
is taken as ``sqrt(w^T M w + e)`` (an upper bound: the step
``sqrt(phi) g_w / ||g_w||`` can only come out shorter than the radius,
never outside the ball), ``||g0||^2`` as ``1^T M 1 / T^2 - e`` (a lower
bound), and ``lam`` is bracketed in ``[sqrt(e), sqrt(max||g||^2 + e)] /
sqrt(phi)``. This is the exact dual for gradients augmented by a
common coordinate ``sqrt(e)`` (``M + e 1 1^T``), a perturbation at the
Gram's own error level; far from stationarity it moves ``d`` by
``~e / ||g_w||^2`` relative. Finally (:func:`_safeguard`) ``d`` is
compared, on ``min_i g_i . d`` computed from ``M``, with the other
feasible points ``g0`` and (when ``c >= 1``) ``0``, and the better one
is returned: at an exactly stationary point with ``c >= 1``, ``d = 0``
(optimal there). ``c = 0`` (static) or ``||g0||^2 <= e`` give ``d = g0``
(or 0 if ``c >= 1`` and that is better).

Accuracy (tests/unit/test_weighting_edges.py, against a float64 solve
of the primal on the same float32 matrix, T in {2, 3, 5, 10}):
``||d - g0|| <= sqrt(phi)`` up to ``1e-4`` relative, and the worst task's
``min_i g_i . d`` within ``1e-3 c ||g0|| max||g||`` of the optimum (measured:
2.1e-4), also at and near stationary points (min-norm point 0 .. 1e-3
max||g||). The direction itself is then not determined by the float32 Gram
(another ``d`` with nearly the same worst task can be far away: measured
up to 100% off when c = 2); where the ball does not reach a descent
direction for all tasks (c = 0.5 on the same matrices) it matched to
2.3e-5 relative, and on well-conditioned problems to ~1e-6.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting, is_number, no_state


def _last_nonneg(s):
    """Index of the last grid point with ``s >= 0``, clipped to a valid bracket
    start. ``s`` is decreasing in exact arithmetic; at tiny ``lam`` float32
    cancellation in ``w^T M w`` (0 inside the hull) makes it noisy, so we look
    for the crossing from the top rather than counting non-negative entries."""
    n = s.shape[0]
    idx = jnp.where(s >= 0, jnp.arange(n), -1)
    return jnp.clip(jnp.max(idx), 0, n - 2)


_EPS = 1.1920929e-07   # float32 machine epsilon


def _mv(A, x):
    return jnp.matmul(A, x, precision=solvers.HIGHEST)


def cagrad_coefficients(M: jnp.ndarray, c: float, *, grid: int = 16, rounds: int = 4):
    """Solve CAGrad's dual on the Gram matrix ``M = G G^T``.

    The paper's dual (of the primal ``max_d min_i g_i.d`` s.t.
    ``||d - g0|| <= sqrt(phi)``)::

        w* = argmin_{w in simplex} F(w) = g_w . g0 + sqrt(phi) ||g_w||,
        g_w = G^T w,  g0 = mean_i g_i,  phi = c^2 ||g0||^2,
        d  = g0 + sqrt(phi) / ||g_w*|| * g_w*

    Returns ``(coef, w)`` with ``d = G^T coef``, ``coef = 1/T + sqrt(phi)/||g_w|| w``.

    In-jit solver: ``sqrt(phi) ||g_w|| = min_{lam>0} ||g_w||^2/(2 lam) + lam phi/2``,
    so ``min_w F = min_lam h(lam)`` with
    ``h(lam) = min_w [g_w.g0 + ||g_w||^2 / (2 lam)] + lam phi / 2`` jointly convex;
    the inner problem is a simplex QP (:func:`solvers.simplex_qp`) and, by
    Danskin, the optimal ``lam`` is the root of the decreasing
    ``||g_w(lam)|| / lam - sqrt(phi)``, located by ``rounds`` rounds of a
    ``grid``-point log-spaced search (the ``grid`` QPs of a round in one
    vmapped batch), then the two bracketing solutions are interpolated
    linearly at the root of the interpolated score.

    float32 near a Pareto-stationary point: see the module docstring (norms
    from ``M`` taken with the Gram's uncertainty ``e``, :func:`_safeguard`).
    """
    T = M.shape[0]
    M = M.astype(jnp.float32)
    mean = jnp.full((T,), 1.0 / T, jnp.float32)
    if is_number(c) and c == 0:                              # static: d = g0, no search
        return mean, mean
    b = _mv(M, mean)                                         # b_i = g_i . g0
    gmax2 = jnp.maximum(jnp.max(jnp.diag(M)), 0.0)
    e = _EPS * gmax2                                         # the Gram's uncertainty on w^T M w
    sqrt_phi = c * jnp.sqrt(jnp.maximum(jnp.mean(b) - e, 0.0))
    degenerate = ~(sqrt_phi > 0)
    sp = jnp.where(degenerate, 1.0, sqrt_phi)
    e_safe = jnp.where(degenerate, 1.0, e)
    lo = jnp.where(degenerate, -1.0, 0.5 * jnp.log(e_safe) - jnp.log(sp))
    hi = jnp.where(degenerate, 0.0, 0.5 * jnp.log(jnp.where(degenerate, 1.0, gmax2 + e)) - jnp.log(sp))
    w = _dual_root(M, b, sp, e, lo, hi, grid, rounds)
    gw_norm = jnp.sqrt(jnp.maximum(w @ _mv(M, w), 0.0) + e_safe)
    coef = mean + jnp.where(degenerate, 0.0, sqrt_phi / gw_norm) * w
    return _safeguard(M, coef, mean, c, e), w


def _safeguard(M, coef, mean, c, e):
    """``coef``, or a trivially feasible point with a better worst task ``min_i (M x)_i``
    (beyond ``margin``, the float32 error of those values): ``g0``; ``0`` when ``c >= 1``,
    preferred within the margin (at a stationary point, ``d = 0`` is optimal)."""
    vals = jnp.min(_mv(jnp.stack([coef, mean]), M), axis=1)
    margin = 4.0 * e * (1.0 + jnp.sum(jnp.abs(coef)))
    out = jnp.where(vals[1] > vals[0] + margin, mean, coef)
    return jnp.where((jnp.asarray(c) >= 1) & (jnp.max(vals) <= margin), jnp.zeros_like(coef), out)


def _dual_root(M, b, sp, e, lo, hi, grid, rounds):
    """The simplex weights ``w(lam)`` at the root of the score ``sqrt(||g_w(lam)||^2 + e) / lam
    - sqrt(phi)`` in ``log(lam) in [lo, hi]``: ``rounds`` rounds of a ``grid``-point search,
    then linear interpolation of the two bracketing solutions (see :func:`cagrad_coefficients`)."""

    def evaluate(loglam, x0):
        # argmin_w  w.b + w^T M w / (2 lam)   <=>   argmin_w 1/2 w^T M w + lam w.b
        lam = jnp.exp(loglam)
        w = solvers.simplex_qp(M, lam * b, x0=x0)
        norm = jnp.sqrt(jnp.maximum(w @ _mv(M, w), 0.0) + e)
        return norm / lam - sp, w                              # score decreasing in lam

    def search(a, z, x0):
        pts = jnp.linspace(a, z, grid)
        s, W = jax.vmap(evaluate, in_axes=(0, None))(pts, x0)
        k = _last_nonneg(s)
        return pts[k], pts[k + 1], s[k], s[k + 1], W[k], W[k + 1]

    # round 1 from the best vertex; later rounds search inside the last bracket,
    # warm-started from its lower end's solution (a few active-set solves, not ~T)
    a, z, s0, s1, w0, w1 = search(lo, hi, None)
    a, z, s0, s1, w0, w1 = lax.fori_loop(
        1, rounds, lambda _, c: search(c[0], c[1], c[4]), (a, z, s0, s1, w0, w1))
    # root of the score by linear interpolation in log(lam); w(lam) is
    # piecewise smooth, so interpolating the two bracketing solutions is
    # second-order accurate in the final bracket width (and stays feasible)
    t = jnp.where(s0 - s1 > 0, jnp.clip(s0 / jnp.where(s0 - s1 > 0, s0 - s1, 1.0), 0.0, 1.0), 0.0)
    return (1.0 - t) * w0 + t * w1


def cagrad(c: float = 0.5, rescale: int = 1) -> Weighting:
    """CAGrad, Liu et al. (2021), Algorithm 1 (``needs="gram"``).

    ``direction = d / (1 + c^2)`` (``rescale=1``, the default of the authors'
    ``cagrad()`` function), ``d`` (``rescale=0``) or ``d / (1 + c)``
    (``rescale=2``), with ``d = g0 + sqrt(phi)/||g_w|| g_w`` and ``g0`` the
    *mean* task gradient (the paper's convention) - so ``c = 0`` gives the
    mean gradient. ``weights`` are ones (task-specific parameters get the
    gradient of ``sum_t L_t``, as in the reference code). ``c=0.5``: the
    reference function's default (the paper's NYUv2/Cityscapes runs use 0.4).
    The dual is solved in-jit (see :func:`cagrad_coefficients`).
    """
    if is_number(c) and c < 0:
        raise ValueError(f"cagrad: c must be >= 0, got {c}")
    if rescale not in (0, 1, 2):
        raise ValueError(f"cagrad: rescale must be 0, 1 or 2, got {rescale}")
    factor = {0: 1.0, 1: 1.0 / (1.0 + c * c), 2: 1.0 / (1.0 + c)}[rescale]

    def combine(losses, M, state, key):
        coef, w = cagrad_coefficients(jax.lax.stop_gradient(M), c)
        return jnp.ones_like(losses), factor * coef, state, {"dual_weights": w}

    return Weighting("cagrad", no_state, combine, "gram")
