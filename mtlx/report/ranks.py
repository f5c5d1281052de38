"""Average ranks, Friedman's test and the Nemenyi critical difference (Demšar 2006), and the CD diagram.

Conventions (the table's notes say them):
  * Ranks are by each task's MAIN metric mean over seeds, 1 = best (the
    direction from the summaries' ``higher_is_better``, i.e.
    ``mtlx.tasks.higher_is_better``), ties sharing the mean of their ranks
    (``scipy.stats.rankdata``, method 'average').
  * A table row's ``avg rank``: the mean over its tasks of its rank among
    the rows of its sweep value and task list (the rows the bold marks
    compare).
  * Across task sets: a *method* is an (architecture, weighting) pair; a
    *block* (Demšar's "data set") is one (sweep value, task). Only blocks
    where every method has a number are used (Friedman's test needs a
    complete design). Friedman's chi-square test
    (``scipy.stats.friedmanchisquare``) asks whether the methods' ranks
    differ at all; the Nemenyi critical difference ``CD = q_alpha
    sqrt(k (k + 1) / (6 N))`` (Demšar 2006, Sec. 3.2.2; k methods, N
    blocks; ``q_alpha`` = the studentized range quantile for k groups and
    infinite degrees of freedom over sqrt(2), ``scipy.stats.studentized_range``)
    is the smallest difference of average ranks that is significant.
  * The CD diagram is drawn when the rows span several TASK SETS (several
    values of a swept ``task_set.*`` field, e.g. census-income's groups or
    the synthetic correlation), with at least ``MIN_METHODS`` methods and
    ``MIN_BLOCKS`` complete blocks. Not across the tasks of one task set
    alone: those tasks share inputs and models, so they are not the
    independent data sets the test assumes (their ranks still go into the
    table's ``avg rank`` column).
"""

from __future__ import annotations

import json
import math
from typing import Mapping, Sequence

import numpy as np

from mtlx.report.aggregate import _metric_hib, _task_key, metric_of

ALPHA = 0.05
MIN_METHODS, MIN_BLOCKS = 3, 3
TASK_SET_PREFIX = "task_set."  # swept fields under it change the task set (the data)
METHOD_GID, CLIQUE_GID, CD_GID = "cd-method:", "cd-clique", "cd-bar"  # gids of the diagram's artists


# --------------------------------------------------------------------------- the statistics


def block_ranks(values: Sequence[float], higher_is_better: bool) -> np.ndarray:
    """Ranks (1 = best; ties share their mean rank) of one block's finite values; NaN where a value is not finite."""
    from scipy import stats

    v = np.asarray(values, np.float64)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v)
    if ok.any():
        out[ok] = stats.rankdata(-v[ok] if higher_is_better else v[ok], method="average")
    return out


def rank_matrix(table: np.ndarray, higher_is_better: Sequence[bool]) -> np.ndarray:
    """(blocks x methods) values -> ranks per block (row)."""
    return np.stack([block_ranks(row, h) for row, h in zip(np.asarray(table, np.float64), higher_is_better)])


