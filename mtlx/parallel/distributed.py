"""Runs spanning several processes (several GPUs per Slurm job, several hosts): multi-controller JAX.

Every process runs the same launcher over the same runs; ``jax.distributed``
joins their devices into one global mesh (``mtlx.parallel.mesh``), so a run's
batch is split over all processes' devices with the numbers of one process
(``tests/integration/test_parallel_processes.py``: 2 local CPU processes
against 1). Process 0 decides which runs train (claims) and broadcasts the
decision; only it writes run directories; orbax checkpoints are written by
all processes together, as orbax requires. On a CPU the processes talk
through gloo collectives.
"""

from __future__ import annotations

import jax
import numpy as np

_STATE = {"initialized": False}


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               auto: bool = False) -> None:
    """Join the processes: explicit (``coordinator`` host:port, ``num_processes``, ``process_id``) or,
    with ``auto``, from the cluster's environment (Slurm, TPU pods: ``jax.distributed.initialize()``'s
    detection). Call before anything touches a device; a no-op for one process."""
    if _STATE["initialized"] or not (auto or (num_processes or 1) > 1):
        return
    if jax.config.values.get("jax_platforms") in (None, "", "cpu") or "cpu" in str(jax.config.values.get(
            "jax_platforms")):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives across processes
    if auto:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)
    _STATE["initialized"] = True


def is_main() -> bool:
    """Whether this process writes (process 0, or the only one)."""
    return jax.process_index() == 0


def agree(flag: bool) -> bool:
    """Process 0's ``flag``, on every process (a collective: every process must call it)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag, np.int32)))
