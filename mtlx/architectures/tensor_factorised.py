"""tensor_factorised: DMTRL (Yang & Hospedales 2017, "Deep Multi-task Representation
Learning: A Tensor Factorisation Approach", ICLR).

Each block's T task kernels are one tensor W of shape (*kernel_shape, T) (the
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

``rank``: an int caps every rank (r_k = min(rank, bound_k), see ``rank_bounds``);
a tuple of ints gives them exactly (laf: (r,), tucker: (r_1..r_N), tt: the N-1
inner ranks); a tuple with one entry per block (ints, tuples or 'auto', at least
one not an int) sets them per block; ``'auto'`` picks them by ``rel_error`` (see
``select_ranks``). As in the paper, factors are initialised by decomposing
single-task kernels (``init_from``; truncated SVD / HOSVD / TT-SVD, exact at full
rank); without them, by decomposing a random single-task draw, rescaled to the
draw's norm.

Parameter names (top level; ``base.MTLModel.task_specific_prefixes`` = 'task_'):
``factorised_{i}/{weight}/{U | core, mode_k | core_k}`` shared;
``task_factor_{i}/{weight}`` the task factor (laf V, tucker U_N, tt G_N);
``task_bias_{i}/{bias}`` the per-task biases; ``task_head_*`` the heads.

Our stacks are (T, *kernel_shape) (``StackedBlock``); ``to_paper``/``to_stacked``
are the one place the task axis moves.
"""

from __future__ import annotations

import functools
import hashlib
import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtlx.architectures.base import MTLModel
from mtlx.layers import Dense, apply_stacked, init_stacked, shapes_through

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


def _rank_meaning(method):
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


def _is_int(r):
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
    if _is_int(rank):
        if rank < 1:
            raise ValueError(f"tensor_factorised{where}: rank={rank} must be >= 1 (an int caps every rank at "
                             f"its mode's bound {bounds})")
        return tuple(min(int(rank), b) for b in bounds)
    rank = tuple(rank)
    if len(rank) != len(bounds):
        raise ValueError(f"tensor_factorised{where}: rank={rank} has {len(rank)} entries; method {method!r} on a "
                         f"tensor of shape {tuple(shape)} (tasks last) needs {len(bounds)}: {_rank_meaning(method)}; "
                         f"valid range per entry 1..{bounds}")
    for k, (r, b) in enumerate(zip(rank, bounds)):
        if not _is_int(r) or not 1 <= r <= b:
            raise ValueError(f"tensor_factorised{where}: rank={rank} entry {k} = {r!r} is out of range; method "
                             f"{method!r} on a tensor of shape {tuple(shape)} (tasks last) takes "
                             f"{_rank_meaning(method)} with entry k in 1..{bounds}[k]")
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

    if method == "tucker":
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
    else:
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

    r = [min(a, b) for a, b in zip(lo, bounds)]
    count = lambda rr: param_count(method, shape, rr)  # noqa: E731
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
    improved = True
    while improved:
        improved = False
        for k in sorted(range(len(r)), key=lambda k: -(count(r) - count(r[:k] + [r[k] - 1] + r[k + 1:]))):
            if r[k] > 1:
                cand = r[:k] + [r[k] - 1] + r[k + 1:]
                if err2(cand) <= budget:
                    r, improved = cand, True
                    break
    return tuple(int(x) for x in r)


_AUTO_CACHE = {}


def _auto_ranks(method, tensor, rel_error):
    """select_ranks, memoised on the tensor's bytes (block_ranks runs at every trace)."""
    tensor = np.asarray(tensor, np.float64)
    key = (method, float(rel_error), tensor.shape, hashlib.sha1(tensor.tobytes()).hexdigest())
    if key not in _AUTO_CACHE:
        _AUTO_CACHE[key] = select_ranks(method, tensor, rel_error)
    return _AUTO_CACHE[key]


@functools.lru_cache(maxsize=256)
def _reference_draw(spec, n, in_shape):
    """A fixed random single-task draw (PRNGKey(0)), concrete even under jit: what
    rank='auto' decomposes when no single-task kernels are given."""
    with jax.ensure_compile_time_eval():
        draw = init_stacked(spec, jax.random.PRNGKey(0), n, in_shape)
        return {k: np.asarray(v, np.float64) for k, v in draw.items()}


