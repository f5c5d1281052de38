"""mtlx.report's figures and launch.plot (in-process): the numbers each figure draws, and the files
plot_all writes, derived from the FIGURES registry (no hand-written list of figure names here)."""

import json
import os
import re
import types

import numpy as np
import pytest
import scipy.stats

import fake_runs
from fixtures_report import CORR, GROUP, copy_of, group_tasks
from mtlx import report, results, taps
from mtlx.report import figures as figures_module, plotting
from mtlx.report.figure_data import mixing_tasks
from mtlx.report.figures import _curve_panel

PNG = b"\x89PNG\r\n\x1a\n"
NEEDS_STATIC_SWEEP = {"frontier_<a>_vs_<b>"}  # no fake here has a static-weight sweep (tests/unit/test_frontier.py)


def expected_files(facts: dict) -> set:
    """The file names FIGURES promises, placeholders filled from ``facts`` {(placeholder, ...): [values, ...]}.

    A name without placeholders is always expected; one whose placeholders ``facts`` lacks is expected to be
    skipped (no file).
    """
    out = set()
    for fig in report.FIGURES:
        if fig.name in NEEDS_STATIC_SWEEP:
            continue
        holes = tuple(re.findall(r"<(\w+)>", fig.name))
        for values in ([()] if not holes else facts.get(holes, [])):
            name = fig.name
            for h, v in zip(holes, values):
                name = name.replace(f"<{h}>", v)
            out.add(f"{name}.png")
    return out


def _assert_pngs(root, want, lines=None, min_bytes=0):
    files = set(os.listdir(os.path.join(root, "figures")))
    assert {f for f in files if f.endswith(".png")} == want
    # beside each relatedness figure, its grouping suggestion; nothing else
    assert files - want == {f[:-4] + ".json" for f in want if f.startswith("relatedness_")}
    for name in want:
        with open(os.path.join(root, "figures", name), "rb") as f:
            blob = f.read()
        assert blob[:8] == PNG and len(blob) > min_bytes, name
        if lines is not None:
            assert f"wrote {os.path.join(root, 'figures', name)}" in lines


# --------------------------------------------------------------------------- the registry


def test_registry_entries_are_unique_and_callable():
    names = [f.name for f in report.FIGURES]
    assert len(names) == len(set(names)) and all(callable(f.applies) and callable(f.draw) for f in report.FIGURES)


def test_launch_plot_writes_every_figure_kind(sweep_exp, tmp_path):
    from launch import plot
    root = copy_of(sweep_exp, tmp_path)
    lines = []
    written = plot.plot(root, tasks=["b", "a"], echo=lines.append)
    mixing = sorted({arch for (_, arch, _, _), m in sweep_exp.mixing.items() if m})
    groups = sorted({f"{arch}_{w}_correlation{json.loads(p)['task_set.options.correlation']}"
                     for (p, arch, w, _) in sweep_exp.metrics})  # the finished runs' (relatedness) groups
    want = expected_files({("field",): [("correlation",)], ("a", "b"): [("b", "a")],
                           ("architecture",): [(a,) for a in mixing], ("group",): [(g,) for g in groups]})
    assert len(want) == len(report.FIGURES) - 2 - len(NEEDS_STATIC_SWEEP) + len(mixing) + len(groups)  # every other kind applies
    _assert_pngs(root, want, lines, min_bytes=5000)
    assert len([ln for ln in lines if ln.startswith("note:")]) == len(NEEDS_STATIC_SWEEP)
    assert set(os.path.basename(p) for p in written.values()) == want


def test_plot_all_skips_what_does_not_apply(tmp_path):
    fake_runs.make_experiment(str(tmp_path), tasks={"a": "binary"}, architectures=("single_task", "hard"),
                              seeds=(0, 1))
    notes = []
    written = report.plot_all(str(tmp_path), log=notes.append)
    assert {f"{k}.png" for k in written} == expected_files({})  # no sweep, one task, no mixing weights
    assert len(notes) == sum("<" in f.name for f in report.FIGURES)
    text = " ".join(notes)
    assert "no sweep" in text and "one task" in text and "mixing" in text
    _assert_pngs(str(tmp_path), expected_files({}))


