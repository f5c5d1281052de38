"""Tables (markdown, LaTeX, CSV) and figures (matplotlib) from run directories.

Everything here reads an experiment directory only (see ``load_runs``); no
JAX, no model code. ``launch/table.py`` and ``launch/plot.py`` are thin
wrappers around ``write_tables`` and ``plot_all``.

Conventions
  * A *group* is one (sweep value, architecture, weighting) cell; its seeds
    are averaged. Mean and std are over the seeds whose run finished
    (``status == "done"``); std uses ddof=1 and is shown only when n > 1.
    Failed or unfinished runs are counted and listed, never averaged.
  * delta_m (Maninis et al. 2019), in percent, on the seed-mean main metrics:
    ``(1/T) sum_t (-1)^{l_t} (M_m,t - M_b,t) / M_b,t * 100`` with ``l_t = 1``
    when lower is better for task t's main metric. The baseline is the
    ``single_task`` group with the same sweep value and the same weighting,
    else with weighting ``equal``, over the row's own tasks. Without a
    single_task group the column is left out and a note says so.
  * Task lists: a swept option may change the task set (census-income's
    ``task_set.options.group``), so each row has its own tasks, main metrics
    and higher_is_better (from its runs' summaries). Rows with different
    task lists are never compared (``task_sections``): markdown shows one
    ``### <sweep values> — tasks: ...`` sub-heading and table per task list,
    LaTeX one tabular per list (a spanning title row) in one float, and the
    CSV one file with the union of the columns, empty cells where a row's
    task list lacks the task, and a ``tasks`` column. With one task list
    (the usual case) the output is one plain table, as it always was.
  * Best entry: per column and per sweep value (rows of different sweep
    values are different problems). Markdown and LaTeX show it in bold. The
    CSV keeps every number plain (so it parses back exactly) and lists the
    columns in which a row is best in its ``best`` column, ';'-separated
    (e.g. ``a/accuracy;delta_m``). Ties are all marked.
  * Paper numbers (``experiment.json["paper"]``) are printed beside ours in
    ``paper: <column>`` columns. A paper row is matched by architecture
    label, or by weighting label when the experiment compares weightings
    (one multi-task architecture, several weightings); ``arch/weighting`` or
    ``arch+weighting`` keys match first. A key may name the sweep value in
    brackets, ``mmoe [group=1]`` (each swept field's last component, sorted
    by field, ', '-joined); such keys match before the bare label.
    Matching ignores case, '-' and ' '.
  * Figures (``plot_all``, PNG in ``<workdir>/figures/``): main_metric_bars,
    delta_m, learning_curves, sweep_<field>, tradeoff_<a>_vs_<b>,
    mixing_<architecture>; one colour per architecture label throughout
    (``colours_for``), one line style / marker per weighting. Per-task
    panels follow each sweep value's own tasks.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tempfile
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

import numpy as np

from mtlx import results

BASELINE = "single_task"
FALLBACK_WEIGHTING = "equal"
SELECT = {"final": "metrics", "best_validation": "test_at_best_validation"}

# --------------------------------------------------------------------------- IO


_read_json, _read_jsonl, atomic_write_text = results.read_json, results.read_jsonl, results.atomic_write_text


def load_experiment(workdir: str) -> dict:
    """``<workdir>/experiment.json`` ({} when absent), in one shape.

    Top-level ``experiment``/``architectures``/``weightings``/``seeds``/
    ``sweep``/``paper`` are read as they are; launch.run's layout
    (``name``, and the grid under ``grid``) is lifted to that shape. A
    ``runs`` list (the grid's runs: run_id, architecture, weighting, seed,
    sweep) is kept.
    """
    path = os.path.join(workdir, "experiment.json")
    exp = dict(_read_json(path)) if os.path.exists(path) else {}
    grid = exp.get("grid") if isinstance(exp.get("grid"), Mapping) else {}
    for k in ("architectures", "weightings", "seeds", "sweep"):
        if exp.get(k) is None and k in grid:
            exp[k] = grid[k]
    if exp.get("experiment") is None and "name" in exp:
        exp["experiment"] = exp["name"]
    return exp


def _dotted(cfg, field: str):
    cur = cfg
    for part in field.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _label(entry) -> str:
    """An architecture/weighting entry of experiment.json: a label or a dict with one."""
    if isinstance(entry, Mapping):
        for k in ("label", "name"):
            if k in entry:
                return str(entry[k])
        return json.dumps(entry, sort_keys=True)
    return str(entry)


def load_runs(workdir: str) -> list[dict]:
    """Every run under ``workdir``: its summary.json plus ``dir`` (the run's) and ``workdir``.

    A directory counts as a run when it holds summary.json or config.json
    (searched recursively, not inside ``figures/`` or ``submitit/``). A run
    without a summary (still running, or killed) comes back with ``status:
    "incomplete"``, and a run of experiment.json's ``runs`` list without a
    directory with ``status: "not started"``; their architecture, weighting,
    seed and sweep come from that list (else from config.json), so that they
    are counted and listed but never averaged. Sorted by directory name.
    """
    exp = load_experiment(workdir)
    sweep_fields = list((exp.get("sweep") or {}).keys())
    grid = {r["run_id"]: r for r in exp.get("runs") or [] if isinstance(r, Mapping) and "run_id" in r}
    runs = []
    for root, dirs, files in os.walk(workdir):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in ("figures", "submitit"))
        if os.path.abspath(root) == os.path.abspath(workdir):
            continue
        if "summary.json" in files:
            s = dict(_read_json(os.path.join(root, "summary.json")))
        elif "config.json" in files:
            rid = os.path.basename(root)
            if rid in grid:
                g = grid[rid]
                s = {"architecture": g.get("architecture"), "weighting": g.get("weighting"), "seed": g.get("seed"),
                     "sweep": dict(g.get("sweep") or {})}
            else:
                cfg = _read_json(os.path.join(root, "config.json"))
                s = {"architecture": _label(cfg.get("architecture", "?")), "weighting": _label(cfg.get("weighting", "?")),
                     "seed": cfg.get("seed"), "sweep": {f: _dotted(cfg, f) for f in sweep_fields}}
            s.update(status="incomplete", run_id=rid, failure="no summary.json (still running or killed)")
        else:
            continue
        dirs[:] = []  # a run dir is a leaf
        s["dir"] = root
        s["workdir"] = workdir
        s.setdefault("run_id", os.path.basename(root))
        s.setdefault("sweep", {})
        s["sweep"] = s["sweep"] or {}
        runs.append(s)
    seen = {r["run_id"] for r in runs}
    for rid, g in grid.items():
        if rid not in seen:
            runs.append({"status": "not started", "run_id": rid, "architecture": g.get("architecture"),
                         "weighting": g.get("weighting"), "seed": g.get("seed"), "sweep": dict(g.get("sweep") or {}),
                         "failure": "no run directory", "dir": os.path.join(workdir, rid), "workdir": workdir})
    runs.sort(key=lambda r: r["dir"])
    return runs


# --------------------------------------------------------------------------- numbers


def _num(v) -> float:
    """JSON number (None for NaN) -> float."""
    if v is None or isinstance(v, bool):
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def mean_std(values: Iterable) -> dict:
    """Mean and std (ddof=1; NaN when n < 2) over the finite values."""
    vals = [v for v in (_num(x) for x in values) if math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "values": []}
    a = np.asarray(vals, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if n > 1 else float("nan"), "n": n, "values": vals}


def delta_m(metrics_by_task: Mapping, baseline_by_task: Mapping, higher_is_better_by_task: Mapping) -> float:
    """Maninis et al. (2019) delta_m in percent over the baseline's tasks.

    ``metrics_by_task`` and ``baseline_by_task`` map task -> main-metric value;
    ``higher_is_better_by_task`` maps task -> bool. Positive means better than
    the baseline. NaN when a task is missing or a baseline value is 0/NaN.
    """
    tasks = list(baseline_by_task)
    if not tasks:
        return float("nan")
    total = 0.0
    for t in tasks:
        m, b = _num(metrics_by_task.get(t)), _num(baseline_by_task[t])
        if not (math.isfinite(m) and math.isfinite(b)) or b == 0:
            return float("nan")
        sign = 1.0 if higher_is_better_by_task[t] else -1.0
        total += sign * (m - b) / b
    return 100.0 * total / len(tasks)


def _is_done(run) -> bool:
    return run.get("status") == "done"


def _sweep_key(sweep: Mapping) -> tuple:
    return tuple((k, json.dumps(sweep[k], sort_keys=True)) for k in sorted(sweep))


def fmt_value(v) -> str:
    """Human form of a swept value."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def short_field(field: str, fields: Sequence[str] = ()) -> str:
    """Last component of a dotted field, unless two fields share it."""
    last = field.split(".")[-1]
    return last if sum(f.split(".")[-1] == last for f in fields) <= 1 else field


def sweep_label(sweep: Mapping, fields: Sequence[str] | None = None) -> str:
    fields = list(fields or sweep)
    return ", ".join(f"{short_field(k, fields)}={fmt_value(sweep[k])}" for k in sorted(sweep)) or "(no sweep)"


def _task_info(runs) -> tuple[list, dict, dict]:
    """Task order, main metric and higher_is_better per task, from the runs' summaries."""
    order, main, hib = [], {}, {}
    for r in runs:
        for t, info in (r.get("tasks") or {}).items():
            if t not in main:
                order.append(t)
                main[t] = info["main_metric"]
                hib[t] = dict(info.get("higher_is_better") or {})
    return order, main, hib


def _metric_hib(hib: Mapping, task: str, metric: str) -> bool:
    """higher_is_better of a metric; losses (and unknown metrics named *loss*/mse/...) are lower-is-better."""
    h = hib.get(task, {})
    if metric in h:
        return bool(h[metric])
    return not (metric == "loss" or metric.endswith("loss") or metric in ("mse", "mae", "rmse", "error"))


def _is_baseline_run(r) -> bool:
    return r.get("architecture") == BASELINE or r.get("architecture_name") == BASELINE


def baseline_labels(runs_or_rows) -> set:
    """Architecture labels of the single_task baseline (by label, or by ARCHITECTURES name in the summary)."""
    return {r.get("architecture") for r in runs_or_rows if _is_baseline_run(r)}


def _orders(runs, exp) -> tuple[list, list, dict]:
    archs = [_label(a) for a in exp.get("architectures") or []]
    weights = [_label(w) for w in exp.get("weightings") or []]
    for r in runs:
        if r.get("architecture") not in archs:
            archs.append(r.get("architecture"))
        if r.get("weighting") not in weights:
            weights.append(r.get("weighting"))
    base = [a for a in archs if a in baseline_labels(runs)]
    archs = base + [a for a in archs if a not in base]
    sweep_values = {f: [json.dumps(v, sort_keys=True) for v in vals] for f, vals in (exp.get("sweep") or {}).items()}
    return archs, weights, sweep_values


def _sweep_sort_key(sweep_key: tuple, sweep_values: Mapping) -> tuple:
    out = []
    for field, v in sweep_key:
        known = sweep_values.get(field, [])
        val = json.loads(v)
        num = float(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else None
        out.append((known.index(v) if v in known else len(known), num if num is not None else math.inf, v))
    return tuple(out)


def aggregate(runs: Sequence[dict], select: str = "final", experiment: Mapping | None = None) -> list[dict]:
    """One row per (sweep value, architecture, weighting) group.

    ``experiment``: the parsed experiment.json (orders rows and sweep values);
    by default read from the directory ``load_runs`` found the runs in.

    ``select``: 'final' (``metrics``) or 'best_validation'
    (``test_at_best_validation``; a run where it is null falls back to its
    final metrics). Each row holds ``sweep``, ``architecture``,
    ``weighting``, ``n`` (finished seeds), ``seeds``, ``run_ids``,
    ``failed`` (list of {run_id, seed, status, failure}), ``metrics``
    ({task: {metric: {mean, std, n, values}}}), ``main_metric``,
    ``higher_is_better`` (both over the group's own tasks: an experiment
    whose sweep changes the task set has rows with different task lists,
    see ``task_sections``), ``delta_m`` (None without a baseline),
    ``delta_m_seed_std`` (std over seeds of each seed's delta_m against the
    baseline mean; for error bars), ``baseline`` (which group),
    ``param_count``, ``wall_time_s``, ``steps_per_s``.
    Rows are ordered by sweep value, then architecture (single_task first,
    then experiment order), then weighting.
    """
    if select not in SELECT:
        raise ValueError(f"select={select!r} is not valid; choose one of {sorted(SELECT)}")
    if experiment is None:  # the experiment.json that load_runs found the runs under
        experiment = load_experiment(runs[0]["workdir"]) if runs and runs[0].get("workdir") else {}
    exp = experiment
    all_info = _task_info(runs)
    arch_order, w_order, sweep_values = _orders(runs, exp)
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    by_sweep: dict = {}
    for r in runs:
        groups.setdefault((_sweep_key(r["sweep"]), r.get("architecture"), r.get("weighting")), []).append(r)
        by_sweep.setdefault(_sweep_key(r["sweep"]), []).append(r)

    rows = []
    for (skey, arch, w), members in groups.items():
        # the group's own tasks (a sweep may change the task set), else its sweep value's, else everyone's
        tasks, main, hib = _task_info(members)
        if not tasks:  # no member wrote a summary
            tasks, main, hib = _task_info(by_sweep[skey])
        if not tasks:
            tasks, main, hib = all_info
        done = sorted((r for r in members if _is_done(r)), key=_seed_order)
        bad = [r for r in members if not _is_done(r)]
        per_run = []
        for r in done:
            m = r.get(SELECT[select])
            per_run.append(m if m is not None else r.get("metrics") or {})
        metrics = {}
        for t in tasks:
            names = [main[t]] + sorted({k for m in per_run for k in (m.get(t) or {})} - {main[t]})
            metrics[t] = {k: mean_std([(m.get(t) or {}).get(k) for m in per_run]) for k in names}
        rows.append({
            "sweep": dict(members[0]["sweep"]), "sweep_key": skey, "architecture": arch, "weighting": w,
            "architecture_name": next((r["architecture_name"] for r in members if r.get("architecture_name")), arch),
            "n": len(done), "seeds": [r.get("seed") for r in done], "run_ids": [r["run_id"] for r in done],
            "failed": [{"run_id": r["run_id"], "seed": r.get("seed"), "status": r.get("status"),
                        "failure": _failure_text(r.get("failure"))} for r in bad],
            "metrics": metrics, "main_metric": dict(main), "higher_is_better": hib,
            "per_run_metrics": per_run,
            "param_count": mean_std([r.get("param_count") for r in done])["mean"],
            "wall_time_s": mean_std([r.get("wall_time_s") for r in done])["mean"],
            "steps_per_s": mean_std([r.get("steps_per_s") for r in done])["mean"],
            "delta_m": None, "delta_m_seed_std": None, "baseline": None,
        })

    def order(row):
        a, w = row["architecture"], row["weighting"]
        return (_sweep_sort_key(row["sweep_key"], sweep_values),
                arch_order.index(a) if a in arch_order else len(arch_order),
                w_order.index(w) if w in w_order else len(w_order))

    rows.sort(key=order)
    _attach_delta_m(rows)
    return rows


def _seed_order(r):
    seed = r.get("seed")
    return (seed if isinstance(seed, int) else math.inf, str(seed), r["run_id"])


def _failure_text(f) -> str:
    """launch.run's {"step", "task", "message"} (or any string) as one short line."""
    if f is None:
        return ""
    if isinstance(f, Mapping):
        where = ", ".join(f"{k} {f[k]}" for k in ("step", "task") if f.get(k) is not None)
        rest = {k: v for k, v in f.items() if k not in ("step", "task", "message")}
        f = str(f.get("message", "")) + (f" ({where})" if where else "") + "".join(f"; {k}: {v}" for k, v in rest.items())
    f = str(f).strip().splitlines()
    return (f[-1] if f else "")[:200]


def find_baseline(row: Mapping, rows: Sequence[Mapping]) -> Mapping | None:
    """The single_task row that ``row`` is compared with (None if there is none).

    Same weighting first, else weighting 'equal'; identical sweep value first,
    else a baseline whose sweep agrees on every field it has (e.g. a baseline
    run once without the swept architecture option). The baseline must have
    every task of ``row`` with the same main metric (a sweep may change the
    task set).
    """
    mine_main = row.get("main_metric") or {}
    cands = [b for b in rows if _is_baseline_run(b) and b["n"] > 0
             and all((b.get("main_metric") or {}).get(t) == k for t, k in mine_main.items())]
    for w in (row["weighting"], FALLBACK_WEIGHTING):
        same_w = [b for b in cands if b["weighting"] == w]
        exact = [b for b in same_w if b["sweep_key"] == row["sweep_key"]]
        if exact:
            return exact[0]
        mine = dict(row["sweep_key"])
        subset = [b for b in same_w if all(mine.get(k) == v for k, v in b["sweep_key"])]
        if subset:
            return max(subset, key=lambda b: len(b["sweep_key"]))
    return None


def _attach_delta_m(rows) -> None:
    """delta_m of each row over its own tasks, against ``find_baseline``."""
    for row in rows:
        base = find_baseline(row, rows)
        if base is None or row["n"] == 0:
            continue
        main, tasks = row["main_metric"], list(row["main_metric"])
        main_hib = {t: _metric_hib(row["higher_is_better"], t, main[t]) for t in tasks}
        b = {t: base["metrics"][t][main[t]]["mean"] for t in tasks}
        row["delta_m"] = delta_m({t: row["metrics"][t][main[t]]["mean"] for t in tasks}, b, main_hib)
        per_seed = [delta_m({t: (m.get(t) or {}).get(main[t]) for t in tasks}, b, main_hib) for m in row["per_run_metrics"]]
        row["delta_m_seed_std"] = mean_std(per_seed)["std"]
        row["baseline"] = f"{base['architecture']}/{base['weighting']}" + (f" ({sweep_label(base['sweep'])})" if base["sweep"] else "")


def has_baseline(rows) -> bool:
    return any(r["delta_m"] is not None for r in rows)


# --------------------------------------------------------------------------- columns, best marking


def task_meta(rows) -> tuple[list, dict, dict]:
    """Tasks of ``rows`` in first-seen order, with each task's main metric and higher_is_better (first row wins)."""
    order, main, hib = [], {}, {}
    for r in rows:
        for t, k in (r.get("main_metric") or {}).items():
            if t not in main:
                order.append(t)
                main[t] = k
                hib[t] = (r.get("higher_is_better") or {}).get(t, {})
    return order, main, hib


def _task_key(row) -> tuple:
    """What makes two rows comparable: the same tasks with the same main metrics."""
    return tuple(sorted((row.get("main_metric") or {}).items()))


def task_sections(rows) -> list[list[int]]:
    """Row indices grouped by task list (tasks and their main metrics), sections in order of first row.

    One section when every row has the same tasks; several when a swept
    option changes the task set (e.g. census-income's task group). Tables
    are rendered one section at a time; delta_m and best marks never compare
    rows of different sections.
    """
    sections: "OrderedDict[tuple, list]" = OrderedDict()
    for i, r in enumerate(rows):
        sections.setdefault(_task_key(r), []).append(i)
    return list(sections.values())


def tasks_by_sweep(rows) -> "OrderedDict[tuple, tuple[list, dict, dict]]":
    """{sweep_key: task_meta of the rows with that sweep value}, in row order."""
    keys: "OrderedDict[tuple, list]" = OrderedDict()
    for r in rows:
        keys.setdefault(r["sweep_key"], []).append(r)
    return OrderedDict((k, task_meta(v)) for k, v in keys.items())


def metric_columns(rows, include_loss: bool = False) -> list[tuple[str, str]]:
    """(task, metric) columns: each task's main metric first, then its other metrics (tasks of all rows)."""
    cols = []
    tasks, main, _ = task_meta(rows)
    for t in tasks:
        names = [main[t]] + sorted({k for r in rows for k in r["metrics"].get(t, {})} - {main[t]})
        cols += [(t, k) for k in names if include_loss or k != "loss" or k == main[t]]
    return cols


def _metric_of(row, task: str, metric: str) -> dict | None:
    """{mean, std, n, values} of one row's (task, metric); None where the row has no such task or metric."""
    return (row["metrics"].get(task) or {}).get(metric)


def best_marks(rows, columns: Sequence[tuple[str, str]]) -> list[set]:
    """For each row, the set of column keys ('task/metric', 'delta_m') where it is best in its sweep value.

    Rows are compared within one sweep value and one task list (see
    ``task_sections``); a column a row does not have is skipped for it.
    """
    marks = [set() for _ in rows]
    by_sweep: dict = {}
    for i, r in enumerate(rows):
        if r["n"] > 0:
            by_sweep.setdefault((r["sweep_key"], _task_key(r)), []).append(i)
    for idx in by_sweep.values():
        _, _, hib = task_meta([rows[i] for i in idx])
        for t, k in columns:
            vals = {i: _metric_of(rows[i], t, k)["mean"] for i in idx if _metric_of(rows[i], t, k) is not None}
            _mark(marks, vals, _metric_hib(hib, t, k), f"{t}/{k}")
        _mark(marks, {i: _num(rows[i]["delta_m"]) for i in idx}, True, "delta_m")
    return marks


def _mark(marks, vals: Mapping[int, float], higher: bool, key: str) -> None:
    finite = {i: v for i, v in vals.items() if math.isfinite(v)}
    if len(finite) < 2:
        return
    best = max(finite.values()) if higher else min(finite.values())
    for i, v in finite.items():
        if v == best:
            marks[i].add(key)


# --------------------------------------------------------------------------- paper numbers


_PAPER_SWEEP_TAG = re.compile(r"\[[^\[\]]*=[^\[\]]*\]\s*$")  # "mmoe [group=1]"


def _norm(s) -> str:
    return str(s).lower().replace("-", "_").replace(" ", "_")


def compares_weightings(rows) -> bool:
    """One multi-task architecture (single_task aside) and several weightings."""
    archs = {r["architecture"] for r in rows} - baseline_labels(rows)
    return len({r["weighting"] for r in rows}) > 1 and len(archs) <= 1


def match_paper(rows, paper: Mapping | None) -> tuple[list, list, list]:
    """Paper numbers per row: (columns, [ {column: value} or None per row ], unmatched paper labels).

    For a row with sweep values, keys tagged with them (``"mmoe [group=1]"``:
    each swept field's last component) are tried before the bare ones.
    """
    paper = paper or {}
    prow = paper.get("rows") or {}
    cols = list(paper.get("metric_columns") or [])
    for v in prow.values():
        cols += [c for c in v if c not in cols]
    if not prow:
        return [], [None] * len(rows), []
    lookup = {_norm(k): k for k in prow}
    by_weighting = compares_weightings(rows)
    used, out = set(), []
    for r in rows:
        a, w = r["architecture"], r["weighting"]
        keys = [f"{a}/{w}", f"{a}+{w}"]
        keys += [a] if (not by_weighting or _is_baseline_run(r)) else [w]
        # rows for one sweep value: "mmoe [group=1]" (the swept field's last component)
        tag = ", ".join(f"{str(k).split('.')[-1]}={v}" for k, v in sorted((r.get("sweep") or {}).items()))
        keys = ([f"{k} [{tag}]" for k in keys] if tag else []) + keys
        hit = next((lookup[_norm(k)] for k in keys if _norm(k) in lookup), None)
        out.append(prow[hit] if hit is not None else None)
        if hit is not None:
            used.add(hit)
    return cols, out, [k for k in prow if k not in used]


# --------------------------------------------------------------------------- table rendering


def _decimals(mean: float) -> int:
    if not math.isfinite(mean) or mean == 0:
        return 4
    return int(min(8, max(0, 3 - math.floor(math.log10(abs(mean))))))


def fmt_mean_std(ms: Mapping, pm: str = " ± ") -> str:
    m, s = ms["mean"], ms["std"]
    if not math.isfinite(m):
        return "–"
    d = _decimals(m)
    return f"{m:.{d}f}" + (f"{pm}{s:.{d}f}" if math.isfinite(s) else "")


def fmt_num(v) -> str:
    v = _num(v)
    if not math.isfinite(v):
        return "–"
    return f"{v:.{_decimals(v)}f}"


def fmt_params(v) -> str:
    v = _num(v)
    if not math.isfinite(v):
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def _section_title(rows, tasks, fields) -> str:
    """Sub-heading of one task-list section: the sweep values it covers and its tasks."""
    const = [f for f in fields if rows and all(f in r["sweep"] for r in rows)
             and len({json.dumps(r["sweep"][f], sort_keys=True) for r in rows}) == 1]
    if const:
        where = ", ".join(f"{short_field(f, fields)}={fmt_value(rows[0]['sweep'][f])}" for f in const)
    else:
        labels = []
        for r in rows:
            lab = sweep_label(r["sweep"], fields) if r["sweep"] else ""
            if lab and lab not in labels:
                labels.append(lab)
        where = "; ".join(labels)
    return (f"{where} — " if where else "") + ("tasks: " + ", ".join(tasks) if tasks else "no tasks")


def _section_model(tm, idx: Sequence[int], include_loss: bool, multi: bool) -> dict:
    """The part of the table model one task-list section needs (its rows, columns, marks, paper numbers)."""
    rows = [tm["rows"][i] for i in idx]
    prows = [tm["prows"][i] for i in idx]
    cols = metric_columns(rows, include_loss)
    tasks = task_meta(rows)[0]
    # several sections: only the paper columns that some row of this one has (paper columns may be per task)
    pcols = [c for c in tm["pcols"] if any(p and c in p for p in prows)] if multi else list(tm["pcols"])
    return {"rows": rows, "cols": cols, "marks": best_marks(rows, cols), "prows": prows, "pcols": pcols,
            "with_dm": has_baseline(rows), "sweep_fields": tm["sweep_fields"], "tasks": tasks,
            "title": _section_title(rows, tasks, tm["sweep_fields"])}


def _table_model(workdir: str, select: str = "final", include_loss: bool = False) -> dict:
    """Everything the three table formats need, computed once.

    ``sections``: one per distinct task list (``task_sections``), each with
    its own columns, best marks and paper columns; one section is the usual
    single table.
    """
    exp = load_experiment(workdir)
    runs = load_runs(workdir)
    rows = aggregate(runs, select=select, experiment=exp)
    cols = metric_columns(rows, include_loss)
    with_dm = has_baseline(rows)
    marks = best_marks(rows, cols)
    pcols, prows, unmatched = match_paper(rows, exp.get("paper"))
    sweep_fields = sorted({k for r in rows for k in r["sweep"]})
    failed = [(r, f) for r in rows for f in r["failed"]]
    tm = {"exp": exp, "runs": runs, "rows": rows, "cols": cols, "with_dm": with_dm, "marks": marks,
          "pcols": pcols, "prows": prows, "sweep_fields": sweep_fields, "failed": failed,
          "name": exp.get("experiment") or next((r.get("experiment") for r in runs if r.get("experiment")), None)
          or os.path.basename(os.path.abspath(workdir))}
    groups = task_sections(rows)
    tm["sections"] = [_section_model(tm, idx, include_loss, len(groups) > 1) for idx in groups]
    notes = []
    what = "final test metrics" if select == "final" else "test metrics at the best validation step"
    notes.append(f"{what}; mean ± std over seeds (ddof=1), n = finished seeds"
                 + ("; failed = failed, unfinished or not started runs (not averaged)" if failed else "")
                 + "; bold = best per column within each sweep value.")
    if len(groups) > 1:
        notes.append("The sweep changes the task set: one table per task list; Δm% and bold compare rows "
                     "of one table only.")
    if with_dm:
        notes.append("Δm% (Maninis et al. 2019) vs single_task with the same weighting (else 'equal') and sweep value, "
                     "on seed-mean main metrics; higher is better.")
        notes += [f"No single_task baseline for {sec['title']}: Δm% omitted there."
                  for sec in tm["sections"] if not sec["with_dm"]]
    elif rows:
        notes.append("No single_task baseline in this experiment: Δm% omitted.")
    if pcols:
        how = "weighting" if compares_weightings(rows) else "architecture"
        paper_rows = (exp.get("paper") or {}).get("rows") or {}
        if any(_PAPER_SWEEP_TAG.search(str(k)) for k in paper_rows if k not in unmatched):
            how += " label and sweep value (keys like 'mmoe [group=1]')"
        else:
            how += " label"
        notes.append(f"paper: numbers reported in the paper, matched by {how}."
                     + (f" {(exp.get('paper') or {}).get('note')}" if (exp.get('paper') or {}).get('note') else ""))
        if unmatched:
            notes.append(f"paper rows without a matching run: {', '.join(unmatched)}.")
    tm["notes"] = notes
    return tm


def _header_cells(tm, arrow_up: str, arrow_down: str) -> list[str]:
    rows = tm["rows"]
    hib = task_meta(rows)[2]
    head = [short_field(f, tm["sweep_fields"]) for f in tm["sweep_fields"]] + ["architecture", "weighting", "n"]
    if any(r["failed"] for r in rows):
        head.append("failed")
    head += [f"{t} {k} {arrow_up if _metric_hib(hib, t, k) else arrow_down}" for t, k in tm["cols"]]
    if tm["with_dm"]:
        head.append(f"Δm% {arrow_up}")
    head.append("params")
    head += [f"paper: {c}" for c in tm["pcols"]]
    return head


def _body_cells(tm, bold, pm: str, dm_fmt=lambda v: f"{v:+.2f}") -> list[list[str]]:
    out = []
    any_failed = any(r["failed"] for r in tm["rows"])
    for r, mk, pr in zip(tm["rows"], tm["marks"], tm["prows"]):
        cells = [fmt_value(r["sweep"].get(f, "")) for f in tm["sweep_fields"]]
        cells += [str(r["architecture"]), str(r["weighting"]), str(r["n"])]
        if any_failed:
            cells.append(str(len(r["failed"])))
        for t, k in tm["cols"]:
            ms = _metric_of(r, t, k)
            s = fmt_mean_std(ms, pm) if r["n"] and ms is not None else "–"
            cells.append(bold(s) if f"{t}/{k}" in mk else s)
        if tm["with_dm"]:
            dm = r["delta_m"]
            s = dm_fmt(dm) if dm is not None and math.isfinite(dm) else "–"
            cells.append(bold(s) if "delta_m" in mk else s)
        cells.append(fmt_params(r["param_count"]))
        cells += [fmt_num((pr or {}).get(c)) if pr and c in pr else "" for c in tm["pcols"]]
        out.append(cells)
    return out


def _failure_lines(tm) -> list[str]:
    return [f"{f['run_id']} ({r['architecture']}/{r['weighting']}, seed {f['seed']}"
            + (f", {sweep_label(r['sweep'], tm['sweep_fields'])}" if r["sweep"] else "")
            + f"): {f['status']}" + (f" — {f['failure']}" if f["failure"] else "") for r, f in tm["failed"]]


def _markdown_lines(sec) -> list[str]:
    head = _header_cells(sec, "↑", "↓")
    body = _body_cells(sec, lambda s: f"**{s}**", " ± ")
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i < len(sec["sweep_fields"]) + 2 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |" for cells in body]
    return lines


def render_markdown(tm) -> str:
    """One table; or, when rows have different task lists, a ``### <sweep values> — tasks: ...`` table per list."""
    lines = [f"## {tm['name']}", ""]
    if not tm["rows"]:
        return "\n".join(lines + ["No runs found.", ""])
    if len(tm["sections"]) == 1:
        lines += _markdown_lines(tm["sections"][0])
        lines.append("")
    else:
        for sec in tm["sections"]:
            lines += [f"### {sec['title']}", ""] + _markdown_lines(sec) + [""]
    lines += [f"- {n}" for n in tm["notes"]]
    if tm["failed"]:
        lines.append(f"- Failed or unfinished runs ({len(tm['failed'])}), not averaged:")
        lines += [f"  - {x}" for x in _failure_lines(tm)]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    s = str(s).replace("\\", "\x00")
    for a, b in (("{", r"\{"), ("}", r"\}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("–", "--"), ("—", "---"), ("Δm", r"$\Delta_m$"), ("Δ", r"$\Delta$"),
                 ("±", r"$\pm$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"), ("\x00", r"\textbackslash{}")):
        s = s.replace(a, b)
    return s


def _latex_tabular(sec, title: str | None = None) -> list[str]:
    """One booktabs tabular; ``title`` (a task-list section's heading) goes in a first spanning row."""
    head = [_tex_escape(h) for h in _header_cells(sec, "↑", "↓")]
    body = _body_cells(sec, lambda s: f"\\textbf{{{s}}}", " $\\pm$ ")
    body = [[c if c.startswith("\\textbf") or "$\\pm$" in c else _tex_escape(c) for c in cells] for cells in body]
    body = [[c.replace("–", "--") for c in cells] for cells in body]
    nleft = len(sec["sweep_fields"]) + 2
    spec = "l" * nleft + "r" * (len(head) - nleft)
    out = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    if title is not None:
        out += [f"\\multicolumn{{{len(head)}}}{{l}}{{\\textit{{{_tex_escape(title)}}}}} \\\\", "\\midrule"]
    out += [" & ".join(head) + " \\\\", "\\midrule"]
    prev = None
    for r, cells in zip(sec["rows"], body):
        if prev is not None and r["sweep_key"] != prev:
            out.append("\\midrule")
        prev = r["sweep_key"]
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}"]
    return out


def render_latex(tm) -> str:
    """One table float; one tabular per task-list section (each with its own header), stacked."""
    out = ["% generated by mtlx.report (python -m launch.table); needs \\usepackage{booktabs}",
           "\\begin{table}[t]", "\\centering", "\\small",
           f"\\caption{{{_tex_escape(tm['name'])}: " + _tex_escape(" ".join(tm["notes"][:2])) + "}",
           f"\\label{{tab:{_slug(tm['name'])}}}"]
    sections = tm["sections"] or [dict(tm, rows=[], marks=[], prows=[])]
    if len(sections) == 1:
        out += _latex_tabular(sections[0])
    else:
        for i, sec in enumerate(sections):
            if i:
                out += ["", "\\medskip"]
            out += _latex_tabular(sec, sec["title"])
    out.append("\\end{table}")
    if tm["failed"]:
        out.append(f"% failed or unfinished runs ({len(tm['failed'])}), not averaged:")
        out += [f"%   {x}" for x in _failure_lines(tm)]
    return "\n".join(out) + "\n"


def _csv_num(v) -> str:
    v = _num(v)
    return repr(v) if math.isfinite(v) else ""


def render_csv(tm) -> str:
    """Wide CSV, plain numbers (full precision), a ``best`` column, failures in ``failed_runs``.

    Rows with different task lists share one file: the union of the metric
    columns, empty cells where a row's task list lacks the task, and a
    ``tasks`` column (';'-separated) naming each row's tasks.
    """
    cols_all = metric_columns(tm["rows"], include_loss=True)
    marks = best_marks(tm["rows"], cols_all)
    multi = len(tm["sections"]) > 1
    head = list(tm["sweep_fields"]) + ["architecture", "weighting", "n", "n_failed", "seeds"]
    if multi:
        head.append("tasks")
    for t, k in cols_all:
        head += [f"{t}/{k}/mean", f"{t}/{k}/std"]
    if tm["with_dm"]:
        head += ["delta_m", "delta_m_seed_std"]
    head += ["param_count", "wall_time_s", "steps_per_s"]
    head += [f"paper/{c}" for c in tm["pcols"]]
    head += ["best", "failed_runs"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    nan = {"mean": float("nan"), "std": float("nan")}
    for r, mk, pr in zip(tm["rows"], marks, tm["prows"]):
        cells = [json.dumps(r["sweep"].get(f)) if isinstance(r["sweep"].get(f), (list, dict)) else r["sweep"].get(f, "")
                 for f in tm["sweep_fields"]]
        cells += [r["architecture"], r["weighting"], r["n"], len(r["failed"]), " ".join(str(s) for s in r["seeds"])]
        if multi:
            cells.append(";".join(r["main_metric"]))
        for t, k in cols_all:
            ms = _metric_of(r, t, k) or nan
            cells += [_csv_num(ms["mean"]), _csv_num(ms["std"])]
        if tm["with_dm"]:
            cells += [_csv_num(r["delta_m"]), _csv_num(r["delta_m_seed_std"])]
        cells += [_csv_num(r["param_count"]), _csv_num(r["wall_time_s"]), _csv_num(r["steps_per_s"])]
        cells += [_csv_num((pr or {}).get(c)) for c in tm["pcols"]]
        order = [f"{t}/{k}" for t, k in cols_all] + ["delta_m"]
        cells += [";".join(c for c in order if c in mk), " ".join(f["run_id"] for f in r["failed"])]
        w.writerow(cells)
    return buf.getvalue()


def markdown_table(workdir: str, select: str = "final") -> str:
    """The experiment's comparison table as markdown (what launch.run prints after a sweep)."""
    return render_markdown(_table_model(workdir, select))


def write_tables(workdir: str, select: str = "final") -> dict:
    """Write table.md, table.tex, table.csv into ``workdir`` atomically; returns {'md'|'tex'|'csv': path, 'markdown': text}."""
    tm = _table_model(workdir, select)
    md = render_markdown(tm)
    paths = {}
    for ext, text in (("md", md), ("tex", render_latex(tm)), ("csv", render_csv(tm))):
        paths[ext] = os.path.join(workdir, f"table.{ext}")
        atomic_write_text(paths[ext], text)
    paths["markdown"] = md
    return paths


# --------------------------------------------------------------------------- figures

KNOWN_COLOURS = OrderedDict([
    ("single_task", "#7f7f7f"), ("hard", "#1f77b4"), ("cross_stitch", "#d62728"), ("sluice", "#2ca02c"),
    ("tensor_factorised", "#9467bd"), ("soft", "#ff7f0e"), ("mmoe", "#8c564b"), ("omoe", "#e377c2"),
])
EXTRA_COLOURS = ["#17becf", "#bcbd22", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                 "#e6550d", "#31a354", "#756bb1", "#636363", "#9edae5", "#dbdb8d"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def colours_for(labels: Sequence[str]) -> dict:
    """Architecture label -> colour, stable: known names keep theirs, others take the next free one in order."""
    out, free = {}, [c for c in EXTRA_COLOURS]
    for lab in labels:
        if lab in KNOWN_COLOURS:
            out[lab] = KNOWN_COLOURS[lab]
    for lab in labels:
        if lab not in out:
            out[lab] = free.pop(0) if free else "#000000"
    return out


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100,
         "savefig.dpi": 200, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.2}
PANEL_W, PANEL_H = 2.6, 2.1  # inches; two panels fit a 6.75in two-column width, one a 3.25in column


def _save(fig, path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, format="png", bbox_inches="tight")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    _plt().close(fig)


def _axis_label(task: str, metric: str, higher: bool, vertical: bool = True) -> str:
    arrow = ("↑" if higher else "↓") if vertical else ("→" if higher else "←")
    return f"{task} {metric} ({arrow} better)"


def _subplots(nrows, ncols, **kw):
    plt = _plt()
    fig, axes = plt.subplots(nrows, ncols, figsize=(PANEL_W * ncols, PANEL_H * nrows), squeeze=False, **kw)
    return fig, axes


def _task_axes(n_sweeps: int, n_tasks: int, **kw):
    """{(sweep index, task index): ax}: one row per sweep value, or (no sweep) the tasks wrapped at 3 a row."""
    if n_sweeps == 1:
        ncols = n_tasks if n_tasks <= 3 else (2 if n_tasks == 4 else 3)
        nrows = -(-n_tasks // ncols)
        fig, axes = _subplots(nrows, ncols, **kw)
        for k in range(n_tasks, nrows * ncols):
            axes.flat[k].set_visible(False)
        return fig, {(0, j): axes.flat[j] for j in range(n_tasks)}
    fig, axes = _subplots(n_sweeps, n_tasks, **kw)
    return fig, {(i, j): axes[i][j] for i in range(n_sweeps) for j in range(n_tasks)}


class _Ctx:
    """Experiment-wide plotting context: orders, colours, weighting styles."""

    def __init__(self, runs, rows, exp):
        self.archs, self.weightings, _ = _orders(runs, exp)
        self.archs = [a for a in self.archs if any(r["architecture"] == a for r in rows)]
        self.weightings = [w for w in self.weightings if any(r["weighting"] == w for r in rows)]
        self.colour = colours_for(self.archs)
        self.baselines = baseline_labels(rows)
        self.ls = {w: LINESTYLES[i % len(LINESTYLES)] for i, w in enumerate(self.weightings)}
        self.marker = {w: MARKERS[i % len(MARKERS)] for i, w in enumerate(self.weightings)}
        self.many_w = len(self.weightings) > 1
        sweep_keys, seen = [], set()
        for r in rows:
            if r["sweep_key"] not in seen:
                seen.add(r["sweep_key"])
                sweep_keys.append(r["sweep_key"])
        self.sweep_keys = sweep_keys
        self.sweeps = {r["sweep_key"]: r["sweep"] for r in rows}
        self.sweep_fields = sorted({k for r in rows for k in r["sweep"]})
        self.tasks = tasks_by_sweep(rows)  # {sweep_key: (tasks, main metric, higher_is_better)}

    def name(self, arch, w):
        return f"{arch} / {w}" if self.many_w else str(arch)

    def sweep_title(self, skey):
        return sweep_label(self.sweeps[skey], self.sweep_fields) if skey else ""


def _grouped_bars(ax, groups, hues, get, colour):
    """Bars: x = groups, one bar per hue; get(group, hue) -> (value, err) or None."""
    present = [h for h in hues if any(get(g, h) is not None for g in groups)]
    width = 0.8 / max(len(present), 1)
    for j, h in enumerate(present):
        xs, ys, es = [], [], []
        for i, g in enumerate(groups):
            v = get(g, h)
            if v is not None and math.isfinite(v[0]):
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(v[0])
                es.append(v[1] if math.isfinite(v[1]) else float("nan"))
        has_err = any(math.isfinite(e) for e in es)
        ax.bar(xs, ys, width * 0.92, yerr=[e if math.isfinite(e) else 0.0 for e in es] if has_err else None, color=colour(h), label=str(h), capsize=2,
               error_kw={"elinewidth": 0.8, "capthick": 0.8}, edgecolor="black", linewidth=0.4)
    ax.set_xticks(range(len(groups)))
    return present


def _zoom(ax, vals, errs):
    """Bars of metrics that live near 1 (accuracy, AUC) are unreadable from 0: zoom to the data."""
    lo = [v - e for v, e in zip(vals, errs) if math.isfinite(v)]
    hi = [v + e for v, e in zip(vals, errs) if math.isfinite(v)]
    if not lo:
        return
    lo_, hi_ = min(lo), max(hi)
    if lo_ > 0 and (hi_ - lo_) < 0.25 * hi_:
        pad = (hi_ - lo_) * 0.3 + 1e-12
        ax.set_ylim(max(0.0, lo_ - pad), hi_ + pad)


def figure_metric_bars(rows, path: str, ctx: _Ctx) -> dict:
    """Main metric per task: bars per architecture (x groups = weightings), error bars = std over seeds.

    One row of panels per sweep value, one column per task (no sweep: the
    tasks wrapped at 3 a row). Returns
    {(sweep_key, task): {(arch, weighting): (mean, std, n)}}.
    """
    per_sweep = tasks_by_sweep(rows)  # a sweep may change the task set: each row of panels has its own tasks
    ncols = max([len(per_sweep.get(s, ((),))[0]) for s in ctx.sweep_keys] + [0])
    fig, axes = _task_axes(len(ctx.sweep_keys), ncols)
    data = {}
    for i, skey in enumerate(ctx.sweep_keys):
        tasks, main, hib = per_sweep.get(skey, ([], {}, {}))
        for j in range(len(tasks), ncols):
            axes[(i, j)].set_visible(False)
        sub = {(r["architecture"], r["weighting"]): r for r in rows if r["sweep_key"] == skey and r["n"] > 0}
        for j, t in enumerate(tasks):
            ax, k = axes[(i, j)], main[t]
            d = {key: (ms["mean"], ms["std"], r["n"]) for key, r in sub.items()
                 for ms in [_metric_of(r, t, k)] if ms is not None}
            data[(skey, t)] = d
            # the weightings run at this sweep value only (a sweep may pair some with one value)
            groups = [w for w in ctx.weightings if any(key[1] == w for key in d)] if ctx.many_w else [None]

            def get(g, a):
                v = d.get((a, g if g is not None else ctx.weightings[0]))
                return None if v is None else (v[0], v[1])

            _grouped_bars(ax, groups, ctx.archs, get, ctx.colour.get)
            many = len(groups) > 2
            ax.set_xticklabels([str(g) for g in groups] if ctx.many_w else [""], rotation=50 if many else 0,
                               ha="right" if many else "center", fontsize="small" if many else None)
            if not ctx.many_w:
                ax.tick_params(axis="x", length=0)
            _zoom(ax, [v[0] for v in d.values()], [v[1] if math.isfinite(v[1]) else 0 for v in d.values()])
            ax.set_ylabel(_axis_label(t, k, _metric_hib(hib, t, k)))
            ax.grid(axis="x", visible=False)
            title = t if not skey else f"{t}  ({ctx.sweep_title(skey)})"
            ax.set_title(title)
    _legend(fig, axes, ctx)
    _save(fig, path)
    return data


def _legend(fig, axes, ctx, extra_handles=()):
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=ctx.colour[a], edgecolor="black", linewidth=0.4, label=a) for a in ctx.archs]
    handles += list(extra_handles)
    ncol = min(len(handles), 4)
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, frameon=False)
    fig.tight_layout()


def figure_delta_m(rows, path: str, ctx: _Ctx) -> dict:
    """Delta_m% per multi-task architecture (x groups = sweep values, else weightings); error bars = seed std."""
    mtl = [a for a in ctx.archs if a not in ctx.baselines]
    fig, axes = _subplots(1, 1)
    fig.set_size_inches(max(PANEL_W, 0.9 + 0.35 * len(mtl) * max(len(ctx.sweep_keys), len(ctx.weightings))), PANEL_H)
    ax = axes[0][0]
    d = {(r["sweep_key"], r["architecture"], r["weighting"]): (r["delta_m"], _num(r["delta_m_seed_std"]))
         for r in rows if r["delta_m"] is not None and r["architecture"] not in ctx.baselines}
    if len(ctx.sweep_keys) > 1:
        groups = [(s, w) for s in ctx.sweep_keys for w in ctx.weightings]
        one = len(ctx.sweep_fields) == 1
        labels = [(fmt_value(ctx.sweeps[s][ctx.sweep_fields[0]]) if one else ctx.sweep_title(s))
                  + (f"\n{w}" if ctx.many_w else "") for s, w in groups]
    else:
        groups = [(ctx.sweep_keys[0], w) for w in ctx.weightings]
        labels = [w if ctx.many_w else "" for _, w in groups]
    _grouped_bars(ax, groups, mtl, lambda g, a: d.get((g[0], a, g[1])), ctx.colour.get)
    ax.set_xticklabels(labels, rotation=30 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("Δm% vs single task (↑ better)")
    ax.grid(axis="x", visible=False)
    if len(ctx.sweep_keys) > 1:
        ax.set_xlabel(", ".join(short_field(f, ctx.sweep_fields) for f in ctx.sweep_fields))
    ctx_m = _Ctx.__new__(_Ctx)
    ctx_m.__dict__.update(ctx.__dict__)
    ctx_m.archs = mtl
    _legend(fig, axes, ctx_m)
    _save(fig, path)
    return d


def learning_curve_data(runs: Sequence[dict]) -> dict:
    """Training loss per task over steps, over the finished seeds of each group.

    Returns {(sweep_key, architecture, weighting): {task: {"steps": array,
    "mean": array, "std": array (ddof=1; 0 when one seed), "n": int}}} on the
    steps every seed logged.
    """
    curves: dict = {}
    for r in runs:
        if not _is_done(r):
            continue
        recs = [x for x in _read_jsonl(os.path.join(r["dir"], "metrics.jsonl")) if x.get("kind") == "train"]
        if not recs:
            continue
        by_task: dict = {}
        for x in recs:
            for t, v in (x.get("losses") or {}).items():
                by_task.setdefault(t, {})[int(x["step"])] = _num(v)
        curves.setdefault((_sweep_key(r["sweep"]), r.get("architecture"), r.get("weighting")), []).append(by_task)
    out = {}
    for key, seeds in curves.items():
        out[key] = {}
        for t in sorted({t for s in seeds for t in s}, key=lambda t: list(seeds[0]).index(t) if t in seeds[0] else 1e9):
            per = [s[t] for s in seeds if t in s]
            steps = sorted(set.intersection(*(set(p) for p in per)))
            a = np.asarray([[p[s] for s in steps] for p in per], np.float64)
            out[key][t] = {"steps": np.asarray(steps), "mean": a.mean(0),
                           "std": a.std(0, ddof=1) if len(per) > 1 else np.zeros(len(steps)), "n": len(per)}
    return out


def figure_learning_curves(runs, path: str, ctx: _Ctx) -> dict:
    """Rows = tasks, columns = sweep values: training loss vs step, mean over seeds ± std band, line per architecture.

    When the sweep changes the task set, each column holds its sweep value's own tasks (titled per panel).
    """
    data = learning_curve_data(runs)
    tasks = []
    by_sweep: dict = {}  # a sweep may change the task set: each column has the tasks of its sweep value
    for (skey, _, _), v in data.items():
        tasks += [t for t in v if t not in tasks]
        mine = by_sweep.setdefault(skey, [])
        mine += [t for t in v if t not in mine]
    same = all(set(v) == set(tasks) for v in by_sweep.values())
    col_tasks = {s: (tasks if same else by_sweep.get(s, [])) for s in ctx.sweep_keys}
    nrows = max([len(v) for v in col_tasks.values()] + [0])
    flat = len(ctx.sweep_keys) == 1  # no sweep: the tasks side by side, wrapped at 3
    if flat:
        fig, flat_axes = _task_axes(1, len(col_tasks[ctx.sweep_keys[0]]))
    else:
        fig, axes = _subplots(nrows, len(ctx.sweep_keys), sharex=True)
    for j, skey in enumerate(ctx.sweep_keys):
        tasks = col_tasks[skey]
        if not flat:
            for i in range(len(tasks), nrows):
                axes[i][j].set_visible(False)
        for i, t in enumerate(tasks):
            ax = flat_axes[(0, i)] if flat else axes[i][j]
            ys = []
            for a in ctx.archs:
                for w in ctx.weightings:
                    c = data.get((skey, a, w), {}).get(t)
                    if c is None:
                        continue
                    ax.plot(c["steps"], c["mean"], color=ctx.colour[a], linestyle=ctx.ls[w], label=ctx.name(a, w))
                    ax.fill_between(c["steps"], c["mean"] - c["std"], c["mean"] + c["std"], color=ctx.colour[a],
                                    alpha=0.18, linewidth=0)
                    ys.append(c["mean"])
            allv = np.concatenate(ys) if ys else np.array([])
            allv = allv[np.isfinite(allv)]
            if allv.size and allv.min() > 0 and allv.max() / allv.min() > 30:
                ax.set_yscale("log")
            if same and (j == 0 or flat):
                ax.set_ylabel(f"{t} training loss (↓ better)")
            elif not same and (j == 0 or flat):
                ax.set_ylabel("training loss (↓ better)")
            if i == len(tasks) - 1 or flat:
                ax.set_xlabel("step")
            if not same:  # each column has its own tasks: name them in every panel
                ax.set_title(f"{t}  ({ctx.sweep_title(skey)})" if skey else t)
            elif skey:
                ax.set_title(ctx.sweep_title(skey) if i == 0 else "")
    extra = _weighting_handles(ctx, markers=False)
    _legend_lines(fig, ctx, extra)
    _save(fig, path)
    return data


def _weighting_handles(ctx, markers=True):
    from matplotlib.lines import Line2D
    if not ctx.many_w:
        return []
    return [Line2D([], [], color="black", linestyle=ctx.ls[w], marker=ctx.marker[w] if markers else None,
                   markersize=4, label=w) for w in ctx.weightings]


def _legend_lines(fig, ctx, extra=()):
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=ctx.colour[a], label=a) for a in ctx.archs] + list(extra)
    fig.tight_layout()
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 4),
               frameon=False)


