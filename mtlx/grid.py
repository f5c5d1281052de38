"""Experiments as grids of runs: the schema, validation (once), expansion and run ids.

An experiment file (``experiments/<name>.py``) has ``get_config(arg=None)``
returning a ConfigDict shaped like ``experiment_config()``:

  experiment    str: the name; the default workdir is ``results/<experiment>/``.
  run           a full run config (``run_config()``): the defaults every run of
                the grid starts from.
  architectures ({"name": ARCHITECTURES key, "options": {...}, "label": str,
                "overrides": {dotted run-config path: value}}, ...): "options",
                "label" and "overrides" are optional; the label defaults to
                the name and must be unique; "overrides" sets run fields for
                this entry only (e.g. its own backbone, to match parameter
                counts), applied before the sweep; "weightings" (labels)
                pairs the entry with those weightings only (e.g. the
                single-task baseline with equal), default all; "seeds" (a
                subset of config.seeds) gives the entry fewer seeds.
  weightings    ({"name": WEIGHTINGS key, "options": {...}, "label": str,
                "overrides": {...}}, ...), the same shape without "weightings".
  seeds         (int, ...): a tuple, so ``--config.seeds='(0,1)'`` works.
  seed_paths    (dotted run-config path, ...): fields set to the run's seed,
                e.g. ("task_set.options.seed",) so that every run draws its
                own data as well as its own init; () (default) = none.
  sweep         {dotted run-config path: [values]}, e.g.
                {"task_set.options.correlation": [1.0, 0.5]}; may be empty.
                Build it with ``dotted({...})`` (ConfigDict refuses dots in keys).
  paper         free-form numbers to print beside ours (read by the table
                code): {"metric_columns": [...], "rows": {label: {...}},
                "note": str, "task_mean": bool (a column of the mean over
                tasks, for a paper that reports one)}; may be empty.
  baseline      str: the architecture LABEL that delta_m compares against;
                "" (default) = the first entry whose name is
                ``mtlx.architectures.BASELINE``, or none when the grid has none.
  select        the test metrics the sweep's table and figures report: "final" (default; the
                last evaluation) or "best_validation" (the evaluation where the mean of the
                tasks' validation main metrics was best, i.e. model selection on validation).
                Written to experiment.json; ``launch.table`` / ``launch.plot`` use it unless
                given ``--select``. Not part of any run id (the runs record both).
  smoke         bool: True for the ``get_config("smoke")`` variant.
  parallel      how the runs execute, not what they compute (``mtlx.parallel.Execution``):
                runs_per_program (runs sharing one compiled program: seeds, data
                draws, learning rates, static weights, a weighting's float
                options; 1 = each alone, 0 = as many as share), steps_per_dispatch
                (0 = from the cadences), data_devices, run_devices. Not part of
                any run id: ``--config.parallel.runs_per_program=8`` resumes the
                same runs.
  tune          the tuning protocol (``mtlx.tune.tune_config``): a search on
                validation, then ``seeds`` as the final seeds; {} (default) = no
                tuning. An entry may add its own "tune" space.

The config takes ONE path: ``check_experiment`` validates the ConfigDict once
against the schema and returns plain, JSON-able data; ``expand`` turns it into
runs (sweep value combination x seed x architecture x weighting, in that
nesting order), each holding its run config as a plain dict (what
``config.json`` holds); overrides and sweep values are checked against the
schema's dict (the path exists, the value's type fits) without building a
ConfigDict; the runner makes one ConfigDict per run for training.
``validate`` builds every expanded run (task set, model, weighting, optimizer;
nothing compiled) before any directory is written. Every problem is a one-line
``ConfigError`` naming the field's dotted path, the bad value and what is valid.
The run-config schema and its value rules live in ``mtlx.schema`` (re-exported
here); names may be registry keys or ``module:attribute`` (``mtlx.plugins``).

A run's id is readable and stable:
``<arch label>-<weighting label>[-<sweep leaf><value>...]-s<seed>-<hash8>``
(sweep paths in sorted order, as ConfigDict keeps them) where hash8 is the
first 8 hex digits of the SHA-256 of the run config's canonical JSON, so any
changed setting gives a new id (and a new directory).
"""

