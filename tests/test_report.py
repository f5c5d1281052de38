"""mtlx.report, launch.table and launch.plot on fake experiment directories with known numbers."""

import csv
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_runs  # noqa: E402

from mtlx import report  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORR = "task_set.options.correlation"
PAPER = {"metric_columns": ["a acc", "b mse"],
         "rows": {"hard": {"a acc": 0.871, "b mse": 0.3141}, "MMoE": {"a acc": 0.9}},
         "note": "Table 2 of the paper."}


@pytest.fixture(scope="module")
def sweep_exp(tmp_path_factory):
    """4 architectures x 3 seeds x 2 correlations; one failed and one unfinished run; paper numbers."""
    root = str(tmp_path_factory.mktemp("sweep_exp"))
    return fake_runs.make_experiment(
        root, sweep={CORR: [0.5, 0.9]}, paper=PAPER,
        failed=[("hard", "equal", 2, {CORR: 0.9})], incomplete=[("sluice", "equal", 1, {CORR: 0.5})])


def table_fn(values):
    """metric_fn from {(arch, task, metric): [per-seed values]}; anything else (loss) 0.3."""
    return lambda arch, w, seed, sweep, task, metric: values.get((arch, task, metric), [0.3] * 9)[seed]


def _row(rows, arch, weighting="equal", sweep=None):
    hits = [r for r in rows if r["architecture"] == arch and r["weighting"] == weighting
            and (sweep is None or r["sweep"] == sweep)]
    assert len(hits) == 1, (arch, weighting, sweep, len(hits))
    return hits[0]


def _md_line(md, *words):
    lines = [ln for ln in md.splitlines() if ln.startswith("|") and all(f" {w} " in ln for w in words)]
    assert len(lines) == 1, (words, lines)
    return lines[0]


# --------------------------------------------------------------------------- delta_m


def test_delta_m_formula_by_hand():
    # a: accuracy (higher better) 0.8 -> 0.9 = +12.5%; b: mse (lower better) 0.25 -> 0.2 = +20%.
    got = report.delta_m({"a": 0.9, "b": 0.2}, {"a": 0.8, "b": 0.25}, {"a": True, "b": False})
    assert got == pytest.approx((12.5 + 20.0) / 2)
    # worse on both: negative
    assert report.delta_m({"a": 0.72, "b": 0.3}, {"a": 0.8, "b": 0.25}, {"a": True, "b": False}) == pytest.approx(
        (-10.0 - 20.0) / 2)
    assert math.isnan(report.delta_m({"a": 0.9}, {"a": 0.8, "b": 0.25}, {"a": True, "b": False}))


def test_delta_m_on_written_summaries(tmp_path):
    values = {("single_task", "a", "accuracy"): [0.80, 0.82], ("single_task", "b", "mse"): [0.50, 0.54],
              ("hard", "a", "accuracy"): [0.85, 0.83], ("hard", "b", "mse"): [0.45, 0.47]}
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), seeds=(0, 1),
                              metric_fn=table_fn(values))
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    # seed means: single a=0.81 b=0.52, hard a=0.84 b=0.46; mse is lower-is-better
    expect = ((0.84 - 0.81) / 0.81 + (0.52 - 0.46) / 0.52) / 2 * 100
    assert _row(rows, "hard")["delta_m"] == pytest.approx(expect, rel=1e-12)
    assert _row(rows, "single_task")["delta_m"] == pytest.approx(0.0)
    md = report.markdown_table(str(tmp_path))
    assert f"{expect:+.2f}" in _md_line(md, "hard")
    assert "Δm%" in md.splitlines()[2]


def test_baseline_falls_back_to_equal_weighting(tmp_path):
    values = {("single_task", "a", "accuracy"): [0.80, 0.80], ("single_task", "b", "mse"): [0.50, 0.50],
              ("hard", "a", "accuracy"): [0.88, 0.88], ("hard", "b", "mse"): [0.40, 0.40]}
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), weightings=("equal", "uw"),
                              seeds=(0, 1), metric_fn=table_fn(values))
    for s in (0, 1):  # no single_task run with the 'uw' weighting
        shutil.rmtree(tmp_path / f"single_task-uw-s{s}")
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    r = _row(rows, "hard", "uw")
    assert r["delta_m"] == pytest.approx(((0.88 - 0.8) / 0.8 + (0.5 - 0.4) / 0.5) / 2 * 100)
    assert r["baseline"].startswith("single_task/equal")


