"""What every architecture shares: the column stack, the task heads, the model API.

An architecture is a ``flax.linen`` module whose ``__call__(x)`` returns
``(preds, aux)``: ``preds`` maps task name -> prediction, ``aux`` maps a name
-> scalar penalty already scaled by its coefficient (the train step adds them
to the loss). The input is ``(B, ...)``; token inputs use id 0 as padding and
the padding mask is derived here.

Parameters whose top-level name starts with one of the class's
``task_specific_prefixes`` belong to one task only; all others are *shared*
(they can influence every task's loss). ``mtlx.architectures.shared_mask`` reads
this, so it is the one place that defines what a weighting's per-task
Jacobian is taken over.

Each class validates its own options (``check_options``, before anything is
built): ``options`` lists the fields a config may set, and a subclass extends
``check_options`` with its own ranges. The registry (``mtlx.architectures``)
names the classes and prefixes their one-line errors with the name.

One option every architecture takes, not listed in ``options``: ``regularizer``
(``mtlx.regularizers``: block-sparse, clustered, relationship penalties on the
task-stacked weights of the task columns and heads). It is handled here once:
``__init_subclass__`` wraps each subclass's ``__call__`` so that the penalty
joins ``aux`` under ``regularizer_<name>``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict

from mtlx import regularizers, schema, taps
from mtlx.gradient_reversal import reverse_per_task
from mtlx.layers import Dense, StackedBlock

OPTION_RANGES = {  # by option name, for every architecture (a plug-in's too)
    "num_experts": schema.COUNT, "subspaces": schema.COUNT, "self_weight": schema.UNIT,
    "strength": schema.NONNEG, "orthogonality": schema.NONNEG, "rel_error": schema.Range(0, 1, hi_open=True),
}
GENERIC_OPTIONS = ("regularizer",)  # options every architecture takes (handled here, not in ``options``)
_BASE_FIELDS = ("blocks", "head_hidden", "num_outputs", "task_names", "tokens", "gradient_reversal", "parent", "name",
                *GENERIC_OPTIONS)
COLUMN = "task_column_{}"  # block i's task columns (a top-level parameter name)
HEAD_PREFIX = "task_head_"  # the task heads' layers


class MTLModel(nn.Module):
    """Base: ``blocks`` (the shareable backbone), ``head_hidden`` (task towers),
    ``num_outputs`` and ``task_names`` per task, ``tokens`` for token inputs,
    ``gradient_reversal`` per task (``Task.gradient_reversal``; () = none)."""

    blocks: tuple
    head_hidden: tuple = ()
    num_outputs: tuple = ()
    task_names: tuple = ()
    tokens: bool = False
    gradient_reversal: tuple = ()  # per task: the gradient-reversal lambda at its head's input (0: none)
    regularizer: object = None  # a dict for mtlx.regularizers (see the module docstring), or None

    task_specific_prefixes: ClassVar[tuple] = ("task_",)
    has_shared_representation: ClassVar[bool] = False
    options: ClassVar[tuple] = ()  # the fields a config may set (sorted); set per subclass below

    def __init_subclass__(cls, **kwargs):
        if "__call__" in cls.__dict__:  # before flax wraps the methods
            cls.__call__ = _with_regularizer(cls.__dict__["__call__"])
        super().__init_subclass__(**kwargs)  # flax makes the class a dataclass here
        cls.options = tuple(sorted(f.name for f in dataclasses.fields(cls) if f.name not in _BASE_FIELDS))

    @classmethod
    def option_params(cls) -> dict:
        """{option: (annotation, default)}: what ``schema.check_options`` checks values against."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        return {n: (fields[n].type, None if fields[n].default is dataclasses.MISSING else fields[n].default)
                for n in cls.options}

    def __post_init__(self):
        if self.regularizer is not None:  # config dicts -> FrozenDict: keeps the module hashable
            object.__setattr__(self, "regularizer", regularizers.freeze(self.regularizer))
        super().__post_init__()

    @classmethod
    def check_option_values(cls, options) -> None:
        """What needs no backbone: unknown options, types (the fields' annotations), finite numbers and
        ``OPTION_RANGES``; an ``OptionError`` names the option. ``regularizer``: ``regularizers.check``."""
        own = {k: v for k, v in options.items() if k not in GENERIC_OPTIONS}
        try:
            schema.check_options(cls.option_params(), own, OPTION_RANGES)
        except schema.OptionError:
            raise
        except ValueError as e:  # unknown options: say that the generic ones exist too
            raise ValueError(f"{e} (and, for every architecture, {list(GENERIC_OPTIONS)})") from None
        if options.get("regularizer") is not None:
            regularizers.check(options["regularizer"])

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        """ValueError (one line: the option, its bad value, the valid choices) for
        options this architecture cannot take over ``blocks``; subclasses extend it.

        Here: ``check_option_values``, and every option named ``*_after`` (block indices,
        e.g. where cross-stitch units sit) naming a block outside the backbone."""
        cls.check_option_values(options)
        if options.get("regularizer") is not None:
            regularizers.check(options["regularizer"], len(blocks), num_tasks)
        for key in sorted(k for k in options if k.endswith("_after")):
            bad = [i for i in options[key] if not schema.is_int(i) or not 0 <= i < len(blocks)]
            if bad:
                raise schema.OptionError(key, list(options[key]),
                                         f"names blocks {bad} outside 0..{len(blocks) - 1}")

    def shares_representation(self) -> bool:
        """Whether a representation is shared below the heads (what MGDA-UB differentiates)."""
        return type(self).has_shared_representation

    def check_shapes(self, input_shape) -> None:
        """Shape-dependent option checks (one example's ``input_shape``), before anything is traced."""

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def input_mask(self, x):
        return (x > 0) if self.tokens else None

    def shared_representation(self, z, dense_next: bool):
        """Where MGDA-UB differentiates (Sener & Koltun 2018, Sec. 3.3): the
        shared representation ``z``, read next by the task layers (Dense ones
        if ``dense_next``). Returns ``(h, stacked, tap)`` for those layers.

        A Dense first task layer is tapped (``tap=taps.SHARED_REP_PRE``): when
        the train step perturbs its pre-activation ``a_t = z W_t + b_t``, one
        backward pass gives every ``delta_t = dL_t/da_t`` and the rows are
        ``dL_t/dz = delta_t W_t^T``, at no extra forward cost. Other layers
        read per-task copies of ``z`` (:meth:`task_copies`), and so do all when
        a task's head reverses gradients (the rows must see the reversal).
        """
        if dense_next and not self.reverses_gradients():  # the tap reads deltas above the reversal: unreversed
            return z, False, taps.SHARED_REP_PRE
        return (*self.task_copies(z), "")

    def task_copies(self, z):
        """The shared representation ``z`` as T per-task copies ``(T, ...)``,
        perturbed as ``taps.SHARED_REP``: task t's loss reads copy t only, so ONE
        backward pass gives every row ``dL_t/dz`` of MGDA-UB's matrix through
        the task-specific layers once, not T times. Returns ``(h, stacked)``:
        without the perturbation collection (every other weighting) ``z``
        itself, ``stacked=False``, at no cost.
        """
        return self._perturbed_copies(taps.SHARED_REP, z, stacked=False)

    def column(self, i, spec, name, tap=""):
        """The task-stacked version of block ``i`` (overridden by tensor_factorised)."""
        return StackedBlock(spec, self.num_tasks, tap=tap, name=name)

    def run_columns(self, h, mask, start=0, stacked_input=False, after_block=None, tap="", stop=None):
        """Blocks ``start..stop-1`` (default: to the last) as T columns; ``after_block(i, h)`` may mix
        them; ``tap`` is passed to the first (see :meth:`shared_representation`)."""
        for i in range(start, len(self.blocks) if stop is None else stop):
            extra = {"tap": tap} if tap and i == start else {}
            h = self.column(i, self.blocks[i], COLUMN.format(i), **extra)(h, mask, stacked_input=stacked_input)
            stacked_input = True
            if after_block is not None:
                h = after_block(i, h)
        return h

    def head_input(self, h, stacked_input):
        """Where the task-separable part begins: task t's loss reads only
        ``h[t]`` (or the shared ``h``). When the train step perturbs
        ``taps.HEAD_REP`` (full-Jacobian weightings), ``h`` is sown as
        ``taps.HEAD_INPUT`` and fed as perturbed per-task copies, so that one
        backward pass through the heads gives every ``dL_t/dh_t`` and only the
        layers below them are traversed once per task. Otherwise a no-op.

        Tasks with a ``gradient_reversal`` lambda > 0 read ``h`` through the
        gradient-reversal layer first (:meth:`reversed_for_heads`), before the
        sow: the Jacobian rows of the layers below see the reversed gradient too.
        """
        h, stacked_input = self.reversed_for_heads(h, stacked_input)
        return self._perturbed_copies(taps.HEAD_REP, h, stacked_input, sow_as=taps.HEAD_INPUT)

    def reverses_gradients(self) -> bool:
        """Whether some task's head reads its input through a gradient-reversal layer."""
        return any(lam > 0 for lam in self.gradient_reversal)

    def reversed_for_heads(self, h, stacked_input):
        """Gradient reversal (Ganin & Lempitsky 2015) at the heads' input: task t's copy of ``h`` passes
        R_lambda_t (identity forward, -lambda_t times the gradient backward) where lambda_t > 0. So the
        discriminator is the head (``head_hidden`` towers and output layer); every layer below it, a
        task's own column included, receives the reversed gradient. A shared ``h`` becomes T copies
        (only when some task reverses). Every architecture whose heads go through :meth:`heads` or
        :meth:`head_input` gets it (all of the registry's)."""
        lambdas = tuple(self.gradient_reversal)
        if not self.reverses_gradients():
            return h, stacked_input
        if len(lambdas) != self.num_tasks:
            raise ValueError(f"gradient_reversal has {len(lambdas)} entries for {self.num_tasks} tasks")
        if not stacked_input:
            h = broadcast_copies(h, self.num_tasks)
        return reverse_per_task(h, lambdas), True

    def _perturbed_copies(self, name, h, stacked, sow_as=None):
        """``(h, stacked)`` unchanged unless the train step passes perturbation
        ``name``; then ``h`` (optionally sown as ``sow_as``) as T per-task
        copies plus that perturbation, ``stacked=True``."""
        if not (self.is_initializing() or self.has_variable(taps.PERTURBATIONS, name)):
            return h, stacked
        if sow_as:
            self.sow(taps.INTERMEDIATES, sow_as, h)
        return self.perturb(name, h if stacked else broadcast_copies(h, self.num_tasks)), True

    def heads(self, h, mask, stacked_input=True, tap=""):
        """Task towers (``head_hidden``) and output layers, stacked over tasks;
        ``tap`` is passed to the first (see :meth:`shared_representation`).

        Output widths are padded to the widest task and sliced back per task.
        The tasks' outputs are taken apart by one ``jnp.split``, whose VJP is
        one concatenate: T separate slices would back-propagate as T
        zero-padded (T, B, ...) arrays summed (O(T^2 B) work, half of the
        equal-weighting step at T = 40, measured).
        """
        h, stacked_input = self.head_input(h, stacked_input)
        layers = [(Dense(width), f"{HEAD_PREFIX}{j}") for j, width in enumerate(self.head_hidden)]
        layers.append((Dense(max(self.num_outputs), "none"), f"{HEAD_PREFIX}out"))
        for j, (spec, name) in enumerate(layers):
            h = StackedBlock(spec, self.num_tasks, tap=tap if j == 0 else "", name=name)(
                h, mask, stacked_input=stacked_input)
            stacked_input = True
        width = h.shape[-1]
        return {name: (p[0] if n == width else p[0, ..., :n])
                for p, n, name in zip(jnp.split(h, self.num_tasks), self.num_outputs, self.task_names)}

    # ---- the ``regularizer`` option (mtlx.regularizers)

    def regularized_weights(self, params) -> dict:
        """{'<layer>/<weight>': (T, ...)}: the task-stacked weights ``regularizer.layers`` selects in ``params``
        (block i's task columns and/or the heads' kernels; by default every one present). A block index
        this architecture does not keep as task columns is a ValueError naming the ones it does."""
        layers = self.regularizer.get("layers")
        present = [i for i in range(len(self.blocks)) if COLUMN.format(i) in params]
        wanted = present if layers is None else [i for i in layers if i != regularizers.HEADS]
        missing = sorted(set(wanted) - set(present))
        if missing:
            raise ValueError(f"architecture.options.regularizer.layers={list(layers)} names blocks {missing}, which "
                             f"{type(self).__name__} does not keep as task columns; its task columns: {present} "
                             f"(and {regularizers.HEADS!r})")
        out = {f"{COLUMN.format(i)}/{w}": params[COLUMN.format(i)][w]
               for i in sorted(wanted) for w in self.blocks[i].weight_shapes((1, 1, 1))}
        if layers is None or regularizers.HEADS in layers:
            out.update({f"{k}/kernel": params[k]["kernel"] for k in sorted(params) if str(k).startswith(HEAD_PREFIX)})
        return out

    def regularized_mask(self, params):
        """A pytree of bools over the model ``params``: True at the leaves :meth:`regularized_weights`
        selects (e.g. the ``mask`` of ``mtlx.regularizers.block_sparse.proximal``)."""
        chosen = set(self.regularized_weights(params))
        flat = flatten_dict(params)
        return unflatten_dict({path: "/".join(map(str, path)) in chosen for path in flat})

    def regularizer_terms(self) -> dict:
        """``{'regularizer_<name>': strength * penalty}`` of the current parameters ({} without a regularizer)."""
        if self.regularizer is None:
            return {}
        stacked = list(self.regularized_weights(self.variables["params"]).values())
        return {f"regularizer_{self.regularizer['name']}": regularizers.penalty(self.regularizer, stacked)}

    def task_covariances(self, params) -> dict:
        """For logging a ``relationship`` regulariser: {'<layer>/<weight>': the learned task covariance
        Sigma_T (T, T)} from the model ``params`` (the closed form the penalty uses; see
        ``mtlx.regularizers.relationship``). {} for any other regulariser or none."""
        if self.regularizer is None or self.regularizer["name"] != "relationship":
            return {}
        opts = regularizers.options_of(self.regularizer)
        return {k: regularizers.relationship.task_covariance(w, **opts)
                for k, w in self.regularized_weights(params).items()}


