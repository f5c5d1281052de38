"""Running a grid: one run, many runs, and the executors (in-process, local processes, Slurm).

A run directory ``<workdir>/<run_id>/`` holds what ``mtlx.results`` defines:
``config.json`` (the run config, written when the run starts),
``metrics.jsonl`` (curves, written by ``mtlx.train.train_and_evaluate``),
``checkpoints/`` and, written LAST and atomically, ``summary.json``;
``<workdir>/experiment.json`` holds the experiment and its run list. Every
file goes through ``mtlx.results``.

A run with a summary is finished and skipped (a failed one is redone only
with ``rerun_failed``); one without resumes from its last checkpoint. Before
training a run, a launcher claims it (``results.claim_run``: host, pid,
heartbeat refreshed by a thread while it trains; released when it ends), so
several launchers - local, or Slurm jobs on nodes sharing the file system -
work through one sweep without duplicates: a run another launcher holds is
skipped, a stale claim (heartbeat older than ``claim_timeout_s``, or a dead
pid on this host) is taken over. ``launch`` checks the experiment once and
validates every expanded run before anything is written
(``mtlx.grid.prepare``).

SIGINT/SIGTERM while training set a flag (``stop_on_signals``); the loop
stops at the next step boundary, checkpoints, and ``run_one`` leaves an
interrupted note, releases the claim and raises ``Interrupted``; a relaunch
resumes the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any, Callable, Mapping

from mtlx import grid, results, tasks, writers
from mtlx.grid import ConfigError

__all__ = ["ConfigError", "Interrupted", "launch", "needs_running", "run_many", "run_one", "summarise",
           "use_compilation_cache"]

CLAIM_TIMEOUT_S = 600.0  # a claim whose heartbeat is older than this is stale
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM: run ``run_id`` (None: before a run started)
    checkpointed after ``step`` updates; a relaunch resumes it."""

    def __init__(self, step: int | None, run_id: str | None = None, signum: int | None = None):
        super().__init__(step, run_id, signum)
        self.step, self.run_id, self.signum = step, run_id, signum


# --------------------------------------------------------------------------- stopping on signals

_STOP = {"signum": None, "installed": False}


def stop_requested() -> bool:
    return _STOP["signum"] is not None


def _on_signal(signum, frame) -> None:
    _STOP["signum"] = _STOP["signum"] or signum


