"""cgc and ple: Customized Gate Control and Progressive Layered Extraction (Tang et al. 2020, RecSys).

CGC (Sec. 4.2, Eq. 1-3): ``shared_experts`` experts read by every task and
``task_experts`` experts per task; task t's gate mixes the shared experts and
its own only,

    g^t(x) = softmax(W_g^t x),   y^t = sum_i g^t(x)_i S^t(x)_i,
    S^t(x) = [E_(t,1), ..., E_(t,m_t), E_(s,1), ..., E_(s,m_s)]   (here: shared first, then task t's).

PLE (Sec. 4.3, Eq. 4-5) stacks ``levels`` extraction networks: level k's task
t experts read task t's output of level k-1, its shared experts read the
shared output of level k-1, task t's gate reads task t's previous output, and
a shared gate (every level but the last) mixes ALL experts of the level into
the next level's shared input.

Experts are the backbone's blocks: the blocks (after a leading Embed, which is
shared and read per token, as in ``mmoe``) are cut into ``levels`` consecutive
groups as evenly as possible (earlier groups take the extra block); every
expert of level k is group k's blocks. CGC is PLE with one level, the whole
backbone per expert; CGC with no task-specific experts is MMoE over the shared
experts (Ma et al. 2018).
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtlx import schema
from mtlx.architectures.base import MTLModel
from mtlx.layers import Block, Dense, Embed, StackedBlock


def expert_blocks(blocks) -> tuple:
    """The blocks experts are made of: all but a leading Embed (shared, see the module docstring)."""
    return tuple(blocks[1:]) if blocks and isinstance(blocks[0], Embed) else tuple(blocks)


def level_groups(num_blocks: int, levels: int) -> list:
    """Block indices of each level: ``num_blocks`` cut into ``levels`` consecutive groups, earlier ones larger."""
    return [list(g) for g in np.array_split(np.arange(num_blocks), levels)]


def mix(g, experts, tokens: bool):
    """sum_e g[n, b, ..., e] experts[n, e, b, ..., :]: g (N, B, [L,] E), experts (N, E, B, [L,] ...)
    -> (N, B, [L,] ...): each of N gates mixes its own E candidates."""
    lead = 3 + int(tokens)
    flat = experts.reshape(experts.shape[:lead] + (-1,))
    out = jnp.einsum("nb...e,neb...d->nb...d", g, flat)
    return out.reshape(experts.shape[:1] + experts.shape[2:])


class Extraction(MTLModel):
    """CGC levels; ``num_levels`` is fixed by CGC (1) and set by PLE (``levels``)."""

    shared_experts: int = 2
    task_experts: int = 1

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        for name in ("shared_experts", "task_experts"):
            if name in options and not schema.INDEX.holds(options[name]):
                raise schema.OptionError(name, options[name], str(schema.INDEX))
        if options.get("shared_experts", 2) + options.get("task_experts", 1) < 1:
            raise schema.OptionError("task_experts", options.get("task_experts", 1),
                                     "leaves no expert (shared_experts is 0 too); give one of them >= 1")

    @property
    def num_levels(self) -> int:
        return 1

    def shares_representation(self) -> bool:
        return self.num_levels == 1 and self.shared_experts > 0

    def experts(self, spec_ids, n, h, stacked, mask, name):
        """``n`` experts made of blocks ``spec_ids`` (of ``expert_blocks``) on ``h``: (n, B, ...)."""
        blocks = expert_blocks(self.blocks)
        for i in spec_ids:
            h = StackedBlock(blocks[i], n, name=f"{name}_{i}")(h, mask, stacked_input=stacked)
            stacked = True
        return h

    def level(self, k, ids, shared_h, task_h, mask, last):
        """One extraction network: (task outputs (T, B, ...), shared output (B, ...) or None)."""
        T, S, M = self.num_tasks, self.shared_experts, self.task_experts
        first = task_h is None
        cands = []
        if S:
            es = self.experts(ids, S, shared_h, False, mask, f"expert_shared_{k}")       # (S, B, ...)
            es_t, copies = self.task_copies(es) if last and self.num_levels == 1 else (es, False)
            cands.append(es_t if copies else jnp.broadcast_to(es, (T,) + es.shape))
        if M:
            tin = shared_h if first else jnp.repeat(task_h, M, axis=0)
            et = self.experts(ids, T * M, tin, not first, mask, f"task_experts_{k}")      # (T*M, B, ...)
            et = et.reshape((T, M) + et.shape[1:])
            cands.append(et)
        cand = jnp.concatenate(cands, axis=1)                                            # (T, S+M, B, ...)
        gate_in = shared_h if first else task_h
        logits = StackedBlock(Dense(S + M, "none"), T, name=f"task_gate_{k}")(gate_in, mask, stacked_input=not first)
        task_out = mix(jax.nn.softmax(logits, axis=-1), cand, self.tokens)
        if last:
            return task_out, None
        every = jnp.concatenate([cand[0, :S]] + ([et.reshape((T * M,) + et.shape[2:])] if M else []))  # (S+T*M, B, ...)
        g = jax.nn.softmax(Block(Dense(S + T * M, "none"), name=f"shared_gate_{k}")(shared_h, mask), axis=-1)
        return task_out, mix(g[None], every[None], self.tokens)[0]

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        h = Block(self.blocks[0], name="shared_embed")(x, mask) if isinstance(self.blocks[0], Embed) else x
        groups = level_groups(len(expert_blocks(self.blocks)), self.num_levels)
        shared_h, task_h = h, None
        for k, ids in enumerate(groups):
            task_h, shared_h = self.level(k, ids, shared_h, task_h, mask, k == len(groups) - 1)
        return self.heads(task_h, mask), {}


class CGC(Extraction):
    """One extraction network (Tang et al. 2020, Sec. 4.2)."""

    has_shared_representation: ClassVar[bool] = True


class PLE(Extraction):
    """``levels`` stacked extraction networks (Tang et al. 2020, Sec. 4.3); levels=1 is CGC."""

    levels: int = 2

    has_shared_representation: ClassVar[bool] = False  # levels >= 2: later levels mix task experts into the shared

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        n = len(expert_blocks(blocks))
        levels = options.get("levels", 2)
        if not 1 <= levels <= n:
            raise schema.OptionError("levels", levels, f"is impossible for {n} expert block(s) (each level needs one; "
                                     f"a leading embed is shared); choose 1..{n}")

    @property
    def num_levels(self) -> int:
        return self.levels
