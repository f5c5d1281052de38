"""cross_stitch: T columns linearly mixed after chosen blocks (Misra et al. 2016).

Cross-stitch unit (Eq. 1): after block l, x'_t = sum_s alpha^l[t, s] x_s, with
one scalar per task pair ('scalar') or one per pair and channel
('channel'). Initialised 0.9 on itself, 0.1 spread over the others. Every
column influences every task, so all columns and units are shared parameters.

'diagonal' is an ablation control, not a cross-stitch network: per channel, only
alpha[t, t] (initialised ``self_weight``), the off-diagonal entries held at 0, so
each column reads only itself: single-task columns with a learned per-channel gain
(what a channel unit keeps when it learns to stop mixing). Its parameter has the
'channel' shape, so the mixing figures draw it the same way.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mtlx import schema, taps
from mtlx.architectures.base import MTLModel, mix_columns, stitch_init

UNITS = ("scalar", "channel", "diagonal")


class CrossStitch(MTLModel):
    units: str = "scalar"
    stitch_after: tuple = ()  # block indices; () = after every block but the last (checked by MTLModel.check_options)
    self_weight: float = 0.9

    task_specific_prefixes: ClassVar[tuple] = ("task_head",)

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        if "units" in options and options["units"] not in UNITS:
            raise schema.OptionError("units", options["units"], f"is not valid; choose one of {list(UNITS)}")

    def stitched_blocks(self):
        return tuple(self.stitch_after) if self.stitch_after else tuple(range(len(self.blocks) - 1))

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        T, where = self.num_tasks, self.stitched_blocks()

        def stitch(i, h):
            if i not in where:
                return h
            shape = (T, T) if self.units == "scalar" else (T, T, h.shape[-1])
            init = stitch_init(T, self.self_weight)
            if self.units == "diagonal":  # the mask keeps the off-diagonal entries' gradient at 0
                eye = jnp.eye(T)[:, :, None]
                alpha = self.param(taps.mixing_name("stitch", i), lambda k, s: init(k, s) * eye, shape) * eye
            else:
                alpha = self.param(taps.mixing_name("stitch", i), init, shape)
            return mix_columns(alpha, h)

        h = self.run_columns(x, mask, after_block=stitch)
        return self.heads(h, mask), {}
