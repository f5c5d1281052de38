"""Bad configs through launch.run's own entry (flags parsed in-process): exit status 2, one line
``error: ...`` naming the field path and the bad value, no traceback, nothing written, nothing compiled.

Each case edits the tiny grid of tests/tiny_grid.py; the experiment file (written once) asks this module
for the edited config by case name (``--config=exp.py:<case>``). ``jax.jit`` raises while a case runs:
validation happens before anything is compiled.
"""

import os
import sys

import jax
import pytest
from absl import flags

from launch import run as launch_run
from mtlx.architectures import BASELINE
from mtlx.grid import dotted
from tiny_grid import tiny


def _set(path, value):
    def edit(c):
        node, keys = c, path.split(".")
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return edit


def _arch(name, **options):
    return _set("architectures", ({"name": name, "options": options},))


def _weighting(name, **options):
    return _set("weightings", ({"name": name, "options": options},))


def _both(*edits):
    def edit(c):
        for e in edits:
            e(c)
    return edit


def _add_field(c):
    c.run.optimizer.lr = 0.1  # ConfigDict lets a file add a field the schema lacks


def _blocks(*blocks):
    return _set("run.backbone.blocks", list(blocks))


def _options(**options):
    """The task set's options replaced (ConfigDict refuses a value of another type on an existing field)."""
    return _set("run.task_set.options", {"n_train": 256, "n_validation": 64, "n_test": 64, "dim": 8, **options})


D16 = {"kind": "dense", "features": 16}

CASES = {  # name: (edit of the tiny grid, words the one line must hold: the field path and the bad value)
    "unknown nested field": (_add_field, ["config.run", "optimizer.lr", "did you mean optimizer.learning_rate"]),
    "arch option of the wrong type": (_arch("hard", split="one"),
                                      ["config.architectures[0].options.split='one'", "an int"]),
    "arch option of the wrong type (str)": (_arch("cross_stitch", units=1), ["architectures[0].options.units=1", "str"]),
    "arch option out of range": (_arch("hard", split=7), ["architecture.options.split=7", "choose 0..1"]),
    "arch block index out of range": (_arch("cross_stitch", stitch_after=[5]), ["options.stitch_after=[5]", "0..0"]),
    "arch option nan": (_arch("sluice", orthogonality=float("nan")), ["architectures[0].options.orthogonality=nan"]),
    "arch option typo": (_arch("hard", splitt=1), ["config.architectures[0].options", "'splitt'", "did you mean 'split'"]),
    "zero experts": (_arch("mmoe", num_experts=0), ["architectures[0].options.num_experts=0", ">= 1"]),
    "subspaces not dividing widths": (_arch("sluice", subspaces=3), ["architecture.options.subspaces=3", "divide"]),
    "rank out of range": (_arch("tensor_factorised", rank=[100, 100, 100]), ["rank=(100, 100, 100)", "out of range"]),
    "rank zero": (_arch("tensor_factorised", rank=0), ["rank=0", ">= 1"]),
    "rank name": (_arch("tensor_factorised", rank="autoo"), ["rank='autoo'", "'auto'"]),
    "rel_error out of range": (_arch("tensor_factorised", rel_error=1.5), ["options.rel_error=1.5", "[0, 1)"]),
    "unknown architecture": (_arch("hardd"), ["config.architectures[0].name", "'hardd'", "did you mean 'hard'"]),
    "label with spaces": (_set("architectures", ({"name": "hard", "label": "my hard"},)), ["label 'my hard'"]),
    "zero features": (_blocks({"kind": "dense", "features": 0}), ["backbone.blocks[0].features=0", ">= 1"]),
    "block without features": (_blocks(D16, {"kind": "dense"}), ["backbone.blocks[1].features is missing"]),
    "block of an unknown kind": (_blocks({"kind": "dens", "features": 4}), ["backbone.blocks[0].kind='dens'", "dense"]),
    "block activation": (_blocks({"kind": "dense", "features": 4, "activation": "relu6"}),
                         ["backbone.blocks[0].activation='relu6'", "relu"]),
    "block features of the wrong type": (_blocks({"kind": "dense", "features": 4.5}), ["blocks[0].features=4.5"]),
    "no blocks": (_blocks(), ["backbone.blocks is empty"]),
    "conv on dense inputs": (_blocks({"kind": "conv", "features": 4}), ["conv", "input_kind='dense'"]),
    "negative head width": (_set("run.backbone.head_hidden", [-4]), ["backbone.head_hidden[0]=-4", ">= 1"]),
    "n_train zero": (_set("run.task_set.options.n_train", 0), ["config.run.task_set.options.n_train=0", ">= 1"]),
    "task-set option of the wrong type": (_options(dim="8"), ["task_set.options.dim='8'", "int"]),
    "task-set option bool for int": (_options(num_tasks=True), ["options.num_tasks=True", "int"]),
    "task-set option out of range": (_set("run.task_set.options.label_noise", 2.0), ["options.label_noise=2.0"]),
    "task-set option typo": (_set("run.task_set.options.num_taskz", 3), ["num_taskz", "did you mean 'num_tasks'"]),
    "unknown task set": (_set("run.task_set.name", "nope"), ["task_set.name='nope'", "choose one of"]),
    "mgda_ub, nothing shared": (_both(_arch("hard", split=0), _weighting("mgda_ub")),
                                ["weighting.name='mgda_ub'", "shares no block"]),
    "mgda_ub on single_task": (_both(_arch(BASELINE), _weighting("mgda_ub")), ["'mgda_ub'", "single_task"]),
    "lr nan": (_set("run.optimizer.learning_rate", float("nan")), ["optimizer.learning_rate=nan", "finite"]),
    "lr inf": (_set("run.optimizer.learning_rate", float("inf")), ["optimizer.learning_rate=inf", "finite"]),
    "lr negative": (_set("run.optimizer.learning_rate", -0.1), ["optimizer.learning_rate=-0.1", "> 0"]),
    "mixing lr negative": (_set("run.optimizer.mixing_learning_rate", -0.1), ["mixing_learning_rate=-0.1", ">= 0"]),
    "momentum above 1": (_set("run.optimizer.momentum", 1.5), ["optimizer.momentum=1.5", "[0, 1]"]),
    "weight decay nan": (_set("run.optimizer.weight_decay", float("nan")), ["optimizer.weight_decay=nan"]),
    "grad_clip negative": (_set("run.optimizer.grad_clip", -1.0), ["optimizer.grad_clip=-1.0", ">= 0"]),
    "warmup beyond steps": (_set("run.optimizer.warmup_steps", 30), ["optimizer.warmup_steps=30", "steps=20"]),
    "unknown optimizer": (_set("run.optimizer.name", "adamm"), ["optimizer.name='adamm'", "did you mean 'adam'"]),
    "unknown schedule": (_set("run.optimizer.schedule", "cosin"), ["optimizer.schedule='cosin'", "'cosine'"]),
    "static weights nan": (_weighting("static", weights=[float("nan"), 1.0]),
                           ["config.weightings[0].options.weights=[nan, 1.0]", "finite"]),
    "static weights of the wrong length": (_weighting("static", weights=[1.0, 1.0, 1.0]),
                                           ["weighting.options.weights=[1.0, 1.0, 1.0]", "3 entries", "2 tasks"]),
    "weighting option typo": (_weighting("dwa", temprature=1.0),
                              ["config.weightings[0].options", "'temprature'", "'temperature'", "valid options"]),
    "weighting option of the wrong type": (_weighting("dwa", period="5"), ["weightings[0].options.period='5'", "int"]),
    "weighting option out of range": (_weighting("cagrad", c=-1.0), ["weightings[0].options.c=-1.0", ">= 0"]),
    "unknown weighting": (_weighting("equall"), ["config.weightings[0].name", "'equall'"]),
    "steps bool": (_set("run.steps", True), ["steps=True", "int"]),
    "batch_size zero": (_set("run.batch_size", 0), ["batch_size=0", ">= 1"]),
    "jacobian_chunk negative": (_set("run.jacobian_chunk", -1), ["jacobian_chunk=-1", ">= 0"]),
    "negative seed": (_set("seeds", (-1,)), ["config.seeds=(-1,)", ">= 0"]),
    "empty sweep list": (_set("sweep", dotted({"optimizer.learning_rate": []})), ["config.sweep['optimizer.learning_rate']"]),
    "sweep over an unknown path": (_set("sweep", dotted({"optimizer.lr": [0.1]})), ["optimizer.lr", "learning_rate"]),
    "bad sweep value": (_set("sweep", dotted({"optimizer.learning_rate": [1e-3, -1.0]})), ["learning_rate=-1.0", "> 0"]),
    "bad override": (_set("architectures", ({"name": "hard", "overrides": {"steps": 0}},)),
                     ["overrides['steps']", "steps=0"]),
    "experiment name with spaces": (_set("experiment", "my exp"), ["config.experiment='my exp'"]),
    "plug-in module missing": (_arch("no_such_module_xyz:Model"), ["architectures[0].name", "'no_such_module_xyz'"]),
    "plug-in attribute missing": (_set("run.task_set.name", "mtlx.data.synthetic:nope"), ["has no attribute 'nope'"]),
    "plug-in of the wrong kind": (_arch("mtlx.data.synthetic:mmoe_synthetic"), ["is a function", "MTLModel subclass"]),
}


