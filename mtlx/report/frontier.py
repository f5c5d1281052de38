"""The scalarisation frontier of a two-task experiment, and which methods lie beyond it (Xin et al. 2022).

Xin, Ghorbani, Garg, Firat & Gilmer (2022, NeurIPS) compare multi-task
optimisers with the trade-off that plain scalarisation reaches: the runs
minimising ``w L_a + (1 - w) L_b`` for a sweep of w (``mtlx.frontier``).

Definitions (``analyse``):
  * Static rows: rows whose runs' config has weighting ``static`` with two
    weights (the run's own config.json/summary, whatever the row's label).
    A frontier exists per (sweep value, architecture) with two static rows or
    more on a two-task set; the other rows of that architecture and sweep
    value (same two tasks) are compared with it.
  * Orientation: each task's main metric is signed so that higher is better
    (u = +m, or -m when lower is better); the figure draws original units.
  * The frontier: the Pareto front of the static rows' mean test main metrics
    (a point is off it when another is at least as good on both tasks and
    better on one), joined piecewise linearly between adjacent points in
    order of task a, as Xin et al. draw it. The region it bounds is every
    point weakly dominated by some point of that chain.
  * Beyond the frontier: a row's mean lies outside that region, i.e. (in
    orientation) its task-a mean exceeds the front's largest, or its task-b
    mean exceeds the chain's value at max(its task-a mean, the front's
    smallest task-a mean). On the chain counts as inside.
  * Significance (intersection-union test, Berger 1982): the null "some
    sweep point of the front is at least as good as the row on both tasks"
    is the union over the front's points S of H_S: "S >= row on a and on b";
    H_S is rejected when the row is better than S on one task at least:
    one-sided Welch p-values per task on the seeds (``stats.welch_p``
    halved on the side of the difference), Bonferroni over the two tasks,
    p_S = min(1, 2 min_t p_t); the union is rejected when every H_S is:
    p = max_S p_S. Holm's correction (``stats.holm``) across the compared
    rows of one frontier; significant when the corrected p < ``stats.ALPHA``
    and the mean is beyond the chain. The seeds exist at the sweep points
    only, so the test is against them, while "beyond" is judged against the
    piecewise-linear chain (which lies above every sweep point of the front).
    n < 2 on either side: no test (NaN).
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from mtlx.report import stats
from mtlx.report.aggregate import _metric_hib, metric_of
from mtlx.report.figure_data import tradeoff_data
from mtlx.report.plotting import axis_label, clipped_err, colours_for, keep_in_range, metric_range, save, subplots

STATIC = "static"  # the weighting name of fixed weights (mtlx.frontier.STATIC; the report imports no training code)
BEYOND_SIG = "beyond the frontier (significant)"
BEYOND = "beyond the frontier (not significant)"
BEYOND_UNTESTED = "beyond the frontier (untested: n < 2)"
INSIDE = "on or inside the frontier"
VERDICTS = (BEYOND_SIG, BEYOND, BEYOND_UNTESTED, INSIDE)
FRONTIER_GID = "frontier"  # the gid of the frontier line in the figure
TOL = 1e-12  # relative: a mean this close to the chain counts as on it


# --------------------------------------------------------------------------- geometry (oriented: higher is better)


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the Pareto-optimal points (maximising both coordinates), by increasing first coordinate;
    of equal points the first; non-finite points are never on it."""
    pts = [tuple(map(float, p)) for p in points]
    keep = []
    for i, (x, y) in enumerate(pts):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        dominated = any((x2 >= x and y2 >= y and (x2 > x or y2 > y)) or ((x2, y2) == (x, y) and j < i)
                        for j, (x2, y2) in enumerate(pts) if j != i and math.isfinite(x2) and math.isfinite(y2))
        if not dominated:
            keep.append(i)
    return sorted(keep, key=lambda i: pts[i][0])


def chain_value(front: Sequence[Sequence[float]], x: float) -> float:
    """The piecewise-linear chain through the front's points (increasing x) at ``x`` in [x_0, x_k]."""
    xs, ys = np.asarray(front, np.float64).T
    return float(np.interp(x, xs, ys))


def is_beyond(front: Sequence[Sequence[float]], point: Sequence[float]) -> bool:
    """Whether ``point`` lies outside the region the chain weakly dominates (both oriented)."""
    x, y = map(float, point)
    xs = [p[0] for p in front]
    if x > xs[-1] + TOL * max(1.0, abs(xs[-1])):
        return True
    v = chain_value(front, max(x, xs[0]))
    return y > v + TOL * max(1.0, abs(v))


# --------------------------------------------------------------------------- significance