def test_no_baseline_omits_delta_m_with_note(tmp_path):
    fake_runs.make_experiment(str(tmp_path), architectures=("hard", "cross_stitch"), seeds=(0, 1))
    md = report.markdown_table(str(tmp_path))
    assert "Δm" not in md.splitlines()[2]
    assert "No single_task baseline" in md
    paths = report.write_tables(str(tmp_path))
    with open(paths["csv"]) as f:
        assert "delta_m" not in next(csv.reader(f))
    assert all(r["delta_m"] is None for r in report.aggregate(report.load_runs(str(tmp_path))))


# --------------------------------------------------------------------------- aggregation


def test_mean_std_over_seeds_equal_numpy(sweep_exp):
    rows = report.aggregate(report.load_runs(sweep_exp.root))
    assert len(rows) == 4 * 2
    checked = 0
    for r in rows:
        for t in sweep_exp.tasks:
            for k in ("accuracy", "mse", "loss"):
                if k not in r["metrics"][t]:
                    continue
                vals = sweep_exp.values(r["architecture"], r["weighting"], r["sweep"], t, k)
                assert r["metrics"][t][k]["n"] == len(vals) == r["n"]
                assert r["metrics"][t][k]["mean"] == pytest.approx(np.mean(vals), rel=1e-12)
                assert r["metrics"][t][k]["std"] == pytest.approx(np.std(vals, ddof=1), rel=1e-12)
                checked += 1
    assert checked == 8 * 2 * 2
    assert _row(rows, "hard", sweep={CORR: 0.9})["n"] == 2
    assert _row(rows, "sluice", sweep={CORR: 0.5})["n"] == 2
    # rows in sweep order, single_task first, then the experiment's order
    assert [(r["sweep"][CORR], r["architecture"]) for r in rows][:4] == [
        (0.5, "single_task"), (0.5, "hard"), (0.5, "cross_stitch"), (0.5, "sluice")]


def test_select_best_validation(sweep_exp):
    runs = report.load_runs(sweep_exp.root)
    final = _row(report.aggregate(runs), "sluice", sweep={CORR: 0.9})
    best = _row(report.aggregate(runs, select="best_validation"), "sluice", sweep={CORR: 0.9})
    vals = sweep_exp.values("sluice", "equal", {CORR: 0.9}, "b", "mse")
    assert final["metrics"]["b"]["mse"]["mean"] == pytest.approx(np.mean(vals))
    assert best["metrics"]["b"]["mse"]["mean"] == pytest.approx(np.mean(vals) + fake_runs.BEST_OFFSET)
    with pytest.raises(ValueError, match="best_validation"):
        report.aggregate(runs, select="best")


def test_empty_dir(tmp_path):
    assert report.load_runs(str(tmp_path)) == [] and report.aggregate([]) == []
    assert "No runs found" in report.markdown_table(str(tmp_path))
    notes = []
    assert report.plot_all(str(tmp_path), log=notes.append) == {} and notes


def test_one_seed_has_no_std(tmp_path):
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), seeds=(0,))
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    assert all(math.isnan(r["metrics"]["a"]["accuracy"]["std"]) and r["n"] == 1 for r in rows)
    assert "±" not in _md_line(report.markdown_table(str(tmp_path)), "hard")


