"""mtlx.grid and mtlx.runner in-process: schema, validation once, expansion, stable ids, bad configs, run logic.

Nothing here compiles a train step: runs are validated with ``build_run`` (no
compilation) and the runner is driven with ``train_and_evaluate`` replaced by
a stub, so these tests take seconds. Real training is in tests/integration/.
"""

import copy
import importlib
import os
import shutil

import jax
import ml_collections
import pytest

from helpers import dense_set
from tiny_grid import tiny
from mtlx import grid, results, runner, tasks, train
from mtlx.architectures import BASELINE


# --------------------------------------------------------------------------- expansion and ids


def test_grid_expansion_counts_and_stable_ids():
    c = tiny("mmoe_synthetic", archs=("hard", "single_task", "mmoe"), seeds=(0, 1))
    c.weightings = ({"name": "equal"}, {"name": "static", "options": {"weights": (1.0, 2.0)}, "label": "w12"})
    c.sweep = grid.dotted({"task_set.options.correlation": [1.0, 0.5], "optimizer.learning_rate": [1e-3, 1e-2]})
    runs = grid.expand(c)
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
    c2.sweep = grid.dotted({"task_set.options.correlation": [1.0, 0.5], "optimizer.learning_rate": [1e-3, 1e-2]})
    assert [r["run_id"] for r in grid.expand(c2)] == ids
    c2.run.optimizer.mixing_learning_rate = 0.5
    changed = [r["run_id"] for r in grid.expand(c2)]
    assert all(a != b and a.rsplit("-", 1)[0] == b.rsplit("-", 1)[0] for a, b in zip(ids, changed))

    plain = grid.expand(tiny())
    c3 = tiny()
    c3.run.optimizer.learning_rate = 2e-3
    assert [r["run_id"] for r in plain] != [r["run_id"] for r in grid.expand(c3)]
    assert [r["run_id"].rsplit("-", 1)[0] for r in plain] == ["hard-equal-s0", "single_task-equal-s0"]


# results/census_income/hard-equal-group1-s1-edb14fa9/config.json, as committed: the committed run
# directories are found by their ids, so the id of this config must never change.
COMMITTED_ID = "hard-equal-group1-s1-edb14fa9"
COMMITTED_CONFIG = {
    "architecture": {"name": "hard", "options": {"split": -1}},
    "backbone": {"blocks": [{"features": 32, "kind": "dense"}], "head_hidden": [8]}, "batch_size": 256,
    "checkpoint_every": 2000, "eval_batch_size": 4096, "eval_every": 500, "jacobian_chunk": 0, "log_every": 100,
    "on_device_max_bytes": 1073741824,
    "optimizer": {"grad_clip": 0.0, "learning_rate": 0.001, "mixing_learning_rate": 0.0, "momentum": 0.9,
                  "name": "adam", "schedule": "constant", "warmup_steps": 0, "weight_decay": 0.0},
    "seed": 1, "steps": 4000,
    "task_set": {"name": "census_income", "options": {"group": 1, "manual_dir": "../shared/data", "seed": 0}},
    "weighting": {"name": "equal", "options": {}}}


def test_the_id_of_a_committed_run_is_unchanged(monkeypatch):
    assert grid.run_id("hard", "equal", 1, {"task_set.options.group": 1}, COMMITTED_CONFIG) == COMMITTED_ID
    # ... and the shipped experiment file still expands to that run, with exactly that config. Expanding
    # builds no task set, so the config's manual_dir ("../shared/data") is never read: the builder raises.
    import mtlx.data

    def no_data(*args, **kwargs):
        raise AssertionError("expanding the grid built a task set (it would read the data files)")
    monkeypatch.setattr(mtlx.data, "get_task_set", no_data)
    cfg = importlib.import_module("experiments.census_income").get_config()
    run = next(r for r in grid.expand(cfg) if r["run_id"] == COMMITTED_ID)
    assert run["config"] == COMMITTED_CONFIG


