"""ConFIG (Liu, Chu, Thuerey, "ConFIG: Towards Conflict-free Training of Physics
Informed Neural Networks", ICLR 2025; arXiv:2408.11104, 2024)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx.weighting.base import Weighting, no_state
from mtlx.weighting.imtl import equal_cosine_coefficients
from mtlx.weighting.solvers import HIGHEST


def config_coefficients(M: jnp.ndarray, rcond: float = 1e-4) -> jnp.ndarray:
    """ConFIG's update (Liu et al. 2024, Sec. 3) as coefficients ``c`` of ``G^T c``::

        g_u = U[ [u_1, ..., u_T]^{-T} 1 ],   u_t = g_t / ||g_t||,  U[v] = v / ||v||
        g   = (sum_t g_t . g_u) g_u

    ``[u]^{-T} 1`` is the (pseudo-inverse, minimum-norm) solution ``v`` of ``u_t . v = 1``
    for every t; in the span of the gradients ``v = G^T a`` with ``a = C^+ 1 / n``
    (``n_t = ||g_t||``, ``C`` the cosine matrix), so ``||v||^2 = a^T M a`` and
    ``g_t . v = (M a)_t``. Hence ``c = a * sum_t (M a)_t / (a^T M a)``. The result has the
    same cosine ``1 / ||v||`` with every unit task gradient (every task's loss decreases),
    and length ``sum_t g_t . g_u``. ``C^+`` from ``eigh`` (eigenvalues below ``rcond * T``
    dropped); tasks with a zero gradient (``||g_t||^2 <= 1e-30``) are left out.
    """
    M = M.astype(jnp.float32)
    a = equal_cosine_coefficients(M, rcond)
    Ma = jnp.matmul(M, a, precision=HIGHEST)
    vv = a @ Ma
    good = vv > 0
    return jnp.where(good, a * jnp.sum(Ma) / jnp.where(good, vv, 1.0), 0.0)


def config_grad(rcond: float = 1e-4) -> Weighting:
    """ConFIG (``needs="gram"``): ``direction = G^T c`` with ``c`` from
    :func:`config_coefficients` - the conflict-free direction whose cosine is the same
    and positive with every task gradient. ``weights`` are ones (task-specific
    parameters get their own gradients). (The paper's momentum variant, M-ConFIG,
    updates one task per step and is not included.)"""

    def combine(losses, M, state, key):
        c = config_coefficients(jax.lax.stop_gradient(M), rcond)
        return jnp.ones_like(losses), c, state, {}

    return Weighting("config", no_state, combine, "gram")