def sweep_plot_data(rows, field: str) -> dict:
    """{(architecture, weighting): {task: (x values, means, stds)}} + delta_m under task '__delta_m__'."""
    out: dict = {}
    for r in rows:
        if r["n"] == 0 or field not in r["sweep"]:
            continue
        d = out.setdefault((r["architecture"], r["weighting"]), {})
        for t, k in r["main_metric"].items():
            ms = _metric_of(r, t, k)
            if ms is None:
                continue
            d.setdefault(t, []).append((r["sweep"][field], ms["mean"], ms["std"]))
        if r["delta_m"] is not None:
            d.setdefault("__delta_m__", []).append((r["sweep"][field], r["delta_m"], _num(r["delta_m_seed_std"])))
    return out


def figure_sweep(rows, path: str, ctx: _Ctx, field: str) -> dict:
    """Main metric (one panel per task, plus Δm%) vs the swept value; error bars = std over seeds.

    When the sweep changes the task set, a task's panel has points at the values where the task exists.
    """
    data = sweep_plot_data(rows, field)
    _, main, hib = task_meta(rows)  # every task of any sweep value; a task's line has the values where it exists
    panels = list(main) + (["__delta_m__"] if any("__delta_m__" in d for d in data.values()) else [])
    uniform = len(task_sections(rows)) <= 1
    values = []
    for r in rows:
        if field in r["sweep"] and r["sweep"][field] not in values:
            values.append(r["sweep"][field])
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    pos = (lambda v: float(v)) if numeric else (lambda v: values.index(v))
    fig, axes = _subplots(1, len(panels))
    for j, p in enumerate(panels):
        ax = axes[0][j]
        for a in ctx.archs:
            if p == "__delta_m__" and a in ctx.baselines:
                continue
            for w in ctx.weightings:
                pts = sorted(data.get((a, w), {}).get(p, []), key=lambda x: pos(x[0]))
                if not pts:
                    continue
                ax.errorbar([pos(x) for x, _, _ in pts], [m for _, m, _ in pts],
                            yerr=[s if math.isfinite(s) else 0.0 for _, _, s in pts], color=ctx.colour[a],
                            linestyle=ctx.ls[w], marker=ctx.marker[w], markersize=3, capsize=2, label=ctx.name(a, w))
        if not numeric:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([fmt_value(v) for v in values])
        if not uniform:  # a task may exist at some values only: every panel spans all of them
            xs = [pos(v) for v in values]
            pad = 0.08 * (max(xs) - min(xs)) if max(xs) > min(xs) else 0.5
            ax.set_xlim(min(xs) - pad, max(xs) + pad)
            ax.set_xticks(xs)
            ax.set_xticklabels([fmt_value(v) for v in values])
        ax.set_xlabel(short_field(field, ctx.sweep_fields))
        if p == "__delta_m__":
            ax.axhline(0.0, color="black", linewidth=0.8)
            ax.set_ylabel("Δm% vs single task (↑ better)")
        else:
            ax.set_ylabel(_axis_label(p, main[p], _metric_hib(hib, p, main[p])))
    _legend_lines(fig, ctx, _weighting_handles(ctx))
    _save(fig, path)
    return data


