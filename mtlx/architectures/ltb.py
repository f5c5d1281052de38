"""ltb: learning to branch (Guo, Lee & Ulbricht 2020, ICML).

A tree searched by gradient descent. Block l has ``nodes[l]`` nodes (copies of
the block with their own parameters); every node of block l >= 1 reads ONE
parent among block l-1's nodes, and every task head reads one node of the
last block. Which one is learned: child c of block l holds branching logits
theta_l[c] over the parents and reads

    x_c = sum_p d_l[c, p] h_p,   d_l[c] = softmax(theta_l[c] / temperature)     (Sec. 3.2)

Guo et al. draw d from the Gumbel-softmax (Jang et al. 2017) with these
probabilities: d_l[c] = softmax((theta_l[c] + g) / temperature), g ~ Gumbel(0, 1)
i.i.d. The model draws g when ``apply`` gets an rng stream
``taps.GUMBEL_RNG``; mtlx's train step passes the model no random key today,
so there d is the deterministic softmax relaxation at the same temperature
(the zero-noise limit), with no temperature annealing. ``hard=True`` uses the argmax
parent (one-hot d, logits frozen): the tree that search found, to be
retrained or evaluated as the paper does after the search.

The branching logits are mixing units (``taps.mixing_name("branch", l)``,
``taps.mixing_name("branch", "heads")`` for the heads): the optimizer gives them the mixing
learning rate and the run summary records them. Every block kind works (a
leading embed's nodes all read the token ids). ``nodes=()``: T nodes at every
block, the widest tree (any grouping of the tasks at every depth).
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtlx import schema, taps
from mtlx.architectures.base import MTLModel
from mtlx.layers import StackedBlock


def branch_probabilities(logits, temperature: float, hard: bool = False, noise=None):
    """d (children, parents): each child's distribution over its parents, softmax((logits + noise) /
    temperature) (``noise``: Gumbel(0, 1) draws for a Gumbel-softmax sample, None: none), or the
    one-hot argmax parent when ``hard`` (no gradient to the logits)."""
    if hard:
        return jax.nn.one_hot(jnp.argmax(logits, axis=-1), logits.shape[-1], dtype=jnp.float32)
    return jax.nn.softmax((logits if noise is None else logits + noise) / temperature, axis=-1)


def choose_parents(d, parents):
    """x_c = sum_p d[c, p] parents[p]: d (C, P), parents (P, B, ...) -> (C, B, ...)."""
    flat = parents.reshape(parents.shape[:1] + (-1,))
    return (d @ flat).reshape(d.shape[:1] + parents.shape[1:])


class LearnToBranch(MTLModel):
    nodes: tuple = ()  # nodes per block; () = T at every block
    temperature: float = 1.0
    hard: bool = False

    has_shared_representation: ClassVar[bool] = False

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        nodes = options.get("nodes", ())
        if nodes and (len(nodes) != len(blocks) or not all(schema.is_int(n) and n >= 1 for n in nodes)):
            raise schema.OptionError("nodes", list(nodes), f"must be {len(blocks)} ints >= 1, one per block "
                                     "(or empty: one node per task at every block)")
        if "temperature" in options and not schema.POSITIVE.holds(options["temperature"]):
            raise schema.OptionError("temperature", options["temperature"], str(schema.POSITIVE))

    @property
    def widths(self) -> tuple:
        return tuple(self.nodes) if self.nodes else (self.num_tasks,) * len(self.blocks)

    def branch(self, name, children, parents):
        """Every child's mixture of ``parents`` (P, B, ...) by its learned branching: (children, B, ...)."""
        logits = self.param(taps.mixing_name("branch", name), nn.initializers.zeros, (children, parents.shape[0]))
        sample = self.has_rng(taps.GUMBEL_RNG) and not self.hard and not self.is_initializing()
        noise = jax.random.gumbel(self.make_rng(taps.GUMBEL_RNG), logits.shape) if sample else None
        return choose_parents(branch_probabilities(logits, self.temperature, self.hard, noise), parents)

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        h, stacked = x, False
        for l, (spec, n) in enumerate(zip(self.blocks, self.widths)):
            if stacked and h.shape[0] == 1:  # one parent: nothing to choose
                h, stacked = h[0], False
            elif stacked:
                h = self.branch(l, n, h)
            h = StackedBlock(spec, n, name=f"node_{l}")(h, mask, stacked_input=stacked)
            stacked = True
        if h.shape[0] == 1:
            return self.heads(h[0], mask, stacked_input=False), {}
        return self.heads(self.branch("heads", self.num_tasks, h), mask, stacked_input=True), {}
