"""hard: hard parameter sharing (Caruana 1997): a shared bottom, task columns after.

The first ``split`` blocks are shared; blocks ``split..L-1`` are one column per
task. ``split=0`` is single_task; ``split=L`` is a shared trunk with task heads.
The trunk's output is the shared representation MGDA-UB differentiates
(Sener & Koltun 2018, Sec. 3.3).

Low supervision (Søgaard & Goldberg 2016, "Deep multi-task learning with low
level tasks supervised at lower layers"): ``head_depth`` gives, per task, the
block whose output its head reads (a list in task order, or ``{task: block}``
with the others on the top block L-1): e.g. POS on block 0, chunking on the
last. Task t's loss then depends on blocks ``0..k_t`` only; a block above the
deepest read is not built. Where block k_t is a task column (k_t >= split) the
head reads task t's own column. With every head on the top block (the default)
this is hard sharing, the same parameters and computation. With heads at
different depths there is no one representation below every head, so MGDA-UB
(``shares_representation``) is not offered.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mtlx import regularizers, schema
from mtlx.architectures.base import MTLModel
from mtlx.layers import Block, Dense


class Hard(MTLModel):
    split: int = -1  # -1: share every block
    head_depth: object = None  # per task, the block its head reads (list in task order or {task: block}); None: top

    has_shared_representation: ClassVar[bool] = True

    def __post_init__(self):
        if self.head_depth is not None:  # config lists/dicts -> tuples/FrozenDict: keeps the module hashable
            object.__setattr__(self, "head_depth", regularizers.freeze(self.head_depth))
        super().__post_init__()

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        L = len(blocks)
        if "split" in options and not (options["split"] == -1 or 0 <= options["split"] <= L):
            raise schema.OptionError("split", options["split"], f"is impossible for a backbone of {L} blocks; "
                                     f"choose 0..{L} (or -1 for all)")
        depth = regularizers.plain(options.get("head_depth"))
        if depth is None:
            return
        values = list(depth.values()) if isinstance(depth, Mapping) else depth
        if not (isinstance(values, (list, tuple)) and all(schema.is_int(k) and 0 <= k < L for k in values)):
            raise schema.OptionError("head_depth", depth, f"must give block indices in 0..{L - 1}, as a list in "
                                     f"task order or a dict {{task: block}}")
        if not isinstance(depth, Mapping) and len(depth) != num_tasks:
            raise schema.OptionError("head_depth", list(depth), f"needs one block per task ({num_tasks} tasks)")

    def check_shapes(self, input_shape) -> None:
        self.head_depths()  # a dict naming an unknown task

    def head_depths(self) -> tuple:
        """The block each task's head reads, in task order (the top block L-1 where unset)."""
        top = len(self.blocks) - 1
        if self.head_depth is None:
            return (top,) * self.num_tasks
        if not isinstance(self.head_depth, Mapping):
            return tuple(self.head_depth)
        unknown = sorted(set(self.head_depth) - set(self.task_names))
        if unknown:
            raise schema.OptionError("head_depth", dict(self.head_depth),
                                     f"names unknown tasks {unknown}; the tasks are {list(self.task_names)}")
        return tuple(self.head_depth.get(t, top) for t in self.task_names)

    def shares_representation(self) -> bool:
        # split=0: every block is a task column, nothing shared below the heads; heads at different
        # depths (low supervision): no one representation below every head
        return self.depth > 0 and len(set(self.head_depths())) == 1 and self.head_depths()[0] == len(self.blocks) - 1

    @property
    def depth(self) -> int:
        return len(self.blocks) if self.split < 0 else self.split

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        reads = self.head_depths()
        if any(k != len(self.blocks) - 1 for k in reads):
            return self.low_supervision(x, mask, reads), {}
        h = x
        for i in range(self.depth):
            h = Block(self.blocks[i], name=f"shared_{i}")(h, mask)
        stacked, tap = False, ""
        shared_input = self.depth == len(self.blocks)
        if self.depth > 0:  # the heads start with a Dense layer
            dense_next = shared_input or isinstance(self.blocks[self.depth], Dense)
            h, stacked, tap = self.shared_representation(h, dense_next)
        h = self.run_columns(h, mask, start=self.depth, stacked_input=stacked, tap=tap)
        return self.heads(h, mask, stacked_input=stacked or not shared_input, tap=tap if shared_input else ""), {}

    def low_supervision(self, x, mask, reads):
        """The heads on blocks ``reads`` (one per task): the trunk (and the columns) up to the deepest
        read block, each task's head fed that block's output (its own column's where it is one)."""
        top = max(reads)
        outs, h = [], x
        for i in range(min(self.depth, top + 1)):
            h = Block(self.blocks[i], name=f"shared_{i}")(h, mask)
            outs.append(h)
        if top >= self.depth:
            self.run_columns(h, mask, start=self.depth, stacked_input=False, stop=top + 1,
                             after_block=lambda i, c: outs.append(c) or c)
        per_task = [outs[k] if k < self.depth else outs[k][t] for t, k in enumerate(reads)]
        return self.heads(stack_padded(per_task), mask, stacked_input=True)


def stack_padded(xs):
    """(T, B, ..., D) from T outputs of different blocks: images (B, H, W, C) flattened to (B, HWC), as the
    heads' Dense would, and the last axis zero-padded to the widest. A zero input row adds nothing, so a
    head on the padded input computes what a head on its own width would."""
    xs = [x.reshape(x.shape[0], -1) if x.ndim == 4 else x for x in xs]
    width = max(x.shape[-1] for x in xs)
    return jnp.stack([jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - x.shape[-1])]) for x in xs])
