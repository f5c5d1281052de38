"""The numbers behind the tables and figures: seed means, delta_m, best marks, paper matching.

Everything here reads run directories through ``mtlx.results`` only (no JAX,
no model code).

Conventions
  * A *group* is one (sweep value, architecture, weighting) cell; its seeds
    are averaged. Mean and std are over the seeds whose run finished
    (``status == "done"``); std uses ddof=1 and is NaN when n < 2; ``ci`` is
    the half-width of the 95% Student-t interval (``mtlx.report.stats``).
    Failed or unfinished runs are counted and listed, never averaged.
  * delta_m (Maninis et al. 2019), in percent, on the seed-mean main metrics:
    ``(1/T) sum_t (-1)^{l_t} (M_m,t - M_b,t) / M_b,t * 100`` with ``l_t = 1``
    when lower is better for task t's main metric: the mean over tasks of the
    signed relative change against the baseline, positive is better
    (``DELTA_M_CONVENTION``, the wording of the README and the tables). The
    baseline is the
    architecture label of experiment.json's ``grid.baseline`` (None: no
    baseline, no delta_m), with the same sweep value and the same weighting,
    else the baseline's only weighting, over the row's own tasks. Its
    interval (``delta_m_ci``) is a seeded bootstrap over the per-seed Δm.
  * Auxiliary tasks (role 'auxiliary': ``results.task_roles``) are kept out
    of a row's tasks: Δm, the columns, tests, ranks and best marks cover the
    main tasks only; the row lists them in ``auxiliary_tasks`` with their
    seed means in ``auxiliary_metrics``.
  * Significance (``tests``): Welch's t-test of each task's main metric
    against the baseline row's, Holm-corrected per task across the rows of
    one task-list section (``mtlx.report.stats``); the paired t-test over
    the seeds both rows finished when each seed draws its own data
    (``paired_by_seed``: experiment.json's ``grid.seed_paths``).
  * Metric direction: the run summaries' ``tasks`` {task: {main_metric,
    higher_is_better}}; a metric they do not list (the eval loss) takes
    ``mtlx.tasks.higher_is_better(kind, metric)``.
  * Task lists: a swept option may change the task set (census-income's
    ``task_set.options.group``), so each row has its own tasks, main metrics
    and higher_is_better. Rows with different task lists are never compared
    (``task_sections``).
  * Best entry: per column, per sweep value and task list. Ties are all marked.
  * Joint metrics (a task set's metrics of all its tasks' predictions at
    once, ``mtlx.tasks.TaskSet.joint_metrics``, e.g. one_vs_all's
    multi-class accuracy): a row's ``metrics`` and ``higher_is_better`` hold
    them under the pseudo-task ``mtlx.tasks.JOINT`` (directions: the
    summaries' ``results.JOINT_METRICS``); ``metric_columns`` adds them after
    the tasks' columns. They are not in Δm, the tests or the ranks.
  * Task mean (``experiment.json["paper"]["task_mean"]``, for a paper that
    reports the mean over tasks, e.g. DMTRL's mean error over alphabets):
    each run's mean over the row's main tasks of their shared main metric,
    shown as the joint metric ``task-mean <metric>``.
  * Paper numbers: ``mtlx.report.paper``.
"""

from __future__ import annotations

import json
import math
import os
from collections import OrderedDict
from typing import Iterable, Mapping, Sequence

import numpy as np

from mtlx import results, tasks as tasks_lib
from mtlx.tasks import JOINT
from mtlx.report import stats

SELECT = results.SELECT
DELTA_M_CONVENTION = ("Δm% (Maninis et al. 2019) = the mean over tasks of the signed relative change (%) of each "
                      "task's main metric against the baseline, signed so that positive is better")
load_runs = results.load_runs
TASK_MEAN = "task-mean {}"  # the column experiment.json's paper.task_mean asks for (``_add_task_mean``)

# --------------------------------------------------------------------------- experiment.json


def grid_of(exp: Mapping) -> Mapping:
    """experiment.json's ``grid`` ({} for an empty directory)."""
    return exp.get("grid") or {}


def baseline_label(exp: Mapping) -> str | None:
    """The architecture label delta_m compares with (``grid.baseline``); None: no baseline."""
    return grid_of(exp).get("baseline")


def _label(entry) -> str:
    """An architecture/weighting entry of the grid: its label."""
    return str(entry["label"]) if isinstance(entry, Mapping) else str(entry)


