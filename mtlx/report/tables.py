"""The comparison table of an experiment directory, as markdown, LaTeX and CSV.

Conventions (the numbers are ``aggregate``'s):
  * mean ± the 95% confidence interval's half-width over the finished seeds
    (the CSV also has the std), n beside; a significance mark (▲/▼) on each
    task's main metric against the baseline, Δm% with its bootstrap interval
    (``mtlx.report.stats``); ``--main``: the main metrics only; failed, unfinished and not
    started runs counted in a ``failed`` column and listed under the table.
  * Best entry per column within each sweep value: bold in markdown and
    LaTeX; the CSV keeps every number plain (so it parses back exactly) and
    lists the columns in which a row is best in its ``best`` column,
    ';'-separated (e.g. ``a/accuracy;delta_m``).
  * A sweep that changes the task set: markdown shows one ``### <sweep
    values> — tasks: ...`` sub-heading and table per task list, LaTeX one
    tabular per list (a spanning title row) in one float, and the CSV one
    file with the union of the columns, empty cells where a row's task list
    lacks the task, and a ``tasks`` column. With one task list (the usual
    case) the output is one plain table.
  * Paper numbers are printed beside ours in ``paper: <column>`` columns.
  * ``avg rank``: each row's mean rank (1 = best) over its tasks' main
    metrics among the rows of its sweep value; with several task sets the
    notes add the ranks across them, Friedman's test and the Nemenyi CD
    (``mtlx.report.ranks``).
  * A tuned experiment (``mtlx.tune``): a ``tuned`` column holds each row's
    selected values and the number of candidates, the notes the protocol and
    the search spaces (``mtlx.report.tuning``); the search runs themselves
    are never rows (``results.is_search_run``).
  * Auxiliary tasks (role 'auxiliary', ``mtlx.tasks.ROLES``) have no
    columns and are left out of Δm%, the tests and the ranks; the notes name
    them (``auxiliary_note``).
  * A task set's joint metrics (``mtlx.tasks.TaskSet.joint_metrics``, e.g.
    one_vs_all's ``multiclass_accuracy``) are columns after the tasks', headed
    by their name alone, with best marks; the notes say what they are
    (``joint_note``).
  * A static-weight sweep on two tasks (``mtlx.frontier``): the notes say
    which rows lie beyond its scalarisation frontier, with significance
    (``mtlx.report.frontier``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Sequence

from mtlx import results
from mtlx.report import frontier, pooling, ranks, stats, tuning
from mtlx.report.aggregate import (
    DELTA_M_CONVENTION, TASK_MEAN, _metric_hib, _num, aggregate, baseline_fallback, baseline_label,
    best_marks, experiment_name, fmt_value, has_baseline,
    metric_columns, metric_of, paired_by_seed, short_field, sweep_label, task_meta, task_sections)
from mtlx.report.paper import PAPER_SWEEP_TAG, compares_weightings, match_paper
from mtlx.tasks import JOINT

# --------------------------------------------------------------------------- number formats


def _decimals(mean: float) -> int:
    if not math.isfinite(mean) or mean == 0:
        return 4
    return int(min(8, max(0, 3 - math.floor(math.log10(abs(mean))))))


def fmt_mean_std(ms, pm: str = " ± ", spread: str = "ci") -> str:
    """``mean ± half-width`` (``spread``: 'ci', the 95% interval's half-width, or 'std'); the mean alone when
    n < 2."""
    m, s = ms["mean"], ms.get(spread, float("nan"))
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


def slug(s) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(s))


# --------------------------------------------------------------------------- the table model


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


def _section_model(tm, idx: Sequence[int], include_loss: bool, multi: bool, main_only: bool = False) -> dict:
    """The part of the table model one task-list section needs (its rows, columns, marks, paper numbers)."""
    rows = [tm["rows"][i] for i in idx]
    prows = [tm["prows"][i] for i in idx]
    extra = {"ranks": [tm["ranks"][i] for i in idx], "tuned": [tm["tuned"][i] for i in idx],
             "tuning": tm["tuning"]}
    cols = metric_columns(rows, include_loss, main_only)
    tasks = task_meta(rows)[0]
    # several sections: only the paper columns that some row of this one has (paper columns may be per task)
    pcols = [c for c in tm["pcols"] if any(p and c in p for p in prows)] if multi else list(tm["pcols"])
    return {"rows": rows, "cols": cols, "marks": best_marks(rows, cols), "prows": prows, "pcols": pcols,
            "with_dm": has_baseline(rows), "sweep_fields": tm["sweep_fields"], "tasks": tasks,
            "title": _section_title(rows, tasks, tm["sweep_fields"]), **extra}


WEIGHT_SCALES = ("weight scales differ across weightings: equal's task weights sum to T (the number of tasks), "
                 "MGDA's and the other simplex-based weightings' sum to 1 (see each weighting's docstring), so the "
                 "total loss's scale, and a penalty's ratio to it (soft_*, sluice), differ between weightings.")


def _notes(tm, select: str) -> list[str]:
    """The lines under the table: what the numbers are, intervals and tests, Δm%'s convention and baseline."""
    rows, base = tm["rows"], baseline_label(tm["exp"])
    what = "final test metrics" if select == "final" else "test metrics at the best validation step"
    notes = [f"{what}; mean ± 95% CI half-width over seeds, n = finished seeds"
             + ("; failed = failed, unfinished or not started runs (not averaged)" if tm["failed"] else "")
             + "; bold = best mean per column within each sweep value."]
    notes.append(stats.notes_text(base or "the baseline", paired_by_seed(tm["exp"])) if tm["with_dm"] else
                 f"± = half-width of the {stats.LEVEL:.0%} confidence interval over seeds (Student t; the CSV also "
                 f"keeps the std); {stats.NO_INTERVAL}. No baseline: no significance test.")
    if tm["main_only"]:
        notes.append("--main: each task's main metric only.")
    notes += auxiliary_note(rows) + joint_note(rows)
    if len(tm["sections"]) > 1:
        notes.append("The sweep changes the task set: one table per task list; Δm%, bold and the Holm correction "
                     "cover the rows of one table only.")
    if tm["with_dm"]:
        only = baseline_fallback(rows)
        notes.append(f"{DELTA_M_CONVENTION}. Baseline: {base} with the same weighting"
                     + (f" (else '{only}')" if only is not None else "") + " and sweep value.")
        notes += [f"No {base} baseline for {sec['title']}: Δm% omitted there."
                  for sec in tm["sections"] if not sec["with_dm"]]
    elif rows and base is None:
        notes.append("No baseline in this experiment (experiment.json's grid.baseline is not set): Δm% omitted.")
    elif rows:
        notes.append(f"No {base} baseline in this experiment: Δm% omitted.")
    if len({r["weighting"] for r in rows}) > 1:
        notes.append(WEIGHT_SCALES[0].upper() + WEIGHT_SCALES[1:])
    if tm["pooled"]:
        notes.append(f"--pool_configs: rows pool runs of different configurations ({pooling.describe(tm['pooled'])}).")
    return (notes + _rank_notes(tm) + tuning.notes(tm["tuning"], rows, tm["tuned"], tm["search_runs"])
            + frontier.table_notes(rows, tm["runs"]) + _paper_notes(tm))


def auxiliary_note(rows) -> list[str]:
    """The line naming the auxiliary tasks the table leaves out ([] when there are none)."""
    aux = list(dict.fromkeys(t for r in rows for t in r.get("auxiliary_tasks") or ()))
    if not aux:
        return []
    return [f"Auxiliary tasks, trained but excluded from the columns, Δm%, the tests and the ranks (main tasks "
            f"only): {', '.join(aux)}."]


def joint_note(rows) -> list[str]:
    """The lines naming the joint-metric and task-mean columns ([] when there are none)."""
    names = list(dict.fromkeys(k for r in rows for k in r["metrics"].get(JOINT, {})))
    means = [k for k in names if k.startswith(TASK_MEAN.format(""))]
    joint = [k for k in names if k not in means]
    return ([f"{', '.join(joint)}: computed from all tasks' predictions at once (the task set's joint metrics, "
             f"mtlx.tasks.TaskSet.joint_metrics); not in Δm%, the tests or the ranks."] if joint else []) + \
        ([f"{', '.join(means)}: per run, the mean over the row's tasks of their main metric, then mean ± CI over "
          f"seeds (the paper reports such a mean); not in Δm%, the tests or the ranks."] if means else [])


def _rank_notes(tm) -> list[str]:
    notes = []
    if any(r is not None for r in tm["ranks"]):
        notes.append("avg rank = mean over the row's tasks of its rank (1 = best) by the task's main metric mean "
                     "among the rows of its sweep value; ties share their mean rank (scipy.stats.rankdata).")
    if isinstance(tm["across"], dict):
        notes.append(ranks.note(tm["across"]))
    return notes


def _paper_notes(tm) -> list[str]:
    paper = tm["exp"].get("paper") or {}
    if not tm["pcols"]:  # a paper that reports curves, not numbers: its note alone
        return [f"paper: {paper['note']}"] if paper.get("note") else []
    how = "weighting" if compares_weightings(tm["rows"]) else "architecture"
    if any(PAPER_SWEEP_TAG.search(str(k)) for k in paper.get("rows") or {} if k not in tm["unmatched"]):
        how += " label and sweep value (keys like 'mmoe [group=1]')"
    else:
        how += " label"
    notes = [f"paper: numbers reported in the paper, matched by {how}."
             + (f" {paper.get('note')}" if paper.get("note") else "")]
    if tm["unmatched"]:
        notes.append(f"paper rows without a matching run: {', '.join(tm['unmatched'])}.")
    return notes


def table_model(workdir: str, select: str | None = None, include_loss: bool = False, main_only: bool = False,
                pool_configs: bool = False) -> dict:
    """Everything the three table formats need, computed once.

    ``sections``: one per distinct task list (``task_sections``), each with
    its own columns, best marks and paper columns; one section is the usual
    single table. ``main_only``: each task's main metric only (``--main``).
    Runs of one row whose configs differ beyond the seed raise
    ``pooling.PoolingError`` unless ``pool_configs`` (then the notes say so).
    """
    exp = results.read_experiment(workdir)
    select = results.selection(select, exp)  # None: the experiment's own (config.select)
    every = results.load_runs(workdir)
    runs = [r for r in every if not results.is_search_run(r["run_id"])]  # a tuned experiment's search runs
    pooled = pooling.check(runs, exp, pool=pool_configs)
    rows = aggregate(runs, select=select, experiment=exp)
    cols = metric_columns(rows, include_loss, main_only)
    pcols, prows, unmatched = match_paper(rows, exp.get("paper"))
    tm = {"exp": exp, "runs": runs, "rows": rows, "cols": cols, "with_dm": has_baseline(rows),
          "marks": best_marks(rows, cols), "pcols": pcols, "prows": prows, "unmatched": unmatched,
          "sweep_fields": sorted({k for r in rows for k in r["sweep"]}), "main_only": main_only, "pooled": pooled,
          "failed": [(r, f) for r in rows for f in r["failed"]], "name": experiment_name(exp, runs, workdir),
          "ranks": ranks.row_ranks(rows), "across": ranks.across_task_sets(rows),
          "tuning": results.read_tuning(workdir), "search_runs": len(every) - len(runs)}
    tm["tuned"] = tuning.rows_of(tm["tuning"], rows)
    groups = task_sections(rows)
    tm["sections"] = [_section_model(tm, idx, include_loss, len(groups) > 1, main_only) for idx in groups]
    tm["notes"] = _notes(tm, select)
    return tm


# --------------------------------------------------------------------------- cells


def column_hib(rows, task: str, metric: str) -> bool:
    """higher_is_better of the column (task, metric) (a joint metric's too), from the first row that has it."""
    return next(_metric_hib(r["higher_is_better"], task, metric) for r in rows
                if metric in (r.get("higher_is_better") or {}).get(task, {}))


def column_title(task: str, metric: str) -> str:
    """A column's heading: 'task metric', a joint metric's name alone."""
    return metric if task == JOINT else f"{task} {metric}"


def _header_cells(tm, arrow_up: str, arrow_down: str) -> list[str]:
    rows = tm["rows"]
    head = [short_field(f, tm["sweep_fields"]) for f in tm["sweep_fields"]] + ["architecture", "weighting", "n"]
    if any(r["failed"] for r in rows):
        head.append("failed")
    head += [f"{column_title(t, k)} {arrow_up if column_hib(rows, t, k) else arrow_down}" for t, k in tm["cols"]]
    if tm["with_dm"]:
        head.append(f"Δm% {arrow_up}")
    if any(r is not None for r in tm["ranks"]):
        head.append(f"avg rank {arrow_down}")
    if tm["tuning"]:
        head.append("tuned")
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
            ms = metric_of(r, t, k)
            s = fmt_mean_std(ms, pm) if r["n"] and ms is not None else "–"
            s = bold(s) if f"{t}/{k}" in mk else s
            sig = (r["tests"].get(t) or {}).get("mark", "") if k == r["main_metric"].get(t) else ""
            cells.append(f"{s} {sig}" if sig else s)
        if tm["with_dm"]:
            dm = r["delta_m"]
            s = dm_fmt(dm) if dm is not None and math.isfinite(dm) else "–"
            cells.append((bold(s) if "delta_m" in mk else s) + _dm_interval(r, dm_fmt))
        cells += _rank_tuned_cells(tm, len(out))
        cells.append(fmt_params(r["param_count"]))
        cells += [fmt_num((pr or {}).get(c)) if pr and c in pr else "" for c in tm["pcols"]]
        out.append(cells)
    return out


def _rank_tuned_cells(tm, i: int) -> list[str]:
    """Row ``i``'s avg rank and tuned cells (when the table has those columns)."""
    cells = []
    if any(r is not None for r in tm["ranks"]):
        cells.append("–" if tm["ranks"][i] is None else f"{tm['ranks'][i]:.2f}")
    if tm["tuning"]:
        cells.append(tuning.cell(tm["tuned"][i]))
    return cells


def _dm_interval(r, dm_fmt) -> str:
    """`` [lo, hi]``: Δm%'s bootstrap interval; '' without one (n < 2, the baseline itself)."""
    lo, hi = r.get("delta_m_ci") or (float("nan"), float("nan"))
    if r["is_baseline"] or not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{dm_fmt(lo)}, {dm_fmt(hi)}]"


