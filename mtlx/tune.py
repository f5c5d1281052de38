"""The tuning protocol: search on the validation split, then the selected configuration with fresh seeds on test.

An experiment tunes when ``config.tune`` is set (``tune_config(...)``; ``{}``,
the default, = no tuning)::

  space         {dotted run-config path: spec}: a spec is a list of values,
                {"uniform": [lo, hi]}, {"log_uniform": [lo, hi]} or
                {"int_uniform": [lo, hi]} (integers, both ends included),
                e.g. {"optimizer.learning_rate": {"log_uniform": [1e-4, 1e-2]},
                "optimizer.weight_decay": [0.0, 1e-4]}. An architecture or
                weighting entry may carry its own ``"tune"`` space, merged over
                this one for that entry's rows; there ``architecture.options.X``
                (or ``weighting.options.X``: CAGrad's c, static weights) names
                the entry's own options.
  search        "grid" (every combination of the value lists) or "random"
                (``budget`` configurations drawn with ``seed``).
  budget        configurations per row (architecture x weighting x sweep
                value); random: required, the same for every row; grid: 0 =
                all, else the grid must not be larger (refused otherwise).
  seed          the random search's sampling seed.
  search_seeds  (int, ...): the training seeds of every search run; disjoint
                from ``config.seeds``, which are the FINAL seeds (refused
                otherwise): the reported numbers never reuse a run that chose
                the configuration.
  select_on     "validation": each search run's final validation metrics
                (summary.json's ``validation_metrics``); test metrics are
                never read.

Stage 1 (search): per row, every candidate configuration x ``search_seeds``,
as ordinary runs in the workdir whose ids hold ``results.SEARCH_MARK`` (so the
table never shows or pools them). Selection: per row, the candidate with the
best mean validation score over its search seeds (ties: the first; a failed
run makes its candidate's score -inf): one task -> the main metric signed
so that higher is better; several tasks and a baseline row with search runs
at that sweep value -> Δm% (Maninis et al. 2019,
``mtlx.report.aggregate.delta_m``) against the baseline row's mean
validation metrics over all its candidates (a fixed reference for every
candidate, the baseline's own included); otherwise the mean over tasks of
the signed main metric. The record (every candidate, its
validation scores, the winner) goes to ``<workdir>/tuning.json``
(``results.write_tuning``). Stage 2: the grid's runs (``config.seeds``) with
each row's selected values: ordinary runs, reported as usual. A relaunch
skips the finished search runs (a failed one is not redone, even with
``rerun_failed``: a diverging configuration is an outcome of the search);
stage 2 starts only when every search run has a summary (else the launcher
says which are missing).

Random search draws each path from its own stream, seeded by (``seed``,
path), so candidate k holds draw k of a shared path in every row (the rows
are compared on the same configurations) whatever the other paths are; a
draw that repeats an earlier candidate exactly (possible with value lists,
and with rounding) is skipped, which shifts the later ones of that row only.
Continuous draws are rounded to ``SIGNIFICANT`` significant digits.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import zlib
from typing import Callable, Mapping, Sequence

import numpy as np

from mtlx import grid, results, tasks
from mtlx.schema import ConfigError, _did_you_mean, _plain, _set_path, check_cross, check_override, is_int, is_number

SEARCHES = ("grid", "random")
SELECT_ON = ("validation",)
RANGES = ("uniform", "log_uniform", "int_uniform")
FIELDS = {"space": {}, "search": "grid", "budget": 0, "seed": 0, "search_seeds": (), "select_on": "validation"}
SIGNIFICANT = 3
MAX_DRAWS = 1000  # random search: draws per asked configuration before giving up on distinct ones
DELTA_M, SIGNED_MAIN = "delta_m", "signed_main"  # the validation score of a multi-task row / otherwise


def tune_config(space: Mapping, **fields):
    """A ``config.tune`` block with every field (``FIELDS``' defaults for those not given)."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise ConfigError(f"tune_config: unknown field(s) {unknown}; valid fields {sorted(FIELDS)}")
    return grid.dotted({**FIELDS, **fields, "space": grid.dotted(space)})


# --------------------------------------------------------------------------- checking the block


def _num_pair(where: str, kind: str, bounds) -> list:
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2 or not all(is_number(b) for b in bounds):
        raise ConfigError(f"{where}={{{kind!r}: {bounds!r}}} must be a pair of numbers [lo, hi]")
    lo, hi = bounds
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"{where}={{{kind!r}: {list(bounds)}}} needs finite lo < hi")
    if kind == "log_uniform" and lo <= 0:
        raise ConfigError(f"{where}={{'log_uniform': {list(bounds)}}} needs lo > 0")
    if kind == "int_uniform" and not (is_int(lo) and is_int(hi)):
        raise ConfigError(f"{where}={{'int_uniform': {list(bounds)}}} needs int bounds")
    return [lo, hi]


