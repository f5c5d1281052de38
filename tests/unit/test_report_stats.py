"""mtlx.report.stats against scipy on fixed numbers, Holm against a hand-worked example, the seeded bootstrap,
the rows' tests and intervals, and the pooling guard (mtlx.report.pooling) on fake run directories."""

import math

import numpy as np
import pytest
from scipy import stats as sps

import fake_runs
from fixtures_report import md_line, row_of, table_fn
from mtlx import report
from mtlx.report import pooling, stats

A = [0.80, 0.82, 0.85, 0.81]
B = [0.70, 0.74, 0.73]


def test_ci_half_width_is_scipys_t_interval():
    lo, hi = sps.t.interval(0.95, len(A) - 1, loc=np.mean(A), scale=sps.sem(A))
    assert stats.ci_half_width(A) == pytest.approx((hi - lo) / 2, rel=1e-12)
    assert math.isnan(stats.ci_half_width([0.8])) and math.isnan(stats.ci_half_width([]))
    assert report.mean_std(A)["ci"] == stats.ci_half_width(A)


def test_welch_is_scipys_unequal_variance_t_test():
    want = sps.ttest_ind(A, B, equal_var=False).pvalue
    assert stats.welch_p(A, B) == pytest.approx(want, rel=1e-12)
    assert want != pytest.approx(sps.ttest_ind(A, B).pvalue)  # not Student's pooled-variance test
    assert math.isnan(stats.welch_p([0.8], B))  # n = 1: no test


def test_paired_test_is_the_t_test_of_the_per_seed_differences():
    # seeds listed in different orders, seed 9 only on one side, seed 4 missing a value: 4 pairs (0, 1, 2, 3)
    a = {0: 0.81, 1: 0.62, 2: 0.93, 3: 0.70, 4: None, 9: 0.5}
    b = {3: 0.68, 2: 0.90, 1: 0.61, 0: 0.80, 4: 0.7}
    d = np.array([0.81 - 0.80, 0.62 - 0.61, 0.93 - 0.90, 0.70 - 0.68])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))  # the definition, not scipy's ttest_rel
    p, diff = stats.paired_test(a, b)
    assert p == pytest.approx(2 * sps.t.sf(abs(t), len(d) - 1), rel=1e-9) and diff == pytest.approx(d.mean())
    assert math.isnan(stats.paired_test({0: 0.8, 1: 0.9}, {0: 0.7})[0])  # one pair: no test
    assert math.isnan(stats.paired_test({0: 0.8, 1: 0.9}, {0: 0.7, 1: 0.8})[0])  # constant difference


# a large per-seed offset shared by every row of that seed (its data draw) and a small, consistent gain of hard;
# hard's seed 5 failed, and single_task's seed 5 draw is easy: over all seeds hard's MEAN is below single_task's
DRAW = [0.60, 0.80, 0.70, 0.90, 0.65, 0.99]
DRAWN = {("single_task", "a", "accuracy"): DRAW,
         ("hard", "a", "accuracy"): [v + g for v, g in zip(DRAW, (0.012, 0.009, 0.011, 0.010, 0.011, 0.0))]}
HARD_FAILS = (("hard", "equal", 5, {}),)


def test_tests_pair_the_seeds_when_each_seed_draws_its_own_data(tmp_path):
    data_seed = "task_set.options.seed"
    fake_runs.make_experiment(str(tmp_path / "paired"), architectures=("single_task", "hard"), seeds=range(6),
                              seed_paths=(data_seed,), metric_fn=table_fn(DRAWN), failed=HARD_FAILS)
    fake_runs.make_experiment(str(tmp_path / "welch"), architectures=("single_task", "hard"), seeds=range(6),
                              metric_fn=table_fn(DRAWN), failed=HARD_FAILS)
    rows = report.aggregate(report.load_runs(str(tmp_path / "paired")))
    assert row_of(rows, "hard")["metrics"]["a"]["accuracy"]["mean"] < row_of(rows, "single_task")["metrics"]["a"][
        "accuracy"]["mean"]
    paired, welch = (row_of(report.aggregate(report.load_runs(str(tmp_path / k))), "hard")["tests"]["a"]
                     for k in ("paired", "welch"))
    diffs = np.subtract(DRAWN[("hard", "a", "accuracy")][:5], DRAW[:5])  # the 5 seeds both rows finished
    t = diffs.mean() / (diffs.std(ddof=1) / math.sqrt(5))
    assert paired["test"] == "paired" and paired["p"] == pytest.approx(2 * sps.t.sf(t, 4), rel=1e-9)
    # better on every shared seed: the direction is the per-seed differences', not the means over other seeds
    assert paired["mark"] == stats.BETTER  # the data draw's variance cancels in the per-seed differences
    assert welch["test"] == "welch" and welch["p"] > 0.5 and welch["mark"] == ""  # Welch counts it as noise
    md = report.markdown_table(str(tmp_path / "paired"))
    assert stats.BETTER in md_line(md, "hard") and stats.PAIRED_NOTE in md and "Welch" not in md
    assert "Welch's t-test" in report.markdown_table(str(tmp_path / "welch"))
    report.write_tables(str(tmp_path / "paired"))
    with open(tmp_path / "paired" / "table.csv") as f:
        assert "a/p_paired_holm" in f.readline()


