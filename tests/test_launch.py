"""launch.run / mtlx.experiment: grid expansion, ids, up-front validation, executors, NaN runs."""

import json
import os
import subprocess
import sys
import textwrap

import ml_collections
import pytest

from mtlx import experiment, results, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(task_set="synthetic_classification", archs=("hard", "single_task"), seeds=(0,)):
    """A 2-run grid that trains in a second or two."""
    c = experiment.experiment_config()
    c.experiment = "tiny"
    c.run.task_set.name = task_set
    opts = {"n_train": 256, "n_validation": 64, "n_test": 64}
    opts.update({"num_tasks": 2, "dim": 8} if task_set == "synthetic_classification" else {"dim": 8})
    c.run.task_set.options = ml_collections.ConfigDict(opts)
    c.run.backbone.blocks = [{"kind": "dense", "features": 16}]
    c.run.steps, c.run.batch_size, c.run.eval_every, c.run.log_every, c.run.checkpoint_every = 20, 32, 10, 5, 10
    c.architectures = tuple({"name": a, "options": {}} for a in archs)
    c.seeds = tuple(seeds)
    return c


def run_dirs(workdir):
    if not os.path.isdir(workdir):
        return []
    return sorted(d for d in os.listdir(workdir) if os.path.isdir(os.path.join(workdir, d)) and not d.startswith("."))


def env():
    return {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}


# --------------------------------------------------------------------------- expansion and ids


def test_grid_expansion_counts_and_stable_ids():
    c = tiny("mmoe_synthetic", archs=("hard", "single_task", "mmoe"), seeds=(0, 1))
    c.weightings = ({"name": "equal"}, {"name": "static", "options": {"weights": (1.0, 2.0)}, "label": "w12"})
    c.sweep = experiment.dotted({"task_set.options.correlation": [1.0, 0.5], "optimizer.learning_rate": [1e-3, 1e-2]})
    runs = experiment.expand(c)
    assert len(runs) == 3 * 2 * 2 * 2 * 2  # architectures x weightings x seeds x correlations x learning rates
    ids = [r["run_id"] for r in runs]
    assert len(set(ids)) == len(ids)
    assert [r["index"] for r in runs] == list(range(1, 49)) and {r["total"] for r in runs} == {48}

    r = next(r for r in runs if r["run_id"].startswith("mmoe-w12-learning_rate0.01-correlation0.5-s1-"))
    assert r["config"]["task_set"]["options"]["correlation"] == 0.5
    assert r["config"]["optimizer"]["learning_rate"] == 0.01
    assert r["config"]["architecture"] == {"name": "mmoe", "options": {}}
    assert r["config"]["weighting"] == {"name": "static", "options": {"weights": [1.0, 2.0]}}
    assert r["config"]["seed"] == 1 and r["seed"] == 1
    assert r["sweep"] == {"task_set.options.correlation": 0.5, "optimizer.learning_rate": 0.01}
    assert (r["architecture"], r["weighting"]) == ("mmoe", "w12")

    # Same settings (a freshly built config) -> same ids; a changed setting -> a new id for every run.
    c2 = tiny("mmoe_synthetic", archs=("hard", "single_task", "mmoe"), seeds=(0, 1))
    c2.weightings = c.weightings
    c2.sweep = experiment.dotted({"task_set.options.correlation": [1.0, 0.5], "optimizer.learning_rate": [1e-3, 1e-2]})
    assert [r["run_id"] for r in experiment.expand(c2)] == ids
    c2.run.optimizer.mixing_learning_rate = 0.5
    changed = [r["run_id"] for r in experiment.expand(c2)]
    assert all(a != b and a.rsplit("-", 1)[0] == b.rsplit("-", 1)[0] for a, b in zip(ids, changed))

    plain = experiment.expand(tiny())
    c3 = tiny()
    c3.run.optimizer.learning_rate = 2e-3
    assert [r["run_id"] for r in plain] != [r["run_id"] for r in experiment.expand(c3)]
    assert [r["run_id"].rsplit("-", 1)[0] for r in plain] == ["hard-equal-s0", "single_task-equal-s0"]


