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


# --------------------------------------------------------------------------- a sweep that changes the task set

GROUP = "task_set.options.group"


def group_tasks(point):
    """Like census-income's task groups: group 1 = (income, marital), group 2 = (college, marital)."""
    if point[GROUP] == 1:
        return {"income": "binary", "marital": "binary"}
    return {"college": "regression", "marital": "binary"}  # mse: lower is better


GROUP_VALUES = {  # (group, arch, task, main metric) -> per-seed values
    (1, "single_task", "income", "auc"): [0.80, 0.82], (1, "single_task", "marital", "auc"): [0.90, 0.92],
    (1, "hard", "income", "auc"): [0.84, 0.86], (1, "hard", "marital", "auc"): [0.88, 0.90],
    (1, "mmoe", "income", "auc"): [0.86, 0.88], (1, "mmoe", "marital", "auc"): [0.89, 0.91],
    (2, "single_task", "college", "mse"): [0.50, 0.54], (2, "single_task", "marital", "auc"): [0.90, 0.92],
    (2, "hard", "college", "mse"): [0.44, 0.48], (2, "hard", "marital", "auc"): [0.93, 0.95],
    (2, "mmoe", "college", "mse"): [0.56, 0.58], (2, "mmoe", "marital", "auc"): [0.96, 0.98],
}
GROUP_PAPER = {"metric_columns": ["main AUC", "marital AUC"],
               "rows": {"mmoe [group=1]": {"main AUC": 0.941, "marital AUC": 0.9927},
                        "MMoE [group=2]": {"main AUC": 0.886, "marital AUC": 0.9924},
                        "hard": {"marital AUC": 0.9111}, "omoe [group=2]": {"main AUC": 0.5}},
               "note": "Tables 3 and 4."}


def group_metric(arch, w, seed, sweep, task, metric):
    return GROUP_VALUES.get((sweep[GROUP], arch, task, metric), [0.3, 0.3])[seed]


@pytest.fixture(scope="module")
def group_exp(tmp_path_factory):
    """3 architectures x 2 seeds x group in [1, 2], where the group changes the tasks; paper numbers per group."""
    root = str(tmp_path_factory.mktemp("group_exp"))
    return fake_runs.make_experiment(
        root, name="groups", tasks=group_tasks, architectures=("single_task", "hard", "mmoe"), seeds=(0, 1),
        sweep={GROUP: [1, 2]}, paper=GROUP_PAPER, metric_fn=group_metric, layout="launch_run")


def _sections(md):
    """{sub-heading: its lines} of a markdown table with one section per task list."""
    out, cur = {}, None
    for ln in md.splitlines():
        if ln.startswith("### "):
            cur = ln[4:]
            out[cur] = []
        elif ln.startswith("- "):
            cur = None
        elif cur is not None and ln.startswith("|"):
            out[cur].append(ln)
    return out


def _hand_delta_m(group, arch):
    def rel(t, k):  # relative improvement of the seed means over single_task
        m, b = (float(np.mean(GROUP_VALUES[(group, a, t, k)])) for a in (arch, "single_task"))
        return (m - b) / b

    if group == 1:  # both auc, higher is better
        return (rel("income", "auc") + rel("marital", "auc")) / 2 * 100
    return (-rel("college", "mse") + rel("marital", "auc")) / 2 * 100  # college mse is lower-is-better


def test_sweep_changing_tasks_rows_and_delta_m(group_exp):
    rows = report.aggregate(report.load_runs(group_exp.root))
    assert len(rows) == 6
    for r in rows:
        want = list(group_tasks(r["sweep"]))
        assert list(r["main_metric"]) == list(r["metrics"]) == want
        assert list(r["higher_is_better"]) == want
    assert [[rows[i]["sweep"][GROUP] for i in sec] for sec in report.task_sections(rows)] == [[1, 1, 1], [2, 2, 2]]
    for g in (1, 2):
        for arch in ("hard", "mmoe"):
            r = _row(rows, arch, sweep={GROUP: g})
            assert r["delta_m"] == pytest.approx(_hand_delta_m(g, arch), rel=1e-12), (g, arch)
            assert r["baseline"] == f"single_task/equal (group={g})"
        assert _row(rows, "single_task", sweep={GROUP: g})["delta_m"] == pytest.approx(0.0)
    # hand numbers, to be sure the formula's signs are what the table shows
    assert _hand_delta_m(2, "hard") == pytest.approx(((0.52 - 0.46) / 0.52 + (0.94 - 0.91) / 0.91) / 2 * 100)
    # best marks compare rows of one task list and sweep value only
    marks = report.best_marks(rows, report.metric_columns(rows))
    by = {(r["sweep"][GROUP], r["architecture"]): m for r, m in zip(rows, marks)}
    assert "income/auc" in by[(1, "mmoe")] and "college/mse" in by[(2, "hard")]
    assert "marital/auc" in by[(1, "single_task")] and "marital/auc" in by[(2, "mmoe")]
    assert not any(k.startswith("college/") for (g, _), m in by.items() if g == 1 for k in m)


