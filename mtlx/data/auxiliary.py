"""Auxiliary tasks as task-set transforms: pure numpy on the split arrays.

A run config asks for them in ``task_set.options`` (``mtlx.data.get_task_set``
applies them after building the task set; ``mtlx.tasks`` has the option names):

  auxiliary        [task names]: tasks of the set made auxiliary (``Task.role``).
  auxiliary_tasks  [spec, ...]: generated auxiliary tasks, appended after the
                   set's own tasks in this order (so a ``static`` weighting's
                   ``weights`` list gives their loss weights last).

Each spec is a dict with ``kind`` (``AUX_KINDS``) and ``name`` (the new task's),
the kinds Ruder (2017, Sec. 6, "Auxiliary tasks") lists:

  reconstruction  predict the inputs: a regression task whose target is the
                  flattened input (``columns``: only those columns of it).
  hint            predict a given feature (Abu-Mostafa 1990's hints; Yu & Jiang
                  2016): the target is one ``SOURCES`` entry.
  adversarial     a discriminator of one ``SOURCES`` entry (a domain, a task's
                  labels, a nuisance attribute) whose head reads the shared
                  layers through a gradient-reversal layer with ``reversal``
                  lambda (Ganin & Lempitsky 2015; ``mtlx.gradient_reversal``):
                  the head learns to predict it, the layers below to hide it.
  future          "using the future" (Caruana 1998): targets only known at
                  training time, e.g. a later-time feature or labels annotated
                  after the fact; kept in the train split only (validation and
                  test examples get weight 0, so the task has no eval metrics).

Sources (exactly one per hint / adversarial / future spec):

  feature    int or [int, ...]: column(s) of the flattened input.
  function   'package.module:function': f(inputs) -> (N,) or (N, K) array.
  extra      a name in the split's ``extras`` (per-example quantities the
             generator knows, e.g. ``synthetic_classification(extras=True)``).
  task       a task of the set: its targets and weights (kind and width too).

``target_kind`` (not with ``task``): 'regression' (the values), 'binary' (value
> 0) or 'classification' (integer values; ``num_classes`` or max + 1). Every
problem is one ValueError naming ``task_set.options.auxiliary_tasks[i].<field>``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from typing import Mapping

import numpy as np

from mtlx.tasks import AUXILIARY, AUXILIARY_OPTION, TRANSFORMS_OPTION, Task, TaskSet

AUX_KINDS = ("reconstruction", "hint", "adversarial", "future")
SOURCES = ("feature", "function", "extra", "task")
TARGET_KINDS = ("regression", "binary", "classification")
EXTRAS = "extras"  # the optional per-example dict of a split (see mtlx.tasks.TaskSet)
TRAIN = "train"
_KEYS = {  # the fields each kind takes besides kind and name
    "reconstruction": ("columns",),
    "hint": SOURCES + ("target_kind", "num_classes"),
    "adversarial": SOURCES + ("target_kind", "num_classes", "reversal"),
    "future": SOURCES + ("target_kind", "num_classes"),
}
DEFAULT_TARGET_KIND = {"hint": "regression", "adversarial": "binary", "future": "regression"}


def _where(i: int, field: str | None = None) -> str:
    return f"task_set.options.{TRANSFORMS_OPTION}[{i}]" + (f".{field}" if field else "")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


# --------------------------------------------------------------------------- checks without data


def check_specs(specs) -> None:
    """The specs' shape without building anything: kinds, names, fields, one source, values."""
    if not isinstance(specs, (list, tuple)):
        raise ValueError(f"task_set.options.{TRANSFORMS_OPTION}={specs!r} must be a list of dicts")
    names = []
    for i, spec in enumerate(specs):
        _check_spec(i, spec)
        if spec["name"] in names:
            raise ValueError(f"{_where(i, 'name')}={spec['name']!r} is used twice")
        names.append(spec["name"])


def _check_spec(i: int, spec) -> None:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{_where(i)}={spec!r} must be a dict with 'kind' and 'name'")
    kind = spec.get("kind")
    if kind not in AUX_KINDS:
        raise ValueError(f"{_where(i, 'kind')}={kind!r} is not valid; choose one of {list(AUX_KINDS)}")
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ValueError(f"{_where(i, 'name')}={spec.get('name')!r} must be a non-empty task name")
    unknown = sorted(set(spec) - {"kind", "name", *_KEYS[kind]})
    if unknown:
        raise ValueError(f"{_where(i)} ({kind}) has unknown field(s) {unknown}; valid: {sorted(_KEYS[kind])}")
    if kind != "reconstruction":
        given = [s for s in SOURCES if s in spec]
        if len(given) != 1:
            raise ValueError(f"{_where(i)} ({kind}) gives source(s) {given}; give exactly one of {list(SOURCES)}")
        _check_source(i, given[0], spec[given[0]])
        _check_target(i, spec, given[0])
    elif "columns" in spec:
        _check_source(i, "columns", spec["columns"])
    if kind == "adversarial":
        lam = spec.get("reversal", 1.0)
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (math.isfinite(lam) and lam > 0):
            raise ValueError(f"{_where(i, 'reversal')}={lam!r} must be a finite number > 0 (the reversal lambda)")