def tradeoff_data(runs, tasks: Sequence[str], select: str = "final") -> dict:
    """{(sweep_key, architecture, weighting): [(metric of task a, metric of task b) per finished run]}."""
    a, b = tasks
    out: dict = {}
    for r in runs:
        if not _is_done(r):
            continue
        m = r.get(SELECT[select]) or r.get("metrics") or {}
        info = r.get("tasks") or {}
        if a not in info or b not in info:
            continue
        pa = _num((m.get(a) or {}).get(info[a]["main_metric"]))
        pb = _num((m.get(b) or {}).get(info[b]["main_metric"]))
        out.setdefault((_sweep_key(r["sweep"]), r.get("architecture"), r.get("weighting")), []).append((pa, pb))
    return out


def figure_tradeoff(runs, rows, path: str, ctx: _Ctx, tasks: Sequence[str], select: str = "final",
                    sweep_keys: Sequence[tuple] | None = None) -> dict:
    """Task a's main metric vs task b's, one small point per run, a large one per group mean (± std).

    One panel per sweep value (``sweep_keys``, default: those whose rows have both tasks).
    """
    data = tradeoff_data(runs, tasks, select)
    _, main, hib = task_meta([r for r in rows if all(t in r["main_metric"] for t in tasks)] or rows)
    a, b = tasks
    if sweep_keys is None:
        sweep_keys = [s for s in ctx.sweep_keys if all(t in ctx.tasks.get(s, ((),))[0] for t in tasks)]
    fig, axes = _subplots(1, len(sweep_keys))
    for j, skey in enumerate(sweep_keys):
        ax = axes[0][j]
        for arch in ctx.archs:
            for w in ctx.weightings:
                pts = np.asarray(data.get((skey, arch, w), []), np.float64).reshape(-1, 2)
                if not len(pts):
                    continue
                ax.scatter(pts[:, 0], pts[:, 1], s=9, color=ctx.colour[arch], marker=ctx.marker[w], alpha=0.45,
                           linewidths=0)
                mx, my = pts.mean(0)
                sx, sy = (pts.std(0, ddof=1) if len(pts) > 1 else (0.0, 0.0))
                ax.errorbar([mx], [my], xerr=[sx], yerr=[sy], color=ctx.colour[arch], marker=ctx.marker[w],
                            markersize=5, markeredgecolor="black", markeredgewidth=0.5, capsize=1.5, elinewidth=0.7)
        ax.set_xlabel(_axis_label(a, main[a], _metric_hib(hib, a, main[a]), vertical=False))
        ax.set_ylabel(_axis_label(b, main[b], _metric_hib(hib, b, main[b])))
        if skey:
            ax.set_title(ctx.sweep_title(skey))
    _legend_lines(fig, ctx, _weighting_handles(ctx))
    _save(fig, path)
    return data