def block_ranks(spec, n, in_shape, method, rank, rel_error, init_kernels=None, where=""):
    """{weight name: rank tuple} for one block with input shape ``in_shape``."""
    out = {}
    for name, shape in spec.weight_shapes(tuple(in_shape)).items():
        if rank == "auto":
            src = init_kernels[name] if init_kernels is not None else _reference_draw(spec, n, tuple(in_shape))[name]
            out[name] = _auto_ranks(method, to_paper(np.asarray(src, np.float64)), rel_error)
        else:
            out[name] = resolve_rank(method, tuple(shape) + (n,), rank, rel_error, None, f" {where} weight {name!r}")
    return out


# --------------------------------------------------------------------------- flax modules


class _Params(nn.Module):
    """A flat dict of parameters {name: shape}, initialised to given values."""

    @nn.compact
    def __call__(self, shapes, values=None):
        # flax also calls init abstractly at apply time to check shapes: hence zeros without values.
        return {name: self.param(name, lambda key, name=name, shape=shape: jnp.zeros(shape, jnp.float32)
                                 if values is None else jnp.asarray(values[name], jnp.float32))
                for name, shape in shapes.items()}


def factors_from_params(method, shared, task):
    """Canonical factor tuple from one weight's shared-factor dict and its task factor."""
    if method == "laf":
        return (shared["U"], task)
    if method == "tucker":
        return (shared["core"],) + tuple(shared[f"mode_{k}"] for k in range(len(shared) - 1)) + (task,)
    return tuple(shared[f"core_{k}"] for k in range(len(shared))) + (task,)


def _initial_values(spec, n, in_shape, method, ranks, key, init_kernels, init_biases):
    """Factors and biases at init: truncated decomposition of ``init_kernels`` (numpy,
    float64), else of a random single-task draw (traceable) rescaled to the draw's norm."""
    bias_names = tuple(spec.bias_shapes(in_shape))
    need_draw = init_kernels is None or (bias_names and init_biases is None)
    draw = init_stacked(spec, key, n, in_shape) if need_draw else None
    factors = {}
    for name in spec.weight_shapes(in_shape):
        if init_kernels is not None:
            f = decompose(method, to_paper(np.asarray(init_kernels[name], np.float64)), ranks[name])
            factors[name] = tuple(np.asarray(a, np.float32) for a in f)
        else:
            target = to_paper(draw[name])
            f = decompose(method, target, ranks[name])
            scale = jnp.linalg.norm(target.ravel()) / (jnp.linalg.norm(generate(method, f).ravel()) + 1e-12)
            factors[name] = (f[0] * scale,) + tuple(f[1:])
    biases = {name: (init_biases[name] if init_biases is not None else draw[name]) for name in bias_names}
    return factors, biases


class FactorisedStackedBlock(nn.Module):
    """``n`` task copies of a block whose factorisable weights (``spec.weight_shapes``)
    are generated from one DMTRL factorisation each; same call as ``StackedBlock``.

    Shared factors live in this module (``{weight}/{factor}``). The task factors
    and biases live in ``task_factors`` / ``task_biases`` when given (modules
    created by the parent, so their params sit in the parent's scope), else in
    the children ``task`` and ``bias``. ``init_kernels`` {weight: (n, *shape)}
    and ``init_biases`` {bias: (n, *shape)} initialise by decomposition/copy.
    """

    spec: object
    n: int
    method: str = "tucker"
    rank: object = 8
    rel_error: float = 0.1
    init_kernels: object = None
    init_biases: object = None
    task_factors: object = None
    task_biases: object = None
    where: str = "block"

    def ranks(self, in_shape):
        return block_ranks(self.spec, self.n, in_shape, self.method, self.rank, self.rel_error,
                           self.init_kernels, self.where)

    @nn.compact
    def __call__(self, x, mask=None, stacked_input=True):
        check_method(self.method)
        in_shape = tuple(x.shape[2:] if stacked_input else x.shape[1:])
        shapes, bias_shapes = self.spec.weight_shapes(in_shape), self.spec.bias_shapes(in_shape)
        ranks = self.ranks(in_shape)
        init, init_b = None, None
        if self.is_initializing():
            init, init_b = _initial_values(self.spec, self.n, in_shape, self.method, ranks, self.make_rng("params"),
                                           self.init_kernels, self.init_biases)
        shared, task_shapes = {}, {}
        for name, shape in shapes.items():
            fshapes = factor_shapes(self.method, tuple(shape) + (self.n,), ranks[name])
            fnames = factor_names(self.method, len(shape) + 1)
            vals = None if init is None else dict(zip(fnames[:-1], init[name][:-1]))
            shared[name] = _Params(name=name)(dict(zip(fnames[:-1], fshapes[:-1])), vals)
            task_shapes[name] = fshapes[-1]
        task_mod = self.task_factors if self.task_factors is not None else _Params(name="task")
        task = task_mod(task_shapes, None if init is None else {k: f[-1] for k, f in init.items()})
        w = {name: to_stacked(generate(self.method, factors_from_params(self.method, shared[name], task[name])))
             for name in shapes}
        if bias_shapes:
            bias_mod = self.task_biases if self.task_biases is not None else _Params(name="bias")
            w.update(bias_mod({k: (self.n,) + tuple(s) for k, s in bias_shapes.items()}, init_b))
        return apply_stacked(self.spec, w, x, mask, stacked_input)