def experiment_name(exp: Mapping, runs: Sequence[Mapping], workdir: str) -> str:
    """experiment.json's name, else the runs', else the directory's."""
    return (exp.get("name") or next((r.get("experiment") for r in runs if r.get("experiment")), None)
            or os.path.basename(os.path.abspath(workdir)))


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
    """Mean, std (ddof=1) and ``ci`` (half-width of the 95% Student-t interval) over the finite values;
    std and ci are NaN when n < 2."""
    vals = [v for v in (_num(x) for x in values) if math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "ci": float("nan"), "n": 0, "values": []}
    a = np.asarray(vals, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if n > 1 else float("nan"),
            "ci": stats.ci_half_width(vals), "n": n, "values": vals}


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
    return run.get("status") == results.DONE


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


# --------------------------------------------------------------------------- metric direction


def _task_info(runs) -> tuple[list, dict, dict, dict, list]:
    """The main tasks in order; main metric, higher_is_better and kind (None when not written) per task
    (auxiliary ones too); and the auxiliary tasks in order, from the summaries (``results.task_roles``).

    The order is the task set's when every task's summary entry has an ``index`` (its position in the task
    set; summary.json's keys are sorted), else the order of first appearance."""
    order, main, hib, kind, index, roles = [], {}, {}, {}, {}, {}
    for r in runs:
        for t, role in results.task_roles(r).items():
            roles.setdefault(t, role)
        for t, info in (r.get("tasks") or {}).items():
            if t not in main:
                order.append(t)
                main[t] = info["main_metric"]
                hib[t] = dict(info["higher_is_better"])
                kind[t] = info.get("kind")
                index[t] = info.get("index")
    if order and all(isinstance(index[t], int) for t in order):  # the task set's order, when the summaries say it
        order.sort(key=lambda t: index[t])
        main, hib, kind = ({t: d[t] for t in order} for d in (main, hib, kind))
    aux = [t for t in order if roles.get(t) == tasks_lib.AUXILIARY]
    return [t for t in order if t not in aux], main, hib, kind, aux


def metric_direction(hib: Mapping, kind: str | None, task: str, metric: str) -> bool:
    """higher_is_better of one metric: the summary's, else ``mtlx.tasks.higher_is_better`` (the eval loss)."""
    if metric in hib:
        return bool(hib[metric])
    known = tasks_lib.higher_is_better(kind, metric)
    if known is None:
        raise ValueError(f"metric {metric!r} of task {task!r} (kind {kind!r}) has no direction: the run summaries' "
                         f"tasks.{task}.higher_is_better lists {sorted(hib)}, and mtlx.tasks.METRICS does not know it")
    return known


def _metric_hib(hib: Mapping, task: str, metric: str) -> bool:
    """higher_is_better of a column, from a row's (complete) ``higher_is_better`` table."""
    return bool(hib[task][metric])


# --------------------------------------------------------------------------- rows


def _orders(runs, exp) -> tuple[list, list, dict]:
    """Architecture labels (the baseline first, then the grid's order, then first appearance), weightings and
    sweep values, in order."""
    grid = grid_of(exp)
    archs = [_label(a) for a in grid.get("architectures") or []]
    weights = [_label(w) for w in grid.get("weightings") or []]
    for r in runs:
        if r.get("architecture") not in archs:
            archs.append(r.get("architecture"))
        if r.get("weighting") not in weights:
            weights.append(r.get("weighting"))
    base = baseline_label(exp)
    archs = [a for a in archs if a == base] + [a for a in archs if a != base]
    sweep_values = {f: [json.dumps(v, sort_keys=True) for v in vals] for f, vals in (grid.get("sweep") or {}).items()}
    return archs, weights, sweep_values


def _sweep_sort_key(sweep_key: tuple, sweep_values: Mapping) -> tuple:
    out = []
    for field, v in sweep_key:
        known = sweep_values.get(field, [])
        val = json.loads(v)
        num = float(val) if isinstance(val, (int, float)) and not isinstance(val, bool) else None
        out.append((known.index(v) if v in known else len(known), num if num is not None else math.inf, v))
    return tuple(out)


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
        f = (str(f.get("message", "")) + (f" ({where})" if where else "")
             + "".join(f"; {k}: {v}" for k, v in rest.items()))
    f = str(f).strip().splitlines()
    return (f[-1] if f else "")[:200]