def _handle_signals() -> None:
    """SIGINT/SIGTERM set the stop flag from now on (a worker process's initializer)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)
    _STOP["installed"] = True


@contextlib.contextmanager
def stop_on_signals():
    """Inside: SIGINT/SIGTERM set a flag the training loop checks at each step, instead of
    raising KeyboardInterrupt inside JAX. Main thread only; nests; the outermost one clears
    the flag of an earlier stop (a worker process keeps its handlers and flag for good)."""
    install = threading.current_thread() is threading.main_thread() and not _STOP["installed"]
    old = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS} if install else {}
    if install:
        _STOP.update(signum=None, installed=True)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if install:
            _STOP["installed"] = False


def _check_stop(run_id: str | None = None) -> None:
    if stop_requested():
        raise Interrupted(None, run_id, _STOP["signum"])


class _Heartbeat:
    """Holds runs' claims ([(run_dir, claim)]): refreshes their heartbeats from a thread every
    ``every_s``; releases them on exit."""

    def __init__(self, held: list, every_s: float):
        self.held, self.every_s, self.done = held, every_s, threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while not self.done.wait(self.every_s):
            for run_dir, claim in self.held:
                try:
                    results.refresh_claim(run_dir, claim)
                except OSError:  # a file-system hiccup: try again at the next beat
                    pass

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        for run_dir, claim in self.held:
            with contextlib.suppress(OSError):  # never hide the run's own exception; the claim then goes stale
                results.release_claim(run_dir, claim)


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
    """Per task: its position in the task set, kind, role (main / auxiliary), main metric and which way each eval metric (loss included)
    is better."""
    return {t.name: {"index": i, "kind": t.kind, "role": t.role, "loss": t.loss, "main_metric": t.main_metric,
                     "higher_is_better": {m: tasks.higher_is_better(t.kind, m) for m in (*t.metrics, tasks.LOSS)}}
            for i, t in enumerate(task_set.tasks)}


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
    parts, search = [], results.is_search_run(run["run_id"])  # a tuning search run: validation, never test
    shown = summary.get("validation_metrics" if search else "metrics") or {}
    for t, info in summary["tasks"].items():
        m = shown.get(t, {}).get(info["main_metric"])
        parts.append(f"{t} {info['main_metric']} {m:.4g}" if isinstance(m, (int, float)) else f"{t} -")
    return f"{head} done in {summary['wall_time_s']:.1f}s: " + ("validation " if search else "") + ", ".join(parts)


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


def _train(run: dict, run_dir: str, progress: _Progress, meta: dict, writer_names) -> dict:
    """Train the run (``mtlx.fafs.procedure_of``: a growing FAFS run grows); a NaN/inf loss or any
    exception becomes a failed summary (the sweep goes on)."""
    from mtlx import fafs, train

    t0 = time.time()
    try:
        task_set = grid.task_set_for(run["config"])
        meta.update(task_set=task_set.name, tasks=tasks_info(task_set), resumed_from_step=_checkpoint_step(run_dir))
        procedure = fafs.procedure_of(run["config"])
        return procedure(grid.train_config(run["config"]), run_dir, task_set=task_set, progress=progress.update,
                         should_stop=_should_stop(), writer_names=writer_names, execution=run.get("execution"))
    except train.NonFiniteLoss as e:
        return _failure(t0, e.step, e.task, str(e))
    except train.Interrupted as e:
        results.write_interrupted(run_dir, {"step": e.step, "signal": _STOP["signum"], "host": socket.gethostname(),
                                            "time": time.time()})
        raise Interrupted(e.step, run["run_id"], _STOP["signum"]) from None
    except Exception as e:  # a bug, missing data, a resource error: record it, go on with the sweep
        results.write_error(run_dir, traceback.format_exc())
        return _failure(t0, None, None, f"{type(e).__name__}: {e}".splitlines()[0])


def _redo(summary: dict | None, rerun_failed: bool) -> bool:
    return summary is None or (summary.get("status") == results.FAILED and rerun_failed)


def run_one(run: dict, workdir: str, rerun_failed: bool = False, show_progress: bool = True,
            position: int | None = None, compilation_cache: str | None = None,
            writer_names=writers.DEFAULT, claim_timeout_s: float = CLAIM_TIMEOUT_S,
            launcher: str | None = None) -> dict | None:
    """Train one run of the grid into ``<workdir>/<run_id>/``; returns its summary, or None when
    another launcher holds the run's claim (or finished it meanwhile).

    A done run (or a failed one, unless ``rerun_failed``) is not redone; an
    interrupted one resumes from its last checkpoint. A NaN/inf loss marks the
    run failed with the step and task; any other exception marks it failed
    with the message (traceback in ``error.txt``) -- the sweep goes on.
    SIGINT/SIGTERM: checkpoint, note, release, raise ``Interrupted``.
    ``launcher``: the id of the launch that asked (kept in the claim and the summary).
    """
    use_compilation_cache(compilation_cache)
    run_dir = results.run_path(workdir, run["run_id"])
    old = results.read_summary(run_dir)
    if _several_processes():
        return _run_one_together(run, run_dir, old, rerun_failed, show_progress, position, writer_names,
                                 claim_timeout_s, launcher)
    if not _redo(old, rerun_failed):
        return old
    with stop_on_signals():
        _check_stop(run["run_id"])
        claim = {**results.new_claim(), "launcher": launcher}
        if results.claim_run(run_dir, claim, claim_timeout_s).get("token") != claim["token"]:
            return None
        with _Heartbeat([(run_dir, claim)], claim_timeout_s / 4):
            if results.read_summary(run_dir) != old:  # another launcher finished it before we claimed it
                return None
            return _run_claimed(run, run_dir, old is not None, show_progress, position, writer_names, launcher)


def _should_stop() -> Callable[[], bool]:
    """The loop's stop check: this process's signal flag, or, across processes, process 0's."""
    if not _several_processes():
        return stop_requested
    from mtlx.parallel import distributed

    return lambda: distributed.agree(stop_requested())


def _is_main() -> bool:
    from mtlx.parallel import distributed

    return distributed.is_main()


def _several_processes() -> bool:
    from mtlx.parallel import distributed

    return distributed._STATE["initialized"]