def test_mixing_heatmaps_label_auxiliary_tasks_too(tmp_path, monkeypatch):
    """A mixing unit spans every task of the model; the table's tasks are the main ones only (a main task
    with POS as auxiliary, sluice_conll:pairs): the heatmap's axes must still name all of them."""
    fake = fake_runs.make_experiment(str(tmp_path), tasks={"c": "classification", "a": "classification",
                                                           "b": "classification"},
                                     architectures=("single_task", "cross_stitch", "sluice"), seeds=(0, 1))
    for run_id in fake.run_ids.values():
        run_dir = results.run_path(fake.root, run_id)
        s = results.read_summary(run_dir)
        s["tasks"]["a"]["role"] = "auxiliary"  # the middle one, of a task set not in alphabetical order
        results.write_summary(run_dir, s)
    runs = report.load_runs(fake.root)
    assert all(list(r["main_metric"]) == ["c", "b"] for r in report.aggregate(runs))
    assert list(mixing_tasks(runs, "sluice").values()) == [["c", "a", "b"]]
    labels, real_save = {}, figures_module.save

    def save(fig, path):  # each heatmap's row labels, by figure and panel title
        labels.update({(os.path.basename(path), ax.get_title().split("\n")[0].split(" (")[0]):
                       [t.get_text() for t in ax.get_yticklabels()] for ax in fig.axes if ax.get_title()})
        real_save(fig, path)
    monkeypatch.setattr(figures_module, "save", save)
    written = report.plot_all(fake.root, log=lambda m: None)  # 3 x 3 units: raised with 2 tick labels
    assert {"mixing_cross_stitch", "mixing_sluice"} <= set(written)
    stitch = {k[1]: v for k, v in labels.items() if k[0] == "mixing_cross_stitch.png"}
    sluice = {k[1]: v for k, v in labels.items() if k[0] == "mixing_sluice.png"}
    assert stitch and all(v == ["c", "a", "b"] for v in stitch.values())
    assert sluice["beta"] == ["c", "a", "b"]
    assert [v for k, v in sluice.items() if k.startswith("alpha")] == [["c:0", "c:1", "a:0", "a:1", "b:0", "b:1"]] * 2


def test_empty_dir_has_no_figures(tmp_path):
    notes = []
    assert report.plot_all(str(tmp_path), log=notes.append) == {} and notes


def test_launch_plot_on_sweep_changing_tasks(group_exp, tmp_path):
    from launch import plot
    root = copy_of(group_exp, tmp_path)
    lines = []
    plot.plot(root, echo=lines.append)
    pairs = []  # one trade-off per sweep value's first two tasks
    for g in group_exp.sweep[GROUP]:
        pair = tuple(list(group_tasks({GROUP: g}))[:2])
        if pair not in pairs:
            pairs.append(pair)
    want = expected_files({("field",): [("group",)], ("a", "b"): pairs})  # no mixing weights in this experiment
    _assert_pngs(root, want, lines)


def test_sweep_changing_tasks_tradeoff_pairs(group_exp):
    runs = report.load_runs(group_exp.root)
    data = report.tradeoff_data(runs, ["marital", "college"])
    assert {dict(skey)[GROUP] for skey, _, _ in data} == {"2"} and len(data) == 3
    assert all(len(v) == 2 for v in data.values())
    with pytest.raises(ValueError, match="--tasks"):  # never in one sweep value; raised before any figure
        report.plot_all(group_exp.root, tasks=["income", "college"], log=lambda m: None)
    assert not os.path.exists(os.path.join(group_exp.root, "figures"))


# --------------------------------------------------------------------------- colours


def test_colours_follow_the_grid_order_with_the_baseline_grey():
    a = report.colours_for(["single_task", "hard", "my_arch", "cross_stitch"], "single_task")
    assert a["single_task"] == plotting.BASELINE_COLOUR
    assert [a[k] for k in ("hard", "my_arch", "cross_stitch")] == plotting.PALETTE[:3]
    assert len(set(a.values())) == 4
    assert report.colours_for(["x", "y"])["x"] == plotting.PALETTE[0]  # no baseline: no grey


def test_one_colour_per_architecture_throughout(sweep_exp):
    """Every figure of an experiment takes its colours from one context, in the grid's label order."""
    runs = report.load_runs(sweep_exp.root)
    exp = report.load_experiment(sweep_exp.root)
    live = [r for r in report.aggregate(runs, experiment=exp) if r["n"] > 0]
    labels = [a["label"] for a in exp["grid"]["architectures"]]
    ctx = plotting.Context(runs, live[2:], exp)  # which rows a figure sees does not change the colours
    assert ctx.colour == report.colours_for(labels, exp["grid"]["baseline"])


# --------------------------------------------------------------------------- figure data


