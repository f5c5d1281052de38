"""Every figure of an experiment, registered once in ``FIGURES``; ``plot_all`` draws those that apply.

A figure kind is a ``Figure(name, applies, draw)``: ``applies(ctx)`` returns
the files to draw, as ``(key, file stem, argument)`` triples, or a string
saying why none applies; ``draw(ctx, path, argument)`` writes one PNG and
returns the numbers it drew. A new figure kind is one draw function and one
line in ``FIGURES``. ``name`` is the file stem, with ``<placeholders>`` where
one kind writes several files (one per swept field, task pair, architecture).

Figures (PNG, in ``<workdir>/figures/``): main_metric_bars, delta_m (needs a
baseline), learning_curves (needs train records), sweep_<field> (needs
exactly one swept field taking two values or more), tradeoff_<a>_vs_<b>
(needs two tasks; one per distinct pair of each sweep value's first two
tasks, or the ``tasks`` asked for), frontier_<a>_vs_<b> (the trade-off with
the scalarisation frontier of a static-weight sweep: ``mtlx.report.frontier``),
mixing_<architecture> (per architecture
with learned mixing weights), critical_difference_<field> (Demšar 2006's diagram
of the average ranks across the task sets of the swept task_set.* field(s);
``mtlx.report.ranks`` says when it applies).
Per-task panels follow each sweep value's own tasks. A tuned experiment's
search runs (``results.is_search_run``) are never drawn.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Callable, NamedTuple, Sequence

import numpy as np

from mtlx import results, taps
from mtlx.report import frontier, pooling, ranks, stats
from mtlx.report.relatedness import figure_relatedness, relatedness_applies
from mtlx.report.aggregate import (
    _metric_hib, _num, aggregate, fmt_value, has_baseline, metric_of, short_field, task_meta, task_sections,
    tasks_by_sweep)
from mtlx.report.figure_data import (
    DELTA_M_PANEL, learning_curve_data, mixing_data, mixing_tasks, sweep_plot_data, tradeoff_data)
from mtlx.report.plotting import (
    ERROR_NOTE, PANEL_H, PANEL_W, STYLE, Context, axis_label, bar_legend, clipped_err, grouped_bars, keep_in_range,
    line_legend, metric_range, plt, save, subplots, task_axes, weighting_handles, zoom)
from mtlx.report.tables import slug


class Figure(NamedTuple):
    name: str
    applies: Callable  # ctx -> [(key, file stem, argument)] or a reason string
    draw: Callable  # (ctx, path, argument) -> the numbers drawn


# --------------------------------------------------------------------------- main metric bars


def _bars_panel(ax, ctx, skey, t, k, hib, sub) -> dict:
    bounds = metric_range(k)
    d = {key: (ms["mean"], ms["ci"], r["n"]) for key, r in sub.items()
         for ms in [metric_of(r, t, k)] if ms is not None}
    # the weightings run at this sweep value only (a sweep may pair some with one value)
    groups = [w for w in ctx.weightings if any(key[1] == w for key in d)] if ctx.many_w else [None]

    def get(g, a):
        v = d.get((a, g if g is not None else ctx.weightings[0]))
        return None if v is None else (v[0], v[1], v[1], v[2])

    grouped_bars(ax, groups, ctx.archs, get, ctx.colour.get, bounds)
    many = len(groups) > 2
    ax.set_xticklabels([str(g) for g in groups] if ctx.many_w else [""], rotation=50 if many else 0,
                       ha="right" if many else "center", fontsize="small" if many else None)
    if not ctx.many_w:
        ax.tick_params(axis="x", length=0)
    errs = [clipped_err(v[0], v[1], v[1], bounds) for v in d.values()]
    zoom(ax, [v[0] for v in d.values()], [e[0] for e in errs], [e[1] for e in errs], bounds)
    ax.set_ylabel(axis_label(t, k, _metric_hib(hib, t, k)))
    ax.grid(axis="x", visible=False)
    ax.set_title(t if not skey else f"{t}  ({ctx.sweep_title(skey)})")
    return d


def figure_metric_bars(ctx, path: str, _=None) -> dict:
    """Main metric per task: bars per architecture (x groups = weightings), error bars = 95% CI over seeds
    (cut at the metric's range), n at each bar's foot; a y axis that does not start at 0 is marked broken.

    One row of panels per sweep value, one column per task (no sweep: the
    tasks wrapped at 3 a row). Returns
    {(sweep_key, task): {(arch, weighting): (mean, std, n)}}.
    """
    rows = ctx.rows
    per_sweep = tasks_by_sweep(rows)  # a sweep may change the task set: each row of panels has its own tasks
    ncols = max([len(per_sweep.get(s, ((),))[0]) for s in ctx.sweep_keys] + [0])
    fig, axes = task_axes(len(ctx.sweep_keys), ncols)
    data = {}
    for i, skey in enumerate(ctx.sweep_keys):
        tasks, main, hib = per_sweep.get(skey, ([], {}, {}))
        for j in range(len(tasks), ncols):
            axes[(i, j)].set_visible(False)
        sub = {(r["architecture"], r["weighting"]): r for r in rows if r["sweep_key"] == skey and r["n"] > 0}
        for j, t in enumerate(tasks):
            data[(skey, t)] = _bars_panel(axes[(i, j)], ctx, skey, t, main[t], hib, sub)
    bar_legend(fig, ctx)
    fig.text(0.99, 0.0, ERROR_NOTE, ha="right", va="top", fontsize=6)
    save(fig, path)
    return data


# --------------------------------------------------------------------------- delta_m


def figure_delta_m(ctx, path: str, _=None) -> dict:
    """Delta_m% per multi-task architecture (x groups = sweep values, else weightings), bars from 0; error bars =
    the bootstrap 95% interval over seeds; n at each bar's foot."""
    mtl = [a for a in ctx.archs if a not in ctx.baselines]
    fig, axes = subplots(1, 1)
    ax = axes[0][0]
    d = {(r["sweep_key"], r["architecture"], r["weighting"]): _dm_bar(r)
         for r in ctx.rows if r["delta_m"] is not None and r["architecture"] not in ctx.baselines}
    groups = [(s, w) for s in ctx.sweep_keys for w in ctx.weightings if any((s, a, w) in d for a in mtl)]
    if len(ctx.sweep_keys) > 1:
        one = len(ctx.sweep_fields) == 1
        labels = [(f"{w}, " if ctx.many_w else "")
                  + (fmt_value(ctx.sweeps[s][ctx.sweep_fields[0]]) if one else ctx.sweep_title(s)) for s, w in groups]
    else:
        labels = [w if ctx.many_w else "" for _, w in groups]
    fig.set_size_inches(max(PANEL_W, 0.9 + 0.35 * len(mtl) * len(groups)), PANEL_H + (1.0 if len(groups) > 4 else 0))
    grouped_bars(ax, groups, mtl, lambda g, a: d.get((g[0], a, g[1])), ctx.colour.get, n_at_zero=True)
    ax.set_xticklabels(labels, rotation=60 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center",
                       rotation_mode="anchor")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel(ctx.delta_m_label())
    ax.grid(axis="x", visible=False)
    fig.text(0.99, 0.0, "error bars: bootstrap 95% CI over seeds", ha="right", va="top", fontsize=6)
    if len(ctx.sweep_keys) > 1:
        ax.set_xlabel(", ".join(short_field(f, ctx.sweep_fields) for f in ctx.sweep_fields))
    bar_legend(fig, ctx, mtl)
    save(fig, path)
    return d


def _dm_bar(r) -> tuple:
    """(Δm%, length below, length above, n) of one row's bar: its bootstrap interval."""
    dm = r["delta_m"]
    lo, hi = r["delta_m_ci"] or (float("nan"), float("nan"))
    return dm, _num(dm - lo), _num(hi - dm), r["n"]


# --------------------------------------------------------------------------- learning curves


VALIDATION_PREFIX = "validation: "  # the label of a validation-loss line (a learning-curve panel)


def _curve_panel(ax, ctx, data, val, skey, t) -> None:
    """One task's loss curves at one sweep value, per group: the training loss (line: the mean over seeds;
    band: its 95% confidence interval) and the validation loss of the eval records (the same colour and
    style, with round markers). On a log axis (losses spanning > 30x) the limits follow the means; a band
    reaching 0 or below is cut at the panel's floor."""
    ys, bands = [], []
    for a in ctx.archs:
        for w in ctx.weightings:
            c = data.get((skey, a, w), {}).get(t)
            if c is not None:
                ax.plot(c["steps"], c["mean"], color=ctx.colour[a], linestyle=ctx.ls[w], label=ctx.name(a, w))
                bands.append((c["steps"], c["mean"] - c["ci"], c["mean"] + c["ci"], ctx.colour[a]))
                ys.append(c["mean"])
            v = val.get((skey, a, w), {}).get(t)
            if v is not None:
                ax.plot(v["steps"], v["mean"], color=ctx.colour[a], linestyle=ctx.ls[w], marker="o", markersize=2.5,
                        linewidth=0.9, label=VALIDATION_PREFIX + ctx.name(a, w))
                ys.append(v["mean"])
    allv = np.concatenate(ys) if ys else np.array([])
    allv = allv[np.isfinite(allv)]
    log = bool(allv.size and allv.min() > 0 and allv.max() / allv.min() > 30)
    floor = allv.min() / 2 if log else -np.inf
    for steps, lo, hi, colour in bands:
        ax.fill_between(steps, np.maximum(lo, floor), hi, color=colour, alpha=0.18, linewidth=0)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(floor, allv.max() * 2)


def _curve_columns(ctx, data) -> tuple[dict, bool]:
    """{sweep_key: tasks of its column}, and whether every column has the same tasks."""
    tasks, by_sweep = [], {}  # a sweep may change the task set: each column has the tasks of its sweep value
    for (skey, _, _), v in data.items():
        tasks += [t for t in v if t not in tasks]
        mine = by_sweep.setdefault(skey, [])
        mine += [t for t in v if t not in mine]
    same = all(set(v) == set(tasks) for v in by_sweep.values())
    return {s: (tasks if same else by_sweep.get(s, [])) for s in ctx.sweep_keys}, same


def figure_learning_curves(ctx, path: str, _=None) -> dict:
    """Rows = tasks, columns = sweep values: training loss (mean, 95% CI band) and validation loss (round markers) vs
    step, means over seeds, a line per architecture (and weighting).

    When the sweep changes the task set, each column holds its sweep value's own tasks (titled per panel).
    """
    data = learning_curve_data(ctx.runs)
    val = learning_curve_data(ctx.runs, validation=True)
    col_tasks, same = _curve_columns(ctx, data)
    nrows = max([len(v) for v in col_tasks.values()] + [0])
    flat = len(ctx.sweep_keys) == 1  # no sweep: the tasks side by side, wrapped at 3
    if flat:
        fig, flat_axes = task_axes(1, len(col_tasks[ctx.sweep_keys[0]]))
    else:
        fig, axes = subplots(nrows, len(ctx.sweep_keys), sharex=True)
    for j, skey in enumerate(ctx.sweep_keys):
        tasks = col_tasks[skey]
        if not flat:
            for i in range(len(tasks), nrows):
                axes[i][j].set_visible(False)
        for i, t in enumerate(tasks):
            ax = flat_axes[(0, i)] if flat else axes[i][j]
            _curve_panel(ax, ctx, data, val, skey, t)
            if j == 0 or flat:
                ax.set_ylabel(f"{t} loss (↓ better)" if same else "loss (↓ better)")
            if i == len(tasks) - 1 or flat:
                ax.set_xlabel("step")
            if not same:  # each column has its own tasks: name them in every panel
                ax.set_title(f"{t}  ({ctx.sweep_title(skey)})" if skey else t)
            elif skey:
                ax.set_title(ctx.sweep_title(skey) if i == 0 else "")
    line_legend(fig, ctx, weighting_handles(ctx, markers=False) + _split_handles(bool(val)))
    save(fig, path)
    return {"train": data, "validation": val}


def _split_handles(with_validation: bool) -> list:
    from matplotlib.lines import Line2D
    return [Line2D([], [], color="black", label="training loss"),
            Line2D([], [], color="black", marker="o", markersize=2.5, label="validation loss")] if with_validation else []


# --------------------------------------------------------------------------- sweep lines


SWEEP_OFFSET_PT = 3.0  # horizontal spacing (points) between the series of a sweep panel, so error bars do not overlap


def _sweep_panel(ax, ctx, data, p, pos, bounds=(-math.inf, math.inf)) -> None:
    """One panel's series, each shifted sideways by a few points (``SWEEP_OFFSET_PT``); error bars = the 95%
    CI (lengths below and above the mean) cut at the metric's range."""
    from matplotlib import transforms
    series = [(a, w) for a in ctx.archs for w in ctx.weightings
              if data.get((a, w), {}).get(p) and not (p == DELTA_M_PANEL and a in ctx.baselines)]
    for i, (a, w) in enumerate(series):
        pts = sorted(data[(a, w)][p], key=lambda x: pos(x[0]))
        errs = np.asarray([clipped_err(m, *e, bounds) for _, m, e in pts]).T
        shift = transforms.offset_copy(ax.transData, fig=ax.figure, units="points",
                                       x=SWEEP_OFFSET_PT * (i - (len(series) - 1) / 2))
        xs, ys = [pos(x) for x, _, _ in pts], np.asarray([m for _, m, _ in pts])
        ax.errorbar(xs, ys, yerr=errs, color=ctx.colour[a], linestyle=ctx.ls[w], marker=ctx.marker[w], markersize=3,
                    capsize=2, label=ctx.name(a, w), transform=shift)
        # an offset transform keeps matplotlib from growing the data limits: grow them by hand
        ax.update_datalim(np.column_stack([xs * 2, np.concatenate([ys - errs[0], ys + errs[1]])]))
    ax.margins(x=0.12)  # room for the offset series at the ends
    ax.autoscale_view()


def figure_sweep(ctx, path: str, field: str) -> dict:
    """Main metric (one panel per task, plus Δm%) vs the swept value; error bars = 95% CI over seeds (Δm%:
    bootstrap), series offset sideways so that their error bars do not overlap.

    When the sweep changes the task set, a task's panel has points at the values where the task exists.
    """
    rows = ctx.rows
    data = sweep_plot_data(rows, field)
    _, main, hib = task_meta(rows)  # every task of any sweep value; a task's line has the values where it exists
    panels = list(main) + ([DELTA_M_PANEL] if any(DELTA_M_PANEL in d for d in data.values()) else [])
    uniform = len(task_sections(rows)) <= 1
    values = []
    for r in rows:
        if field in r["sweep"] and r["sweep"][field] not in values:
            values.append(r["sweep"][field])
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    pos = (lambda v: float(v)) if numeric else (lambda v: values.index(v))
    fig, axes = subplots(1, len(panels))
    for j, p in enumerate(panels):
        ax = axes[0][j]
        bounds = metric_range(main[p]) if p != DELTA_M_PANEL else (-math.inf, math.inf)
        _sweep_panel(ax, ctx, data, p, pos, bounds)
        keep_in_range(ax, bounds)
        if not numeric:
            ax.set_xticks(range(len(values)))
            ax.set_xticklabels([fmt_value(v) for v in values])
        if not uniform:  # a task may exist at some values only: every panel spans all of them
            xs = [pos(v) for v in values]
            pad = 0.15 * (max(xs) - min(xs)) if max(xs) > min(xs) else 0.5
            ax.set_xlim(min(xs) - pad, max(xs) + pad)
            ax.set_xticks(xs)
            ax.set_xticklabels([fmt_value(v) for v in values])
        ax.set_xlabel(short_field(field, ctx.sweep_fields))
        if p == DELTA_M_PANEL:
            ax.axhline(0.0, color="black", linewidth=0.8)
            ax.set_ylabel(ctx.delta_m_label())
        else:
            ax.set_ylabel(axis_label(p, main[p], _metric_hib(hib, p, main[p])))
    line_legend(fig, ctx, weighting_handles(ctx))
    save(fig, path)
    return data


# --------------------------------------------------------------------------- trade-off


def figure_tradeoff(ctx, path: str, tasks: Sequence[str], sweep_keys: Sequence[tuple] | None = None) -> dict:
    """Task a's main metric vs task b's, one small point per run, a large one per group mean (± 95% CI, cut at
    the metrics' ranges).

    One panel per sweep value (``sweep_keys``, default: those whose rows have both tasks).
    """
    data = tradeoff_data(ctx.runs, tasks, ctx.select)
    _, main, hib = task_meta([r for r in ctx.rows if all(t in r["main_metric"] for t in tasks)] or ctx.rows)
    a, b = tasks
    if sweep_keys is None:
        sweep_keys = [s for s in ctx.sweep_keys if all(t in ctx.tasks.get(s, ((),))[0] for t in tasks)]
    fig, axes = subplots(1, len(sweep_keys))
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
                ex = clipped_err(mx, *(stats.ci_half_width(pts[:, 0]),) * 2, metric_range(main[a]))
                ey = clipped_err(my, *(stats.ci_half_width(pts[:, 1]),) * 2, metric_range(main[b]))
                ax.errorbar([mx], [my], xerr=[[ex[0]], [ex[1]]], yerr=[[ey[0]], [ey[1]]], color=ctx.colour[arch],
                            marker=ctx.marker[w], markersize=5, markeredgecolor="black", markeredgewidth=0.5,
                            capsize=1.5, elinewidth=0.7)
        ax.set_xlabel(axis_label(a, main[a], _metric_hib(hib, a, main[a]), vertical=False))
        ax.set_ylabel(axis_label(b, main[b], _metric_hib(hib, b, main[b])))
        keep_in_range(ax, metric_range(main[b]))
        keep_in_range(ax, metric_range(main[a]), axis="x")
        if skey:
            ax.set_title(ctx.sweep_title(skey))
    line_legend(fig, ctx, weighting_handles(ctx))
    save(fig, path)
    return data


def tradeoff_pairs(ctx_tasks, tasks: Sequence[str] | None) -> list[list[str]]:
    """The task pairs of the trade-off figures: ``tasks`` (checked: two tasks of one sweep value), else
    each sweep value's first two tasks, one pair per distinct pair. ``ctx_tasks``: ``tasks_by_sweep``."""
    if max(len(v[0]) for v in ctx_tasks.values()) < 2:
        return []
    if tasks:
        task_list = task_meta_union(ctx_tasks)
        pair = list(tasks)
        unknown = [t for t in pair if t not in task_list]
        if len(pair) != 2 or unknown or not any(all(t in v[0] for t in pair) for v in ctx_tasks.values()):
            raise ValueError(f"--tasks needs two of {task_list} (of one sweep value), got {pair}")
        return [pair]
    pairs = []
    for v in ctx_tasks.values():
        if len(v[0]) >= 2 and list(v[0][:2]) not in pairs:
            pairs.append(list(v[0][:2]))
    return pairs


def task_meta_union(ctx_tasks) -> list[str]:
    """Every task of any sweep value, in first-seen order."""
    return list(dict.fromkeys(t for v in ctx_tasks.values() for t in v[0]))


# --------------------------------------------------------------------------- mixing weights


def _unit_order(name: str):
    kind, _, idx = name.rpartition("_")
    return (0 if "stitch" in name else 1 if "alpha" in name else 2, int(idx) if idx.isdigit() else 10**6, name)


def _unit_title(name: str) -> str:
    return name[len(taps.MIX_PREFIX):] if taps.is_mixing(name) else name


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


def _heatmap(ax, m, full, u, tick_tasks, vmax):
    """One unit's heatmap; per-channel units (3-d) are averaged over channels. Returns (image, title)."""
    title = _unit_title(u)
    if m.ndim == 3:
        m = m.mean(-1)
        title += f" (mean of {full.shape[-1]} ch.)"
    im = ax.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    rl, cl = _mix_ticks(u, m.shape, tick_tasks)
    ax.set_yticks(range(m.shape[0]))
    ax.set_yticklabels(rl, fontsize=6)
    ax.set_xticks(range(m.shape[1]))
    ax.set_xticklabels(cl, fontsize=6, rotation=90 if m.shape[1] > 3 else 0)
    if max(m.shape) <= 6:
        for (y, x), v in np.ndenumerate(m):
            ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=5.5,
                    color="white" if abs(v) > 0.6 * vmax else "black")
    return im, title


