"""The scalarisation frontier (Xin et al. 2022): the static sweep's weights, the Pareto envelope by hand, the
significance of "beyond", and the figure read back from matplotlib (axes inside the metrics' ranges, the line
through the front's means)."""

import math

import numpy as np
import pytest
from scipy import stats as sps

import fake_runs
from fixtures_report import figure_context
from mtlx import report
from mtlx.frontier import static_sweep, sweep_weights
from mtlx.report import figures, frontier, tables

EPS = 1e-9
OFFSETS = (-1.0, 0.5, 1.0, -0.5)  # per seed, mean 0: a row's mean is exactly its centre
STATIC = {0.25: (0.70, 0.85), 0.4: (0.72, 0.75), 0.5: (0.78, 0.80), 0.75: (0.85, 0.70)}  # w -> centre (a, b)
FRONT = (0.25, 0.5, 0.75)  # 0.4 is dominated by 0.5
METHODS = {"equal": (0.78, 0.80), "good": (0.86, 0.86), "bad": (0.70, 0.70)}
NOISY = {"a": (0.70, 0.90, 0.72, 0.88), "b": (0.999, 0.80, 0.999, 0.90)}  # beyond on average, seeds far apart
WEIGHTINGS = ("equal",) + tuple(f"static_w{w:g}" for w in STATIC) + ("good", "bad", "noisy")


def _w_of(label):
    return float(label[len("static_w"):]) if label.startswith("static_w") else None


def accuracies(arch, w, seed, sweep, task, metric):
    if metric != "accuracy":
        return 0.5
    if w == "noisy":
        return NOISY[task][seed]
    centre = STATIC[_w_of(w)] if _w_of(w) is not None else METHODS[w]
    return centre["ab".index(task)] + 0.002 * OFFSETS[seed]


def static_config(arch, w, seed, point):
    """The run config of a sweep row: weighting static with (w, 1 - w) (what mtlx.frontier.static_sweep gives)."""
    x = _w_of(w)
    return {} if x is None else {"weighting.name": "static", "weighting.options.weights": [x, 1 - x]}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("frontier"))
    f = fake_runs.make_experiment(root, tasks={"a": "classification", "b": "classification"}, architectures=("hard",),
                                  weightings=WEIGHTINGS, seeds=(0, 1, 2, 3), metric_fn=accuracies,
                                  config_overrides=static_config, steps=(10, 20))
    return f


@pytest.fixture(scope="module")
def analysed(fake):
    runs = report.load_runs(fake.root)
    (front,) = frontier.analyse(report.aggregate(runs), runs)
    return front


# --------------------------------------------------------------------------- the sweep


def test_static_sweep_is_an_even_grid_on_the_simplex():
    entries = static_sweep(9)
    assert [e["options"]["weights"][0] for e in entries] == pytest.approx([k / 10 for k in range(1, 10)])
    for e in entries:
        a, b = e["options"]["weights"]
        assert e["name"] == "static" and a > 0 and b > 0 and a + b == pytest.approx(1.0, abs=1e-12)
        assert isinstance(a, float) and isinstance(b, float)  # float options: one program for the whole sweep
        assert e["label"] == f"static_w{a:g}"
    assert len({e["label"] for e in entries}) == 9
    with_ends = sweep_weights(5, endpoints=True)
    assert with_ends == [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]
    assert sweep_weights(3) == [(0.25, 0.75), (0.5, 0.5), (0.75, 0.25)]
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="static_sweep: n="):
            sweep_weights(bad)
    with pytest.raises(ValueError, match="endpoints=True"):
        sweep_weights(1, endpoints=True)


def test_the_experiment_trains_its_static_sweep_as_one_program():
    from experiments import scalarization_frontier
    from mtlx import grid
    from mtlx.parallel.population import program_key

    for arg in (None, "smoke"):
        e = grid.check_experiment(scalarization_frontier.get_config(arg))
        assert e["parallel"]["runs_per_program"] == 0
        runs = grid.expand(grid.Experiment(e))
        static = [r for r in runs if r["weighting_name"] == "static"]
        assert len(static) == len(e["seeds"]) * (9 if arg is None else 3)
        assert len({program_key(r["config"]) for r in static}) == 1
        with_lr = [program_key({**r["config"], "optimizer": {**r["config"]["optimizer"], "learning_rate": lr}})
                   for r in static for lr in (3e-4, 3e-3)]
        assert len(set(with_lr)) == 1  # the tuned learning rates join the same program


