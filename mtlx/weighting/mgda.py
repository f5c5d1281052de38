"""MGDA and MGDA-UB (Sener & Koltun, "Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mtlx.weighting import solvers
from mtlx.weighting.base import EmptyState, Weighting

NORMALIZATIONS = ("none", "l2", "loss", "loss+")
SOLVERS = ("active_set", "frank_wolfe")


def _normalizers(M, losses, normalization):
    """Sener & Koltun's reference-code gradient normalisers ``n_t``:
    ``g_t <- g_t / n_t`` before the min-norm solve (not part of the paper)."""
    if normalization == "none":
        return jnp.ones_like(losses)
    norms = jnp.sqrt(jnp.maximum(jnp.diag(M), 0.0))
    n = {"l2": norms, "loss": losses, "loss+": losses * norms}[normalization]
    return jnp.where(n > 0, n, 1.0)


def min_norm_weights_gram(M, losses, normalization: str = "none", solver: str = "active_set", w0=None):
    """Weights ``w`` on the simplex minimising ``||sum_t w_t g_t / n_t||^2``,
    from the Gram matrix ``M = G G^T`` (all the solve reads).

    ``w0`` (active set only): a nearby solution, e.g. the previous step's
    weights; the solve starts from its support (a few KKT solves instead of
    about one per task in the optimum's support). All-zero ``w0`` means none:
    the solve starts from the best vertex.
    """
    M = jax.lax.stop_gradient(M).astype(jnp.float32)
    n = _normalizers(M, jax.lax.stop_gradient(losses).astype(jnp.float32), normalization)
    Mn = M / (n[:, None] * n[None, :])
    if solver == "active_set":
        x0 = None
        if w0 is not None:
            vertex = jax.nn.one_hot(jnp.argmin(jnp.diag(Mn)), M.shape[0], dtype=jnp.float32)
            x0 = jnp.where(jnp.sum(w0) > 0, w0.astype(jnp.float32), vertex)
        w = solvers.simplex_qp(Mn, x0=x0)
    else:
        w = solvers.min_norm_frank_wolfe(Mn)
    # every gradient zero (e.g. no shared parameters): all points are optimal, use uniform
    w = jnp.where(jnp.max(jnp.diag(Mn)) > 0, w, 1.0 / M.shape[0])
    return w, jnp.sqrt(jnp.maximum(w @ Mn @ w, 0.0))


class MGDAState(NamedTuple):
    weights: jnp.ndarray  # (T,) the previous step's weights (zeros: none yet), the warm start


def _make(name, needs, normalization, solver, warm_start):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"{name}: normalization={normalization!r} is not valid; choose one of {NORMALIZATIONS}")
    if solver not in SOLVERS:
        raise ValueError(f"{name}: solver={solver!r} is not valid; choose one of {SOLVERS}")
    warm = warm_start and solver == "active_set"

    def init(num_tasks):
        return MGDAState(weights=jnp.zeros((num_tasks,), jnp.float32)) if warm else EmptyState()

    def combine(losses, M, state, key):
        w, norm = min_norm_weights_gram(M, losses, normalization, solver, state.weights if warm else None)
        return w.astype(losses.dtype), None, MGDAState(weights=w) if warm else state, {"min_norm": norm}

    return Weighting(name, init, combine, needs)


def mgda(normalization: str = "none", solver: str = "active_set", warm_start: bool = True) -> Weighting:
    """MGDA, Sener & Koltun (2018), Algorithm 2 (Sec. 3.1): the weights are the
    min-norm point of the convex hull of the task gradients of the shared
    parameters::

        w = argmin_{w in simplex} || sum_t w_t g_t ||^2        (needs="gram": w^T M w)

    Returns those weights (non-negative, sum 1) and ``direction=None``: the
    step back-propagates ``sum_t w_t L_t`` through all parameters, so the
    shared gradient is exactly ``G^T w`` and task-specific parameters get
    their task's gradient scaled by ``w_t`` - as in the authors' code.

    ``solver="active_set"`` (default): the in-jit primal active-set method
    of :mod:`mtlx.weighting.solvers`, accurate to float32 precision; with
    ``warm_start`` (default) it starts from the previous step's weights, kept
    in the state (the first step: the best vertex). The min-norm point does
    not depend on the start; where the weights are not unique (rank-deficient
    Gram) the start may pick others of the same norm, and rounding may differ
    in the last bits. ``solver="frank_wolfe"``: the paper's Algorithm 2
    (exact line search of Algorithm 1, <= 250 iterations, stop at
    ||dw||_1 < 1e-5); Frank-Wolfe converges sublinearly, so it is NOT
    accurate to float32: measured against a float64 min-norm solve on 960
    matrices (T in {2, 3, 5, 10}; conflicting, nearly parallel, a near-zero
    row, norms 1e-2..1e2, stationary, rank-deficient), its direction
    ``G^T w`` was off by up to 2.2e-2 max_t ||g_t|| (up to ~20% of the
    min-norm direction's own length at T = 10 with conflicting gradients)
    and ``||G^T w||^2`` by up to 1.9e-3 max_t ||g_t||^2; at T <= 3 and on the
    easy families within 1e-4. tests/unit/test_weighting_edges.py checks
    3e-2 / 3e-3. Use it to reproduce the paper's solver, not for accuracy.
    ``normalization``: the reference code's optional gradient normalisers
    ("l2", "loss", "loss+"; default "none" = the paper); the weights are
    applied to the unnormalised losses, as in that code.
    """
    return _make("mgda", "gram", normalization, solver, warm_start)


def mgda_ub(normalization: str = "none", solver: str = "active_set", warm_start: bool = True) -> Weighting:
    """MGDA-UB, Sener & Koltun (2018), Sec. 3.3: the same min-norm
    solve on the gradients w.r.t. the shared *representation*
    (``needs="representation"``: their (T, T) Gram matrix), an upper bound
    that needs no per-task backward pass through the shared layers: the train
    step gets all T rows from one backward pass through the task layers (see
    ``MTLModel.shared_representation``). Returns the weights (simplex) and
    ``direction=None``.
    """
    return _make("mgda_ub", "representation", normalization, solver, warm_start)