def figure_mixing(ctx, path: str, architecture: str, tasks: Sequence[str] | None = None) -> dict:
    """Heatmaps of learned mixing weights (mean over seeds): one column per unit, one row per (sweep, weighting).

    Cross-stitch (T x T, rows = receiving task, columns = source task;
    per-channel units are averaged over channels), sluice alpha
    ((task, subspace) pairs) and beta (task x layer). ``tasks`` labels the
    ticks; None: each sweep value's own tasks (a sweep may change them).
    """
    data, model_tasks = mixing_data(ctx.runs, architecture), mixing_tasks(ctx.runs, architecture)
    groups = [(s, w) for s in ctx.sweep_keys for w in ctx.weightings if (s, w) in data]
    units = sorted({k for d in data.values() for k in d}, key=_unit_order)
    shapes = {u: next(d[u].shape for d in data.values() if u in d) for u in units}
    widths = [max(1.9, 0.24 * shapes[u][1] + 1.1) for u in units]
    height = max([1.9] + [0.24 * shapes[u][0] + 1.1 for u in units])
    fig, axes = subplots(len(groups), len(units), gridspec_kw={"width_ratios": widths})
    fig.set_size_inches(sum(widths), height * len(groups) + 0.3)
    vmax = max([float(np.max(np.abs(m if m.ndim == 2 else m.mean(-1)))) for d in data.values() for m in d.values()]
               + [1e-6])
    im = None
    for i, g in enumerate(groups):
        head = ([g[1]] if ctx.many_w else []) + ([ctx.sweep_title(g[0])] if g[0] else [])
        for j, u in enumerate(units):
            ax = axes[i][j]
            ax.grid(False)
            if data[g].get(u) is None:
                ax.axis("off")
                continue
            tick_tasks = model_tasks.get(g[0]) or (tasks if tasks is not None else ctx.tasks.get(g[0], ((),))[0])
            im, title = _heatmap(ax, data[g][u], data[g][u], u, tick_tasks, vmax)
            ax.set_title(title + ("\n" + ", ".join(head) if head and j == 0 else ""), fontsize=7)
            if j == 0:
                ax.set_ylabel("to (task)" if "beta" not in u else "task")
            if i == len(groups) - 1:
                ax.set_xlabel("layer" if "beta" in u else "from")
    if im is not None:
        fig.tight_layout()
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02, label="mixing weight")
    fig.suptitle(f"{architecture}: learned mixing weights (mean over seeds)", y=1.02, fontsize=8)
    save(fig, path)
    return data