def _run_one_together(run, run_dir, old, rerun_failed, show_progress, position, writer_names, claim_timeout_s,
                      launcher):
    """``run_one`` for a run spanning processes (``mtlx.parallel.distributed``): process 0 claims (and
    clears a failed run it redoes) and broadcasts whether the run trains; every process trains it;
    only process 0 writes the run directory."""
    from mtlx.parallel import distributed

    main, claim = distributed.is_main(), None
    if main and _redo(old, rerun_failed):
        claim = {**results.new_claim(), "launcher": launcher}
        if results.claim_run(run_dir, claim, claim_timeout_s).get("token") != claim["token"]:
            claim = None
        elif old is not None:
            results.clear_run(run_dir)
    if not distributed.agree(claim is not None):
        return old
    if not main:
        from mtlx import fafs

        fafs.procedure_of(run["config"])(grid.train_config(run["config"]), run_dir, grid.task_set_for(run["config"]),
                                         should_stop=_should_stop(), writer_names=(), execution=run.get("execution"))
        return None
    with _Heartbeat([(run_dir, claim)], claim_timeout_s / 4):
        return _run_claimed(run, run_dir, False, show_progress, position, writer_names, launcher)


def _run_claimed(run: dict, run_dir: str, from_scratch: bool, show_progress: bool, position, writer_names,
                 launcher) -> dict:
    if from_scratch:  # rerun a failed run from scratch: its checkpoint may hold the NaN
        results.clear_run(run_dir)
    results.write_config(run_dir, run["config"])
    cfg = run["config"]
    progress = _Progress(run, cfg["steps"], cfg["log_every"], show_progress, position)
    meta = {**_meta(run), "launcher": launcher}
    try:
        out = _train(run, run_dir, progress, meta, writer_names)
    finally:
        progress.close()
    summary = {**out, **meta}
    results.write_summary(run_dir, summary)  # LAST: marks the run finished
    progress.say(_line(run, summary))
    return summary


def run_unit(unit, workdir: str, rerun_failed: bool = False, show_progress: bool = True,
             position: int | None = None, *opts) -> list[dict | None]:
    """A run (a dict) or a program (a list of runs sharing one compiled program,
    ``mtlx.parallel.population``): ``run_one`` or ``run_program``; their summaries."""
    if isinstance(unit, dict) or len(unit) == 1:
        return [run_one(unit if isinstance(unit, dict) else unit[0], workdir, rerun_failed, show_progress, position,
                        *opts)]
    from mtlx.run_program import run_program

    return run_program(unit, workdir, rerun_failed, show_progress, position, *opts)


def run_many(units: list, workdir: str, rerun_failed: bool = False, show_progress: bool = True,
             compilation_cache: str | None = None, writer_names=writers.DEFAULT,
             claim_timeout_s: float = CLAIM_TIMEOUT_S, launcher: str | None = None) -> list[dict | None]:
    """Runs (or programs of runs) one after the other (a Slurm job's body); None for a run another
    launcher holds."""
    with stop_on_signals():
        return [s for u in units for s in run_unit(u, workdir, rerun_failed, show_progress, None, compilation_cache,
                                                   writer_names, claim_timeout_s, launcher)]


def run_many_spanning(units: list, *args) -> list[dict | None]:
    """A Slurm job's body when each run spans the job's tasks: join them (``jax.distributed``, from the
    Slurm environment), then ``run_many`` (process 0 claims and writes; ``mtlx.parallel.distributed``)."""
    from mtlx import parallel

    parallel.initialize(auto=True)
    return run_many(units, *args)


# --------------------------------------------------------------------------- executors


def _forward_stop(pool) -> None:
    """Pass the launcher's SIGINT/SIGTERM on to its workers (each stops at a step boundary)."""
    for p in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError):
            os.kill(p.pid, _STOP["signum"])


