"""Task relatedness measured during training: gradient cosines, conflicts, magnitudes, TAG affinity.

At the log steps a run's ``training.relatedness_every`` selects, the loop
calls ONE jitted probe (:func:`make_probe`) on the next training batch:

- from the (T, T) Gram matrix ``K = G G^T`` of the per-task gradients of the
  shared parameters - the same Jacobian pass the train step makes for a
  "gram" weighting (``mtlx.grads.engine``, shared Dense blocks ghosted):
  the pairwise cosine matrix ``K_ij / sqrt(K_ii K_jj)``, the conflict rate
  (the share of task pairs i < j with a negative cosine; Yu et al. 2020,
  PCGrad, call such gradients conflicting), each task's gradient norm, and
  the gradient magnitude similarity ``2 |g_i| |g_j| / (|g_i|^2 + |g_j|^2)``
  (Yu et al. 2020, Def. 2) and the magnitude ratios ``|g_i| / |g_j|``;
- optionally (``training.affinity``) the lookahead inter-task affinity of
  TAG (Fifty et al. 2021, Eq. 1-2): ``Z[i, j] = 1 - L_j(theta_s - eta g_i,
  theta_j) / L_j(theta_s, theta_j)``, the relative drop of task j's loss
  after an SGD step of size eta on the shared parameters along task i's
  gradient alone (positive: i's step helps j).

Why a probe at log steps and not a branch inside the step: the loop only
ever sees the last step of a dispatch (``mtlx.parallel.dispatch``), so the
values of every other step would be computed and dropped; the probe leaves
the step program (and its populations, scans and checkpoints) unchanged and
costs one extra Jacobian pass per measurement, for any weighting, also one
that forms no Jacobian. Everything is pure and vmappable (a population can
vmap the probe over its members).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mtlx import grads
from mtlx.architectures import shared_mask

HIGHEST = jax.lax.Precision.HIGHEST
RECORD_KEY = "relatedness"  # the train record's key (metrics.jsonl)


def gram_stats(K) -> dict:
    """Cosines, conflict rate, norms and magnitude similarity from the (T, T) Gram matrix ``K``.
    A zero gradient has cosine 0 with every other (and 1 with itself)."""
    T = K.shape[0]
    sq = jnp.clip(jnp.diag(K), 0.0)
    norms = jnp.sqrt(sq)
    denom = norms[:, None] * norms[None, :]
    cos = jnp.where(denom > 0, K / jnp.where(denom > 0, denom, 1.0), 0.0)
    cos = jnp.clip(cos, -1.0, 1.0).at[jnp.diag_indices(T)].set(1.0)
    iu = np.triu_indices(T, 1)
    conflict = jnp.mean(cos[iu] < 0) if T > 1 else jnp.zeros(())
    both = sq[:, None] + sq[None, :]
    mag = jnp.where(both > 0, 2 * denom / jnp.where(both > 0, both, 1.0), 1.0)
    return {"cosine": cos, "conflict_rate": conflict.astype(jnp.float32), "grad_norm": norms,
            "magnitude_similarity": mag}


def shared_rows(m: grads._Model, mparams, batch):
    """``(losses, rows)``: the (T,) losses and every task's gradient of the shared parameters
    (a pytree of mparams' structure, leading task axis; the task-specific leaves zero), by one VJP
    evaluated at the T unit cotangents."""
    (losses, _), vjp_fn = jax.vjp(lambda p: m.forward(p, None, batch)[:2], mparams)
    T = losses.shape[0]
    rows = jax.vmap(lambda e: vjp_fn((e, jnp.zeros(())))[0])(jnp.eye(T, dtype=losses.dtype))
    mask = shared_mask(m.model, mparams)
    return losses, jax.tree_util.tree_map(lambda r, s: r if s else jnp.zeros_like(r), rows, mask)


def lookahead_affinity(m: grads._Model, mparams, batch, lr) -> jnp.ndarray:
    """TAG's (T, T) lookahead affinity ``Z[i, j] = 1 - L_j(theta_s - lr g_i) / L_j(theta)`` (Fifty et
    al. 2021, Eq. 2; the shared parameters only take the step, on this batch)."""
    losses, rows = shared_rows(m, mparams, batch)

    def after(row):
        ahead = jax.tree_util.tree_map(lambda p, g: p - lr * g, mparams, row)
        return m.forward(ahead, None, batch)[0]

    ahead = jax.lax.map(after, rows)  # (T, T): row i = every loss after task i's step
    safe = jnp.where(losses > 0, losses, 1.0)
    return jnp.where(losses[None, :] > 0, 1.0 - ahead / safe[None, :], 0.0)


def make_probe(model, task_list, affinity: bool = False, affinity_lr: float = 1e-3,
               jacobian_chunk: int = 0) -> Callable:
    """``probe(model_params, batch) -> {name: array}``: :func:`gram_stats` of the shared-parameter
    Jacobian's Gram matrix (the step's "gram" pass), with "affinity" (T, T) when ``affinity``."""
    gram_pass = grads.engine(model, task_list, "gram", jacobian_chunk)
    m = grads._Model(model, tuple(task_list), jacobian_chunk)

    def probe(mparams, batch):
        out = gram_stats(gram_pass(mparams, batch).grads)
        if affinity:
            out["affinity"] = lookahead_affinity(m, mparams, batch, affinity_lr)
        return out

    return probe


def record(stats: dict, task_names) -> dict:
    """The train record's ``relatedness`` entry (plain JSON): matrices as nested lists in task order,
    ``tasks`` naming that order, norms by task, ``magnitude_ratio[i][j] = |g_i| / |g_j|`` (None where
    ``g_j`` is zero)."""
    host = {k: np.asarray(v, np.float64) for k, v in stats.items()}
    out = {"tasks": list(task_names), "conflict_rate": float(host["conflict_rate"]),
           "grad_norm": dict(zip(task_names, host["grad_norm"].tolist()))}
    for k in ("cosine", "magnitude_similarity", "affinity"):
        if k in host:
            out[k] = host[k].tolist()
    n = host["grad_norm"]
    out["magnitude_ratio"] = [[float(a / b) if b > 0 else None for b in n] for a in n]  # |g_i| / |g_j|
    return out