def _check_source(i: int, field: str, value) -> None:
    if field in ("feature", "columns"):
        cols = value if isinstance(value, (list, tuple)) else [value]
        if not cols or not all(_is_int(c) and c >= 0 for c in cols):
            raise ValueError(f"{_where(i, field)}={value!r} must be an int >= 0 or a non-empty list of them")
    elif field == "function" and (not isinstance(value, str) or ":" not in value):
        raise ValueError(f"{_where(i, field)}={value!r} must be 'package.module:function'")
    elif field in ("extra", "task") and (not isinstance(value, str) or not value):
        raise ValueError(f"{_where(i, field)}={value!r} must be a name")


def _check_target(i: int, spec, source: str) -> None:
    for field in ("target_kind", "num_classes"):
        if field in spec and source == "task":
            raise ValueError(f"{_where(i, field)} cannot be set with 'task' (the task's own kind is used)")
    kind = spec.get("target_kind", DEFAULT_TARGET_KIND[spec["kind"]])
    if kind not in TARGET_KINDS:
        raise ValueError(f"{_where(i, 'target_kind')}={kind!r} is not valid; choose one of {list(TARGET_KINDS)}")
    n = spec.get("num_classes")
    if n is not None and (kind != "classification" or not _is_int(n) or n < 2):
        raise ValueError(f"{_where(i, 'num_classes')}={n!r} must be an int >= 2, with target_kind 'classification'")