def _group_metrics(per_run, tasks, main, hib, kind) -> tuple[dict, dict]:
    """{task: {metric: mean_std}} (main metric first) and the complete higher_is_better of those metrics."""
    metrics, full_hib = {}, {}
    for t in tasks:
        names = [main[t]] + sorted({k for m in per_run for k in (m.get(t) or {})} - {main[t]})
        metrics[t] = {k: mean_std([(m.get(t) or {}).get(k) for m in per_run]) for k in names}
        full_hib[t] = {k: metric_direction(hib.get(t, {}), kind.get(t), t, k) for k in names}
    return metrics, full_hib


def _joint_directions(runs) -> dict:
    """{joint metric: higher_is_better} over ``runs``' summaries (first seen wins), in order of appearance."""
    out: dict = {}
    for r in runs:
        for k, hib in results.joint_directions(r).items():
            out.setdefault(k, hib)
    return out


def _add_task_mean(metrics, full_hib, per_run, tasks, main) -> None:
    """``TASK_MEAN`` as a joint metric: per run, the mean over the row's main tasks of their main metric
    (when they share one); then mean and CI over the runs like any column. Not in Δm, the tests or ranks."""
    names = {main[t] for t in tasks}
    if len(tasks) < 2 or len(names) != 1:
        return
    k = names.pop()
    per = [float(np.mean([m[t][k] for t in tasks])) if all(k in (m.get(t) or {}) for t in tasks) else None
           for m in per_run]
    metrics.setdefault(JOINT, {})[TASK_MEAN.format(k)] = mean_std(per)
    full_hib.setdefault(JOINT, {})[TASK_MEAN.format(k)] = full_hib[tasks[0]][k]


def _row(key, members, task_info, select: str, base: str | None, task_mean: bool = False) -> dict:
    """One group's row (see ``aggregate``)."""
    skey, arch, w = key
    tasks, main, hib, kind, aux = task_info
    done = sorted((r for r in members if _is_done(r)), key=_seed_order)
    bad = [r for r in members if not _is_done(r)]
    per_run = []
    for r in done:
        m = r.get(SELECT[select])
        per_run.append(m if m is not None else r.get("metrics") or {})
    metrics, full_hib = _group_metrics(per_run, tasks, main, hib, kind)
    aux_metrics = _group_metrics(per_run, aux, main, hib, kind)[0]
    joint = _joint_directions(done)
    if joint:  # the task set's joint metrics, as the pseudo-task JOINT
        metrics[JOINT] = {k: mean_std([(m.get(JOINT) or {}).get(k) for m in per_run]) for k in joint}
        full_hib[JOINT] = joint
    if task_mean:
        _add_task_mean(metrics, full_hib, per_run, tasks, main)
    return {
        "sweep": dict(members[0]["sweep"]), "sweep_key": skey, "architecture": arch, "weighting": w,
        "architecture_name": next((r["architecture_name"] for r in members if r.get("architecture_name")), arch),
        "is_baseline": base is not None and arch == base,
        "n": len(done), "seeds": [r.get("seed") for r in done], "run_ids": [r["run_id"] for r in done],
        "failed": [{"run_id": r["run_id"], "seed": r.get("seed"), "status": r.get("status"),
                    "failure": _failure_text(r.get("failure"))} for r in bad],
        "metrics": metrics, "main_metric": {t: main[t] for t in tasks}, "higher_is_better": full_hib,
        "auxiliary_tasks": list(aux), "auxiliary_metrics": aux_metrics, "per_run_metrics": per_run,
        "param_count": mean_std([r.get("param_count") for r in done])["mean"],
        "wall_time_s": mean_std([r.get("wall_time_s") for r in done])["mean"],
        "steps_per_s": mean_std([r.get("steps_per_s") for r in done])["mean"],
        "delta_m": None, "delta_m_seed_std": None, "delta_m_ci": None, "baseline": None, "tests": {},
    }


