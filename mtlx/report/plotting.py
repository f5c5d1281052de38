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


METRIC_RANGE = {"accuracy": (0.0, 1.0), "auc": (0.0, 1.0), "mse": (0.0, math.inf), "loss": (0.0, math.inf)}
BREAK_GID = "axis-break"  # the gid of the broken-axis mark (a bar chart whose y axis does not start at 0)
ERROR_NOTE = "error bars: 95% CI over seeds"


def metric_range(metric: str | None) -> tuple[float, float]:
    """The values a metric can take (accuracy, AUC in [0, 1]; MSE, loss >= 0); unbounded when unknown."""
    return METRIC_RANGE.get(metric, (-math.inf, math.inf))


def clipped_err(mean: float, lo_err: float, hi_err: float, bounds=(-math.inf, math.inf)) -> tuple[float, float]:
    """Error-bar lengths below and above ``mean`` cut at the metric's range (NaN lengths -> 0)."""
    lo_err = lo_err if math.isfinite(lo_err) else 0.0
    hi_err = hi_err if math.isfinite(hi_err) else 0.0
    return max(0.0, min(lo_err, mean - bounds[0])), max(0.0, min(hi_err, bounds[1] - mean))


def grouped_bars(ax, groups, hues, get, colour, bounds=(-math.inf, math.inf), n_at_zero: bool = False):
    """Bars: x = groups, one bar per hue; get(group, hue) -> (value, err below, err above, n) or None.

    Error bars are cut at ``bounds`` (the metric's range); each bar says its n at its foot (``n_at_zero``:
    beside the zero line, on the side the bar does not take, for bars of either sign)."""
    from matplotlib import transforms
    present = [h for h in hues if any(get(g, h) is not None for g in groups)]
    width = 0.8 / max(len(present), 1)
    foot = transforms.blended_transform_factory(ax.transData, ax.transAxes)
    for j, h in enumerate(present):
        xs, ys, lo, hi, ns = [], [], [], [], []
        for i, g in enumerate(groups):
            v = get(g, h)
            if v is not None and math.isfinite(v[0]):
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(v[0])
                e = clipped_err(v[0], v[1], v[2], bounds)
                lo.append(e[0])
                hi.append(e[1])
                ns.append(v[3])
        ax.bar(xs, ys, width * 0.92, yerr=[lo, hi] if any(lo + hi) else None,
               color=colour(h), label=str(h), capsize=2, error_kw={"elinewidth": 0.8, "capthick": 0.8},
               edgecolor="black", linewidth=0.4)
        for x, y, n in zip(xs, ys, ns):
            where = ({"y": 0.0, "va": "bottom" if y < 0 else "top"} if n_at_zero else
                     {"y": 0.02, "va": "bottom", "transform": foot})
            ax.text(x, s=f"n={n}", ha="center", rotation=90, fontsize=5, color="black", gid="bar-n", **where)
    ax.set_xticks(range(len(groups)))
    return present


def zoom(ax, vals, errs_lo, errs_hi, bounds=(-math.inf, math.inf)):
    """Bars of metrics that live near 1 (accuracy, AUC) are unreadable from 0: zoom to the data and mark the
    broken axis (a zig-zag at the foot of the y axis, gid ``BREAK_GID``); the limits and ticks stay inside
    ``bounds``."""
    lo = [v - e for v, e in zip(vals, errs_lo) if math.isfinite(v)]
    hi = [v + e for v, e in zip(vals, errs_hi) if math.isfinite(v)]
    if lo:
        lo_, hi_ = min(lo), max(hi)
        if lo_ > 0 and (hi_ - lo_) < 0.25 * hi_:
            pad = (hi_ - lo_) * 0.3 + 1e-12
            ax.set_ylim(max(0.0, lo_ - pad), hi_ + pad)
            mark_broken_axis(ax)
    keep_in_range(ax, bounds)


def mark_broken_axis(ax):
    """Two short diagonal strokes across the foot of the y axis (the usual broken-axis mark)."""
    kw = {"transform": ax.transAxes, "color": "black", "clip_on": False, "linewidth": 0.8, "gid": BREAK_GID}
    for dy in (0.0, 0.03):
        ax.plot([-0.025, 0.025], [0.01 + dy, 0.04 + dy], **kw)


def keep_in_range(ax, bounds, axis: str = "y"):
    """Cut the ``axis`` limits at the metric's range and keep only the ticks inside the limits."""
    get_lim, set_lim, get_ticks, set_ticks = (getattr(ax, f"{op}_{axis}{what}") for op, what in
                                              (("get", "lim"), ("set", "lim"), ("get", "ticks"), ("set", "ticks")))
    v0, v1 = get_lim()
    v0, v1 = max(v0, bounds[0]), min(v1, bounds[1])
    set_lim(v0, v1)
    set_ticks([t for t in get_ticks() if v0 - 1e-12 <= t <= v1 + 1e-12])
    set_lim(v0, v1)


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