from __future__ import annotations

import collections
import copy
import fnmatch
import hashlib
import itertools
import json
import os
import re
import sys
from typing import Mapping

import ml_collections

from mtlx import results
from mtlx.architectures import BASELINE
from mtlx.plugins import default_label, resolve
from mtlx.schema import (  # noqa: F401  (re-exported: the schema's public names stay importable from here)
    FREE, GRID_PATHS, ConfigError, OptionError, _did_you_mean, _jsonable, _plain, _set_path, check_cross,
    check_fields, check_override, check_run_config, run_config, schema)

EXPERIMENT_FIELDS = ("experiment", "run", "architectures", "weightings", "seeds", "seed_paths", "sweep",
                     "paper", "baseline", "select", "smoke", "parallel", "tune")
OPTIONAL_FIELDS = {"baseline": "", "select": "final", "seed_paths": (), "parallel": {},
                   "tune": {}}  # added after experiment files existed: an older file may lack them
ENTRY_KEYS = ("name", "options", "label", "overrides", "weightings", "tune",  # "tune": an entry's own search space
              "seeds")  # an entry's own subset of config.seeds (e.g. more seeds for the paper's methods)


class Experiment(dict):
    """A checked experiment (``check_experiment``'s output): plain, JSON-able data, checked once."""


def experiment_config() -> ml_collections.ConfigDict:
    """Every experiment field with its default; experiment files fill it in."""
    c = ml_collections.ConfigDict()
    c.experiment = ""
    c.run = run_config()
    c.architectures = ()
    c.weightings = ({"name": "equal", "options": {}},)
    c.seeds = (0,)
    c.sweep = dotted()
    c.paper = dotted()
    c.seed_paths = ()
    c.baseline = ""
    c.select = "final"
    c.smoke = False
    c.parallel = ml_collections.ConfigDict({"runs_per_program": 1, "steps_per_dispatch": 0, "data_devices": 1,
                                            "run_devices": 1})
    c.tune = dotted()  # {} = no tuning; mtlx.tune.tune_config(...)
    return c


def dotted(d: Mapping | None = None) -> ml_collections.ConfigDict:
    """A ConfigDict whose keys may contain dots (sweep paths, free-form paper numbers)."""
    return ml_collections.ConfigDict(dict(d or {}), allow_dotted_keys=True)


