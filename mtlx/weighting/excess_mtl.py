"""ExcessMTL (He, Zhou, Zhang, Yun, Xu, Zeng, Chilimbi & Zhao,
"Robust Multi-Task Learning with Excess Risks",
ICML 2024)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from mtlx.weighting.base import Weighting
from mtlx.weighting.param_state import require_num_params


class ExcessMTLState(NamedTuple):
    weights: jnp.ndarray   # (T,) the loss weights (sum T; ones at start)
    sq_sum: jnp.ndarray    # (T, P) the running sums of squared task gradients (AdaGrad's)
    initial: jnp.ndarray   # (T,) the first call's excess-risk estimates
    started: jnp.ndarray   # () bool: whether ``initial`` is set


def excess_risks(G, sq_sum, eps: float = 1e-7):
    """He et al. (2024), Sec. 4: each task's excess risk ``L_t(theta) - L_t(theta_t*)``
    estimated by a Taylor expansion as ``g_t^T H_t^-1 g_t``, the Hessian replaced by a
    diagonal estimate from the accumulated squared gradients (empirical Fisher), taken as
    AdaGrad's preconditioner ``H_t = diag(sqrt(sum_{steps} g_t^2 + eps))`` as the authors'
    code (``sq_sum`` already includes this step's ``g_t^2``). Returns the (T,) estimates."""
    return jnp.sum(G * G / jnp.sqrt(sq_sum + eps), axis=1)


def excess_mtl(step_size: float = 1e-2) -> Weighting:
    """ExcessMTL (``needs="jacobian"``), He et al. (2024), Algorithm 1.

    Each call adds ``g_t^2`` to the accumulators and estimates the excess risks ``e_t``
    (:func:`excess_risks`); the first call's estimates ``e_t^0`` normalise the later ones.
    From the second call on the weights take one exponentiated-gradient (mirror ascent)
    step towards the tasks with the largest relative excess risk::

        w_t <- w_t exp(step_size * e_t / e_t^0),     then  w <- T w / sum(w)

    and the step uses the updated weights (``direction=None``: the weighted sum through
    every parameter). ``step_size=1e-2``: LibMTL's default ("robust step size").

    "jacobian", and a per-parameter state (``init(num_tasks, num_params)``): the
    per-coordinate AdaGrad sums are not a function of inner products.
    """

    def init(num_tasks, num_params: Optional[int] = None):
        P = require_num_params("excess_mtl", num_params)
        return ExcessMTLState(weights=jnp.ones((num_tasks,), jnp.float32), sq_sum=jnp.zeros((num_tasks, P), jnp.float32),
                              initial=jnp.ones((num_tasks,), jnp.float32), started=jnp.zeros((), bool))

    def combine(losses, grads, state, key):
        T = losses.shape[0]
        G = jax.lax.stop_gradient(grads).astype(jnp.float32)
        sq_sum = state.sq_sum + G * G
        e = excess_risks(G, sq_sum)
        initial = jnp.where(state.started, state.initial, e)
        rel = jnp.where(initial > 0, e / jnp.where(initial > 0, initial, 1.0), 0.0)
        w = state.weights * jnp.exp(step_size * rel)
        w = jnp.where(state.started, T * w / jnp.sum(w), state.weights)
        new_state = ExcessMTLState(weights=w, sq_sum=sq_sum, initial=initial, started=jnp.ones((), bool))
        return w.astype(losses.dtype), None, new_state, {"excess_risk": e}

    return Weighting("excess_mtl", init, combine, "jacobian")
