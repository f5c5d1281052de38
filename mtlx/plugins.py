"""Plug-ins by import path: a task set, an architecture or a weighting of the user's own.

``task_set.name``, an ``architectures`` entry's ``name`` and a ``weightings``
entry's ``name`` take either a registry key (``mtlx.data.TASK_SETS``,
``mtlx.architectures.ARCHITECTURES``, ``mtlx.weighting.WEIGHTINGS``) or
``package.module:attribute``, where the attribute is a task-set function
(options -> ``mtlx.tasks.TaskSet``), an ``MTLModel`` subclass, or a weighting
constructor (options -> ``mtlx.weighting.Weighting``). ``resolve`` is the one
lookup every site uses (grid validation, ``get_task_set``, ``build_model``,
``get_weighting``), so a name means the same thing in-process, in
``--parallel`` workers and in Slurm jobs: ``launch.run`` puts the experiment
file's folder on ``sys.path`` and on ``PYTHONPATH``, so modules beside it import
everywhere.
"""

from __future__ import annotations

import difflib
import importlib
import re
from typing import Mapping

SEPARATOR = ":"
LABELS = {"task_set": "task_set.name", "architecture": "architecture", "weighting": "weighting"}
WHAT = {"task_set": "a task-set function (options -> mtlx.tasks.TaskSet)",
        "architecture": "an mtlx.architectures.base.MTLModel subclass",
        "weighting": "a weighting constructor (options -> mtlx.weighting.Weighting)"}


def is_import_path(name) -> bool:
    return isinstance(name, str) and SEPARATOR in name


def default_label(name: str) -> str:
    """A plug-in's default label (run ids, tables): its attribute's name, e.g. 'make' for 'my_tasks:make'."""
    return re.sub(r"[^A-Za-z0-9_.+]", "_", name.rsplit(SEPARATOR, 1)[-1]) if is_import_path(name) else name


def _fits(obj, kind: str) -> bool:
    if kind == "architecture":
        from mtlx.architectures.base import MTLModel

        return isinstance(obj, type) and issubclass(obj, MTLModel)
    return callable(obj)


def _import(name: str, label: str):
    module, _, attr = name.partition(SEPARATOR)
    if not module or not attr:
        raise ValueError(f"{label}={name!r} is not an import path; write 'package.module:attribute'")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # ModuleNotFoundError, or what the user's module raised while importing
        raise ValueError(f"{label}={name!r}: cannot import module {module!r} ({type(e).__name__}: {e}); "
                         f"modules beside the experiment file and on PYTHONPATH are importable") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            m = difflib.get_close_matches(part, public, 1)
            raise ValueError(f"{label}={name!r}: module {module!r} has no attribute {attr!r}"
                             + (f" (did you mean {m[0]!r}?)" if m else ""))
        obj = getattr(obj, part)
    return obj


def resolve(registry: Mapping, name, kind: str):
    """``registry[name]``, or the object ``name`` = 'package.module:attribute' names, checked to be of ``kind``
    ('task_set', 'architecture' or 'weighting'); a ValueError (one line) says what is wrong and lists the
    registry's names."""
    label = LABELS[kind]
    if isinstance(name, str) and name in registry:
        return registry[name]
    if not is_import_path(name):
        m = difflib.get_close_matches(str(name), list(registry), 1)
        raise ValueError(f"{label}={name!r} is not valid; choose one of {sorted(registry)} or give "
                         f"'package.module:attribute'" + (f" (did you mean {m[0]!r}?)" if m else ""))
    obj = _import(name, label)
    if not _fits(obj, kind):
        raise ValueError(f"{label}={name!r} is a {type(obj).__name__}, not {WHAT[kind]}")
    return obj