def one_sided_p(mine: Sequence[float], theirs: Sequence[float]) -> float:
    """Welch's one-sided p-value for "mine's mean is larger" (two-sided ``stats.welch_p`` halved on the side of
    the observed difference); NaN when the test is undefined."""
    p2 = stats.welch_p(mine, theirs)
    if not math.isfinite(p2):
        return float("nan")
    return p2 / 2 if float(np.mean(mine)) > float(np.mean(theirs)) else 1 - p2 / 2


def iut_p(row_seeds: Sequence[Sequence[float]], front_seeds: Sequence[Sequence[Sequence[float]]]) -> float:
    """The intersection-union p-value of "beyond every front point": ``row_seeds`` = (task a values, task b
    values) oriented; ``front_seeds`` = the same per front point. max over points of min(1, 2 min_t p_t)."""
    out = 0.0
    for point in front_seeds:
        ps = [one_sided_p(row_seeds[t], point[t]) for t in (0, 1)]
        if not all(math.isfinite(p) for p in ps):
            return float("nan")
        out = max(out, min(1.0, 2 * min(ps)))
    return out


# --------------------------------------------------------------------------- the rows


def static_weights(run: Mapping) -> tuple | None:
    """(w_a, w_b) of a run with weighting ``static`` and two weights (its config), else None."""
    w = ((run.get("config") or {}).get("weighting") or {})
    weights = (w.get("options") or {}).get("weights")
    if w.get("name") != STATIC or not isinstance(weights, (list, tuple)) or len(weights) != 2:
        return None
    return tuple(float(x) for x in weights)


def _row_weights(row: Mapping, by_id: Mapping) -> tuple | None:
    ws = {static_weights(by_id.get(rid) or {}) for rid in row["run_ids"]}
    return next(iter(ws)) if len(ws) == 1 else None


def _oriented(row: Mapping, tasks: Sequence[str], signs: Sequence[float]) -> tuple[tuple, tuple]:
    """(mean per task, seed values per task), signed so that higher is better."""
    ms = [metric_of(row, t, row["main_metric"][t]) for t in tasks]
    return (tuple(s * m["mean"] for s, m in zip(signs, ms)),
            tuple([s * v for v in m["values"]] for s, m in zip(signs, ms)))


def _groups(rows: Sequence[Mapping], by_id: Mapping) -> dict:
    """{(sweep_key, architecture): {"static": [(weights, row)], "others": [row]}} of the live two-task rows."""
    out: dict = {}
    for r in rows:
        if r["n"] == 0 or len(r.get("main_metric") or {}) != 2:
            continue
        key = (r["sweep_key"], r["architecture"], tuple(sorted(r["main_metric"].items())))
        g = out.setdefault(key, {"static": [], "others": []})
        w = _row_weights(r, by_id)
        if w is not None:
            g["static"].append((w, r))
        else:
            g["others"].append(r)
    return out


def _ci(row: Mapping, tasks: Sequence[str]) -> tuple:
    """The 95% CI half-width of each task's main metric (original units; NaN when n < 2)."""
    return tuple(metric_of(row, t, row["main_metric"][t])["ci"] for t in tasks)


def _compare(row, tasks, signs, front_rows, front_pts) -> dict:
    mean, seeds = _oriented(row, tasks, signs)
    front_seeds = [_oriented(f, tasks, signs)[1] for f in front_rows]
    strongest = min(range(len(front_pts)), key=lambda i: max(m - f for m, f in zip(mean, front_pts[i])))
    return {"weighting": row["weighting"], "mean": mean, "beyond": is_beyond(front_pts, mean),
            "ci": _ci(row, tasks),
            "p": iut_p(seeds, front_seeds), "strongest": front_rows[strongest]["weighting"], "n": row["n"]}


def _verdict(c: Mapping) -> str:
    if not c["beyond"]:
        return INSIDE
    if not math.isfinite(c["p_holm"]):
        return BEYOND_UNTESTED
    return BEYOND_SIG if c["p_holm"] < stats.ALPHA else BEYOND


