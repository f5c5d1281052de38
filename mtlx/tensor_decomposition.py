"""Tensor factorisations for DMTRL (Yang & Hospedales 2017): the maths, no flax.

A block's T task kernels are one tensor W of shape (*kernel_shape, T) (the
paper's mode order: tasks LAST), generated from a factorisation whose task-mode
part is task specific and whose other parts are shared:

- ``laf`` (last axis flattening): W reshaped to (D, T), D = prod(kernel_shape),
  is U V with U (D, r) shared (stored as (*kernel_shape, r)) and V (r, T) task
  specific.  Params D r + r T.
- ``tucker``: W = S x_1 U_1 x_2 ... x_N U_N with core S (r_1..r_N) and
  U_k (n_k, r_k); the task-mode factor U_N (T, r_N) is task specific.
  Params prod(r) + sum n_k r_k.
- ``tt`` (tensor train): W[i_1..i_N] = G_1[i_1] ... G_N[i_N] with cores
  G_k (r_{k-1}, n_k, r_k), r_0 = r_N = 1; the task core G_N is task specific.
  Params sum r_{k-1} n_k r_k.

Factors come in a canonical order with the task factor LAST (``factor_names``).
``decompose`` gives them by truncated SVD / HOSVD / TT-SVD (exact at full rank),
``generate`` rebuilds the tensor, ``resolve_rank`` turns a rank setting (an int
cap, a tuple, or ``'auto'``) into concrete ranks and ``select_ranks`` picks them
by relative error. Every function works on numpy arrays (float64 stays float64)
and on traceable ``jax.numpy`` arrays, except the rank selection (numpy, on the
host). ``mtlx.architectures.tensor_factorised`` holds the flax modules.

Our stacks are (T, *kernel_shape) (``layers.StackedBlock``); ``to_paper`` and
``to_stacked`` are the one place the task axis moves.
"""

from __future__ import annotations

import functools
import hashlib
import math

import jax.numpy as jnp
import numpy as np

METHODS = ("laf", "tucker", "tt")


# --------------------------------------------------------------------------- layout


def _xp(a):
    return np if isinstance(a, np.ndarray) else jnp


def to_paper(stacked):
    """(T, *kernel_shape) -> (*kernel_shape, T), the paper's mode order."""
    return _xp(stacked).moveaxis(stacked, 0, -1)


def to_stacked(tensor):
    """(*kernel_shape, T) -> (T, *kernel_shape), StackedBlock's order."""
    return _xp(tensor).moveaxis(tensor, -1, 0)


# --------------------------------------------------------------------------- shapes, ranks, counts


def check_method(method):
    if method not in METHODS:
        raise ValueError(f"tensor_factorised: method={method!r} is not valid; choose one of {list(METHODS)}")


def num_rank_entries(method, ndim):
    """How many ranks a tensor with ``ndim`` modes (tasks included) takes."""
    return {"laf": 1, "tucker": ndim, "tt": ndim - 1}[method]


def rank_meaning(method):
    return {"laf": "(r,): the rank of the (prod(kernel_shape), T) matrix",
            "tucker": "(r_1, ..., r_N): one per mode, kernel modes then the task mode",
            "tt": "(r_1, ..., r_{N-1}): the inner TT-ranks (r_0 = r_N = 1)"}[method]


def rank_bounds(method, shape):
    """Largest useful rank per entry for a paper-order tensor ``shape``; these are full rank."""
    shape = tuple(int(s) for s in shape)
    if method == "laf":
        return (min(math.prod(shape[:-1]), shape[-1]),)
    if method == "tucker":
        return shape
    return tuple(min(math.prod(shape[:k]), math.prod(shape[k:])) for k in range(1, len(shape)))


def factor_names(method, ndim):
    """Names of the factors in canonical order; the LAST one is the task factor."""
    if method == "laf":
        return ("U", "V")
    if method == "tucker":
        return ("core",) + tuple(f"mode_{k}" for k in range(ndim))
    return tuple(f"core_{k}" for k in range(ndim))


