"""ltb: learning to branch (Guo, Lee & Ulbricht 2020, ICML).

A tree searched by gradient descent. Block l has ``nodes[l]`` nodes (copies of
the block with their own parameters); every node of block l >= 1 reads ONE
parent among block l-1's nodes, and every task head reads one node of the
last block. Which one is learned: child c of block l holds branching logits
theta_l[c] over the parents and reads

    x_c = sum_p d_l[c, p] h_p,   d_l[c] = softmax(theta_l[c] / temperature)     (Sec. 3.2)

Guo et al. draw d from the Gumbel-softmax (Jang et al. 2017) with these
probabilities: d_l[c] = softmax((theta_l[c] + g) / temperature), g ~ Gumbel(0, 1)
i.i.d., a fresh draw at every training step. The model draws g when ``apply``
gets an rng stream ``taps.GUMBEL_RNG``: mtlx's train step passes it (the class
lists it in ``rngs_in_train``; one key per step, derived from the TrainState's
key, so each seed draws its own noise), evaluation does not, and there d is the
deterministic softmax at the evaluation temperature (no noise). ``gumbel=False``
uses that deterministic relaxation in training too (mtlx before the rng was passed).

Temperature annealing (``anneal_steps`` > 0): the training temperature decays
exponentially from ``temperature`` at step 0 to ``min_temperature`` at step
``anneal_steps`` and stays there, tau(s) = temperature (min_temperature /
temperature)^min(s / anneal_steps, 1), as Jang et al. (2017) anneal theirs (the step
count comes with the rng, collection ``taps.TRAIN_PROGRESS``; set ``anneal_steps``
to the run's steps to anneal over the whole run); evaluation then uses
``min_temperature``, the temperature training ends at. The text of Guo et al. we
could consult does not state their schedule; ``anneal_steps=0`` (default) keeps
``temperature`` throughout. ``hard=True`` uses the argmax parent (one-hot d,
logits frozen, no noise): the tree that search found, to be retrained or
evaluated as the paper does after the search.

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


def annealed_temperature(temperature, min_temperature, anneal_steps: int, step=None):
    """tau at training step ``step`` (exponential decay from ``temperature`` to ``min_temperature``
    over ``anneal_steps`` steps, then constant); ``step=None`` (evaluation): where training ends.
    ``anneal_steps=0``: ``temperature`` throughout."""
    if not anneal_steps:
        return temperature
    if step is None:
        return min_temperature
    frac = jnp.minimum(jnp.asarray(step, jnp.float32) / anneal_steps, 1.0)
    return temperature * (min_temperature / temperature) ** frac


class LearnToBranch(MTLModel):
    nodes: tuple = ()  # nodes per block; () = T at every block
    temperature: float = 1.0
    hard: bool = False
    gumbel: bool = True  # draw Gumbel noise in training (False: the deterministic softmax there too)
    min_temperature: float = 0.5  # where annealing ends (Jang et al. 2017's floor)
    anneal_steps: int = 0  # steps of exponential annealing; 0: none

    has_shared_representation: ClassVar[bool] = False
    rngs_in_train: ClassVar[tuple] = (taps.GUMBEL_RNG,)  # the train step passes these streams (mtlx.grads)

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        nodes = options.get("nodes", ())
        if nodes and (len(nodes) != len(blocks) or not all(schema.is_int(n) and n >= 1 for n in nodes)):
            raise schema.OptionError("nodes", list(nodes), f"must be {len(blocks)} ints >= 1, one per block "
                                     "(or empty: one node per task at every block)")
        for name in ("temperature", "min_temperature"):
            if name in options and not schema.POSITIVE.holds(options[name]):
                raise schema.OptionError(name, options[name], str(schema.POSITIVE))
        if "anneal_steps" in options and not schema.INDEX.holds(options["anneal_steps"]):
            raise schema.OptionError("anneal_steps", options["anneal_steps"], str(schema.INDEX))

    @property
    def widths(self) -> tuple:
        return tuple(self.nodes) if self.nodes else (self.num_tasks,) * len(self.blocks)

    def branch(self, name, children, parents):
        """Every child's mixture of ``parents`` (P, B, ...) by its learned branching: (children, B, ...)."""
        logits = self.param(taps.mixing_name("branch", name), nn.initializers.zeros, (children, parents.shape[0]))
        sample = self.gumbel and self.has_rng(taps.GUMBEL_RNG) and not self.hard and not self.is_initializing()
        noise = jax.random.gumbel(self.make_rng(taps.GUMBEL_RNG), logits.shape) if sample else None
        return choose_parents(branch_probabilities(logits, self.temperature_now(), self.hard, noise), parents)

    def temperature_now(self):
        """The temperature of this apply: annealed by the train step's count when it passes one
        (``taps.TRAIN_PROGRESS``), else (evaluation) the one training ends at."""
        step = (self.get_variable(taps.TRAIN_PROGRESS, taps.STEP_COUNT)
                if self.has_variable(taps.TRAIN_PROGRESS, taps.STEP_COUNT) else None)
        return annealed_temperature(self.temperature, self.min_temperature, self.anneal_steps, step)

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
