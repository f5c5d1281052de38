"""hard: hard parameter sharing (Caruana 1997): a shared bottom, task columns after.

The first ``split`` blocks are shared; blocks ``split..L-1`` are one column per
task. ``split=0`` is single_task; ``split=L`` is a shared trunk with task heads.
The trunk's output is the shared representation MGDA-UB differentiates
(Sener & Koltun 2018, Sec. 3.3).
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn

from mtlx import schema
from mtlx.architectures.base import MTLModel
from mtlx.layers import Block, Dense


class Hard(MTLModel):
    split: int = -1  # -1: share every block

    has_shared_representation: ClassVar[bool] = True

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        L = len(blocks)
        if "split" in options and not (options["split"] == -1 or 0 <= options["split"] <= L):
            raise schema.OptionError("split", options["split"], f"is impossible for a backbone of {L} blocks; "
                                     f"choose 0..{L} (or -1 for all)")

    def shares_representation(self) -> bool:
        return self.depth > 0  # split=0: every block is a task column, nothing shared below the heads

    @property
    def depth(self) -> int:
        return len(self.blocks) if self.split < 0 else self.split

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
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
