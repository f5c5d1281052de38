"""Gradient Vaccine (Wang, Tsvetkov, Firat & Cao, "Gradient Vaccine: Investigating
and Improving Multi-task Optimization in Massively Multilingual Models", ICLR 2021)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from mtlx.weighting.base import Weighting
from mtlx.weighting.pcgrad import random_orders

_TINY = 1e-30


class GradVacState(NamedTuple):
    targets: jnp.ndarray  # (T, T) the EMA target similarities phi_hat_ij (0 at start; diagonal unused)


def _sqrt_pos(x):
    return jnp.sqrt(jnp.maximum(x, 0.0))


def gradvac_coefficients(M: jnp.ndarray, targets: jnp.ndarray, orders: jnp.ndarray, beta):
    """GradVac's modified gradients in the span of the task gradients, and the new targets.

    ``M = G G^T`` (T, T); ``targets`` the (T, T) target cosines ``phi_hat``; ``orders[i]``
    the (random) order in which task i visits the others. Returns ``(C, new_targets)`` with
    ``g_i' = sum_s C[i, s] g_s``. Wang et al. (2021), Sec. 3.3 and Algorithm 1: for each
    ``j != i`` in order, with ``phi_ij = cos(g_i', g_j)`` (the running ``g_i'``, the
    original ``g_j``), if ``phi_ij < phi_hat_ij``::

        g_i' <- g_i' + ||g_i'|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2))
                       / (||g_j|| sqrt(1 - phi_hat^2)) * g_j

    (the change that makes ``cos(g_i', g_j) = phi_hat_ij`` exactly, in the plane of the
    two gradients), and in every case the target moves by the paper's EMA::

        phi_hat_ij <- (1 - beta) phi_hat_ij + beta phi_ij.

    (LibMTL moves the target only when the rule fires; Algorithm 1 moves it for every pair,
    as here.) Every inner product is read from ``M`` through ``C`` (as PCGrad's coefficients):
    ``g_i' . g_j = (C M)_ij``, ``||g_i'||^2 = (C M C^T)_ii``. Zero gradients are left alone.
    """
    T = M.shape[0]
    rows = jnp.arange(T)
    norm_g = _sqrt_pos(jnp.diag(M))

    def step(k, carry):
        C, tgt = carry
        j = orders[:, k]
        CM = C @ M
        dots = CM[rows, j]                                   # g_i' . g_j
        ni = _sqrt_pos(jnp.sum(CM * C, axis=1))              # ||g_i'||
        nj = norm_g[j]
        ok = (j != rows) & (ni > _TINY) & (nj > _TINY)
        phi = jnp.where(ok, dots / jnp.where(ok, ni * nj, 1.0), 0.0)
        phi = jnp.clip(phi, -1.0, 1.0)
        hat = tgt[rows, j]
        s_hat = _sqrt_pos(1.0 - hat * hat)
        s_phi = _sqrt_pos(1.0 - phi * phi)
        fire = ok & (phi < hat) & (s_hat > 0)
        coef = ni * (hat * s_phi - phi * s_hat) / jnp.where(fire, nj * s_hat, 1.0)
        C = C.at[rows, j].add(jnp.where(fire, coef, 0.0))
        tgt = tgt.at[rows, j].set(jnp.where(j != rows, (1.0 - beta) * hat + beta * phi, hat))
        return C, tgt

    return lax.fori_loop(0, T, step, (jnp.eye(T, dtype=M.dtype), targets.astype(M.dtype)))


def gradvac(beta: float = 0.01) -> Weighting:
    """GradVac, Wang et al. (2021), Algorithm 1 (``needs="gram"``).

    Each task gradient ``g_i`` is moved towards every other task gradient whose cosine
    with it is below the pair's adaptive target ``phi_hat_ij`` (kept in the state, an
    EMA of the observed cosines with rate ``beta``; 0 at start, so the first step is
    PCGrad's projection on conflicting pairs), visiting the others in a random order
    from ``key`` (:func:`gradvac_coefficients`). ``direction = sum_i g_i'``;
    ``weights`` are ones (task-specific parameters get their own gradients).
    ``beta=0.01``: the paper's value. The paper applies the rule per parameter group
    (layer); here it acts on all shared parameters as one vector.
    "gram" suffices: the rule reads the gradients only through inner products.
    """

    def init(num_tasks):
        return GradVacState(targets=jnp.zeros((num_tasks, num_tasks), jnp.float32))

    def combine(losses, M, state, key):
        M = jax.lax.stop_gradient(M).astype(jnp.float32)
        C, targets = gradvac_coefficients(M, state.targets, random_orders(key, M.shape[0]), beta)
        return jnp.ones_like(losses), jnp.sum(C, axis=0), GradVacState(targets=targets), {}

    return Weighting("gradvac", init, combine, "gram")