# --------------------------------------------------------------------------- the registry


def _always(ctx):
    return [("main_metric_bars", "main_metric_bars", None)]


def _delta_m_applies(ctx):
    if has_baseline(ctx.rows) and any(r["architecture"] not in ctx.baselines and r["delta_m"] is not None
                                      for r in ctx.rows):
        return [("delta_m", "delta_m", None)]
    return "no baseline (experiment.json's grid.baseline) or no multi-task run to compare with"


def _curves_applies(ctx):
    return [("learning_curves", "learning_curves", None)] if learning_curve_data(ctx.runs) else \
        "no training records in metrics.jsonl"


def _sweep_applies(ctx):
    fields = ctx.sweep_fields
    if not fields:
        return "the experiment has no sweep"
    if len(fields) > 1:
        return f"{len(fields)} swept fields ({', '.join(fields)}); a line plot needs exactly one"
    if len({json.dumps(r["sweep"][fields[0]]) for r in ctx.rows}) < 2:
        return f"{fields[0]} takes one value only"
    return [("sweep", f"sweep_{slug(short_field(fields[0]))}", fields[0])]


def _tradeoff_applies(ctx):
    if not ctx.pairs:
        return "one task only"
    return [("tradeoff" if n == 0 else f"tradeoff_{a}_vs_{b}", f"tradeoff_{slug(a)}_vs_{slug(b)}", [a, b])
            for n, (a, b) in enumerate(ctx.pairs)]