def _spec(where: str, spec) -> dict:
    """A space entry, normalised: {"values": [...]} or {range kind: [lo, hi]}."""
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{where} is an empty list; give at least one value")
        values = [_plain(v) for v in spec]
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ConfigError(f"{where}={values!r} lists a value twice")
        return {"values": values}
    if isinstance(spec, Mapping) and len(spec) == 1 and next(iter(spec)) in RANGES:
        kind = next(iter(spec))
        return {kind: _num_pair(where, kind, _plain(spec[kind]))}
    raise ConfigError(f"{where}={_plain(spec)!r} must be a list of values or one of "
                      f"{{{', '.join(repr(k) + ': [lo, hi]' for k in RANGES)}}}")


def spec_values(spec: Mapping) -> list:
    """The values to check a spec with: its list, or its range's ends."""
    return list(spec["values"]) if "values" in spec else list(next(iter(spec.values())))


def _check_path_value(where: str, path: str, value, entry: tuple | None) -> None:
    """One value of a tuned path: the run-config schema's rule, or (an entry's own options) its registry's check."""
    head = path.split(".")[0]
    if head in ("architecture", "weighting"):
        kind, e = entry if entry is not None else (None, None)
        if kind != head + "s" or not path.startswith(f"{head}.options.") or path.count(".") != 2:
            raise ConfigError(f"{where}: {path!r} is an entry's option: tune it in that {head} entry's own "
                              f"'tune' dict as '{head}.options.<option>'")
        grid._check_entry_options(where, kind, e["name"], {**e["options"], path.split(".")[2]: value})
        return
    try:
        check_override(path, value)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None


def _space(where: str, space, entry: tuple | None = None) -> dict:
    """A search space {path: spec}, every path and value checked; sorted by path."""
    space = _plain(space) or {}
    if not isinstance(space, Mapping):
        raise ConfigError(f"{where} must be a dict {{dotted run-config path: [values] or {{range: [lo, hi]}}}}, "
                          f"got {space!r}")
    out = {}
    for path in sorted(space):
        spec = _spec(f"{where}[{path!r}]", space[path])
        for v in spec_values(spec):
            _check_path_value(f"{where}[{path!r}]", path, v, entry)
        out[path] = spec
    return out


def _fields(t) -> dict:
    t = _plain(t) or {}
    if not isinstance(t, Mapping):
        raise ConfigError(f"config.tune must be a dict (mtlx.tune.tune_config(...)), got {t!r}")
    unknown = sorted(set(t) - set(FIELDS))
    if unknown:
        raise ConfigError("unknown config.tune field(s): " + ", ".join(
            f"config.tune.{u}{_did_you_mean(u, FIELDS)}" for u in unknown) + f"; valid fields {list(FIELDS)}")
    t = {**FIELDS, **t}
    if t["search"] not in SEARCHES:
        raise ConfigError(f"config.tune.search={t['search']!r} is not valid; choose one of {list(SEARCHES)}")
    if t["select_on"] not in SELECT_ON:
        raise ConfigError(f"config.tune.select_on={t['select_on']!r} is not valid; choose one of {list(SELECT_ON)}")
    for f in ("budget", "seed"):
        if not is_int(t[f]) or t[f] < 0:
            raise ConfigError(f"config.tune.{f}={t[f]!r} must be an int >= 0")
    if t["search"] == "random" and t["budget"] < 1:
        raise ConfigError(f"config.tune.budget={t['budget']} must be >= 1 for search='random' (configurations per row)")
    return t