LIST_NOT_STARTED = 20  # more runs not started than this (an unfinished sweep): one count per row


def _failure_lines(tm) -> list[str]:
    """One line per failed or unfinished run; more than ``LIST_NOT_STARTED`` runs not started yet (an
    unfinished sweep of thousands) as one count per row instead."""
    lines, waiting = [], {}
    many = sum(f["status"] == results.NOT_STARTED for _, f in tm["failed"]) > LIST_NOT_STARTED
    for r, f in tm["failed"]:
        sweep = f", {sweep_label(r['sweep'], tm['sweep_fields'])}" if r["sweep"] else ""
        if many and f["status"] == results.NOT_STARTED:
            where = f"{r['architecture']}/{r['weighting']}{sweep}"
            waiting[where] = waiting.get(where, 0) + 1
        else:
            lines.append(f"{f['run_id']} ({r['architecture']}/{r['weighting']}, seed {f['seed']}{sweep}): "
                         f"{f['status']}" + (f" — {f['failure']}" if f["failure"] else ""))
    return lines + [f"{where}: {n} run(s) not started" for where, n in waiting.items()]


# --------------------------------------------------------------------------- markdown


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


# --------------------------------------------------------------------------- LaTeX


def _tex_escape(s: str) -> str:
    s = str(s).replace("\\", "\x00")
    for a, b in (("{", r"\{"), ("}", r"\}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("–", "--"), ("—", "---"), ("Δm", r"$\Delta_m$"), ("Δ", r"$\Delta$"),
                 ("±", r"$\pm$"), ("↑", r"$\uparrow$"), ("↓", r"$\downarrow$"),
                 ("▲", r"$^{\blacktriangle}$"), ("▼", r"$^{\blacktriangledown}$"), ("\x00", r"\textbackslash{}")):
        s = s.replace(a, b)
    return s


def _latex_tabular(sec, title: str | None = None) -> list[str]:
    """One booktabs tabular; ``title`` (a task-list section's heading) goes in a first spanning row."""
    head = [_tex_escape(h) for h in _header_cells(sec, "↑", "↓")]
    body = _body_cells(sec, lambda s: f"\\textbf{{{s}}}", " $\\pm$ ")
    body = [[c if c.startswith("\\textbf") or "$\\pm$" in c else _tex_escape(c) for c in cells] for cells in body]
    body = [[c.replace("–", "--").replace("▲", r"$^{\blacktriangle}$").replace("▼", r"$^{\blacktriangledown}$")
             for c in cells] for cells in body]
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
    """One table float (every note in its caption); one tabular per task-list section (each with its own
    header), stacked."""
    out = ["% generated by mtlx.report (python -m launch.table); needs \\usepackage{booktabs,amssymb}",
           "\\begin{table}[t]", "\\centering", "\\small",
           f"\\caption{{{_tex_escape(tm['name'])}: " + _tex_escape(" ".join(tm["notes"])) + "}",
           f"\\label{{tab:{slug(tm['name'])}}}"]
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


# --------------------------------------------------------------------------- CSV


def _csv_num(v) -> str:
    v = _num(v)
    return repr(v) if math.isfinite(v) else ""


def _csv_head(tm, cols_all, multi: bool) -> list[str]:
    head = list(tm["sweep_fields"]) + ["architecture", "weighting", "n", "n_failed", "seeds"]
    if multi:
        head.append("tasks")
    for t, k in cols_all:
        head += [f"{t}/{k}/mean", f"{t}/{k}/std", f"{t}/{k}/ci95"]
    if tm["with_dm"]:
        test = "paired" if paired_by_seed(tm["exp"]) else "welch"
        head += [f"{t}/p_{test}_holm" for t in task_meta(tm["rows"])[0]]
        head += ["delta_m", "delta_m_seed_std", "delta_m_ci95_lo", "delta_m_ci95_hi"]
    head += ["avg_rank"] + (tuning.CSV_HEAD if tm["tuning"] else [])
    head += ["param_count", "wall_time_s", "steps_per_s"]
    return head + [f"paper/{c}" for c in tm["pcols"]] + ["best", "failed_runs"]


def _csv_cells(tm, i, mk, pr, cols_all, multi: bool) -> list:
    r = tm["rows"][i]
    nan = {"mean": float("nan"), "std": float("nan"), "ci": float("nan")}
    cells = [json.dumps(r["sweep"].get(f)) if isinstance(r["sweep"].get(f), (list, dict)) else r["sweep"].get(f, "")
             for f in tm["sweep_fields"]]
    cells += [r["architecture"], r["weighting"], r["n"], len(r["failed"]), " ".join(str(s) for s in r["seeds"])]
    if multi:
        cells.append(";".join(r["main_metric"]))
    for t, k in cols_all:
        ms = metric_of(r, t, k) or nan
        cells += [_csv_num(ms["mean"]), _csv_num(ms["std"]), _csv_num(ms["ci"])]
    if tm["with_dm"]:
        cells += [_csv_num((r["tests"].get(t) or {}).get("p_holm")) for t in task_meta(tm["rows"])[0]]
        cells += [_csv_num(r["delta_m"]), _csv_num(r["delta_m_seed_std"])]
        cells += [_csv_num(v) for v in (r["delta_m_ci"] or (None, None))]
    cells.append(_csv_num(tm["ranks"][i]))
    cells += tuning.csv_cells(tm["tuned"][i]) if tm["tuning"] else []
    cells += [_csv_num(r["param_count"]), _csv_num(r["wall_time_s"]), _csv_num(r["steps_per_s"])]
    cells += [_csv_num((pr or {}).get(c)) for c in tm["pcols"]]
    order = [f"{t}/{k}" for t, k in cols_all] + ["delta_m"]
    return cells + [";".join(c for c in order if c in mk), " ".join(f["run_id"] for f in r["failed"])]


def render_csv(tm) -> str:
    """Wide CSV, plain numbers (full precision), a ``best`` column, failures in ``failed_runs``.

    Rows with different task lists share one file: the union of the metric
    columns, empty cells where a row's task list lacks the task, and a
    ``tasks`` column (';'-separated) naming each row's tasks.
    """
    cols_all = metric_columns(tm["rows"], include_loss=True)
    marks = best_marks(tm["rows"], cols_all)
    multi = len(tm["sections"]) > 1
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_csv_head(tm, cols_all, multi))
    for i, (mk, pr) in enumerate(zip(marks, tm["prows"])):
        w.writerow(_csv_cells(tm, i, mk, pr, cols_all, multi))
    return buf.getvalue()


# --------------------------------------------------------------------------- entry points


def markdown_table(workdir: str, select: str | None = None, main_only: bool = False, pool_configs: bool = False) -> str:
    """The experiment's comparison table as markdown (what launch.run prints after a sweep)."""
    return render_markdown(table_model(workdir, select, main_only=main_only, pool_configs=pool_configs))


def write_tables(workdir: str, select: str | None = None, main_only: bool = False, pool_configs: bool = False) -> dict:
    """Write table.md, table.tex, table.csv into ``workdir`` atomically (the CSV has every metric, with std and
    CI half-width, whatever ``main_only``).

    Returns {'md'|'tex'|'csv': path, 'markdown': text}.
    """
    tm = table_model(workdir, select, main_only=main_only, pool_configs=pool_configs)
    md = render_markdown(tm)
    paths = {}
    for ext, text in (("md", md), ("tex", render_latex(tm)), ("csv", render_csv(tm))):
        paths[ext] = os.path.join(workdir, f"table.{ext}")
        results.atomic_write_text(paths[ext], text)
    paths["markdown"] = md
    return paths
