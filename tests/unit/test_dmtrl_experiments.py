"""The DMTRL and cross-stitch ablation experiments (experiments/dmtrl_one_vs_all.py,
dmtrl_omniglot.py, cross_stitch_ablation.py): their grids, the task-set options they use
(Omniglot alphabets as tasks and the paper's train/test re-split, the one-vs-all training
fraction), and tensor_factorised's ``init_from_run`` (Yang & Hospedales 2017, Sec. 4: the factors
start from a decomposition of the trained single-task kernels).

Data: tiny files written by tests/fixtures_tfds.py into tmp dirs, never ../shared/data.
"""

import collections
import fnmatch
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds

import fixtures_tfds as fx
from experiments import cross_stitch_ablation, dmtrl_common, dmtrl_omniglot, dmtrl_one_vs_all
from mtlx import grid, results
from mtlx.architectures import build_model
from mtlx.architectures.tensor_factorised import stl_params_of_run
from mtlx.data import get_task_set, tfds_sets

tfds.disable_progress_bar()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds_data"))


# --------------------------------------------------------------------------- Omniglot alphabets as tasks

ALPHABETS_1 = {"Alpha_(one)": 3, "Beta": 2}
ALPHABETS_2 = {"Gamma": 4}
DRAWINGS = 10


@pytest.fixture(scope="module")
def omniglot_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("omni_sources") / "omniglot"
    root.mkdir()
    fx.write_omniglot_zip(root / "images_background_small1.zip", ALPHABETS_1, drawings=DRAWINGS, seed=0)
    fx.write_omniglot_zip(root / "images_background_small2.zip", ALPHABETS_2, drawings=DRAWINGS, seed=1)
    return str(root.parent)


def _alphabet_and_character(split, names):
    """Per example: the index of the one alphabet it is labelled for, and its character there."""
    w = np.stack([split["weights"][t] for t in names], 1)
    assert (w.sum(1) == 1).all()
    a = w.argmax(1)
    return a, np.stack([split["targets"][t] for t in names], 1)[np.arange(len(a)), a]


def test_omniglot_alphabet_tasks_have_their_alphabets_character_counts(omniglot_root, data_dir):
    ts = tfds_sets.omniglot_alphabets(manual_dir=omniglot_root, data_dir=data_dir, subset="small")
    assert ts.task_names == ("alpha_one", "beta", "gamma")
    assert [t.num_outputs for t in ts.tasks] == [3, 2, 4]  # one class per character of the alphabet
    for split in ts.splits.values():
        a, c = _alphabet_and_character(split, ts.task_names)
        assert all(c[a == k].max() < n for k, n in enumerate([3, 2, 4]))


@pytest.mark.parametrize("test_fraction", [0.1, 0.2])
def test_omniglot_resplit_puts_the_fraction_of_each_characters_drawings_in_test(omniglot_root, data_dir, test_fraction):
    ts = tfds_sets.omniglot_alphabets(manual_dir=omniglot_root, data_dir=data_dir, subset="small",
                                      test_fraction=test_fraction, split_seed=3)
    assert set(ts.splits) == {"train", "test"}  # the paper's protocol has no validation split
    n_test = round(test_fraction * DRAWINGS)
    for split, want in (("test", n_test), ("train", DRAWINGS - n_test)):
        a, c = _alphabet_and_character(ts.splits[split], ts.task_names)
        counts = collections.Counter(zip(a.tolist(), c.tolist()))
        assert len(counts) == 3 + 2 + 4 and set(counts.values()) == {want}
    other = tfds_sets.omniglot_alphabets(manual_dir=omniglot_root, data_dir=data_dir, subset="small",
                                         test_fraction=test_fraction, split_seed=4)
    assert not np.array_equal(other.splits["test"]["inputs"], ts.splits["test"]["inputs"])  # each seed its own draw
    with pytest.raises(ValueError, match="test_fraction"):
        tfds_sets.omniglot_alphabets(manual_dir=omniglot_root, data_dir=data_dir, subset="small", test_fraction=1.0)


