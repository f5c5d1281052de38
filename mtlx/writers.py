"""Metric writers (in the style of ``clu.metric_writers``): where a run's curve records go.

The loop hands every record (``{"step", "kind": "train"|"eval", ...}``, the
lines of ``metrics.jsonl``) to one :class:`MultiWriter`, which passes it to
each writer. ``metrics.jsonl`` is always written (it is the run directory's
record, ``mtlx.results``); ``tensorboard`` adds event files under
``<run_dir>/tensorboard/`` (tensorboardX, no TensorFlow) and ``wandb`` logs to
Weights & Biases when that package is installed. The other writers get the
record's numbers flattened to scalars named ``<kind>/<path>``, e.g.
``train/losses/y1`` or ``eval/validation/y1/accuracy``, at the record's step
(the number of updates done, as everywhere in mtlx).
"""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from typing import Any, Iterable, Mapping

from mtlx import results

JSONL, TENSORBOARD, WANDB = "jsonl", "tensorboard", "wandb"
WRITERS = (JSONL, TENSORBOARD, WANDB)
DEFAULT = (JSONL,)


def check_writers(names: Iterable[str]) -> tuple[str, ...]:
    """The writer names, validated (raises ValueError with one line); jsonl is always included."""
    names = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    bad = [n for n in names if n not in WRITERS]
    if bad:
        raise ValueError(f"--writers: {bad[0]!r} is not a writer; choose from {list(WRITERS)}")
    if WANDB in names and not _importable("wandb"):
        raise ValueError("--writers: 'wandb' needs the wandb package (pip install wandb)")
    return tuple(dict.fromkeys((JSONL, *names)))


def _importable(name: str) -> bool:
    return name in sys.modules or importlib.util.find_spec(name) is not None


def scalars(record: Mapping) -> dict[str, float]:
    """The record's numbers (nested dicts flattened with '/'), prefixed by its kind; None -> nan."""
    out: dict[str, float] = {}

    def walk(prefix: str, x: Any) -> None:
        if isinstance(x, Mapping):
            for k, v in x.items():
                walk(f"{prefix}/{k}", v)
        elif x is None:
            out[prefix] = math.nan
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out[prefix] = float(x)

    kind = record.get("kind", "metrics")
    for k, v in record.items():
        if k not in ("step", "kind"):
            walk(f"{kind}/{k}", v)
    return out


class Writer:
    """The interface: ``write_scalars(step, {name: value})``, ``close()``; ``write_record``
    flattens a curve record into scalars (the JSONL writer keeps it whole)."""

    def write_scalars(self, step: int, values: Mapping[str, float]) -> None:
        raise NotImplementedError

    def write_record(self, record: Mapping) -> None:
        self.write_scalars(int(record["step"]), scalars(record))

    def close(self) -> None:
        pass


class JsonlWriter(Writer):
    """``metrics.jsonl``: one record a line."""

    def __init__(self, run_dir: str):
        self.out = results.metrics_writer(run_dir)

    def write_scalars(self, step, values):
        self.out.write({"step": int(step), **values})

    def write_record(self, record):
        self.out.write(dict(record))


class TensorBoardWriter(Writer):
    """Event files in ``<run_dir>/tensorboard/`` (tensorboardX). A resumed run purges the
    points after its checkpoint, as metrics.jsonl drops those lines."""

    def __init__(self, run_dir: str, start: int = 0):
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(results.tensorboard_dir(run_dir), purge_step=start or None, flush_secs=30)

    def write_scalars(self, step, values):
        for name, v in values.items():
            self.tb.add_scalar(name, v, int(step))

    def close(self):
        self.tb.close()


class WandbWriter(Writer):
    """A Weights & Biases run named and identified by the run id (resumed when relaunched)."""

    def __init__(self, run_dir: str, run_id: str, config: Mapping | None = None):
        import wandb

        wid = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)[:64]  # W&B ids: no '/', ':', '#', ...
        self.run = wandb.init(id=wid, name=run_id, dir=run_dir, config=dict(config or {}), resume="allow")

    def write_scalars(self, step, values):
        self.run.log(dict(values), step=int(step))

    def close(self):
        self.run.finish()


class MultiWriter(Writer):
    """Every record to each writer."""

    def __init__(self, writers: list[Writer]):
        self.writers = writers

    def write_scalars(self, step, values):
        for w in self.writers:
            w.write_scalars(step, values)

    def write_record(self, record):
        for w in self.writers:
            w.write_record(record)

    def close(self):
        for w in self.writers:
            w.close()


def open_writers(names: Iterable[str], run_dir: str, start: int = 0, run_id: str | None = None,
                 config: Mapping | None = None) -> MultiWriter:
    """The writers ``names`` (see ``check_writers``) for the run directory ``run_dir``, the run
    resuming at step ``start``."""
    make = {JSONL: lambda: JsonlWriter(run_dir), TENSORBOARD: lambda: TensorBoardWriter(run_dir, start),
            WANDB: lambda: WandbWriter(run_dir, run_id or run_dir.rstrip("/").rsplit("/", 1)[-1], config)}
    return MultiWriter([make[n]() for n in check_writers(names)])