def test_learning_curve_data_is_mean_of_fake_curves(sweep_exp):
    data = report.learning_curve_data(report.load_runs(sweep_exp.root))
    assert len(data) == 8
    for (skey, arch, w), per_task in data.items():
        sweep = {k: float(v) for k, v in skey}
        sj = json.dumps(sweep, sort_keys=True)
        seeds = [s for s in sweep_exp.seeds if (sj, arch, w, s) in sweep_exp.curves]
        for t in sweep_exp.tasks:
            curves = np.array([[v for _, v in sweep_exp.curves[(sj, arch, w, s)][t]] for s in seeds])
            np.testing.assert_allclose(per_task[t]["mean"], curves.mean(0), rtol=1e-12)
            np.testing.assert_allclose(per_task[t]["std"], curves.std(0, ddof=1), rtol=1e-12)
            for k in (0, 4):  # the band: the 95% CI of the mean at each step, as scipy states it
                lo, hi = scipy.stats.t.interval(0.95, len(seeds) - 1, loc=curves[:, k].mean(),
                                                scale=scipy.stats.sem(curves[:, k]))
                assert per_task[t]["ci"][k] == pytest.approx((hi - lo) / 2, rel=1e-9)
            np.testing.assert_array_equal(per_task[t]["steps"], np.arange(10, 101, 10))
            assert per_task[t]["n"] == len(seeds)
    # the failed run's curve is left out
    assert data[(((CORR, "0.9"),), "hard", "equal")]["a"]["n"] == 2


def test_curve_band_is_the_ci_and_is_cut_at_the_floor_of_a_log_axis():
    """The shaded band spans mean ± ci; on a log axis (means spanning > 30x) a band reaching 0 or below
    starts at the panel's floor (half the smallest mean) instead of vanishing, and the limits follow the means."""
    steps, mean = np.arange(1, 5), np.array([1.0, 0.3, 0.05, 0.01])
    ci = np.array([0.5, 0.2, 0.08, 0.004])  # the third step's band crosses 0
    ctx = types.SimpleNamespace(archs=["a"], weightings=["w"], colour={"a": "C0"}, ls={"w": "-"},
                                name=lambda a, w: a)
    fig, ax = plotting.plt().subplots()
    _curve_panel(ax, ctx, {((), "a", "w"): {"t": {"steps": steps, "mean": mean, "ci": ci}}}, {}, (), "t")
    (band,) = ax.collections  # the one fill_between
    ys = band.get_paths()[0].vertices[:, 1]
    assert ax.get_yscale() == "log" and ax.get_ylim() == pytest.approx((0.005, 2.0))
    np.testing.assert_allclose(sorted(set(np.round(ys, 9))),
                               sorted(set(np.round(np.r_[np.maximum(mean - ci, 0.005), mean + ci], 9))))
    plotting.plt().close(fig)


def test_mixing_and_sweep_data(sweep_exp):
    runs = report.load_runs(sweep_exp.root)
    mix = report.mixing_data(runs, "sluice")
    sj = json.dumps({CORR: 0.9}, sort_keys=True)
    unit = taps.mixing_name("alpha", 0)
    want = np.mean([sweep_exp.mixing[(sj, "sluice", "equal", s)][unit] for s in sweep_exp.seeds], 0)
    np.testing.assert_allclose(mix[(((CORR, "0.9"),), "equal")][unit], want, rtol=1e-12)
    assert report.mixing_data(runs, "hard") == {}
    rows = report.aggregate(runs)
    sw = report.sweep_plot_data(rows, CORR)
    pts = sw[("cross_stitch", "equal")]["b"]
    assert [x for x, _, _ in pts] == [0.5, 0.9]
    assert pts[1][1] == pytest.approx(np.mean(sweep_exp.values("cross_stitch", "equal", {CORR: 0.9}, "b", "mse")))
    assert pts[1][2][0] == pts[1][2][1] > 0  # a Student t interval: symmetric
    by_x = {r["sweep"][CORR]: r for r in rows if (r["architecture"], r["weighting"]) == ("cross_stitch", "equal")}
    dm_pts = sw[("cross_stitch", "equal")][report.figure_data.DELTA_M_PANEL]
    assert len(dm_pts) == 2 and any(below != above for _, _, (below, above) in dm_pts)
    for x, dm, (below, above) in dm_pts:
        lo, hi = by_x[x]["delta_m_ci"]  # the bar spans exactly the table's bootstrap interval [lo, hi]
        assert (dm - below, dm + above) == pytest.approx((lo, hi), abs=1e-12)


def test_sweep_changing_tasks_figure_data(group_exp):
    runs = report.load_runs(group_exp.root)
    curves = report.learning_curve_data(runs)
    for (skey, arch, w), per_task in curves.items():
        assert list(per_task) == list(group_tasks({GROUP: int(dict(skey)[GROUP])}))
    sw = report.sweep_plot_data(report.aggregate(runs), GROUP)
    assert [x for x, _, _ in sw[("hard", "equal")]["marital"]] == [1, 2]
    assert [x for x, _, _ in sw[("hard", "equal")]["income"]] == [1]
    assert [x for x, _, _ in sw[("hard", "equal")]["college"]] == [2]
