"""experiments/auxiliary_tasks.py: its smoke grid end to end through the launcher (mtlx.runner.launch, in this
process), then the table: main-task columns only, Δm over the main tasks, the auxiliary tasks named in the notes;
and bad auxiliary settings refused before anything runs, in one line naming the field."""

import math
import os

import pytest

from experiments import auxiliary_tasks
from mtlx import grid, results, runner
from mtlx.report.tables import table_model

MAIN = ["task0", "task1", "task2"]
AUX = ["task3", "recon", "hint", "adversary", "clean0"]


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("auxiliary_smoke"))
    out = runner.launch(auxiliary_tasks.get_config("smoke"), workdir=workdir, show_progress=False, log=lambda m: None)
    return workdir, out


def test_smoke_grid_runs_and_the_table_covers_main_tasks_only(smoke_dir):
    workdir, out = smoke_dir
    assert len(out["runs"]) == 2 and all(s["status"] == results.DONE for s in out["summaries"].values())
    tm = table_model(workdir)
    assert [t for t, _ in tm["cols"]] == MAIN
    rows = {(r["architecture"], r["weighting"]): r for r in tm["rows"]}
    with_aux = rows[("hard", "all_w0.3")]
    assert with_aux["auxiliary_tasks"] == AUX and rows[("single_task", "none")]["auxiliary_tasks"] == ["task3"]
    assert math.isfinite(with_aux["delta_m"])
    # the train-only task has no eval metrics; every other auxiliary task has its own
    summary = next(s for s in out["summaries"].values() if s["weighting"] == "all_w0.3")
    assert all(v is None or math.isnan(v) for v in summary["metrics"]["clean0"].values())
    assert "loss" in summary["metrics"]["recon"] and "loss" not in summary["metrics"]["clean0"]
    note = next(n for n in tm["notes"] if n.startswith("Auxiliary tasks"))
    assert all(t in note for t in AUX)


def test_the_adversarial_head_is_built_with_its_reversal():
    from mtlx.train import build_run

    e = grid.check_experiment(auxiliary_tasks.get_config())
    r = next(r for r in grid.expand(grid.Experiment(e)) if r["weighting"] == "adversary")
    model = build_run(grid.train_config(r["config"]), grid.task_set_for(r["config"])).model
    assert tuple(model.gradient_reversal) == (0.0,) * 4 + (0.1,)


@pytest.mark.parametrize("path,value,words", [
    ("auxiliary", ["task9"], ["task_set.options.auxiliary=['task9']", "unknown task(s) ['task9']"]),
    ("auxiliary_tasks", [{"kind": "hints", "name": "h"}], ["task_set.options.auxiliary_tasks[0].kind='hints'"]),
])
def test_bad_auxiliary_settings_fail_before_anything_runs(path, value, words, tmp_path):
    config = auxiliary_tasks.get_config("smoke")
    config.run.task_set.options[path] = value
    with pytest.raises(grid.ConfigError) as e:
        runner.launch(config, workdir=str(tmp_path), show_progress=False, log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert not any(os.path.isdir(os.path.join(tmp_path, d)) for d in os.listdir(tmp_path))  # no run directory