def test_architecture_paired_with_some_weightings_only():
    c = tiny(seeds=(0, 1))
    c.architectures = ({"name": "single_task", "weightings": ("equal",)}, {"name": "hard"})
    c.weightings = ({"name": "equal"}, {"name": "pcgrad"}, {"name": "uncertainty", "label": "kendall"})
    pairs = [(r["architecture"], r["weighting"]) for r in experiment.expand(c)]
    assert pairs == [("single_task", "equal"), ("hard", "equal"), ("hard", "pcgrad"), ("hard", "kendall")] * 2
    c.architectures = ({"name": "single_task", "weightings": ("uncertainty",)},)  # a name, not the label
    with pytest.raises(experiment.ConfigError, match=r"weightings \['uncertainty'\] are not in config.weightings"):
        experiment.expand(c)
    c.architectures = ({"name": "hard"},)
    c.weightings = ({"name": "equal", "weightings": ("equal",)},)
    with pytest.raises(experiment.ConfigError, match=r"unknown key\(s\) \['weightings'\]"):
        experiment.expand(c)


def test_the_shipped_experiments_validate(tmp_path):
    import importlib

    for name in ("quickstart", "mmoe_synthetic"):
        for arg in (None, "smoke"):
            cfg = importlib.import_module(f"experiments.{name}").get_config(arg)
            e, runs, chosen, _ = experiment.prepare(cfg, str(tmp_path / name))
            assert runs and len(chosen) == len(runs) and e["experiment"] == name
    assert not any(os.scandir(tmp_path))


# --------------------------------------------------------------------------- bad configs


def _set(path, value):
    def f(c):
        node = c
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return f


def _del_run_field(c):
    del c.run["eval_every"]


