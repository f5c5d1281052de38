"""block_sparse: the l1/lq mixed norm over task-stacked rows, so that tasks select the same features.

Argyriou, Evgeniou & Pontil 2008 ("Convex multi-task feature learning", Eq. 2.2,
the (2,1)-norm of the d x T weight matrix) and Liu, Palatucci & Zhang 2009
("Blockwise coordinate descent procedures for the multi-task lasso", q = inf)
penalise ``||W||_{q,1} = sum_i ||w^i||_q``, the sum over input features ``i`` of
the lq norm of feature i's weights in every task. The l1 sum drives whole rows
to zero: a feature is dropped by all tasks at once.

A deep layer's task-stacked kernel has layout ``(T, ..., R, C)`` (``R`` input
units: a Dense's inputs, a conv's input channels, an embedding's vocabulary,
an LSTM's input-plus-recurrent units; ``C`` output units). Row ``i`` is
``W[:, ..., i, :]``: every weight that reads input unit ``i``, in every task. For
T linear one-output regressions (``C = 1``) this is exactly the papers' row.

The functions are pure in the stacked weights; ``proximal`` is the exact
proximal step (an optax transformation) for q = 2 (group soft-thresholding,
Argyriou et al. 2008 / Yuan & Lin 2006) and q = inf (Moreau: the residual of the
projection on the l1 ball, Duchi et al. 2008, Fig. 1).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtlx import schema

INF = "inf"  # how a config spells q = infinity (JSON has no inf)
OPTIONS = {"q": 2}  # option -> default; the checks are in ``check``


def check(options) -> None:
    """``q``: a number >= 1 or 'inf' (OptionError naming ``regularizer.q``)."""
    q = options.get("q", OPTIONS["q"])
    if not (q == INF or (schema.is_number(q) and math.isfinite(q) and q >= 1)):
        raise schema.OptionError("regularizer.q", q, f"must be a number >= 1 or {INF!r}")


def _q(q) -> float:
    return math.inf if q == INF else float(q)


def rows(w):
    """``(R, G)``: row ``i`` holds every entry ``W[:, ..., i, :]`` of a ``(T, ..., R, C)`` stack."""
    return jnp.moveaxis(w, -2, 0).reshape(w.shape[-2], -1)


def _safe_norm(x, q: float):
    """lq norms of the rows of ``x``; an all-zero row has value 0 and gradient 0 (the least-norm
    subgradient), where ``jnp.linalg.norm`` would give NaN (q = 2) or a non-zero choice (q = 1, inf)."""
    nz = jnp.any(x != 0, axis=-1, keepdims=True)
    a = jnp.abs(jnp.where(nz, x, 1.0))  # the double where: no gradient reaches an all-zero row
    if q == math.inf:
        n = jnp.max(a, axis=-1)
    elif q == 1:
        n = jnp.sum(a, axis=-1)
    else:
        n = jnp.sum(a ** q, axis=-1) ** (1.0 / q)
    return jnp.where(nz[..., 0], n, 0.0)


def row_norms(w, q=2):
    """``(R,)``: ``||w^i||_q`` of each row (see :func:`rows`)."""
    return _safe_norm(rows(w), _q(q))


def mixed_norm(w, q=2):
    """``||W||_{q,1} = sum_i ||w^i||_q`` (Argyriou et al. 2008, Eq. 2.2 for q = 2; Liu et al. 2009 for q = inf)."""
    return jnp.sum(row_norms(w, q))


def penalty(stacked, q=2, **_):
    """The sum of the mixed norms of a list of task-stacked weights (one per layer)."""
    return sum(mixed_norm(w, q) for w in stacked)


def project_l1_ball(v, radius):
    """Euclidean projection of each row of ``v`` (n, m) on the l1 ball of ``radius`` (Duchi et al. 2008, Fig. 1)."""
    a = jnp.abs(v)
    u = -jnp.sort(-a, axis=-1)
    cs = jnp.cumsum(u, axis=-1)
    j = jnp.arange(1, v.shape[-1] + 1)
    rho = jnp.sum(u - (cs - radius) / j > 0, axis=-1, keepdims=True)  # how many stay non-zero (>= 1)
    theta = (jnp.take_along_axis(cs, jnp.maximum(rho - 1, 0), axis=-1) - radius) / jnp.maximum(rho, 1)
    inside = jnp.sum(a, axis=-1, keepdims=True) <= radius
    return jnp.where(inside, v, jnp.sign(v) * jnp.maximum(a - theta, 0.0))


def prox(w, threshold, q=2):
    """``argmin_x threshold * ||X||_{q,1} + 1/2 ||X - W||^2`` for a ``(T, ..., R, C)`` stack, row by row.

    q = 2: ``w^i * max(0, 1 - threshold / ||w^i||_2)`` (group soft-thresholding): a row whose
    norm is below the threshold becomes exactly zero, in every task at once.
    q = inf: ``w^i - P_{||.||_1 <= threshold}(w^i)`` (Moreau decomposition); a row whose l1
    norm is below the threshold becomes zero."""
    qf = _q(q)
    r = rows(w)
    if qf == 2:
        n = _safe_norm(r, 2.0)[:, None]
        out = r * jnp.maximum(0.0, 1.0 - threshold / jnp.where(n > 0, n, 1.0))
    elif qf == math.inf:
        out = r - project_l1_ball(r, threshold)
    else:
        raise ValueError(f"regularizer.q={q!r} has no closed-form proximal step here; use 2 or {INF!r}")
    moved = jnp.moveaxis(w, -2, 0)
    return jnp.moveaxis(out.reshape(moved.shape), 0, -2)


class ProximalState(NamedTuple):
    """No state: the step is a pure function of the parameters."""


def proximal(strength: float, learning_rate: float, q=2, mask=None) -> optax.GradientTransformation:
    """The proximal step of ``strength * ||.||_{q,1}`` as an optax transformation, to chain AFTER the
    optimizer: with the new parameters ``p + u``, it returns ``prox(p + u, strength * learning_rate) - p``.
    After ``optax.sgd(learning_rate)`` this is proximal gradient descent (ISTA), which reaches
    exact zeros where a (sub)gradient step only oscillates around them. ``mask``: a pytree of bools
    (or a function of the params giving one) choosing the task-stacked ``(T, ..., R, C)`` leaves."""

    def init(params):
        del params
        return ProximalState()

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("block_sparse.proximal needs the params (optax passes them to update)")
        m = mask(params) if callable(mask) else mask
        m = jax.tree_util.tree_map(lambda _: True, params) if m is None else m
        new = jax.tree_util.tree_map(
            lambda p, u, on: prox(p + u, strength * learning_rate, q) - p if on else u, params, updates, m)
        return new, state

    return optax.GradientTransformation(init, update)