def test_best_marking_lower_is_better(tmp_path):
    # a (accuracy, higher better): cross_stitch best. b (mse, lower better): hard best, though its
    # mse is not the largest and its accuracy is not the best.
    values = {("single_task", "a", "accuracy"): [0.80, 0.80], ("single_task", "b", "mse"): [0.50, 0.52],
              ("hard", "a", "accuracy"): [0.81, 0.83], ("hard", "b", "mse"): [0.40, 0.42],
              ("cross_stitch", "a", "accuracy"): [0.90, 0.88], ("cross_stitch", "b", "mse"): [0.45, 0.47]}
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard", "cross_stitch"), seeds=(0, 1),
                              metric_fn=table_fn(values))
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    marks = report.best_marks(rows, report.metric_columns(rows))
    by = {r["architecture"]: m for r, m in zip(rows, marks)}
    assert "b/mse" in by["hard"] and "b/mse" not in by["cross_stitch"] and "b/mse" not in by["single_task"]
    assert "a/accuracy" in by["cross_stitch"] and "a/accuracy" not in by["hard"]
    md = report.markdown_table(str(tmp_path))
    assert "**0.4100 ± 0.0141**" in _md_line(md, "hard")
    assert "**" not in _md_line(md, "single_task")
    assert "**0.8900 ± 0.0141**" in _md_line(md, "cross_stitch")
    paths = report.write_tables(str(tmp_path))
    with open(paths["tex"]) as f:
        tex = f.read()
    assert r"\textbf{0.4100 $\pm$ 0.0141}" in tex
    with open(paths["csv"]) as f:
        best = {r["architecture"]: r["best"].split(";") for r in csv.DictReader(f)}
    assert "b/mse" in best["hard"] and "b/mse" not in best["cross_stitch"]
    assert "a/accuracy" in best["cross_stitch"]


# --------------------------------------------------------------------------- paper numbers, failures


def test_paper_numbers_beside_ours(sweep_exp):
    md = report.markdown_table(sweep_exp.root)
    header = md.splitlines()[2]
    assert "paper: a acc" in header and "paper: b mse" in header
    for corr in ("0.5", "0.9"):
        hard = _md_line(md, corr, "hard")
        assert hard.rstrip(" |").endswith("0.8710 | 0.3141")
        assert "0.8710" not in _md_line(md, corr, "cross_stitch")
    assert "Table 2 of the paper." in md
    assert "paper rows without a matching run: MMoE" in md


def test_paper_matched_by_weighting_when_comparing_weightings(tmp_path):
    paper = {"metric_columns": ["a acc"], "rows": {"Equal": {"a acc": 0.61}, "uw": {"a acc": 0.72}}}
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), weightings=("equal", "uw"),
                              seeds=(0, 1), paper=paper)
    md = report.markdown_table(str(tmp_path))
    assert _md_line(md, "hard", "equal").rstrip(" |").endswith("0.6100")
    assert _md_line(md, "hard", "uw").rstrip(" |").endswith("0.7200")
    assert "0.6100" not in _md_line(md, "single_task", "equal")
    assert "matched by weighting label" in md


def test_failed_runs_excluded_and_reported(sweep_exp):
    runs = report.load_runs(sweep_exp.root)
    assert len(runs) == 4 * 3 * 2
    assert sorted(r["status"] for r in runs if r["status"] != "done") == ["failed", "incomplete"]
    rows = report.aggregate(runs)
    r = _row(rows, "hard", sweep={CORR: 0.9})
    assert [f["run_id"] for f in r["failed"]] == sweep_exp.failed
    assert r["metrics"]["a"]["accuracy"]["mean"] < 1.0  # the failed run's 1e6 is not averaged in
    assert r["seeds"] == [0, 1]
    md = report.markdown_table(sweep_exp.root)
    assert "Failed or unfinished runs (2)" in md
    assert f"{sweep_exp.failed[0]} (hard/equal, seed 2, correlation=0.9): failed" in md
    assert "NonFiniteLoss" in md
    assert "sluice-equal-s1-correlation0.5" in md
    assert "1000000" not in md


