"""Architectures: ``ARCHITECTURES`` maps a name to its flax module class (an
``MTLModel`` subclass), so that class attributes (``has_shared_representation``,
``task_specific_prefixes``, ``options``) can be read from the registry.

``build_model(name, task_set, backbone, **options)`` validates everything
(name, backbone vs task set, the architecture's own options, which each class
checks itself in ``check_options``) before anything is compiled.

Schemes: single_task, hard, cross_stitch, sluice, soft_l2/soft_trace,
mmoe/omoe, tensor_factorised; and the peer libraries' (LibMTL et al.)
mtan (Liu et al. 2019), cgc and ple (Tang et al. 2020), dselect_k (Hazimeh
et al. 2021) and ltb (Guo et al. 2020). Each runs on every backbone of
``mtlx.layers`` (MLP, CNN, embed + BiLSTM); docs/methods_architectures.md
has the table.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from mtlx.architectures.base import MTLModel
from mtlx.architectures.cgc_ple import CGC, PLE
from mtlx.architectures.cross_stitch import CrossStitch
from mtlx.architectures.dselect_k import DSelectK
from mtlx.architectures.fafs import FAFS
from mtlx.architectures.hard import Hard
from mtlx.architectures.jmt import JMT
from mtlx.architectures.ltb import LearnToBranch
from mtlx.architectures.mmoe import MMoE, OMoE
from mtlx.architectures.mtan import MTAN
from mtlx.architectures.single_task import SingleTask
from mtlx.architectures.sluice import Sluice
from mtlx.architectures.soft import SoftL2, SoftTrace
from mtlx.architectures.tensor_factorised import TensorFactorised
from mtlx.plugins import resolve
from mtlx.schema import in_section
from mtlx.layers import Conv, Embed, block_from_config, shapes_through

ARCHITECTURES: dict[str, type[MTLModel]] = {
    "single_task": SingleTask,
    "hard": Hard,
    "cross_stitch": CrossStitch,
    "sluice": Sluice,
    "soft_l2": SoftL2,
    "soft_trace": SoftTrace,
    "mmoe": MMoE,
    "omoe": OMoE,
    "tensor_factorised": TensorFactorised,
    "mtan": MTAN,                 # Liu et al. 2019: task attention masks over a shared network
    "cgc": CGC,                   # Tang et al. 2020: shared + task-specific experts, task gates
    "ple": PLE,                   # Tang et al. 2020: stacked CGC levels with shared gates
    "dselect_k": DSelectK,        # Hazimeh et al. 2021: experts with differentiable top-k gates
    "ltb": LearnToBranch,         # Guo et al. 2020: a tree whose branching is learned
    "jmt": JMT,                   # Hashimoto et al. 2017: tasks stacked in a hierarchy, label embeddings
    "fafs": FAFS,                 # Lu et al. 2017: a branching tree, grown by task affinity (mtlx.fafs)
}

BASELINE = "single_task"  # the architecture a grid's delta_m compares against by default (grid.baseline)


def _check_backbone(task_set, blocks) -> None:
    """The backbone fits the task set's inputs and the tasks' output layout."""
    if not blocks:
        raise ValueError("backbone.blocks is empty; give at least one block")
    tokens = task_set.input_kind == "tokens"
    if tokens != isinstance(blocks[0], Embed):
        raise ValueError(f"backbone of task set {task_set.name!r} (input_kind={task_set.input_kind!r}) "
                         f"{'needs' if tokens else 'must not start with'} an 'embed' first block")
    if tokens and blocks[0].vocab_size < task_set.vocab_size:  # jnp.take would clamp the ids beyond it silently
        raise ValueError(f"backbone.blocks[0].vocab_size={blocks[0].vocab_size} is smaller than task set "
                         f"{task_set.name!r}'s vocab_size={task_set.vocab_size} (token ids 0..{task_set.vocab_size - 1}); "
                         f"set it to at least {task_set.vocab_size}")
    if any(isinstance(b, Conv) for b in blocks) and task_set.input_kind != "image":
        raise ValueError(f"backbone has 'conv' blocks but task set {task_set.name!r} has input_kind={task_set.input_kind!r}")
    shapes = shapes_through(blocks, task_set.input_shape)
    for i, shape in enumerate(shapes[1:]):
        if min(shape, default=1) < 1:
            raise ValueError(f"backbone.blocks[{i}] ({type(blocks[i]).__name__}) maps input shape {shapes[i]} to "
                             f"{shape}: an empty output; use a smaller kernel/pool or fewer blocks")
    tagging = [t.kind == "tagging" for t in task_set.tasks]
    out_shape = shapes[-1]
    if any(tagging) and len(out_shape) != 2:
        raise ValueError(f"task set {task_set.name!r} has tagging tasks but the backbone output {out_shape} is not per token")
    if not any(tagging) and tokens and len(out_shape) == 2:
        raise ValueError(f"task set {task_set.name!r}: per-token backbone output {out_shape} for non-tagging tasks")


def build_model(name: str, task_set, blocks, head_hidden=(), **options) -> MTLModel:
    """The architecture ``name`` over ``blocks`` (specs or config dicts) for ``task_set``."""
    cls = resolve(ARCHITECTURES, name, "architecture")
    blocks = tuple(b if dataclasses.is_dataclass(b) else block_from_config(b, f"backbone.blocks[{i}]")
                   for i, b in enumerate(blocks))
    _check_backbone(task_set, blocks)
    try:
        cls.check_options(blocks, options, task_set.num_tasks)
    except ValueError as e:  # the class says what is wrong, the registry says where
        raise in_section(e, "architecture.options", f"architecture {name!r}") from None
    model = _construct(cls, name, blocks, head_hidden, task_set, options)
    try:
        model.check_shapes(tuple(task_set.input_shape))
    except ValueError as e:
        raise in_section(e, "architecture.options", f"architecture {name!r}") from None
    return model


def _construct(cls, name, blocks, head_hidden, task_set, options) -> MTLModel:
    try:
        return cls(blocks=blocks, head_hidden=tuple(head_hidden), num_outputs=tuple(t.num_outputs for t in task_set.tasks),
                   task_names=task_set.task_names, tokens=task_set.input_kind == "tokens",
                   gradient_reversal=tuple(t.gradient_reversal for t in task_set.tasks), **options)
    except ValueError as e:  # e.g. tensor_factorised's own checks at construction
        raise in_section(e, "architecture.options", f"architecture {name!r}") from None


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
