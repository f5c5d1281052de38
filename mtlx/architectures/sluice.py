"""sluice: sluice networks (Ruder et al. 2019, "Latent multi-task architecture learning").

Each column's output at block l is split along channels into G subspaces. The
alpha unit mixes all (task, subspace) pairs (Eq. 3): h'_{t,g} = sum_{s,k}
alpha^l[(t,g), (s,k)] h_{s,k}. The beta unit gives each task's head a learned
mix of the blocks' outputs (Eq. 4; over the blocks whose output shape equals
the last block's). The orthogonality penalty (Eq. 5) is lambda * sum_{l,t}
sum_{g<k} ||H_{l,t,g}^T H_{l,t,k} / N||_F^2 over the subspaces' activations (N rows).
With G = 1 and beta on the last block it is a scalar cross-stitch network.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mtlx import schema, taps
from mtlx.layers import shapes_through
from mtlx.architectures.base import MTLModel, stitch_init


def split_subspaces(h, g):
    """(T, B, ..., C) -> (T, G, B, ..., C/G)."""
    c = h.shape[-1]
    if c % g:
        raise ValueError(f"sluice: subspaces={g} must divide every mixed block's width; got width {c}")
    return jnp.moveaxis(h.reshape(h.shape[:-1] + (g, c // g)), -2, 1)


def merge_subspaces(h):
    """(T, G, B, ..., C/G) -> (T, B, ..., C)."""
    h = jnp.moveaxis(h, 1, -2)
    return h.reshape(h.shape[:-2] + (-1,))


def orthogonality(h, mask=None):
    """sum over tasks and subspace pairs g < k of ||H_g^T H_k / N||_F^2; h (T, G, B, ..., d).

    Eq. 5 with the Gram matrix averaged over the N rows (examples, positions,
    tokens), so the penalty's scale does not grow with the batch size.
    """
    t, g = h.shape[:2]
    rows = h.reshape(t, g, -1, h.shape[-1])
    n = rows.shape[2]
    if mask is not None:
        m = mask.reshape(1, 1, -1, 1).astype(rows.dtype)
        rows, n = rows * m, jnp.maximum(jnp.sum(m), 1.0)
    gram = jnp.einsum("tgnd,tkne->tgkde", rows, rows) / n
    sq = jnp.sum(gram**2, axis=(-1, -2))
    return jnp.sum(jnp.triu(sq, k=1))


class Sluice(MTLModel):
    subspaces: int = 2
    mix_after: tuple = ()  # block indices; () = every block (checked by MTLModel.check_options)
    orthogonality: float = 0.01  # lambda
    self_weight: float = 0.9

    task_specific_prefixes: ClassVar[tuple] = ("task_head",)

    def check_shapes(self, input_shape) -> None:
        widths = [s[-1] for s in shapes_through(self.blocks, input_shape)[1:]]
        where = tuple(self.mix_after) if self.mix_after else tuple(range(len(self.blocks)))
        bad = sorted({widths[i] for i in where if widths[i] % self.subspaces})
        if bad:
            raise schema.OptionError("subspaces", self.subspaces, f"must divide every mixed block's width; "
                                     f"widths {bad} are not multiples of it")

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        T, G = self.num_tasks, self.subspaces
        where = tuple(self.mix_after) if self.mix_after else tuple(range(len(self.blocks)))
        outputs, penalty = [], 0.0

        def mix(i, h):
            nonlocal penalty
            if i in where:
                hs = split_subspaces(h, G)
                alpha = self.param(taps.mixing_name("alpha", i), stitch_init(T * G, self.self_weight), (T * G, T * G))
                flat = hs.reshape((T * G,) + hs.shape[2:])
                hs = jnp.einsum("ab,b...->a...", alpha, flat).reshape(hs.shape)
                if G > 1:
                    penalty = penalty + orthogonality(hs, mask)
                h = merge_subspaces(hs)
            outputs.append(h)
            return h

        h = self.run_columns(x, mask, after_block=mix)
        eligible = [o for o in outputs if o.shape == h.shape]
        beta = self.param(taps.mixing_name("beta"), lambda k, s: jnp.full(s, 1.0 / s[1], jnp.float32), (T, len(eligible)))
        h = jnp.einsum("tl,lt...->t...", beta, jnp.stack(eligible))
        aux = {"orthogonality": self.orthogonality * penalty} if G > 1 else {}
        return self.heads(h, mask), aux
