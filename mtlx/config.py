"""The run config: every field one training run reads, declared in one place.

Experiments (``experiments/*.py``) start from ``base_config()`` and add their
grid (lists of architectures, weightings, seeds, sweeps); ``launch.run``
expands the grid into run configs of exactly this shape. ``check_run_config``
refuses unknown or missing fields, naming them.
"""

from __future__ import annotations

import difflib

import ml_collections


def run_config() -> ml_collections.ConfigDict:
    """One run: the defaults of every field."""
    c = ml_collections.ConfigDict()
    c.task_set = ml_collections.ConfigDict({"name": "synthetic_classification", "options": {}})
    c.backbone = ml_collections.ConfigDict({"blocks": [{"kind": "dense", "features": 64}] * 2, "head_hidden": []})
    c.architecture = ml_collections.ConfigDict({"name": "hard", "options": {}})
    c.weighting = ml_collections.ConfigDict({"name": "equal", "options": {}})
    c.seed = 0
    c.optimizer = ml_collections.ConfigDict({
        "name": "adam", "learning_rate": 1e-3, "mixing_learning_rate": 0.0, "schedule": "constant",
        "warmup_steps": 0, "weight_decay": 0.0, "momentum": 0.9, "grad_clip": 0.0})
    c.steps = 1000
    c.batch_size = 128
    c.eval_every = 250
    c.eval_batch_size = 1024
    c.log_every = 50
    c.checkpoint_every = 500
    c.jacobian_chunk = 0
    c.on_device_max_bytes = 2**30
    return c


def _fields(cfg, prefix=""):
    out = set()
    for k, v in cfg.items():
        name = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict) and k not in ("options",):
            out |= _fields(v, name + ".")
        else:
            out.add(name)
    return out


def check_run_config(cfg) -> None:
    """Unknown (e.g. misspelled) and missing fields raise one clear ValueError."""
    if not isinstance(cfg, ml_collections.ConfigDict):
        cfg = ml_collections.ConfigDict(cfg)
    want, have = _fields(run_config()), _fields(cfg)
    unknown, missing = sorted(have - want), sorted(want - have)
    if unknown:
        hints = [f"{u} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(u, want, 1)) else u for u in unknown]
        raise ValueError(f"unknown config field(s): {', '.join(hints)}")
    if missing:
        raise ValueError(f"missing config field(s): {', '.join(missing)}")
    for k in ("steps", "batch_size", "eval_every", "log_every", "checkpoint_every", "eval_batch_size"):
        if int(cfg[k]) < 1:
            raise ValueError(f"config field {k}={cfg[k]} must be >= 1")
