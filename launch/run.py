"""Train every run of an experiment's grid; skips finished runs, resumes interrupted ones.

  python -m launch.run --config experiments/quickstart.py
  python -m launch.run --config experiments/quickstart.py:smoke --workdir /tmp/qs
  python -m launch.run --config experiments/mmoe_synthetic.py --config.run.steps=200 --parallel=2
  python -m launch.run --config experiments/mmoe_synthetic.py --executor=slurm --slurm_partition=gpu --slurm_gpus=1

A bad config is refused before any training with one line ``error: ...`` and exit status 2.
SIGINT/SIGTERM stop at the next step boundary with a checkpoint and one line
``interrupted: ...``, exit status 130/143; relaunching resumes. Several launchers
may work on one workdir at once: each run is claimed by one of them.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from mtlx import grid, results, runner, schema

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment file: experiments/<name>.py[:arg].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where run directories go (default results/<experiment>/).")
_EXECUTOR = flags.DEFINE_enum("executor", "local", ["local", "slurm"], "Run locally or as submitit (Slurm) jobs.")
_PARALLEL = flags.DEFINE_integer("parallel", 1, "local: runs at a time (1 = in this process; N > 1 = N spawned processes).")
_ONLY = flags.DEFINE_list("only", None, "Only runs whose id or architecture label matches one of these glob patterns.")
_RERUN_FAILED = flags.DEFINE_bool("rerun_failed", False, "Rerun failed runs from scratch (finished runs are always skipped).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Validate the grid and list its runs; train nothing.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar per run.")
_REPORT = flags.DEFINE_bool("report", True, "At the end, print the table and write table.{md,tex,csv} and figures/.")
_CLUSTER = flags.DEFINE_string("slurm_cluster", None, "submitit cluster: None = auto (Slurm), or 'local' / 'debug'.")
_PARTITION = flags.DEFINE_string("slurm_partition", None, "Slurm partition.")
_TIME = flags.DEFINE_integer("slurm_time", 60, "Slurm time limit per job, minutes.")
_GPUS = flags.DEFINE_integer("slurm_gpus", 0, "GPUs per job.")
_CPUS = flags.DEFINE_integer("slurm_cpus", 4, "CPUs per job.")
_TASKS = flags.DEFINE_integer("slurm_tasks", 1, "slurm: processes per job (e.g. one per GPU); > 1: every run "
                              "spans them (jax.distributed, batch split over all their devices with "
                              "--config.parallel.data_devices=0).")
_RUNS_PER_JOB = flags.DEFINE_integer("runs_per_job", 1, "slurm: runs per job (run one after the other).")
_WAIT = flags.DEFINE_bool("wait", True, "slurm: wait for the jobs to finish (else print their ids and exit).")
_WRITERS = flags.DEFINE_list("writers", ["jsonl"], "Metric writers: jsonl (always), tensorboard, wandb.")
_CLAIM_TIMEOUT = flags.DEFINE_float("claim_timeout", 600.0, "Seconds without a heartbeat after which "
                                    "another launcher's claim on a run is stale and taken over.")
_CACHE = flags.DEFINE_string("compilation_cache", "~/.cache/mtlx/jax", "JAX persistent compilation cache ('' = off).")
_COORDINATOR = flags.DEFINE_string("coordinator", None, "host:port of process 0 for a run spanning processes "
                                   "(with --num_processes and --process_id; mtlx.parallel.distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes a run spans (each runs this same command).")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index, 0 .. num_processes-1.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join the processes of a Slurm job (or TPU pod) "
                                 "from its environment (jax.distributed.initialize()).")


def _fail(msg, prefix="") -> None:
    """One line: the message, or the last line of one that holds a traceback."""
    lines = [ln.strip() for ln in str(msg).replace("\\n", "\n").splitlines() if ln.strip()] or [repr(msg)]
    text = lines[-1] if "Traceback" in str(msg) or "Attempted" in str(msg) else " ".join(lines)
    print(f"error: {prefix}{text}", file=sys.stderr)
    sys.exit(2)


def _importable(argv) -> None:
    """The experiment file's folder first on sys.path and on PYTHONPATH: its own modules (plug-ins named
    'module:attribute') import here, in spawned --parallel workers and in submitit jobs alike."""
    paths = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    paths += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    for path in paths[-1:]:
        folder = os.path.dirname(os.path.abspath(path.split(":", 1)[0]))
        if folder not in sys.path:
            sys.path.insert(0, folder)
        env = os.environ.get("PYTHONPATH", "")
        if folder not in env.split(os.pathsep):
            os.environ["PYTHONPATH"] = folder + (os.pathsep + env if env else "")


def _parse_flags(argv):
    """absl's parser, but a bad flag or config file is one line and exit status 2."""
    _importable(argv)
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # flags.Error, or what the config file / an override raised
        for a in argv:  # an override of a field the schema lacks: name it, with the nearest valid one
            if a.startswith("--config.") and (msg := schema.flag_path_error(a[9:].split("=")[0], grid.EXPERIMENT_FIELDS)):
                _fail(msg)
        _fail(e)


