"""Running a program of runs: claims, run directories and summaries for a population
(``mtlx.parallel.program.train_population``), as ``mtlx.runner.run_one`` does for one run.

Each member is claimed on its own (a member another launcher holds or finished
is left out of the program), writes its own ``config.json``, curves,
checkpoints and ``summary.json``; a NaN/inf member fails alone; SIGINT/SIGTERM
checkpoint every member and leave an interrupted note in each.
"""

from __future__ import annotations

import socket
import time
import traceback

from mtlx import grid, results, writers
from mtlx.runner import (
    CLAIM_TIMEOUT_S, Interrupted, _check_stop, _checkpoint_step, _failure, _Heartbeat, _line, _meta, _Progress, _redo,
    _STOP, stop_on_signals, stop_requested, tasks_info, use_compilation_cache)


def _claim_all(runs: list[dict], workdir: str, rerun_failed: bool, claim_timeout_s: float, launcher) -> list:
    """[(run, run_dir, claim, redone)] for the members this launcher now holds."""
    held = []
    for r in runs:
        run_dir = results.run_path(workdir, r["run_id"])
        old = results.read_summary(run_dir)
        if not _redo(old, rerun_failed):
            continue
        claim = {**results.new_claim(), "launcher": launcher}
        if results.claim_run(run_dir, claim, claim_timeout_s).get("token") != claim["token"]:
            continue
        if results.read_summary(run_dir) != old:  # another launcher finished it before we claimed it
            results.release_claim(run_dir, claim)
            continue
        held.append((r, run_dir, claim, old is not None))
    return held


def run_program(runs: list[dict], workdir: str, rerun_failed: bool = False, show_progress: bool = True,
                position: int | None = None, compilation_cache: str | None = None,
                writer_names=writers.DEFAULT, claim_timeout_s: float = CLAIM_TIMEOUT_S,
                launcher: str | None = None) -> list[dict | None]:
    """Train ``runs`` (one program key) together into ``<workdir>/<run_id>/``; their summaries
    (the finished one for a run that needed no training, None for one another launcher holds)."""
    use_compilation_cache(compilation_cache)
    with stop_on_signals():
        _check_stop(runs[0]["run_id"])
        held = _claim_all(runs, workdir, rerun_failed, claim_timeout_s, launcher)
        if held:
            with _Heartbeat([(d, c) for _, d, c, _ in held], claim_timeout_s / 4):
                _train_held(held, show_progress, position, writer_names, launcher)
    return [results.read_summary(results.run_path(workdir, r["run_id"])) for r in runs]


def _train_held(held: list, show_progress: bool, position, writer_names, launcher) -> None:
    from mtlx import train
    from mtlx.parallel.program import train_population

    metas, task_sets = [], []
    for r, run_dir, _, redone in held:
        if redone:  # rerun a failed run from scratch: its checkpoint may hold the NaN
            results.clear_run(run_dir)
        results.write_config(run_dir, r["config"])
        ts = grid.task_set_for(r["config"])
        task_sets.append(ts)
        metas.append({**_meta(r), "launcher": launcher, "task_set": ts.name, "tasks": tasks_info(ts),
                      "resumed_from_step": _checkpoint_step(run_dir)})
    first = held[0][0]
    label = {**first, "run_id": f"{first['run_id']} +{len(held) - 1} in one program"}
    progress = _Progress(label, first["config"]["steps"], first["config"]["log_every"], show_progress, position)
    t0 = time.time()
    try:
        outs = train_population([grid.train_config(r["config"]) for r, *_ in held], [d for _, d, *_ in held],
                                task_sets, progress.update, stop_requested, writer_names, first.get("execution"))
    except train.Interrupted as e:
        for _, run_dir, *_ in held:
            results.write_interrupted(run_dir, {"step": e.step, "signal": _STOP["signum"],
                                                "host": socket.gethostname(), "time": time.time()})
        raise Interrupted(e.step, first["run_id"], _STOP["signum"]) from None
    except Exception as e:  # a bug, missing data, a resource error: every member failed with it
        for _, run_dir, *_ in held:
            results.write_error(run_dir, traceback.format_exc())
        outs = [_failure(t0, None, None, f"{type(e).__name__}: {e}".splitlines()[0])] * len(held)
    finally:
        progress.close()
    for (r, run_dir, *_), out, meta in zip(held, outs, metas):
        if isinstance(out, train.NonFiniteLoss):
            out = _failure(t0, out.step, out.task, str(out))
        summary = {**out, **meta}
        results.write_summary(run_dir, summary)  # LAST: marks the run finished
        progress.say(_line(r, summary))
