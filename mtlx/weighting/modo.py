"""MoDo (Chen, Fernando, Ying & Chen, "Three-Way Trade-Off in Multi-Objective
Learning: Optimization, Generalization and Conflict-Avoidance", NeurIPS 2023)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting


class MoDoState(NamedTuple):
    lam: jnp.ndarray  # (T,) lambda on the simplex (uniform at start)


def modo_lambda(M: jnp.ndarray, lam: jnp.ndarray, gamma, rho) -> jnp.ndarray:
    """MoDo's weight update (Chen et al. 2023, Algorithm 1)::

        lam <- Proj_simplex(lam - gamma (G_1 G_2^T lam + rho lam))

    one projected stochastic-gradient step on ``1/2 ||G^T lam||^2 + rho/2 ||lam||^2``,
    with ``G_1 G_2^T`` the product of two independent gradient samples (double sampling,
    an unbiased estimate of ``G G^T``). Here ``M`` is the one Jacobian's Gram matrix the
    step has (``G_1 = G_2 = G``, see :func:`modo`)."""
    return solvers.project_simplex(lam - gamma * (M @ lam + rho * lam))


def modo(gamma: float = 1e-3, rho: float = 0.1) -> Weighting:
    """MoDo, Chen et al. (2023) (``needs="gram"``): ``lam`` takes one step of
    :func:`modo_lambda` per call (kept in the state), then ``direction = G^T lam``;
    ``weights`` are ones (task-specific parameters get their own gradients).
    ``gamma=1e-3``, ``rho=0.1``: LibMTL's defaults.

    Deviation: the paper draws three independent mini-batches per step (two for the
    ``lam`` update, a third for the direction). The step gives the weighting one
    Jacobian, so all three are the same batch (MoDo's deterministic form); the double
    sampling would need the step to split the batch.
    """

    def init(num_tasks):
        return MoDoState(lam=jnp.full((num_tasks,), 1.0 / num_tasks, jnp.float32))

    def combine(losses, M, state, key):
        M = jax.lax.stop_gradient(M).astype(jnp.float32)
        lam = modo_lambda(M, state.lam, gamma, rho)
        return jnp.ones_like(losses), lam, MoDoState(lam=lam), {"lambda": lam}

    return Weighting("modo", init, combine, "gram")
