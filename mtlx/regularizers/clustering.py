"""clustering: task weights pulled to their mean (Evgeniou & Pontil 2004) or to k cluster means (Jacob et al. 2009).

Let ``w_t`` be task t's selected weights flattened into one vector (the rows of
``W``, (T, D)), ``w_bar`` their mean, ``E`` the (T, k) one-hot cluster assignment,
``M = E (E^T E)^{-1} E^T`` the projection on the cluster means and ``U = 1 1^T / T``.
Jacob, Bach & Vert 2009 ("Clustered multi-task learning: a convex formulation",
Sec. 2, Eq. 2-3) penalise

    Omega(W) = eps_M tr(W^T U W) + eps_B tr(W^T (M - U) W) + eps_W tr(W^T (I - M) W)
             = eps_M T ||w_bar||^2 + eps_B sum_c m_c ||w_bar_c - w_bar||^2
               + eps_W sum_c sum_{t in c} ||w_t - w_bar_c||^2

(mean, between-cluster and within-cluster terms). With one cluster the between
term vanishes and Omega is the mean-regularised penalty of Evgeniou & Pontil
2004 ("Regularized multi-task learning", Eq. 4 after eliminating w_0 = their
shared mean): ``eps_M T ||w_bar||^2 + eps_W sum_t ||w_t - w_bar||^2``.

The assignment is either given (``clusters``: a cluster id per task) or learned:
for fixed W and ``eps_W >= eps_B``, Omega depends on E only through
``(eps_B - eps_W) tr(W^T M W)``, so the best hard assignment is the one with the
smallest within-cluster sum of squares, i.e. k-means on the task vectors. We take
it by a fixed number of Lloyd iterations from a deterministic farthest-point start
(a local minimiser; Jacob et al.'s convex relaxation over M is not implemented),
recomputed from the current weights at every step and held constant
(``stop_gradient``) while differentiating, an alternating minimisation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx import schema

OPTIONS = {"k": 1, "clusters": None, "mean": 0.1, "between": 0.1, "within": 1.0, "iterations": 10}


def check(options, num_tasks: int | None = None) -> None:
    """The coefficients are numbers >= 0, ``k`` and ``iterations`` ints >= 1, ``clusters`` one id in
    0..k-1 per task; a learned assignment needs ``between <= within`` (see the module docstring)."""
    o = {**OPTIONS, **options}
    for key in ("mean", "between", "within"):
        if not schema.NONNEG.holds(o[key]):
            raise schema.OptionError(f"regularizer.{key}", o[key], "must be a number >= 0")
    for key in ("k", "iterations"):
        if not (schema.is_int(o[key]) and o[key] >= 1):
            raise schema.OptionError(f"regularizer.{key}", o[key], "must be an int >= 1")
    c = o["clusters"]
    if c is not None:
        if not (isinstance(c, (list, tuple)) and all(schema.is_int(i) and 0 <= i < o["k"] for i in c)):
            raise schema.OptionError("regularizer.clusters", c, f"must be a list of cluster ids in 0..{o['k'] - 1}")
        if num_tasks is not None and len(c) != num_tasks:
            raise schema.OptionError("regularizer.clusters", list(c), f"needs one id per task ({num_tasks} tasks)")
    elif o["between"] > o["within"]:
        raise schema.OptionError("regularizer.between", o["between"],
                                 f"must be <= within={o['within']} when the clusters are learned")


def task_matrix(stacked):
    """(T, D): each task's selected weights (a list of (T, ...) stacks) flattened and concatenated."""
    return jnp.concatenate([w.reshape(w.shape[0], -1) for w in stacked], axis=1)


def cluster_projection(assignment, k: int):
    """``M = E (E^T E)^{-1} E^T`` (T, T) for a (T,) assignment into k clusters (empty clusters ignored)."""
    e = jax.nn.one_hot(assignment, k)
    return e @ jnp.diag(1.0 / jnp.maximum(e.sum(0), 1.0)) @ e.T


def jacob_penalty(W, assignment, k: int, mean: float, between: float, within: float):
    """Omega(W) of Jacob et al. 2009 (module docstring) for task rows ``W`` (T, D)."""
    T = W.shape[0]
    U = jnp.full((T, T), 1.0 / T)
    M = cluster_projection(assignment, k)
    sigma = mean * U + between * (M - U) + within * (jnp.eye(T) - M)
    return jnp.sum(W * (sigma @ W))


def kmeans(W, k: int, iterations: int = 10):
    """(T,) cluster ids of the rows of W: farthest-point start from row 0, then Lloyd iterations."""
    T = W.shape[0]
    d2 = lambda c: jnp.sum((W[:, None, :] - c[None]) ** 2, axis=-1)  # noqa: E731  (T, k)

    def add_center(i, idx):
        chosen = W[idx]  # (k, D); rows beyond i repeat row 0 and change nothing in the min
        dist = jnp.min(jnp.where(jnp.arange(k)[None] < i, d2(chosen), jnp.inf), axis=1)
        return idx.at[i].set(jnp.argmax(dist))

    idx = jax.lax.fori_loop(1, min(k, T), add_center, jnp.zeros((k,), jnp.int32))
    centers = W[idx]

    def lloyd(_, c):
        a = jnp.argmin(d2(c), axis=1)
        e = jax.nn.one_hot(a, k)
        n = e.sum(0)[:, None]
        return jnp.where(n > 0, (e.T @ W) / jnp.maximum(n, 1.0), c)

    centers = jax.lax.fori_loop(0, iterations, lloyd, centers)
    return jnp.argmin(d2(centers), axis=1)


def assignment(W, options):
    """The given ``clusters`` or k-means on the (stop-gradient) task rows."""
    o = {**OPTIONS, **options}
    if o["clusters"] is not None:
        return jnp.asarray(o["clusters"], jnp.int32)
    return kmeans(jax.lax.stop_gradient(W), o["k"], o["iterations"])


def penalty(stacked, **options):
    """Omega of the concatenated task rows of ``stacked`` with the options' assignment and coefficients."""
    o = {**OPTIONS, **options}
    W = task_matrix(stacked)
    return jacob_penalty(W, assignment(W, o), o["k"], o["mean"], o["between"], o["within"])
