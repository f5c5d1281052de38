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
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mtlx.layers import Dense, StackedBlock


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

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def input_mask(self, x):
        return (x > 0) if self.tokens else None

    def column(self, i, spec, name):
        """The task-stacked version of block ``i`` (overridden by tensor_factorised)."""
        return StackedBlock(spec, self.num_tasks, name=name)

    def run_columns(self, h, mask, start=0, stacked_input=False, after_block=None):
        """Blocks ``start..L-1`` as T columns; ``after_block(i, h)`` may mix them."""
        for i in range(start, len(self.blocks)):
            h = self.column(i, self.blocks[i], f"task_column_{i}")(h, mask, stacked_input=stacked_input)
            stacked_input = True
            if after_block is not None:
                h = after_block(i, h)
        return h

    def heads(self, h, mask, stacked_input=True):
        """Task towers (``head_hidden``) and output layers, stacked over tasks.

        Output widths are padded to the widest task and sliced back per task.
        """
        for j, width in enumerate(self.head_hidden):
            h = StackedBlock(Dense(width), self.num_tasks, name=f"task_head_{j}")(h, mask, stacked_input=stacked_input)
            stacked_input = True
        out = StackedBlock(Dense(max(self.num_outputs), "none"), self.num_tasks, name="task_head_out")(
            h, mask, stacked_input=stacked_input)
        return {name: out[t, ..., : self.num_outputs[t]] for t, name in enumerate(self.task_names)}


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
