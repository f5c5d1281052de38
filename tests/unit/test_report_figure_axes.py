"""Honest figures, read back from the matplotlib objects (not from PNG sizes): bar charts start at zero or mark a
broken axis, limits, ticks and error bars stay inside a metric's range, n on every bar, validation curves beside
the training loss, sweep series offset so that their error bars do not overlap."""

import numpy as np
import pytest

import fake_runs
from fixtures_report import CORR, figure_context
from mtlx.report import figures, plotting

EPS = 1e-9


def near_the_edge(arch, w, seed, sweep, task, metric):
    """AUC/accuracy just under 1 (a CI above 1 if not cut); MSE near 0 with seeds far apart (a CI below 0)."""
    r = np.random.default_rng(seed)
    if metric in ("auc", "accuracy"):
        return float(1.0 - 0.002 * (seed + 1) * (1 + r.random()) - (0.01 if arch == "single_task" else 0))
    if metric == "mse":
        return [0.01, 0.2, 0.02][seed]
    return 0.3


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("edge"))
    fake_runs.make_experiment(root, tasks={"a": "binary", "b": "regression"}, architectures=("single_task", "hard"),
                              metric_fn=near_the_edge)
    return root


def _bar_axes(fig):
    return [ax for ax in fig.axes if ax.patches]


def _errorbar_ys(ax):
    ys = []
    for c in ax.containers:
        eb = getattr(c, "errorbar", None) or (c if hasattr(c, "lines") and len(c.lines) == 3 else None)
        if eb is not None:
            for coll in eb.lines[2]:
                ys += [y for seg in coll.get_segments() for _, y in seg]
    return ys


def _in(values, lo, hi):
    return all(lo - EPS <= v <= hi + EPS for v in values)


def test_metric_bars_stay_in_the_metric_range(edge, drawn):
    figures.figure_metric_bars(figure_context(edge), "bars.png")
    (fig,) = drawn.values()
    axes = {ax.get_title(): ax for ax in _bar_axes(fig)}
    for task, (lo, hi) in (("a", (0, 1)), ("b", (0, np.inf))):
        ax = axes[task]
        y0, y1 = ax.get_ylim()
        assert _in([y0, y1], lo, hi), (task, y0, y1)
        assert _in(ax.get_yticks(), max(lo, y0), min(hi, y1)), (task, ax.get_yticks())
        ys = _errorbar_ys(ax)
        assert ys and _in(ys, lo, hi), (task, ys)
        # starts at 0, or the axis carries the broken-axis mark
        assert y0 == 0 or any(ln.get_gid() == plotting.BREAK_GID for ln in ax.lines), task
        n_labels = [t.get_text() for t in ax.texts if t.get_gid() == "bar-n"]
        assert n_labels == ["n=3"] * len(ax.patches)
    assert axes["a"].get_ylim()[0] > 0  # AUC near 1: zoomed, so marked broken
    assert any(t.get_text() == plotting.ERROR_NOTE for t in fig.texts)


def test_delta_m_bars_start_at_zero_with_n(edge, drawn):
    figures.figure_delta_m(figure_context(edge), "dm.png")
    (fig,) = drawn.values()
    (ax,) = _bar_axes(fig)
    y0, y1 = ax.get_ylim()
    assert y0 <= 0 <= y1 and not any(ln.get_gid() == plotting.BREAK_GID for ln in ax.lines)
    assert [t.get_text() for t in ax.texts if t.get_gid() == "bar-n"] == ["n=3"]
    row = next(r for r in figure_context(edge).rows if r["architecture"] == "hard")
    assert sorted(_errorbar_ys(ax))[::len(_errorbar_ys(ax)) - 1] == pytest.approx(list(row["delta_m_ci"]))


def test_learning_curves_show_validation_beside_training(edge, drawn):
    figures.figure_learning_curves(figure_context(edge), "curves.png")
    (fig,) = drawn.values()
    for ax in fig.axes[:2]:
        labels = [ln.get_label() for ln in ax.lines]
        val = [ln for ln in ax.lines if ln.get_label().startswith(figures.VALIDATION_PREFIX)]
        assert len(val) == 2 and len(labels) - len(val) == 2  # both architectures, train and validation
        hard = next(ln for ln in val if ln.get_label().endswith("hard"))
        steps = list(hard.get_xdata())
        assert steps == [50, 100]
        want = [np.mean([fake_runs.validation_loss(1, s, st) for s in (0, 1, 2)]) for st in steps]
        np.testing.assert_allclose(hard.get_ydata(), want, rtol=1e-12)


def test_sweep_series_are_offset_and_in_range(tmp_path, drawn):
    fake_runs.make_experiment(str(tmp_path), tasks={"a": "binary"}, architectures=("single_task", "hard", "sluice"),
                              sweep={CORR: [0.5, 0.9]}, metric_fn=near_the_edge)
    figures.figure_sweep(figure_context(str(tmp_path)), "sweep.png", CORR)
    (fig,) = drawn.values()
    ax = fig.axes[0]
    xs = []
    for c in ax.containers:
        line = c.lines[0]
        xs.append(line.get_transform().transform(np.column_stack([line.get_xdata(), line.get_ydata()]))[0, 0])
    assert len(xs) == 3 and len({round(x, 3) for x in xs}) == 3  # three series at x = 0.5, drawn apart
    assert _in(_errorbar_ys(ax), 0, 1) and _in(ax.get_ylim(), 0, 1)
    assert _in(_errorbar_ys(ax), *ax.get_ylim())  # every bar inside the view (the offset kept the autoscaling)
    assert ax.get_ylim()[1] - ax.get_ylim()[0] < 0.2  # zoomed to the data, not the default view


def test_tradeoff_stays_in_both_metrics_ranges(edge, drawn):
    figures.figure_tradeoff(figure_context(edge), "tradeoff.png", ["a", "b"])
    (fig,) = drawn.values()
    ax = fig.axes[0]
    assert _in(ax.get_xlim(), 0, 1) and _in(ax.get_xticks(), *ax.get_xlim())
    assert _in(ax.get_ylim(), 0, np.inf) and _in(ax.get_yticks(), *ax.get_ylim())
    assert _in(_errorbar_ys(ax), 0, np.inf)
