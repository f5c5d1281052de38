"""relationship: Deep/Multilinear Relationship Networks (Long & Wang 2015; Long, Cao, Wang & Yu 2017).

Each regularised task-specific layer's weights, stacked into a tensor ``W`` of
shape (T, D1, D2) (tasks, input units, output units; a conv kernel's spatial and
input axes are folded into D1), get a tensor-normal prior
``vec W ~ N(0, Sigma_T (x) Sigma_1 (x) Sigma_2)`` (MRN, Long et al. 2017, Eq. 4-5;
DRN 2015 is the matrix-variate case with the feature covariances fixed to I).
The MAP objective adds, per layer, the quadratic form

    1/2 vec(W)^T (Sigma_T (x) Sigma_1 (x) Sigma_2)^{-1} vec(W)
      = 1/2 sum W[t,a,b] Sigma_T^{-1}[t,s] Sigma_1^{-1}[a,c] Sigma_2^{-1}[b,d] W[s,c,d]

(the log-determinant terms do not depend on W). The covariances are not trained by
gradient: given W they have a closed-form maximum-likelihood estimate, found by the
flip-flop iteration (MRN Eq. 9-11, with ``eps I`` added for invertibility):

    Sigma_T = W_(T) (Sigma_1 (x) Sigma_2)^{-1} W_(T)^T / (D1 D2) + eps I_T
    Sigma_1 = W_(1) (Sigma_T (x) Sigma_2)^{-1} W_(1)^T / (T D2) + eps I_D1
    Sigma_2 = W_(2) (Sigma_T (x) Sigma_1)^{-1} W_(2)^T / (T D1) + eps I_D2

WHERE THE STATE LIVES: nowhere. The estimate is a deterministic function of the
current weights, so it is recomputed inside the penalty at every step, from the
identity, and held constant there (``stop_gradient``): the paper's alternation (an
SGD step on W given the covariances, a closed-form update of the covariances given
W) with the covariances updated every step. Nothing is added to the train state,
so the step stays pure, vmappable over seeds and resumable from a checkpoint
without a new collection; the cost is ``iterations`` inverses of D1 x D1 and
D2 x D2 per layer per step (``features='identity'`` learns Sigma_T only: one T x T
inverse). The learned task covariance is read for logging by
``task_covariances(model, params)`` (``mtlx.architectures.base.MTLModel``), i.e.
:func:`flip_flop` on the final weights: the same value the last step used. (The
penalty's VALUE at the MLE is nearly constant, about T D1 D2 / 2 per layer, because
the estimate rescales with W; its gradient, the covariances fixed, is what acts.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx import schema

FEATURES = ("learned", "identity")
OPTIONS = {"features": "learned", "iterations": 2, "eps": 1e-3}
MAX_FEATURE_DIM = 4096  # a learned feature covariance larger than this is refused (its inverse per step)


def check(options) -> None:
    o = {**OPTIONS, **options}
    if o["features"] not in FEATURES:
        raise schema.OptionError("regularizer.features", o["features"], f"is not valid; choose one of {list(FEATURES)}")
    if not (schema.is_int(o["iterations"]) and o["iterations"] >= 1):
        raise schema.OptionError("regularizer.iterations", o["iterations"], "must be an int >= 1")
    if not schema.POSITIVE.holds(o["eps"]):
        raise schema.OptionError("regularizer.eps", o["eps"], "must be a number > 0")


def as_tensor(w):
    """(T, D1, D2) from a task-stacked kernel (T, ..., C): every axis but the first and last folded into D1."""
    return w.reshape(w.shape[0], -1, w.shape[-1])


def _inv(s):
    return jnp.linalg.inv(s)


def flip_flop(W, iterations: int = 2, eps: float = 1e-3, features: str = "learned"):
    """``(Sigma_T, Sigma_1, Sigma_2)`` for ``W`` (T, D1, D2): ``iterations`` rounds of the MRN updates
    (module docstring), starting from identities; with ``features='identity'`` only Sigma_T, once."""
    T, d1, d2 = W.shape
    eye = lambda n: jnp.eye(n, dtype=W.dtype)  # noqa: E731
    s1, s2, i1, i2 = eye(d1), eye(d2), eye(d1), eye(d2)  # the covariances and their inverses
    for r in range(1 if features == "identity" else iterations):
        if r > 0:
            i1, i2 = _inv(s1), _inv(s2)
        st = jnp.einsum("tab,ac,bd,scd->ts", W, i1, i2, W) / (d1 * d2) + eps * eye(T)
        if features == "identity":
            break
        it = _inv(st)
        s1 = jnp.einsum("tab,ts,bd,scd->ac", W, it, i2, W) / (T * d2) + eps * eye(d1)
        s2 = jnp.einsum("tab,ts,ac,scd->bd", W, it, _inv(s1), W) / (T * d1) + eps * eye(d2)
    return st, s1, s2


def quadratic(W, sigma_t, sigma_1, sigma_2):
    """``vec(W)^T (Sigma_T (x) Sigma_1 (x) Sigma_2)^{-1} vec(W)`` for W (T, D1, D2)."""
    return jnp.einsum("tab,ts,ac,bd,scd->", W, _inv(sigma_t), _inv(sigma_1), _inv(sigma_2), W)


def layer_penalty(w, **options):
    """1/2 the quadratic form of one task-stacked layer, its covariances estimated from it (stop_gradient)."""
    o = {**OPTIONS, **options}
    W = as_tensor(w)
    if o["features"] == "learned" and max(W.shape[1:]) > MAX_FEATURE_DIM:
        raise ValueError(f"regularizer.features='learned' on a layer of shape {tuple(w.shape)} needs a "
                         f"{max(W.shape[1:])}-square inverse per step (> {MAX_FEATURE_DIM}); use features='identity' "
                         f"or leave that layer out of regularizer.layers")
    covs = jax.lax.stop_gradient(flip_flop(jax.lax.stop_gradient(W), o["iterations"], o["eps"], o["features"]))
    return 0.5 * quadratic(W, *covs)


def penalty(stacked, **options):
    """The sum of :func:`layer_penalty` over the layers (each layer its own covariances, as in MRN)."""
    return sum(layer_penalty(w, **options) for w in stacked)


def task_covariance(w, **options):
    """The learned task covariance Sigma_T (T, T) of one task-stacked layer (what the penalty uses)."""
    o = {**OPTIONS, **options}
    return flip_flop(as_tensor(w), o["iterations"], o["eps"], o["features"])[0]


def correlation(sigma):
    """The correlation matrix of a covariance (what a heatmap of task relationships shows)."""
    d = jnp.sqrt(jnp.diag(sigma))
    return sigma / (d[:, None] * d[None, :])