def test_sweep_changing_tasks_markdown_sections(group_exp):
    md = report.markdown_table(group_exp.root)
    assert md.startswith("## groups\n\n### group=1 — tasks: income, marital\n")
    secs = _sections(md)
    assert list(secs) == ["group=1 — tasks: income, marital", "group=2 — tasks: college, marital"]
    one, two = secs.values()
    assert len(one) == len(two) == 2 + 3  # header, rule, one line per architecture
    assert "| income auc ↑ | income accuracy ↑ | marital auc ↑ | marital accuracy ↑ | Δm% ↑ |" in one[0]
    assert "college" not in "\n".join(one) and "income" not in "\n".join(two)
    assert "| college mse ↓ | marital auc ↑ | marital accuracy ↑ | Δm% ↑ |" in two[0]
    for g, lines in ((1, one), (2, two)):
        assert all(ln.startswith(f"| {g} |") for ln in lines[2:])
        for arch in ("hard", "mmoe"):
            line = _md_line("\n".join(lines), arch)
            dm = f"{_hand_delta_m(g, arch):+.2f}"
            assert f" {dm} " in line or f"**{dm}**" in line, (g, arch, line)
    assert "**0.4600 ± 0.0283**" in _md_line("\n".join(two), "hard")  # college mse: lower is best
    assert "**0.8700 ± 0.0141**" in _md_line("\n".join(one), "mmoe")  # income auc
    # Δm% best per section: group 1 mmoe, group 2 hard
    best_1 = f"**{_hand_delta_m(1, 'mmoe'):+.2f}**"
    best_2 = f"**{_hand_delta_m(2, 'hard'):+.2f}**"
    assert best_1 in _md_line("\n".join(one), "mmoe") and best_2 in _md_line("\n".join(two), "hard")
    assert "one table per task list" in md


def test_sweep_changing_tasks_paper_numbers_per_section(group_exp):
    rows = report.aggregate(report.load_runs(group_exp.root))
    cols, prows, unmatched = report.match_paper(rows, GROUP_PAPER)
    assert cols == ["main AUC", "marital AUC"]
    got = {(r["sweep"][GROUP], r["architecture"]): p for r, p in zip(rows, prows)}
    assert got[(1, "mmoe")] == GROUP_PAPER["rows"]["mmoe [group=1]"]
    assert got[(2, "mmoe")] == GROUP_PAPER["rows"]["MMoE [group=2]"]  # case and '[sweep]' tag
    assert got[(1, "hard")] == got[(2, "hard")] == {"marital AUC": 0.9111}  # an untagged key matches every group
    assert got[(1, "single_task")] is None
    assert unmatched == ["omoe [group=2]"]
    one, two = (("\n".join(v)) for v in _sections(report.markdown_table(group_exp.root)).values())
    assert _md_line(one, "mmoe").rstrip(" |").endswith("0.9410 | 0.9927")
    assert _md_line(two, "mmoe").rstrip(" |").endswith("0.8860 | 0.9924")
    assert "0.8860" not in one and "0.9410" not in two
    assert _md_line(one, "hard").rstrip(" |").endswith("| 0.9111")
    md = report.markdown_table(group_exp.root)
    assert "matched by architecture label and sweep value" in md
    assert "paper rows without a matching run: omoe [group=2]." in md


def test_sweep_changing_tasks_csv_and_latex(group_exp, tmp_path):
    root = str(tmp_path / "exp")
    shutil.copytree(group_exp.root, root)
    paths = report.write_tables(root)
    rows = report.aggregate(report.load_runs(root))
    with open(paths["csv"]) as f:
        reader = csv.DictReader(io.StringIO(f.read()))
        parsed = list(reader)
    head = reader.fieldnames
    for t, k in (("income", "auc"), ("income", "accuracy"), ("marital", "auc"), ("college", "mse")):
        assert f"{t}/{k}/mean" in head and f"{t}/{k}/std" in head
    assert head[0] == GROUP and "tasks" in head and "delta_m" in head
    assert len(parsed) == len(rows) == 6
    for c, r in zip(parsed, rows):
        g = r["sweep"][GROUP]
        assert (int(c[GROUP]), c["architecture"], int(c["n"])) == (g, r["architecture"], 2)
        assert c["tasks"].split(";") == list(group_tasks(r["sweep"]))
        absent = "college" if g == 1 else "income"
        assert all(v == "" for k, v in c.items() if k.startswith(absent + "/"))
        for t, k in r["main_metric"].items():
            assert float(c[f"{t}/{k}/mean"]) == r["metrics"][t][k]["mean"] == pytest.approx(
                np.mean(GROUP_VALUES[(g, r["architecture"], t, k)]))
            assert float(c[f"{t}/{k}/std"]) == r["metrics"][t][k]["std"]
        assert float(c["delta_m"]) == r["delta_m"]
        if r["architecture"] == "mmoe":
            want = GROUP_PAPER["rows"]["mmoe [group=1]" if g == 1 else "MMoE [group=2]"]
            assert float(c["paper/main AUC"]) == want["main AUC"]
    best = {(int(c[GROUP]), c["architecture"]): c["best"].split(";") for c in parsed}
    assert "college/mse" in best[(2, "hard")] and "income/auc" in best[(1, "mmoe")]
    with open(paths["tex"]) as f:
        tex = f.read()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 2
    assert tex.count(r"\begin{table}") == 1
    assert r"\multicolumn{" in tex and r"group=1 --- tasks: income, marital" in tex
    first, second = tex.split(r"\end{tabular}")[:2]
    assert r"income auc $\uparrow$" in first and "college" not in first
    assert r"college mse $\downarrow$" in second and "income" not in second


