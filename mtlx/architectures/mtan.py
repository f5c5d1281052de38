"""mtan: Multi-Task Attention Network (Liu, Johns & Davison 2019, CVPR).

A shared network (the backbone's blocks, ``shared_{j}``, as in ``hard`` with
every block shared) computes p^(j), the output of block j. Each task t has an
attention module per block that gates the shared features with a learned
soft mask (Eq. 1-2):

    a_t^(j)   = sigmoid(h_t^(j)(relu(g_t^(j)([p^(j) ; f^(j)(hat a_t^(j-1))]))))
    hat a_t^(j) = a_t^(j) * p^(j)                       (element-wise)

with only [p^(0)] read at the first block. f^(j) maps the task's previous
attended features to block j's output shape; task t's head reads hat a_t^(L).
With every mask a = 1 the heads read p^(L): hard sharing of all blocks.

Simplified to what a block list allows (Liu et al. use VGG/SegNet stages):
  * one attention module per block, and u^(j) = p^(j): a block is one layer,
    so the stage's first-layer features u^(j) and its output p^(j) coincide;
  * g and h are 1x1 convolutions on image features, per-position Dense layers
    on vector or per-token features, without batch normalisation;
  * f^(j) is a block of block j's own kind and size (a conv block convolves and
    pools as the paper's 3x3 conv + pooling does), with its own parameters,
    shared by the tasks as in the paper.
Every block kind works (dense, conv, bilstm, and a leading embed, whose
per-token vectors are gated like any other features).

Shared parameters: the shared network and the f^(j); task-specific: the
attention modules g, h (``task_attention_*``) and the heads.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mtlx.architectures.base import MTLModel
from mtlx.layers import Block, Conv, Dense, StackedBlock


def attention_layer(features: int, activation: str, image: bool):
    """A per-position layer over the channel axis: a 1x1 convolution on image features (B, H, W, C),
    a Dense layer on vectors (B, C) or tokens (B, L, C)."""
    return Conv(features, kernel=1, pool=1, activation=activation) if image else Dense(features, activation)


class MTAN(MTLModel):
    """Options: none beyond the backbone (the attention modules' sizes follow the blocks)."""

    has_shared_representation: ClassVar[bool] = False  # the heads read task-gated features of every block

    def attend(self, j, p, prev, mask):
        """hat a^(j) for every task (T, B, ...): the masks from [p^(j) ; f^(j)(hat a^(j-1))] times p^(j)."""
        T, image = self.num_tasks, p.ndim == 4
        inp = jnp.broadcast_to(p, (T,) + p.shape)
        if prev is not None:  # f^(j): block j's kind, its own shared parameters, on all T tasks' features at once
            flat = prev.reshape((-1,) + prev.shape[2:])
            tmask = None if mask is None else jnp.tile(mask, (T, 1))
            f = Block(self.blocks[j], name=f"attention_f_{j}")(flat, tmask)
            inp = jnp.concatenate([inp, f.reshape((T, -1) + f.shape[1:])], axis=-1)
        c = p.shape[-1]
        g = StackedBlock(attention_layer(c, "relu", image), T, name=f"task_attention_{j}_g")(inp, mask)
        a = StackedBlock(attention_layer(c, "sigmoid", image), T, name=f"task_attention_{j}_h")(g, mask)
        return a * p

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        p, attended = x, None
        for j, spec in enumerate(self.blocks):
            p = Block(spec, name=f"shared_{j}")(p, mask)
            attended = self.attend(j, p, attended, mask)
        return self.heads(attended, mask, stacked_input=True), {}