def analyse(rows: Sequence[Mapping], runs: Sequence[Mapping]) -> list[dict]:
    """Every frontier of the rows (``aggregate``'s) with its comparisons; [] when there is none.

    Each: {"sweep_key", "sweep", "architecture", "tasks" [a, b], "main" {task: metric}, "signs" (+1/-1 per
    task), "static" [{"weighting", "weights", "mean" (oriented), "on_front", "ci"}] by w, "front" [oriented points
    of the front, increasing task a], "front_labels", "compared" [{"weighting", "mean" (oriented), "ci" (95% half-widths,
    original units), "beyond", "p", "p_holm", "verdict", "strongest", "n"}]}. ``strongest``: the front point whose
    smaller advantage over the row (min over the tasks of point - row, oriented) is largest: of the points
    that dominate a row, the one that does so by the widest margin."""
    by_id = {r["run_id"]: r for r in runs}
    out = []
    for (skey, arch, _), g in _groups(rows, by_id).items():
        if len(g["static"]) < 2:
            continue
        first = g["static"][0][1]
        tasks = list(first["main_metric"])  # the task set's order
        signs = [1.0 if _metric_hib(first["higher_is_better"], t, first["main_metric"][t]) else -1.0 for t in tasks]
        static = sorted(g["static"], key=lambda x: x[0])
        means = [_oriented(r, tasks, signs)[0] for _, r in static]
        on = pareto_front(means)
        front_pts, front_rows = [means[i] for i in on], [static[i][1] for i in on]
        if not front_pts:
            continue
        compared = [_compare(r, tasks, signs, front_rows, front_pts) for r in g["others"]]
        for c, adj in zip(compared, stats.holm([c["p"] for c in compared])):
            c["p_holm"] = adj
            c["verdict"] = _verdict(c)
        out.append({"sweep_key": skey, "sweep": dict(first["sweep"]), "architecture": arch, "tasks": tasks,
                    "main": {t: first["main_metric"][t] for t in tasks}, "signs": signs,
                    "static": [{"weighting": r["weighting"], "weights": w, "mean": m, "on_front": i in on,
                                "ci": _ci(r, tasks)} for i, ((w, r), m) in enumerate(zip(static, means))],
                    "front": front_pts, "front_labels": [r["weighting"] for r in front_rows], "compared": compared})
    return out


# --------------------------------------------------------------------------- table notes


def _fmt_p(p: float) -> str:
    return "–" if not math.isfinite(p) else (f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}")


def table_notes(rows: Sequence[Mapping], runs: Sequence[Mapping]) -> list[str]:
    """The table's lines on the scalarisation frontier: the definition once, then per frontier the rows
    beyond it (significant or not) and those on or inside it; [] without a static sweep."""
    fronts = analyse(rows, runs)
    if not fronts:
        return []
    notes = [f"Scalarisation frontier (Xin et al. 2022): the Pareto front of the static-weight rows' mean test main "
             f"metrics, piecewise linear between adjacent sweep points; a row is beyond it when its mean lies "
             f"outside the region the front dominates. Significance: intersection-union test over the front's "
             f"sweep points (for each, one-sided Welch's t-tests per task on the seeds, Bonferroni over the two "
             f"tasks; the largest p), Holm-corrected across the rows compared with one front, alpha = "
             f"{stats.ALPHA}."]
    for f in fronts:
        where = f["architecture"] + (f" ({', '.join(f'{k}={v}' for k, v in f['sweep'].items())})" if f["sweep"] else "")
        parts = []
        for verdict in VERDICTS:
            hits = [c for c in f["compared"] if c["verdict"] == verdict]
            if hits:
                parts.append(f"{verdict}: " + ", ".join(
                    c["weighting"] + (f" (strongest sweep point {c['strongest']})" if verdict == INSIDE else
                                      f" (p_holm {_fmt_p(c['p_holm'])})") for c in hits))
        notes.append(f"Frontier of {where}, {f['tasks'][0]} vs {f['tasks'][1]} (front: {', '.join(f['front_labels'])}): "
                     + ("; ".join(parts) or "no other row to compare") + ".")
    return notes


# --------------------------------------------------------------------------- the figure


STATIC_COLOUR = "#7f7f7f"


def frontier_applies(ctx):
    """One figure per task pair with a frontier, else why none (``mtlx.report.figures.FIGURES``)."""
    from mtlx.report.tables import slug  # tables imports this module
    pairs = list(dict.fromkeys(tuple(f["tasks"]) for f in analyse(ctx.rows, ctx.runs)))
    if not pairs:
        return "no static-weight sweep (two rows or more with weighting 'static' and two weights, on two tasks)"
    return [(f"frontier_{a}_vs_{b}", f"frontier_{slug(a)}_vs_{slug(b)}", [a, b]) for a, b in pairs]