def smoke(config, steps: int, **task_set_options) -> None:
    """Shrink an experiment to seconds: ``steps`` steps, evaluation and checkpoints at
    half-way and the end, one seed, and the given task-set options (e.g. smaller splits)."""
    config.run.update({"steps": steps, "eval_every": steps // 2, "log_every": min(10, steps),
                       "checkpoint_every": steps // 2})
    config.run.task_set.options.update(task_set_options)
    config.seeds = (0,)


# --------------------------------------------------------------------------- checking an experiment


def _entry(kind: str, i: int, e, registry) -> dict:
    """One architecture/weighting entry, normalised: name, options, label, overrides (+ weightings)."""
    if isinstance(e, str):
        e = {"name": e}
    if not isinstance(e, Mapping):
        raise ConfigError(f"config.{kind}[{i}] must be a dict with keys {list(ENTRY_KEYS)}, got {e!r}")
    e = _plain(e)
    unknown = sorted(set(e) - set(ENTRY_KEYS) | ({"weightings"} & set(e) if kind == "weightings" else set()))
    if unknown:
        raise ConfigError(f"config.{kind}[{i}]: unknown key(s) {unknown}; valid keys {list(ENTRY_KEYS)}")
    name = e.get("name")
    _checked(f"config.{kind}[{i}].name", resolve, registry, name, kind[:-1])
    options, label, overrides = e.get("options") or {}, e.get("label") or default_label(name), e.get("overrides") or {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"config.{kind}[{i}].options ({name}) must be a dict, got {options!r}")
    _check_entry_options(f"config.{kind}[{i}].options", kind, name, dict(options))
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"config.{kind}[{i}] ({label}): overrides must be a dict {{dotted path: value}}")
    if not re.fullmatch(r"[A-Za-z0-9_.+]+", label):
        raise ConfigError(f"config.{kind}[{i}]: label {label!r} may hold only letters, digits and _ . +")
    entry = {"name": name, "options": dict(options), "label": label, "overrides": dict(overrides)}
    if e.get("tune"):  # checked by mtlx.tune.check_tune
        entry["tune"] = e["tune"]
    if e.get("seeds") is not None:  # checked against config.seeds by check_experiment
        entry["seeds"] = _check_seeds(e["seeds"])
    if kind == "architectures":  # optional: the weighting labels this architecture is paired with
        pair = e.get("weightings") or ()
        entry["weightings"] = [pair] if isinstance(pair, str) else list(pair)
    return entry


def _check_entry_options(where: str, kind: str, name: str, options: dict) -> None:
    """What an entry's options can be checked for without a task set or backbone (types, ranges, names)."""
    from mtlx.architectures import ARCHITECTURES
    from mtlx.weighting import get_weighting

    try:
        if kind == "architectures":
            resolve(ARCHITECTURES, name, "architecture").check_option_values(options)
        else:
            get_weighting(name, **options)
    except OptionError as e:
        raise ConfigError(str(e.within(where, f"{kind[:-1]} {name!r}"))) from None
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _entries(kind: str, entries, registry) -> list[dict]:
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f"config.{kind} must be a list of dicts like {{'name': ..., 'options': {{...}}}}, got {entries!r}")
    if not entries:
        raise ConfigError(f"config.{kind} is empty: the grid has no runs; give at least one of {sorted(registry)}")
    out = [_entry(kind, i, e, registry) for i, e in enumerate(entries)]
    labels = [e["label"] for e in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError(f"config.{kind}: label(s) {dup} appear more than once; give each entry a distinct 'label'")
    for e in out:
        for path, value in e["overrides"].items():
            _checked(f"config.{kind} {e['label']!r} overrides[{path!r}]", check_override, path, value)
    return out


def _checked(where: str, check, *args) -> None:
    """Run a schema check; its ValueError becomes a ConfigError that says where."""
    try:
        check(*args)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {e}") from None


def _fields_of(c) -> dict:
    """The experiment's top-level fields, plain; unknown and missing ones refused."""
    c = _plain(c)
    if not isinstance(c, Mapping):
        raise ConfigError(f"the experiment config must be a ConfigDict, got {type(c).__name__}")
    unknown = sorted(set(c) - set(EXPERIMENT_FIELDS))
    if unknown:
        raise ConfigError("unknown experiment field(s): " + ", ".join(f"config.{u}{_did_you_mean(u, EXPERIMENT_FIELDS)}"
                                                                      for u in unknown))
    c = {**OPTIONAL_FIELDS, **c}
    missing = [f for f in EXPERIMENT_FIELDS if f not in c]
    if missing:
        raise ConfigError(f"missing experiment field(s): {', '.join('config.' + m for m in missing)} "
                          f"(start from mtlx.grid.experiment_config())")
    name = c["experiment"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise ConfigError(f"config.experiment={name!r} must be a non-empty name of letters, digits and _ . + -")
    return c


def _check_run(run) -> dict:
    from mtlx.data import TASK_SETS, check_options

    if not isinstance(run, Mapping):
        raise ConfigError(f"config.run must be a run config (mtlx.grid.run_config()), got {run!r}")
    try:
        check_run_config(run)
    except (ValueError, TypeError) as e:  # a field's own message names it from the run down: name it from the top
        msg = str(e)
        raise ConfigError("config.run." + msg[len("config field "):] if msg.startswith("config field ")
                          else f"config.run: {msg}") from None
    ts, options = run["task_set"]["name"], _plain(run["task_set"]["options"])
    try:
        check_options(resolve(TASK_SETS, ts, "task_set"), ts, options)
    except OptionError as e:
        raise ConfigError(str(e.within("config.run.task_set.options"))) from None
    except ValueError as e:
        raise ConfigError(f"config.run.task_set: {e}") from None
    return _jsonable(run)


def _check_seeds(seeds) -> list:
    if isinstance(seeds, int) or not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"config.seeds must be a tuple of ints, got {seeds!r}")
    if not seeds:
        raise ConfigError("config.seeds is empty: the grid has no runs; give at least one seed")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ConfigError(f"config.seeds={tuple(seeds)} must be distinct ints >= 0")
    return list(seeds)


def _check_seed_paths(paths, sweep: Mapping) -> list:
    """Run-config paths that take the run's seed (e.g. a task set's data seed, so that each run draws its own data)."""
    if isinstance(paths, str) or not isinstance(paths, (list, tuple)):
        raise ConfigError(f"config.seed_paths must be a tuple of dotted run-config paths, got {paths!r}")
    for path in paths:
        _checked(f"config.seed_paths[{path!r}]", check_override, path, 0)
        if path in sweep:
            raise ConfigError(f"config.seed_paths[{path!r}] is also swept in config.sweep; set it in one place")
    return list(paths)


def _check_sweep(sweep) -> dict:
    sweep = sweep or {}
    if not isinstance(sweep, Mapping):
        raise ConfigError(f"config.sweep must be a dict {{dotted run-config path: [values]}}, got {sweep!r}")
    for path, values in sweep.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"config.sweep[{path!r}] must be a non-empty list of values, got {values!r}")
        for v in values:
            _checked(f"config.sweep[{path!r}]", check_override, path, v)
    return {k: list(v) for k, v in sweep.items()}


