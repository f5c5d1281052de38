"""Aligned-MTL (Senushkin, Patakin, Kuznetsov & Konushin, "Independent Component
Alignment for Multi-Task Learning", CVPR 2023)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx.weighting.base import Weighting, no_state

SCALE_MODES = ("min", "median", "rmse")


def alignment_matrix(M: jnp.ndarray, scale_mode: str = "min") -> jnp.ndarray:
    """Aligned-MTL's Algorithm 1 on the Gram matrix ``M = G G^T`` (T, T).

    Eigendecomposition ``M = V diag(lambda) V^T`` (``lambda = sigma^2``, the
    squared singular values of ``G``), keeping the numerical rank (eigenvalues
    above ``lambda_max * T * eps_f32``, as the reference code). Returns the
    symmetric ``W = sigma_ref * V diag(1/sigma) V^T`` (zero on the null space):
    the aligned gradient matrix ``G_hat = W G`` has rows that are orthogonal
    with equal norms ``sigma_ref`` (``G_hat G_hat^T = sigma_ref^2 I`` at full
    rank), i.e. the condition number of the system is 1. ``sigma_ref`` is
    the smallest singular value ("min", the paper's choice), the (lower)
    median or the root-mean-square one ("median", "rmse", code options).
    """
    T = M.shape[0]
    lam, V = jnp.linalg.eigh(M.astype(jnp.float32))
    tol = jnp.max(lam) * T * jnp.finfo(jnp.float32).eps
    valid = lam > tol
    rank = jnp.sum(valid.astype(jnp.int32))
    safe = jnp.where(valid, lam, 1.0)
    if scale_mode == "min":
        ref = jnp.min(jnp.where(valid, lam, jnp.inf))
    elif scale_mode == "median":  # torch.median: the lower of the two middle values
        srt = jnp.sort(jnp.where(valid, lam, jnp.inf))
        ref = srt[jnp.maximum(rank - 1, 0) // 2]
    else:
        ref = jnp.sum(jnp.where(valid, lam, 0.0)) / jnp.maximum(rank, 1)
    ref = jnp.where(rank > 0, ref, 0.0)
    d = jnp.where(valid, jnp.sqrt(ref) / jnp.sqrt(safe), 0.0)
    return (V * d[None, :]) @ V.T


def aligned_mtl(scale_mode: str = "min", scale_heads: bool = False) -> Weighting:
    """Aligned-MTL, Senushkin et al. (2023), Algorithm 1 (``needs="gram"``).

    ``direction = sum_t g_hat_t = G^T W 1`` with ``G_hat = W G`` the aligned
    gradients (:func:`alignment_matrix`), i.e. the aligned gradients weighted
    equally. ``weights`` are ones (the reference code's default
    ``scale_decoder_grad=False``); ``scale_heads=True`` uses ``W 1`` for the
    task-specific parameters too (entries of ``W 1`` can be negative when
    gradients conflict strongly).

    (Aligned-MTL-UB, the same alignment on representation gradients, is not
    provided: under this interface a representation weighting can only
    return loss weights, which would also scale - possibly negatively - the
    task-specific gradients that the reference code leaves unscaled.)
    """
    if scale_mode not in SCALE_MODES:
        raise ValueError(f"aligned_mtl: scale_mode={scale_mode!r} is not valid; choose one of {SCALE_MODES}")

    def combine(losses, M, state, key):
        W = alignment_matrix(jax.lax.stop_gradient(M), scale_mode)
        coef = jnp.sum(W, axis=1)              # G_hat^T 1 = G^T W 1
        weights = coef if scale_heads else jnp.ones_like(coef)
        return weights.astype(losses.dtype), coef, state, {"alignment_weights": coef}

    return Weighting("aligned_mtl", no_state, combine, "gram")
