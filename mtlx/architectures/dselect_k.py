"""dselect_k: mixture of experts with DSelect-k gates (Hazimeh et al. 2021, NeurIPS).

``num_experts`` experts (each the backbone, as in ``mmoe``) and one
per-example gate per task. A gate holds k single-expert selectors; selector i
has m = ceil(log2 n) logits z_i (here z_i = W_i x + b_i) and puts mass

    r(z_i)_j = prod_{l=1..m} S(z_il)^[b_l(j) = 1] (1 - S(z_il))^[b_l(j) = 0]      (Eq. 4)

on the slot j whose binary code is b(j), with the smooth step (Eq. 3)

    S(t) = 0 for t <= -gamma/2,  1 for t >= gamma/2,  -2 t^3 / gamma^3 + 3 t / (2 gamma) + 1/2 between.

The gate's weights are q = sum_i softmax(alpha)_i r(z_i) (Eq. 5, alpha = A x + c),
a point of the simplex; once the z saturate, each selector picks exactly one
expert, so at most k experts are used. ``entropy`` > 0 adds lambda * mean over
examples of sum_(t, i) H(r(z_i)) (Sec. 3.3), which pushes the selectors to
saturate.

n not a power of two (the paper assumes n = 2^m): slot j >= n is folded onto
expert j - n, so q stays on the simplex over the n experts and a saturated
selector still picks exactly one. Token inputs: a leading Embed block is
shared and the gates read the embeddings per token, as in ``mmoe``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtlx import schema
from mtlx.architectures.base import MTLModel
from mtlx.layers import Block, Embed, StackedBlock


def code_bits(num_experts: int) -> int:
    """m: the binary code length of a selector over ``num_experts`` experts (at least 1)."""
    return max(1, math.ceil(math.log2(num_experts)))


def smooth_step(t, gamma: float):
    """S(t) of Hazimeh et al. 2021, Eq. 3: a cubic from 0 (t <= -gamma/2) to 1 (t >= gamma/2)."""
    cubic = -2.0 / gamma ** 3 * t ** 3 + 1.5 / gamma * t + 0.5
    return jnp.where(t <= -gamma / 2, 0.0, jnp.where(t >= gamma / 2, 1.0, cubic))


def selector(z, num_experts: int, gamma: float):
    """r(z) over the 2^m slots (..., 2^m) from the logits z (..., m), and its folding onto the
    ``num_experts`` experts (..., n) (slot j -> expert j mod n)."""
    m = z.shape[-1]
    bits = (np.arange(2 ** m)[:, None] >> np.arange(m)[None]) & 1          # (2^m, m): b_l(j), l = 0 least significant
    s = smooth_step(z, gamma)[..., None, :]                                 # (..., 1, m)
    slots = jnp.prod(jnp.where(bits == 1, s, 1.0 - s), axis=-1)             # (..., 2^m)
    fold = np.zeros((2 ** m, num_experts), np.float32)
    fold[np.arange(2 ** m), np.arange(2 ** m) % num_experts] = 1.0
    return slots, slots @ fold


def expert_tower(blocks, n, h, mask):
    """``n`` experts, each the blocks ``blocks``, on the shared input ``h``: (n, B, ...) (as in ``mmoe``)."""
    for i, spec in enumerate(blocks):
        h = StackedBlock(spec, n, name=f"expert_{i}")(h, mask, stacked_input=i > 0)
    return h


class DSelectGate(nn.Module):
    """The T tasks' DSelect-k gates on ``x`` (B, [L,] D): weights (B, [L,] T, n) and the selectors'
    slot distributions r (B, [L,] T, k, 2^m)."""

    num_tasks: int
    num_experts: int
    k: int
    gamma: float

    @nn.compact
    def __call__(self, x):
        T, k, m = self.num_tasks, self.k, code_bits(self.num_experts)
        lead = x.shape[:-1]
        z = nn.Dense(T * k * m, name="selector")(x).reshape(lead + (T, k, m))
        alpha = nn.Dense(T * k, name="weights")(x).reshape(lead + (T, k))
        slots, r = selector(z, self.num_experts, self.gamma)
        q = jnp.einsum("...tk,...tkn->...tn", jax.nn.softmax(alpha, axis=-1), r)
        return q, slots


def entropy_penalty(slots, mask):
    """Mean over examples (and real tokens) of sum over tasks and selectors of H(r(z_i))."""
    h = -jnp.sum(jnp.where(slots > 0, slots * jnp.log(jnp.where(slots > 0, slots, 1.0)), 0.0), axis=(-1, -2, -3))
    if mask is None:
        return jnp.mean(h)
    return jnp.sum(h * mask) / jnp.maximum(jnp.sum(mask), 1)


class DSelectK(MTLModel):
    num_experts: int = 4
    k: int = 2
    gamma: float = 1.0
    entropy: float = 0.0

    has_shared_representation: ClassVar[bool] = True

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        n, k = options.get("num_experts", 4), options.get("k", 2)
        if not 1 <= k <= n:
            raise schema.OptionError("k", k, f"must lie in [1, num_experts={n}]")
        for name, rule in (("gamma", schema.POSITIVE), ("entropy", schema.NONNEG)):
            if name in options and not rule.holds(options[name]):
                raise schema.OptionError(name, options[name], str(rule))

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        blocks, h = self.blocks, x
        if isinstance(blocks[0], Embed):
            h = Block(blocks[0], name="shared_embed")(h, mask)
            blocks = blocks[1:]
        gate_in = h if self.tokens else h.reshape(h.shape[0], -1)
        experts, copies = self.task_copies(expert_tower(blocks, self.num_experts, h, mask))
        q, slots = DSelectGate(self.num_tasks, self.num_experts, self.k, self.gamma, name="gate")(gate_in)
        # q (B, [L,] T, E); experts (E, B, [L,] ..., d) or per-task copies (T, E, ...) -> (T, B, [L,] ..., d)
        lead = 2 + int(copies) + int(self.tokens)
        eb = experts.reshape(experts.shape[:lead] + (-1,))
        mixed = jnp.einsum("b...te,teb...d->tb...d" if copies else "b...te,eb...d->tb...d", q, eb)
        mixed = mixed.reshape((self.num_tasks,) + experts.shape[1 + int(copies):])
        aux = {"entropy": self.entropy * entropy_penalty(slots, mask)} if self.entropy > 0 else {}
        return self.heads(mixed, mask), aux