# --------------------------------------------------------------------------- geometry by hand


def test_envelope_by_hand():
    pts = [(0.5, 0.9), (0.6, 0.6), (0.9, 0.5), (0.7, 0.8), (0.7, 0.8)]
    assert frontier.pareto_front(pts) == [0, 3, 2]  # (0.6, 0.6) is dominated, the repeated point counted once
    front = [pts[i] for i in (0, 3, 2)]
    assert frontier.chain_value(front, 0.8) == pytest.approx(0.65)  # halfway from (0.7, 0.8) to (0.9, 0.5)
    assert frontier.chain_value(front, 0.6) == pytest.approx(0.85)
    assert frontier.is_beyond(front, (0.8, 0.66)) and not frontier.is_beyond(front, (0.8, 0.64))
    assert frontier.is_beyond(front, (0.95, 0.1))  # better on a than every sweep point
    assert frontier.is_beyond(front, (0.4, 0.91)) and not frontier.is_beyond(front, (0.4, 0.9))
    assert not frontier.is_beyond(front, (0.7, 0.8))  # on the chain counts as inside
    assert not frontier.is_beyond(front, (0.8, 0.65))


def test_the_front_of_the_fake_sweep(analysed):
    assert analysed["tasks"] == ["a", "b"] and analysed["architecture"] == "hard"
    assert analysed["front_labels"] == [f"static_w{w:g}" for w in FRONT]
    assert np.allclose(analysed["front"], [STATIC[w] for w in FRONT], atol=1e-12)
    on = {s["weighting"]: s["on_front"] for s in analysed["static"]}
    assert on == {f"static_w{w:g}": w in FRONT for w in STATIC}


# --------------------------------------------------------------------------- significance


def _iut_by_hand(fake, w):
    """max over front points of min(1, 2 min_t p_t), p_t one-sided Welch (scipy's alternative='greater')."""
    out = []
    for s in FRONT:
        ps = [sps.ttest_ind(fake.values("hard", w, {}, t, "accuracy"),
                            fake.values("hard", f"static_w{s:g}", {}, t, "accuracy"),
                            equal_var=False, alternative="greater").pvalue for t in ("a", "b")]
        out.append(min(1.0, 2 * min(ps)))
    return max(out)


def _holm_by_hand(p):
    order = sorted(p, key=p.get)
    adj, run = {}, 0.0
    for i, k in enumerate(order):
        run = max(run, min(1.0, (len(p) - i) * p[k]))
        adj[k] = run
    return adj


def test_beyond_the_frontier_and_its_significance(fake, analysed):
    got = {c["weighting"]: c for c in analysed["compared"]}
    assert set(got) == {"equal", "good", "bad", "noisy"}
    assert got["good"]["verdict"] == frontier.BEYOND_SIG  # clearly beyond, tight seeds
    assert got["bad"]["verdict"] == frontier.INSIDE
    assert got["equal"]["verdict"] == frontier.INSIDE  # on a sweep point of the front
    assert got["noisy"]["verdict"] == frontier.BEYOND  # beyond on average, the seeds too far apart
    raw = {w: _iut_by_hand(fake, w) for w in got}
    for w, c in got.items():
        assert c["p"] == pytest.approx(raw[w], rel=1e-6, abs=1e-12), w
        assert c["p_holm"] == pytest.approx(_holm_by_hand(raw)[w], rel=1e-6, abs=1e-12), w
    assert got["good"]["p_holm"] < 0.05 <= got["noisy"]["p_holm"]
    # (0.78, 0.80) beats (0.70, 0.70) by 0.08 on both tasks; (0.70, 0.85) and (0.85, 0.70) tie it on one
    assert got["bad"]["strongest"] == "static_w0.5"