def _check_baseline(baseline, archs: list[dict]):
    """The architecture label delta_m compares against: the given one, else the first registry baseline."""
    labels = [a["label"] for a in archs]
    if baseline in ("", None):
        return next((a["label"] for a in archs if a["name"] == BASELINE), None)
    if baseline not in labels:
        raise ConfigError(f"config.baseline={baseline!r} is not an architecture label of the grid; choose one of {labels}")
    return baseline


def check_experiment(cfg) -> dict:
    """The experiment config as plain, normalised data (validated once); a ConfigError names any problem."""
    from mtlx.architectures import ARCHITECTURES
    from mtlx.weighting import WEIGHTINGS

    c = _fields_of(cfg)
    run = _check_run(c["run"])
    archs = _entries("architectures", c["architectures"], ARCHITECTURES)
    weightings = _entries("weightings", c["weightings"], WEIGHTINGS)
    wlabels = [w["label"] for w in weightings]
    for a in archs:
        bad = [x for x in a.get("weightings", []) if x not in wlabels]
        if bad:
            raise ConfigError(f"config.architectures ({a['label']}): weightings {bad} are not in config.weightings; "
                              f"choose from {wlabels}")
    for kind, entries in (("architectures", archs), ("weightings", weightings)):
        for en in entries:
            extra = sorted(set(en.get("seeds", ())) - set(_check_seeds(c["seeds"])))
            if extra:
                raise ConfigError(f"config.{kind} ({en['label']}): seeds {extra} are not in config.seeds "
                                  f"{_check_seeds(c['seeds'])}; an entry's seeds are a subset of them")
    paper, sweep = c["paper"] or {}, _check_sweep(c["sweep"])
    if not isinstance(paper, Mapping):
        raise ConfigError(f"config.paper must be a dict, got {paper!r}")
    from mtlx import tune  # the tuning block (and each entry's own space)
    tuned = tune.check_tune(c["tune"], archs, weightings, _check_seeds(c["seeds"]), sweep, c["seed_paths"] or ())
    return Experiment(_jsonable({
        "experiment": c["experiment"], "run": run, "architectures": archs, "weightings": weightings,
        "seeds": _check_seeds(c["seeds"]), "sweep": sweep, "seed_paths": _check_seed_paths(c["seed_paths"], sweep),
        "paper": paper,
        "baseline": _check_baseline(c["baseline"], archs), "select": _check_select(c["select"]),
        "smoke": bool(c["smoke"]),
        "parallel": _check_parallel(c["parallel"]), "tune": tuned}))


def _check_select(select) -> str:
    if select not in results.SELECT:
        raise ConfigError(f"config.select={select!r} is not valid; choose one of {sorted(results.SELECT)}")
    return select


