"""tensor_factorised: DMTRL (Yang & Hospedales 2017, "Deep Multi-task Representation
Learning: A Tensor Factorisation Approach", ICLR): the flax modules.

Each block's T task kernels are one tensor (*kernel_shape, T) generated from a
LAF, Tucker or tensor-train factorisation whose task factor is task specific
and whose other factors are shared; the maths (shapes, ranks, decompositions,
rank selection) lives in :mod:`mtlx.tensor_decomposition`.

``rank``: an int caps every rank (r_k = min(rank, bound_k), see ``rank_bounds``);
a tuple of ints gives them exactly (laf: (r,), tucker: (r_1..r_N), tt: the N-1
inner ranks); a tuple with one entry per block (ints, tuples or 'auto', at least
one not an int) sets them per block; ``'auto'`` picks them by ``rel_error`` (see
``select_ranks``). As in the paper, factors are initialised by decomposing
single-task kernels (``init_from``: a params pytree, or ``init_from_run``: the
directory of a finished single_task run, whose last checkpoint is restored;
truncated SVD / HOSVD / TT-SVD, exact at full rank); without them, by
decomposing a random single-task draw, rescaled to the draw's norm
(``factor_init='decomposed'``, the default). ``factor_init='independent'``
instead draws every factor on its own (Glorot uniform over the factor's last
two axes, as a TensorFlow/Keras variable is by default: what an implementation
without an STL start does), so the generated kernel's scale is the product of
the factors' scales, not a dense layer's; the biases are the dense draw's.

Parameter names (top level; ``base.MTLModel.task_specific_prefixes`` = 'task_'):
``factorised_{i}/{weight}/{U | core, mode_k | core_k}`` shared;
``task_factor_{i}/{weight}`` the task factor (laf V, tucker U_N, tt G_N);
``task_bias_{i}/{bias}`` the per-task biases; ``task_head_*`` the heads.

The maths' public names are re-exported here for this release (the old import
path ``mtlx.architectures.tensor_factorised.decompose`` etc. keeps working).
"""

from __future__ import annotations

import functools
import glob
import os
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtlx.architectures.base import MTLModel
from mtlx.layers import Dense, apply_stacked, init_stacked, shapes_through
from mtlx.tensor_decomposition import (  # noqa: F401  (re-exported: the old import path)
    METHODS, auto_ranks, check_method, decompose, factor_names, factor_shapes, generate, is_int, mode_product,
    num_rank_entries, param_count, rank_bounds, rank_meaning, relative_error, resolve_rank, select_ranks,
    to_paper, to_stacked)

DECOMPOSED, INDEPENDENT = "decomposed", "independent"
FACTOR_INITS = (DECOMPOSED, INDEPENDENT)  # the ``factor_init`` choices (module docstring)


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
            out[name] = auto_ranks(method, to_paper(np.asarray(src, np.float64)), rel_error)
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


def _independent_factors(method, shape, ranks, key):
    """Every factor its own Glorot-uniform draw (fan_in/fan_out from its last two axes)."""
    shapes = factor_shapes(method, shape, ranks)
    keys = jax.random.split(key, len(shapes))
    glorot = jax.nn.initializers.glorot_uniform()
    return tuple(glorot(k, s, jnp.float32) for k, s in zip(keys, shapes))


def _initial_values(spec, n, in_shape, method, ranks, key, init_kernels, init_biases, factor_init=DECOMPOSED):
    """Factors and biases at init: truncated decomposition of ``init_kernels`` (numpy,
    float64), else of a random single-task draw (traceable) rescaled to the draw's norm,
    else (``factor_init='independent'``) every factor drawn on its own."""
    bias_names = tuple(spec.bias_shapes(in_shape))
    need_draw = init_kernels is None or (bias_names and init_biases is None)
    draw = init_stacked(spec, key, n, in_shape) if need_draw else None
    factors = {}
    for i, (name, shape) in enumerate(spec.weight_shapes(in_shape).items()):
        if init_kernels is None and factor_init == INDEPENDENT:
            factors[name] = _independent_factors(method, tuple(shape) + (n,), ranks[name],
                                                 jax.random.fold_in(jax.random.fold_in(key, 1 << 20), i))
        elif init_kernels is not None:
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
    factor_init: str = DECOMPOSED

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
                                           self.init_kernels, self.init_biases, self.factor_init)
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


@functools.lru_cache(maxsize=16)
def _run_params(run_dir: str, stamp: tuple):
    """The model params of the finished single_task run in ``run_dir`` (its last checkpoint),
    as numpy arrays; ``stamp`` (the checkpoint folder's listing) keys the cache."""
    from mtlx import checkpoint, grid, results
    from mtlx.data import pipeline
    from mtlx.train import build_run, init_state

    cfg = results.read_config(run_dir)
    if cfg.get("architecture", {}).get("name") != "single_task":
        raise ValueError(f"tensor_factorised: init_from_run={run_dir!r} is a "
                         f"{cfg.get('architecture', {}).get('name')!r} run; it must be a single_task run")
    run = build_run(grid.train_config(cfg), grid.task_set_for(cfg))
    sample = pipeline.gather(run.task_set.split("train"), np.arange(1))["inputs"]
    like = jax.eval_shape(lambda: init_state(run.model, run.weighting, run.tx, run.task_set.num_tasks, sample, 0))
    state = checkpoint.restore(checkpoint.manager(results.checkpoint_dir(run_dir)), like)
    return jax.tree_util.tree_map(np.asarray, state.params["model"])


