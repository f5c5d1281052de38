"""launch.run end to end: the CLI's one-line errors, the executors, NaN runs, and the quickstart smoke.

Each test trains real (tiny) runs; the ones whose point is a process boundary
(the CLI, --parallel, submitit) start processes, the others run in-process.
The executors share one JAX compilation cache, so a program compiled by one
test's process is loaded by the next.
"""

import csv
import glob
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mtlx import grid, results, runner
from mtlx.architectures import BASELINE
from tiny_grid import REPO, env, run_dirs, tiny


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


def test_cli_prints_one_line_error_and_exits_2(tmp_path):
    exp = tmp_path / "bad_exp.py"
    exp.write_text(textwrap.dedent("""
        from mtlx.grid import experiment_config
        def get_config(arg=None):
            c = experiment_config()
            c.experiment = "bad"
            c.run.steps = 5
            c.architectures = ({"name": "hard"}, {"name": "no_such_arch"})
            return c
    """))
    workdir = tmp_path / "wd"
    cases = [([], "architecture='no_such_arch' is not valid"),
             (["--config.run.stepz=3"], "stepz")]  # a misspelled override fails in absl's flag parsing
    for extra, expected in cases:
        p = subprocess.run([sys.executable, "-m", "launch.run", f"--config={exp}", f"--workdir={workdir}",
                            "--compilation_cache=", *extra],
                           capture_output=True, text=True, cwd=REPO, env=env(), timeout=120)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], p.stderr
        assert "Traceback" not in p.stderr and not workdir.exists()


def _check_done(workdir, n):
    dirs = run_dirs(workdir)
    assert len(dirs) == n, dirs
    for d in dirs:
        s = results.read_summary(os.path.join(workdir, d))
        assert s["status"] == "done" and s["run_id"] == d and s["experiment"] == "tiny" and s["steps"] == 20
        assert s["architecture"] in ("hard", BASELINE) and s["weighting"] == "equal" and s["seed"] in (0, 1)
        assert s["sweep"] == {} and s["task_set"] == "synthetic_classification"
        assert s["tasks"] == {t: {"index": i, "kind": "classification", "role": "main", "loss": "softmax_cross_entropy",
                                  "main_metric": "accuracy",
                                  "higher_is_better": {"accuracy": True, "loss": False}}
                              for i, t in enumerate(("task0", "task1"))}
        assert set(s["metrics"]) == {"task0", "task1"}
        assert results.read_config(os.path.join(workdir, d))["seed"] == s["seed"]
        assert any(r["kind"] == "eval" and r["step"] == 20 for r in results.read_metrics(os.path.join(workdir, d)))
    meta = results.read_experiment(workdir)
    assert meta["name"] == "tiny" and sorted(r["run_id"] for r in meta["runs"]) == dirs


def test_local_parallel_executor(tmp_path, jax_cache):
    workdir = str(tmp_path / "wd")
    out = runner.launch(tiny(), workdir, parallel=2, show_progress=False, compilation_cache=jax_cache)
    assert len(out["summaries"]) == 2
    _check_done(workdir, 2)
    assert results.read_experiment(workdir)["grid"]["baseline"] == BASELINE


def test_submitit_executor(tmp_path, jax_cache):
    """submitit's 'local' cluster: a real job process that unpickles ``run_many`` (cluster='debug' also works)."""
    workdir = str(tmp_path / "wd")
    # Two seeds of one architecture: the second run loads the first one's program from the compilation cache.
    out = runner.launch(tiny(archs=("hard",), seeds=(0, 1)), workdir, executor="slurm", show_progress=False,
                        runs_per_job=2, slurm={"cluster": "local", "time": 10, "cpus": 1, "gpus": 0, "partition": None},
                        compilation_cache=jax_cache)
    assert len(out["jobs"]) == 1  # two runs, one job
    assert [s["run_id"] for s in out["jobs"][0].result()] == [r["run_id"] for r in out["runs"]]
    _check_done(workdir, 2)
    assert os.listdir(os.path.join(workdir, ".submitit"))  # the job's logs


def test_nan_run_is_marked_failed_and_the_sweep_goes_on(tmp_path):
    c = tiny("mmoe_synthetic", archs=("hard",))
    c.run.optimizer.name = "sgd"
    c.sweep = grid.dotted({"optimizer.learning_rate": [1e6, 1e-3]})  # the absurd one runs first
    workdir = str(tmp_path / "wd")
    out = runner.launch(c, workdir, show_progress=False)
    bad, good = (out["summaries"][r["run_id"]] for r in out["runs"])
    assert bad["status"] == "failed" and bad["sweep"] == {"optimizer.learning_rate": 1e6}
    # the failing update lies after the last logged finite losses, at or before the first logged NaN/inf (null)
    curve = results.read_metrics(os.path.join(workdir, bad["run_id"]), "train")
    finite = [r["step"] for r in curve if all(v is not None for v in r["losses"].values())]
    first_bad = next(r["step"] for r in curve if any(v is None for v in r["losses"].values()))
    assert max(finite, default=0) < bad["failure"]["step"] <= first_bad == curve[-1]["step"]
    assert bad["failure"]["task"] in ("y1", "y2") and "NaN/inf" in bad["failure"]["message"]
    assert good["status"] == "done" and good["steps"] == 20
    # A relaunch skips the failed run too; --rerun_failed trains it again (and it fails again).
    path = os.path.join(workdir, bad["run_id"], results.SUMMARY)
    mtime = os.stat(path).st_mtime_ns
    runner.launch(c, workdir, show_progress=False)
    assert os.stat(path).st_mtime_ns == mtime
    again = runner.launch(c, workdir, show_progress=False, rerun_failed=True, only=[bad["run_id"]])
    assert os.stat(path).st_mtime_ns != mtime and again["summaries"][bad["run_id"]]["failure"] == bad["failure"]


def _cli(*args):
    out = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env(), capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_quickstart_smoke_then_table_and_plot(tmp_path):
    work = tmp_path / "qs"
    _cli("launch.run", "--config", "experiments/quickstart.py:smoke", "--workdir", str(work), "--noprogress",
         "--compilation_cache=")  # with its report: the table printed, table.* and figures/ written
    summaries = [json.load(open(p)) for p in glob.glob(str(work / "*" / results.SUMMARY))]
    assert len(summaries) == 5 and all(s["status"] == "done" for s in summaries)
    _cli("launch.table", str(work))
    _cli("launch.plot", str(work))
    assert os.path.getsize(work / "figures" / "main_metric_bars.png") > 1000
    by_arch = {s["architecture"]: s for s in summaries}
    base = by_arch[BASELINE]["metrics"]
    rows = {r["architecture"]: r for r in csv.DictReader(open(work / "table.csv"))}
    for arch, s in by_arch.items():  # delta_m by hand: mean over tasks of the relative change in accuracy
        want = 100 * np.mean([(s["metrics"][t]["accuracy"] - base[t]["accuracy"]) / base[t]["accuracy"] for t in base])
        assert float(rows[arch]["delta_m"]) == pytest.approx(want, abs=1e-9)
        assert float(rows[arch]["task0/accuracy/mean"]) == pytest.approx(s["metrics"]["task0"]["accuracy"])
