"""Average ranks, Friedman's test, the Nemenyi critical difference and the CD diagram (mtlx.report.ranks).

Against Demšar (2006): the published q_alpha table (Table 5a) and the worked
CD of his Sec. 3.2.2 example; against hand-worked ranks with ties; against
the textbook Friedman statistic on a tie-free matrix.
"""

import math

import numpy as np
import pytest

import fake_runs
from fixtures_report import GROUP, GROUP_VALUES
from mtlx import report
from mtlx.report import plotting, ranks

# Demšar (2006), Table 5(a): critical values of the two-tailed Nemenyi test, alpha = 0.05, k = 2..10
DEMSAR_Q05 = [1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164]


def test_q_alpha_matches_demsar_table_and_the_worked_cd():
    for k, q in zip(range(2, 11), DEMSAR_Q05):
        assert ranks.q_alpha(k) == pytest.approx(q, abs=1e-3)
    # Demšar's example: k = 4 methods, N = 14 data sets -> CD = 2.569 sqrt(4 * 5 / (6 * 14)) = 1.25
    assert ranks.critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(20 / 84), abs=1e-3)
    assert round(ranks.critical_difference(4, 14), 2) == 1.25


# 3 blocks x 4 methods, with ties; the direction per block
VALUES = np.array([[0.9, 0.8, 0.8, 0.7],  # higher is better: ranks 1, 2.5, 2.5, 4
                   [0.3, 0.1, 0.2, 0.2],  # lower is better:  ranks 4, 1, 2.5, 2.5
                   [0.5, 0.5, 0.5, 0.9]])  # higher is better: ranks 3, 3, 3, 1
HIB = [True, False, True]
HAND_RANKS = np.array([[1, 2.5, 2.5, 4], [4, 1, 2.5, 2.5], [3, 3, 3, 1]])


def test_average_ranks_with_ties_by_hand():
    got = ranks.rank_matrix(VALUES, HIB)
    np.testing.assert_array_equal(got, HAND_RANKS)
    np.testing.assert_allclose(got.mean(axis=0), [8 / 3, 6.5 / 3, 8 / 3, 7.5 / 3])
    np.testing.assert_array_equal(ranks.block_ranks([0.2, float("nan"), 0.1], True), [1, np.nan, 2])


def test_friedman_statistic_is_the_textbook_one_without_ties():
    r = np.array([[1, 2, 3, 4], [2, 1, 4, 3], [1, 3, 2, 4], [1, 2, 4, 3], [2, 1, 3, 4]], float)
    n, k = r.shape
    rj = r.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(rj ** 2) - k * (k + 1) ** 2 / 4)  # Demšar (2006), Sec. 3.2.2
    stat, p = ranks.friedman(r)
    assert stat == pytest.approx(chi2)
    from scipy.stats import chi2 as chi2_dist
    assert p == pytest.approx(chi2_dist.sf(chi2, k - 1))


def test_cliques_join_methods_closer_than_the_cd():
    assert ranks.cliques([1.0, 1.5, 3.0, 3.2], 1.0) == [[0, 1], [2, 3]]
    assert ranks.cliques([1.0, 1.6, 2.4, 4.0], 1.5) == [[0, 1, 2]]  # [1, 2] lies inside it
    assert ranks.cliques([1.0, 2.0, 2.8, 3.6], 2.0) == [[0, 1, 2], [1, 2, 3]]
    assert ranks.cliques([1.0, 3.0, 5.0], 1.0) == []


def _group_avg_ranks():
    """By hand from GROUP_VALUES: blocks = (group, task), methods single_task/hard/mmoe, rank 1 = best."""
    blocks = {(1, "income", "auc", True), (1, "marital", "auc", True), (2, "college", "mse", False),
              (2, "marital", "auc", True)}
    archs = ["single_task", "hard", "mmoe"]
    total = dict.fromkeys(archs, 0.0)
    for g, t, k, hib in blocks:
        means = {a: np.mean(GROUP_VALUES[(g, a, t, k)]) for a in archs}
        for a in archs:
            better = sum((means[b] > means[a]) if hib else (means[b] < means[a]) for b in archs)
            ties = sum(means[b] == means[a] for b in archs) - 1
            total[a] += 1 + better + ties / 2
    return {a: v / len(blocks) for a, v in total.items()}