def test_tables_written_atomically_and_csv_parses_back(sweep_exp, tmp_path):
    root = str(tmp_path / "exp")
    shutil.copytree(sweep_exp.root, root)
    paths = report.write_tables(root)
    for ext in ("md", "tex", "csv"):
        assert os.path.getsize(os.path.join(root, f"table.{ext}")) > 0
    assert not [f for f in os.listdir(root) if f.startswith(".tmp-")]
    with open(paths["md"]) as f:
        assert f.read() == paths["markdown"] == report.markdown_table(root)
    with open(paths["tex"]) as f:
        tex = f.read()
    for cmd in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{tabular}"):
        assert cmd in tex
    assert r"cross\_stitch" in tex
    rows = report.aggregate(report.load_runs(root))
    with open(paths["csv"]) as f:
        parsed = list(csv.DictReader(io.StringIO(f.read())))
    assert len(parsed) == len(rows)
    for c, r in zip(parsed, rows):
        assert (c["architecture"], float(c[CORR]), int(c["n"])) == (r["architecture"], r["sweep"][CORR], r["n"])
        for t, k in (("a", "accuracy"), ("b", "mse"), ("a", "loss")):
            vals = sweep_exp.values(r["architecture"], "equal", r["sweep"], t, k)
            assert float(c[f"{t}/{k}/mean"]) == r["metrics"][t][k]["mean"] == pytest.approx(np.mean(vals))
            assert float(c[f"{t}/{k}/std"]) == r["metrics"][t][k]["std"]
        assert float(c["delta_m"]) == r["delta_m"]
        assert int(c["n_failed"]) == len(r["failed"])
        if r["architecture"] == "hard":
            assert (float(c["paper/a acc"]), float(c["paper/b mse"])) == (0.871, 0.3141)
        else:
            assert c["paper/a acc"] == ""


def test_launch_run_layout(tmp_path):
    """experiment.json as mtlx.experiment writes it: name, grid, runs list, dict failures, labels != names."""
    paper = {"metric_columns": ["a acc"], "rows": {"Cross-Stitch": {"a acc": 0.5}}}
    fake = fake_runs.make_experiment(
        str(tmp_path), name="mmoe_like", architectures=("hard", "stl", "cross_stitch"), seeds=(0, 1),
        sweep={CORR: [0.5, 0.9]}, arch_names={"stl": "single_task"}, layout="launch_run", paper=paper,
        failed=[("hard", "equal", 1, {CORR: 0.5})])
    shutil.rmtree(tmp_path / "cross_stitch-equal-s1-correlation0.9")  # a run never started
    del fake.metrics[(json.dumps({CORR: 0.9}), "cross_stitch", "equal", 1)]
    runs = report.load_runs(str(tmp_path))
    assert {r["run_id"]: r["status"] for r in runs}["cross_stitch-equal-s1-correlation0.9"] == "not started"
    rows = report.aggregate(runs)
    assert [r["architecture"] for r in rows[:3]] == ["stl", "hard", "cross_stitch"]  # baseline first
    r = _row(rows, "cross_stitch", sweep={CORR: 0.9})
    assert r["n"] == 1 and r["baseline"].startswith("stl/equal")
    st = {t: np.mean(fake.values("stl", "equal", {CORR: 0.9}, t, fake.main_metric(t))) for t in fake.tasks}
    cs = {t: np.mean(fake.values("cross_stitch", "equal", {CORR: 0.9}, t, fake.main_metric(t))) for t in fake.tasks}
    assert r["delta_m"] == pytest.approx(((cs["a"] - st["a"]) / st["a"] - (cs["b"] - st["b"]) / st["b"]) / 2 * 100)
    md = report.markdown_table(str(tmp_path))
    assert md.startswith("## mmoe_like")
    assert "loss of task b is nan at step 40 (step 40, task b)" in md
    assert "cross_stitch-equal-s1-correlation0.9 (cross_stitch/equal, seed 1, correlation=0.9): not started" in md
    assert _md_line(md, "0.5", "cross_stitch").rstrip(" |").endswith("0.5000")
    assert _md_line(md, "0.5", "hard").split("|")[5].strip() == "1"  # the failed column


# --------------------------------------------------------------------------- figure data