def _mixing_applies(ctx):
    archs = [a for a in ctx.archs if mixing_data(ctx.runs, a)]
    return [(f"mixing_{a}", f"mixing_{slug(a)}", a) for a in archs] or "no run has learned mixing weights"


def _draw_mixing(ctx, path, architecture):
    uniform = len(task_sections(ctx.rows)) == 1  # else a swept option changes the task set
    return figure_mixing(ctx, path, architecture, task_meta(ctx.rows)[0] if uniform else None)


FIGURES = [
    Figure("main_metric_bars", _always, figure_metric_bars),
    Figure("delta_m", _delta_m_applies, figure_delta_m),
    Figure("learning_curves", _curves_applies, figure_learning_curves),
    Figure("sweep_<field>", _sweep_applies, figure_sweep),
    Figure("tradeoff_<a>_vs_<b>", _tradeoff_applies, figure_tradeoff),
    Figure("frontier_<a>_vs_<b>", frontier.frontier_applies, frontier.figure_frontier),
    Figure("mixing_<architecture>", _mixing_applies, _draw_mixing),
    Figure("critical_difference_<field>", ranks.cd_applies, ranks.figure_cd),
    Figure("relatedness_<group>", relatedness_applies, figure_relatedness),
]


def plot_all(workdir: str, tasks: Sequence[str] | None = None, select: str | None = None, log=print) -> dict:
    """Write every figure of ``FIGURES`` that applies into ``<workdir>/figures/``; returns {key: path}.

    ``tasks`` picks the trade-off pair (two tasks of one sweep value; checked
    before any figure is drawn). A figure that does not apply is skipped with
    a note via ``log``.
    """
    exp = results.read_experiment(workdir)
    select = results.selection(select, exp)  # None: the experiment's own (config.select)
    runs = [r for r in results.load_runs(workdir) if not results.is_search_run(r["run_id"])]
    live = [r for r in aggregate(runs, select=select, experiment=exp) if r["n"] > 0]
    if not live:
        log(f"no finished runs under {workdir}: no figures")
        return {}
    ctx = Context(runs, live, exp, select, tradeoff_pairs(tasks_by_sweep(live), tasks))
    diffs = pooling.differences(runs, exp)
    if diffs:  # launch.table refuses these (without --pool_configs); the figures say so
        log(f"the figures pool runs of different configurations: {pooling.describe(diffs)}")
    out_dir = os.path.join(workdir, results.FIGURES)
    written: dict = {}
    with plt().rc_context(STYLE):
        for fig in FIGURES:
            todo = fig.applies(ctx)
            if isinstance(todo, str):
                log(f"skip {re.sub(r'<[^>]+>', '*', fig.name)}.png: {todo}")
                continue
            for key, stem, arg in todo:
                written[key] = os.path.join(out_dir, f"{stem}.png")
                fig.draw(ctx, written[key], arg)
    return written