def test_cd_figure_places_each_method_at_its_average_rank(group_exp, tmp_path, monkeypatch):
    want = _group_avg_ranks()
    figs = []
    monkeypatch.setattr(plotting, "save", lambda fig, path: figs.append(fig))
    exp, runs = report.load_experiment(group_exp.root), report.load_runs(group_exp.root)
    ctx = plotting.Context(runs, [r for r in report.aggregate(runs, experiment=exp) if r["n"]], exp)
    (fig_kind,) = [f for f in report.FIGURES if f.draw is ranks.figure_cd]  # registered
    (key, stem, arg), = fig_kind.applies(ctx)
    assert stem == "critical_difference_group" == fig_kind.name.replace("<field>", "group")
    fig_kind.draw(ctx, str(tmp_path / f"{stem}.png"), arg)
    ax = figs[0].axes[0]
    plotting.plt().close(figs[0])
    placed = {ln.get_gid()[len(ranks.METHOD_GID):]: ln.get_xdata()[0] for ln in ax.lines
              if (ln.get_gid() or "").startswith(ranks.METHOD_GID)}
    assert placed == pytest.approx(want)
    cd = ranks.critical_difference(3, 4)
    (bar,) = [ln for ln in ax.lines if ln.get_gid() == ranks.CD_GID]
    assert np.ptp(bar.get_xdata()) == pytest.approx(cd)
    # every pair of methods closer than the CD shares a clique bar, no farther pair does
    bars = [sorted(ln.get_xdata()) for ln in ax.lines if ln.get_gid() == ranks.CLIQUE_GID]
    for a in want:
        for b in want:
            if a < b:
                lo, hi = sorted((want[a], want[b]))
                joined = any(x0 <= lo and hi <= x1 for x0, x1 in bars)
                assert joined == (hi - lo < cd), (a, b)


def test_table_avg_rank_column_and_notes(group_exp):
    want = _group_avg_ranks()
    tm = report.table_model(group_exp.root)
    for r, rank in zip(tm["rows"], tm["ranks"]):  # per sweep value (group) over its two tasks, by hand
        g = r["sweep"][GROUP]
        tasks = [("income", "auc", True), ("marital", "auc", True)] if g == 1 else \
            [("college", "mse", False), ("marital", "auc", True)]
        own = []
        for t, k, hib in tasks:
            means = {a: np.mean(GROUP_VALUES[(g, a, t, k)]) for a in ("single_task", "hard", "mmoe")}
            m = means[r["architecture"]]
            own.append(1 + sum((v > m) if hib else (v < m) for v in means.values()) +
                       (sum(v == m for v in means.values()) - 1) / 2)
        assert rank == pytest.approx(np.mean(own))
    md = report.render_markdown(tm)
    assert "avg rank ↓" in md and "Average rank across task sets (Demšar 2006)" in md
    across = tm["across"]
    assert dict(zip([a for a, _ in across["methods"]], across["avg"])) == pytest.approx(want)
    assert across["cd"] == pytest.approx(ranks.critical_difference(3, 4))


def test_cd_needs_several_task_sets_and_three_methods(tmp_path):
    one = fake_runs.make_experiment(str(tmp_path / "one"), architectures=("single_task", "hard", "sluice"),
                                    sweep={"optimizer.learning_rate": [0.1, 0.01]})  # not a task-set field
    rows = [r for r in report.aggregate(report.load_runs(one.root)) if r["n"]]
    assert "one task set" in ranks.across_task_sets(rows)
    two = fake_runs.make_experiment(str(tmp_path / "two"), architectures=("single_task", "hard"),
                                    sweep={"task_set.options.correlation": [0.5, 0.9]})
    rows = [r for r in report.aggregate(report.load_runs(two.root)) if r["n"]]
    assert "2 methods" in ranks.across_task_sets(rows)
