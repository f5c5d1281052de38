"""single_task: T independent columns of the backbone, the baseline of delta_m."""

from __future__ import annotations

import flax.linen as nn

from mtlx.architectures.base import MTLModel


class SingleTask(MTLModel):
    """One column (the whole backbone) and one head per task; nothing shared."""

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        h = self.run_columns(x, mask)
        return self.heads(h, mask), {}