def _run_processes(todo, workdir, rerun_failed, show_progress, parallel, opts) -> None:
    """``parallel`` spawned processes, each training one run at a time.
    A stop request cancels the runs not started and is passed on to the workers."""
    import concurrent.futures as cf
    import multiprocessing

    with cf.ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn"),
                                initializer=_handle_signals) as pool:
        futures = [pool.submit(run_unit, u, workdir, rerun_failed, show_progress, k % parallel, *opts)
                   for k, u in enumerate(todo)]
        pending, stopping, interrupted = set(futures), False, None
        while pending:
            done, pending = cf.wait(pending, timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for f in done:
                if not f.cancelled() and isinstance(f.exception(), Interrupted):
                    if interrupted is None or interrupted.step is None:  # prefer a run stopped mid-way
                        interrupted = f.exception()
                elif not f.cancelled():
                    f.result()
            if stop_requested() and not stopping:
                for f in pending:
                    f.cancel()
                _forward_stop(pool)
                stopping = True
    if interrupted or stop_requested():
        raise interrupted or Interrupted(None, None, _STOP["signum"])


def _submit_slurm(todo, workdir, rerun_failed, slurm, runs_per_job, name, opts, show_progress, log):
    """submitit jobs of ``runs_per_job`` runs each (cluster None = Slurm; 'local'/'debug' run here)."""
    import submitit

    if not todo:
        return []
    cluster = slurm.pop("cluster", None)
    ex = submitit.AutoExecutor(folder=os.path.join(workdir, ".submitit", "%j"), cluster=cluster)
    tasks = int(slurm.pop("tasks", 1) or 1)  # > 1: every run spans the job's tasks (one per GPU)
    params = {"name": f"mtlx-{name}", "timeout_min": int(slurm.pop("time", 60)),
              "gpus_per_node": int(slurm.pop("gpus", 0)), "cpus_per_task": int(slurm.pop("cpus", 1)),
              **({"tasks_per_node": tasks} if tasks > 1 else {})}
    if slurm.get("partition"):
        params["slurm_partition"] = slurm.pop("partition")
    ex.update_parameters(**params)
    groups = [todo[i:i + runs_per_job] for i in range(0, len(todo), runs_per_job)]
    body = run_many_spanning if tasks > 1 else run_many
    jobs = [ex.submit(body, g, workdir, rerun_failed, show_progress, *opts) for g in groups]
    log(f"submitted {len(jobs)} job(s) ({ex.cluster}): {', '.join(str(j.job_id) for j in jobs)}; "
        f"logs under {os.path.join(workdir, '.submitit')}")
    return jobs


def _check_executor(executor: str, parallel: int, runs_per_job: int) -> None:
    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor={executor!r} is not valid; choose 'local' or 'slurm'")
    if parallel < 1 or runs_per_job < 1:
        raise ConfigError(f"--parallel={parallel} and --runs_per_job={runs_per_job} must be >= 1")


def _execute(todo, workdir, rerun_failed, show_progress, executor, parallel, slurm, runs_per_job, name, wait,
             opts, log) -> list:
    """Train ``todo`` with the executor; the submitit jobs (Slurm)."""
    if executor == "slurm":
        jobs = _submit_slurm(todo, workdir, rerun_failed, dict(slurm or {}), runs_per_job, name, opts,
                             show_progress, log)
        for job in jobs if wait else ():
            job.result()
        return jobs
    if parallel == 1 or len(todo) <= 1:
        run_many(todo, workdir, rerun_failed, show_progress, *opts)
    else:
        _run_processes(todo, workdir, rerun_failed, show_progress, parallel, opts)
    return []


def _programs(todo: list[dict], workdir: str, e: dict) -> list[list[dict]]:
    """``todo`` as programs (``mtlx.parallel.population.programs``) of at most the experiment's
    ``parallel.runs_per_program`` runs."""
    size = e["parallel"].get("runs_per_program", 1)
    if size == 1 or _several_processes():  # a run spanning processes trains alone
        return [[r] for r in todo]
    from mtlx import fafs, train
    from mtlx.parallel.population import programs

    alone = [r for r in todo if fafs.procedure_of(r["config"]) is not train.train_and_evaluate]  # a growing run
    rest = [r for r in todo if r not in alone]
    return [[r] for r in alone] + programs(rest, size, grid.task_set_for,
                                           lambda r: _checkpoint_step(results.run_path(workdir, r["run_id"])))


def _who_trained(todo, workdir, launcher) -> tuple[list, dict]:
    """The runs of ``todo`` this launcher trained, and {run_id: "host pid N" (running) or
    "finished"} for those another launcher trained or is training."""
    mine, others = [], {}
    for r in todo:
        run_dir = results.run_path(workdir, r["run_id"])
        s, claim = results.read_summary(run_dir) or {}, results.read_claim(run_dir)
        if s.get("launcher") == launcher:
            mine.append(r["run_id"])
        elif claim is not None:
            others[r["run_id"]] = f"{claim.get('host')} pid {claim.get('pid')}"
        elif s:
            others[r["run_id"]] = "finished"
    return mine, others


def launch(cfg, workdir: str | None = None, executor: str = "local", parallel: int = 1, only=None,
           rerun_failed: bool = False, dry_run: bool = False, show_progress: bool = True,
           slurm: Mapping | None = None, runs_per_job: int = 1, wait: bool = True,
           compilation_cache: str | None = None, log: Callable[[str], Any] | None = None,
           writer_names=writers.DEFAULT, claim_timeout_s: float = CLAIM_TIMEOUT_S) -> dict:
    """Validate the whole grid, then train every run not done yet (and not claimed by another launcher).

    Returns {"workdir", "runs" (all grid runs), "summaries" {run_id: summary}
    for the selected runs that have one, "jobs" (submitit jobs, Slurm only),
    "trained" [run ids trained by this launcher], "others" {run_id: "host pid N"
    or "finished"} for the runs to do that another launcher held}.
    ``compilation_cache``: a directory for JAX's persistent compilation cache,
    used by every process that trains (None: JAX's default, no cache).
    ``writer_names``: metric writers besides metrics.jsonl (``mtlx.writers``).
    ``claim_timeout_s``: a claim whose heartbeat is older is stale. Raises
    ``Interrupted`` after SIGINT/SIGTERM (the runs resume when relaunched).
    """
    if (executor == "local" and parallel == 1) or (executor == "slurm" and (slurm or {}).get("cluster") == "debug"):
        use_compilation_cache(compilation_cache)  # runs train in this process: set it before anything compiles
    log = log or (lambda msg: print(msg, file=sys.stderr))
    _check_executor(executor, parallel, runs_per_job)
    try:
        writer_names = writers.check_writers(writer_names)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if not claim_timeout_s > 0:
        raise ConfigError(f"--claim_timeout={claim_timeout_s} must be > 0 (seconds)")
    with stop_on_signals():  # from here on SIGINT/SIGTERM stop at a step boundary
        e, runs, chosen, workdir = grid.prepare(cfg, workdir, only)
        workdir = os.path.abspath(workdir)
        if e.get("tune"):  # a tuned experiment trains its search first (mtlx.tune); then runs/chosen
            from mtlx import tune  # are the selected configurations' final runs (none while the search is unfinished)
            search_launcher = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            runs, chosen = tune.search_then_select(e, runs, chosen, workdir, dry_run, log, lambda todo: _execute(
                _programs(todo, workdir, e), workdir, rerun_failed, show_progress, executor, parallel, slurm, runs_per_job, e["experiment"],
                wait, (compilation_cache, writer_names, claim_timeout_s, search_launcher), log))
        todo = [r for r in chosen if needs_running(results.run_path(workdir, r["run_id"]), rerun_failed)]
        units = _programs(todo, workdir, e)
        log(f"experiment {e['experiment']}: {len(runs)} runs in the grid, {len(chosen)} selected, {len(todo)} to run "
            f"({len(chosen) - len(todo)} already finished" + (f"; in {len(units)} programs" if len(units) < len(todo)
                                                              else "") + f") -> {workdir}")
        out = {"workdir": workdir, "runs": runs, "summaries": {}, "jobs": [], "trained": [], "others": {}}
        if dry_run:
            for r in chosen:
                log(f"  {r['run_id']}{'' if r in todo else '  (finished)'}")
            return out
        if not _several_processes() or _is_main():
            results.write_experiment(workdir, results.merge_experiment(
                results.read_experiment(workdir), grid.experiment_record(e, runs), workdir))
        launcher = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        out["jobs"] = _execute(units, workdir, rerun_failed, show_progress, executor, parallel, slurm, runs_per_job,
                               e["experiment"], wait, (compilation_cache, writer_names, claim_timeout_s, launcher), log)
        _check_stop()  # a signal that came when no run was training
        if wait or executor != "slurm":
            out["trained"], out["others"] = _who_trained(todo, workdir, launcher)
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
    others = out.get("others") or {}
    if others:
        running = sorted(f"{rid} ({who})" for rid, who in others.items() if who != "finished")
        msg += (f"; this launcher trained {len(out.get('trained') or [])}, other launchers "
                f"{len(others)}" + (f" (still running: {', '.join(running[:5])}{' ...' if len(running) > 5 else ''})"
                                    if running else ""))
    return msg