def mixing_data(runs, architecture: str) -> dict:
    """{(sweep_key, weighting): {param name: mean over finished seeds (array)}} for one architecture."""
    acc: dict = {}
    for r in runs:
        if not _is_done(r) or r.get("architecture") != architecture or not r.get("mixing"):
            continue
        g = acc.setdefault((_sweep_key(r["sweep"]), r.get("weighting")), {})
        for k, v in r["mixing"].items():
            g.setdefault(k, []).append(np.asarray(v, np.float64))
    return {g: {k: np.mean(np.stack(vs), 0) for k, vs in d.items() if len({v.shape for v in vs}) == 1}
            for g, d in acc.items()}


def _unit_order(name: str):
    kind, _, idx = name.rpartition("_")
    return (0 if "stitch" in name else 1 if "alpha" in name else 2, int(idx) if idx.isdigit() else 10**6, name)


def figure_mixing(runs, path: str, ctx: _Ctx, architecture: str, tasks: Sequence[str] | None = None) -> dict:
    """Heatmaps of learned mixing weights (mean over seeds): one column per unit, one row per (sweep, weighting).

    Cross-stitch (T x T, rows = receiving task, columns = source task;
    per-channel units are averaged over channels), sluice alpha
    ((task, subspace) pairs) and beta (task x layer). ``tasks`` labels the
    ticks; None: each sweep value's own tasks (a sweep may change them).
    """
    data = mixing_data(runs, architecture)
    groups = [(s, w) for s in ctx.sweep_keys for w in ctx.weightings if (s, w) in data]
    units = sorted({k for d in data.values() for k in d}, key=_unit_order)
    shapes = {u: next(d[u].shape for d in data.values() if u in d) for u in units}
    widths = [max(1.9, 0.24 * shapes[u][1] + 1.1) for u in units]
    height = max([1.9] + [0.24 * shapes[u][0] + 1.1 for u in units])
    fig, axes = _subplots(len(groups), len(units), gridspec_kw={"width_ratios": widths})
    fig.set_size_inches(sum(widths), height * len(groups) + 0.3)
    vmax = max([float(np.max(np.abs(m if m.ndim == 2 else m.mean(-1)))) for d in data.values() for m in d.values()]
               + [1e-6])
    im = None
    for i, g in enumerate(groups):
        for j, u in enumerate(units):
            ax = axes[i][j]
            ax.grid(False)
            m = data[g].get(u)
            if m is None:
                ax.axis("off")
                continue
            title = u.replace("mix_", "")
            if m.ndim == 3:
                m = m.mean(-1)
                title += f" (mean of {data[g][u].shape[-1]} ch.)"
            im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
            rl, cl = _mix_ticks(u, m.shape, tasks if tasks is not None else ctx.tasks.get(g[0], ((),))[0])
            ax.set_yticks(range(m.shape[0]))
            ax.set_yticklabels(rl, fontsize=6)
            ax.set_xticks(range(m.shape[1]))
            ax.set_xticklabels(cl, fontsize=6, rotation=90 if m.shape[1] > 3 else 0)
            if max(m.shape) <= 6:
                for (y, x), v in np.ndenumerate(m):
                    ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=5.5,
                            color="white" if abs(v) > 0.6 * vmax else "black")
            head = []
            if ctx.many_w:
                head.append(g[1])
            if g[0]:
                head.append(ctx.sweep_title(g[0]))
            ax.set_title(title + ("\n" + ", ".join(head) if head and j == 0 else ""), fontsize=7)
            if j == 0:
                ax.set_ylabel("to (task)" if "beta" not in u else "task")
            if i == len(groups) - 1:
                ax.set_xlabel("layer" if "beta" in u else "from")
    if im is not None:
        fig.tight_layout()
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02, label="mixing weight")
    fig.suptitle(f"{architecture}: learned mixing weights (mean over seeds)", y=1.02, fontsize=8)
    _save(fig, path)
    return data