def config_for(case):
    """The tiny grid with ``case``'s edit: what the experiment file returns for ``--config=exp.py:<case>``."""
    c = tiny(archs=("hard",))
    if case != "fine":
        CASES[case][0](c)
    return c


@pytest.fixture(scope="module")
def experiment_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("exp") / "bad_exp.py"
    path.write_text("from test_bad_configs import config_for\n\n\ndef get_config(arg=None):\n"
                    "    return config_for(arg)\n")
    return str(path)


def launch_in_process(argv, monkeypatch):
    """launch.run's flag parsing and main, in this process; returns the exit status."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # launch.run prepends the experiment's folder
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    flags.FLAGS.unparse_flags()
    try:
        launch_run.main(launch_run._parse_flags(["launch.run", *argv]))
    except SystemExit as e:
        return e.code
    return 0


def _no_compile(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(jax, "jit", refuse)


def _assert_one_line(err: str, words):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "compiled" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_line_exit_2_nothing_written(case, experiment_file, tmp_path, monkeypatch, capsys):
    _no_compile(monkeypatch)
    workdir = tmp_path / "wd"
    code = launch_in_process([f"--config={experiment_file}:{case}", f"--workdir={workdir}", "--compilation_cache=",
                              "--noprogress"], monkeypatch)
    assert code == 2
    _assert_one_line(capsys.readouterr().err, CASES[case][1])
    assert not workdir.exists()


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_workdir_that_is_a_file(where, experiment_file, tmp_path, monkeypatch, capsys):
    _no_compile(monkeypatch)
    f = tmp_path / "results.txt"
    f.write_text("mine")
    workdir = f if where == "file" else f / "wd"
    code = launch_in_process([f"--config={experiment_file}:fine", f"--workdir={workdir}", "--compilation_cache="],
                             monkeypatch)
    assert code == 2
    _assert_one_line(capsys.readouterr().err, [f"--workdir={workdir}", "is a file"])
    assert f.read_text() == "mine"