def _check_seeds(search_seeds, seeds) -> list:
    s = search_seeds
    if isinstance(s, int) or not isinstance(s, (list, tuple)) or not s or not all(
            is_int(x) and x >= 0 for x in s) or len(set(s)) != len(s):
        raise ConfigError(f"config.tune.search_seeds={s!r} must be a non-empty tuple of distinct ints >= 0")
    both = sorted(set(s) & set(seeds))
    if both:
        raise ConfigError(f"config.tune.search_seeds={tuple(s)} overlaps config.seeds={tuple(seeds)} (the final "
                          f"seeds) in {both}: the reported runs must use fresh seeds")
    return list(s)


def check_tune(tune, archs: Sequence[dict], weightings: Sequence[dict], seeds, sweep: Mapping = (),
               seed_paths: Sequence[str] = ()) -> dict:
    """``config.tune`` normalised ({} = no tuning); each entry's own ``tune`` space is checked and normalised in
    place. A ConfigError names the field."""
    entries = [(k, i, e) for k, es in (("architectures", archs), ("weightings", weightings)) for i, e in enumerate(es)]
    if not _plain(tune):
        own = [f"config.{k}[{i}].tune" for k, i, e in entries if e.get("tune")]
        if own:
            raise ConfigError(f"{own[0]} is set but config.tune is empty: set config.tune (mtlx.tune.tune_config)")
        return {}
    t = _fields(tune)
    t["space"] = _space("config.tune.space", t["space"])
    t["search_seeds"] = _check_seeds(t["search_seeds"], seeds)
    for k, i, e in entries:
        e["tune"] = _space(f"config.{k}[{i}].tune", e.get("tune") or {}, (k, e))
        for path in e["tune"]:
            if path in e.get("overrides", {}):
                raise ConfigError(f"config.{k}[{i}].tune[{path!r}] is also in its overrides; set it in one place")
    for path in set(t["space"]) | {p for _, _, e in entries for p in e["tune"]}:
        if path in sweep or path in seed_paths or any(path in e.get("overrides", {}) for _, _, e in entries):
            raise ConfigError(f"config.tune.space[{path!r}] is also set by config.sweep, config.seed_paths or an "
                              f"entry's overrides; set it in one place")
    if not t["space"] and not any(e["tune"] for _, _, e in entries):
        raise ConfigError("config.tune.space is empty and no architecture or weighting entry has its own 'tune' "
                          "space: nothing to tune; give a space or leave config.tune empty")
    for a in archs:
        for w in weightings:
            _check_size(t, pair_space(t, a, w), f"{a['label']}/{w['label']}")
    return t


def pair_space(t: Mapping, a: Mapping, w: Mapping) -> dict:
    """The search space of one row: the global space, the architecture's own, the weighting's own (later wins)."""
    merged = {**t["space"], **(a.get("tune") or {}), **(w.get("tune") or {})}
    return {p: merged[p] for p in sorted(merged)}


def _grid_size(space: Mapping) -> int | None:
    """The number of combinations of an all-list space (None when a path is a range)."""
    if any("values" not in s for s in space.values()):
        return None
    return math.prod(len(s["values"]) for s in space.values())


def _check_size(t: Mapping, space: Mapping, row: str) -> None:
    size = _grid_size(space)
    if t["search"] == "grid":
        if size is None:
            path = next(p for p, s in space.items() if "values" not in s)
            raise ConfigError(f"config.tune.search='grid' needs value lists, but the space of {row} has a range at "
                              f"{path!r}; give values or use search='random'")
        if t["budget"] and size > t["budget"]:
            raise ConfigError(f"config.tune.budget={t['budget']} is smaller than the grid of {row} ({size} "
                              f"configurations); raise it, set 0 (all), or use search='random'")
    elif size is not None and space and size < t["budget"]:
        raise ConfigError(f"config.tune.budget={t['budget']} exceeds the {size} distinct configurations of {row}'s "
                          f"space; lower it or use search='grid'")


# --------------------------------------------------------------------------- candidates


def _round(x: float, lo: float, hi: float) -> float:
    return float(min(hi, max(lo, float(f"{x:.{SIGNIFICANT}g}"))))


def draw(spec: Mapping, rng: np.random.Generator):
    """One value of a spec."""
    if "values" in spec:
        return copy.deepcopy(spec["values"][int(rng.integers(len(spec["values"])))])
    kind, (lo, hi) = next(iter(spec.items()))
    if kind == "int_uniform":
        return int(rng.integers(lo, hi + 1))
    if kind == "log_uniform":
        return _round(math.exp(rng.uniform(math.log(lo), math.log(hi))), lo, hi)
    return _round(rng.uniform(lo, hi), lo, hi)


