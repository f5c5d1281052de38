"""fafs: the branching tree of fully-adaptive feature sharing (Lu, Kumar, Zhai, Cheng, Javidi & Feris
2017, CVPR, "Fully-adaptive Feature Sharing in Multi-Task Networks with Applications in Person
Attribute Classification").

The architecture is one STATIC tree over mtlx's block list: ``branches[l][t]`` is the branch of block
l that task t reads. Block l has ``n_l`` branches (copies of the block with their own parameters);
branch c of block l >= 1 reads the branch of block l-1 its tasks share, and task t's head reads
branch ``branches[L-1][t]``. Tasks sharing a branch at block l share one at every block below it
(the partitions get finer going up), so the network is a tree: a trunk, junctions, task heads.
``branches=()`` is the thin network Lu et al. start from: every block shared (one branch), the heads
only task-specific. The tree is static so that each tree has ONE jitted train step; growing it
(``mtlx.fafs``: train, measure the tasks' affinity, split the top-most undecided block, copy the
parent's weights into the children, train on) changes the tree between phases, one compile each.

Parameters by block: one branch -> ``shared_<l>`` (a ``Block``, as hard sharing's trunk); one per
task -> ``task_column_<l>`` (task-stacked, as hard's and single_task's columns); otherwise
``branch_<l>`` (n_l stacked copies, one vmap). A tree whose blocks are a shared trunk and then one
branch per task IS hard sharing with ``split`` = the trunk's depth: it runs hard's computation (the
same parameter names, its shared-representation tap for MGDA-UB), so every task on its own branch
at every block is single_task and every block shared is hard's trunk + heads. Any other tree reads
its branches by a static gather (``jnp.take`` on the branch axis) and shares no one representation
below the heads (no MGDA-UB).

``grow``: the settings of the growing procedure (``mtlx.fafs.GROW_DEFAULTS``) or None. It is read by
``mtlx.fafs.grow_and_evaluate``, which trains every phase with ``grow=None``; a model applied (not
initialised) with ``grow`` set was handed to the plain training loop, which would train the starting
tree only, so it says so and stops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mtlx import regularizers, schema
from mtlx.architectures.base import COLUMN, MTLModel
from mtlx.layers import Block, Dense, StackedBlock

SHARED = "shared_{}"  # block l with one branch (hard's trunk name)
BRANCH = "branch_{}"  # block l with 1 < n_l < T branches
GROW_KEYS = ("affinity_examples", "branch_cost", "max_groups", "phase_steps", "rounds")


# --------------------------------------------------------------------------- the tree (pure)


def canonical(labels) -> tuple:
    """Branch labels renumbered by first occurrence (task order): (2, 2, 0) -> (0, 0, 1)."""
    seen: dict = {}
    return tuple(seen.setdefault(int(x), len(seen)) for x in labels)


def thin_tree(num_tasks: int, num_blocks: int) -> tuple:
    """Every block shared: one branch per block (Lu et al.'s thin network)."""
    return ((0,) * num_tasks,) * num_blocks


def num_branches(tree) -> tuple:
    return tuple(max(row) + 1 for row in tree)


def tree_error(tree, num_blocks: int, num_tasks: int) -> str:
    """'' for a valid tree, else what is wrong (shape, labels, nesting)."""
    if len(tree) != num_blocks or any(len(row) != num_tasks for row in tree):
        return f"must give {num_blocks} rows (one per block) of {num_tasks} branch indices (one per task)"
    if not all(schema.is_int(x) and x >= 0 for row in tree for x in row):
        return "must hold ints >= 0"
    for l in range(1, num_blocks):
        below = {}
        for t in range(num_tasks):
            if below.setdefault(tree[l][t], tree[l - 1][t]) != tree[l - 1][t]:
                return (f"is not a tree: tasks on one branch of block {l} read different branches of block "
                        f"{l - 1}; tasks sharing a branch must share one at every block below")
    return ""


def parents(tree, l: int) -> np.ndarray:
    """For each branch c of block l >= 1, the branch of block l-1 its tasks read."""
    out = np.zeros(num_branches(tree)[l], np.int32)
    for t, c in enumerate(tree[l]):
        out[c] = tree[l - 1][t]
    return out


def hard_split(tree):
    """k when the tree is hard sharing (blocks 0..k-1 shared, one branch per task above), else None."""
    counts, T = num_branches(tree), len(tree[0])
    k = sum(1 for n in counts if n == 1)
    per_task = all(canonical(row) == tuple(range(T)) for row in tree[k:])
    return k if all(n == 1 for n in counts[:k]) and per_task else None


def block_name(tree, l: int) -> str:
    n, T = num_branches(tree)[l], len(tree[l])
    return SHARED.format(l) if n == 1 else COLUMN.format(l) if n == T else BRANCH.format(l)


def groups_of(tree) -> list:
    """Readable tree: per block, the task indices of each branch."""
    return [[[t for t, c in enumerate(row) if c == b] for b in range(max(row) + 1)] for row in tree]


# --------------------------------------------------------------------------- the module


class FAFS(MTLModel):
    branches: object = ()  # per block, the branch of each task; () = every block shared (thin)
    grow: object = None  # settings of mtlx.fafs's growing procedure; None: a fixed tree

    has_shared_representation: ClassVar[bool] = True

    def __post_init__(self):
        object.__setattr__(self, "branches", regularizers.freeze(self.branches))
        if self.grow is not None:
            object.__setattr__(self, "grow", regularizers.freeze(self.grow))
        super().__post_init__()

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        tree = regularizers.plain(options.get("branches", ()))
        if tree:
            err = tree_error(tree, len(blocks), num_tasks) if isinstance(tree, (list, tuple)) and all(
                isinstance(r, (list, tuple)) for r in tree) else "must be a list of lists"
            if err:
                raise schema.OptionError("branches", tree, err)
        grow = regularizers.plain(options.get("grow"))
        if grow is not None:
            check_grow(grow)

    @property
    def tree(self) -> tuple:
        if not self.branches:
            return thin_tree(self.num_tasks, len(self.blocks))
        return tuple(canonical(row) for row in self.branches)

    def shares_representation(self) -> bool:
        k = hard_split(self.tree)
        return k is not None and k > 0

    @nn.compact
    def __call__(self, x):
        if self.grow is not None and not self.is_initializing():
            raise ValueError("architecture.options.grow is set: this run grows its tree and must be trained by "
                             "mtlx.fafs.grow_and_evaluate (python -m launch.run does); the plain training loop would train "
                             "the starting tree only")
        mask, tree = self.input_mask(x), self.tree
        k = hard_split(tree)
        if k is not None:
            return self.as_hard(x, mask, k), {}
        h, stacked = x, False
        for l, spec in enumerate(self.blocks):
            n = num_branches(tree)[l]
            if n == 1:
                h, stacked = Block(spec, name=SHARED.format(l))(h, mask), False
                continue
            if stacked:
                h = _gather(h, parents(tree, l))
            h = StackedBlock(spec, n, name=block_name(tree, l))(h, mask, stacked_input=stacked)
            stacked = True
        return self.heads(_gather(h, np.asarray(tree[-1], np.int32)), mask, stacked_input=True), {}

    def as_hard(self, x, mask, k: int):
        """Hard sharing with ``split=k`` (the computation of ``hard.Hard``, with its names)."""
        h = x
        for i in range(k):
            h = Block(self.blocks[i], name=SHARED.format(i))(h, mask)
        stacked, tap, trunk_only = False, "", k == len(self.blocks)
        if k > 0:
            h, stacked, tap = self.shared_representation(h, trunk_only or isinstance(self.blocks[k], Dense))
        h = self.run_columns(h, mask, start=k, stacked_input=stacked, tap=tap)
        return self.heads(h, mask, stacked_input=stacked or not trunk_only, tap=tap if trunk_only else "")


def _gather(h, idx):
    """h[idx] along the branch axis; no op when ``idx`` is 0..n-1 in order."""
    if len(idx) == h.shape[0] and np.array_equal(idx, np.arange(len(idx))):
        return h
    return jnp.take(h, jnp.asarray(idx), axis=0)


def check_grow(grow) -> None:
    """The ``grow`` option: a dict with keys in ``GROW_KEYS`` (see ``mtlx.fafs.GROW_DEFAULTS``)."""
    if not isinstance(grow, Mapping):
        raise schema.OptionError("grow", grow, f"must be a dict with keys from {list(GROW_KEYS)} (or None)")
    unknown = sorted(set(grow) - set(GROW_KEYS))
    if unknown:
        raise schema.OptionError("grow", dict(grow), f"has unknown keys {unknown}; valid keys {list(GROW_KEYS)}")
    for key in ("affinity_examples", "max_groups", "phase_steps", "rounds"):
        v = grow.get(key)
        if v is not None and not (schema.is_int(v) and v >= 1):
            raise schema.OptionError(f"grow.{key}", v, "must be an int >= 1")
    cost = grow.get("branch_cost")
    if cost is not None and not (isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost >= 0):
        raise schema.OptionError("grow.branch_cost", cost, "must be a number >= 0")