def _check_parallel(given) -> dict:
    """The ``parallel`` section (``mtlx.parallel.Execution``) as a plain dict of its set fields."""
    from mtlx.parallel import Execution

    given = _plain(given) or {}
    if not isinstance(given, Mapping):
        raise ConfigError(f"config.parallel must be a dict, got {given!r}")
    try:
        Execution.of(given)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return dict(given)


# --------------------------------------------------------------------------- expansion and ids


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


def _run(e: dict, a: dict, w: dict, seed: int, sweep: dict) -> dict:
    """One run of the grid: its plain run config (what config.json holds), id and labels."""
    rc = copy.deepcopy(e["run"])
    rc["architecture"] = {"name": a["name"], "options": copy.deepcopy(a["options"])}
    rc["weighting"] = {"name": w["name"], "options": copy.deepcopy(w["options"])}
    rc["seed"] = seed
    for p in e["seed_paths"]:
        _set_path(rc, p, seed)
    for p, v in {**a["overrides"], **w["overrides"], **sweep}.items():
        _set_path(rc, p, copy.deepcopy(v))
    return {"run_id": run_id(a["label"], w["label"], seed, sweep, rc), "config": rc, "execution": e["parallel"],
            "experiment": e["experiment"], "architecture": a["label"], "architecture_name": a["name"],
            "weighting": w["label"], "weighting_name": w["name"], "seed": seed, "sweep": sweep}


def expand(e) -> list[dict]:
    """Every run of the grid as a plain, picklable dict: run_id, config, labels, seed, sweep.

    ``e``: a checked Experiment (the launcher checks once and passes it), or an
    experiment ConfigDict, checked here first."""
    if not isinstance(e, Experiment):
        e = check_experiment(e)
    paths = list(e["sweep"])
    runs = []
    for combo in itertools.product(*(e["sweep"][p] for p in paths)):
        sweep = dict(zip(paths, combo))
        for seed in e["seeds"]:
            for a in e["architectures"]:
                for w in e["weightings"]:
                    if a.get("weightings") and w["label"] not in a["weightings"]:  # e.g. the baseline x equal only
                        continue
                    if seed in a.get("seeds", (seed,)) and seed in w.get("seeds", (seed,)):
                        runs.append(_run(e, a, w, seed, sweep))
    ids = [r["run_id"] for r in runs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"the grid holds identical runs {dup[:3]}: remove the duplicate entries")
    for k, r in enumerate(runs):
        r["index"], r["total"] = k + 1, len(runs)
    return runs


def experiment_record(e: dict, runs: list[dict]) -> dict:
    """experiment.json's one shape (see mtlx.results)."""
    grid = {k: e[k] for k in ("architectures", "weightings", "seeds", "seed_paths", "sweep", "baseline")}
    if e.get("tune"):  # a tuned experiment's protocol (mtlx.tune)
        grid["tune"] = e["tune"]
    return {"name": e["experiment"], "experiment": e["experiment"], "smoke": e["smoke"], "paper": e["paper"],
            "select": e["select"],
            "grid": {**grid, "num_runs": len(runs)},
            "runs": [{k: r[k] for k in ("run_id", "architecture", "weighting", "seed", "sweep")} for r in runs],
            "run": e["run"]}


# --------------------------------------------------------------------------- pre-compile validation

_TASK_SETS: collections.OrderedDict = collections.OrderedDict()
_TASK_SET_CACHE_SIZE = 8


def task_set_for(run_cfg: Mapping):
    """The run's task set, built once per distinct task-set config in this process."""
    from mtlx.data import get_task_set

    ts_cfg = run_cfg["task_set"]
    key = json.dumps(ts_cfg, sort_keys=True)
    if key not in _TASK_SETS:
        _TASK_SETS[key] = get_task_set(ts_cfg["name"], **ts_cfg["options"])
        while len(_TASK_SETS) > _TASK_SET_CACHE_SIZE:
            _TASK_SETS.popitem(last=False)
    _TASK_SETS.move_to_end(key)
    return _TASK_SETS[key]