def test_learning_curve_data_is_mean_of_fake_curves(sweep_exp):
    data = report.learning_curve_data(report.load_runs(sweep_exp.root))
    assert len(data) == 8
    for (skey, arch, w), per_task in data.items():
        sweep = {k: float(v) for k, v in skey}
        seeds = [s for s in sweep_exp.seeds if (json.dumps(sweep, sort_keys=True), arch, w, s)
                 in sweep_exp.curves]
        for t in sweep_exp.tasks:
            curves = np.array([[v for _, v in sweep_exp.curves[(json.dumps(sweep, sort_keys=True),
                                                                   arch, w, s)][t]] for s in seeds])
            np.testing.assert_allclose(per_task[t]["mean"], curves.mean(0), rtol=1e-12)
            np.testing.assert_allclose(per_task[t]["std"], curves.std(0, ddof=1), rtol=1e-12)
            np.testing.assert_array_equal(per_task[t]["steps"], np.arange(10, 101, 10))
            assert per_task[t]["n"] == len(seeds)
    # the failed run's curve is left out
    assert data[(((CORR, "0.9"),), "hard", "equal")]["a"]["n"] == 2


def test_mixing_and_sweep_data(sweep_exp):
    runs = report.load_runs(sweep_exp.root)
    mix = report.mixing_data(runs, "sluice")
    sj = json.dumps({CORR: 0.9}, sort_keys=True)
    want = np.mean([sweep_exp.mixing[(sj, "sluice", "equal", s)]["mix_alpha_0"] for s in sweep_exp.seeds], 0)
    np.testing.assert_allclose(mix[(((CORR, "0.9"),), "equal")]["mix_alpha_0"], want, rtol=1e-12)
    assert report.mixing_data(runs, "hard") == {}
    rows = report.aggregate(runs)
    sw = report.sweep_plot_data(rows, CORR)
    pts = sw[("cross_stitch", "equal")]["b"]
    assert [x for x, _, _ in pts] == [0.5, 0.9]
    assert pts[1][1] == pytest.approx(np.mean(sweep_exp.values("cross_stitch", "equal", {CORR: 0.9}, "b", "mse")))


def test_plot_all_skips_what_does_not_apply(tmp_path):
    fake_runs.make_experiment(str(tmp_path), tasks={"a": "binary"}, architectures=("single_task", "hard"),
                              seeds=(0, 1))
    notes = []
    written = report.plot_all(str(tmp_path), log=notes.append)
    assert set(written) == {"main_metric_bars", "delta_m", "learning_curves"}
    text = " ".join(notes)
    assert "no sweep" in text and "one task" in text and "mixing" in text
    for p in written.values():
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_colours_are_stable_per_architecture():
    a = report.colours_for(["single_task", "hard", "my_arch", "cross_stitch"])
    b = report.colours_for(["cross_stitch", "my_arch", "hard"])
    assert a["hard"] == b["hard"] and a["cross_stitch"] == b["cross_stitch"] and a["my_arch"] == b["my_arch"]
    assert len(set(a.values())) == 4


# --------------------------------------------------------------------------- the launchers


def _run(*args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_launch_table_subprocess(sweep_exp, tmp_path):
    root = str(tmp_path / "exp")
    shutil.copytree(sweep_exp.root, root)
    p = _run("launch.table", root)
    assert p.returncode == 0, p.stderr
    assert p.stdout == report.markdown_table(root)
    assert "| correlation | architecture | weighting | n |" in p.stdout
    for ext in ("md", "tex", "csv"):
        assert os.path.getsize(os.path.join(root, f"table.{ext}")) > 0


def test_launch_plot_subprocess(sweep_exp, tmp_path):
    root = str(tmp_path / "exp")
    shutil.copytree(sweep_exp.root, root)
    p = _run("launch.plot", root, "--tasks=b,a")
    assert p.returncode == 0, p.stderr
    want = {"main_metric_bars.png", "delta_m.png", "learning_curves.png", "sweep_correlation.png",
            "tradeoff_b_vs_a.png", "mixing_cross_stitch.png", "mixing_sluice.png"}
    assert set(os.listdir(os.path.join(root, "figures"))) == want
    for name in want:
        with open(os.path.join(root, "figures", name), "rb") as f:
            blob = f.read()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000, name
        assert f"wrote {os.path.join(root, 'figures', name)}" in p.stdout
