"""Experiments: a grid of runs, validated up front, executed locally or on Slurm.

An experiment file (``experiments/<name>.py``) has ``get_config(arg=None)``
returning a ConfigDict shaped like ``experiment_config()``:

  experiment    str: the name; the default workdir is ``results/<experiment>/``.
  run           a full run config (``mtlx.config.run_config()``): the defaults
                every run of the grid starts from.
  architectures ({"name": ARCHITECTURES key, "options": {...}, "label": str,
                "overrides": {dotted run-config path: value}}, ...): "options",
                "label" and "overrides" are optional; the label defaults to
                the name and must be unique; "overrides" sets run fields for
                this entry only (e.g. its own backbone, to match parameter
                counts), applied before the sweep; "weightings" (labels)
                pairs the entry with those weightings only (e.g. single_task
                with equal), default all.
  weightings    ({"name": WEIGHTINGS key, "options": {...}, "label": str,
                "overrides": {...}}, ...), the same shape without "weightings".
  seeds         (int, ...): a tuple, so ``--config.seeds='(0,1)'`` works.
  sweep         {dotted run-config path: [values]}, e.g.
                {"task_set.options.correlation": [1.0, 0.5]}; may be empty.
                Build it with ``dotted({...})`` (ConfigDict refuses dots in keys).
  paper         free-form numbers to print beside ours (read by the table
                code): {"metric_columns": [...], "rows": {label: {...}},
                "note": str}; may be empty. ``dotted({...})`` as well.
  smoke         bool: True for the ``get_config("smoke")`` variant.

``expand`` turns it into runs: sweep value combination x seed x architecture x
weighting, in that nesting order. A run's id is readable and stable:
``<arch label>-<weighting label>[-<sweep leaf><value>...]-s<seed>-<hash8>``
(sweep paths in sorted order, as ConfigDict keeps them)
where hash8 is the first 8 hex digits of the SHA-256 of the run config's
canonical JSON, so any changed setting gives a new id (and a new directory).

A run directory ``<workdir>/<run_id>/`` holds ``config.json`` (the run config),
``metrics.jsonl`` (curves, written by ``train_and_evaluate``), ``checkpoints/``
and, written LAST and atomically, ``summary.json``. ``<workdir>/experiment.json``
holds the experiment config, its ``paper`` numbers and the grid's run list.

``launch`` validates EVERY expanded run (``mtlx.train.build_run``: task set,
model, weighting, optimizer; nothing compiled) before any directory is
written; every problem is a one-line ``ConfigError``.
"""

from __future__ import annotations

import collections
import difflib
import fnmatch
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
import time
import traceback
from typing import Any, Callable, Mapping

import ml_collections

from mtlx import results

EXPERIMENT_FIELDS = ("experiment", "run", "architectures", "weightings", "seeds", "sweep", "paper", "smoke")
ENTRY_KEYS = ("name", "options", "label", "overrides", "weightings")
GRID_PATHS = ("architecture", "weighting", "seed")  # set by the grid itself, not sweepable


