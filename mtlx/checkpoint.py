"""Every orbax call lives here: save and restore a run's TrainState."""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def manager(directory: str, max_to_keep: int = 1) -> ocp.CheckpointManager:
    os.makedirs(directory, exist_ok=True)
    return ocp.CheckpointManager(os.path.abspath(directory),
                                 options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))


def save(mgr: ocp.CheckpointManager, step: int, state) -> None:
    """Save ``state`` at ``step`` and wait until it is on disk (atomic in orbax)."""
    mgr.save(int(step), args=ocp.args.StandardSave(state))
    mgr.wait_until_finished()


def latest_step(mgr: ocp.CheckpointManager):
    return mgr.latest_step()


def restore(mgr: ocp.CheckpointManager, like, step=None):
    """Restore into the structure, dtypes and shapes of ``like`` (exact round trip)."""
    step = mgr.latest_step() if step is None else step
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, like)
    return mgr.restore(step, args=ocp.args.StandardRestore(abstract))