def test_select_is_recorded_and_not_part_of_any_run_id():
    c = tiny("mmoe_synthetic", archs=("hard",), seeds=(2, 3))
    runs = grid.expand(c)
    assert grid.experiment_record(grid.check_experiment(c), runs)["select"] == "final"  # the default
    c.select = "best_validation"
    assert grid.experiment_record(grid.check_experiment(c), runs)["select"] == "best_validation"
    assert [r["run_id"] for r in grid.expand(c)] == [r["run_id"] for r in runs]  # finished runs stay finished


def test_seed_paths_give_each_run_its_own_data_seed():
    c = tiny("mmoe_synthetic", archs=("hard",), seeds=(2, 3))
    plain = grid.expand(c)
    assert "seed" not in plain[0]["config"]["task_set"]["options"]
    c.seed_paths = ("task_set.options.seed",)
    runs = grid.expand(c)
    assert [r["config"]["task_set"]["options"]["seed"] for r in runs] == [2, 3] == [r["config"]["seed"] for r in runs]
    for r, p in zip(runs, plain):  # the data seed is part of the run config, hence of the id
        del r["config"]["task_set"]["options"]["seed"]
        assert r["config"] == p["config"] and r["run_id"] != p["run_id"]
    assert grid.experiment_record(grid.check_experiment(c), runs)["grid"]["seed_paths"] == ["task_set.options.seed"]
    c.seed_paths = ("task_set.option.seed",)
    with pytest.raises(grid.ConfigError, match=r"config.seed_paths\['task_set.option.seed'\]"):
        grid.expand(c)
    c.seed_paths = ("task_set.options.correlation",)
    c.sweep = grid.dotted({"task_set.options.correlation": [0.5]})
    with pytest.raises(grid.ConfigError, match="also swept"):
        grid.expand(c)


def test_architecture_paired_with_some_weightings_only():
    c = tiny(seeds=(0, 1))
    c.architectures = ({"name": "single_task", "weightings": ("equal",)}, {"name": "hard"})
    c.weightings = ({"name": "equal"}, {"name": "pcgrad"}, {"name": "uncertainty", "label": "kendall"})
    pairs = [(r["architecture"], r["weighting"]) for r in grid.expand(c)]
    assert pairs == [("single_task", "equal"), ("hard", "equal"), ("hard", "pcgrad"), ("hard", "kendall")] * 2
    c.architectures = ({"name": "single_task", "weightings": ("uncertainty",)},)  # a name, not the label
    with pytest.raises(grid.ConfigError, match=r"weightings \['uncertainty'\] are not in config.weightings"):
        grid.expand(c)
    c.architectures = ({"name": "hard"},)
    c.weightings = ({"name": "equal", "weightings": ("equal",)},)
    with pytest.raises(grid.ConfigError, match=r"unknown key\(s\) \['weightings'\]"):
        grid.expand(c)


def test_baseline_is_an_architecture_label():
    c = tiny(archs=("hard", BASELINE))
    assert grid.check_experiment(c)["baseline"] == BASELINE  # default: the registry's baseline entry
    c.architectures = ({"name": "hard"}, {"name": BASELINE, "label": "stl"}, {"name": BASELINE, "label": "stl2"})
    assert grid.check_experiment(c)["baseline"] == "stl"  # its label, the first such entry
    c.baseline = "hard"
    assert grid.check_experiment(c)["baseline"] == "hard"
    c.baseline = "stl3"
    with pytest.raises(grid.ConfigError) as e:
        grid.check_experiment(c)
    assert str(e.value) == ("config.baseline='stl3' is not an architecture label of the grid; "
                            "choose one of ['hard', 'stl', 'stl2']")
    c.baseline, c.architectures = "", ({"name": "hard"},)
    assert grid.check_experiment(c)["baseline"] is None  # no baseline in the grid
    del c["baseline"]  # an experiment file from before the field existed
    assert grid.check_experiment(c)["baseline"] is None


