"""mtlx.report.aggregate on fake experiment directories with known numbers: means, stds, delta_m by hand,
the baseline named by experiment.json's grid.baseline, metric direction, best marks, paper matching."""

import csv
import json
import math
import shutil

import numpy as np
import pytest

import fake_runs
from fixtures_report import CORR, GROUP, GROUP_PAPER, group_tasks, hand_delta_m, md_line, row_of, table_fn
from mtlx import report, results, tasks

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
    assert row_of(rows, "hard")["delta_m"] == pytest.approx(expect, rel=1e-12)
    assert row_of(rows, "single_task")["delta_m"] == pytest.approx(0.0)
    md = report.markdown_table(str(tmp_path))
    assert f"{expect:+.2f}" in md_line(md, "hard")
    assert "Δm%" in md.splitlines()[2]


def test_baseline_with_one_weighting_serves_every_weighting(tmp_path):
    values = {("single_task", "a", "accuracy"): [0.80, 0.80], ("single_task", "b", "mse"): [0.50, 0.50],
              ("hard", "a", "accuracy"): [0.88, 0.88], ("hard", "b", "mse"): [0.40, 0.40]}
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), weightings=("equal", "uw"),
                              seeds=(0, 1), metric_fn=table_fn(values))
    for s in (0, 1):  # no single_task run with the 'uw' weighting
        shutil.rmtree(tmp_path / f"single_task-uw-s{s}")
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    r = row_of(rows, "hard", "uw")
    assert r["delta_m"] == pytest.approx(((0.88 - 0.8) / 0.8 + (0.5 - 0.4) / 0.5) / 2 * 100)
    assert r["baseline"].startswith("single_task/equal")
    assert "Baseline: single_task with the same weighting (else 'equal')" in report.markdown_table(str(tmp_path))


def test_baseline_is_the_grid_label_not_a_registry_name(tmp_path):
    """grid.baseline names the baseline; the same runs with grid.baseline null have no delta_m."""
    fake_runs.make_experiment(str(tmp_path), architectures=("hard", "columns"), seeds=(0, 1), baseline="columns",
                              arch_names={"columns": "single_task"})
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    assert [r["architecture"] for r in rows] == ["columns", "hard"] and rows[0]["is_baseline"]
    assert rows[1]["baseline"] == "columns/equal" and rows[0]["delta_m"] == pytest.approx(0.0)
    assert "Baseline: columns with the same weighting" in report.markdown_table(str(tmp_path))
    exp = results.read_experiment(str(tmp_path))
    exp["grid"]["baseline"] = None
    results.write_experiment(str(tmp_path), exp)
    assert all(r["delta_m"] is None for r in report.aggregate(report.load_runs(str(tmp_path))))
    md = report.markdown_table(str(tmp_path))
    assert "Δm" not in md.splitlines()[2] and "No baseline in this experiment" in md


def test_no_baseline_runs_omits_delta_m_with_note(tmp_path):
    fake_runs.make_experiment(str(tmp_path), architectures=("hard", "cross_stitch"), seeds=(0, 1),
                              baseline="single_task")  # the grid names a baseline that has no run
    md = report.markdown_table(str(tmp_path))
    assert "Δm" not in md.splitlines()[2]
    assert "No single_task baseline" in md
    paths = report.write_tables(str(tmp_path))
    with open(paths["csv"]) as f:
        assert "delta_m" not in f.readline().split(",")
    assert all(r["delta_m"] is None for r in report.aggregate(report.load_runs(str(tmp_path))))


# --------------------------------------------------------------------------- metric direction


def test_metric_direction_from_summaries_then_tasks():
    hib = {"accuracy": True, "my_loss": True}  # a summary's word beats any name
    assert report.metric_direction(hib, None, "a", "my_loss") is True
    assert report.metric_direction(hib, None, "a", tasks.LOSS) is False  # the eval loss: mtlx.tasks
    assert report.metric_direction({}, "regression", "b", "mse") is tasks.higher_is_better("regression", "mse")
    with pytest.raises(ValueError, match="rmse"):  # no guessing from the name
        report.metric_direction({}, None, "b", "rmse")