def factor_shapes(method, shape, ranks):
    """Shapes of the factors (canonical order, task factor last)."""
    shape, ranks = tuple(shape), tuple(ranks)
    if method == "laf":
        return (shape[:-1] + (ranks[0],), (ranks[0], shape[-1]))
    if method == "tucker":
        return (ranks,) + tuple((n, r) for n, r in zip(shape, ranks))
    full = (1,) + ranks + (1,)
    return tuple((full[k], shape[k], full[k + 1]) for k in range(len(shape)))


def param_count(method, shape, ranks):
    """Closed form: laf D r + r T; tucker prod(r) + sum n_k r_k; tt sum r_{k-1} n_k r_k."""
    shape, ranks = tuple(shape), tuple(ranks)
    if method == "laf":
        return math.prod(shape[:-1]) * ranks[0] + ranks[0] * shape[-1]
    if method == "tucker":
        return math.prod(ranks) + sum(n * r for n, r in zip(shape, ranks))
    full = (1,) + ranks + (1,)
    return sum(full[k] * shape[k] * full[k + 1] for k in range(len(shape)))


def is_int(r):
    return isinstance(r, (int, np.integer)) and not isinstance(r, bool)


def resolve_rank(method, shape, rank, rel_error=0.1, tensor=None, where=""):
    """Concrete rank tuple for one paper-order tensor ``shape``; ValueError if impossible.

    ``tensor`` (paper order) is only used by ``rank='auto'``.
    """
    check_method(method)
    bounds = rank_bounds(method, shape)
    if isinstance(rank, str):
        if rank != "auto":
            raise ValueError(f"tensor_factorised{where}: rank={rank!r} is not valid; use an int >= 1, a tuple "
                             f"of ints, or 'auto'")
        if tensor is None:
            raise ValueError(f"tensor_factorised{where}: rank='auto' needs a tensor to decompose")
        return select_ranks(method, tensor, rel_error)
    if is_int(rank):
        if rank < 1:
            raise ValueError(f"tensor_factorised{where}: rank={rank} must be >= 1 (an int caps every rank at "
                             f"its mode's bound {bounds})")
        return tuple(min(int(rank), b) for b in bounds)
    rank = tuple(rank)
    if len(rank) != len(bounds):
        raise ValueError(f"tensor_factorised{where}: rank={rank} has {len(rank)} entries; method {method!r} on a "
                         f"tensor of shape {tuple(shape)} (tasks last) needs {len(bounds)}: {rank_meaning(method)}; "
                         f"valid range per entry 1..{bounds}")
    for k, (r, b) in enumerate(zip(rank, bounds)):
        if not is_int(r) or not 1 <= r <= b:
            raise ValueError(f"tensor_factorised{where}: rank={rank} entry {k} = {r!r} is out of range; method "
                             f"{method!r} on a tensor of shape {tuple(shape)} (tasks last) takes "
                             f"{rank_meaning(method)} with entry k in 1..{bounds}[k]")
    return tuple(int(r) for r in rank)


# --------------------------------------------------------------------------- decompose / generate


def _left_singular(a):
    """(U, s) of an n x m matrix: s descending, U's columns orthonormal. Unless the
    matrix is much taller than wide it goes through the eigendecomposition of its
    n x n Gram matrix (several times faster than an SVD on CPU; U stays orthonormal,
    so full rank stays exact); then U is n x n and s is padded with ~zeros."""
    xp = _xp(a)
    if a.shape[0] <= 2 * a.shape[1]:
        evals, evecs = xp.linalg.eigh(a @ a.T)
        return evecs[:, ::-1], xp.sqrt(xp.maximum(evals[::-1], 0.0))
    u, s, _ = xp.linalg.svd(a, full_matrices=False)
    return u, s


def _complete(q, r):
    """``q`` (n, m) with orthonormal columns -> (n, r): q, then an orthonormal basis of
    its complement, then (past n columns) fixed random columns."""
    xp = _xp(q)
    n, m = q.shape
    if r <= m:
        return q[:, :r]
    extra = np.random.default_rng(7919 * n + m).standard_normal((n, r - m))
    k = max(min(r, n) - m, 0)
    cols = [q]
    if k:
        e = xp.asarray(extra[:, :k], dtype=q.dtype)
        for _ in range(2):  # re-orthogonalise once for accuracy
            e = e - q @ (q.T @ e)
        cols.append(xp.linalg.qr(e)[0])
    if r - m - k:
        cols.append(xp.asarray(extra[:, k:] / math.sqrt(n), dtype=q.dtype))
    return xp.concatenate(cols, axis=1)


