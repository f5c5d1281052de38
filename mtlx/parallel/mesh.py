"""Data parallelism over every device: a ``jax.sharding.Mesh`` with a ``runs`` axis (the members
of a population, ``mtlx.parallel.population``) and a ``data`` axis (the batch).

Parameters, optimizer and weighting state are replicated along ``data``; the
batch is split along it. The step is the same jitted function: XLA partitions
it (GSPMD), so every reduction over the batch - the task losses, hence every
per-task gradient, Jacobian row and Gram entry - is over the GLOBAL batch,
reduced across devices before the weighting combines them. MGDA, PCGrad,
Nash-MTL, MGDA-UB and the ghost Gram path therefore give the update of one
device holding the whole batch, up to the order of float additions
(``tests/integration/test_parallel_devices.py`` checks 8 forced host devices
against 1). No per-task gradient ever crosses to the host.

Arrays are placed with ``jax.make_array_from_callback``, which also builds
global arrays when several processes share the mesh
(``mtlx.parallel.distributed``): each process supplies the slices its devices
hold from the same host value.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

RUNS, DATA = "runs", "data"


def make_mesh(data_devices: int = 1, run_devices: int = 1) -> Mesh | None:
    """A (runs, data) mesh over the first ``run_devices * data_devices`` devices (``data_devices``
    0: every device left); None when that is one device (plain single-device jit)."""
    devices = jax.devices()
    if data_devices < 0 or run_devices < 1:
        raise ValueError(f"parallel.data_devices={data_devices} must be >= 0 and parallel.run_devices={run_devices} "
                         f">= 1")
    data = data_devices or max(len(devices) // run_devices, 1)
    if run_devices * data > len(devices):
        raise ValueError(f"parallel.data_devices={data_devices} x parallel.run_devices={run_devices} needs "
                         f"{run_devices * data} devices; this process sees {len(devices)} ({devices[0].platform})")
    if run_devices * data == 1:
        return None
    return Mesh(np.asarray(devices[:run_devices * data]).reshape(run_devices, data), (RUNS, DATA))


def check_divisible(mesh: Mesh | None, batch_size: int, members: int = 1) -> None:
    """The batch splits evenly over ``data``, the population over ``runs``."""
    if mesh is None:
        return
    if batch_size % mesh.shape[DATA]:
        raise ValueError(f"batch_size={batch_size} does not split over parallel.data_devices={mesh.shape[DATA]}; "
                         f"use a multiple of {mesh.shape[DATA]}")
    if members % mesh.shape[RUNS]:
        raise ValueError(f"a program of {members} runs does not split over parallel.run_devices={mesh.shape[RUNS]}; "
                         f"use a divisor of the runs per program")


def spec(stacked: bool, batch: bool) -> P:
    """Leading axes: (runs,) for a stacked population, then (data,) for a batch."""
    return P(*((RUNS,) if stacked else ()), *((DATA,) if batch else ()))


def put(tree, mesh: Mesh | None, stacked: bool = False):
    """Host values onto the mesh: replicated along ``data``, split along ``runs`` when ``stacked``
    (one device without a mesh)."""
    if mesh is None:
        return jax.tree_util.tree_map(jax.device_put, tree)

    def one(x):
        x = np.asarray(x)
        sharding = NamedSharding(mesh, spec(stacked and x.ndim > 0, False))
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree_util.tree_map(one, tree)


def constrain_batch(batch, mesh: Mesh | None, stacked: bool = False):
    """Inside the jitted step: the batch split along ``data`` (and ``runs``)."""
    if mesh is None:
        return batch
    sharding = NamedSharding(mesh, spec(stacked, True))
    return jax.tree_util.tree_map(lambda x: jax.lax.with_sharding_constraint(x, sharding), batch)


def to_host(tree):
    """Numpy copies of (possibly multi-process) arrays: a replicated array from this process's own
    copy, a split one gathered from every process."""
    from jax.experimental import multihost_utils

    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree_util.tree_map(one, tree)