def main(argv):
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}")
    if _CONFIG.value is None:
        _fail("--config is required, e.g. --config experiments/quickstart.py")
    if hasattr(_CONFIG.value, "_error"):  # config_flags defers some load errors (a missing file) to first use
        _fail(_CONFIG.value._error, prefix="--config: ")
    if _NUM_PROCESSES.value > 1 or _DISTRIBUTED.value:
        if _NUM_PROCESSES.value > 1 and not _COORDINATOR.value:
            _fail("--num_processes > 1 needs --coordinator=host:port (process 0's address)")
        if not 0 <= _PROCESS_ID.value < _NUM_PROCESSES.value:
            _fail(f"--process_id={_PROCESS_ID.value} must lie in [0, {_NUM_PROCESSES.value - 1}]")
        from mtlx import parallel

        parallel.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, auto=_DISTRIBUTED.value)
    slurm = dict(cluster=_CLUSTER.value, partition=_PARTITION.value, time=_TIME.value, gpus=_GPUS.value, cpus=_CPUS.value,
                 tasks=_TASKS.value)
    try:
        out = runner.launch(_CONFIG.value, _WORKDIR.value, executor=_EXECUTOR.value, parallel=_PARALLEL.value,
                            only=_ONLY.value, rerun_failed=_RERUN_FAILED.value, dry_run=_DRY_RUN.value,
                            show_progress=_PROGRESS.value, slurm=slurm, runs_per_job=_RUNS_PER_JOB.value,
                            wait=_WAIT.value, compilation_cache=_CACHE.value, writer_names=_WRITERS.value,
                            claim_timeout_s=_CLAIM_TIMEOUT.value)
    except grid.ConfigError as e:
        _fail(e)
    except runner.Interrupted as e:
        where = f"run {e.run_id} at step {e.step}" if e.run_id and e.step is not None else "before a run started"
        print(f"interrupted: {where}; relaunch to resume", file=sys.stderr)
        sys.exit(128 + (e.signum or 2))
    if _DRY_RUN.value or (_EXECUTOR.value == "slurm" and not _WAIT.value):
        return
    if _REPORT.value and (_NUM_PROCESSES.value == 1 or _PROCESS_ID.value == 0):
        _report(out["workdir"])
    print(runner.summarise(out), file=sys.stderr)
    if any(s.get("status") != results.DONE and (s.get("failure") or {}).get("task") is None
           for s in out["summaries"].values()):
        sys.exit(1)  # a run crashed (not a NaN loss, which is a result): say so in the exit status


def _report(workdir: str) -> None:
    """The table and figures of the sweep; runs of other configurations in the workdir stop it with one line."""
    from mtlx import report
    from mtlx.report.pooling import PoolingError

    try:
        print(report.write_tables(workdir)["markdown"])
        report.plot_all(workdir, log=lambda *a: None)
    except PoolingError as e:
        print(f"note: no table written: {e} (python -m launch.table {workdir} --pool_configs pools them)",
              file=sys.stderr)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