def q_alpha(k: int, alpha: float = ALPHA) -> float:
    """The Nemenyi test's critical value for k methods: q_{1-alpha}(k, inf) / sqrt(2) (Demšar 2006, Table 5a)."""
    from scipy import stats

    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of average ranks for k methods over n blocks (Demšar 2006, Sec. 3.2.2)."""
    return q_alpha(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))


def friedman(ranks_or_values: np.ndarray) -> tuple[float, float]:
    """Friedman's chi-square statistic and p-value (``scipy.stats.friedmanchisquare``) of a complete
    (blocks x methods) matrix; it ranks within each block itself, so values or ranks give the same result
    when they order alike."""
    from scipy import stats

    m = np.asarray(ranks_or_values, np.float64)
    res = stats.friedmanchisquare(*(m[:, j] for j in range(m.shape[1])))
    return float(res.statistic), float(res.pvalue)


def cliques(avg: Sequence[float], cd: float) -> list[list[int]]:
    """Groups of methods not significantly different: maximal sets of methods consecutive in rank order whose
    average ranks span less than ``cd`` (two methods at least), as method indices sorted by rank."""
    order = sorted(range(len(avg)), key=lambda i: avg[i])
    out: list[list[int]] = []
    for a in range(len(order)):
        b = a
        while b + 1 < len(order) and avg[order[b + 1]] - avg[order[a]] < cd:
            b += 1
        group = order[a:b + 1]
        if len(group) > 1 and not any(set(group) <= set(g) for g in out):
            out.append(group)
    return out


# --------------------------------------------------------------------------- ranks of table rows


def row_ranks(rows: Sequence[Mapping]) -> list[float | None]:
    """Each row's mean rank over its tasks' main metrics among the finished rows of its sweep value and task list
    (None for a row without finished runs, or alone in its group)."""
    groups: dict = {}
    for i, r in enumerate(rows):
        if r["n"] > 0:
            groups.setdefault((r["sweep_key"], _task_key(r)), []).append(i)
    out: list[float | None] = [None] * len(rows)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        per_task = []
        for t, k in rows[idx[0]]["main_metric"].items():
            vals = [(metric_of(rows[i], t, k) or {"mean": float("nan")})["mean"] for i in idx]
            per_task.append(block_ranks(vals, _metric_hib(rows[idx[0]]["higher_is_better"], t, k)))
        mean = np.nanmean(np.stack(per_task), axis=0) if per_task else [math.nan] * len(idx)
        for i, m in zip(idx, mean):
            out[i] = float(m) if math.isfinite(m) else None
    return out


def task_sets(rows: Sequence[Mapping]) -> list[str]:
    """The distinct task sets of the rows: the values of their swept ``task_set.*`` fields (one when none)."""
    keys = [json.dumps({f: v for f, v in r["sweep"].items() if f.startswith(TASK_SET_PREFIX)}, sort_keys=True)
            for r in rows]
    return list(dict.fromkeys(keys))


def method_blocks(rows: Sequence[Mapping]) -> dict:
    """The (blocks x methods) matrix of main-metric means: methods = (architecture, weighting) in row order,
    blocks = (sweep value, task) where every method has a finite mean; also the dropped blocks."""
    live = [r for r in rows if r["n"] > 0]
    methods = list(dict.fromkeys((r["architecture"], r["weighting"]) for r in live))
    cells: dict = {}
    for r in live:
        for t, k in r["main_metric"].items():
            ms = metric_of(r, t, k)
            if ms is not None and math.isfinite(ms["mean"]):
                b = cells.setdefault((r["sweep_key"], t), {"hib": _metric_hib(r["higher_is_better"], t, k),
                                                          "sweep": r["sweep"], "v": {}})
                b["v"][(r["architecture"], r["weighting"])] = ms["mean"]
    complete = [key for key, b in cells.items() if len(b["v"]) == len(methods)]
    return {"methods": methods, "blocks": complete, "dropped": [k for k in cells if k not in complete],
            "values": np.asarray([[cells[b]["v"][m] for m in methods] for b in complete], np.float64).reshape(
                len(complete), len(methods)),
            "higher_is_better": [cells[b]["hib"] for b in complete],
            "task_sets": task_sets([{"sweep": cells[b]["sweep"]} for b in complete])}


def across_task_sets(rows: Sequence[Mapping], alpha: float = ALPHA) -> dict | str:
    """Average ranks over every complete (sweep value, task) block, Friedman's test and the CD; or why not."""
    mb = method_blocks(rows)
    k, n = len(mb["methods"]), len(mb["blocks"])
    if len(mb["task_sets"]) < 2:
        return "the rows span one task set (no swept task_set.* field with two values over complete blocks)"
    if k < MIN_METHODS:
        return f"{k} methods; the Friedman test needs at least {MIN_METHODS}"
    if n < MIN_BLOCKS:
        return f"{n} complete (sweep value, task) blocks; at least {MIN_BLOCKS} needed"
    ranks = rank_matrix(mb["values"], mb["higher_is_better"])
    avg = ranks.mean(axis=0)
    stat, p = friedman(ranks)
    cd = critical_difference(k, n, alpha)
    return {**mb, "ranks": ranks, "avg": [float(a) for a in avg], "k": k, "n": n, "friedman": stat, "p": p,
            "cd": cd, "alpha": alpha, "cliques": cliques(list(avg), cd)}


