"""Task losses/metrics against their definitions, and bad input refused before compilation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import MLP, dense_set, token_set
from mtlx import losses as losses_lib
from mtlx.architectures import build_model, check_heads
from mtlx.config import run_config
from mtlx.losses import roc_auc
from mtlx.tasks import Task
from mtlx.train import build_run


def test_roc_auc_equals_pair_counting():
    rng = np.random.default_rng(0)
    scores = np.round(rng.standard_normal(60), 1)  # ties included
    labels = rng.random(60) < 0.4
    pairs = [(s1 > s0) + 0.5 * (s1 == s0) for (s1, l1), (s0, l0) in itertools.product(zip(scores, labels), repeat=2)
             if l1 and not l0]
    assert roc_auc(scores, labels) == pytest.approx(np.mean(pairs))


def test_softmax_and_sigmoid_losses_differ_as_defined():
    logits = jnp.array([[2.0, -1.0, 0.5]])
    cls = Task("c", "classification", 3)
    multi = Task("m", "binary", 3)
    w = jnp.ones(1)
    ce = losses_lib.task_loss(cls, logits, jnp.array([0]), w)
    np.testing.assert_allclose(ce, -jax.nn.log_softmax(logits)[0, 0], rtol=1e-6)
    y = jnp.array([[1.0, 0.0, 1.0]])
    bce = losses_lib.task_loss(multi, logits, y, w)
    p = jax.nn.sigmoid(logits)
    np.testing.assert_allclose(bce, -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)), rtol=1e-5)
    # large logits stay finite (log-sum-exp form)
    assert np.isfinite(float(losses_lib.task_loss(multi, 1e4 * logits, y, w)))


def test_tagging_loss_ignores_padding_and_masked_sentences():
    t = Task("pos", "tagging", 4)
    rng = np.random.default_rng(1)
    pred = jnp.asarray(rng.standard_normal((2, 5, 4)), jnp.float32)
    tgt = jnp.array([[1, 2, 3, -1, -1], [0, 1, -1, -1, -1]])
    full = losses_lib.task_loss(t, pred, tgt, jnp.ones(2))
    logp = jax.nn.log_softmax(pred)
    tokens = [(0, 0, 1), (0, 1, 2), (0, 2, 3), (1, 0, 0), (1, 1, 1)]
    np.testing.assert_allclose(full, -np.mean([logp[b, i, c] for b, i, c in tokens]), rtol=1e-6)
    changed = pred.at[:, 3:].set(100.0)  # padding positions do not matter
    np.testing.assert_allclose(losses_lib.task_loss(t, changed, tgt, jnp.ones(2)), full, rtol=1e-6)
    only_first = losses_lib.task_loss(t, pred, tgt, jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(only_first, -np.mean([logp[b, i, c] for b, i, c in tokens[:3]]), rtol=1e-6)


def test_metrics_direction_and_values():
    reg = Task("r", "regression", 1)
    assert not reg.higher_is_better("mse") and Task("c", "classification", 3).higher_is_better("accuracy")
    m = losses_lib.compute_metrics(reg, np.array([[1.0], [2.0], [9.0]]), np.array([1.0, 0.0, 0.0]), np.array([1, 1, 0]))
    assert m["mse"] == pytest.approx(2.0)  # the weight-0 example is not counted


def _no_compile(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(jax, "jit", refuse)


@pytest.mark.parametrize("field,value,needle", [
    ("architecture.name", "hardd", "architecture='hardd' is not valid; choose one of"),
    ("architecture.options", {"split": 7}, "split=7 is impossible for a backbone of 2 blocks; choose 0..2"),
    ("architecture.options", {"depth": 1}, "unknown option(s) ['depth']"),
    ("weighting.name", "mgdaa", "weighting='mgdaa' is not valid; choose one of"),
    ("task_set.name", "nope", "task_set.name='nope' is not valid; choose one of"),
    ("optimizer.name", "adamm", "optimizer.name='adamm' is not valid; choose one of"),
])
def test_bad_run_config_is_refused_before_compiling(monkeypatch, field, value, needle):
    cfg = run_config()
    cfg.task_set.options = {"n_train": 64}
    section, key = field.split(".")
    cfg[section][key] = value
    _no_compile(monkeypatch)
    with pytest.raises(ValueError) as e:
        build_run(cfg)
    assert needle in str(e.value)


def test_misspelled_field_and_impossible_rank(monkeypatch):
    _no_compile(monkeypatch)
    cfg = run_config()
    cfg.stepps = 10
    with pytest.raises(ValueError, match=r"unknown config field\(s\): stepps \(did you mean steps\?\)"):
        build_run(cfg)
    cfg = run_config()
    cfg.architecture.name = "tensor_factorised"
    cfg.architecture.options = {"rank": 0}
    with pytest.raises(ValueError, match="rank"):
        build_run(cfg)
    cfg.architecture.options = {"method": "cp"}
    with pytest.raises(ValueError, match=r"method.*laf.*tt.*tucker|method.*'laf'"):
        build_run(cfg)


def test_head_mismatch_and_backbone_mismatch():
    ts, other = dense_set(), token_set()
    model = build_model("hard", ts, MLP)
    with pytest.raises(ValueError, match=r"model heads .* do not match task set 'tiny_tokens'"):
        check_heads(model, other)
    with pytest.raises(ValueError, match="needs an 'embed' first block"):
        build_model("hard", other, MLP)
    with pytest.raises(ValueError, match="mgda_ub.*lacks"):
        cfg = run_config()
        cfg.task_set.options = {"n_train": 64}
        cfg.architecture.name = "single_task"
        cfg.weighting.name = "mgda_ub"
        build_run(cfg)