def test_one_vs_all_train_fraction_keeps_a_seeded_subset_of_the_training_split(tmp_path, data_dir):
    fx.write_mnist_like(tmp_path / "mnist", n_train=40, n_test=20)
    full = tfds_sets.one_vs_all(manual_dir=str(tmp_path), data_dir=data_dir)
    n = len(full.splits["train"]["inputs"])
    half = [tfds_sets.one_vs_all(manual_dir=str(tmp_path), data_dir=data_dir, train_fraction=0.5, train_seed=s)
            for s in (0, 1)]
    rows = {tuple(x.ravel()) for x in full.splits["train"]["inputs"]}
    for ts in half:
        x = ts.splits["train"]["inputs"]
        assert len(x) == round(0.5 * n) and all(tuple(r.ravel()) in rows for r in x)
        assert np.array_equal(ts.splits["test"]["inputs"], full.splits["test"]["inputs"])
    assert not np.array_equal(half[0].splits["train"]["inputs"], half[1].splits["train"]["inputs"])
    with pytest.raises(ValueError, match="train_fraction"):
        tfds_sets.one_vs_all(manual_dir=str(tmp_path), data_dir=data_dir, train_fraction=0.0)


# --------------------------------------------------------------------------- the experiment grids


def _runs(module, arg=None):
    return grid.expand(grid.check_experiment(module.get_config(arg)))


def _count(runs, key):
    return collections.Counter(r[key] for r in runs)


def test_one_vs_all_grid_is_four_methods_by_two_data_sets_by_ten_fractions_by_three_seeds():
    runs = _runs(dmtrl_one_vs_all)
    assert len(runs) == 4 * 2 * 10 * 3
    assert set(_count(runs, "architecture").values()) == {60}
    assert all(r["config"]["task_set"]["options"]["train_seed"] == r["seed"] for r in runs)  # STL and DMTRL share draws
    assert {r["config"]["task_set"]["options"]["base"] for r in runs} == {"mnist", "fashion_mnist"}
    assert all(r["config"]["backbone"]["blocks"][0] == {"kind": "conv", "features": 32, "kernel": 5, "pool": 2}
               for r in runs)
    assert [r for r in runs if r["architecture"] == "ud_mtl"][0]["config"]["architecture"]["options"] == {"split": -1}


def test_factorised_stage_points_each_method_at_the_stl_run_of_its_cell_and_seed():
    stage1 = _runs(dmtrl_one_vs_all)
    stl = next(r for r in stage1 if r["architecture"] == "stl" and r["seed"] == 1
               and r["sweep"] == {"task_set.options.base": "fashion_mnist", "task_set.options.train_fraction": 0.3})
    runs = _runs(dmtrl_one_vs_all, "factorised,base=fashion_mnist,train_fraction=0.3,seed=1")
    assert sorted(_count(runs, "architecture")) == ["laf", "stl", "tt", "tucker"] and len(runs) == 4
    assert next(r for r in runs if r["architecture"] == "stl")["run_id"] == stl["run_id"]  # the same run: not re-trained
    for r in runs:
        opts = r["config"]["architecture"]["options"]
        if r["architecture"] != "stl":
            assert opts == {"method": r["architecture"], "rank": "auto", "rel_error": 0.1,
                            "init_from_run": os.path.join("results", "dmtrl_one_vs_all",
                                                          stl["run_id"].rsplit("-", 1)[0] + "-*")}
            assert fnmatch.fnmatchcase(stl["run_id"], os.path.basename(opts["init_from_run"]))
    with pytest.raises(ValueError, match="seed"):
        dmtrl_one_vs_all.get_config("factorised,base=mnist,train_fraction=0.3")
    with pytest.raises(ValueError, match="missing"):
        dmtrl_one_vs_all.get_config("factorised,base=mnist,seed=0")
    with pytest.raises(ValueError, match="unknown argument"):
        dmtrl_one_vs_all.get_config("fashion")


