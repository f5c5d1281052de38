"""IMTL (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial
Multi-task Learning", ICLR 2021)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtlx.weighting.base import EmptyState, Weighting


class IMTLState(NamedTuple):
    log_scale: jnp.ndarray  # (T,) s, the learned loss scales exp(s) (IMTL-L)
    opt_state: Any          # their Adam state


def imtl_g_weights(M: jnp.ndarray) -> jnp.ndarray:
    """IMTL-G's closed form (the paper's gradient balance, Algorithm 1) on ``M = G G^T``.

    With ``u_t = g_t / ||g_t||``, ``D = [g_1 - g_t]_{t>=2}``,
    ``U = [u_1 - u_t]_{t>=2}``::

        alpha_{2:T} = g_1 U^T (D U^T)^{-1},     alpha_1 = 1 - sum_{t>=2} alpha_t

    so that ``g = sum_t alpha_t g_t`` has equal projections ``g . u_t`` on every
    unit task gradient (and ``sum alpha = 1``). All the inner products come
    from ``M``: ``g_k . u_l = M_kl / ||g_l||``. Singular when the gradients are
    linearly dependent (e.g. T > P), as the method itself; a non-finite
    solve falls back to ``alpha = 1/T`` (the mean gradient).
    """
    T = M.shape[0]
    if T == 1:
        return jnp.ones((1,), jnp.float32)
    M = M.astype(jnp.float32)
    n = jnp.sqrt(jnp.maximum(jnp.diag(M), 0.0))
    n = jnp.where(n > 0, n, 1.0)
    N = M / n[None, :]                                        # N[k, l] = g_k . u_l
    a = N[0, 0] - N[0, 1:]                                    # g_1 . (u_1 - u_l)
    DU = N[0, 0] - N[0, 1:][None, :] - N[1:, 0][:, None] + N[1:, 1:]
    alpha_rest = jnp.linalg.solve(DU.T, a)                    # row vector a (DU)^{-1}
    alpha = jnp.concatenate([1.0 - jnp.sum(alpha_rest, keepdims=True), alpha_rest])
    # singular system (e.g. all gradients zero): fall back to the mean, 1/T
    return jnp.where(jnp.all(jnp.isfinite(alpha)), alpha, 1.0 / T)


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