def mode_product(tensor, matrix, k):
    """tensor x_k matrix: contracts mode k of ``tensor`` with the columns of ``matrix``."""
    xp = _xp(tensor)
    return xp.moveaxis(xp.tensordot(matrix, tensor, axes=(1, k)), 0, k)


def decompose(method, tensor, rank, rel_error=0.1):
    """Factors (task factor last) of a paper-order ``tensor`` by truncated SVD (laf),
    HOSVD (tucker, De Lathauwer et al. 2000) or TT-SVD (tt, Oseledets 2011, Alg. 1).

    ``rank`` as in ``resolve_rank`` ('auto' uses ``rel_error``). Exact at full rank.
    Works on numpy (float64 stays float64) and traceable jax arrays.
    """
    xp = _xp(tensor)
    shape = tuple(tensor.shape)
    ranks = resolve_rank(method, shape, rank, rel_error, tensor)
    if method == "laf":
        r = ranks[0]
        u, s, vt = xp.linalg.svd(tensor.reshape(-1, shape[-1]), full_matrices=False)
        sq = xp.sqrt(s[:r])
        return ((u[:, :r] * sq).reshape(shape[:-1] + (r,)), sq[:, None] * vt[:r])
    if method == "tucker":
        us = [_complete(_left_singular(xp.moveaxis(tensor, k, 0).reshape(shape[k], -1))[0], r)
              for k, r in enumerate(ranks)]
        core = tensor
        for k, u in enumerate(us):
            core = mode_product(core, u.T, k)
        return (core,) + tuple(us)
    cores, c, rp = [], tensor, 1
    for k, r in enumerate(ranks):
        c = c.reshape(rp * shape[k], -1)
        u = _left_singular(c)[0]
        kept = min(r, u.shape[1])
        rest = u[:, :kept].T @ c
        if r > kept:  # more rank than this unfolding has: zero rows keep the product exact
            rest = xp.concatenate([rest, xp.zeros((r - kept, rest.shape[1]), rest.dtype)], axis=0)
        cores.append(_complete(u, r).reshape(rp, shape[k], r))
        c, rp = rest, r
    cores.append(c.reshape(rp, shape[-1], 1))
    return tuple(cores)


def generate(method, factors):
    """The paper-order tensor (*kernel_shape, T) from factors (canonical order)."""
    xp = _xp(factors[0])
    if method == "laf":
        return xp.tensordot(factors[0], factors[1], axes=1)
    if method == "tucker":
        w = factors[0]
        for k, u in enumerate(factors[1:]):
            w = mode_product(w, u, k)
        return w
    w = factors[0]
    for g in factors[1:]:
        w = xp.tensordot(w, g, axes=1)
    return w.reshape(w.shape[1:-1])


def relative_error(method, tensor, rank):
    """||W - generate(decompose(W, rank))||_F / ||W||_F."""
    approx = generate(method, decompose(method, tensor, rank))
    xp = _xp(tensor)
    return xp.linalg.norm((tensor - approx).ravel()) / xp.linalg.norm(tensor.ravel())


# --------------------------------------------------------------------------- rank by relative error


def _smallest_rank(s, budget):
    """Smallest r with sum(s[r:]**2) <= budget."""
    tails = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])
    return max(int(np.argmax(tails <= budget)), 1)


def select_ranks(method, tensor, rel_error):
    """The ranks ``'auto'`` picks: the relative error of the truncated decomposition is
    <= ``rel_error`` and lowering any single rank by one makes it exceed ``rel_error``.

    laf: the smallest r (Eckart-Young). tucker/tt: start from the per-unfolding
    lower bounds (no rank-r_k Tucker/TT is closer than unfolding k's truncated
    SVD), greedily raise the rank that removes the most error per added
    parameter until the error is met, then drop every rank that is not needed.
    (DMTRL thresholds each unfolding separately, which can miss eps overall.)
    """
    check_method(method)
    if not 0.0 <= rel_error < 1.0:
        raise ValueError(f"tensor_factorised: rel_error={rel_error} must be in [0, 1)")
    w = np.asarray(tensor, np.float64)
    shape, bounds = w.shape, rank_bounds(method, w.shape)
    norm2 = float(np.sum(w**2))
    if norm2 == 0.0:
        return (1,) * len(bounds)
    budget = rel_error**2 * norm2 + 1e-12 * norm2
    if method == "laf":
        return (_smallest_rank(np.linalg.svd(w.reshape(-1, shape[-1]), compute_uv=False), budget),)
    lo, err2 = (_tucker_error if method == "tucker" else _tt_error)(w, budget, norm2)

    def count(rr):
        return param_count(method, shape, rr)

    r = _grow([min(a, b) for a, b in zip(lo, bounds)], bounds, err2, budget, count)
    return tuple(int(x) for x in _shrink(r, err2, budget, count))


