"""Many runs in one compiled program: seeds, data draws and continuous hyperparameters.

Runs of a grid whose configs differ only in *population paths* train together:

- ``seed`` (init, batch order, the step's PRNG stream: each member its own);
- ``task_set.options.*`` when the splits keep their shapes (a per-run data
  draw through ``seed_paths``, a swept correlation): the members' data are
  stacked on the device;
- the optimizer's numbers (learning rate, weight decay, momentum, clipping,
  the mixing units' rate), and a weighting's float options (static loss
  weights, CAGrad's c, GradNorm's alpha, Nash-MTL's max_norm, ...).

The state is stacked on a leading member axis and the ONE train step is
vmapped over it. Hyperparameters that differ between members enter the step
as traced arrays: the optimizer and the weighting are built inside the
vmapped function from each member's values (the effect of
``optax.inject_hyperparams``, for every continuous option alike), so one
compilation serves the whole sweep. Whether a value's zero-ness changes the
program (weight decay 0 adds no transform) is part of the program key, and a
weighting whose construction branches on an option's value (a plug-in) is
detected by tracing it once (``_traceable``): such options split programs.

Every member writes its own run directory exactly as a run trained alone
(``mtlx.train._Loop``: curves, evaluations, model selection, orbax
checkpoints, summary). A member whose loss turns NaN/inf is failed at that
step and task and frozen (its state no longer updated); the others go on.

Numbers equal separate runs to float tolerance, not bit for bit: a vmapped
matmul is a batched matmul, whose XLA:CPU kernel sums in another order
(measured on the hard/MGDA MLP: parameters within 3e-6 after 20 steps;
``tests/unit/test_parallel.py`` states its tolerances).
"""

from __future__ import annotations

import copy
import json
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mtlx import schema, tasks

SEED, TASK_SET_OPTIONS, WEIGHTING_OPTIONS = "seed", "task_set.options", "weighting.options"
OPTIMIZER_VALUES = ("optimizer.learning_rate", "optimizer.mixing_learning_rate", "optimizer.weight_decay",
                    "optimizer.momentum", "optimizer.grad_clip")
ZERO_CHANGES_PROGRAM = ("optimizer.mixing_learning_rate", "optimizer.weight_decay", "optimizer.grad_clip")


def _is_float_value(v) -> bool:
    if isinstance(v, (list, tuple)):
        return bool(v) and all(isinstance(x, float) for x in v)
    return isinstance(v, float)


# task-set options that change what is trained (which tasks are auxiliary, generated tasks' kinds and
# gradient-reversal strengths), not only the data's values: runs that differ there never share a program
STRUCTURAL_TASK_SET_OPTIONS = (tasks.AUXILIARY_OPTION, tasks.TRANSFORMS_OPTION)


def population_values(run_cfg: Mapping) -> dict:
    """The run's values at its population paths (dotted path -> value)."""
    out = {SEED: run_cfg[SEED]}
    out.update({f"{TASK_SET_OPTIONS}.{k}": v for k, v in run_cfg["task_set"]["options"].items()
                if k not in STRUCTURAL_TASK_SET_OPTIONS})
    out.update({p: run_cfg["optimizer"][p.split(".")[1]] for p in OPTIMIZER_VALUES})
    out.update({f"{WEIGHTING_OPTIONS}.{k}": v for k, v in run_cfg["weighting"]["options"].items()
                if _is_float_value(v)})
    return out


def program_key(run_cfg: Mapping, split_shapes: tuple = ()) -> str:
    """Runs with equal keys can share one program: their configs agree everywhere but at the
    population paths (where only the zero-ness of ``ZERO_CHANGES_PROGRAM`` fields and the length
    of tuple options count), and their splits have the same shapes."""
    c = copy.deepcopy(dict(run_cfg))
    for path, v in population_values(run_cfg).items():
        marker = ("nonzero" if v else "zero") if path in ZERO_CHANGES_PROGRAM else \
            (f"len{len(v)}" if isinstance(v, (list, tuple)) else "*")
        schema._set_path(c, path, marker)
    return json.dumps([c, split_shapes], sort_keys=True, default=str)


def split_shapes(task_set) -> tuple:
    """(split, leaf path, shape, dtype) of every split: what stacking members' data needs equal."""
    out = []
    for name, split in sorted(task_set.splits.items()):
        if isinstance(split, Mapping):
            for path, a in jax.tree_util.tree_flatten_with_path(dict(split))[0]:
                out.append((name, jax.tree_util.keystr(path), tuple(np.shape(a)), str(np.asarray(a).dtype)))
        else:
            out.append((name, "stream", len(split)))
    return tuple(out)


