"""What every figure shares: the plotting context (orders, colours, styles), matplotlib helpers.

Colours: one per architecture label throughout an experiment's figures,
taken from ``PALETTE`` in the order of the grid's architecture labels (else
the order of first appearance); the baseline (``grid.baseline``) is grey.
One line style and marker per weighting.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Sequence

from mtlx.report.aggregate import _orders, baseline_label, sweep_label, tasks_by_sweep

BASELINE_COLOUR = "#7f7f7f"
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
           "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1",
           "#636363", "#9edae5", "#dbdb8d"]
LINESTYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "axes.spines.top": False, "axes.spines.right": False, "figure.dpi": 100,
         "savefig.dpi": 200, "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "lines.linewidth": 1.2}
PANEL_W, PANEL_H = 2.6, 2.1  # inches; two panels fit a 6.75in two-column width, one a 3.25in column


def colours_for(labels: Sequence[str], baseline: str | None = None) -> dict:
    """Architecture label -> colour: the baseline grey, the others ``PALETTE`` in the order given
    (black once the palette is used up)."""
    others = [lab for lab in dict.fromkeys(labels) if lab != baseline]
    out = {lab: PALETTE[i] if i < len(PALETTE) else "#000000" for i, lab in enumerate(others)}
    if baseline in labels:
        out[baseline] = BASELINE_COLOUR
    return out


class Context:
    """Experiment-wide plotting context: the runs and finished rows, orders, colours, weighting styles.

    ``pairs``: the task pairs of the trade-off figures (see ``figures.tradeoff_pairs``).
    """

    def __init__(self, runs, rows, exp, select: str = "final", pairs=()):
        self.runs, self.rows, self.exp, self.select, self.pairs = runs, rows, exp, select, list(pairs)
        archs, weightings, _ = _orders(runs, exp)
        self.baseline = baseline_label(exp)
        self.colour = colours_for(archs, self.baseline)
        self.archs = [a for a in archs if any(r["architecture"] == a for r in rows)]
        self.weightings = [w for w in weightings if any(r["weighting"] == w for r in rows)]
        self.baselines = {r["architecture"] for r in rows if r["is_baseline"]}
        self.ls = {w: LINESTYLES[i % len(LINESTYLES)] for i, w in enumerate(self.weightings)}
        self.marker = {w: MARKERS[i % len(MARKERS)] for i, w in enumerate(self.weightings)}
        self.many_w = len(self.weightings) > 1
        self.sweep_keys = list(dict.fromkeys(r["sweep_key"] for r in rows))
        self.sweeps = {r["sweep_key"]: r["sweep"] for r in rows}
        self.sweep_fields = sorted({k for r in rows for k in r["sweep"]})
        self.tasks = tasks_by_sweep(rows)  # {sweep_key: (tasks, main metric, higher_is_better)}

    def name(self, arch, w):
        return f"{arch} / {w}" if self.many_w else str(arch)

    def sweep_title(self, skey):
        return sweep_label(self.sweeps[skey], self.sweep_fields) if skey else ""

    def delta_m_label(self) -> str:
        return f"Δm% vs {self.baseline} (↑ better)"


# --------------------------------------------------------------------------- matplotlib


def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def save(fig, path):
    """Write ``fig`` as a PNG through a temp file and a rename; close it."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, format="png", bbox_inches="tight")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    plt().close(fig)


def axis_label(task: str, metric: str, higher: bool, vertical: bool = True) -> str:
    arrow = ("↑" if higher else "↓") if vertical else ("→" if higher else "←")
    return f"{task} {metric} ({arrow} better)"


def subplots(nrows, ncols, **kw):
    fig, axes = plt().subplots(nrows, ncols, figsize=(PANEL_W * ncols, PANEL_H * nrows), squeeze=False, **kw)
    return fig, axes


def task_axes(n_sweeps: int, n_tasks: int, **kw):
    """{(sweep index, task index): ax}: one row per sweep value, or (no sweep) the tasks wrapped at 3 a row."""
    if n_sweeps == 1:
        ncols = n_tasks if n_tasks <= 3 else (2 if n_tasks == 4 else 3)
        nrows = -(-n_tasks // ncols)
        fig, axes = subplots(nrows, ncols, **kw)
        for k in range(n_tasks, nrows * ncols):
            axes.flat[k].set_visible(False)
        return fig, {(0, j): axes.flat[j] for j in range(n_tasks)}
    fig, axes = subplots(n_sweeps, n_tasks, **kw)
    return fig, {(i, j): axes[i][j] for i in range(n_sweeps) for j in range(n_tasks)}


def grouped_bars(ax, groups, hues, get, colour):
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
        ax.bar(xs, ys, width * 0.92, yerr=[e if math.isfinite(e) else 0.0 for e in es] if has_err else None,
               color=colour(h), label=str(h), capsize=2, error_kw={"elinewidth": 0.8, "capthick": 0.8},
               edgecolor="black", linewidth=0.4)
    ax.set_xticks(range(len(groups)))
    return present


def zoom(ax, vals, errs):
    """Bars of metrics that live near 1 (accuracy, AUC) are unreadable from 0: zoom to the data."""
    lo = [v - e for v, e in zip(vals, errs) if math.isfinite(v)]
    hi = [v + e for v, e in zip(vals, errs) if math.isfinite(v)]
    if not lo:
        return
    lo_, hi_ = min(lo), max(hi)
    if lo_ > 0 and (hi_ - lo_) < 0.25 * hi_:
        pad = (hi_ - lo_) * 0.3 + 1e-12
        ax.set_ylim(max(0.0, lo_ - pad), hi_ + pad)


def bar_legend(fig, ctx, archs=None):
    """A legend of coloured patches above the figure, one per architecture."""
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=ctx.colour[a], edgecolor="black", linewidth=0.4, label=a)
               for a in (ctx.archs if archs is None else archs)]
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 4),
               frameon=False)
    fig.tight_layout()


def weighting_handles(ctx, markers=True):
    from matplotlib.lines import Line2D
    if not ctx.many_w:
        return []
    return [Line2D([], [], color="black", linestyle=ctx.ls[w], marker=ctx.marker[w] if markers else None,
                   markersize=4, label=w) for w in ctx.weightings]


def line_legend(fig, ctx, extra=()):
    """A legend of coloured lines (one per architecture) plus ``extra`` handles, above the figure."""
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=ctx.colour[a], label=a) for a in ctx.archs] + list(extra)
    fig.tight_layout()
    fig.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 4),
               frameon=False)