def _static_layer(ax, f, pts_of) -> None:
    """The sweep: every run (small grey points), the means ± 95% CI (grey squares, labelled with task a's weight)
    and the frontier line through the front's means."""
    sa, sb = f["signs"]
    bounds = [metric_range(f["main"][t]) for t in f["tasks"]]
    for s in f["static"]:
        pts = pts_of(s["weighting"])
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], s=6, color=STATIC_COLOUR, alpha=0.4, linewidths=0)
        x, y = sa * s["mean"][0], sb * s["mean"][1]
        ex, ey = (clipped_err(m, e, e, b) for m, e, b in zip((x, y), s["ci"], bounds))
        ax.errorbar([x], [y], xerr=[[ex[0]], [ex[1]]], yerr=[[ey[0]], [ey[1]]], marker="s", markersize=3.5,
                    color=STATIC_COLOUR, markeredgecolor="black", markeredgewidth=0.4, capsize=1.2, elinewidth=0.6)
        ax.annotate(f"{s['weights'][0]:g}", (x, y), xytext=(3, 3), textcoords="offset points", fontsize=5,
                    color="dimgray", clip_on=True)
    xs, ys = [sa * p[0] for p in f["front"]], [sb * p[1] for p in f["front"]]
    ax.plot(xs, ys, color="black", linewidth=1.0, gid=FRONTIER_GID, zorder=1.5)


def _method_layer(ax, f, pts_of, colour) -> None:
    """Each compared row: its runs (small points), its mean with the 95% CI cut at the metrics' ranges; a star
    when it is significantly beyond the frontier."""
    sa, sb = f["signs"]
    bounds = [metric_range(f["main"][t]) for t in f["tasks"]]
    for c in f["compared"]:
        pts = pts_of(c["weighting"])
        if len(pts):
            ax.scatter(pts[:, 0], pts[:, 1], s=7, color=colour[c["weighting"]], alpha=0.45, linewidths=0)
        x, y = sa * c["mean"][0], sb * c["mean"][1]
        ex, ey = (clipped_err(m, e, e, b) for m, e, b in zip((x, y), c["ci"], bounds))
        star = c["verdict"] == BEYOND_SIG
        ax.errorbar([x], [y], xerr=[[ex[0]], [ex[1]]], yerr=[[ey[0]], [ey[1]]], color=colour[c["weighting"]],
                    marker="*" if star else "o", markersize=8 if star else 4.5, markeredgecolor="black",
                    markeredgewidth=0.4, capsize=1.5, elinewidth=0.7, zorder=3)


def _legend(fig, methods, colour) -> None:
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="black", label="scalarisation frontier"),
               Line2D([], [], color=STATIC_COLOUR, marker="s", linestyle="none", markersize=3.5,
                      label="static (w, 1-w): w of the x task")]
    handles += [Line2D([], [], color=colour[m], marker="o", linestyle="none", markersize=4, label=m) for m in methods]
    handles.append(Line2D([], [], color="black", marker="*", linestyle="none", markersize=7,
                          label=f"beyond, significant (Holm, alpha {stats.ALPHA})"))
    fig.tight_layout()
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 3),
               frameon=False)


PANEL = (4.2, 3.4)  # inches: larger than a trade-off panel, a sweep and many methods share it


def figure_frontier(ctx, path: str, tasks: Sequence[str]) -> list[dict]:
    """Task a's main metric vs task b's, one panel per frontier (architecture, sweep value): the static sweep's
    runs and means (labelled with w), the frontier line through the front's means, every other row's runs and
    mean ± 95% CI (a star when significantly beyond); axes cut at the metrics' ranges. Returns ``analyse``'s
    frontiers drawn."""
    fronts = [f for f in analyse(ctx.rows, ctx.runs) if f["tasks"] == list(tasks)]
    data = tradeoff_data(ctx.runs, tasks, ctx.select)
    methods = list(dict.fromkeys(c["weighting"] for f in fronts for c in f["compared"]))
    colour = colours_for(methods)
    fig, axes = subplots(1, len(fronts))
    fig.set_size_inches(PANEL[0] * len(fronts), PANEL[1])
    for ax, f in zip(axes[0], fronts):
        def pts_of(w, f=f):
            return np.asarray(data.get((f["sweep_key"], f["architecture"], w), []), np.float64).reshape(-1, 2)
        _static_layer(ax, f, pts_of)
        _method_layer(ax, f, pts_of, colour)
        a, b = f["tasks"]
        ax.set_xlabel(axis_label(a, f["main"][a], f["signs"][0] > 0, vertical=False))
        ax.set_ylabel(axis_label(b, f["main"][b], f["signs"][1] > 0))
        keep_in_range(ax, metric_range(f["main"][a]), axis="x")
        keep_in_range(ax, metric_range(f["main"][b]))
        sweep = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in f["sweep"].items())
        ax.set_title(f["architecture"] + (f"  ({sweep})" if sweep else ""))
    _legend(fig, methods, colour)
    save(fig, path)
    return fronts
