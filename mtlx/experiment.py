"""Deprecated alias of ``mtlx.grid`` and ``mtlx.runner``, kept for this release.

Experiment files written as ``from mtlx.experiment import experiment_config,
dotted, smoke`` and code calling ``mtlx.experiment.launch`` keep working;
new code imports the schema, validation and expansion from ``mtlx.grid`` and
running (``run_one``, ``run_many``, ``launch``, ``summarise``) from
``mtlx.runner``. This module will be removed in a later release.
"""

from mtlx.grid import (  # noqa: F401
    ConfigError, Experiment, check_experiment, check_workdir, config_hash, default_workdir, dotted, expand,
    experiment_config, prepare, run_config, run_id, select, smoke, task_set_for, validate,
)
from mtlx.runner import launch, needs_running, run_many, run_one, summarise, use_compilation_cache  # noqa: F401
