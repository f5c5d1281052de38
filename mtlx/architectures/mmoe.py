"""mmoe and omoe: mixture of experts with task gates (Ma et al. 2018, KDD).

E expert networks (each the backbone) read the input; task t's tower reads
f^t(x) = sum_i g^t(x)_i f_i(x) with g^t(x) = softmax(W_{g,t} x) (Eq. 5-6).
OMoE uses one gate for all tasks (Eq. 4 with learned gate). For token inputs a
leading Embed block is shared and the gates read the embeddings per token.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtlx.architectures.base import MTLModel
from mtlx.layers import Block, Embed, StackedBlock


class MoE(MTLModel):
    """E experts and ``gates`` softmax gates; the subclasses fix ``gates``."""

    num_experts: int = 8

    gates: ClassVar[str]  # 'multi' (a gate per task, MMoE) or 'one' (one gate for all, OMoE)
    has_shared_representation: ClassVar[bool] = True

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        blocks = self.blocks
        h = x
        if isinstance(blocks[0], Embed):
            h = Block(blocks[0], name="shared_embed")(h, mask)
            blocks = blocks[1:]
        gate_in = h.reshape(h.shape[0], -1) if not self.tokens else h
        experts = h
        for i, spec in enumerate(blocks):
            experts = StackedBlock(spec, self.num_experts, name=f"expert_{i}")(experts, mask, stacked_input=i > 0)
        experts, copies = self.task_copies(experts)  # (E, B, ..., d), or (T, E, B, ..., d) for MGDA-UB
        n_gates = self.num_tasks if self.gates == "multi" else 1
        logits = nn.Dense(self.num_experts * n_gates, name="gate")(gate_in)
        g = jax.nn.softmax(logits.reshape(logits.shape[:-1] + (n_gates, self.num_experts)), axis=-1)
        g = jnp.broadcast_to(g, g.shape[:-2] + (self.num_tasks, self.num_experts))
        # g (B, [L,] T, E); experts (E, B, [L,] ..., d) -> (T, B, [L,] ..., d)
        lead = 2 + int(copies) + int(self.tokens)
        eb = experts.reshape(experts.shape[:lead] + (-1,))
        mixed = jnp.einsum("b...te,teb...d->tb...d" if copies else "b...te,eb...d->tb...d", g, eb)
        mixed = mixed.reshape((self.num_tasks,) + experts.shape[1 + int(copies):])
        return self.heads(mixed, mask), {}


class MMoE(MoE):
    """Multi-gate MoE: a gate per task (Ma et al. 2018, Eq. 6-7)."""

    gates: ClassVar[str] = "multi"


class OMoE(MoE):
    """One-gate MoE: one learned gate shared by every task (Ma et al. 2018, Eq. 4)."""

    gates: ClassVar[str] = "one"
