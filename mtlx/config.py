"""Deprecated alias of ``mtlx.grid``'s run-config schema, kept for this release.

``run_config()`` (every field one training run reads, with its default) and
``check_run_config(cfg)`` (unknown, missing or mistyped fields raise one
ValueError) live in ``mtlx.grid``; import them from there. This module will be
removed in a later release.
"""

from mtlx.grid import check_run_config, run_config  # noqa: F401