def _mix_ticks(unit: str, shape, tasks):
    T = len(tasks)
    if "beta" in unit:
        return list(tasks)[: shape[0]], [f"L{i}" for i in range(shape[1])]
    if shape[0] == T:
        return list(tasks), list(tasks)
    if T and shape[0] % T == 0:
        G = shape[0] // T
        labs = [f"{t}:{g}" for t in tasks for g in range(G)]
        return labs, labs
    return [str(i) for i in range(shape[0])], [str(i) for i in range(shape[1])]


def _slug(s) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))


def plot_all(workdir: str, tasks: Sequence[str] | None = None, select: str = "final", log=print) -> dict:
    """Write every figure that applies into ``<workdir>/figures/``; returns {figure name: path}.

    Figures (PNG): ``main_metric_bars.png``, ``delta_m.png`` (needs a
    single_task baseline), ``learning_curves.png`` (needs train records),
    ``sweep_<field>.png`` per swept field (needs one swept field),
    ``tradeoff_<a>_vs_<b>.png`` (needs >= 2 tasks; ``tasks`` picks a, b; by
    default each sweep value's first two tasks, one figure per distinct pair
    when a swept option changes the task set),
    ``mixing_<architecture>.png`` per architecture with learned mixing
    weights. A figure that does not apply is skipped with a note via ``log``.
    """
    exp = load_experiment(workdir)
    runs = load_runs(workdir)
    rows = aggregate(runs, select=select, experiment=exp)
    out_dir = os.path.join(workdir, "figures")
    written: dict = {}
    live = [r for r in rows if r["n"] > 0]
    if not live:
        log(f"no finished runs under {workdir}: no figures")
        return written
    ctx = _Ctx(runs, live, exp)
    task_list = task_meta(live)[0]  # every task of any sweep value
    uniform = len(task_sections(live)) == 1  # else a swept option changes the task set
    pairs = []  # trade-off figures: --tasks, else each sweep value's first two tasks (one figure per distinct pair)
    if max(len(v[0]) for v in ctx.tasks.values()) >= 2:
        if tasks:
            pairs = [list(tasks)]
            unknown = [t for t in pairs[0] if t not in task_list]
            if len(pairs[0]) != 2 or unknown or not any(all(t in v[0] for t in pairs[0]) for v in ctx.tasks.values()):
                raise ValueError(f"--tasks needs two of {task_list} (of one sweep value), got {pairs[0]}")
        else:
            for v in ctx.tasks.values():
                if len(v[0]) >= 2 and list(v[0][:2]) not in pairs:
                    pairs.append(list(v[0][:2]))
    style = _plt().rc_context(STYLE)
    with style:
        p = os.path.join(out_dir, "main_metric_bars.png")
        figure_metric_bars(live, p, ctx)
        written["main_metric_bars"] = p

        if has_baseline(live) and any(r["architecture"] not in ctx.baselines and r["delta_m"] is not None for r in live):
            p = os.path.join(out_dir, "delta_m.png")
            figure_delta_m(live, p, ctx)
            written["delta_m"] = p
        else:
            log("skip delta_m.png: no single_task baseline (or no multi-task run) to compare with")

        if learning_curve_data(runs):
            p = os.path.join(out_dir, "learning_curves.png")
            figure_learning_curves(runs, p, ctx)
            written["learning_curves"] = p
        else:
            log("skip learning_curves.png: no training records in metrics.jsonl")

        fields = ctx.sweep_fields
        if not fields:
            log("skip sweep_*.png: the experiment has no sweep")
        elif len(fields) > 1:
            log(f"skip sweep_*.png: {len(fields)} swept fields ({', '.join(fields)}); a line plot needs exactly one")
        else:
            nvals = len({json.dumps(r["sweep"][fields[0]]) for r in live})
            if nvals < 2:
                log(f"skip sweep plot: {fields[0]} takes one value only")
            else:
                p = os.path.join(out_dir, f"sweep_{_slug(short_field(fields[0]))}.png")
                figure_sweep(live, p, ctx, fields[0])
                written["sweep"] = p

        if not pairs:
            log("skip tradeoff_*.png: one task only")
        else:
            for n, pair in enumerate(pairs):
                p = os.path.join(out_dir, f"tradeoff_{_slug(pair[0])}_vs_{_slug(pair[1])}.png")
                figure_tradeoff(runs, live, p, ctx, pair, select)
                written["tradeoff" if n == 0 else f"tradeoff_{pair[0]}_vs_{pair[1]}"] = p

        mix_archs = [a for a in ctx.archs if mixing_data(runs, a)]
        if not mix_archs:
            log("skip mixing_*.png: no run has learned mixing weights (cross_stitch / sluice)")
        for a in mix_archs:
            p = os.path.join(out_dir, f"mixing_{_slug(a)}.png")
            figure_mixing(runs, p, ctx, a, task_list if uniform else None)
            written[f"mixing_{a}"] = p
    return written