def aggregate(runs: Sequence[dict], select: str = "final", experiment: Mapping | None = None) -> list[dict]:
    """One row per (sweep value, architecture, weighting) group.

    ``experiment``: the parsed experiment.json (row order, sweep values, the
    baseline label); by default read from the directory ``load_runs`` found
    the runs in. ``select``: 'final' (``metrics``) or 'best_validation'
    (``test_at_best_validation``; a run where it is null falls back to its
    final metrics). Each row holds ``sweep``, ``architecture``,
    ``weighting``, ``is_baseline``, ``n`` (finished seeds), ``seeds``,
    ``run_ids``, ``failed`` (list of {run_id, seed, status, failure}),
    ``metrics`` ({task: {metric: {mean, std, n, values}}}), ``main_metric``,
    ``higher_is_better`` ({task: {metric: bool}} for every metric of the row;
    both over the group's own tasks, see ``task_sections``), ``delta_m``
    (None without a baseline), ``delta_m_seed_std`` (std over seeds of each
    seed's delta_m against the baseline mean), ``delta_m_ci`` ((lo, hi): the
    bootstrap interval over those), ``tests`` ({task: {p, p_holm, better,
    mark, test}}: Welch or paired against the baseline; {} for the baseline), ``baseline``
    (which group), ``param_count``, ``wall_time_s``, ``steps_per_s``.
    Rows are ordered by sweep value, then architecture (the baseline first,
    then the grid's order), then weighting.
    """
    if select not in SELECT:
        raise ValueError(f"select={select!r} is not valid; choose one of {sorted(SELECT)}")
    if experiment is None:  # the experiment.json that load_runs found the runs under
        experiment = results.read_experiment(runs[0]["workdir"]) if runs and runs[0].get("workdir") else {}
    base = baseline_label(experiment)
    task_mean = bool((experiment.get("paper") or {}).get("task_mean"))
    arch_order, w_order, sweep_values = _orders(runs, experiment)
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    by_sweep: dict = {}
    for r in runs:
        groups.setdefault((_sweep_key(r["sweep"]), r.get("architecture"), r.get("weighting")), []).append(r)
        by_sweep.setdefault(_sweep_key(r["sweep"]), []).append(r)
    rows = []
    for key, members in groups.items():
        # the group's own tasks (a sweep may change the task set), else its sweep value's, else everyone's
        info = _task_info(members)
        info = info if info[0] else _task_info(by_sweep[key[0]])
        rows.append(_row(key, members, info if info[0] else _task_info(runs), select, base, task_mean))

    def order(row):
        a, w = row["architecture"], row["weighting"]
        return (_sweep_sort_key(row["sweep_key"], sweep_values),
                arch_order.index(a) if a in arch_order else len(arch_order),
                w_order.index(w) if w in w_order else len(w_order))

    rows.sort(key=order)
    _attach_delta_m(rows, paired_by_seed(experiment))
    _holm_per_section(rows)
    return rows


# --------------------------------------------------------------------------- delta_m


def _only_weighting(candidates: Sequence[Mapping]) -> str | None:
    """The baseline's only weighting (None when it ran with several)."""
    weightings = {b["weighting"] for b in candidates}
    return next(iter(weightings)) if len(weightings) == 1 else None


def find_baseline(row: Mapping, rows: Sequence[Mapping]) -> Mapping | None:
    """The baseline row that ``row`` is compared with (None if there is none).

    The baseline with the row's weighting first, else the baseline's only
    weighting (a baseline run with one weighting serves every weighting);
    identical sweep value first, else a baseline whose sweep agrees on every
    field it has (e.g. a baseline run once without the swept architecture
    option). The baseline must have every task of ``row`` with the same main
    metric (a sweep may change the task set).
    """
    mine_main = row.get("main_metric") or {}
    cands = [b for b in rows if b["is_baseline"] and b["n"] > 0
             and all((b.get("main_metric") or {}).get(t) == k for t, k in mine_main.items())]
    for w in (row["weighting"], _only_weighting(cands)):
        same_w = [b for b in cands if b["weighting"] == w]
        exact = [b for b in same_w if b["sweep_key"] == row["sweep_key"]]
        if exact:
            return exact[0]
        mine = dict(row["sweep_key"])
        subset = [b for b in same_w if all(mine.get(k) == v for k, v in b["sweep_key"])]
        if subset:
            return max(subset, key=lambda b: len(b["sweep_key"]))
    return None


def paired_by_seed(exp: Mapping) -> bool:
    """Whether the runs of one seed share their data (the grid sets fields to the seed: ``grid.seed_paths``),
    so that the tests against the baseline pair them by seed."""
    return bool(grid_of(exp).get("seed_paths"))


