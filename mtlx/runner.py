"""Running a grid: one run, many runs, and the executors (in-process, local processes, Slurm).

A run directory ``<workdir>/<run_id>/`` holds what ``mtlx.results`` defines:
``config.json`` (the run config, written when the run starts),
``metrics.jsonl`` (curves, written by ``mtlx.train.train_and_evaluate``),
``checkpoints/`` and, written LAST and atomically, ``summary.json``;
``<workdir>/experiment.json`` holds the experiment and its run list. Every
file goes through ``mtlx.results``.

Runs need no claiming: a run with a summary is finished and skipped (a failed
one is redone only with ``rerun_failed``); one without resumes from its last
checkpoint. ``launch`` checks the experiment once and validates every
expanded run before anything is written (``mtlx.grid.prepare``).
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from typing import Any, Callable, Mapping

from mtlx import grid, results, tasks
from mtlx.grid import ConfigError

__all__ = ["ConfigError", "launch", "needs_running", "run_many", "run_one", "summarise", "use_compilation_cache"]


def use_compilation_cache(path: str | None) -> None:
    """JAX's persistent compilation cache at ``path`` (None/'' = leave JAX as it is).

    Runs that differ only in seed or data compile to the same program, so all
    but the first load it from the cache (a tiny MLP run: 3 s of compilation
    -> 0.6 s). Set it before the process compiles anything.
    """
    if not path:
        return
    import jax

    path = os.path.abspath(os.path.expanduser(path))
    if jax.config.values.get("jax_compilation_cache_dir") != path:
        os.makedirs(path, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def needs_running(run_dir: str, rerun_failed: bool) -> bool:
    s = results.read_summary(run_dir)
    return s is None or (s.get("status") == results.FAILED and rerun_failed)


def tasks_info(task_set) -> dict:
    """Per task: its kind, main metric and which way each eval metric (loss included) is better."""
    return {t.name: {"kind": t.kind, "main_metric": t.main_metric,
                     "higher_is_better": {m: tasks.higher_is_better(t.kind, m) for m in (*t.metrics, tasks.LOSS)}}
            for t in task_set.tasks}


def _checkpoint_step(run_dir: str):
    ckpt = results.checkpoint_dir(run_dir)
    if not os.path.isdir(ckpt) or not os.listdir(ckpt):
        return None
    from mtlx import checkpoint

    return checkpoint.latest_step(checkpoint.manager(ckpt))


def _line(run: dict, summary: dict) -> str:
    head = f"[{run.get('index', '?')}/{run.get('total', '?')}] {run['run_id']}"
    if summary["status"] != results.DONE:
        f = summary["failure"]
        return f"{head} FAILED at step {f['step']} (task {f['task']}): {f['message']}"
    parts = []
    for t, info in summary["tasks"].items():
        m = (summary.get("metrics") or {}).get(t, {}).get(info["main_metric"])
        parts.append(f"{t} {info['main_metric']} {m:.4g}" if isinstance(m, (int, float)) else f"{t} -")
    return f"{head} done in {summary['wall_time_s']:.1f}s: " + ", ".join(parts)


class _Progress:
    """A tqdm bar per run (or nothing): ``update(step, losses)`` is train's progress callback."""

    def __init__(self, run: dict, steps: int, log_every: int, show: bool, position: int | None):
        self.log_every, self.bar = log_every, None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=steps, desc=f"{run['run_id']} ({run.get('index', '?')}/{run.get('total', '?')})",
                            unit="step", position=position, leave=position is None, dynamic_ncols=True,
                            file=sys.stderr, smoothing=0.1)

    def update(self, step: int, losses: Mapping) -> None:
        bar = self.bar
        if bar is None:
            return
        if bar.n == 0 and step > self.log_every:  # first report of a resumed run: no fake speed-up
            bar.n = bar.last_print_n = bar.initial = step - self.log_every
        bar.update(step - bar.n)
        bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def say(self, line: str) -> None:
        """One line under the bars (a plain stderr line without them)."""
        if self.bar is None:
            print(line, file=sys.stderr)
        else:
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)


