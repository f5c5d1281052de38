"""Architectures: ``ARCHITECTURES`` maps a name to a flax module class/constructor.

``build_model(name, task_set, backbone, **options)`` validates everything
(names, split depth, ranks, heads vs tasks) before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from mtlx.architectures.base import MTLModel
from mtlx.architectures.cross_stitch import UNITS, CrossStitch
from mtlx.architectures.hard import Hard
from mtlx.architectures.mmoe import MoE, mmoe, omoe
from mtlx.architectures.single_task import SingleTask
from mtlx.architectures.sluice import Sluice
from mtlx.architectures.soft import Soft, soft_l2, soft_trace
from mtlx.layers import Conv, Dense, Embed, block_from_config, shapes_through

ARCHITECTURES = {
    "single_task": SingleTask,
    "hard": Hard,
    "cross_stitch": CrossStitch,
    "sluice": Sluice,
    "soft_l2": soft_l2,
    "soft_trace": soft_trace,
    "mmoe": mmoe,
    "omoe": omoe,
}
try:  # registered here so that every name lives in one dict
    from mtlx.architectures.tensor_factorised import TensorFactorised

    ARCHITECTURES["tensor_factorised"] = TensorFactorised
except ImportError:  # pragma: no cover
    pass

BASELINE = "single_task"  # the architecture a grid's delta_m compares against by default (grid.baseline)

_CLASS = {"soft_l2": Soft, "soft_trace": Soft, "mmoe": MoE, "omoe": MoE}


def architecture_fields(name: str) -> set[str]:
    cls = _CLASS.get(name, ARCHITECTURES[name])
    base = {f.name for f in dataclasses.fields(MTLModel)} | {"parent", "name"}
    fixed = {"penalty"} if name.startswith("soft") else {"gates"} if name in ("mmoe", "omoe") else set()
    return {f.name for f in dataclasses.fields(cls)} - base - fixed


def _check_options(name, blocks, options, num_tasks):
    valid = architecture_fields(name)
    unknown = set(options) - valid
    if unknown:
        raise ValueError(f"architecture {name!r}: unknown option(s) {sorted(unknown)}; valid options {sorted(valid)}")
    L = len(blocks)
    if name == "hard" and "split" in options and not (options["split"] == -1 or 0 <= options["split"] <= L):
        raise ValueError(f"architecture 'hard': split={options['split']} is impossible for a backbone of {L} blocks; "
                         f"choose 0..{L} (or -1 for all)")
    for key in ("stitch_after", "mix_after"):
        bad = [i for i in options.get(key, ()) if not 0 <= i < L]
        if bad:
            raise ValueError(f"architecture {name!r}: {key}={list(options[key])} names blocks {bad} outside 0..{L - 1}")
    if name == "cross_stitch" and options.get("units", "scalar") not in UNITS:
        raise ValueError(f"architecture 'cross_stitch': units={options['units']!r} is not valid; choose one of {list(UNITS)}")
    if name == "sluice" and options.get("subspaces", 2) < 1:
        raise ValueError(f"architecture 'sluice': subspaces={options['subspaces']} must be >= 1")
    if name in ("mmoe", "omoe") and options.get("num_experts", 8) < 1:
        raise ValueError(f"architecture {name!r}: num_experts={options['num_experts']} must be >= 1")


def build_model(name: str, task_set, blocks, head_hidden=(), **options) -> MTLModel:
    """The architecture ``name`` over ``blocks`` (specs or config dicts) for ``task_set``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture={name!r} is not valid; choose one of {sorted(ARCHITECTURES)}")
    blocks = tuple(b if dataclasses.is_dataclass(b) else block_from_config(b) for b in blocks)
    if not blocks:
        raise ValueError("backbone.blocks is empty; give at least one block")
    tokens = task_set.input_kind == "tokens"
    if tokens != isinstance(blocks[0], Embed):
        raise ValueError(f"backbone of task set {task_set.name!r} (input_kind={task_set.input_kind!r}) "
                         f"{'needs' if tokens else 'must not start with'} an 'embed' first block")
    if any(isinstance(b, Conv) for b in blocks) and task_set.input_kind != "image":
        raise ValueError(f"backbone has 'conv' blocks but task set {task_set.name!r} has input_kind={task_set.input_kind!r}")
    tagging = [t.kind == "tagging" for t in task_set.tasks]
    out_shape = shapes_through(blocks, task_set.input_shape)[-1]
    if any(tagging) and len(out_shape) != 2:
        raise ValueError(f"task set {task_set.name!r} has tagging tasks but the backbone output {out_shape} is not per token")
    if not any(tagging) and tokens and len(out_shape) == 2:
        raise ValueError(f"task set {task_set.name!r}: per-token backbone output {out_shape} for non-tagging tasks")
    _check_options(name, blocks, options, task_set.num_tasks)
    return ARCHITECTURES[name](
        blocks=blocks, head_hidden=tuple(head_hidden), num_outputs=tuple(t.num_outputs for t in task_set.tasks),
        task_names=task_set.task_names, tokens=tokens, **options)


def shared_mask(model: MTLModel, params) -> Any:
    """Pytree of bools: True where a parameter is shared (can affect every task).

    Task-specific parameters live under a top-level name starting with one of
    ``type(model).task_specific_prefixes``. This is the one definition of
    "shared" used by gradient-based weightings.
    """
    prefixes = type(model).task_specific_prefixes
    return {k: jax.tree_util.tree_map(lambda _: not k.startswith(prefixes), v) for k, v in params.items()}


def check_heads(model: MTLModel, task_set) -> None:
    """A model built for another task set is refused, naming both task lists."""
    if tuple(model.task_names) != task_set.task_names or tuple(model.num_outputs) != tuple(t.num_outputs for t in task_set.tasks):
        raise ValueError(f"model heads {list(zip(model.task_names, model.num_outputs))} do not match task set "
                         f"{task_set.name!r} tasks {[(t.name, t.num_outputs) for t in task_set.tasks]}")


def param_count(params) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
