"""mtlx.report.tables and launch.table (in-process) on fake experiment directories with known numbers."""

import csv
import io
import os

import numpy as np
import pytest
from absl import flags

import fake_runs
from fixtures_report import CORR, GROUP, GROUP_PAPER, GROUP_VALUES, copy_of, group_tasks, hand_delta_m, md_line, row_of
from mtlx import report
from mtlx.tasks import JOINT


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


def test_empty_dir_table(tmp_path):
    assert report.load_runs(str(tmp_path)) == [] and report.aggregate([]) == []
    assert "No runs found" in report.markdown_table(str(tmp_path))


def test_paper_numbers_beside_ours(sweep_exp):
    md = report.markdown_table(sweep_exp.root)
    header = md.splitlines()[2]
    assert "paper: a acc" in header and "paper: b mse" in header
    for corr in ("0.5", "0.9"):
        hard = md_line(md, corr, "hard")
        assert hard.rstrip(" |").endswith("0.8710 | 0.3141")
        assert "0.8710" not in md_line(md, corr, "cross_stitch")
    assert "Table 2 of the paper." in md
    assert "paper rows without a matching run: MMoE" in md


def test_paper_matched_by_weighting_when_comparing_weightings(tmp_path):
    paper = {"metric_columns": ["a acc"], "rows": {"Equal": {"a acc": 0.61}, "uw": {"a acc": 0.72}}}
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), weightings=("equal", "uw"),
                              seeds=(0, 1), paper=paper)
    md = report.markdown_table(str(tmp_path))
    assert md_line(md, "hard", "equal").rstrip(" |").endswith("0.6100")
    assert md_line(md, "hard", "uw").rstrip(" |").endswith("0.7200")
    assert "0.6100" not in md_line(md, "single_task", "equal")
    assert "matched by weighting label" in md


def test_a_paper_note_without_paper_numbers_is_printed(tmp_path):
    """A paper that reports curves, not numbers (e.g. Ma et al.'s synthetic study): its note still reaches the table."""
    fake_runs.make_experiment(str(tmp_path), architectures=("single_task", "hard"), seeds=(0, 1),
                              paper={"note": "Curves only; ours: reproduced."})
    md = report.markdown_table(str(tmp_path))
    assert "- paper: Curves only; ours: reproduced." in md.splitlines()
    assert "paper" not in md.splitlines()[2]  # no paper column in the header


def test_task_mean_column_is_the_mean_over_tasks_then_over_seeds(tmp_path):
    """paper.task_mean (a paper reporting the mean over tasks, DMTRL's mean error over alphabets)."""
    three = {"a": "classification", "b": "classification", "c": "classification"}
    fake = fake_runs.make_experiment(str(tmp_path / "on"), tasks=three, architectures=("single_task", "hard"),
                                     seeds=(0, 1, 2), paper={"task_mean": True})
    rows = report.aggregate(report.load_runs(fake.root))
    for row in rows:
        per_seed = [np.mean([fake.metrics[("{}", row["architecture"], "equal", s)][t]["accuracy"] for t in three])
                    for s in (0, 1, 2)]
        got = row["metrics"][JOINT]["task-mean accuracy"]
        assert got["mean"] == pytest.approx(np.mean(per_seed)) and got["std"] == pytest.approx(np.std(per_seed, ddof=1))
        assert "task-mean accuracy" not in row["main_metric"]  # not a task: not in Δm, the tests or the ranks
    md = report.markdown_table(fake.root)
    assert "task-mean accuracy" in md.splitlines()[2] and "- task-mean accuracy: per run, the mean over" in md
    assert "joint metrics" not in md  # it is not the task set's joint metric
    fake_runs.make_experiment(str(tmp_path / "off"), tasks=three, architectures=("single_task", "hard"), seeds=(0, 1))
    mixed = fake_runs.make_experiment(str(tmp_path / "mixed"), architectures=("single_task", "hard"), seeds=(0, 1),
                                      paper={"task_mean": True})  # accuracy and mse: no mean of the two
    for root in (str(tmp_path / "off"), mixed.root):
        assert "task-mean" not in report.markdown_table(root)


def test_failed_runs_reported(sweep_exp):
    md = report.markdown_table(sweep_exp.root)
    assert "Failed or unfinished runs (2)" in md
    assert f"{sweep_exp.failed[0]} (hard/equal, seed 2, correlation=0.9): failed" in md
    assert "NonFiniteLoss" in md
    assert "sluice-equal-s1-correlation0.5" in md
    assert "1000000" not in md


def test_tables_written_atomically_and_csv_parses_back(sweep_exp, tmp_path):
    root = copy_of(sweep_exp, tmp_path)
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


def test_single_task_list_has_one_table(sweep_exp):
    md = report.markdown_table(sweep_exp.root)
    assert "###" not in md and "one table per task list" not in md
    assert "tasks" not in next(csv.reader(io.StringIO(report.render_csv(report.table_model(sweep_exp.root)))))


# --------------------------------------------------------------------------- a sweep that changes the task set


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
            line = md_line("\n".join(lines), arch)
            dm = f"{hand_delta_m(g, arch):+.2f}"
            assert f" {dm} " in line or f"**{dm}**" in line, (g, arch, line)
    assert "**0.4600 ± 0.2541**" in md_line("\n".join(two), "hard")  # college mse: lower is best
    assert "**0.8700 ± 0.1271**" in md_line("\n".join(one), "mmoe")  # income auc
    # Δm% best per section: group 1 mmoe, group 2 hard
    best_1 = f"**{hand_delta_m(1, 'mmoe'):+.2f}**"
    best_2 = f"**{hand_delta_m(2, 'hard'):+.2f}**"
    assert best_1 in md_line("\n".join(one), "mmoe") and best_2 in md_line("\n".join(two), "hard")
    assert "one table per task list" in md


def test_sweep_changing_tasks_paper_numbers_per_section(group_exp):
    md = report.markdown_table(group_exp.root)
    one, two = (("\n".join(v)) for v in _sections(md).values())
    assert md_line(one, "mmoe").rstrip(" |").endswith("0.9410 | 0.9927")
    assert md_line(two, "mmoe").rstrip(" |").endswith("0.8860 | 0.9924")
    assert "0.8860" not in one and "0.9410" not in two
    assert md_line(one, "hard").rstrip(" |").endswith("| 0.9111")
    assert "matched by architecture label and sweep value" in md
    assert "paper rows without a matching run: omoe [group=2]." in md


def test_sweep_changing_tasks_csv_and_latex(group_exp, tmp_path):
    root = copy_of(group_exp, tmp_path)
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
    empty = row_of(rows, "hard", sweep=point)
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


# --------------------------------------------------------------------------- launch.table, in process


@pytest.fixture
def parsed_flags():
    """Parse argv into absl's FLAGS for one call of a launcher's main; unparse afterwards."""
    def parse(argv):
        return flags.FLAGS(argv)

    yield parse
    flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("which", ["sweep_exp", "group_exp"])
def test_launch_table_main(which, request, tmp_path, capsys, parsed_flags):
    from launch import table
    exp = request.getfixturevalue(which)
    root = copy_of(exp, tmp_path)
    table.main(parsed_flags(["launch.table", root, "--select=final"]))
    out = capsys.readouterr().out
    assert out == report.markdown_table(root)
    for ext in ("md", "tex", "csv"):
        assert os.path.getsize(os.path.join(root, f"table.{ext}")) > 0
    if which == "sweep_exp":
        assert "| correlation | architecture | weighting | n |" in out
    else:
        assert "### group=2 — tasks: college, marital" in out
