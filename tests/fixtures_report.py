"""Fake experiment directories with known numbers, shared by the report's unit tests (session scope).

Tests must not write into these directories: copy one first (``copy_of``).
"""

import shutil

import numpy as np
import pytest

import fake_runs
from mtlx import report
from mtlx.report import figures, frontier, plotting

CORR = "task_set.options.correlation"
PAPER = {"metric_columns": ["a acc", "b mse"],
         "rows": {"hard": {"a acc": 0.871, "b mse": 0.3141}, "MMoE": {"a acc": 0.9}},
         "note": "Table 2 of the paper."}

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


def hand_delta_m(group, arch):
    """delta_m of ``arch`` against single_task in ``group`` of GROUP_VALUES, by hand (Maninis et al. 2019)."""
    def rel(t, k):  # relative improvement of the seed means over single_task
        m, b = (float(np.mean(GROUP_VALUES[(group, a, t, k)])) for a in (arch, "single_task"))
        return (m - b) / b

    if group == 1:  # both auc, higher is better
        return (rel("income", "auc") + rel("marital", "auc")) / 2 * 100
    return (-rel("college", "mse") + rel("marital", "auc")) / 2 * 100  # college mse is lower-is-better


def table_fn(values):
    """metric_fn from {(arch, task, metric): [per-seed values]}; anything else (loss) 0.3."""
    return lambda arch, w, seed, sweep, task, metric: values.get((arch, task, metric), [0.3] * 9)[seed]


def row_of(rows, arch, weighting="equal", sweep=None):
    """The one row of (arch, weighting[, sweep])."""
    hits = [r for r in rows if r["architecture"] == arch and r["weighting"] == weighting
            and (sweep is None or r["sweep"] == sweep)]
    assert len(hits) == 1, (arch, weighting, sweep, len(hits))
    return hits[0]


def md_line(md, *words):
    """The one markdown table line holding every word (as a cell)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|") and all(f" {w} " in ln for w in words)]
    assert len(lines) == 1, (words, lines)
    return lines[0]


def copy_of(exp, tmp_path) -> str:
    """A private copy of a shared fake experiment directory (for tests that write tables or figures)."""
    root = str(tmp_path / "exp")
    shutil.copytree(exp.root, root)
    return root


@pytest.fixture(scope="session")
def sweep_exp(tmp_path_factory):
    """4 architectures x 3 seeds x 2 correlations; one failed and one unfinished run; paper numbers."""
    root = str(tmp_path_factory.mktemp("sweep_exp"))
    return fake_runs.make_experiment(
        root, sweep={CORR: [0.5, 0.9]}, paper=PAPER,
        failed=[("hard", "equal", 2, {CORR: 0.9})], incomplete=[("sluice", "equal", 1, {CORR: 0.5})],
        relatedness=True)


@pytest.fixture(scope="session")
def group_exp(tmp_path_factory):
    """3 architectures x 2 seeds x group in [1, 2], where the group changes the tasks; paper numbers per group."""
    root = str(tmp_path_factory.mktemp("group_exp"))
    return fake_runs.make_experiment(
        root, name="groups", tasks=group_tasks, architectures=("single_task", "hard", "mmoe"), seeds=(0, 1),
        sweep={GROUP: [1, 2]}, paper=GROUP_PAPER, metric_fn=group_metric)


@pytest.fixture
def drawn(monkeypatch):
    """Draw figures without writing them: {path: figure} of every ``save`` call."""
    out = {}
    for module in (figures, frontier):
        monkeypatch.setattr(module, "save", lambda fig, path: out.__setitem__(path, fig))
    yield out
    for fig in out.values():
        plotting.plt().close(fig)


def figure_context(root):
    """The plotting context ``launch.plot`` builds for the experiment directory ``root``."""
    exp = report.load_experiment(root)
    runs = report.load_runs(root)
    live = [r for r in report.aggregate(runs, experiment=exp) if r["n"] > 0]
    return plotting.Context(runs, live, exp, "final", figures.tradeoff_pairs(report.tasks_by_sweep(live), None))