def test_the_config_is_checked_once_without_a_configdict_per_override(monkeypatch):
    """Overrides and sweep values are checked against the schema dict: no ConfigDict is built while checking,
    and the schema check runs once per experiment, not per run or per override."""
    c = tiny(archs=("hard", BASELINE, "mmoe"), seeds=(0, 1))
    c.architectures[0]["overrides"] = {"backbone.blocks": [{"kind": "dense", "features": 8}], "steps": 10}
    c.sweep = grid.dotted({"optimizer.learning_rate": [1e-3, 1e-2, 1], "task_set.options.dim": [4, 8]})
    calls = {"configdict": 0, "run_config": 0}
    init, check = ml_collections.ConfigDict.__init__, grid.check_run_config

    def counting_init(self, *a, **k):
        calls["configdict"] += 1
        init(self, *a, **k)

    def counting_check(cfg):
        calls["run_config"] += 1
        check(cfg)

    monkeypatch.setattr(ml_collections.ConfigDict, "__init__", counting_init)
    monkeypatch.setattr(grid, "check_run_config", counting_check)
    runs = grid.expand(grid.check_experiment(c))
    assert len(runs) == 3 * 2 * 3 * 2 and calls == {"configdict": 0, "run_config": 1}
    assert all(isinstance(r["config"], dict) for r in runs)


def test_override_values_are_checked_against_the_schema():
    for path, value, needle in [
        ("optimizer.learnin_rate", 0.1, "optimizer.learnin_rate (did you mean optimizer.learning_rate?)"),
        ("steps", "10", "config field steps='10' must be a int"),
        ("steps", 0, "config field steps=0 must be >= 1"),
        ("optimizer.learning_rate", True, "must be a int or float"),
        ("backbone.blocks", 16, "backbone.blocks=16 must be a list or tuple"),
        ("optimizer", {"name": "sgd"}, "missing config field(s): optimizer.grad_clip"),
        ("seed", 3, "'seed' is set by the grid"),
        ("steps.x", 1, "unknown config field(s): steps.x"),
    ]:
        with pytest.raises(ValueError) as e:
            grid.check_override(path, value)
        assert needle in str(e.value), (path, str(e.value))
    grid.check_override("optimizer.learning_rate", 1)  # an int where a float is expected is fine
    grid.check_override("task_set.options.anything", object())  # options are free-form: the registry checks them
    grid.check_override("backbone", copy.deepcopy(grid.schema()["backbone"]))