def test_rows_carry_a_direction_for_every_metric(sweep_exp):
    rows = report.aggregate(report.load_runs(sweep_exp.root))
    for r in rows:
        for t, ms in r["metrics"].items():
            assert set(r["higher_is_better"][t]) == set(ms)
            for k in ms:
                want = False if k == tasks.LOSS else sweep_exp.higher_is_better(t, k)
                assert r["higher_is_better"][t][k] is want


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
    assert row_of(rows, "hard", sweep={CORR: 0.9})["n"] == 2
    assert row_of(rows, "sluice", sweep={CORR: 0.5})["n"] == 2
    # rows in sweep order, the baseline first, then the experiment's order
    assert [(r["sweep"][CORR], r["architecture"]) for r in rows][:4] == [
        (0.5, "single_task"), (0.5, "hard"), (0.5, "cross_stitch"), (0.5, "sluice")]


def test_select_best_validation(sweep_exp):
    runs = report.load_runs(sweep_exp.root)
    final = row_of(report.aggregate(runs), "sluice", sweep={CORR: 0.9})
    best = row_of(report.aggregate(runs, select="best_validation"), "sluice", sweep={CORR: 0.9})
    vals = sweep_exp.values("sluice", "equal", {CORR: 0.9}, "b", "mse")
    assert final["metrics"]["b"]["mse"]["mean"] == pytest.approx(np.mean(vals))
    assert best["metrics"]["b"]["mse"]["mean"] == pytest.approx(np.mean(vals) + fake_runs.BEST_OFFSET)
    with pytest.raises(ValueError, match="best_validation"):
        report.aggregate(runs, select="best")


def test_table_reads_the_experiments_own_selection(tmp_path):
    """experiment.json's select (config.select) is the table's default; an explicit select overrides it."""
    exp = fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), seeds=(0, 1))
    vals = exp.values("hard", "equal", {}, "b", "mse")

    def hard_mse():
        row = next(r for r in report.table_model(str(tmp_path))["rows"] if r["architecture"] == "hard")
        return row["metrics"]["b"]["mse"]["mean"]

    assert hard_mse() == pytest.approx(np.mean(vals))  # no select recorded: final
    record = results.read_experiment(str(tmp_path))
    results.write_experiment(str(tmp_path), dict(record, select="best_validation"))
    assert hard_mse() == pytest.approx(np.mean(vals) + fake_runs.BEST_OFFSET)
    md = report.markdown_table(str(tmp_path))
    assert "test metrics at the best validation step" in md and "final test metrics" not in md
    assert "final test metrics" in report.markdown_table(str(tmp_path), select="final")
    results.write_experiment(str(tmp_path), dict(record, select="best"))
    with pytest.raises(ValueError, match="best_validation"):
        report.markdown_table(str(tmp_path))


def test_one_seed_has_no_std(tmp_path):
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), seeds=(0,))
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    assert all(math.isnan(r["metrics"]["a"]["accuracy"]["std"]) and r["n"] == 1 for r in rows)
    assert "±" not in md_line(report.markdown_table(str(tmp_path)), "hard")


def test_failed_runs_excluded(sweep_exp):
    runs = report.load_runs(sweep_exp.root)
    assert len(runs) == 4 * 3 * 2
    assert sorted(r["status"] for r in runs if r["status"] != "done") == ["failed", "incomplete"]
    r = row_of(report.aggregate(runs), "hard", sweep={CORR: 0.9})
    assert [f["run_id"] for f in r["failed"]] == sweep_exp.failed
    assert r["metrics"]["a"]["accuracy"]["mean"] < 1.0  # the failed run's 1e6 is not averaged in
    assert r["seeds"] == [0, 1]