def path_rng(seed: int, path: str) -> np.random.Generator:
    """The random search's stream for one path: the same in every row."""
    return np.random.default_rng([seed, zlib.crc32(path.encode())])


def candidates(space: Mapping, search: str, budget: int, seed: int) -> list[dict]:
    """The configurations ({path: value}) to try: grid = the product of the value lists (paths sorted);
    random = ``budget`` distinct draws, each path from ``path_rng(seed, path)``. An empty space: [{}]."""
    paths = sorted(space)
    if not paths:
        return [{}]
    if search == "grid":
        return [dict(zip(paths, copy.deepcopy(combo))) for combo in
                itertools.product(*(space[p]["values"] for p in paths))]
    rngs = {p: path_rng(seed, p) for p in paths}
    out, seen = [], set()
    for _ in range(MAX_DRAWS * budget):
        cand = {p: draw(space[p], rngs[p]) for p in paths}
        key = json.dumps(cand, sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(cand)
            if len(out) == budget:
                break
    return out


# --------------------------------------------------------------------------- stage 1: the search runs


def _entry_of(e: Mapping, kind: str, label: str) -> dict:
    return next(x for x in e[kind] if x["label"] == label)


def _pair_key(r: Mapping) -> str:
    return json.dumps([r["sweep"], r["architecture"], r["weighting"]], sort_keys=True)


def search_run_id(run: Mapping, k: int, values: Mapping, config: Mapping) -> str:
    """``<grid id without hash>@tune<k>-<tuned leaf><value>...-<hash8>``: never a grid run's id."""
    head = grid.run_id(run["architecture"], run["weighting"], run["seed"], run["sweep"], config).rsplit("-", 1)[0]
    parts = [f"{p.split('.')[-1]}{grid._fmt(v)}" for p, v in values.items()]
    return "-".join([f"{head}{results.SEARCH_MARK}{k}", *parts, grid.config_hash(config)])


def _with_values(run: Mapping, values: Mapping) -> dict:
    cfg = copy.deepcopy(run["config"])
    for p, v in values.items():
        _set_path(cfg, p, copy.deepcopy(v))
    try:
        check_cross(cfg)
    except ValueError as err:
        raise ConfigError(f"config.tune: the candidate {dict(values)} of {run['architecture']}/{run['weighting']}: "
                          f"{err}") from None
    return cfg


def _needed(e: Mapping, runs: Sequence[dict], chosen: Sequence[dict]) -> set:
    """Rows to search: the chosen runs' rows, and the baseline's rows at their sweep values (the reference)."""
    keys = {_pair_key(r) for r in chosen}
    sweeps = {json.dumps(r["sweep"], sort_keys=True) for r in chosen}
    keys |= {_pair_key(r) for r in runs if r["architecture"] == e["baseline"]
             and json.dumps(r["sweep"], sort_keys=True) in sweeps}
    return keys


def plan(e: Mapping, runs: Sequence[dict], chosen: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    """The search: (rows [{architecture, weighting, sweep, space, candidates [{values, run_ids}]}], search runs)."""
    t, needed = e["tune"], _needed(e, runs, chosen)
    base = grid.expand(grid.Experiment({**e, "seeds": list(t["search_seeds"])}))
    rows: dict = {}
    search = []
    for r in base:
        key = _pair_key(r)
        if key not in needed:
            continue
        if key not in rows:
            space = pair_space(t, _entry_of(e, "architectures", r["architecture"]),
                               _entry_of(e, "weightings", r["weighting"]))
            rows[key] = {"architecture": r["architecture"], "weighting": r["weighting"], "sweep": r["sweep"],
                         "space": space, "candidates": [{"values": v, "run_ids": []} for v in
                                                        candidates(space, t["search"], t["budget"], t["seed"])]}
        if not rows[key]["space"]:
            continue  # nothing to tune for this row: its defaults are its selection
        for k, cand in enumerate(rows[key]["candidates"]):
            cfg = _with_values(r, cand["values"])
            run = {**r, "config": cfg, "run_id": search_run_id(r, k, cand["values"], cfg)}
            cand["run_ids"].append(run["run_id"])
            search.append(run)
    for i, run in enumerate(search):
        run["index"], run["total"] = i + 1, len(search)
    return list(rows.values()), search


# --------------------------------------------------------------------------- selection (validation only)


def validation_view(summary: Mapping | None) -> dict | None:
    """What selection may read of a search run's summary: its status, tasks and VALIDATION metrics (never the
    test metrics, ``metrics`` or ``test_at_best_validation``)."""
    if summary is None:
        return None
    return {"status": summary.get("status"), "tasks": summary.get("tasks") or {},
            "validation": summary.get("validation_metrics")}


def _main(view: Mapping) -> tuple[dict, dict]:
    """{task: validation main metric} and {task: higher_is_better} of one run's main tasks (an auxiliary
    task is not tuned for)."""
    info = {t: i for t, i in view["tasks"].items() if i.get("role", tasks.MAIN) == tasks.MAIN}
    val = view["validation"] or {}
    vals = {t: (val.get(t) or {}).get(i["main_metric"]) for t, i in info.items()}
    return ({t: float("nan") if v is None else float(v) for t, v in vals.items()},
            {t: bool(i["higher_is_better"][i["main_metric"]]) for t, i in info.items()})


def run_score(view: Mapping | None, reference: Mapping | None) -> float:
    """One search run's validation score (higher is better; -inf for a failed run or a missing value)."""
    from mtlx.report.aggregate import delta_m

    if view is None or view["status"] != results.DONE or not view["validation"]:
        return -math.inf
    vals, hib = _main(view)
    if reference is not None and len(vals) > 1 and set(reference) == set(vals):
        s = delta_m(vals, reference, hib)
    else:
        s = float(np.mean([v if hib[t] else -v for t, v in vals.items()])) if vals else float("nan")
    return s if math.isfinite(s) else -math.inf


def _reference(row: Mapping, rows: Sequence[dict], views: Mapping, baseline: str | None) -> dict | None:
    """The baseline row's mean validation main metric per task over all its candidates and seeds (same sweep
    value; same weighting, else the baseline's only weighting); None without one."""
    same = [b for b in rows if b["architecture"] == baseline and b["sweep"] == row["sweep"]]
    pick = [b for b in same if b["weighting"] == row["weighting"]] or (same if len(same) == 1 else [])
    if not pick:
        return None
    per = [_main(v)[0] for c in pick[0]["candidates"] for rid in c["run_ids"]
           for v in [views.get(rid)] if v is not None and v["status"] == results.DONE and v["validation"]]
    if not per:
        return None
    ref = {t: float(np.nanmean([p.get(t, np.nan) for p in per])) for t in per[0]}
    return ref if all(math.isfinite(v) and v != 0 for v in ref.values()) else None


def select(rows: Sequence[dict], views: Mapping[str, dict | None], baseline: str | None) -> list[dict]:
    """Each row with every candidate's validation ``scores`` (per search seed) and ``score`` (their mean), the
    ``selected`` index (None when every candidate failed; a row with nothing to tune: 0) and its values."""
    out = []
    for orig in rows:
        ref = _reference(orig, rows, views, baseline)
        multi = any(len((views.get(rid) or {}).get("tasks") or {}) > 1
                    for c in orig["candidates"] for rid in c["run_ids"])
        row = {**orig, "score_kind": DELTA_M if ref is not None and multi else SIGNED_MAIN,
               "reference": ref if multi else None, "candidates": []}
        for c in orig["candidates"]:
            scores = [run_score(views.get(rid), ref if multi else None) for rid in c["run_ids"]]
            row["candidates"].append({**c, "scores": scores, "score": float(np.mean(scores)) if scores else -math.inf})
        finite = [i for i, c in enumerate(row["candidates"]) if math.isfinite(c["score"])]
        best = max(finite, key=lambda i: (row["candidates"][i]["score"], -i)) if finite else None
        row["selected"] = 0 if not row["space"] else best
        row["selected_values"] = None if row["selected"] is None else row["candidates"][row["selected"]]["values"]
        out.append(row)
    return out


# --------------------------------------------------------------------------- the record and stage 2


def record(e: Mapping, rows: Sequence[dict], status: str) -> dict:
    """tuning.json's one shape: the protocol, and per row its space, candidates (values, search run ids,
    validation scores) and selection."""
    t = e["tune"]
    return {"status": status, "search": t["search"], "budget": t["budget"], "seed": t["seed"],
            "search_seeds": list(t["search_seeds"]), "final_seeds": list(e["seeds"]), "select_on": t["select_on"],
            "space": t["space"], "baseline": e["baseline"], "significant_digits": SIGNIFICANT, "rows": list(rows)}


def final_runs(runs: Sequence[dict], rows: Sequence[dict]) -> list[dict]:
    """The grid's runs (the final seeds) with their row's selected values (new configs, new ids); the runs of a
    row without a selection are left out."""
    chosen = {json.dumps([r["sweep"], r["architecture"], r["weighting"]], sort_keys=True): r["selected_values"]
              for r in rows}
    out = []
    for r in runs:
        values = chosen.get(_pair_key(r))
        if values is None:
            continue
        cfg = _with_values(r, values)
        out.append({**r, "config": cfg,
                    "run_id": grid.run_id(r["architecture"], r["weighting"], r["seed"], r["sweep"], cfg)})
    return out


def _fmt_values(values: Mapping | None) -> str:
    if not values:
        return "defaults (nothing tuned)" if values is not None else "none (every candidate failed)"
    return ", ".join(f"{p.split('.')[-1]}={grid._fmt_full(v)}" for p, v in values.items())


def _say_selected(rows: Sequence[dict], log: Callable) -> None:
    for row in rows:
        where = f"{row['architecture']}/{row['weighting']}" + (f" [{grid._fmt_full(row['sweep'])}]" if row["sweep"] else "")
        if row["space"] and row["selected"] is not None:
            c = row["candidates"][row["selected"]]
            log(f"tuning: {where}: selected {_fmt_values(c['values'])} (validation {row['score_kind']} "
                f"{c['score']:.4g}, best of {len(row['candidates'])})")
        else:
            log(f"tuning: {where}: {_fmt_values(row['selected_values'])}")


def _missing(search: Sequence[dict], workdir: str) -> list[str]:
    return [r["run_id"] for r in search if results.read_summary(results.run_path(workdir, r["run_id"])) is None]


def search_then_select(e: Mapping, runs: list[dict], chosen: list[dict], workdir: str, dry_run: bool,
                       log: Callable, train: Callable[[list], object]) -> tuple[list[dict], list[dict]]:
    """Stage 1 and selection, for ``mtlx.runner.launch``: returns (runs, chosen) of stage 2 (the grid's runs with
    the selected values), or (the search runs, []) while the search is unfinished (stage 2 does not start).

    ``train(todo)``: trains a list of runs with the launch's executor. Without a tune block: (runs, chosen)."""
    if not e.get("tune"):
        return runs, chosen
    rows, search = plan(e, runs, chosen)
    todo = _missing(search, workdir)
    log(f"tuning ({e['tune']['search']} search): stage 1, {len(search)} search runs for {len(rows)} rows, "
        f"{len(todo)} to run; selection on validation")
    if dry_run:
        for r in search:
            log(f"  {r['run_id']}{'' if r['run_id'] in todo else '  (finished)'}")
    else:
        if not results.read_experiment(workdir):  # the workdir is this experiment's from the first search run on
            results.write_experiment(workdir, grid.experiment_record(e, search))
        results.write_tuning(workdir, record(e, rows, "searching"))
        if todo:
            train([r for r in search if r["run_id"] in set(todo)])
    missing = _missing(search, workdir)
    if missing and dry_run:
        log(f"tuning: stage 2 follows the search: each row's selected configuration with seeds "
            f"{tuple(e['seeds'])} ({len(chosen)} runs)")
        return runs, []
    if missing:
        log(f"tuning: stage 2 does not start: {len(missing)} of {len(search)} search runs have no summary "
            f"(e.g. {missing[0]}); relaunch when they have finished")
        return search, []
    views = {rid: validation_view(results.read_summary(results.run_path(workdir, rid)))
             for row in rows for c in row["candidates"] for rid in c["run_ids"]}
    rows = select(rows, views, e["baseline"])
    if not dry_run:
        results.write_tuning(workdir, record(e, rows, "selected"))
    _say_selected(rows, log)
    return final_runs(runs, rows), final_runs(chosen, rows)