class ConfigError(ValueError):
    """A bad experiment config: one line, raised before any training."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def smoke(config, steps: int, **task_set_options) -> None:
    """Shrink an experiment to seconds: ``steps`` steps, evaluation and checkpoints at
    half-way and the end, one seed, and the given task-set options (e.g. smaller splits)."""
    config.run.update({"steps": steps, "eval_every": steps // 2, "log_every": min(10, steps),
                       "checkpoint_every": steps // 2})
    config.run.task_set.options.update(task_set_options)
    config.seeds = (0,)


def dotted(d: Mapping | None = None) -> ml_collections.ConfigDict:
    """A ConfigDict whose keys may contain dots (sweep paths, free-form paper numbers)."""
    return ml_collections.ConfigDict(dict(d or {}), allow_dotted_keys=True)


def experiment_config() -> ml_collections.ConfigDict:
    """Every experiment field with its default; experiment files fill it in."""
    from mtlx.config import run_config

    c = ml_collections.ConfigDict()
    c.experiment = ""
    c.run = run_config()
    c.architectures = ()
    c.weightings = ({"name": "equal", "options": {}},)
    c.seeds = (0,)
    c.sweep = dotted()
    c.paper = dotted()
    c.smoke = False
    return c


# --------------------------------------------------------------------------- checking and expanding


def _plain(x):
    """ConfigDicts (also ones with dotted keys) to plain dicts, tuples kept."""
    if isinstance(x, ml_collections.ConfigDict):
        x = x.to_dict()
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _jsonable(x):
    try:
        return json.loads(json.dumps(_plain(x)))
    except (TypeError, ValueError) as e:  # e.g. a numpy scalar or an object in the config
        raise ConfigError(f"the config holds a value that is not plain data (str, number, bool, list, dict): {e}") from None


def _did_you_mean(name, choices) -> str:
    m = difflib.get_close_matches(name, list(choices), 1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _entries(kind: str, entries, registry) -> list[dict]:
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"config.{kind} must be a list of dicts like {{'name': ..., 'options': {{...}}}}, got {entries!r}")
    if not entries:
        raise ConfigError(f"config.{kind} is empty: the grid has no runs; give at least one of {sorted(registry)}")
    out = []
    for i, e in enumerate(entries):
        if isinstance(e, str):
            e = {"name": e}
        if not isinstance(e, Mapping):
            raise ConfigError(f"config.{kind}[{i}] must be a dict with keys {list(ENTRY_KEYS)}, got {e!r}")
        e = _plain(e)
        unknown = sorted(set(e) - set(ENTRY_KEYS) | ({"weightings"} & set(e) if kind == "weightings" else set()))
        if unknown:
            raise ConfigError(f"config.{kind}[{i}]: unknown key(s) {unknown}; valid keys {list(ENTRY_KEYS)}")
        name = e.get("name")
        if name not in registry:
            raise ConfigError(f"config.{kind}[{i}]: {kind[:-1]}={name!r} is not valid{_did_you_mean(str(name), registry)}; "
                              f"choose one of {sorted(registry)}")
        options = e.get("options") or {}
        if not isinstance(options, Mapping):
            raise ConfigError(f"config.{kind}[{i}] ({name}): options must be a dict, got {options!r}")
        label = e.get("label") or name
        overrides = e.get("overrides") or {}
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"config.{kind}[{i}] ({label}): overrides must be a dict {{dotted path: value}}")
        if not re.fullmatch(r"[A-Za-z0-9_.+]+", label):
            raise ConfigError(f"config.{kind}[{i}]: label {label!r} may hold only letters, digits and _ . +")
        entry = {"name": name, "options": dict(options), "label": label, "overrides": dict(overrides)}
        if kind == "architectures":  # optional: the weighting labels this architecture is paired with
            pair = e.get("weightings") or ()
            entry["weightings"] = [pair] if isinstance(pair, str) else list(pair)
        out.append(entry)
    labels = [e["label"] for e in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"config.{kind}: label(s) {dup} appear more than once; give each entry a distinct 'label'")
    return out


def check_experiment(cfg) -> dict:
    """The experiment config as plain, normalised data; a ConfigError names any problem."""
    from mtlx.architectures import ARCHITECTURES
    from mtlx.config import check_run_config
    from mtlx.data import TASK_SETS
    from mtlx.weighting import WEIGHTINGS

    c = _plain(cfg)
    if not isinstance(c, Mapping):
        raise ConfigError(f"the experiment config must be a ConfigDict, got {type(cfg).__name__}")
    unknown = sorted(set(c) - set(EXPERIMENT_FIELDS))
    if unknown:
        raise ConfigError("unknown experiment field(s): " + ", ".join(f"config.{u}{_did_you_mean(u, EXPERIMENT_FIELDS)}"
                                                                      for u in unknown))
    missing = [f for f in EXPERIMENT_FIELDS if f not in c]
    if missing:
        raise ConfigError(f"missing experiment field(s): {', '.join('config.' + m for m in missing)} "
                          f"(start from mtlx.experiment.experiment_config())")
    name = c["experiment"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ConfigError(f"config.experiment={name!r} must be a non-empty name of letters, digits and _ . + -")
    if not isinstance(c["run"], Mapping):
        raise ConfigError(f"config.run must be a run config (mtlx.config.run_config()), got {c['run']!r}")
    try:
        check_run_config(ml_collections.ConfigDict(c["run"]))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"config.run: {e}") from None
    if c["run"]["task_set"]["name"] not in TASK_SETS:
        ts = c["run"]["task_set"]["name"]
        raise ConfigError(f"config.run.task_set.name={ts!r} is not valid{_did_you_mean(str(ts), TASK_SETS)}; "
                          f"choose one of {sorted(TASK_SETS)}")
    archs = _entries("architectures", c["architectures"], ARCHITECTURES)
    weightings = _entries("weightings", c["weightings"], WEIGHTINGS)
    wlabels = [w["label"] for w in weightings]
    for a in archs:
        bad = [x for x in a.get("weightings", []) if x not in wlabels]
        if bad:
            raise ConfigError(f"config.architectures ({a['label']}): weightings {bad} are not in config.weightings; "
                              f"choose from {wlabels}")
    seeds = c["seeds"]
    if isinstance(seeds, int) or not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"config.seeds must be a tuple of ints, got {seeds!r}")
    if not seeds:
        raise ConfigError("config.seeds is empty: the grid has no runs; give at least one seed")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"config.seeds={tuple(seeds)} must be distinct ints")
    sweep = c["sweep"] or {}
    if not isinstance(sweep, Mapping):
        raise ConfigError(f"config.sweep must be a dict {{dotted run-config path: [values]}}, got {sweep!r}")
    for path, values in sweep.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"config.sweep[{path!r}] must be a non-empty list of values, got {values!r}")
        _check_path(c["run"], f"config.sweep[{path!r}]", path, values[0])
    for kind, entries in (("architectures", archs), ("weightings", weightings)):
        for e in entries:
            for path, value in e["overrides"].items():
                _check_path(c["run"], f"config.{kind} {e['label']!r} overrides[{path!r}]", path, value)
    paper = c["paper"] or {}
    if not isinstance(paper, Mapping):
        raise ConfigError(f"config.paper must be a dict, got {paper!r}")
    return {"experiment": name, "run": c["run"], "architectures": archs, "weightings": weightings,
            "seeds": list(seeds), "sweep": {k: list(v) for k, v in sweep.items()}, "paper": paper,
            "smoke": bool(c["smoke"])}


def _check_path(run: dict, where: str, path: str, value) -> None:
    from mtlx.config import check_run_config

    if not isinstance(path, str) or path.split(".")[0] in GRID_PATHS:
        raise ConfigError(f"{where}: {path!r} is set by the grid; use config.architectures, config.weightings "
                          f"or config.seeds instead")
    try:
        check_run_config(ml_collections.ConfigDict(_set_path(json.loads(json.dumps(run)), path, value)))
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _set_path(d: dict, path: str, value) -> dict:
    keys = path.split(".")
    node = d
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value
    return d


def _fmt(v) -> str:
    s = _fmt_full(v)
    return s if len(s) <= 24 else hashlib.sha256(s.encode()).hexdigest()[:6]  # e.g. a swept backbone


def _fmt_full(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt_full(x) for x in v)
    if isinstance(v, Mapping):
        return "_".join(f"{k}{_fmt_full(x)}" for k, x in v.items())
    return re.sub(r"[^A-Za-z0-9_.+]", "_", str(v))


def config_hash(run_cfg: Mapping) -> str:
    """First 8 hex digits of SHA-256 over the run config's canonical JSON."""
    blob = json.dumps(_jsonable(run_cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def run_id(label: str, weighting: str, seed: int, sweep: Mapping, run_cfg: Mapping) -> str:
    parts = [label, weighting] + [f"{path.split('.')[-1]}{_fmt(v)}" for path, v in sweep.items()]
    return "-".join(parts + [f"s{seed}", config_hash(run_cfg)])


def expand(cfg) -> list[dict]:
    """Every run of the grid as a plain dict (picklable): run_id, config, labels, seed, sweep."""
    e = check_experiment(cfg)  # idempotent: also accepts its own output
    paths = list(e["sweep"])
    combos = list(itertools.product(*(e["sweep"][p] for p in paths)))
    runs = []
    for combo in combos:
        sweep = dict(zip(paths, combo))
        for seed in e["seeds"]:
            for a in e["architectures"]:
                for w in e["weightings"]:
                    if a.get("weightings") and w["label"] not in a["weightings"]:
                        continue  # e.g. single_task is run with one weighting only
                    rc = json.loads(json.dumps(e["run"]))
                    rc["architecture"] = {"name": a["name"], "options": a["options"]}
                    rc["weighting"] = {"name": w["name"], "options": w["options"]}
                    rc["seed"] = seed
                    for p, v in {**a["overrides"], **w["overrides"], **sweep}.items():
                        _set_path(rc, p, v)
                    rc = _jsonable(rc)
                    runs.append({"run_id": run_id(a["label"], w["label"], seed, sweep, rc), "config": rc,
                                 "experiment": e["experiment"], "architecture": a["label"],
                                 "architecture_name": a["name"], "weighting": w["label"], "weighting_name": w["name"],
                                 "seed": seed, "sweep": sweep})
    ids = [r["run_id"] for r in runs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"the grid holds identical runs {dup[:3]}: remove the duplicate entries")
    for k, r in enumerate(runs):
        r["index"], r["total"] = k + 1, len(runs)
    return runs


# --------------------------------------------------------------------------- task-set cache and validation

_TASK_SETS: collections.OrderedDict = collections.OrderedDict()
_TASK_SET_CACHE_SIZE = 8


def task_set_for(run_cfg: Mapping):
    """The run's task set, built once per distinct task-set config in this process."""
    from mtlx.data import get_task_set

    ts_cfg = _jsonable(run_cfg["task_set"])
    key = json.dumps(ts_cfg, sort_keys=True)
    if key not in _TASK_SETS:
        _TASK_SETS[key] = get_task_set(ts_cfg["name"], **ts_cfg["options"])
        while len(_TASK_SETS) > _TASK_SET_CACHE_SIZE:
            _TASK_SETS.popitem(last=False)
    _TASK_SETS.move_to_end(key)
    return _TASK_SETS[key]


def validate(runs: list[dict]) -> None:
    """Build every run (task set, model, weighting, optimizer) without compiling; the first problem raises."""
    from mtlx.train import build_run

    for r in runs:
        try:
            cfg = ml_collections.ConfigDict(r["config"])
            build_run(cfg, task_set_for(r["config"]))
        except Exception as e:  # registries raise ValueError; bad option types raise TypeError etc.
            msg = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            raise ConfigError(f"run {r['run_id']}: {msg}") from None


def check_workdir(workdir: str, name: str) -> None:
    """Refuse a workdir that holds another experiment's runs."""
    path = os.path.join(workdir, "experiment.json")
    if os.path.exists(path):
        try:
            other = results.read_json(path).get("name")
        except (OSError, ValueError, AttributeError):
            raise ConfigError(f"workdir {workdir}: experiment.json is unreadable; pass another --workdir") from None
        if other != name:
            raise ConfigError(f"workdir {workdir} holds runs of experiment {other!r}, not {name!r}; "
                              f"pass another --workdir")
    elif os.path.isdir(workdir) and any(os.path.exists(os.path.join(workdir, d, "config.json"))
                                        for d in os.listdir(workdir)):
        raise ConfigError(f"workdir {workdir} holds run directories but no experiment.json; pass another --workdir")


def default_workdir(name: str) -> str:
    return os.path.join("results", name)


# --------------------------------------------------------------------------- one run


def read_summary(run_dir: str):
    path = os.path.join(run_dir, "summary.json")
    if not os.path.exists(path):
        return None
    try:
        return results.read_json(path)
    except (OSError, ValueError):
        return None


def needs_running(run_dir: str, rerun_failed: bool) -> bool:
    s = read_summary(run_dir)
    if s is None:
        return True
    return s.get("status") == "failed" and rerun_failed


def _tasks_info(task_set) -> dict:
    return {t.name: {"main_metric": t.main_metric, "higher_is_better": {m: t.higher_is_better(m) for m in t.metrics}}
            for t in task_set.tasks}


def _checkpoint_step(run_dir: str):
    ckpt = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ckpt) or not os.listdir(ckpt):
        return None
    from mtlx import checkpoint

    return checkpoint.latest_step(checkpoint.manager(ckpt))


def _line(run: dict, summary: dict) -> str:
    head = f"[{run.get('index', '?')}/{run.get('total', '?')}] {run['run_id']}"
    if summary["status"] != "done":
        f = summary["failure"]
        return f"{head} FAILED at step {f['step']} (task {f['task']}): {f['message']}"
    parts = []
    for t, info in summary["tasks"].items():
        m = (summary.get("metrics") or {}).get(t, {}).get(info["main_metric"])
        parts.append(f"{t} {info['main_metric']} {m:.4g}" if isinstance(m, (int, float)) else f"{t} -")
    return f"{head} done in {summary['wall_time_s']:.1f}s: " + ", ".join(parts)


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


def run_one(run: dict, workdir: str, rerun_failed: bool = False, show_progress: bool = True,
            position: int | None = None, compilation_cache: str | None = None) -> dict:
    """Train one run of the grid into ``<workdir>/<run_id>/``; returns its summary.

    A done run (or a failed one, unless ``rerun_failed``) is not redone; an
    interrupted one resumes from its last checkpoint. A NaN/inf loss marks the
    run failed with the step and task; any other exception marks it failed
    with the message (traceback in ``error.txt``) -- the sweep goes on.
    """
    from mtlx import train

    use_compilation_cache(compilation_cache)
    run_dir = os.path.join(workdir, run["run_id"])
    old = read_summary(run_dir)
    if old is not None and not (old.get("status") == "failed" and rerun_failed):
        return old
    if old is not None:  # rerun a failed run from scratch: its checkpoint may hold the NaN
        for p in ("summary.json", "metrics.jsonl", "error.txt"):
            if os.path.exists(os.path.join(run_dir, p)):
                os.remove(os.path.join(run_dir, p))
        shutil.rmtree(os.path.join(run_dir, "checkpoints"), ignore_errors=True)
    os.makedirs(run_dir, exist_ok=True)
    results.write_json(os.path.join(run_dir, "config.json"), run["config"])
    cfg = ml_collections.ConfigDict(run["config"])
    meta = {"run_id": run["run_id"], "experiment": run["experiment"], "architecture": run["architecture"],
            "architecture_name": run["architecture_name"], "weighting": run["weighting"],
            "weighting_name": run["weighting_name"], "seed": run["seed"], "sweep": run["sweep"],
            "task_set": cfg.task_set.name, "tasks": {}, "resumed_from_step": None, "config": run["config"],
            "host": socket.gethostname()}

    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc=f"{run['run_id']} ({run.get('index', '?')}/{run.get('total', '?')})",
                   unit="step", position=position, leave=position is None, dynamic_ncols=True, file=sys.stderr,
                   smoothing=0.1)

    def progress(step, losses):
        if bar is None:
            return
        if bar.n == 0 and step > cfg.log_every:  # first report of a resumed run: no fake speed-up
            bar.n = bar.last_print_n = bar.initial = step - cfg.log_every
        bar.update(step - bar.n)
        bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)

    t0 = time.time()
    try:
        task_set = task_set_for(run["config"])
        meta.update(task_set=task_set.name, tasks=_tasks_info(task_set), resumed_from_step=_checkpoint_step(run_dir))
        out = train.train_and_evaluate(cfg, run_dir, task_set=task_set, progress=progress)
    except train.NonFiniteLoss as e:
        out = {"status": "failed", "steps": e.step, "metrics": None, "wall_time_s": time.time() - t0,
               "failure": {"step": e.step, "task": e.task, "message": str(e)}}
    except Exception as e:  # a bug, missing data, a resource error: record it, go on with the sweep
        with open(os.path.join(run_dir, "error.txt"), "w") as f:
            f.write(traceback.format_exc())
        out = {"status": "failed", "steps": None, "metrics": None, "wall_time_s": time.time() - t0,
               "failure": {"step": None, "task": None, "message": f"{type(e).__name__}: {e}".splitlines()[0]}}
    finally:
        if bar is not None:
            bar.close()
    summary = {**out, **meta}
    results.write_json(os.path.join(run_dir, "summary.json"), summary)  # LAST: marks the run finished
    if bar is None:
        print(_line(run, summary), file=sys.stderr)
    else:
        _tqdm_write(_line(run, summary))
    return summary