def test_holm_hand_worked():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> stays 0.06, monotone)
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adj = stats.holm([float("nan"), 0.01, 0.04])  # NaN (no test) neither counts nor changes
    assert math.isnan(adj[0]) and adj[1:] == pytest.approx([0.02, 0.04])
    assert stats.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    # at alpha 0.05 Holm rejects the two smallest only
    assert [stats.mark(p, True) for p in stats.holm([0.01, 0.04, 0.03, 0.005])] == [stats.BETTER, "", "", stats.BETTER]


def test_bootstrap_is_seeded_and_scipys():
    got = stats.bootstrap_ci(A)
    assert got == stats.bootstrap_ci(A)  # reproducible
    res = sps.bootstrap((np.asarray(A),), np.mean, n_resamples=stats.N_RESAMPLES, method="percentile",
                        rng=np.random.default_rng(stats.BOOTSTRAP_SEED))
    assert got == (res.confidence_interval.low, res.confidence_interval.high)
    assert got[0] < np.mean(A) < got[1]
    assert all(math.isnan(v) for v in stats.bootstrap_ci([0.3]))


VALUES = {("single_task", "a", "accuracy"): [0.80, 0.81, 0.79], ("single_task", "b", "mse"): [0.50, 0.52, 0.51],
          ("hard", "a", "accuracy"): [0.90, 0.91, 0.89], ("hard", "b", "mse"): [0.50, 0.53, 0.49],
          ("sluice", "a", "accuracy"): [0.70, 0.71, 0.69], ("sluice", "b", "mse"): [0.51, 0.50, 0.52]}


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("marked"))
    fake_runs.make_experiment(root, architectures=("single_task", "hard", "sluice"), metric_fn=table_fn(VALUES))
    return root


def test_rows_carry_welch_holm_marks_and_intervals(marked):
    rows = report.aggregate(report.load_runs(marked))
    base, hard, sluice = (row_of(rows, a) for a in ("single_task", "hard", "sluice"))
    assert base["tests"] == {}
    raw = [sps.ttest_ind(VALUES[(a, "a", "accuracy")], VALUES[("single_task", "a", "accuracy")],
                         equal_var=False).pvalue for a in ("hard", "sluice")]
    want = stats.holm(raw)
    assert (hard["tests"]["a"]["p_holm"], sluice["tests"]["a"]["p_holm"]) == pytest.approx(want)
    assert hard["tests"]["a"]["mark"] == stats.BETTER and sluice["tests"]["a"]["mark"] == stats.WORSE
    assert hard["tests"]["b"]["mark"] == ""  # mse: no difference
    per_seed = [report.delta_m({"a": VALUES[("hard", "a", "accuracy")][s], "b": VALUES[("hard", "b", "mse")][s]},
                               {"a": 0.80, "b": 0.51}, {"a": True, "b": False}) for s in range(3)]
    assert hard["delta_m_ci"] == pytest.approx(stats.bootstrap_ci(per_seed))
    md = report.markdown_table(marked)
    line = md_line(md, "hard")
    ci = stats.ci_half_width(VALUES[("hard", "a", "accuracy")])
    assert f"0.9000 ± {ci:.4f}** {stats.BETTER}" in line
    lo, hi = hard["delta_m_ci"]
    assert f"[{lo:+.2f}, {hi:+.2f}]" in line
    assert stats.WORSE in md_line(md, "sluice")
    assert "Welch's t-test" in md and "Holm" in md and "alpha = 0.05" in md and "the CSV also keeps the std" in md
    assert report.DELTA_M_CONVENTION in md


