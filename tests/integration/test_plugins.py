"""Plug-ins by import path: a user task set in a module beside the experiment file (in tmp_path, not
importable from the repo) runs through launch.run in-process, with --parallel=2 (spawned workers) and with
submitit's local executor (a job process); the resolver's one-line errors; the CLI's one-line errors.

The launches share one JAX compilation cache; each trains two 6-step runs of an 8-unit MLP.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest
from absl import flags

from launch import run as launch_run
from mtlx import plugins, results
from mtlx.architectures import ARCHITECTURES, Hard
from mtlx.weighting import WEIGHTINGS
from tiny_grid import REPO, env, run_dirs

EXAMPLE = os.path.join(REPO, "tests", "plugin_example")


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """The README's example experiment and task-set module, copied into a folder of their own."""
    folder = tmp_path / "user"
    shutil.copytree(EXAMPLE, folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # launch.run prepends the experiment's folder ...
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # ... and puts it on PYTHONPATH
    monkeypatch.delitem(sys.modules, "my_tasks", raising=False)
    yield folder
    sys.modules.pop("my_tasks", None)


def _launch(folder, workdir, jax_cache, *extra) -> int:
    flags.FLAGS.unparse_flags()
    argv = ["launch.run", f"--config={folder / 'my_experiment.py'}:smoke", f"--workdir={workdir}", "--noprogress",
            "--noreport", f"--compilation_cache={jax_cache}", *extra]
    try:
        launch_run.main(launch_run._parse_flags(argv))
    except SystemExit as e:
        return e.code
    return 0


def _check_done(workdir):
    dirs = run_dirs(workdir)
    assert len(dirs) == 2 and {d.split("-")[0] for d in dirs} == {"hard", "single_task"}, dirs
    for d in dirs:
        s = results.read_summary(os.path.join(workdir, d))
        assert s["status"] == "done" and s["steps"] == 6 and s["task_set"] == "my_tasks"  # the TaskSet's name
        assert results.read_config(os.path.join(workdir, d))["task_set"]["name"] == "my_tasks:make"
        assert set(s["tasks"]) == set(s["metrics"]) == {"sign", "value"}
        assert s["tasks"]["value"]["kind"] == "regression" and s["tasks"]["sign"]["main_metric"] == "accuracy"


@pytest.mark.parametrize("executor", [
    [], ["--parallel=2"], ["--executor=slurm", "--slurm_cluster=local", "--slurm_cpus=1", "--runs_per_job=2"]],
    ids=["in-process", "parallel", "submitit"])
def test_user_task_set_by_import_path(executor, user_folder, tmp_path, jax_cache):
    assert importlib.util.find_spec("my_tasks") is None  # not importable from the repo
    workdir = tmp_path / "wd"
    assert _launch(user_folder, workdir, jax_cache, *executor) == 0
    _check_done(str(workdir))


def test_cli_bad_configs_are_one_line(tmp_path):
    """The command line itself: an unknown nested override and a --workdir that is a file."""
    (tmp_path / "a_file").write_text("mine")
    exp = os.path.join(EXAMPLE, "my_experiment.py")
    for extra, words in [(["--config.run.optimizer.lr=0.1", f"--workdir={tmp_path / 'wd'}"],
                          ["--config.run.optimizer.lr", "did you mean optimizer.learning_rate"]),
                         ([f"--workdir={tmp_path / 'a_file'}"], ["a_file is a file"])]:
        p = subprocess.run([sys.executable, "-m", "launch.run", f"--config={exp}", "--compilation_cache=", *extra],
                           capture_output=True, text=True, cwd=tmp_path, env=env(), timeout=120)
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr
        assert all(w in lines[0] for w in words) and "Traceback" not in p.stderr, p.stderr
    assert sorted(os.listdir(tmp_path)) == ["a_file"] and (tmp_path / "a_file").read_text() == "mine"


# --------------------------------------------------------------------------- the resolver


def test_resolve_registry_names_and_import_paths():
    assert plugins.resolve(ARCHITECTURES, "hard", "architecture") is Hard
    assert plugins.resolve(ARCHITECTURES, "mtlx.architectures.hard:Hard", "architecture") is Hard
    assert plugins.resolve(WEIGHTINGS, "mtlx.weighting.loss_based:static", "weighting") is WEIGHTINGS["static"]
    assert plugins.default_label("my_tasks:make") == "make" and plugins.default_label("hard") == "hard"


@pytest.mark.parametrize("name,kind,words", [
    ("hardd", "architecture", ["architecture='hardd' is not valid; choose one of ['cgc', 'cross_stitch'", "did you mean 'hard'"]),
    ("no_such_module_xyz:make", "task_set", ["task_set.name='no_such_module_xyz:make'", "cannot import module",
                                             "No module named 'no_such_module_xyz'"]),
    ("mtlx.data.synthetic:mmoe_synthetc", "task_set", ["has no attribute 'mmoe_synthetc'",
                                                      "did you mean 'mmoe_synthetic'"]),
    ("mtlx.data.synthetic:mmoe_synthetic", "architecture", ["is a function", "not an mtlx.architectures.base.MTLModel"]),
    ("mtlx.tasks:LOSS", "weighting", ["weighting='mtlx.tasks:LOSS' is a str", "not a weighting constructor"]),
    (":make", "task_set", ["not an import path", "package.module:attribute"]),
])
def test_resolve_errors_are_one_line(name, kind, words):
    registry = {"architecture": ARCHITECTURES, "weighting": WEIGHTINGS, "task_set": {}}[kind]
    with pytest.raises(ValueError) as e:
        plugins.resolve(registry, name, kind)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_a_module_that_fails_to_import_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"cannot import module 'broken_mod' \(ModuleNotFoundError: No module named "
                                         r"'no_such_dependency_xyz'\)"):
        plugins.resolve({}, "broken_mod:make", "task_set")


def test_architecture_and_weighting_by_import_path_are_labelled_by_attribute(tmp_path):
    from mtlx import grid
    from tiny_grid import tiny

    c = tiny(archs=("mtlx.architectures.hard:Hard",))
    c.weightings = ({"name": "mtlx.weighting.loss_based:uncertainty", "options": {"form": "classification"}},)
    e, runs, chosen, _ = grid.prepare(c, str(tmp_path / "wd"))  # validated (built, nothing compiled)
    assert [r["run_id"].rsplit("-", 1)[0] for r in runs] == ["Hard-uncertainty-s0"]
    assert runs[0]["config"]["architecture"]["name"] == "mtlx.architectures.hard:Hard"
    c.weightings = ({"name": "mtlx.weighting.loss_based:uncertainty", "options": {"form": 1}},)
    with pytest.raises(grid.ConfigError, match=r"config.weightings\[0\].options.form=1 must be a str"):
        grid.prepare(c, str(tmp_path / "wd"))
    assert not (tmp_path / "wd").exists()