def stl_params_of_run(run_dir: str):
    """``init_from_run``'s source: the single_task params of the run in ``run_dir`` (a run directory
    holding config.json and a checkpoint written by ``mtlx.train``), or a glob pattern matching exactly
    one such directory (e.g. ``results/x/stl-equal-s0-*``: the run id without its config hash, so that
    command-line overrides of the first stage do not break the pairing). One ValueError names a
    missing, ambiguous or unfinished run."""
    from mtlx import results

    if glob.has_magic(run_dir):
        found = sorted(d for d in glob.glob(run_dir) if os.path.isfile(os.path.join(d, results.CONFIG)))
        if len(found) != 1:
            raise ValueError(f"tensor_factorised: init_from_run={run_dir!r} matches {len(found)} run directories "
                             f"{found[:4]}; it must match exactly one (train the single_task run first)")
        run_dir = found[0]
    run_dir = os.path.abspath(run_dir)
    ckpt = results.checkpoint_dir(run_dir)
    if not os.path.isfile(os.path.join(run_dir, results.CONFIG)) or not os.path.isdir(ckpt):
        raise ValueError(f"tensor_factorised: init_from_run={run_dir!r} holds no finished run (config.json and "
                         f"a checkpoint); train the single_task run first")
    if results.read_summary(run_dir) is None:
        raise ValueError(f"tensor_factorised: init_from_run={run_dir!r} has no summary.json: the single_task run "
                         f"has not finished; finish it first")
    return _run_params(run_dir, tuple(sorted(os.listdir(ckpt))))


def _tupled(x):
    return tuple(_tupled(e) for e in x) if isinstance(x, (list, tuple)) else x


# --------------------------------------------------------------------------- the architecture


class TensorFactorised(MTLModel):
    """DMTRL: T columns whose stacked kernels are generated per block from a LAF,
    Tucker or TT factorisation (shared factors + a task factor); task heads.

    ``method`` 'laf' | 'tucker' | 'tt'; ``rank`` int cap, per-mode tuple, per-block
    tuple or 'auto' (with ``rel_error``); ``init_from`` a trained single_task
    params pytree (or its variables) to initialise factors (by decomposition),
    biases and heads (by copying); ``init_from_run`` the same from a finished
    single_task run directory (the paper's protocol, Sec. 4: train STL first,
    decompose its kernels, ranks by the relative error) -- the run must use the
    same task set, blocks and head widths.
    """

    method: str = "tucker"
    rank: object = 8
    rel_error: float = 0.1
    init_from: object = None
    init_from_run: str = ""
    factor_init: str = DECOMPOSED

    task_specific_prefixes: ClassVar[tuple] = ("task_",)

    def __post_init__(self):
        self.check_factor_init()  # before init_from_run loads anything
        if self.init_from_run and not isinstance(self.init_from, _Held):  # (flax clones arrive with it loaded)
            if self.init_from is not None:
                raise ValueError("tensor_factorised: give init_from or init_from_run, not both")
            object.__setattr__(self, "init_from", _Held(stl_params_of_run(self.init_from_run)))
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
        if isinstance(r, tuple) and any(not is_int(e) for e in r):
            return tuple(r)
        return (r,) * len(self.blocks)

    def check_factor_init(self):
        if self.factor_init not in FACTOR_INITS:
            raise ValueError(f"tensor_factorised: factor_init={self.factor_init!r} is not valid; choose one of "
                             f"{list(FACTOR_INITS)}")
        if self.factor_init == INDEPENDENT and (self.init_from is not None or self.init_from_run):
            raise ValueError("tensor_factorised: factor_init='independent' draws the factors itself; it cannot "
                             "be combined with init_from / init_from_run (which decompose single-task kernels)")

    def validate(self):
        check_method(self.method)
        if not 0.0 <= self.rel_error < 1.0:
            raise ValueError(f"tensor_factorised: rel_error={self.rel_error} must be in [0, 1)")
        r = self.rank
        if isinstance(r, tuple) and any(not is_int(e) for e in r) and len(r) != len(self.blocks):
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
            if is_int(ri):
                if ri < 1:
                    raise ValueError(f"tensor_factorised:{where}: rank={ri} must be >= 1 (an int caps every "
                                     f"rank at its mode's bound)")
                continue
            if not isinstance(ri, tuple) or not all(is_int(e) for e in ri):
                raise ValueError(f"tensor_factorised:{where}: rank={ri!r} is not valid; use an int >= 1, a tuple "
                                 f"of ints, or 'auto'")
            for name, shape in spec.weight_shapes((1, 1, 1)).items():
                need = num_rank_entries(self.method, len(shape) + 1)
                if len(ri) != need:
                    raise ValueError(f"tensor_factorised:{where} weight {name!r}: rank={ri} has {len(ri)} entries; "
                                     f"method {self.method!r} on a {len(shape) + 1}-mode tensor needs {need}: "
                                     f"{rank_meaning(self.method)}")
            if any(e < 1 for e in ri):
                raise ValueError(f"tensor_factorised:{where}: rank={ri} has an entry < 1; valid range per entry is "
                                 f"1..the mode's bound")
        if self.init_from is not None:
            src = self.init_from.value
            missing = [f"task_column_{i}" for i in range(len(self.blocks)) if f"task_column_{i}" not in src]
            if missing:
                raise ValueError(f"tensor_factorised: init_from must be single_task params with "
                                 f"task_column_0..{len(self.blocks) - 1}; missing {missing}")

    def check_shapes(self, input_shape) -> None:
        self.ranks(tuple(input_shape))  # the rank errors that need the blocks' input shapes

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
                where=f"block {i} ({type(spec).__name__})", factor_init=self.factor_init,
                name=f"factorised_{i}")(h, mask, stacked_input)

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