def test_the_shipped_experiments_validate(tmp_path):
    for name in ("quickstart", "mmoe_synthetic"):
        for arg in (None, "smoke"):
            cfg = importlib.import_module(f"experiments.{name}").get_config(arg)
            e, runs, chosen, _ = grid.prepare(cfg, str(tmp_path / name))
            assert runs and len(chosen) == len(runs) and e["experiment"] == name and e["baseline"] == BASELINE
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
    "mistyped override": (_set("weightings", ({"name": "equal", "overrides": {"backbone.head_hidden": 8}},)),
                          "backbone.head_hidden=8 must be a list or tuple"),
    "misspelled experiment field": (_set("seed", (0,)), "config.seed (did you mean 'seeds'?)"),
    "no architectures": (_set("architectures", ()), "config.architectures is empty"),
    "no weightings": (_set("weightings", ()), "config.weightings is empty"),
    "no seeds": (_set("seeds", ()), "config.seeds is empty"),
    "bad baseline": (_set("baseline", "stl"), "config.baseline='stl' is not an architecture label"),
    "bad select": (_set("select", "best"),
                   "config.select='best' is not valid; choose one of ['best_validation', 'final']"),
    "bad architecture option": (_set("architectures", ({"name": "hard", "options": {"splitt": 1}},)), "splitt"),
    "misspelled sweep path": (_set("sweep", grid.dotted({"optimizer.learnin_rate": [0.1]})),
                              "optimizer.learnin_rate (did you mean optimizer.learning_rate?)"),
    "misspelled override path": (_set("architectures", ({"name": "hard", "overrides": {"stepz": 3}},)),
                                 "'hard' overrides['stepz']: unknown config field(s): stepz (did you mean steps?)"),
    "misspelled task-set option": (_set("run.task_set.options.num_taskz", 3), "num_taskz"),
    # Only the LAST run of the grid is bad: every expanded run is validated before any training.
    "bad last sweep value": (_set("sweep", grid.dotted({"task_set.options.shared_fraction": [0.5, 1.5]})),
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
    with pytest.raises(grid.ConfigError) as err:
        runner.launch(c, workdir, show_progress=False)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg, msg
    assert not os.path.exists(workdir) and not calls


def test_workdir_of_another_experiment_is_refused(tmp_path):
    workdir = str(tmp_path / "wd")
    results.write_experiment(workdir, {"name": "someone_else"})
    with pytest.raises(grid.ConfigError, match="holds runs of experiment 'someone_else', not 'tiny'"):
        runner.launch(tiny(), workdir, show_progress=False)
    assert os.listdir(workdir) == ["experiment.json"]


def _no_compile(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(jax, "jit", refuse)


def _one_run(edit) -> list[dict]:
    """One run of a tiny grid whose run config ``edit`` changed after checking (as a bad sweep value would)."""
    c = tiny(archs=("hard",))
    c.run.backbone.blocks = [{"kind": "dense", "features": 16}] * 2
    run = grid.expand(c)[0]
    edit(run["config"])
    return [run]


@pytest.mark.parametrize("field,value,needle", [
    ("architecture.name", "hardd", "architecture='hardd' is not valid; choose one of"),
    ("architecture.options", {"split": 7}, "split=7 is impossible for a backbone of 2 blocks; choose 0..2"),
    ("architecture.options", {"depth": 1}, "unknown option(s) ['depth']"),
    ("weighting.name", "mgdaa", "weighting='mgdaa' is not valid; choose one of"),
    ("task_set.name", "nope", "task_set.name='nope' is not valid; choose one of"),
    ("optimizer.name", "adamm", "optimizer.name='adamm' is not valid; choose one of"),
])
def test_bad_run_config_is_refused_before_compiling(monkeypatch, field, value, needle):
    section, key = field.split(".")
    runs = _one_run(lambda cfg: cfg[section].__setitem__(key, value))
    _no_compile(monkeypatch)
    with pytest.raises(grid.ConfigError) as e:
        grid.validate(runs)
    assert needle in str(e.value) and str(e.value).startswith(f"run {runs[0]['run_id']}: ")


def test_misspelled_field_and_impossible_rank(monkeypatch):
    _no_compile(monkeypatch)
    cfg = grid.run_config()
    cfg.stepps = 10
    with pytest.raises(ValueError, match=r"unknown config field\(s\): stepps \(did you mean steps\?\)"):
        grid.check_run_config(cfg)
    with pytest.raises(grid.ConfigError, match="rank"):
        grid.validate(_one_run(lambda c: c.update(architecture={"name": "tensor_factorised", "options": {"rank": 0}})))
    with pytest.raises(grid.ConfigError, match=r"method.*laf.*tt.*tucker|method.*'laf'"):
        grid.validate(_one_run(lambda c: c.update(architecture={"name": "tensor_factorised",
                                                                "options": {"method": "cp"}})))


# --------------------------------------------------------------------------- the runner, training stubbed


def test_tasks_info_holds_kind_role_loss_and_every_metric_direction():
    info = runner.tasks_info(dense_set())
    assert info == {  # by the definitions: accuracy/auc higher is better, mse and the eval loss lower
        "cls": {"index": 0, "kind": "classification", "role": tasks.MAIN, "loss": "softmax_cross_entropy",
                "main_metric": "accuracy", "higher_is_better": {"accuracy": True, tasks.LOSS: False}},
        "bin": {"index": 1, "kind": "binary", "role": tasks.MAIN, "loss": "logistic", "main_metric": "auc",
                "higher_is_better": {"auc": True, "accuracy": True, tasks.LOSS: False}},
        "reg": {"index": 2, "kind": "regression", "role": tasks.MAIN, "loss": "squared_error", "main_metric": "mse",
                "higher_is_better": {"mse": False, tasks.LOSS: False}}}


def _stub_train(monkeypatch, fail=()):
    """train_and_evaluate replaced: a done summary, or an exception for run configs whose seed is in ``fail``."""
    calls = []

    def fake(cfg, workdir=None, task_set=None, progress=None, **kw):
        calls.append((cfg, workdir))
        assert isinstance(cfg, ml_collections.ConfigDict) and task_set is not None
        if cfg.seed in fail:
            raise RuntimeError("boom\nsecond line")
        return {"status": "done", "steps": cfg.steps, "wall_time_s": 0.5,
                "metrics": {t.name: {t.main_metric: 0.5} for t in task_set.tasks}}
    monkeypatch.setattr(train, "train_and_evaluate", fake)
    return calls


def test_launch_writes_the_run_directory_schema_and_skips_finished_runs(tmp_path, monkeypatch):
    calls = _stub_train(monkeypatch, fail=(1,))
    workdir = str(tmp_path / "wd")
    out = runner.launch(tiny(seeds=(0, 1)), workdir, show_progress=False)
    assert len(calls) == 4 and len(out["summaries"]) == 4
    exp = results.read_experiment(workdir)
    assert set(exp) == {"name", "experiment", "smoke", "paper", "select", "grid", "runs", "run"}
    assert set(exp["grid"]) == {"architectures", "weightings", "seeds", "seed_paths", "sweep", "num_runs", "baseline"}
    assert exp["grid"]["baseline"] == BASELINE and exp["grid"]["num_runs"] == 4 and exp["name"] == "tiny"
    assert [r["run_id"] for r in exp["runs"]] == [r["run_id"] for r in out["runs"]]
    for r in out["runs"]:
        run_dir = results.run_path(workdir, r["run_id"])
        s = results.read_summary(run_dir)
        assert results.read_config(run_dir) == r["config"] == s["config"]
        assert (s["run_id"], s["architecture"], s["seed"], s["weighting"]) == (r["run_id"], r["architecture"],
                                                                               r["seed"], "equal")
        assert s["tasks"]["task0"]["kind"] == "classification"
        if r["seed"] == 1:  # the crash is recorded (message's first line, traceback in error.txt)
            assert s["status"] == "failed" and s["failure"] == {"step": None, "task": None,
                                                                "message": "RuntimeError: boom"}
            assert "Traceback" in open(os.path.join(run_dir, results.ERROR)).read()
        else:
            assert s["status"] == "done" and not os.path.exists(os.path.join(run_dir, results.ERROR))
    runner.launch(tiny(seeds=(0, 1)), workdir, show_progress=False)
    assert len(calls) == 4  # finished (done and failed) runs are skipped
    runner.launch(tiny(seeds=(0, 1)), workdir, show_progress=False, rerun_failed=True)
    assert len(calls) == 6  # the two failed ones, from scratch
    assert "1 done" not in runner.summarise(out) and runner.summarise(out).startswith("2 done, 2 failed, 4 in the grid")


def test_a_relaunch_keeps_the_started_runs_of_earlier_launches_in_experiment_json(tmp_path, monkeypatch):
    _stub_train(monkeypatch)
    workdir = str(tmp_path / "wd")
    first = tiny(seeds=(0, 1))  # stage 1: hard and single_task, seeds 0-1, n_train 256
    first.sweep = grid.dotted({"task_set.options.n_train": [256]})
    out1 = runner.launch(first, workdir, show_progress=False)
    never = out1["runs"][-1]["run_id"]  # as if killed before it started: no directory
    shutil.rmtree(results.run_path(workdir, never))
    second = tiny(archs=("hard",), seeds=(2,))  # stage 2: another cell and seed of the same experiment
    second.sweep = grid.dotted({"task_set.options.n_train": [128]})
    out2 = runner.launch(second, workdir, show_progress=False)
    exp = results.read_experiment(workdir)
    ids = [r["run_id"] for r in exp["runs"]]
    assert ids[-1] == out2["runs"][0]["run_id"] and len(out2["runs"]) == 1  # earlier launches first
    assert set(ids[:-1]) == {r["run_id"] for r in out1["runs"]} - {never} and exp["grid"]["num_runs"] == 4
    assert exp["grid"]["seeds"] == [0, 1, 2] and exp["grid"]["sweep"] == {"task_set.options.n_train": [256, 128]}
    assert [a["label"] for a in exp["grid"]["architectures"]] == ["hard", BASELINE]
    assert exp["run"]["steps"] == 20 and not [r for r in results.load_runs(workdir) if r["status"] != "done"]
    other = tiny()  # another experiment's record is never merged in
    other.experiment = "other"
    assert results.merge_experiment(exp, grid.experiment_record(grid.check_experiment(other), grid.expand(other)),
                                    workdir)["runs"] == [{k: r[k] for k in ("run_id", "architecture", "weighting",
                                                                            "seed", "sweep")} for r in grid.expand(other)]


def test_dry_run_writes_nothing(tmp_path, monkeypatch):
    calls = _stub_train(monkeypatch)
    lines = []
    out = runner.launch(tiny(), str(tmp_path / "wd"), dry_run=True, log=lines.append)
    assert not calls and not os.path.exists(tmp_path / "wd") and out["summaries"] == {}
    assert lines[0].endswith(f"2 runs in the grid, 2 selected, 2 to run (0 already finished) -> {tmp_path / 'wd'}")
    assert [ln.strip() for ln in lines[1:]] == [r["run_id"] for r in out["runs"]]


def test_the_old_import_paths_still_work():
    """mtlx.experiment and mtlx.config are deprecated aliases of mtlx.grid / mtlx.runner for this release."""
    from mtlx import config, experiment

    assert (experiment.experiment_config, experiment.dotted, experiment.smoke) == (
        grid.experiment_config, grid.dotted, grid.smoke)
    assert (experiment.launch, experiment.run_one, experiment.ConfigError) == (
        runner.launch, runner.run_one, grid.ConfigError)
    assert (config.run_config, config.check_run_config) == (grid.run_config, grid.check_run_config)
    assert "deprecated" in experiment.__doc__.lower() and "deprecated" in config.__doc__.lower()


def test_nash_mtl_max_norm_zero_disables_clipping_and_is_accepted():
    """``max_norm=0`` is documented as "no clipping": the option check must accept it and refuse negatives."""
    c = tiny()
    c.weightings = ({"name": "nash_mtl", "options": {"max_norm": 0.0}},)
    grid.check_experiment(c)
    c.weightings = ({"name": "nash_mtl", "options": {"max_norm": -1.0}},)
    with pytest.raises(grid.ConfigError, match=r"max_norm=-1.0"):
        grid.check_experiment(c)


def test_an_entry_with_its_own_seeds_runs_only_those_and_they_must_be_among_the_experiment_s():
    from tiny_grid import tiny

    c = tiny(seeds=(0, 1, 2, 3, 4))
    c.weightings = ({"name": "equal"}, {"name": "mgda", "seeds": (0, 1, 2)})
    runs = grid.expand(c)
    by = {}
    for r in runs:
        by.setdefault((r["architecture"], r["weighting"]), []).append(r["seed"])
    assert by[("hard", "equal")] == [0, 1, 2, 3, 4] and by[("hard", "mgda")] == [0, 1, 2]
    c.weightings = ({"name": "equal"}, {"name": "mgda", "seeds": (0, 7)})
    with pytest.raises(grid.ConfigError, match=r"config.weightings \(mgda\): seeds \[7\] are not in config.seeds"):
        grid.check_experiment(c)


def test_the_training_section_is_optional_and_checked():
    """mtlx.schedules' ``training`` section: absent by default (no run config or id changes), checked
    when given, in a run config and as an override (whole or one field)."""
    from mtlx.schema import check_override, check_run_config

    cfg = grid.run_config().to_dict()
    assert "training" not in cfg
    check_run_config({**cfg, "training": {"schedule": "alternating", "sampling": "proportional"}})
    with pytest.raises(ValueError, match=r"training.schedule='x' is not valid"):
        check_run_config({**cfg, "training": {"schedule": "x"}})
    with pytest.raises(ValueError, match=r"training.relatedness_every=30 must be a multiple of log_every=50"):
        check_run_config({**cfg, "training": {"relatedness_every": 30}})
    check_override("training", {"schedule": "alternating"})
    with pytest.raises(ValueError, match=r"training.sampling='x'"):
        check_override("training.sampling", "x")
