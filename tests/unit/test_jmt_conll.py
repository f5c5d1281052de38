"""experiments/jmt_conll.py: the smoke grid validates and its JMT run trains through the real loop on the
experiment's synthetic tagging set (no files), whose tags follow their definition (chunks are maximal
runs of POS groups, entities are NP chunks); the full grid's entries and its one-epoch anchor period."""

import importlib
import os

import jax
import numpy as np
import pytest

from mtlx import grid, train
from mtlx.data import pipeline
from mtlx.optim import SuccessiveState, make_optimizer

EXPERIMENT = importlib.import_module("experiments.jmt_conll")
EXPERIMENTS_DIR = os.path.dirname(EXPERIMENT.__file__)  # launch.run puts it on sys.path: 'jmt_conll:...' imports


@pytest.fixture
def smoke_grid(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(EXPERIMENTS_DIR)
    cfg = EXPERIMENT.get_config("smoke")
    e, expanded, chosen, _ = grid.prepare(cfg, str(tmp_path / "work"))
    return e, {r["architecture"]: r for r in chosen}


def test_synthetic_tags_follow_the_hierarchy():
    ts = EXPERIMENT.synthetic_tagging(n_train=64, n_validation=0, n_test=0, seed=3)
    tr = ts.splits["train"]
    pos, chunk, ner = (tr["targets"][k] for k in ("pos", "chunk", "ner"))
    group = np.array([{"NP": 1, "VP": 2, "PP": 3, None: 0}[EXPERIMENT.GROUP[t]] for t in EXPERIMENT.POS])
    chunk_group = np.array([0] + [{"NP": 1, "VP": 2, "PP": 3}[c[2:]] for c in EXPERIMENT.CHUNK[1:]])
    real = tr["inputs"] > 0
    assert np.array_equal(real, pos >= 0) and np.array_equal(real, ner >= 0)
    g = np.where(real, group[np.maximum(pos, 0)], -1)
    np.testing.assert_array_equal(np.where(real, chunk_group[np.maximum(chunk, 0)], -1), g)  # chunk type = POS group
    begins = np.isin(chunk, [i for i, c in enumerate(EXPERIMENT.CHUNK) if c.startswith("B-")])
    starts = real & (g > 0) & ~np.concatenate([np.zeros((len(g), 1), bool), g[:, 1:] == g[:, :-1]], 1)
    np.testing.assert_array_equal(begins, starts)  # a chunk begins exactly where the group changes
    assert np.all(g[ner > 0] == 1) and (ner > 0).any() and (ner == 0).any()  # entities inside NP chunks only


def test_full_grid_entries_and_one_epoch_period():
    e = grid.check_experiment(EXPERIMENT.get_config())
    labels = {r["architecture"]: r["config"] for r in grid.expand(e)}
    assert set(labels) == {"single_task", "low_supervision", "jmt", "jmt_successive"}
    jmt = labels["jmt_successive"]
    assert jmt["architecture"]["options"]["successive"] == {"delta": 0.01, "period": 439}  # ceil(14041 / 32)
    assert [b["kind"] for b in jmt["backbone"]["blocks"]] == ["embed", "bilstm"]  # one BiLSTM per level
    assert jmt["task_set"]["options"]["tasks"] == ["pos", "chunk", "ner"]  # the hierarchy, bottom first


def test_smoke_grid_validates_and_its_jmt_step_traces_to_the_same_state_shapes(smoke_grid):
    """Tracing the train step of the BiLSTM JMT (with the successive term in the optimizer) maps the state
    to one of identical shapes and dtypes: it compiles once. (Training it is the ``:smoke`` run itself,
    about a minute of CPU, too slow for a unit test.)"""
    e, runs = smoke_grid
    assert set(runs) == {"single_task", "low_supervision", "jmt", "jmt_successive"} and e["baseline"] == "single_task"
    run = train.build_run(grid.train_config(runs["jmt_successive"]["config"]),
                          grid.task_set_for(runs["jmt_successive"]["config"]))
    batch = pipeline.gather(run.task_set.split("train"), np.arange(4))
    tx = make_optimizer("adam", 1e-3, model=run.model)
    state = jax.eval_shape(lambda: train.init_state(run.model, run.weighting, tx, 3, batch["inputs"], 0))
    out, metrics = jax.eval_shape(train.make_train_step(run.model, run.task_set.tasks, run.weighting, tx), state, batch)
    avals = lambda t: jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), t)
    assert avals(out) == avals(state) and metrics["losses"].shape == (3,)
    assert isinstance(state.opt_state[0], SuccessiveState)


def test_the_run_optimizer_carries_the_successive_term(smoke_grid):
    _, runs = smoke_grid
    cfg = grid.train_config(runs["jmt_successive"]["config"])
    run = train.build_run(cfg, grid.task_set_for(runs["jmt_successive"]["config"]))
    x = run.task_set.splits["train"]["inputs"][:2]
    shapes = jax.eval_shape(run.model.init, jax.random.PRNGKey(0), x)["params"]
    state = jax.eval_shape(run.tx.init, {"model": shapes, "weighting": {}})
    is_term = lambda s: isinstance(s, SuccessiveState)
    assert any(map(is_term, jax.tree_util.tree_leaves(state, is_leaf=is_term)))  # optimizer_of passes the model