def _attach_delta_m(rows, paired: bool = False) -> None:
    """delta_m of each row over its own tasks, against ``find_baseline``; the tests paired by seed or not."""
    for row in rows:
        base = find_baseline(row, rows)
        if base is None or row["n"] == 0:
            continue
        main, tasks = row["main_metric"], list(row["main_metric"])
        main_hib = {t: _metric_hib(row["higher_is_better"], t, main[t]) for t in tasks}
        b = {t: base["metrics"][t][main[t]]["mean"] for t in tasks}
        row["delta_m"] = delta_m({t: row["metrics"][t][main[t]]["mean"] for t in tasks}, b, main_hib)
        per_seed = [delta_m({t: (m.get(t) or {}).get(main[t]) for t in tasks}, b, main_hib)
                    for m in row["per_run_metrics"]]
        row["delta_m_seed_std"] = mean_std(per_seed)["std"]
        row["delta_m_ci"] = stats.bootstrap_ci(per_seed)
        row["tests"] = {} if row is base else _tests(row, base, paired)
        row["baseline"] = (f"{base['architecture']}/{base['weighting']}"
                           + (f" ({sweep_label(base['sweep'])})" if base["sweep"] else ""))


def _by_seed(row, task: str, metric: str) -> dict:
    """{seed: the row's run value of task's metric} (None where a run lacks it)."""
    return {s: (m.get(task) or {}).get(metric) for s, m in zip(row["seeds"], row["per_run_metrics"])}


def _tests(row, base, paired: bool) -> dict:
    """{task: {"p", "better", "test"}}: the t-test (paired by seed, else Welch's) of the row's main metric
    against the baseline's, per task."""
    out = {}
    for t, k in row["main_metric"].items():
        mine, theirs = metric_of(row, t, k), metric_of(base, t, k)
        if mine is None or theirs is None:
            continue
        hib = _metric_hib(row["higher_is_better"], t, k)
        if paired:  # the direction of the mean per-seed difference: the means may cover other seeds
            p, diff = stats.paired_test(_by_seed(row, t, k), _by_seed(base, t, k))
            better = (diff > 0) == hib
        else:
            p, better = stats.welch_p(mine["values"], theirs["values"]), (mine["mean"] > theirs["mean"]) == hib
        out[t] = {"p": p, "better": better, "test": "paired" if paired else "welch", "p_holm": float("nan")}
    return out


def _holm_per_section(rows) -> None:
    """Holm's correction of the rows' p-values, per task, across the rows of one task-list section."""
    for idx in task_sections(rows):
        for t in {t for i in idx for t in rows[i]["tests"]}:
            cells = [rows[i]["tests"][t] for i in idx if t in rows[i]["tests"]]
            for cell, adj in zip(cells, stats.holm([c["p"] for c in cells])):
                cell["p_holm"] = adj
                cell["mark"] = stats.mark(adj, cell["better"])


def has_baseline(rows) -> bool:
    return any(r["delta_m"] is not None for r in rows)


def baseline_labels(rows) -> set:
    """Architecture labels of the baseline rows (at most one: ``grid.baseline``)."""
    return {r["architecture"] for r in rows if r["is_baseline"]}


def baseline_fallback(rows) -> str | None:
    """The baseline's only weighting (what a row whose weighting the baseline lacks is compared with), else None."""
    return _only_weighting([r for r in rows if r["is_baseline"] and r["n"] > 0])


# --------------------------------------------------------------------------- columns, best marks


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


def metric_columns(rows, include_loss: bool = False, main_only: bool = False) -> list[tuple[str, str]]:
    """(task, metric) columns, tasks in the task set's order (the summaries' ``tasks``): each task's main
    metric first, then its other metrics (``main_only``: the main metric only); then the joint metrics
    as (``JOINT``, name) (also with ``main_only``: each is a headline number of its task set)."""
    cols = []
    tasks, main, _ = task_meta(rows)
    for t in tasks:
        names = [main[t]] + ([] if main_only else
                             sorted({k for r in rows for k in r["metrics"].get(t, {})} - {main[t]}))
        cols += [(t, k) for k in names if include_loss or k != tasks_lib.LOSS or k == main[t]]
    joint = list(dict.fromkeys(k for r in rows for k in r["metrics"].get(JOINT, {})))
    return cols + [(JOINT, k) for k in joint]



def metric_of(row, task: str, metric: str) -> dict | None:
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
        for t, k in columns:
            vals = {i: metric_of(rows[i], t, k)["mean"] for i in idx if metric_of(rows[i], t, k) is not None}
            if vals:
                higher = next(_metric_hib(rows[i]["higher_is_better"], t, k) for i in vals)
                _mark(marks, vals, higher, f"{t}/{k}")
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