def _fitting(members: list[dict], shapes: tuple) -> int:
    """How many members fit one program: all when they read the same data; else as many train splits
    as ``on_device_max_bytes`` holds (the members' data are stacked on the device), at least one."""
    if len({json.dumps(r["config"]["task_set"], sort_keys=True) for r in members}) == 1:
        return len(members)
    nbytes = sum(int(np.prod(s[2])) * np.dtype(s[3]).itemsize for s in shapes if s[0] == "train" and len(s) == 4)
    return max(1, int(members[0]["config"]["on_device_max_bytes"] // max(nbytes, 1)))


def _data_key(run_cfg: Mapping) -> str:
    ts = run_cfg["task_set"]
    return json.dumps([ts["name"], {k: v for k, v in ts["options"].items() if k != "seed"}], sort_keys=True)


def _traceable(run_cfg: Mapping, paths: list, num_tasks: int, task_names: tuple | None = None) -> bool:
    """Whether the weighting accepts traced values at ``paths`` (its construction and combine do
    not branch on them): built and run once on a small Gram/Jacobian under ``jax.eval_shape``
    (``task_names``: what a weighting that names tasks, e.g. Auto-Lambda's primary ones, reads)."""
    from mtlx.weighting import on_jacobian, param_state

    def probe(vals):
        c = _with(run_cfg, dict(zip(paths, vals)))
        w = _make_weighting(c["weighting"])
        if w.objective is not None:
            return jax.grad(w.objective)(jnp.ones(num_tasks), w.init_params(num_tasks))
        rows = jnp.eye(num_tasks, num_tasks + 1)
        state = param_state.init_state(w, num_tasks, num_tasks + 1)
        return on_jacobian(w, task_names)(jnp.ones(num_tasks), rows, state, jax.random.PRNGKey(0))[0]

    vals = [jnp.asarray(schema._get_path(run_cfg, p), jnp.float32) for p in paths]
    try:
        jax.eval_shape(probe, vals)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerBoolConversionError,
            jax.errors.TracerIntegerConversionError, TypeError):
        return False
    return True


def programs(runs: list[dict], size: int, task_set_of: Callable, resume_step: Callable = lambda r: None
             ) -> list[list[dict]]:
    """The runs grouped into programs of at most ``size`` members (0: no limit; 1: each alone), ordered
    by their first seed, then grid order (an unfinished sweep has as many runs in every row): runs share a program when their ``program_key`` agrees, they resume at the same
    step (``resume_step(run)``) and, where they differ in a weighting option, the weighting traces it."""
    if size == 1:
        return [[r] for r in runs]
    groups, shapes = {}, {}
    for r in runs:
        data = _data_key(r["config"])
        if data not in shapes:  # a data seed changes the draw, not the shapes: one build per other option
            shapes[data] = split_shapes(task_set_of(r["config"]))
        key = program_key(r["config"], shapes[data]) + f"@{resume_step(r)}"
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        for part in _split_untraceable(members, task_set_of):
            n = min(size or len(part), _fitting(part, shapes[_data_key(part[0]["config"])]))
            out += [part[i:i + n] for i in range(0, len(part), n)]
    order = {r["run_id"]: k for k, r in enumerate(runs)}  # seed blocks first: a partial sweep grows every row alike
    return sorted(out, key=lambda g: (min(r["config"]["seed"] for r in g), order[g[0]["run_id"]]))


def _split_untraceable(members: list[dict], task_set_of: Callable) -> list[list[dict]]:
    paths = _varying(members, prefix=WEIGHTING_OPTIONS)
    ts = task_set_of(members[0]["config"]) if paths else None
    if not paths or _traceable(members[0]["config"], paths, ts.num_tasks, tuple(ts.task_names)):
        return [members]
    by_value: dict = {}
    for r in members:
        by_value.setdefault(json.dumps([schema._get_path(r["config"], p) for p in paths]), []).append(r)
    return list(by_value.values())


def _varying(members: list[dict], prefix: str = "") -> list[str]:
    """Population paths (under ``prefix``) whose values differ between members' configs."""
    vals = [population_values(r["config"] if "config" in r else r) for r in members]
    return sorted(p for p in vals[0] if p.startswith(prefix) and any(v.get(p) != vals[0][p] for v in vals))


def _with(run_cfg: Mapping, values: Mapping) -> dict:
    c = copy.deepcopy(dict(run_cfg))
    for p, v in values.items():
        schema._set_path(c, p, v)
    return c


def _make_weighting(section: Mapping):
    """The weighting from its config section, values possibly traced (checked before, concretely)."""
    from mtlx.plugins import resolve
    from mtlx.weighting import WEIGHTINGS

    return resolve(WEIGHTINGS, section["name"], "weighting")(**dict(section["options"]))
