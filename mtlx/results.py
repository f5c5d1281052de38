"""THE run-directory schema: its one writer and its one reader.

An experiment directory (``workdir``) holds::

  experiment.json         the experiment (``write_experiment``; a relaunch
                          keeps the started runs of earlier launches,
                          ``merge_experiment``): name, smoke,
                          paper, select (the report's test metrics), grid
                          {architectures, weightings, seeds, seed_paths, sweep,
                          num_runs, baseline}, runs [{run_id,
                          architecture, weighting, seed, sweep}], run (the
                          defaults every run starts from)
  <run_id>/config.json    the run config, written when the run starts
  <run_id>/metrics.jsonl  curves: one JSON record a line, {"step", "kind":
                          "train"|"eval", ...}
  <run_id>/checkpoints/   orbax checkpoints (mtlx.checkpoint)
  <run_id>/error.txt      the traceback of a run that crashed (never beside a
                          "done" summary)
  <run_id>/claim.json     the launcher training the run now (``claim_run``):
                          host, pid, start time, heartbeat, token; removed
                          when the run finishes, fails or is interrupted
  <run_id>/interrupted.json  a note {step, signal, host, time} left by a
                          SIGINT/SIGTERM stop; the run resumes when relaunched
  <run_id>/tensorboard/   TensorBoard event files (launch ``--writers``)
  tuning.json             the tuning record of a tuned experiment
                          (``write_tuning``, ``mtlx.tune``): the protocol,
                          each row's search space, candidates (values, search
                          run ids, validation scores) and selection
  <run_id>/summary.json   written LAST and atomically: marks the run finished
                          (``status`` "done" or "failed", ``metrics`` per task,
                          ``tasks`` {task: {main_metric, higher_is_better,
                          role}} (``role``: 'main' or 'auxiliary',
                          ``mtlx.tasks.ROLES``; read by ``task_roles``),
                          architecture/weighting labels and registry names,
                          seed, sweep, config, wall time, ``failure`` {step,
                          task, message} of a failed run, ...); a task set
                          with joint metrics (``mtlx.tasks.TaskSet.joint_metrics``)
                          adds ``joint_metrics`` (``JOINT_METRICS``) {name:
                          higher_is_better}, and its metrics dicts (also in
                          metrics.jsonl's eval records) hold their values
                          under the reserved key ``mtlx.tasks.JOINT`` beside
                          the tasks

Steps are counted the same way everywhere: ``step`` n (curve records,
TensorBoard/W&B points, checkpoints, ``failure.step``, ``interrupted.json``)
means "after n updates", so the first update is step 1 and a failure's step is
the 1-based number of the update whose loss was NaN/inf (the curve record of
that step, when one was logged, holds that loss as null).

Claims: a claim whose heartbeat is older than ``stale_after_s`` or whose pid
is dead on this host is stale and may be taken over; ``claim_run`` makes
creating and taking over atomic (``os.link`` of a complete temp file, which
fails when the name exists; one ``.takeover-<token>`` lock per stale claim),
so two launchers never both train a run.

Nothing else in mtlx writes or parses these files (the event files in
``tensorboard/`` are tensorboardX's, written by ``mtlx.writers``). Every file is written
through a temp file and a rename (JSON/JSONL, never pickle), so a reader never
sees half a file and a kill never loses an old one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import time
import uuid
from typing import Any, Mapping

from mtlx import tasks as tasks_lib

SELECT = {"final": "metrics", "best_validation": "test_at_best_validation"}  # report selection -> summary key


def selection(select: str | None, experiment: Mapping | None = None) -> str:
    """The test metrics a report reads: ``select`` when given, else the experiment's ``select``
    (experiment.json, from ``config.select``), else 'final'."""
    chosen = select or (experiment or {}).get("select") or "final"
    if chosen not in SELECT:
        raise ValueError(f"select={chosen!r} is not valid; choose one of {sorted(SELECT)}")
    return chosen


EXPERIMENT = "experiment.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
ERROR = "error.txt"
CLAIM = "claim.json"
INTERRUPTED = "interrupted.json"
TENSORBOARD = "tensorboard"
FIGURES = "figures"
TUNING = "tuning.json"
JOINT_METRICS = "joint_metrics"  # summary.json: {joint metric: higher_is_better}; values under mtlx.tasks.JOINT
SEARCH_MARK = "@tune"  # in the id of a tuning search run (stage 1), never in a grid run's (labels exclude '@')

DONE, FAILED = "done", "failed"
INCOMPLETE, NOT_STARTED = "incomplete", "not started"  # set by the reader only
STATUSES = (DONE, FAILED)

# --------------------------------------------------------------------------- plain files


def _clean(x):
    """NaN/inf -> None so that files are strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` through a temp file in the same directory, then rename: a reader never
    sees a half-written file and an old file is never lost."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=1, sort_keys=True))


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def read_jsonl(path: str) -> list:
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: ignore it
                    pass
    return out


def _jsonl_line(record: Mapping) -> str:
    return json.dumps(_clean(dict(record)), sort_keys=True) + "\n"


class JsonlWriter:
    """Appends one JSON record a line (CLU-style metric writer)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(_jsonl_line(record))
            f.flush()


def truncate_jsonl(path: str, step: int) -> None:
    """Keep only records with step <= ``step`` (after resuming from that checkpoint)."""
    if not os.path.exists(path):
        return
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(_jsonl_line(r) for r in keep))


# --------------------------------------------------------------------------- one run directory


def run_path(workdir: str, run_id: str) -> str:
    return os.path.join(workdir, run_id)


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, CHECKPOINTS)


def write_config(run_dir: str, config: Mapping) -> None:
    write_json(os.path.join(run_dir, CONFIG), config)


def read_config(run_dir: str) -> dict:
    return read_json(os.path.join(run_dir, CONFIG))


def metrics_writer(run_dir: str) -> JsonlWriter:
    return JsonlWriter(os.path.join(run_dir, METRICS))


def read_metrics(run_dir: str, kind: str | None = None) -> list[dict]:
    """The curve records of a run, optionally only those of ``kind`` ('train' / 'eval')."""
    recs = read_jsonl(os.path.join(run_dir, METRICS))
    return recs if kind is None else [r for r in recs if r.get("kind") == kind]


def truncate_metrics(run_dir: str, step: int) -> None:
    truncate_jsonl(os.path.join(run_dir, METRICS), step)


def write_error(run_dir: str, text: str) -> None:
    atomic_write_text(os.path.join(run_dir, ERROR), text)


def remove_files(run_dir: str, *names: str) -> None:
    for name in names:
        try:
            os.remove(os.path.join(run_dir, name))
        except FileNotFoundError:
            pass


def write_summary(run_dir: str, summary: Mapping) -> None:
    """The run's summary, written LAST: its presence marks the run finished. A "done" one
    first removes an error.txt (and any interrupted note) left by an earlier attempt."""
    if summary.get("status") not in STATUSES:
        raise ValueError(f"summary status={summary.get('status')!r} is not valid; choose one of {list(STATUSES)}")
    remove_files(run_dir, INTERRUPTED, *((ERROR,) if summary["status"] == DONE else ()))
    write_json(os.path.join(run_dir, SUMMARY), summary)


def write_interrupted(run_dir: str, note: Mapping) -> None:
    """The note of a run stopped by a signal at ``note["step"]`` (it resumes when relaunched)."""
    write_json(os.path.join(run_dir, INTERRUPTED), note)


def read_interrupted(run_dir: str) -> dict | None:
    try:
        return dict(read_json(os.path.join(run_dir, INTERRUPTED)))
    except (OSError, ValueError):
        return None


def read_summary(run_dir: str) -> dict | None:
    """The run's summary, or None when it has none (or an unreadable one: treated as unfinished)."""
    path = os.path.join(run_dir, SUMMARY)
    if not os.path.exists(path):
        return None
    try:
        return dict(read_json(path))
    except (OSError, ValueError):
        return None


def clear_run(run_dir: str) -> None:
    """Remove a run's outputs (summary, curves, error, note, checkpoints, event files) to run it
    again from scratch; its claim stays."""
    remove_files(run_dir, SUMMARY, METRICS, ERROR, INTERRUPTED)
    shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
    shutil.rmtree(tensorboard_dir(run_dir), ignore_errors=True)


def tensorboard_dir(run_dir: str) -> str:
    return os.path.join(run_dir, TENSORBOARD)


# --------------------------------------------------------------------------- run claims


def new_claim(host: str | None = None, pid: int | None = None, now: float | None = None) -> dict:
    """A claim record for this process (host, pid, start time, heartbeat, a unique token)."""
    now = time.time() if now is None else now
    return {"host": host or socket.gethostname(), "pid": os.getpid() if pid is None else pid, "started": now,
            "heartbeat": now, "token": uuid.uuid4().hex}


def _claim_text(claim: Mapping) -> str:
    return json.dumps(_clean(dict(claim)), indent=1, sort_keys=True)


def read_claim(run_dir: str) -> dict | None:
    """The run's claim; None when it has none. An unreadable one reads as a claim whose
    heartbeat is the file's mtime (so that it goes stale)."""
    path = os.path.join(run_dir, CLAIM)
    try:
        return dict(read_json(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        try:
            return {"host": None, "pid": None, "heartbeat": os.path.getmtime(path), "token": "unreadable"}
        except OSError:
            return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


def claim_is_stale(claim: Mapping, stale_after_s: float, now: float | None = None, host: str | None = None) -> bool:
    """Its heartbeat is older than ``stale_after_s``, or its pid is dead on this host."""
    now = time.time() if now is None else now
    if now - float(claim.get("heartbeat") or 0.0) > stale_after_s:
        return True
    same_host = claim.get("host") == (host or socket.gethostname())
    return same_host and claim.get("pid") is not None and not _pid_alive(int(claim["pid"]))


def _link_new(run_dir: str, claim: Mapping) -> bool:
    """Create claim.json holding ``claim`` unless it exists: a complete temp file hard-linked
    to the name (atomic, also on NFS; fails when the name exists)."""
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".tmp-claim-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_claim_text(claim))
        os.link(tmp, os.path.join(run_dir, CLAIM))
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)


def _take_over(run_dir: str, stale: Mapping, claim: Mapping, stale_after_s: float) -> bool:
    """Replace the stale claim by ``claim``; one caller per stale claim wins (an exclusive lock
    named after its token, then a check that it is still the claim in place)."""
    lock = os.path.join(run_dir, f".takeover-{stale.get('token')}")
    try:
        os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # another launcher is taking it over (or died doing so long ago)
        try:
            if time.time() - os.path.getmtime(lock) > stale_after_s:
                remove_files(run_dir, os.path.basename(lock))
        except FileNotFoundError:  # that takeover has just finished and removed its lock
            pass
        return False
    try:
        now = read_claim(run_dir)
        if now is None or now.get("token") != stale.get("token"):
            return False
        atomic_write_text(os.path.join(run_dir, CLAIM), _claim_text(claim))
        return True
    finally:
        remove_files(run_dir, os.path.basename(lock))


def claim_run(run_dir: str, claim: Mapping, stale_after_s: float) -> dict:
    """Claim the run for ``claim`` (from ``new_claim``); returns the claim that holds it now:
    ``claim`` itself when the caller won (created it, or took a stale one over), else the
    other launcher's claim."""
    os.makedirs(run_dir, exist_ok=True)
    for attempt in range(5):
        time.sleep(0.02 * attempt)  # a retry: let a released claim or a takeover settle
        if _link_new(run_dir, claim):
            return dict(claim)
        held = read_claim(run_dir)
        if held is None:  # released meanwhile: try again
            continue
        if not claim_is_stale(held, stale_after_s):
            return held
        if _take_over(run_dir, held, claim, stale_after_s):
            return dict(claim)
    return read_claim(run_dir) or {}


def refresh_claim(run_dir: str, claim: dict, now: float | None = None) -> bool:
    """Refresh the heartbeat of the caller's ``claim``; False when it no longer holds the run."""
    held = read_claim(run_dir)
    if held is None or held.get("token") != claim["token"]:
        return False
    claim["heartbeat"] = time.time() if now is None else now
    atomic_write_text(os.path.join(run_dir, CLAIM), _claim_text(claim))
    return True


def release_claim(run_dir: str, claim: Mapping) -> None:
    """Remove the caller's claim (a claim someone else holds now stays)."""
    held = read_claim(run_dir)
    if held is not None and held.get("token") == claim["token"]:
        remove_files(run_dir, CLAIM)


# --------------------------------------------------------------------------- the experiment directory


def write_experiment(workdir: str, experiment: Mapping) -> None:
    write_json(os.path.join(workdir, EXPERIMENT), experiment)


def merge_experiment(old: Mapping, new: Mapping, workdir: str) -> dict:
    """``new`` (this launch's record) plus the runs of ``old`` (an earlier launch's record of the same
    experiment) that have a run directory in ``workdir`` and that ``new`` does not hold, with their grid
    entries, seeds and sweep values, earlier launches' first. So an experiment launched in stages (dmtrl's
    stage 2, one launch per cell and seed) or whose grid grew between launches keeps every started run in
    its record. An earlier run never started is dropped (its grid may have been edited on purpose); the
    rest is ``new``'s."""
    if old.get("name") != new.get("name"):
        return dict(new)
    ids = {r["run_id"] for r in new["runs"]}
    kept = [r for r in old.get("runs") or []
            if r["run_id"] not in ids and os.path.isdir(run_path(workdir, r["run_id"]))]
    if not kept:
        return dict(new)
    old_grid, grid = old.get("grid") or {}, dict(new["grid"])
    for key, field in (("architectures", "architecture"), ("weightings", "weighting")):
        mine = {e["label"]: e for e in grid[key]}
        used = {r[field] for r in kept} | set(mine)
        merged = [mine.get(e["label"], e) for e in old_grid.get(key) or [] if e["label"] in used]
        grid[key] = merged + [e for e in grid[key] if e not in merged]
    grid["seeds"] = sorted({*grid["seeds"], *(r["seed"] for r in kept)})
    old_sweep, new_sweep = old_grid.get("sweep") or {}, grid.get("sweep") or {}
    sweep = {p: [v for v in vs if v in new_sweep.get(p, []) or any(r["sweep"].get(p) == v for r in kept)]
             for p, vs in old_sweep.items()}
    for p, vs in new_sweep.items():
        sweep[p] = sweep.get(p, []) + [v for v in vs if v not in sweep.get(p, [])]
    grid["sweep"] = sweep
    runs = kept + list(new["runs"])
    return {**new, "grid": {**grid, "num_runs": len(runs)}, "runs": runs}


def read_experiment(workdir: str) -> dict:
    """``<workdir>/experiment.json`` as written by ``write_experiment``; {} when absent."""
    path = os.path.join(workdir, EXPERIMENT)
    return dict(read_json(path)) if os.path.exists(path) else {}


def write_tuning(workdir: str, record: Mapping) -> None:
    """``<workdir>/tuning.json``: the tuning record (``mtlx.tune.record``), atomically."""
    write_json(os.path.join(workdir, TUNING), record)


def read_tuning(workdir: str) -> dict | None:
    """The tuning record of ``workdir``; None when the experiment is not tuned (or it is unreadable)."""
    try:
        return dict(read_json(os.path.join(workdir, TUNING)))
    except (OSError, ValueError, TypeError):
        return None


def task_roles(summary: Mapping) -> dict:
    """{task: role} of a run, for the tasks its summary lists: ``tasks.<task>.role`` where the summary
    has it, else what its config's ``task_set.options`` made auxiliary (``mtlx.tasks.auxiliary_names``:
    summaries written before roles were recorded), else 'main'."""
    options = _dotted(summary.get("config") or {}, "task_set.options") or {}
    auxiliary = set(tasks_lib.auxiliary_names(options)) if isinstance(options, Mapping) else set()
    return {t: (info.get("role") if isinstance(info, Mapping) and info.get("role") in tasks_lib.ROLES
                else tasks_lib.AUXILIARY if t in auxiliary else tasks_lib.MAIN)
            for t, info in (summary.get("tasks") or {}).items()}


def joint_directions(summary: Mapping) -> dict:
    """{joint metric: higher_is_better} of a run (``JOINT_METRICS``; {} for a task set without joint metrics)."""
    got = summary.get(JOINT_METRICS)
    return {str(k): bool(v) for k, v in got.items()} if isinstance(got, Mapping) else {}


def is_search_run(run_id: str) -> bool:
    """A tuning search run (stage 1): it chose a configuration, it is not reported in the tables."""
    return SEARCH_MARK in str(run_id)


def _dotted(cfg: Any, field: str):
    cur = cfg
    for part in field.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _unfinished(run_dir: str, grid_entry: Mapping | None, sweep_fields) -> dict:
    """A run directory without a summary: labels from the grid list, else from its config."""
    if grid_entry is not None:
        s = {k: grid_entry.get(k) for k in ("architecture", "weighting", "seed")}
        s["sweep"] = dict(grid_entry.get("sweep") or {})
    else:
        cfg = read_config(run_dir)
        s = {"architecture": _dotted(cfg, "architecture.name"), "weighting": _dotted(cfg, "weighting.name"),
             "seed": cfg.get("seed"), "sweep": {f: _dotted(cfg, f) for f in sweep_fields}}
    s.update(status=INCOMPLETE, failure=_why_unfinished(run_dir))
    return s


def _why_unfinished(run_dir: str) -> str:
    note, claim = read_interrupted(run_dir), read_claim(run_dir)
    if claim is not None:
        return f"no summary.json (claimed by {claim.get('host')} pid {claim.get('pid')}: running, or killed)"
    if note is not None:
        return f"no summary.json (interrupted at step {note.get('step')}; relaunch to resume)"
    return "no summary.json (still running or killed)"


def load_runs(workdir: str) -> list[dict]:
    """Every run of ``workdir``: its summary plus ``run_id``, ``dir`` and ``workdir``.

    A directory counts as a run when it holds summary.json or config.json
    (searched recursively, not inside hidden folders or ``figures/``). A run
    without a summary (still running, or killed) comes back with ``status:
    "incomplete"``, and a run of experiment.json's ``runs`` list without a
    directory with ``status: "not started"``; their labels, seed and sweep
    come from that list (else from config.json), so that they are counted
    and listed but never averaged. Sorted by directory.
    """
    exp = read_experiment(workdir)
    sweep_fields = list(((exp.get("grid") or {}).get("sweep") or {}).keys())
    grid = {r["run_id"]: r for r in exp.get("runs") or []}
    runs = []
    for root, dirs, files in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != FIGURES)
        if os.path.abspath(root) == os.path.abspath(workdir):
            continue
        rid = os.path.basename(root)
        if SUMMARY in files:
            s = read_summary(root) or {"status": INCOMPLETE, "failure": "unreadable summary.json"}
        elif CONFIG in files:
            s = _unfinished(root, grid.get(rid), sweep_fields)
        else:
            continue
        dirs[:] = []  # a run dir is a leaf
        s.update(dir=root, workdir=workdir, run_id=s.get("run_id") or rid, sweep=s.get("sweep") or {})
        runs.append(s)
    seen = {r["run_id"] for r in runs}
    for rid, g in grid.items():
        if rid not in seen:
            runs.append({"status": NOT_STARTED, "run_id": rid, "architecture": g.get("architecture"),
                         "weighting": g.get("weighting"), "seed": g.get("seed"), "sweep": dict(g.get("sweep") or {}),
                         "failure": "no run directory", "dir": run_path(workdir, rid), "workdir": workdir})
    runs.sort(key=lambda r: r["dir"])
    return runs
