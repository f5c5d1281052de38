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
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtlx import schema, taps
from mtlx.layers import Dense, StackedBlock

OPTION_RANGES = {  # by option name, for every architecture (a plug-in's too)
    "num_experts": schema.COUNT, "subspaces": schema.COUNT, "self_weight": schema.UNIT,
    "strength": schema.NONNEG, "orthogonality": schema.NONNEG, "rel_error": schema.Range(0, 1, hi_open=True),
}
_BASE_FIELDS = ("blocks", "head_hidden", "num_outputs", "task_names", "tokens", "parent", "name")


class MTLModel(nn.Module):
    """Base: ``blocks`` (the shareable backbone), ``head_hidden`` (task towers),
    ``num_outputs`` and ``task_names`` per task, ``tokens`` for token inputs."""

    blocks: tuple
    head_hidden: tuple = ()
    num_outputs: tuple = ()
    task_names: tuple = ()
    tokens: bool = False

    task_specific_prefixes: ClassVar[tuple] = ("task_",)
    has_shared_representation: ClassVar[bool] = False
    options: ClassVar[tuple] = ()  # the fields a config may set (sorted); set per subclass below

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)  # flax makes the class a dataclass here
        cls.options = tuple(sorted(f.name for f in dataclasses.fields(cls) if f.name not in _BASE_FIELDS))

    @classmethod
    def option_params(cls) -> dict:
        """{option: (annotation, default)}: what ``schema.check_options`` checks values against."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        return {n: (fields[n].type, None if fields[n].default is dataclasses.MISSING else fields[n].default)
                for n in cls.options}

    @classmethod
    def check_option_values(cls, options) -> None:
        """What needs no backbone: unknown options, types (the fields' annotations), finite numbers and
        ``OPTION_RANGES``; an ``OptionError`` names the option."""
        schema.check_options(cls.option_params(), options, OPTION_RANGES)

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        """ValueError (one line: the option, its bad value, the valid choices) for
        options this architecture cannot take over ``blocks``; subclasses extend it.

        Here: ``check_option_values``, and every option named ``*_after`` (block indices,
        e.g. where cross-stitch units sit) naming a block outside the backbone."""
        cls.check_option_values(options)
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
        read per-task copies of ``z`` (:meth:`task_copies`).
        """
        if dense_next:
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

    def run_columns(self, h, mask, start=0, stacked_input=False, after_block=None, tap=""):
        """Blocks ``start..L-1`` as T columns; ``after_block(i, h)`` may mix them;
        ``tap`` is passed to the first (see :meth:`shared_representation`)."""
        for i in range(start, len(self.blocks)):
            extra = {"tap": tap} if tap and i == start else {}
            h = self.column(i, self.blocks[i], f"task_column_{i}", **extra)(h, mask, stacked_input=stacked_input)
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
        """
        return self._perturbed_copies(taps.HEAD_REP, h, stacked_input, sow_as=taps.HEAD_INPUT)

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
        layers = [(Dense(width), f"task_head_{j}") for j, width in enumerate(self.head_hidden)]
        layers.append((Dense(max(self.num_outputs), "none"), "task_head_out"))
        for j, (spec, name) in enumerate(layers):
            h = StackedBlock(spec, self.num_tasks, tap=tap if j == 0 else "", name=name)(
                h, mask, stacked_input=stacked_input)
            stacked_input = True
        width = h.shape[-1]
        return {name: (p[0] if n == width else p[0, ..., :n])
                for p, n, name in zip(jnp.split(h, self.num_tasks), self.num_outputs, self.task_names)}


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
