"""Task losses and metrics against their definitions; metric directions against the METRICS table."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtlx import losses as losses_lib
from mtlx.losses import roc_auc
from mtlx.tasks import KINDS, LOSS, METRICS, Task, higher_is_better


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
    # large logits keep the exact value (log-sum-exp form, no clipped probabilities): wrong-side logits
    # cost |l| each, so the mean is (2e4 + 1e4 + 5e3) / 3; a clipped log(p) would give about 16
    wrong = jnp.array([[0.0, 1.0, 0.0]])
    np.testing.assert_allclose(float(losses_lib.task_loss(multi, 1e4 * logits, wrong, w)), 35000.0 / 3, rtol=1e-6)


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


# Directions by definition: error-like metrics fall as a model improves, agreement-like ones rise.
LOWER_IS_BETTER = {"mse"}
HIGHER_IS_BETTER = {"accuracy", "auc"}


def test_higher_is_better_agrees_with_metrics_and_loss_is_lower_is_better():
    assert set(METRICS) == set(KINDS)
    for kind in KINDS:
        num_outputs = 2
        task = Task("t", kind, num_outputs)
        assert task.metrics == tuple(METRICS[kind]) and task.main_metric == task.metrics[0]
        for metric, higher in METRICS[kind].items():
            assert metric in LOWER_IS_BETTER | HIGHER_IS_BETTER, f"{kind}/{metric}: direction not known to this test"
            assert higher is (metric in HIGHER_IS_BETTER)
            assert higher_is_better(kind, metric) is higher is task.higher_is_better(metric)
        assert task.higher_is_better() is METRICS[kind][task.main_metric]
        assert higher_is_better(kind, LOSS) is False  # the eval loss, for every kind
        assert higher_is_better(kind, "no_such_metric") is None
    assert higher_is_better("no_such_kind", LOSS) is False


@pytest.mark.parametrize("kind,k", [("binary", 1), ("binary", 3), ("classification", 4), ("regression", 2)])
def test_loss_gradient_at_zero_prediction_is_the_definition(kind, k):
    """At a prediction of exactly 0 (output biases start at 0; an example whose last ReLUs are all off
    has logit 0 at init) the gradient must be the formula's, not an autodiff convention for |x| or
    max(x, 0) at 0: d/dl BCE = (sigmoid(l) - y) / K, d/dl CE = softmax(l) - onehot(y), d/dp MSE = 2 (p - y) / K,
    each divided by the B labelled examples of the masked mean."""
    B = 4
    rng = np.random.default_rng(0)
    task = Task("t", kind, k if kind != "regression" else 1)
    if kind == "binary":
        y = rng.integers(0, 2, (B, k)).astype(np.float32)
        want = (0.5 - y) / k / B
        pred = np.zeros((B, k), np.float32)
    elif kind == "classification":
        y = rng.integers(0, k, B).astype(np.int32)
        want = (np.full((B, k), 1.0 / k) - np.eye(k)[y]) / B
        pred = np.zeros((B, k), np.float32)
    else:
        y = rng.standard_normal((B, k)).astype(np.float32)
        want = 2 * (0 - y) / k / B
        pred = np.zeros((B, k), np.float32)
    grad = jax.grad(lambda p: losses_lib.task_loss(task, p, jnp.asarray(y), jnp.ones(B)))(jnp.asarray(pred))
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-6, atol=1e-7)