class _CopiedStackedBlock(nn.Module):
    """A StackedBlock initialised to given stacked values (heads copied from init_from)."""

    spec: object
    n: int
    values: object

    @nn.compact
    def __call__(self, x, mask=None, stacked_input=True):
        in_shape = x.shape[2:] if stacked_input else x.shape[1:]
        ref = jax.eval_shape(lambda: init_stacked(self.spec, jax.random.PRNGKey(0), self.n, in_shape))
        vals = self.values.value
        for k, v in ref.items():
            if k not in vals or tuple(np.shape(vals[k])) != tuple(v.shape):
                raise ValueError(f"tensor_factorised: init_from[{self.name!r}][{k!r}] has shape "
                                 f"{np.shape(vals.get(k))}, expected {tuple(v.shape)}")
        w = {k: self.param(k, lambda key, k=k: jnp.asarray(vals[k], jnp.float32)) for k in ref}
        return apply_stacked(self.spec, w, x, mask, stacked_input)


class _Held:
    """Holds a params pytree in a module field by identity (keeps the module hashable)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return "<params>"


def _tupled(x):
    return tuple(_tupled(e) for e in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- the architecture


class TensorFactorised(MTLModel):
    """DMTRL: T columns whose stacked kernels are generated per block from a LAF,
    Tucker or TT factorisation (shared factors + a task factor); task heads.

    ``method`` 'laf' | 'tucker' | 'tt'; ``rank`` int cap, per-mode tuple, per-block
    tuple or 'auto' (with ``rel_error``); ``init_from`` a trained single_task
    params pytree (or its variables) to initialise factors (by decomposition),
    biases and heads (by copying).
    """

    method: str = "tucker"
    rank: object = 8
    rel_error: float = 0.1
    init_from: object = None

    task_specific_prefixes: ClassVar[tuple] = ("task_",)

    def __post_init__(self):
        if self.init_from is not None and not isinstance(self.init_from, _Held):
            src = self.init_from
            if "params" in src and not any(str(k).startswith("task_") for k in src):
                src = src["params"]
            object.__setattr__(self, "init_from", _Held(src))
        if isinstance(self.rank, (list, tuple)):  # config lists -> tuples: keeps the module hashable
            object.__setattr__(self, "rank", _tupled(self.rank))
        self.validate()
        super().__post_init__()

    # ---- configuration checks that need no input shape (run at construction)

    def per_block_rank(self):
        """The rank setting of each block."""
        r = self.rank
        if isinstance(r, tuple) and any(not _is_int(e) for e in r):
            return tuple(r)
        return (r,) * len(self.blocks)

    def validate(self):
        check_method(self.method)
        if not 0.0 <= self.rel_error < 1.0:
            raise ValueError(f"tensor_factorised: rel_error={self.rel_error} must be in [0, 1)")
        r = self.rank
        if isinstance(r, tuple) and any(not _is_int(e) for e in r) and len(r) != len(self.blocks):
            raise ValueError(f"tensor_factorised: rank={r} looks per block (an entry is not an int) but has "
                             f"{len(r)} entries for {len(self.blocks)} blocks; give one entry (int, tuple or "
                             f"'auto') per block, or one tuple of ints for every block")
        for i, (spec, ri) in enumerate(zip(self.blocks, self.per_block_rank())):
            where = f" block {i} ({type(spec).__name__})"
            if isinstance(ri, str):
                if ri != "auto":
                    raise ValueError(f"tensor_factorised:{where}: rank={ri!r} is not valid; use an int >= 1, a "
                                     f"tuple of ints, or 'auto'")
                continue
            if _is_int(ri):
                if ri < 1:
                    raise ValueError(f"tensor_factorised:{where}: rank={ri} must be >= 1 (an int caps every "
                                     f"rank at its mode's bound)")
                continue
            if not isinstance(ri, tuple) or not all(_is_int(e) for e in ri):
                raise ValueError(f"tensor_factorised:{where}: rank={ri!r} is not valid; use an int >= 1, a tuple "
                                 f"of ints, or 'auto'")
            for name, shape in spec.weight_shapes((1, 1, 1)).items():
                need = num_rank_entries(self.method, len(shape) + 1)
                if len(ri) != need:
                    raise ValueError(f"tensor_factorised:{where} weight {name!r}: rank={ri} has {len(ri)} entries; "
                                     f"method {self.method!r} on a {len(shape) + 1}-mode tensor needs {need}: "
                                     f"{_rank_meaning(self.method)}")
            if any(e < 1 for e in ri):
                raise ValueError(f"tensor_factorised:{where}: rank={ri} has an entry < 1; valid range per entry is "
                                 f"1..the mode's bound")
        if self.init_from is not None:
            src = self.init_from.value
            missing = [f"task_column_{i}" for i in range(len(self.blocks)) if f"task_column_{i}" not in src]
            if missing:
                raise ValueError(f"tensor_factorised: init_from must be single_task params with "
                                 f"task_column_0..{len(self.blocks) - 1}; missing {missing}")

    # ---- helpers (also for tests and analysis)

    def _init_arrays(self, i, spec, in_shape):
        if self.init_from is None:
            return None, None
        col = self.init_from.value[f"task_column_{i}"]
        kernels, biases = {}, {}
        for names, dst in ((spec.weight_shapes(in_shape), kernels), (spec.bias_shapes(in_shape), biases)):
            for name, shape in names.items():
                want = (self.num_tasks,) + tuple(shape)
                if name not in col or tuple(np.shape(col[name])) != want:
                    raise ValueError(f"tensor_factorised: init_from['task_column_{i}'][{name!r}] has shape "
                                     f"{np.shape(col.get(name))}, expected {want} (same blocks and tasks?)")
                dst[name] = np.asarray(col[name])
        return kernels, biases

    def ranks(self, in_shape):
        """{block i: {weight: rank tuple}} for one example's input shape (no batch axis);
        raises the shape-dependent rank errors without tracing anything."""
        shapes = shapes_through(self.blocks, in_shape)
        out = {}
        for i, (spec, ri) in enumerate(zip(self.blocks, self.per_block_rank())):
            kernels, _ = self._init_arrays(i, spec, shapes[i])
            out[i] = block_ranks(spec, self.num_tasks, shapes[i], self.method, ri, self.rel_error, kernels,
                                 f"block {i} ({type(spec).__name__})")
        return out

    def param_counts(self, in_shape):
        """{block i: {weight: closed-form factor parameter count}}."""
        shapes = shapes_through(self.blocks, in_shape)
        return {i: {w: param_count(self.method, tuple(s) + (self.num_tasks,), r[w])
                    for w, s in self.blocks[i].weight_shapes(shapes[i]).items()}
                for i, r in self.ranks(in_shape).items()}

    def kernels(self, params):
        """{block i: {weight: generated (T, *kernel_shape) stack}} from model params."""
        params = params.get("params", params)
        return {i: {w: to_stacked(generate(self.method, factors_from_params(
                    self.method, params[f"factorised_{i}"][w], params[f"task_factor_{i}"][w])))
                    for w in params[f"task_factor_{i}"]}
                for i in range(len(self.blocks))}

    # ---- the model

    def column(self, i, spec, name):
        per_block = self.per_block_rank()

        def apply(h, mask, stacked_input=True):
            in_shape = tuple(h.shape[2:] if stacked_input else h.shape[1:])
            kernels, biases = self._init_arrays(i, spec, in_shape)
            return FactorisedStackedBlock(
                spec, self.num_tasks, self.method, per_block[i], self.rel_error, kernels, biases,
                task_factors=_Params(name=f"task_factor_{i}"), task_biases=_Params(name=f"task_bias_{i}"),
                where=f"block {i} ({type(spec).__name__})", name=f"factorised_{i}")(h, mask, stacked_input)

        return apply

    def heads(self, h, mask, stacked_input=True):
        if self.init_from is None:
            return super().heads(h, mask, stacked_input)
        src, T = self.init_from.value, self.num_tasks
        h, stacked_input = self.head_input(h, stacked_input)
        for j, width in enumerate(self.head_hidden):
            h = _CopiedStackedBlock(Dense(width), T, _Held(src.get(f"task_head_{j}", {})), name=f"task_head_{j}")(
                h, mask, stacked_input=stacked_input)
            stacked_input = True
        out = _CopiedStackedBlock(Dense(max(self.num_outputs), "none"), T, _Held(src.get("task_head_out", {})),
                                  name="task_head_out")(h, mask, stacked_input=stacked_input)
        return {name: out[t, ..., : self.num_outputs[t]] for t, name in enumerate(self.task_names)}

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        h = self.run_columns(x, mask)
        return self.heads(h, mask), {}
