"""GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtlx.weighting.base import Weighting, state_optimizer


class GradNormState(NamedTuple):
    weights: jnp.ndarray         # (T,) w(t), the loss weights of the next step
    opt_state: Any               # the weights' optimizer state
    initial_losses: jnp.ndarray  # (T,) L(0)
    started: jnp.ndarray         # () bool: whether L(0) is set


def gradnorm(alpha: float = 1.5, lr: float = 1e-3, optimizer: str = "adam",
             min_weight: float = 1e-3) -> Weighting:
    """GradNorm, Chen et al. (2018), Algorithm 1 (the L_grad loss of its Sec. 3).

    Learned loss weights ``w`` (state, init 1). At step t, with ``g_i`` the
    gradient of ``L_i`` w.r.t. the shared parameters (``needs="gram"``: the
    norms ``||g_i||`` are the root of the Gram matrix's diagonal; the paper
    uses the last shared layer, we use all shared parameters)::

        G_i   = ||grad_W w_i L_i|| = w_i ||g_i||,        G_bar = mean_i G_i
        r_i   = Ltilde_i / mean_j Ltilde_j,              Ltilde_i = L_i(t) / L_i(0)
        L_grad = sum_i | G_i - G_bar * r_i^alpha |         (target held constant)

    The step uses ``w(t)`` (returned) and the state moves to ``w(t+1)``: one
    optimizer step on ``dL_grad/dw_i = sign(G_i - target_i) ||g_i||``, clip at
    ``min_weight``, renormalise to ``sum_i w_i = T`` (the paper's
    renormalisation). ``L_i(0)`` is the first call's losses. ``alpha=1.5`` is
    the paper's default for its main experiments.

    The paper updates ``w`` with the network's optimizer; here ``w`` has its
    own (``optimizer="adam"``, ``lr=1e-3``, a common network setting; "sgd"
    is a plain gradient step), so the update is independent of the scale of
    ``||g_i||``. Returns ``direction=None``.
    """
    tx = state_optimizer("gradnorm", optimizer, lr)

    def init(num_tasks):
        w = jnp.ones((num_tasks,), jnp.float32)
        return GradNormState(weights=w, opt_state=tx.init(w), initial_losses=jnp.ones((num_tasks,), jnp.float32),
                             started=jnp.zeros((), bool))

    def combine(losses, M, state, key):
        T = losses.shape[0]
        L = jax.lax.stop_gradient(losses).astype(jnp.float32)
        L0 = jnp.where(state.started, state.initial_losses, L)
        w = state.weights
        norms = jnp.sqrt(jnp.maximum(jnp.diag(jax.lax.stop_gradient(M).astype(jnp.float32)), 0.0))
        Gw = w * norms
        Gbar = jnp.mean(Gw)
        ratio = L / jnp.where(L0 > 0, L0, 1.0)
        r = ratio / jnp.maximum(jnp.mean(ratio), 1e-30)
        target = Gbar * r ** alpha
        grad_w = jnp.sign(Gw - target) * norms
        updates, opt_state = tx.update(grad_w, state.opt_state, w)
        w_new = jnp.maximum(optax.apply_updates(w, updates), min_weight)
        w_new = T * w_new / jnp.sum(w_new)
        new_state = GradNormState(weights=w_new, opt_state=opt_state, initial_losses=L0, started=jnp.ones((), bool))
        info = {"grad_loss": jnp.sum(jnp.abs(Gw - target))}
        return w.astype(losses.dtype), None, new_state, info

    return Weighting("gradnorm", init, combine, "gram")