def test_omniglot_grid_and_paper_rows():
    runs = _runs(dmtrl_omniglot)
    assert len(runs) == 3 * 2 * 3 and sorted(_count(runs, "architecture")) == ["stl", "ud_mtl", "ud_mtl_8k"]
    assert all(r["config"]["task_set"]["options"]["split_seed"] == r["seed"] for r in runs)
    ud, ud8k = (next(r for r in runs if r["architecture"] == a) for a in ("ud_mtl", "ud_mtl_8k"))
    assert ud["config"]["architecture"]["options"] == {"split": 3}  # the paper's N = 3 of the 4 shareable layers
    # the budget control: the same model, four times the steps, nothing else changed
    assert ud8k["config"]["steps"] == 4 * ud["config"]["steps"] == 8000
    assert {k: v for k, v in ud8k["config"].items() if k not in ("steps", "eval_every", "checkpoint_every")} == \
        {k: v for k, v in ud["config"].items() if k not in ("steps", "eval_every", "checkpoint_every")}
    paper = dmtrl_omniglot.get_config().paper.rows
    assert len(paper) == 10 and paper["tt [test_fraction=0.1]"]["mean error %"] == 28.78
    assert len(_runs(dmtrl_omniglot, "factorised,test_fraction=0.2,seed=2")) == 4


def test_cross_stitch_ablation_rows_set_the_init_and_the_units_learning_rate():
    runs = _runs(cross_stitch_ablation)
    assert len(runs) == 11 * 3
    by = {r["architecture"]: r["config"] for r in runs if r["seed"] == 0}
    for a in (0.1, 0.5, 0.7, 0.9):
        cfg = by[f"cs_init{a}"]
        assert cfg["architecture"]["options"]["self_weight"] == a and cfg["optimizer"]["mixing_learning_rate"] == 0.0
        assert cfg["architecture"]["options"]["units"] == "channel"
    for s in (10, 100, 1000):
        cfg = by[f"cs_lr{s}"]
        assert cfg["architecture"]["options"]["self_weight"] == 0.9
        assert cfg["optimizer"]["mixing_learning_rate"] == pytest.approx(s * cfg["optimizer"]["learning_rate"])
    for s, rate in ((1, 0.0), (100, 100 * by["gain_lr100"]["optimizer"]["learning_rate"])):  # the no-mixing control
        cfg = by[f"gain_lr{s}"]
        assert cfg["architecture"]["options"]["units"] == "diagonal" and cfg["architecture"]["options"]["self_weight"] == 0.9
        assert cfg["optimizer"]["mixing_learning_rate"] == pytest.approx(rate)


@pytest.mark.parametrize("module,arg,n", [
    (dmtrl_one_vs_all, "smoke", 4), (dmtrl_one_vs_all, "smoke,factorised,n_train=128,seed=0", 4),
    (dmtrl_omniglot, "smoke", 2), (dmtrl_omniglot, "smoke,factorised,n_train=128,seed=0", 4),
    (cross_stitch_ablation, "smoke", 2)])
def test_smoke_grids_have_their_rows_and_need_no_data_files(module, arg, n):
    runs = _runs(module, arg)
    assert len(runs) == n and all(r["config"]["task_set"]["name"] == "synthetic_classification" for r in runs)
    assert all(r["config"]["steps"] <= 20 for r in runs)


def test_stage2_commands_cover_every_cell_and_seed():
    cmds = dmtrl_common.stage2_commands("dmtrl_omniglot.py", dmtrl_omniglot.get_config())
    assert len(cmds) == 2 * 3 and cmds[0].endswith("dmtrl_omniglot.py:factorised,test_fraction=0.1,seed=0")


# --------------------------------------------------------------------------- init_from_run


