"""Task-set registry: ``TASK_SETS`` maps a name to a function(**options) -> TaskSet."""

from __future__ import annotations

import inspect

from mtlx.data.synthetic import mmoe_synthetic, synthetic_classification

TASK_SETS = {
    "mmoe_synthetic": mmoe_synthetic,
    "synthetic_classification": synthetic_classification,
}
try:
    from mtlx.data.tfds_sets import TFDS_TASK_SETS

    TASK_SETS.update(TFDS_TASK_SETS)
except ImportError:  # pragma: no cover - the TFDS sets are optional at import time
    pass


def task_set_options(name: str) -> list[str]:
    return [p for p in inspect.signature(TASK_SETS[name]).parameters if p != "kwargs"]


def get_task_set(name: str, **options):
    """Build task set ``name``; unknown names or options name the valid choices."""
    if name not in TASK_SETS:
        raise ValueError(f"task_set.name={name!r} is not valid; choose one of {sorted(TASK_SETS)}")
    fn = TASK_SETS[name]
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        unknown = set(options) - set(params)
        if unknown:
            raise ValueError(f"task_set {name!r}: unknown option(s) {sorted(unknown)}; valid options {sorted(params)}")
    return fn(**options)