BAD = {
    "unknown architecture": (_set("architectures", ({"name": "hardd"},)), "architecture='hardd' is not valid"),
    "unknown weighting": (_set("weightings", ({"name": "equall"},)), "weighting='equall' is not valid"),
    "unknown task set": (_set("run.task_set.name", "nope"), "task_set.name='nope' is not valid"),
    "misspelled run field": (_set("run.stepz", 3), "stepz (did you mean steps?)"),
    "missing run field": (_del_run_field, "missing config field(s): eval_every"),
    "misspelled experiment field": (_set("seed", (0,)), "config.seed (did you mean 'seeds'?)"),
    "no architectures": (_set("architectures", ()), "config.architectures is empty"),
    "no weightings": (_set("weightings", ()), "config.weightings is empty"),
    "no seeds": (_set("seeds", ()), "config.seeds is empty"),
    "bad architecture option": (_set("architectures", ({"name": "hard", "options": {"splitt": 1}},)), "splitt"),
    "misspelled sweep path": (lambda c: c.__setattr__("sweep", experiment.dotted({"optimizer.learnin_rate": [0.1]})),
                              "optimizer.learnin_rate (did you mean optimizer.learning_rate?)"),
    "misspelled task-set option": (_set("run.task_set.options.num_taskz", 3), "num_taskz"),
    # Only the LAST run of the grid is bad: every expanded run is validated before any training.
    "bad last sweep value": (lambda c: c.__setattr__("sweep", experiment.dotted({"task_set.options.shared_fraction": [0.5, 1.5]})),
                             "shared_fraction=1.5 must lie in [0, 1]"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_configs_fail_in_one_line_before_training(case, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train, "train_and_evaluate", lambda *a, **k: calls.append(a))
    c = tiny()
    edit, expected = BAD[case]
    edit(c)
    workdir = str(tmp_path / "wd")
    with pytest.raises(experiment.ConfigError) as err:
        experiment.launch(c, workdir, show_progress=False)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg, msg
    assert not os.path.exists(workdir) and not calls


def test_workdir_of_another_experiment_is_refused(tmp_path):
    workdir = str(tmp_path / "wd")
    results.write_json(os.path.join(workdir, "experiment.json"), {"name": "someone_else"})
    with pytest.raises(experiment.ConfigError, match="holds runs of experiment 'someone_else', not 'tiny'"):
        experiment.launch(tiny(), workdir, show_progress=False)
    assert os.listdir(workdir) == ["experiment.json"]


def test_cli_prints_one_line_error_and_exits_2(tmp_path):
    exp = tmp_path / "bad_exp.py"
    exp.write_text(textwrap.dedent("""
        from mtlx.experiment import experiment_config
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


# --------------------------------------------------------------------------- executors


def _check_done(workdir, n):
    dirs = run_dirs(workdir)
    assert len(dirs) == n, dirs
    for d in dirs:
        s = results.read_json(os.path.join(workdir, d, "summary.json"))
        assert s["status"] == "done" and s["run_id"] == d and s["experiment"] == "tiny" and s["steps"] == 20
        assert s["architecture"] in ("hard", "single_task") and s["weighting"] == "equal" and s["seed"] in (0, 1)
        assert s["sweep"] == {} and s["task_set"] == "synthetic_classification"
        assert s["tasks"] == {t: {"main_metric": "accuracy", "higher_is_better": {"accuracy": True}}
                              for t in ("task0", "task1")}
        assert set(s["metrics"]) == {"task0", "task1"}
        assert results.read_json(os.path.join(workdir, d, "config.json"))["seed"] == s["seed"]
        assert any(r["kind"] == "eval" and r["step"] == 20 for r in results.read_jsonl(os.path.join(workdir, d, "metrics.jsonl")))
    meta = results.read_json(os.path.join(workdir, "experiment.json"))
    assert meta["name"] == "tiny" and sorted(r["run_id"] for r in meta["runs"]) == dirs


def test_local_parallel_executor(tmp_path):
    workdir = str(tmp_path / "wd")
    out = experiment.launch(tiny(), workdir, parallel=2, show_progress=False, compilation_cache=str(tmp_path / "jax"))
    assert len(out["summaries"]) == 2
    _check_done(workdir, 2)


def test_submitit_executor(tmp_path):
    """submitit's 'local' cluster: a real job process that unpickles ``run_many`` (cluster='debug' also works)."""
    workdir = str(tmp_path / "wd")
    # Two seeds of one architecture: the second run loads the first one's program from the compilation cache.
    out = experiment.launch(tiny(archs=("hard",), seeds=(0, 1)), workdir, executor="slurm", show_progress=False,
                            runs_per_job=2,
                            slurm={"cluster": "local", "time": 10, "cpus": 1, "gpus": 0, "partition": None},
                            compilation_cache=str(tmp_path / "jax"))
    assert len(out["jobs"]) == 1  # two runs, one job
    assert [s["run_id"] for s in out["jobs"][0].result()] == [r["run_id"] for r in out["runs"]]
    _check_done(workdir, 2)
    assert os.listdir(os.path.join(workdir, ".submitit"))  # the job's logs


# --------------------------------------------------------------------------- NaN runs


def test_nan_run_is_marked_failed_and_the_sweep_goes_on(tmp_path):
    c = tiny("mmoe_synthetic", archs=("hard",))
    c.run.optimizer.name = "sgd"
    c.sweep = experiment.dotted({"optimizer.learning_rate": [1e6, 1e-3]})  # the absurd one runs first
    workdir = str(tmp_path / "wd")
    out = experiment.launch(c, workdir, show_progress=False)
    bad, good = (out["summaries"][r["run_id"]] for r in out["runs"])
    assert bad["status"] == "failed" and bad["sweep"] == {"optimizer.learning_rate": 1e6}
    assert isinstance(bad["failure"]["step"], int) and 0 <= bad["failure"]["step"] < 20
    assert bad["failure"]["task"] in ("y1", "y2") and "NaN/inf" in bad["failure"]["message"]
    assert good["status"] == "done" and good["steps"] == 20
    # A relaunch skips the failed run too; --rerun_failed trains it again (and it fails again).
    path = os.path.join(workdir, bad["run_id"], "summary.json")
    mtime = os.stat(path).st_mtime_ns
    experiment.launch(c, workdir, show_progress=False)
    assert os.stat(path).st_mtime_ns == mtime
    again = experiment.launch(c, workdir, show_progress=False, rerun_failed=True, only=[bad["run_id"]])
    assert os.stat(path).st_mtime_ns != mtime and again["summaries"][bad["run_id"]]["failure"] == bad["failure"]