def note(summary: Mapping) -> str:
    """The table's note on the ranks across task sets."""
    names = ", ".join(f"{a}/{w} {r:.2f}" for (a, w), r in sorted(zip(summary["methods"], summary["avg"]),
                                                                   key=lambda x: x[1]))
    return (f"Average rank across task sets (Demšar 2006): over N = {summary['n']} (sweep value, task) blocks of "
            f"{len(summary['task_sets'])} task sets, k = {summary['k']} methods: {names}; Friedman chi² = "
            f"{summary['friedman']:.3g}, p = {summary['p']:.3g}; Nemenyi CD (alpha = {summary['alpha']}) = "
            f"{summary['cd']:.3f}" + (f"; {len(summary['dropped'])} incomplete blocks left out" if summary["dropped"]
                                      else "") + " (the chi-square approximation is rough for N < 10 or k < 5).")


# --------------------------------------------------------------------------- the diagram


def draw_cd(ax, names: Sequence[str], avg: Sequence[float], cd: float, groups: Sequence[Sequence[int]]) -> None:
    """Demšar's diagram on ``ax``: a rank axis (1 = best, left), each method a marker at its average rank with
    an elbow to its label (the better half left, the rest right), the CD as a bar above the axis, and a thick
    bar under the axis joining each group of methods whose ranks differ by less than the CD."""
    k = len(names)
    order = sorted(range(k), key=lambda i: avg[i])
    half = (k + 1) // 2
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax.set_ylim(-(half + 1.2), 1.6)
    ax.axis("off")
    ax.plot([lo, hi], [0, 0], color="black", linewidth=1)
    for x in range(lo, hi + 1):
        ax.plot([x, x], [0, 0.15], color="black", linewidth=1)
        ax.text(x, 0.25, str(x), ha="center", va="bottom", fontsize=7)
    ax.plot([lo, lo + cd], [1.1, 1.1], color="black", linewidth=1.5, gid=CD_GID)
    ax.text(lo + cd / 2, 1.2, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=7)
    for pos, i in enumerate(order):
        left = pos < half
        y = -(pos + 1 if left else k - pos) * 0.9 - 0.3
        edge = lo - 0.05 * (hi - lo) if left else hi + 0.05 * (hi - lo)
        ax.plot([avg[i]], [0], marker="o", markersize=3, color="black", linestyle="none", gid=METHOD_GID + names[i])
        ax.plot([avg[i], avg[i], edge], [0, y, y], color="black", linewidth=0.7)
        ax.text(edge + (-0.05 if left else 0.05), y, f"{names[i]} ({avg[i]:.2f})", ha="right" if left else "left",
                va="center", fontsize=7, clip_on=False)
    for g, members in enumerate(groups):
        y = -0.25 - 0.2 * g
        ax.plot([avg[members[0]] - 0.03, avg[members[-1]] + 0.03], [y, y], color="black", linewidth=2.5,
                solid_capstyle="butt", gid=CLIQUE_GID)


def figure_cd(ctx, path: str, _=None) -> dict:
    """The critical-difference diagram of the methods across task sets (``across_task_sets``)."""
    from mtlx.report.plotting import PANEL_W, plt, save

    s = across_task_sets(ctx.rows)
    names = [ctx.name(a, w) for a, w in s["methods"]]
    fig, ax = plt().subplots(1, 1, figsize=(2 * PANEL_W, 0.6 + 0.22 * (s["k"] + 3)))
    draw_cd(ax, names, s["avg"], s["cd"], s["cliques"])
    ax.set_title(f"average rank over {s['n']} (sweep value, task) blocks; Friedman p = {s['p']:.3g}", fontsize=7)
    save(fig, path)
    return {"methods": names, "avg": s["avg"], "cd": s["cd"], "cliques": s["cliques"], "p": s["p"]}


def cd_applies(ctx):
    """One diagram, named after the swept task-set field(s): ``critical_difference_<field>``."""
    from mtlx.report.aggregate import short_field
    from mtlx.report.tables import slug

    s = across_task_sets(ctx.rows)
    if isinstance(s, str):
        return s
    fields = [f for f in ctx.sweep_fields if f.startswith(TASK_SET_PREFIX)]
    stem = "critical_difference_" + "_".join(slug(short_field(f, ctx.sweep_fields)) for f in fields)
    return [(stem, stem, None)]