def _meta(run: dict) -> dict:
    """The summary fields that come from the grid, not from training."""
    keys = ("run_id", "experiment", "architecture", "architecture_name", "weighting", "weighting_name", "seed", "sweep")
    return {**{k: run[k] for k in keys}, "task_set": run["config"]["task_set"]["name"], "tasks": {},
            "resumed_from_step": None, "config": run["config"], "host": socket.gethostname()}


def _failure(t0: float, step, task, message: str) -> dict:
    return {"status": results.FAILED, "steps": step, "metrics": None, "wall_time_s": time.time() - t0,
            "failure": {"step": step, "task": task, "message": message}}


def _train(run: dict, run_dir: str, progress: _Progress, meta: dict) -> dict:
    """Train the run; a NaN/inf loss or any exception becomes a failed summary (the sweep goes on)."""
    from mtlx import train

    t0 = time.time()
    try:
        task_set = grid.task_set_for(run["config"])
        meta.update(task_set=task_set.name, tasks=tasks_info(task_set), resumed_from_step=_checkpoint_step(run_dir))
        return train.train_and_evaluate(grid.train_config(run["config"]), run_dir, task_set=task_set,
                                        progress=progress.update)
    except train.NonFiniteLoss as e:
        return _failure(t0, e.step, e.task, str(e))
    except Exception as e:  # a bug, missing data, a resource error: record it, go on with the sweep
        results.write_error(run_dir, traceback.format_exc())
        return _failure(t0, None, None, f"{type(e).__name__}: {e}".splitlines()[0])


def run_one(run: dict, workdir: str, rerun_failed: bool = False, show_progress: bool = True,
            position: int | None = None, compilation_cache: str | None = None) -> dict:
    """Train one run of the grid into ``<workdir>/<run_id>/``; returns its summary.

    A done run (or a failed one, unless ``rerun_failed``) is not redone; an
    interrupted one resumes from its last checkpoint. A NaN/inf loss marks the
    run failed with the step and task; any other exception marks it failed
    with the message (traceback in ``error.txt``) -- the sweep goes on.
    """
    use_compilation_cache(compilation_cache)
    run_dir = results.run_path(workdir, run["run_id"])
    old = results.read_summary(run_dir)
    if old is not None and not (old.get("status") == results.FAILED and rerun_failed):
        return old
    if old is not None:  # rerun a failed run from scratch: its checkpoint may hold the NaN
        results.clear_run(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    results.write_config(run_dir, run["config"])
    cfg = run["config"]
    progress = _Progress(run, cfg["steps"], cfg["log_every"], show_progress, position)
    meta = _meta(run)
    try:
        out = _train(run, run_dir, progress, meta)
    finally:
        progress.close()
    summary = {**out, **meta}
    results.write_summary(run_dir, summary)  # LAST: marks the run finished
    progress.say(_line(run, summary))
    return summary


def run_many(runs: list[dict], workdir: str, rerun_failed: bool = False, show_progress: bool = True,
             compilation_cache: str | None = None) -> list[dict]:
    """Runs one after the other (a Slurm job's body)."""
    return [run_one(r, workdir, rerun_failed, show_progress, None, compilation_cache) for r in runs]


# --------------------------------------------------------------------------- executors


def _run_processes(todo, workdir, rerun_failed, show_progress, parallel, compilation_cache) -> None:
    """``parallel`` spawned processes, each training one run at a time."""
    import concurrent.futures as cf
    import multiprocessing

    with cf.ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_one, r, workdir, rerun_failed, show_progress, k % parallel, compilation_cache)
                   for k, r in enumerate(todo)]
        for f in cf.as_completed(futures):
            f.result()


