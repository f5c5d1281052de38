"""IMTL (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial
Multi-task Learning", ICLR 2021)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtlx.weighting.base import EmptyState, Weighting, no_state
from mtlx.weighting.solvers import HIGHEST


class IMTLState(NamedTuple):
    log_scale: jnp.ndarray  # (T,) s, the learned loss scales exp(s) (IMTL-L)
    opt_state: Any          # their Adam state


def equal_cosine_coefficients(M: jnp.ndarray, rcond: float = 1e-4) -> jnp.ndarray:
    """``a = C^+ 1 / n`` from the Gram matrix ``M`` (``n_t = ||g_t||``, ``C`` the cosine matrix):
    ``G^T a`` has the same projection on every unit task gradient (IMTL-G's and ConFIG's common
    core). ``C^+`` from ``eigh`` (eigenvalues below ``rcond * T`` dropped); tasks with a zero
    gradient (``||g_t||^2 <= 1e-30``) get 0."""
    T = M.shape[0]
    dg = jnp.diag(M)
    ok = dg > 1e-30
    n = jnp.sqrt(jnp.where(ok, dg, 1.0))
    C = jnp.where(ok[:, None] & ok[None, :], M / (n[:, None] * n[None, :]), 0.0)
    lam, V = jnp.linalg.eigh(C)
    keep = lam > rcond * T
    inv = jnp.where(keep, 1.0 / jnp.where(keep, lam, 1.0), 0.0)
    beta = jnp.matmul(V, inv * jnp.matmul(ok.astype(jnp.float32), V, precision=HIGHEST), precision=HIGHEST)
    a = jnp.where(ok, beta / n, 0.0)
    return a


def imtl_g_weights(M: jnp.ndarray, rcond: float = 1e-4) -> jnp.ndarray:
    """IMTL-G's weights (the paper's gradient balance, Algorithm 1) on ``M = G G^T``,
    generalised to linearly dependent gradients by a pseudo-inverse.

    The paper asks for ``g = sum_t alpha_t g_t`` with equal projections
    ``g . u_t`` on every unit task gradient ``u_t = g_t / ||g_t||`` and
    ``sum alpha = 1`` (its closed form ``alpha_{2:T} = g_1 U^T (D U^T)^{-1}``).
    With ``n_t = ||g_t||`` and the cosine matrix ``C = M / (n n^T)``, equal
    projections ``u_t . G^T alpha = k`` read ``C beta = k 1`` with
    ``beta = n * alpha``, so::

        beta = C^+ 1,      alpha = (beta / n) / sum_t (beta_t / n_t)

    With independent gradients ``C^+ = C^{-1}`` and this is exactly the
    paper's solution (and TorchJD's ``pinv(M) n / sum``). With linearly
    dependent gradients (e.g. T > P, where exact equal projections generically
    force ``g = 0`` and the paper's ``(D U^T)^{-1}`` is singular or returns
    weights combining to ~0), ``beta`` is the minimum-norm least-squares
    solution of ``C beta = 1``: ``G^T alpha`` is the direction in the span of
    the gradients whose projections on the unit task gradients are closest
    (least squares, every task counted equally) to being equal. Unlike
    TorchJD's ``pinv(M) n`` (which weighs task t's residual by ``n_t``), this
    keeps IMTL-G's invariance to rescaling one task's gradient.
    ``C^+`` is computed from ``eigh(C)``, eigenvalues below ``rcond * T``
    (float32 noise of a singular ``C`` is ~1e-6) treated as zero.

    Degenerate cases: a task with ``||g_t||^2 <= 1e-30`` (zero at float32
    resolution) has no direction; it gets ``alpha_t = 0`` and is left out.
    When ``|sum_t beta_t / n_t| <= 1e-6 sum_t |beta_t| / n_t`` (no
    equal-projection direction can be normalised to ``sum alpha = 1``, e.g.
    ``g_2 = -g_1``, whose IMTL-G direction is 0) or every gradient is zero,
    ``alpha = 0``: the shared parameters do not move (TorchJD's rule).
    The common projection ``k = 1 / sum_t(beta_t / n_t)`` can be negative (for
    T >= 3 with strongly conflicting gradients): IMTL-G then increases every
    task's loss to first order, as published (no first-order guarantee).
    """
    a = equal_cosine_coefficients(M.astype(jnp.float32), rcond)
    s = jnp.sum(a)
    good = jnp.abs(s) > 1e-6 * jnp.sum(jnp.abs(a))
    return jnp.where(good, a / jnp.where(good, s, 1.0), 0.0)


def imtl(loss_scaling: bool = False, lr: float = 1e-3) -> Weighting:
    """IMTL-G (default) or hybrid IMTL (``loss_scaling=True``), ``needs="gram"``.

    IMTL-G: ``direction = sum_t alpha_t g_t`` with ``alpha`` from
    :func:`imtl_g_weights`; ``weights`` are ones (task-specific parameters
    get their own loss gradients, paper Algorithm 1).

    IMTL-L (the paper's loss balance): each loss is replaced by ``exp(s_t) L_t - s_t``
    with a learned scale ``s_t`` (at the optimum ``exp(s_t) L_t = 1``). Here
    ``s`` lives in the weighting state and takes one Adam step (``lr``) per
    call on that objective (gradient ``exp(s_t) L_t - 1``), instead of being
    a parameter of the run's optimizer. The hybrid then runs IMTL-G on the
    scaled gradients ``exp(s_t) g_t``: ``direction = sum_t alpha_t exp(s_t) g_t``
    and ``weights = exp(s_t)`` for the task-specific parameters.
    """
    tx = optax.adam(lr)

    def init(num_tasks):
        if not loss_scaling:
            return EmptyState()
        s = jnp.zeros((num_tasks,), jnp.float32)
        return IMTLState(log_scale=s, opt_state=tx.init(s))

    def combine(losses, M, state, key):
        M = jax.lax.stop_gradient(M)
        if loss_scaling:
            s = state.log_scale
            scale = jnp.exp(s)
            alpha = imtl_g_weights(M * scale[:, None] * scale[None, :])
            coef = alpha * scale
            g = scale * jax.lax.stop_gradient(losses).astype(jnp.float32) - 1.0
            updates, opt_state = tx.update(g, state.opt_state, s)
            new_state = IMTLState(log_scale=optax.apply_updates(s, updates), opt_state=opt_state)
            weights = scale
        else:
            alpha = imtl_g_weights(M)
            coef, new_state, weights = alpha, state, jnp.ones_like(losses)
        return weights.astype(losses.dtype), coef, new_state, {"alpha": alpha}

    return Weighting("imtl", init, combine, "gram")


def imtl_l(init_log_scale: float = 0.0) -> Weighting:
    """IMTL-L, the loss-balancing half of IMTL (Liu et al. 2021, Sec. 3.2), alone
    (``needs="none"``).

    Each task's loss is replaced by the scale-balanced ``exp(s_t) L_t - s_t`` with a
    learned ``s_t`` (``init_params``; trained jointly with the model by the run's
    optimizer, as in the paper). Its gradient in ``s_t`` is ``exp(s_t) L_t - 1``, so at
    the optimum every scaled loss ``exp(s_t) L_t`` equals 1 (``s_t* = -log L_t``); the
    model gets the gradient of ``sum_t exp(s_t) L_t`` (effective weights ``exp(s_t)``,
    see :func:`mtlx.weighting.base.objective_weights`).
    """

    def init_params(num_tasks):
        return {"log_scale": jnp.full((num_tasks,), init_log_scale, jnp.float32)}

    def objective(losses, params):
        s = params["log_scale"].astype(losses.dtype)
        return jnp.sum(jnp.exp(s) * losses - s)

    def combine(losses, grads, state, key):
        return jnp.ones_like(losses), None, state, {}

    return Weighting("imtl_l", no_state, combine, "none", init_params, objective)