@pytest.fixture(scope="module")
def stl_run(tmp_path_factory):
    """A finished (5-step) single_task run of a tiny MLP on the synthetic set, in a run directory."""
    from mtlx.train import train_and_evaluate

    run_dir = str(tmp_path_factory.mktemp("stl_run") / "stl")
    cfg = grid.run_config()
    cfg.task_set.name = "synthetic_classification"
    cfg.task_set.options = ml_collections.ConfigDict({"num_tasks": 3, "num_classes": 4, "dim": 6, "n_train": 64,
                                                      "n_validation": 16, "n_test": 16})
    cfg.backbone.blocks = [{"kind": "dense", "features": 5}, {"kind": "dense", "features": 4}]
    cfg.architecture.name = "single_task"
    cfg.update({"steps": 5, "batch_size": 16, "eval_every": 5, "log_every": 5, "checkpoint_every": 5})
    os.makedirs(run_dir)
    results.write_config(run_dir, cfg.to_dict())
    results.write_summary(run_dir, train_and_evaluate(cfg, workdir=run_dir))  # (the runner writes it)
    return run_dir, cfg


def _raw_checkpoint_params(run_dir):
    """The checkpoint's model params read back by orbax without a target structure (an independent path)."""
    mgr = ocp.CheckpointManager(os.path.abspath(results.checkpoint_dir(run_dir)))
    raw = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore())
    return raw["params"]["model"] if isinstance(raw, dict) else raw.params["model"]


def test_init_from_run_restores_exactly_the_stl_kernels_it_decomposes(stl_run):
    run_dir, cfg = stl_run
    restored = stl_params_of_run(run_dir)
    assert stl_params_of_run(run_dir[:-2] + "*") is restored  # a pattern matching it: the same (cached) params
    raw = _raw_checkpoint_params(run_dir)
    flat_a, flat_b = jax.tree_util.tree_leaves_with_path(restored), jax.tree_util.tree_leaves_with_path(raw)
    assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for (_, a), (_, b) in zip(flat_a, flat_b))

    task_set = get_task_set(cfg.task_set.name, **cfg.task_set.options)
    model = build_model("tensor_factorised", task_set, list(cfg.backbone.blocks), (), method="tucker",
                        rank=10**6, init_from_run=run_dir)  # full rank: the decomposition is exact
    x = task_set.splits["train"]["inputs"][:2]
    params = jax.jit(model.init)(jax.random.PRNGKey(1), x)["params"]
    kernels = model.kernels(params)
    for i in range(2):
        np.testing.assert_allclose(kernels[i]["kernel"], raw[f"task_column_{i}"]["kernel"], atol=1e-5)
        np.testing.assert_array_equal(params[f"task_bias_{i}"]["bias"], raw[f"task_column_{i}"]["bias"])
    np.testing.assert_array_equal(params["task_head_out"]["kernel"], raw["task_head_out"]["kernel"])


def test_init_from_run_refuses_a_missing_or_non_single_task_run(tmp_path, stl_run):
    _, cfg = stl_run
    task_set = get_task_set(cfg.task_set.name, **cfg.task_set.options)
    with pytest.raises(ValueError, match="init_from_run"):
        build_model("tensor_factorised", task_set, list(cfg.backbone.blocks), (), init_from_run=str(tmp_path / "none"))
    with pytest.raises(ValueError, match="matches 0 run directories"):
        build_model("tensor_factorised", task_set, list(cfg.backbone.blocks), (), init_from_run=str(tmp_path / "x-*"))
    other = tmp_path / "hard_run"
    os.makedirs(results.checkpoint_dir(str(other)))
    bad = cfg.to_dict()
    bad["architecture"] = {"name": "hard", "options": {}}
    results.write_config(str(other), bad)
    results.write_summary(str(other), {"status": "done"})
    with pytest.raises(ValueError, match="single_task"):
        build_model("tensor_factorised", task_set, list(cfg.backbone.blocks), (), init_from_run=str(other))