def check_marked(names) -> None:
    """``task_set.options.auxiliary``'s shape (the names are checked against the built task set)."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"task_set.options.{AUXILIARY_OPTION}={names!r} must be a list of task names")


# --------------------------------------------------------------------------- the transforms


def mark_auxiliary(ts: TaskSet, names) -> TaskSet:
    """``ts`` with the tasks ``names`` given role 'auxiliary'; an unknown name is one ValueError."""
    check_marked(names)
    unknown = [n for n in names if n not in ts.task_names]
    if unknown:
        raise ValueError(f"task_set.options.{AUXILIARY_OPTION}={list(names)!r} names unknown task(s) {unknown}; "
                         f"tasks of task set {ts.name!r}: {list(ts.task_names)}")
    tasks = tuple(dataclasses.replace(t, role=AUXILIARY) if t.name in names else t for t in ts.tasks)
    if not any(t.is_main for t in tasks):
        raise ValueError(f"task_set.options.{AUXILIARY_OPTION}={list(names)!r} leaves no main task in task set "
                         f"{ts.name!r}; keep at least one of {list(ts.main_task_names)} main")
    return dataclasses.replace(ts, tasks=tasks)


def add_auxiliary_tasks(ts: TaskSet, specs) -> TaskSet:
    """``ts`` with one auxiliary task per spec appended (tasks and every split's targets and weights)."""
    check_specs(specs)
    for split_name, split in ts.splits.items():
        if not isinstance(split, Mapping):
            raise ValueError(f"task_set.options.{TRANSFORMS_OPTION} needs splits held in memory; task set "
                             f"{ts.name!r} streams split {split_name!r}")
    for i, spec in enumerate(specs):
        if spec["name"] in ts.task_names:
            raise ValueError(f"{_where(i, 'name')}={spec['name']!r} is already a task of task set {ts.name!r} "
                             f"({list(ts.task_names)})")
        ts = _add_one(ts, i, spec)
    return ts


def _add_one(ts: TaskSet, i: int, spec) -> TaskSet:
    values = {s: _values(ts, i, spec, s, split) for s, split in ts.splits.items()
              if spec["kind"] != "future" or s == TRAIN}
    task = _task_of(ts, i, spec, values)
    splits = {}
    for s, split in ts.splits.items():
        n = len(split["inputs"])
        if s in values:
            y, w = _target(task, values[s]), _weights(ts, spec, split, n)
        else:  # a future task's targets exist at training time only: weight 0, placeholder targets
            y = np.zeros((n,) + _target(task, values[TRAIN]).shape[1:], _target(task, values[TRAIN]).dtype)
            w = np.zeros(n, np.float32)
        splits[s] = {**split, "targets": {**split["targets"], task.name: y},
                     "weights": {**split["weights"], task.name: w}}
    return dataclasses.replace(ts, tasks=ts.tasks + (task,), splits=splits)


def _values(ts: TaskSet, i: int, spec, split_name: str, split) -> np.ndarray:
    """The raw per-example values the spec's target is made from, on one split."""
    x = np.asarray(split["inputs"])
    flat = x.reshape(len(x), -1)
    if spec["kind"] == "reconstruction":
        return _columns(flat, spec.get("columns"), i, "columns") if "columns" in spec else flat.astype(np.float32)
    if "feature" in spec:
        return _columns(flat, spec["feature"], i, "feature")
    if "task" in spec:
        if spec["task"] not in ts.task_names:
            raise ValueError(f"{_where(i, 'task')}={spec['task']!r} is not a task of task set {ts.name!r}; "
                             f"choose one of {list(ts.task_names)}")
        return np.asarray(split["targets"][spec["task"]])
    if "extra" in spec:
        extras = split.get(EXTRAS) or {}
        if spec["extra"] not in extras:
            raise ValueError(f"{_where(i, 'extra')}={spec['extra']!r}: split {split_name!r} of task set {ts.name!r} "
                             f"has extras {sorted(extras)}")
        return np.asarray(extras[spec["extra"]])
    out = np.asarray(_function(i, spec["function"])(x))
    if out.ndim not in (1, 2) or len(out) != len(x):
        raise ValueError(f"{_where(i, 'function')}={spec['function']!r} returned shape {out.shape}; want (N,) or "
                         f"(N, K) for N = {len(x)} examples")
    return out


def _columns(flat, cols, i: int, field: str) -> np.ndarray:
    idx = list(cols) if isinstance(cols, (list, tuple)) else [cols]
    if max(idx) >= flat.shape[1]:
        raise ValueError(f"{_where(i, field)}={cols!r} names a column outside the flattened input's "
                         f"{flat.shape[1]} columns")
    out = flat[:, idx].astype(np.float32)
    return out[:, 0] if not isinstance(cols, (list, tuple)) else out


def _function(i: int, path: str):
    module, _, attr = path.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{_where(i, 'function')}={path!r} cannot be imported: {e}") from None
    if not callable(obj):
        raise ValueError(f"{_where(i, 'function')}={path!r} is a {type(obj).__name__}, not a function")
    return obj


def _task_of(ts: TaskSet, i: int, spec, values: Mapping) -> Task:
    """The new task: its kind and width from the values (all splits that have them)."""
    lam = float(spec.get("reversal", 1.0)) if spec["kind"] == "adversarial" else 0.0
    if "task" in spec:
        src = next(t for t in ts.tasks if t.name == spec["task"])
        return Task(spec["name"], src.kind, src.num_outputs, src.labels, AUXILIARY, lam)
    kind = "regression" if spec["kind"] == "reconstruction" else spec.get("target_kind",
                                                                          DEFAULT_TARGET_KIND[spec["kind"]])
    if kind == "classification":
        v = np.concatenate([np.asarray(a).reshape(-1) for a in values.values()])
        if not np.all(v == np.round(v)) or v.min() < 0:
            raise ValueError(f"{_where(i)}: target_kind 'classification' needs one integer value >= 0 per example")
        n = spec.get("num_classes") or int(v.max()) + 1
        if v.max() >= n or n < 2:
            raise ValueError(f"{_where(i, 'num_classes')}={n} must exceed the largest class id {int(v.max())} "
                             f"and be >= 2")
        if any(np.asarray(a).ndim != 1 for a in values.values()):
            raise ValueError(f"{_where(i)}: target_kind 'classification' needs one value per example")
        return Task(spec["name"], kind, n, role=AUXILIARY, gradient_reversal=lam)
    width = next(iter(values.values())).shape[1:]
    return Task(spec["name"], kind, int(np.prod(width)) if width else 1, role=AUXILIARY, gradient_reversal=lam)


def _target(task: Task, values) -> np.ndarray:
    v = np.asarray(values)
    if task.kind == "binary" and v.dtype.kind == "f" and not np.all((v == 0) | (v == 1)):
        return (v > 0).astype(np.float32)
    if task.kind in ("classification", "tagging"):
        return v.astype(np.int32)
    return v.astype(np.float32)


def _weights(ts: TaskSet, spec, split, n: int) -> np.ndarray:
    """1 for every example; a copied task's own weights (its unlabelled examples stay unlabelled)."""
    if "task" in spec:
        return np.asarray(split["weights"][spec["task"]], np.float32)
    return np.ones(n, np.float32)


def drop_extras(ts: TaskSet) -> TaskSet:
    """``ts`` without its splits' ``extras`` (read by the transforms only; never trained on)."""
    if not any(isinstance(s, Mapping) and EXTRAS in s for s in ts.splits.values()):
        return ts
    splits = {k: ({kk: vv for kk, vv in s.items() if kk != EXTRAS} if isinstance(s, Mapping) else s)
              for k, s in ts.splits.items()}
    return dataclasses.replace(ts, splits=splits)


def apply(ts: TaskSet, options: Mapping) -> TaskSet:
    """The transforms a run's ``task_set.options`` ask for (generated tasks, then the marking), extras dropped."""
    if options.get(TRANSFORMS_OPTION):
        ts = add_auxiliary_tasks(ts, list(options[TRANSFORMS_OPTION]))
    if options.get(AUXILIARY_OPTION):
        ts = mark_auxiliary(ts, list(options[AUXILIARY_OPTION]))
    return drop_extras(ts)
