"""Smooth Tchebycheff scalarisation, STCH (Lin, Zhang, Yang, Liu, Wang & Zhang, "Smooth
Tchebycheff Scalarization for Multi-Objective Optimization", ICML 2024)."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from mtlx.weighting.base import Weighting


class STCHState(NamedTuple):
    count: jnp.ndarray  # () int32: calls so far
    acc: jnp.ndarray    # (T,) sum of the warm-up calls' losses (their mean is the normaliser)


def stch_value(f: jnp.ndarray, preference: jnp.ndarray, mu, ideal=0.0) -> jnp.ndarray:
    """The smooth Tchebycheff scalarisation of objective values ``f`` (T,), Lin et al.
    (2024), Sec. 3::

        g_mu(f | lam) = mu * log sum_t exp(lam_t (f_t - z_t) / mu)

    (a log-sum-exp smoothing of Tchebycheff's ``max_t lam_t (f_t - z_t)``; it lies in
    ``[max, max + mu log T]``, so it tends to the Tchebycheff value as ``mu -> 0``)."""
    return mu * jax.nn.logsumexp(preference * (f - ideal) / mu)


def stch(mu: float = 1.0, warmup_steps: int = 0, log_losses: bool = True,
         preference: Optional[Sequence[float]] = None, eps: float = 1e-20) -> Weighting:
    """STCH as a loss weighting (``needs="none"``): the step minimises
    ``T * stch_value(f(L))`` through the weights ``w_t = T d g_mu / d L_t``::

        f_t = log(L_t / n_t + eps)   (log_losses, the paper's MTL setting)  or  L_t / n_t
        w_t = T * lam_t softmax(lam f / mu)_t * d f_t / d L_t

    with ideal point 0, preference ``lam`` (default all ones) and normaliser ``n_t``
    the mean loss of the first ``warmup_steps`` calls (during which the weights are
    ``d f_t / d L_t``, i.e. the step minimises ``sum_t f_t``); ``warmup_steps=0``:
    ``n = 1``. This is the MTL recipe of the authors' code (log losses over the
    warm-up's mean losses, scaled by T); ``mu=1``: its default.
    """
    lam = None if preference is None else jnp.asarray(preference, jnp.float32)

    def init(num_tasks):
        return STCHState(count=jnp.zeros((), jnp.int32), acc=jnp.zeros((num_tasks,), jnp.float32))

    def combine(losses, grads, state, key):
        T = losses.shape[0]
        L = jax.lax.stop_gradient(losses).astype(jnp.float32)
        pref = jnp.ones((T,), jnp.float32) if lam is None else lam
        warm = state.count < warmup_steps
        n = jnp.where((warmup_steps > 0) & ~warm, state.acc / jnp.maximum(warmup_steps, 1), 1.0)
        n = jnp.where(n > 0, n, 1.0)
        if log_losses:
            f, df = jnp.log(L / n + eps), 1.0 / (L + eps * n)
        else:
            f, df = L / n, 1.0 / n
        soft = jax.nn.softmax(pref * f / mu)
        w = jnp.where(warm, df, T * pref * soft * df)
        new_state = STCHState(count=jnp.minimum(state.count + 1, warmup_steps + 1),
                              acc=jnp.where(warm, state.acc + L, state.acc))
        return w.astype(losses.dtype), None, new_state, {"stch_value": stch_value(f, pref, mu)}

    return Weighting("stch", init, combine)