def _tucker_error(w, budget, norm2):
    """(per-mode lower bounds, err2(ranks)): the squared error of the truncated HOSVD."""
    shape = w.shape
    us, lo = [], []
    for k in range(w.ndim):
        u, s = _left_singular(np.moveaxis(w, k, 0).reshape(shape[k], -1))
        us.append(u)
        lo.append(_smallest_rank(s, budget))
    core = w  # the full HOSVD core: truncating to r keeps its leading block, so
    for k, u in enumerate(us):  # err^2(r) = ||W||^2 - ||core[:r_1, ..., :r_N]||^2
        core = mode_product(core, u.T, k)
    energy = core**2
    for k in range(w.ndim):
        energy = np.cumsum(energy, axis=k)

    def err2(r):
        return norm2 - energy[tuple(min(rk, m) - 1 for rk, m in zip(r, energy.shape))]

    return lo, err2


def _tt_error(w, budget, norm2):
    """(per-unfolding lower bounds, err2(ranks)): the squared error of the truncated TT-SVD."""
    shape = w.shape
    lo = [_smallest_rank(_left_singular(w.reshape(math.prod(shape[:k + 1]), -1))[1], budget)
          for k in range(w.ndim - 1)]

    @functools.lru_cache(maxsize=8)
    def step(prefix):  # TT-SVD step len(prefix), given the ranks before it: (U, s, its input)
        k = len(prefix)
        if k == 0:
            c = w.reshape(shape[0], -1)
        else:
            u, _, c_prev = step(prefix[:-1])
            kept = min(prefix[-1], u.shape[1])
            c = (u[:, :kept].T @ c_prev).reshape(kept * shape[k], -1)
        return _left_singular(c) + (c,)

    def err2(r):  # TT-SVD's errors per step are orthogonal: their squares add up
        return sum(float(np.sum(step(tuple(r[:k]))[1][r[k]:] ** 2)) for k in range(len(r)))

    return lo, err2


def _grow(r, bounds, err2, budget, count):
    """Raise, one at a time, the rank that removes the most error per added parameter
    until ``err2(r) <= budget`` (or every rank is at its bound)."""
    e = err2(r)
    while e > budget:
        best = None
        for k in range(len(r)):
            if r[k] < bounds[k]:
                cand = r[:k] + [r[k] + 1] + r[k + 1:]
                ec = err2(cand)
                gain = (e - ec) / max(count(cand) - count(r), 1)
                if best is None or gain > best[0]:
                    best = (gain, cand, ec)
        if best is None:
            break
        _, r, e = best
    return r


def _shrink(r, err2, budget, count):
    """Lower ranks one at a time (the one saving most parameters first) while the error
    stays within ``budget``, until no single rank can be lowered."""
    improved = True
    while improved:
        improved = False
        for k in sorted(range(len(r)), key=lambda k: -(count(r) - count(r[:k] + [r[k] - 1] + r[k + 1:]))):
            if r[k] > 1:
                cand = r[:k] + [r[k] - 1] + r[k + 1:]
                if err2(cand) <= budget:
                    r, improved = cand, True
                    break
    return r


_AUTO_CACHE = {}


def auto_ranks(method, tensor, rel_error):
    """select_ranks, memoised on the tensor's bytes (a model's block ranks are resolved at every trace)."""
    tensor = np.asarray(tensor, np.float64)
    key = (method, float(rel_error), tensor.shape, hashlib.sha1(tensor.tobytes()).hexdigest())
    if key not in _AUTO_CACHE:
        _AUTO_CACHE[key] = select_ranks(method, tensor, rel_error)
    return _AUTO_CACHE[key]