def test_sweep_changing_tasks_two_fields_and_a_group_without_summaries(tmp_path):
    """A second swept field that keeps the tasks; a group with no summary at all still lands in its section."""
    lr = "optimizer.learning_rate"
    point = {GROUP: 2, lr: 0.2}
    fake_runs.make_experiment(str(tmp_path), tasks=group_tasks, architectures=("single_task", "hard"), seeds=(0,),
                              sweep={GROUP: [1, 2], lr: [0.1, 0.2]}, incomplete=[("hard", "equal", 0, point)])
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    empty = _row(rows, "hard", sweep=point)
    assert empty["n"] == 0 and list(empty["main_metric"]) == ["college", "marital"]
    md = report.markdown_table(str(tmp_path))
    secs = _sections(md)
    assert list(secs) == ["group=1 — tasks: income, marital", "group=2 — tasks: college, marital"]
    two = secs["group=2 — tasks: college, marital"]
    assert two[0].startswith("| learning_rate | group | architecture | weighting | n | failed | college mse ↓ |")
    assert [ln.split("|")[1:3] for ln in two[2:]] == [
        [" 0.1 ", " 2 "], [" 0.1 ", " 2 "], [" 0.2 ", " 2 "], [" 0.2 ", " 2 "]]
    assert "| 0.2 | 2 | hard | equal | 0 | 1 | – | – | – |" in md
    assert "failed" not in secs["group=1 — tasks: income, marital"][0]  # no failed run in that section


def test_single_task_list_has_one_section(sweep_exp):
    md = report.markdown_table(sweep_exp.root)
    assert "###" not in md and "one table per task list" not in md
    assert len(report.task_sections(report.aggregate(report.load_runs(sweep_exp.root)))) == 1
    assert "tasks" not in next(csv.reader(io.StringIO(report.render_csv(report._table_model(sweep_exp.root)))))


def test_sweep_changing_tasks_figure_data(group_exp):
    runs = report.load_runs(group_exp.root)
    curves = report.learning_curve_data(runs)
    for (skey, arch, w), per_task in curves.items():
        assert list(per_task) == list(group_tasks({GROUP: int(dict(skey)[GROUP])}))
    sw = report.sweep_plot_data(report.aggregate(runs), GROUP)
    assert [x for x, _, _ in sw[("hard", "equal")]["marital"]] == [1, 2]
    assert [x for x, _, _ in sw[("hard", "equal")]["income"]] == [1]
    assert [x for x, _, _ in sw[("hard", "equal")]["college"]] == [2]


def test_sweep_changing_tasks_tradeoff_pairs(group_exp):
    runs = report.load_runs(group_exp.root)
    data = report.tradeoff_data(runs, ["marital", "college"])
    assert {dict(skey)[GROUP] for skey, _, _ in data} == {"2"} and len(data) == 3
    assert all(len(v) == 2 for v in data.values())
    with pytest.raises(ValueError, match="--tasks"):  # never in one sweep value; raised before any figure
        report.plot_all(group_exp.root, tasks=["income", "college"], log=lambda m: None)
    assert not os.path.exists(os.path.join(group_exp.root, "figures"))


def test_launch_table_and_plot_on_sweep_changing_tasks(group_exp, tmp_path):
    root = str(tmp_path / "exp")
    shutil.copytree(group_exp.root, root)
    p = _run("launch.table", root)
    assert p.returncode == 0, p.stderr
    assert p.stdout == report.markdown_table(root)
    assert "### group=2 — tasks: college, marital" in p.stdout
    p = _run("launch.plot", root)
    assert p.returncode == 0, p.stderr
    want = {"main_metric_bars.png", "delta_m.png", "learning_curves.png", "sweep_group.png",
            "tradeoff_income_vs_marital.png", "tradeoff_college_vs_marital.png"}  # one per sweep value's pair
    assert set(os.listdir(os.path.join(root, "figures"))) == want
    for name in want:
        with open(os.path.join(root, "figures", name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
        assert f"wrote {os.path.join(root, 'figures', name)}" in p.stdout
