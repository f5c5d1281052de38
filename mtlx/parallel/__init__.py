"""Many runs in one program, several steps per dispatch, many devices, many processes.

- ``dispatch``: K train steps per jitted call (``lax.scan``); K from the log /
  eval / checkpoint cadences; the numbers equal one step per call.
- ``population``: the runs of a grid that differ only in seed, data draw or a
  continuous hyperparameter (learning rate, weight decay, static loss weights,
  a weighting's scalar options) train in ONE compiled program, the state
  stacked on a leading axis and the step vmapped; each writes its own run
  directory, exactly as when trained alone.
- ``mesh``: a (runs, data) device mesh; the batch split along ``data`` with
  every per-task gradient taken over the global batch.
- ``distributed``: ``jax.distributed.initialize`` for a run spanning processes.

How a grid runs is the experiment's ``parallel`` section (``Execution``); it is
not part of any run's config or id: it changes the speed, not the numbers
(beyond float tolerance, stated where each part is defined).
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

from mtlx.parallel.dispatch import AUTO, chunks, dispatch_size, scanned
from mtlx.parallel.distributed import agree, initialize, is_main
from mtlx.parallel.mesh import DATA, RUNS, check_divisible, constrain_batch, make_mesh, put, to_host

__all__ = ["AUTO", "DATA", "RUNS", "Execution", "agree", "check_divisible", "initialize", "is_main", "chunks", "constrain_batch", "dispatch_size",
           "make_mesh", "put", "scanned", "to_host"]


@dataclasses.dataclass(frozen=True)
class Execution:
    """How a grid's runs execute (the experiment's ``parallel`` section).

    runs_per_program: at most this many runs share one compiled program (1: each
        run alone, as before; 0: as many as can share).
    steps_per_dispatch: train steps per jitted call; 0 (AUTO): the gcd of the log,
        eval and checkpoint cadences.
    data_devices: devices the batch is split over (1: one device; 0: all).
    run_devices: devices a population's runs are split over (1: none).
    """

    runs_per_program: int = 1
    steps_per_dispatch: int = AUTO
    data_devices: int = 1
    run_devices: int = 1

    @classmethod
    def of(cls, given: Mapping | "Execution" | None) -> "Execution":
        """From a mapping of (some of) the fields, each checked: one line naming ``parallel.<field>``."""
        if isinstance(given, Execution):
            return given
        given = dict(given or {})
        fields = [f.name for f in dataclasses.fields(cls)]
        for k, v in given.items():
            if k not in fields:
                raise ValueError(f"config.parallel.{k} is not a field; valid fields: {fields}")
            least = 1 if k == "run_devices" else 0
            if not isinstance(v, int) or isinstance(v, bool) or v < least:
                raise ValueError(f"config.parallel.{k}={v!r} must be an int >= {least}")
        return cls(**given)

    def record(self, mesh=None) -> dict:
        """What summary.json keeps of how the run executed."""
        shape = dict(mesh.shape) if mesh is not None else {RUNS: 1, DATA: 1}
        return {**dataclasses.asdict(self), "mesh": shape}