def train_config(run_cfg: Mapping) -> ml_collections.ConfigDict:
    """The one ConfigDict a run's training reads, made from its plain run config."""
    return ml_collections.ConfigDict(run_cfg)


def _without_seeds(run_cfg: Mapping, seed_paths) -> str:
    """The run config with its seed and the fields set to it (``seed_paths``) blanked: runs that differ
    only there build the same way (a data seed changes the draw, not what is built)."""
    c = copy.deepcopy(dict(run_cfg))
    for p in ("seed", *seed_paths):
        _set_path(c, p, None)
    return json.dumps(c, sort_keys=True)


def validate(runs: list[dict], seed_paths=()) -> None:
    """Build every run (task set, model, weighting, optimizer) without compiling -- once per config up
    to the seed (``seed_paths``: the fields set to it); the first problem raises."""
    from mtlx.train import build_run

    warned: set = set()
    seen: set = set()
    for r in runs:
        key = _without_seeds(r["config"], seed_paths)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_cross(r["config"])
            built = build_run(train_config(r["config"]), task_set_for(r["config"]))
        except Exception as e:  # registries raise ValueError; bad option types raise TypeError etc.
            msg = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            raise ConfigError(f"run {r['run_id']}: {msg}") from None
        _warn_nothing_shared(r, built, warned)


GRADIENT_NEEDS = ("jacobian", "gram", "representation")  # weightings that combine per-task gradients


def _warn_nothing_shared(r: dict, built, warned: set) -> None:
    """One line on stderr (once per architecture/weighting pair) when a gradient-based weighting meets an
    architecture without shared parameters (``mtlx.architectures.shared_mask``): nothing to combine."""
    key = (r["architecture"], r["weighting"])
    if built.weighting.needs not in GRADIENT_NEEDS or key in warned:
        return
    import jax
    import numpy as np

    from mtlx.architectures import shared_mask
    from mtlx.data import pipeline
    split = built.task_set.split("train")
    sample = pipeline.gather(split, np.arange(1))["inputs"]
    params = jax.eval_shape(built.model.init, jax.random.PRNGKey(0), sample)["params"]
    warned.add(key)
    if not any(jax.tree_util.tree_leaves(shared_mask(built.model, params))):
        print(f"warning: weighting {r['weighting']!r} combines per-task gradients of the shared parameters, "
              f"which architecture {r['architecture']!r} has none of; its weights act on task-specific "
              f"gradients only", file=sys.stderr)


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


def check_workdir(workdir: str, name: str) -> None:
    """Refuse a workdir that is a file (or lies under one), or holds another experiment's runs."""
    up = os.path.abspath(workdir)
    while not os.path.exists(up) and os.path.dirname(up) != up:
        up = os.path.dirname(up)
    if not os.path.isdir(up):
        raise ConfigError(f"--workdir={workdir}: {up} is a file, not a folder; pass a folder (created if absent)")
    if os.path.exists(os.path.join(workdir, results.EXPERIMENT)):
        try:
            other = results.read_experiment(workdir).get("name")
        except (OSError, ValueError, AttributeError, TypeError):
            raise ConfigError(f"workdir {workdir}: experiment.json is unreadable; pass another --workdir") from None
        if other != name:
            raise ConfigError(f"workdir {workdir} holds runs of experiment {other!r}, not {name!r}; "
                              f"pass another --workdir")
    elif os.path.isdir(workdir) and any(os.path.exists(os.path.join(workdir, d, results.CONFIG))
                                        for d in os.listdir(workdir)):
        raise ConfigError(f"workdir {workdir} holds run directories but no experiment.json; pass another --workdir")


def default_workdir(name: str) -> str:
    return os.path.join("results", name)


def prepare(cfg, workdir: str | None = None, only=None) -> tuple[dict, list[dict], list[dict], str]:
    """Check (once), expand and validate; returns (experiment, all runs, selected runs, workdir). Writes nothing."""
    e = check_experiment(cfg)
    runs = expand(e)
    chosen = select(runs, only)
    workdir = workdir or default_workdir(e["experiment"])
    check_workdir(workdir, e["experiment"])
    validate(chosen, e["seed_paths"])
    return e, runs, chosen, workdir