def test_main_only_keeps_the_main_metrics_in_task_order(tmp_path):
    fake_runs.make_experiment(str(tmp_path), tasks={"z": "binary", "a": "binary", "m": "regression"},
                              architectures=("single_task", "hard"), seeds=(0, 1))
    head = report.markdown_table(str(tmp_path), main_only=True).splitlines()[2]
    assert "| z auc ↑ | a auc ↑ | m mse ↓ | Δm% ↑ |" in head and "accuracy" not in head
    assert "z accuracy" in report.markdown_table(str(tmp_path)).splitlines()[2]


def test_n_equal_one_has_no_interval_and_no_test(tmp_path):
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), seeds=(0,))
    md = report.markdown_table(str(tmp_path))
    assert "±" not in md_line(md, "hard") and "[" not in md_line(md, "hard")
    assert stats.NO_INTERVAL in md
    assert all(math.isnan(c["p_holm"]) for c in row_of(report.aggregate(report.load_runs(str(tmp_path))), "hard")[
        "tests"].values())


# --------------------------------------------------------------------------- the pooling guard


def _longer(arch, w, seed, point):
    return {"steps": 1000} if (arch, seed) == ("hard", 1) else {}


def test_pooling_guard_refuses_mixed_configurations(tmp_path):
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), config_overrides=_longer)
    with pytest.raises(pooling.PoolingError, match=r"differ in steps .*hard/equal: steps in \{100, 1000\}"):
        report.markdown_table(str(tmp_path))
    with pytest.raises(pooling.PoolingError, match="--pool_configs"):
        report.write_tables(str(tmp_path))
    md = report.markdown_table(str(tmp_path), pool_configs=True)
    assert "--pool_configs: rows pool runs of different configurations" in md and "steps" in md


def test_pooling_guard_reads_config_json_when_the_summary_has_none(tmp_path):
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), config_overrides=_longer)
    runs = report.load_runs(str(tmp_path))
    for r in runs:
        r.pop("config")
    assert [d["group"] for d in pooling.differences(runs, report.load_experiment(str(tmp_path)))] == ["hard/equal"]


def test_seed_paths_do_not_split_a_row(tmp_path):
    data_seed = "task_set.options.seed"
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), seed_paths=(data_seed,))
    rows = report.aggregate(report.load_runs(str(tmp_path)))
    assert "±" in md_line(report.markdown_table(str(tmp_path)), "hard") and row_of(rows, "hard")["n"] == 3
    # the same per-seed data seeds without grid.seed_paths: a difference the guard names
    other = tmp_path / "other"
    fake_runs.make_experiment(str(other), architectures=("single_task", "hard"),
                              config_overrides=lambda a, w, s, p: {data_seed: s})
    with pytest.raises(pooling.PoolingError, match=data_seed):
        report.markdown_table(str(other))


def test_a_reference_to_the_same_seeds_run_does_not_split_a_row(tmp_path):
    """DMTRL's stage 2: each seed's factorised run starts from that seed's single-task run."""
    field = "architecture.options.init_from_run"
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"),
                              config_overrides=lambda a, w, s, p: {field: f"wd/stl-equal-s{s}-*"})
    assert row_of(report.aggregate(report.load_runs(str(tmp_path))), "hard")["n"] == 3
    assert "±" in md_line(report.markdown_table(str(tmp_path)), "hard")
    # another seed's run (here always seed 0's) is a real difference for the other seeds: named
    other = tmp_path / "other"
    fake_runs.make_experiment(str(other), architectures=("single_task", "hard"),
                              config_overrides=lambda a, w, s, p: {field: "wd/stl-equal-s0-*"})
    with pytest.raises(pooling.PoolingError, match=field):
        report.markdown_table(str(other))


def test_launch_table_stops_with_one_clear_error(tmp_path):
    from absl import flags

    from launch import table
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), config_overrides=_longer)
    try:
        with pytest.raises(SystemExit, match="launch.table: runs of one row differ in steps"):
            table.main(flags.FLAGS(["launch.table", str(tmp_path)]))
        table.main(flags.FLAGS(["launch.table", str(tmp_path), "--pool_configs", "--main"]))
    finally:
        flags.FLAGS.unparse_flags()
    with open(tmp_path / "table.md") as f:
        assert "--pool_configs" in f.read()


def test_readme_states_the_delta_m_convention_in_the_tables_words():
    import os
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    with open(readme) as f:
        text = " ".join(f.read().split())
    assert report.DELTA_M_CONVENTION.split(" = ", 1)[1] in text