def _with_regularizer(call):
    """``call`` (an architecture's ``__call__``) with the regularizer's terms added to its ``aux``."""

    @functools.wraps(call)  # keeps flax's ``compact`` mark
    def wrapped(self, *args, **kwargs):
        preds, aux = call(self, *args, **kwargs)
        terms = self.regularizer_terms()
        return (preds, {**aux, **terms}) if terms else (preds, aux)

    return wrapped


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def broadcast_copies(z, n):
    """``n`` copies of ``z`` on a new leading axis. Its VJP sums the copies'
    cotangents as a dot with a ones vector: a reduce_sum gets fused into the
    batched dot producing the cotangents, which XLA:CPU then emits as a naive
    loop (6x slower MGDA-UB steps, measured)."""
    return jnp.broadcast_to(z, (n,) + z.shape)


def _copies_fwd(z, n):
    return broadcast_copies(z, n), None


def _copies_bwd(n, _, ct):
    return (jnp.tensordot(jnp.ones((n,), ct.dtype), ct, axes=1),)


broadcast_copies.defvjp(_copies_fwd, _copies_bwd)


def stitch_init(num_units: int, self_weight: float = 0.9):
    """Cross-stitch initialisation: ``self_weight`` on the diagonal, the rest
    spread evenly over the other units (Misra et al. 2016, Sec. 3.3)."""

    def init(key, shape):
        off = (1.0 - self_weight) / max(num_units - 1, 1)
        eye = jnp.eye(num_units)
        a = eye * self_weight + (1 - eye) * off
        return jnp.broadcast_to(a.reshape(a.shape + (1,) * (len(shape) - 2)), shape).astype(jnp.float32)

    return init


def mix_columns(alpha, h):
    """h'_t = sum_s alpha[t, s] h_s for h (T, B, ..., C); alpha (T, T) or per-channel (T, T, C)."""
    if alpha.ndim == 2:
        return jnp.einsum("ts,s...->t...", alpha, h)
    return jnp.einsum("tsc,s...c->t...c", alpha, h)