def test_grid_labels_and_a_run_never_started(tmp_path):
    """Labels != registry names, a failure dict, a run of the grid without a directory."""
    fake = fake_runs.make_experiment(
        str(tmp_path), name="mmoe_like", architectures=("hard", "stl", "cross_stitch"), seeds=(0, 1),
        sweep={CORR: [0.5, 0.9]}, arch_names={"stl": "single_task"}, baseline="stl",
        paper={"metric_columns": ["a acc"], "rows": {"Cross-Stitch": {"a acc": 0.5}}},
        failed=[("hard", "equal", 1, {CORR: 0.5})])
    shutil.rmtree(tmp_path / "cross_stitch-equal-s1-correlation0.9")  # a run never started
    del fake.metrics[(json.dumps({CORR: 0.9}), "cross_stitch", "equal", 1)]
    runs = report.load_runs(str(tmp_path))
    assert {r["run_id"]: r["status"] for r in runs}["cross_stitch-equal-s1-correlation0.9"] == "not started"
    rows = report.aggregate(runs)
    assert [r["architecture"] for r in rows[:3]] == ["stl", "hard", "cross_stitch"]  # baseline first
    r = row_of(rows, "cross_stitch", sweep={CORR: 0.9})
    assert r["n"] == 1 and r["baseline"].startswith("stl/equal")
    st = {t: np.mean(fake.values("stl", "equal", {CORR: 0.9}, t, fake.main_metric(t))) for t in fake.tasks}
    cs = {t: np.mean(fake.values("cross_stitch", "equal", {CORR: 0.9}, t, fake.main_metric(t))) for t in fake.tasks}
    assert r["delta_m"] == pytest.approx(((cs["a"] - st["a"]) / st["a"] - (cs["b"] - st["b"]) / st["b"]) / 2 * 100)
    md = report.markdown_table(str(tmp_path))
    assert md.startswith("## mmoe_like")
    assert "loss of task b is nan at step 40 (step 40, task b)" in md
    assert "cross_stitch-equal-s1-correlation0.9 (cross_stitch/equal, seed 1, correlation=0.9): not started" in md
    assert md_line(md, "0.5", "cross_stitch").rstrip(" |").endswith("0.5000")
    assert md_line(md, "0.5", "hard").split("|")[5].strip() == "1"  # the failed column


# --------------------------------------------------------------------------- best marks


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
    # the rendered marks (markdown bold, LaTeX textbf, the CSV's best column)
    md = report.markdown_table(str(tmp_path))
    assert "**0.4100 ± 0.1271**" in md_line(md, "hard")
    assert "**" not in md_line(md, "single_task")
    assert "**0.8900 ± 0.1271**" in md_line(md, "cross_stitch")
    paths = report.write_tables(str(tmp_path))
    with open(paths["tex"]) as f:
        assert r"\textbf{0.4100 $\pm$ 0.1271}" in f.read()
    with open(paths["csv"]) as f:
        best = {r["architecture"]: r["best"].split(";") for r in csv.DictReader(f)}
    assert "b/mse" in best["hard"] and "b/mse" not in best["cross_stitch"]
    assert "a/accuracy" in best["cross_stitch"]


# --------------------------------------------------------------------------- a sweep that changes the task set


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
            r = row_of(rows, arch, sweep={GROUP: g})
            assert r["delta_m"] == pytest.approx(hand_delta_m(g, arch), rel=1e-12), (g, arch)
            assert r["baseline"] == f"single_task/equal (group={g})"
        assert row_of(rows, "single_task", sweep={GROUP: g})["delta_m"] == pytest.approx(0.0)
    # hand numbers, to be sure the formula's signs are what the table shows
    assert hand_delta_m(2, "hard") == pytest.approx(((0.52 - 0.46) / 0.52 + (0.94 - 0.91) / 0.91) / 2 * 100)
    # best marks compare rows of one task list and sweep value only
    marks = report.best_marks(rows, report.metric_columns(rows))
    by = {(r["sweep"][GROUP], r["architecture"]): m for r, m in zip(rows, marks)}
    assert "income/auc" in by[(1, "mmoe")] and "college/mse" in by[(2, "hard")]
    assert "marital/auc" in by[(1, "single_task")] and "marital/auc" in by[(2, "mmoe")]
    assert not any(k.startswith("college/") for (g, _), m in by.items() if g == 1 for k in m)


def test_sweep_changing_tasks_paper_matching(group_exp):
    rows = report.aggregate(report.load_runs(group_exp.root))
    cols, prows, unmatched = report.match_paper(rows, GROUP_PAPER)
    assert cols == ["main AUC", "marital AUC"]
    got = {(r["sweep"][GROUP], r["architecture"]): p for r, p in zip(rows, prows)}
    assert got[(1, "mmoe")] == GROUP_PAPER["rows"]["mmoe [group=1]"]
    assert got[(2, "mmoe")] == GROUP_PAPER["rows"]["MMoE [group=2]"]  # case and '[sweep]' tag
    assert got[(1, "hard")] == got[(2, "hard")] == {"marital AUC": 0.9111}  # an untagged key matches every group
    assert got[(1, "single_task")] is None
    assert unmatched == ["omoe [group=2]"]


def test_single_task_list_has_one_section(sweep_exp):
    assert len(report.task_sections(report.aggregate(report.load_runs(sweep_exp.root)))) == 1
