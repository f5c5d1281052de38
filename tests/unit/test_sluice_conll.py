"""experiments/sluice_conll.py: every variant's grid validates (task sets and models built, nothing
compiled) on a CoNLL-2003 look-alike, and low supervision puts each head on its Søgaard & Goldberg layer."""

import importlib

import pytest

import fixtures_tfds as fx
from mtlx import grid

EXPERIMENT = importlib.import_module("experiments.sluice_conll")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sluice_conll")
    fx.write_conll(root / "src" / "conll2003")
    return root


@pytest.mark.parametrize("arg,runs", [("smoke", 6), ("pairs_smoke", 12)])
def test_sluice_conll_grids_validate(sources, arg, runs):
    cfg = EXPERIMENT.get_config(arg)
    cfg.run.task_set.options.manual_dir = str(sources / "src")
    cfg.run.task_set.options.data_dir = str(sources / "data")
    e, expanded, chosen, _ = grid.prepare(cfg, str(sources / "work" / arg))
    assert len(chosen) == runs and e["baseline"] == "single_task"
    labels = {r["architecture"] for r in expanded}
    assert labels == {"single_task", "hard", "low_supervision", "cross_stitch", "sluice", "tensor_factorised"}
    low = [r for r in expanded if r["architecture"] == "low_supervision"]
    depths = {tuple(r["config"]["task_set"]["options"]["tasks"]): r["config"]["architecture"]["options"]["head_depth"]
              for r in low}
    # blocks: 0 embed, 1-3 BiLSTM; POS on the first BiLSTM, chunking on the second, NER / a main task on the top
    assert depths == ({("pos", "chunk", "ner"): {"pos": 1, "chunk": 2}} if arg == "smoke" else
                      {("chunk", "pos"): {"pos": 1}, ("ner", "pos"): {"pos": 1}})
    for r in expanded:  # the pairs: Ruder et al.'s main task first, POS its auxiliary task (Δm on the main task)
        roles = {t.name: t.role for t in grid.task_set_for(r["config"]).tasks}
        tasks = r["config"]["task_set"]["options"]["tasks"]
        assert roles == ({t: "main" for t in tasks} if arg == "smoke" else {tasks[0]: "main", "pos": "auxiliary"})


def test_sluice_conll_rejects_an_unknown_variant():
    with pytest.raises(ValueError, match="unknown argument 'pair'"):
        EXPERIMENT.get_config("pair")