def _submit_slurm(todo, workdir, rerun_failed, slurm, runs_per_job, name, compilation_cache, show_progress, log):
    """submitit jobs of ``runs_per_job`` runs each (cluster None = Slurm; 'local'/'debug' run here)."""
    import submitit

    if not todo:
        return []
    cluster = slurm.pop("cluster", None)
    ex = submitit.AutoExecutor(folder=os.path.join(workdir, ".submitit", "%j"), cluster=cluster)
    params = {"name": f"mtlx-{name}", "timeout_min": int(slurm.pop("time", 60)),
              "gpus_per_node": int(slurm.pop("gpus", 0)), "cpus_per_task": int(slurm.pop("cpus", 1))}
    if slurm.get("partition"):
        params["slurm_partition"] = slurm.pop("partition")
    ex.update_parameters(**params)
    groups = [todo[i:i + runs_per_job] for i in range(0, len(todo), runs_per_job)]
    jobs = [ex.submit(run_many, g, workdir, rerun_failed, show_progress, compilation_cache) for g in groups]
    log(f"submitted {len(jobs)} job(s) ({ex.cluster}): {', '.join(str(j.job_id) for j in jobs)}; "
        f"logs under {os.path.join(workdir, '.submitit')}")
    return jobs


def _check_executor(executor: str, parallel: int, runs_per_job: int) -> None:
    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor={executor!r} is not valid; choose 'local' or 'slurm'")
    if parallel < 1 or runs_per_job < 1:
        raise ConfigError(f"--parallel={parallel} and --runs_per_job={runs_per_job} must be >= 1")


def launch(cfg, workdir: str | None = None, executor: str = "local", parallel: int = 1, only=None,
           rerun_failed: bool = False, dry_run: bool = False, show_progress: bool = True,
           slurm: Mapping | None = None, runs_per_job: int = 1, wait: bool = True,
           compilation_cache: str | None = None, log: Callable[[str], Any] | None = None) -> dict:
    """Validate the whole grid, then train every run not done yet.

    Returns {"workdir", "runs" (all grid runs), "summaries" {run_id: summary}
    for the selected runs that have one, "jobs" (submitit jobs, Slurm only)}.
    ``compilation_cache``: a directory for JAX's persistent compilation cache,
    used by every process that trains (None: JAX's default, no cache).
    """
    if (executor == "local" and parallel == 1) or (executor == "slurm" and (slurm or {}).get("cluster") == "debug"):
        use_compilation_cache(compilation_cache)  # runs train in this process: set it before anything compiles
    log = log or (lambda msg: print(msg, file=sys.stderr))
    _check_executor(executor, parallel, runs_per_job)
    e, runs, chosen, workdir = grid.prepare(cfg, workdir, only)
    workdir = os.path.abspath(workdir)
    todo = [r for r in chosen if needs_running(results.run_path(workdir, r["run_id"]), rerun_failed)]
    log(f"experiment {e['experiment']}: {len(runs)} runs in the grid, {len(chosen)} selected, {len(todo)} to run "
        f"({len(chosen) - len(todo)} already finished) -> {workdir}")
    out = {"workdir": workdir, "runs": runs, "summaries": {}, "jobs": []}
    if dry_run:
        for r in chosen:
            log(f"  {r['run_id']}{'' if r in todo else '  (finished)'}")
        return out
    results.write_experiment(workdir, grid.experiment_record(e, runs))
    if executor == "slurm":
        out["jobs"] = _submit_slurm(todo, workdir, rerun_failed, dict(slurm or {}), runs_per_job, e["experiment"],
                                    compilation_cache, show_progress, log)
        for job in out["jobs"] if wait else ():
            job.result()
    elif parallel == 1 or len(todo) <= 1:
        run_many(todo, workdir, rerun_failed, show_progress, compilation_cache)
    else:
        _run_processes(todo, workdir, rerun_failed, show_progress, parallel, compilation_cache)
    for r in chosen:
        s = results.read_summary(results.run_path(workdir, r["run_id"]))
        if s is not None:
            out["summaries"][r["run_id"]] = s
    return out


def summarise(out: dict) -> str:
    """One closing line: done / failed counts and where to look."""
    ss = out["summaries"].values()
    done = sum(s.get("status") == results.DONE for s in ss)
    failed = [s["run_id"] for s in ss if s.get("status") != results.DONE]
    msg = f"{done} done, {len(failed)} failed, {len(out['runs'])} in the grid; results in {out['workdir']}"
    if failed:
        msg += f"; failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}"
    return msg
