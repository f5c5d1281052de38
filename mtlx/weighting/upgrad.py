"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization",
arXiv:2406.16232, 2024; TorchJD's ``UPGrad``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting, no_state


def upgrad_weights(M: jnp.ndarray, norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> jnp.ndarray:
    """UPGrad's weights on ``M = J J^T`` (T, T): ``A(J) = J^T w``.

    ``A_UPGrad(J) = 1/T sum_i pi_J(g_i)``, with ``pi_J(g)`` the projection of
    ``g`` onto the dual cone ``{v : J v >= 0}`` of the rows (paper Eq. 3 and
    Sec. 3). By the paper's Proposition 1, ``pi_J(J^T u) = J^T v`` with
    ``v = argmin_{v >= u} v^T M v``; for ``u = e_i / T``, writing
    ``v = e_i/T + mu``: ``mu = argmin_{mu >= 0} 1/2 mu^T M mu + (M e_i / T)^T mu``
    (a non-negative QP per task, solved in-jit by :func:`solvers.nonneg_qp`,
    all T at once with vmap). ``w = sum_i v_i = 1/T + sum_i mu_i``.

    As TorchJD, ``M`` is first normalised by its trace (the squared Frobenius
    norm of ``J``; zero if below ``norm_eps``) and regularised by
    ``reg_eps * I``.
    """
    T = M.shape[0]
    M = M.astype(jnp.float32)
    tr = jnp.trace(M)
    Mn = jnp.where(tr < norm_eps, 0.0, M / jnp.where(tr > 0, tr, 1.0))
    Mr = Mn + reg_eps * jnp.eye(T, dtype=jnp.float32)
    B = Mr / T                                    # column i: M e_i / T
    mus = jax.vmap(lambda b: solvers.nonneg_qp(Mr, b))(B.T)
    return jnp.full((T,), 1.0 / T, jnp.float32) + jnp.sum(mus, axis=0)


def upgrad(norm_eps: float = 1e-4, reg_eps: float = 1e-4) -> Weighting:
    """UPGrad (``needs="gram"``): ``direction = J^T w`` (the mean of the
    projections of the task gradients onto the dual cone of the Jacobian's
    rows, see :func:`upgrad_weights`), which has a non-negative inner product
    with every task gradient and equals the mean gradient when no pair
    conflicts. ``weights`` are ones (TorchJD's ``mtl_backward`` gives
    task-specific parameters their own loss gradients). ``norm_eps`` and
    ``reg_eps`` are TorchJD's defaults.
    """

    def combine(losses, M, state, key):
        w = upgrad_weights(jax.lax.stop_gradient(M), norm_eps, reg_eps)
        return jnp.ones_like(losses), w, state, {"aggregation_weights": w}

    return Weighting("upgrad", no_state, combine, "gram")
