"""Regularisers on the task-stacked weights of task-specific layers (one file per family).

An architecture takes them through its ``regularizer`` option (handled once, in
``mtlx.architectures.base.MTLModel``), e.g.::

    {"name": "block_sparse", "q": 2, "strength": 1e-3, "layers": [0, "heads"]}

``layers``: block indices (that block's task columns, ``task_column_<i>``) and/or
``"heads"`` (every task-head layer); absent: every task-specific layer present.
``strength`` multiplies the family's penalty; the other keys are the family's own
(its ``OPTIONS``, checked by its ``check``). Each family's maths is a pure function
``penalty(stacked, **options)`` of a list of (T, ...) task-stacked weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, NamedTuple

import ml_collections
from flax.core import FrozenDict

from mtlx import schema
from mtlx.regularizers import block_sparse, clustering, relationship

HEADS = "heads"  # a ``layers`` entry: every task-head layer
COMMON = {"name": None, "strength": 1e-3, "layers": None}  # keys every family takes, with defaults


class Regularizer(NamedTuple):
    penalty: Callable  # (stacked, **options) -> scalar
    check: Callable  # (options) -> None, an OptionError naming ``regularizer.<key>``
    options: dict  # the family's own keys -> defaults


REGULARIZERS = {
    "block_sparse": Regularizer(block_sparse.penalty, block_sparse.check, block_sparse.OPTIONS),
    "clustering": Regularizer(clustering.penalty, clustering.check, clustering.OPTIONS),
    "relationship": Regularizer(relationship.penalty, relationship.check, relationship.OPTIONS),
}


def plain(spec):
    """A ConfigDict (not a ``Mapping``) as a plain dict; anything else unchanged."""
    return spec.to_dict() if isinstance(spec, ml_collections.ConfigDict) else spec


def freeze(spec):
    """A hashable copy of a config value (dicts and ConfigDicts -> FrozenDict, lists -> tuples), so a
    module holding it hashes."""
    spec = plain(spec)
    if isinstance(spec, Mapping):
        return FrozenDict({k: freeze(v) for k, v in spec.items()})
    if isinstance(spec, (list, tuple)):
        return tuple(freeze(v) for v in spec)
    return spec


def check(spec, num_blocks: int | None = None, num_tasks: int | None = None) -> None:
    """A ``regularizer`` option: a dict with a known ``name``, ``strength`` >= 0, ``layers`` naming blocks
    in 0..num_blocks-1 or 'heads', and the family's own keys; one OptionError naming the key."""
    spec = plain(spec)
    if not isinstance(spec, Mapping):
        raise schema.OptionError("regularizer", spec, "must be a dict like {'name': 'block_sparse', 'strength': 1e-3}")
    name = spec.get("name")
    if name not in REGULARIZERS:
        raise schema.OptionError("regularizer.name", name, f"is not valid; choose one of {sorted(REGULARIZERS)}")
    family = REGULARIZERS[name]
    unknown = sorted(set(spec) - set(COMMON) - set(family.options))
    if unknown:
        raise schema.OptionError("regularizer", dict(spec), f"has unknown keys {unknown}; {name!r} takes "
                                 f"{sorted(set(COMMON) | set(family.options))}")
    strength = spec.get("strength", COMMON["strength"])
    if not schema.NONNEG.holds(strength):
        raise schema.OptionError("regularizer.strength", strength, "must be a number >= 0")
    _check_layers(spec.get("layers"), num_blocks)
    own = {k: v for k, v in spec.items() if k in family.options}
    if name == "clustering":
        family.check(own, num_tasks)
    else:
        family.check(own)


def _check_layers(layers, num_blocks) -> None:
    if layers is None:
        return
    ok = isinstance(layers, (list, tuple)) and layers and all(
        x == HEADS or (schema.is_int(x) and x >= 0 and (num_blocks is None or x < num_blocks)) for x in layers)
    if not ok:
        rng = "block indices" if num_blocks is None else f"block indices in 0..{num_blocks - 1}"
        raise schema.OptionError("regularizer.layers", list(layers) if isinstance(layers, tuple) else layers,
                                 f"must be a non-empty list of {rng} and/or {HEADS!r}")


def options_of(spec) -> dict:
    """The family's own keys of ``spec``, defaults filled in."""
    family = REGULARIZERS[spec["name"]]
    return {**family.options, **{k: v for k, v in spec.items() if k in family.options}}


def penalty(spec, stacked):
    """``strength * family.penalty(stacked, **options)`` for a checked ``spec``."""
    return spec.get("strength", COMMON["strength"]) * REGULARIZERS[spec["name"]].penalty(stacked, **options_of(spec))
