"""A tiny experiment grid shared by the grid/runner tests (unit and integration): trains in a second or two."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import ml_collections

from mtlx import grid
from mtlx.architectures import BASELINE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(task_set="synthetic_classification", archs=("hard", BASELINE), seeds=(0,)):
    """A 2-run grid (one per architecture and seed): 20 steps of a 16-unit MLP on 256 examples."""
    c = grid.experiment_config()
    c.experiment = "tiny"
    c.run.task_set.name = task_set
    opts = {"n_train": 256, "n_validation": 64, "n_test": 64}
    opts.update({"num_tasks": 2, "dim": 8} if task_set == "synthetic_classification" else {"dim": 8})
    c.run.task_set.options = ml_collections.ConfigDict(opts)
    c.run.backbone.blocks = [{"kind": "dense", "features": 16}]
    c.run.steps, c.run.batch_size, c.run.eval_every, c.run.log_every, c.run.checkpoint_every = 20, 32, 10, 5, 10
    c.architectures = tuple({"name": a, "options": {}} for a in archs)
    c.seeds = tuple(seeds)
    return c


def env():
    """A subprocess environment that imports this checkout's mtlx, on the CPU."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


def run_dirs(workdir):
    if not os.path.isdir(workdir):
        return []
    return sorted(d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d)) and not d.startswith("."))


def experiment_source(name, steps, batch_size, dim, n_train, n_eval, width, depth, eval_every, log_every,
                      checkpoint_every, seeds=(0,)) -> str:
    """The text of an experiment file (for subprocess tests): hard sharing on a synthetic classification set."""
    return textwrap.dedent(f"""
        import ml_collections
        from mtlx.grid import experiment_config

        def get_config(arg=None):
            c = experiment_config()
            c.experiment = {name!r}
            c.run.task_set.name = "synthetic_classification"
            c.run.task_set.options = ml_collections.ConfigDict(
                {{"num_tasks": 2, "dim": {dim}, "n_train": {n_train}, "n_validation": {n_eval}, "n_test": {n_eval}}})
            c.run.backbone.blocks = [{{"kind": "dense", "features": {width}}}] * {depth}
            c.run.steps, c.run.batch_size = {steps}, {batch_size}
            c.run.eval_every, c.run.log_every, c.run.checkpoint_every = {eval_every}, {log_every}, {checkpoint_every}
            c.architectures = ({{"name": "hard", "options": {{}}}},)
            c.seeds = {tuple(seeds)!r}
            return c
    """)


def launch_process(exp, workdir, log, cache):
    """``python -m launch.run`` on an experiment file, output to ``log``, in its own process group."""
    return subprocess.Popen([sys.executable, "-m", "launch.run", f"--config={exp}", f"--workdir={workdir}",
                             "--noprogress", "--noreport", f"--compilation_cache={cache}"], cwd=REPO, env=env(),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until(proc, ready, timeout=240):
    """Poll ``ready()`` while ``proc`` runs; its first truthy value (None if the process ended or time ran out)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if got := ready():
            return got
        time.sleep(0.005)
    return None


def kill_group(proc) -> None:
    """SIGKILL the process group of ``proc`` if it still runs (a launcher and its workers), and reap it."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