def test_the_table_notes_say_which_rows_are_beyond(fake):
    notes = tables.table_model(fake.root)["notes"]
    line = next(n for n in notes if n.startswith("Frontier of hard"))
    assert "(front: static_w0.25, static_w0.5, static_w0.75)" in line
    assert f"{frontier.BEYOND_SIG}: good (p_holm" in line
    assert f"{frontier.BEYOND}: noisy" in line
    assert f"{frontier.INSIDE}: equal" in line and "bad (strongest sweep point static_w0.5)" in line
    assert any(n.startswith("Scalarisation frontier (Xin et al. 2022)") for n in notes)


def test_lower_is_better_is_oriented(tmp_path):
    centres = {"static_w0.25": (0.70, 0.30), "static_w0.75": (0.85, 0.50), "m_out": (0.80, 0.35),
               "m_in": (0.80, 0.45)}

    def mixed(arch, w, seed, sweep, task, metric):
        return centres[w]["ab".index(task)] + 0.001 * OFFSETS[seed] if metric in ("accuracy", "mse") else 0.5

    fake_runs.make_experiment(str(tmp_path), tasks={"a": "classification", "b": "regression"},
                              architectures=("hard",), weightings=tuple(centres), seeds=(0, 1, 2, 3),
                              metric_fn=mixed, config_overrides=static_config, steps=(10, 20))
    runs = report.load_runs(str(tmp_path))
    (f,) = frontier.analyse(report.aggregate(runs), runs)
    assert f["signs"] == [1.0, -1.0]
    # the chain from (0.70, 0.30) to (0.85, 0.50) has mse 0.30 + 0.2 * (0.10 / 0.15) = 0.4333 at accuracy 0.80
    got = {c["weighting"]: c["verdict"] for c in f["compared"]}
    assert got["m_out"] != frontier.INSIDE and got["m_in"] == frontier.INSIDE


def test_no_frontier_without_a_static_sweep(edge_free):
    runs = report.load_runs(edge_free)
    assert frontier.analyse(report.aggregate(runs), runs) == []
    assert frontier.table_notes(report.aggregate(runs), runs) == []


@pytest.fixture
def edge_free(tmp_path):
    fake_runs.make_experiment(str(tmp_path), tasks={"a": "classification", "b": "classification"},
                              architectures=("hard",), weightings=("equal", "good"), seeds=(0, 1),
                              metric_fn=lambda *a: 0.8 if a[-1] == "accuracy" else 0.5, steps=(10, 20))
    return str(tmp_path)


# --------------------------------------------------------------------------- the figure


def _errorbar_coords(ax):
    xs, ys = [], []
    for c in ax.containers:
        for coll in getattr(c, "lines", (None, None, ()))[2]:
            for seg in coll.get_segments():
                xs += [x for x, _ in seg]
                ys += [y for _, y in seg]
    return xs, ys


def test_the_figure_stays_in_range_and_draws_the_front(fake, drawn):
    ctx = figure_context(fake.root)
    todo = frontier.frontier_applies(ctx)
    assert todo == [("frontier_a_vs_b", "frontier_a_vs_b", ["a", "b"])]
    assert any(f.name == "frontier_<a>_vs_<b>" for f in figures.FIGURES)
    frontier.figure_frontier(ctx, "frontier.png", ["a", "b"])
    (fig,) = drawn.values()
    (ax,) = [a for a in fig.axes if a.get_visible()]
    for lo, hi in (ax.get_xlim(), ax.get_ylim()):
        assert -EPS <= lo < hi <= 1 + EPS, (lo, hi)
    assert all(-EPS <= t <= 1 + EPS for t in list(ax.get_xticks()) + list(ax.get_yticks()))
    xs, ys = _errorbar_coords(ax)
    assert ys and all(-EPS <= v <= 1 + EPS for v in xs + ys)  # the noisy row's CI reaches past 1 and is cut
    assert max(ys) == pytest.approx(1.0)
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == frontier.FRONTIER_GID]
    means = [(np.mean(fake.values("hard", f"static_w{w:g}", {}, "a", "accuracy")),
              np.mean(fake.values("hard", f"static_w{w:g}", {}, "b", "accuracy"))) for w in FRONT]
    assert np.allclose(np.column_stack([line.get_xdata(), line.get_ydata()]), means, atol=1e-12)
    dominated = np.mean(fake.values("hard", "static_w0.4", {}, "a", "accuracy"))
    assert not np.any(np.isclose(line.get_xdata(), dominated))
    assert not math.isnan(ax.get_xlim()[0])