def _tqdm_write(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


def run_many(runs: list[dict], workdir: str, rerun_failed: bool = False, show_progress: bool = True,
             compilation_cache: str | None = None) -> list[dict]:
    """Runs one after the other (a Slurm job's body)."""
    return [run_one(r, workdir, rerun_failed, show_progress, None, compilation_cache) for r in runs]


# --------------------------------------------------------------------------- the launcher


def select(runs: list[dict], only) -> list[dict]:
    """Runs whose id (or architecture label) matches one of the ``only`` glob patterns."""
    if not only:
        return runs
    pats = [p for item in only for p in str(item).split(",") if p]
    picked = [r for r in runs if any(fnmatch.fnmatchcase(r["run_id"], p) or fnmatch.fnmatchcase(r["architecture"], p)
                                     for p in pats)]
    if not picked:
        raise ConfigError(f"--only={','.join(pats)} matches none of the {len(runs)} runs (e.g. {runs[0]['run_id']})")
    return picked


def prepare(cfg, workdir: str | None = None, only=None) -> tuple[dict, list[dict], list[dict], str]:
    """Check, expand and validate; returns (experiment, all runs, selected runs, workdir). Writes nothing."""
    e = check_experiment(cfg)
    runs = expand(e)
    chosen = select(runs, only)
    workdir = workdir or default_workdir(e["experiment"])
    check_workdir(workdir, e["experiment"])
    validate(chosen)
    return e, runs, chosen, workdir


def write_experiment_json(e: dict, runs: list[dict], workdir: str) -> None:
    results.write_json(os.path.join(workdir, "experiment.json"), {
        "name": e["experiment"], "experiment": e["experiment"], "smoke": e["smoke"], "paper": e["paper"],
        "grid": {"architectures": e["architectures"], "weightings": e["weightings"], "seeds": e["seeds"],
                 "sweep": e["sweep"], "num_runs": len(runs)},
        "runs": [{k: r[k] for k in ("run_id", "architecture", "weighting", "seed", "sweep")} for r in runs],
        "run": e["run"]})


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
    if executor not in ("local", "slurm"):
        raise ConfigError(f"--executor={executor!r} is not valid; choose 'local' or 'slurm'")
    if parallel < 1 or runs_per_job < 1:
        raise ConfigError(f"--parallel={parallel} and --runs_per_job={runs_per_job} must be >= 1")
    e, runs, chosen, workdir = prepare(cfg, workdir, only)
    workdir = os.path.abspath(workdir)
    todo = [r for r in chosen if needs_running(os.path.join(workdir, r["run_id"]), rerun_failed)]
    log(f"experiment {e['experiment']}: {len(runs)} runs in the grid, {len(chosen)} selected, {len(todo)} to run "
        f"({len(chosen) - len(todo)} already finished) -> {workdir}")
    out = {"workdir": workdir, "runs": runs, "summaries": {}, "jobs": []}
    if dry_run:
        for r in chosen:
            log(f"  {r['run_id']}{'' if r in todo else '  (finished)'}")
        return out
    write_experiment_json(e, runs, workdir)
    if executor == "slurm":
        out["jobs"] = _submit_slurm(todo, workdir, rerun_failed, dict(slurm or {}), runs_per_job, e["experiment"],
                                    compilation_cache, show_progress, log)
        if wait:
            for job in out["jobs"]:
                job.result()
    elif parallel == 1 or len(todo) <= 1:
        for r in todo:
            run_one(r, workdir, rerun_failed, show_progress, None, compilation_cache)
    else:
        import concurrent.futures as cf
        import multiprocessing

        with cf.ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, r, workdir, rerun_failed, show_progress, k % parallel, compilation_cache)
                       for k, r in enumerate(todo)]
            for f in cf.as_completed(futures):
                f.result()
    for r in chosen:
        s = read_summary(os.path.join(workdir, r["run_id"]))
        if s is not None:
            out["summaries"][r["run_id"]] = s
    return out


def _submit_slurm(todo, workdir, rerun_failed, slurm, runs_per_job, name, compilation_cache, show_progress, log):
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


def summarise(out: dict) -> str:
    """One closing line: done / failed counts and where to look."""
    ss = out["summaries"].values()
    done = sum(s.get("status") == "done" for s in ss)
    failed = [s["run_id"] for s in ss if s.get("status") != "done"]
    msg = f"{done} done, {len(failed)} failed, {len(out['runs'])} in the grid; results in {out['workdir']}"
    if failed:
        msg += f"; failed: {', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}"
    return msg
