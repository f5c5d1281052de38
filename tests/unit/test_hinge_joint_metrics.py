"""The hinge loss of binary tasks (Yang & Hospedales 2017, Sec. 4.1: max(0, 1 - f(x) y), y in {-1, +1})
and a task set's joint metrics (their metric (2): the multi-class accuracy of ten one-vs-all scores),
from evaluation to summary.json and the table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtlx import losses, results, runner
from mtlx.data import get_task_set, tfds_sets
from mtlx.grid import expand
from mtlx.report import tables
from mtlx.tasks import JOINT, Task, TaskSet
from tiny_grid import tiny


def _hinge_by_hand(scores, targets, weights):
    """Weighted mean over examples of the mean over labels of max(0, 1 - s y), y = 2 t - 1, in plain numpy."""
    s = np.asarray(scores, np.float64).reshape(len(scores), -1)
    y = 2.0 * np.asarray(targets, np.float64).reshape(s.shape) - 1.0
    per = np.array([np.mean([max(0.0, 1.0 - a * b) for a, b in zip(row, yrow)]) for row, yrow in zip(s, y)])
    w = np.asarray(weights, np.float64)
    return float(np.sum(per * w) / np.sum(w))


@pytest.mark.parametrize("k", [1, 3])
def test_hinge_loss_is_the_weighted_mean_of_max_0_1_minus_sy(k):
    rng = np.random.default_rng(k)
    scores = rng.normal(0, 1.5, (12, k)).astype(np.float32)
    targets = rng.integers(0, 2, (12, k)).astype(np.float32)
    weights = (rng.random(12) < 0.7).astype(np.float32)
    if k == 1:
        scores, targets = scores[:, 0], targets[:, 0]
    task = Task("a", "binary", k, loss="hinge")
    got = float(losses.task_loss(task, jnp.asarray(scores), jnp.asarray(targets), jnp.asarray(weights)))
    assert got == pytest.approx(_hinge_by_hand(scores, targets, weights), rel=1e-6)
    metrics = losses.compute_metrics(task, scores, targets, weights)  # the eval loss is the hinge too
    assert metrics["loss"] == pytest.approx(_hinge_by_hand(scores, targets, weights), rel=1e-6)


def test_hinge_gradient_is_minus_y_inside_the_margin_and_zero_outside():
    s = jnp.array([[0.3], [-2.0], [1.0], [2.5], [-0.4], [-1.0]])  # margins s y: .3, 2, 1, -2.5, .4, 1
    t = jnp.array([[1.0], [0.0], [1.0], [0.0], [0.0], [0.0]])
    task = Task("a", "binary", 1, loss="hinge")
    g = jax.grad(lambda p: losses.task_loss(task, p, t, jnp.ones(6)))(s)
    y = 2 * np.asarray(t) - 1
    margin = np.asarray(s) * y
    want = np.where(margin < 1, -y, 0.0) / 6  # d/ds of the mean over 6 examples
    np.testing.assert_allclose(np.asarray(g), want, atol=1e-7)


def test_the_metrics_of_a_hinge_task_are_accuracy_at_score_0_and_auc_of_the_score():
    scores, targets = np.array([2.0, -0.5, 0.1, -3.0]), np.array([1, 1, 0, 0])
    m = losses.compute_metrics(Task("a", "binary", 1, loss="hinge"), scores, targets, np.ones(4))
    assert m["accuracy"] == 0.5  # 2 > 0 right, -0.5 wrong, 0.1 wrong, -3 right
    assert m["auc"] == pytest.approx(3 / 4)  # positive-negative pairs ranked right: (2,.1), (2,-3), (-.5,-3)


def _one_line(err) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_a_bad_loss_name_is_one_clear_error_line():
    with pytest.raises(ValueError) as err:
        Task("a", "binary", 1, loss="squared")
    msg = _one_line(err)
    assert "Task('a').loss" in msg and "'squared'" in msg and "'hinge'" in msg and "'logistic'" in msg
    with pytest.raises(ValueError, match=r"Task\('c'\)\.loss='hinge'"):
        Task("c", "classification", 3, loss="hinge")
    with pytest.raises(ValueError) as err:
        get_task_set("synthetic_classification", binary_loss="hinj")
    msg = _one_line(err)
    assert "task_set.options.binary_loss='hinj'" in msg and "['hinge', 'logistic']" in msg
    with pytest.raises(ValueError, match="has no binary task"):
        get_task_set("synthetic_classification", num_tasks=2, n_train=8, n_validation=0, n_test=0,
                     binary_loss="hinge")


def test_the_binary_loss_option_sets_every_binary_task_and_keeps_the_default_otherwise():
    assert Task("a", "binary", 1).loss == "logistic"
    hinge = get_task_set("ten_way_sets:ten_way", n_train=8, n_test=4, binary_loss="hinge")
    assert {t.loss for t in hinge.tasks} == {"hinge"}
    assert hinge.joint_metrics  # kept through the generic options
    assert {t.loss for t in get_task_set("ten_way_sets:ten_way", n_train=8, n_test=4).tasks} == {"logistic"}


def test_the_joint_multiclass_accuracy_is_the_argmax_of_the_ten_scores():
    rng = np.random.default_rng(0)
    n = 40
    labels = rng.integers(0, 10, n)
    scores = rng.normal(size=(n, 10))
    scores[np.arange(n)[:25], labels[:25]] += 3.0  # most rows right, some not
    preds = {f"is_{k}": scores[:, k:k + 1] for k in range(10)}
    weights = {f"is_{k}": np.ones(n) for k in range(10)}
    weights["is_3"][:5] = 0  # rows some task does not label are left out
    split = {"targets": {f"is_{k}": (labels == k).astype(np.float32) for k in range(10)}, "weights": weights}
    right = [int(np.argmax(scores[i]) == labels[i]) for i in range(5, n)]
    want = sum(right) / len(right)
    assert tfds_sets.multiclass_accuracy(preds, split) == pytest.approx(want)
    tasks = tuple(Task(f"is_{k}", "binary", 1) for k in range(10))
    out = losses.split_metrics(tasks, preds, split, {"multiclass_accuracy": (tfds_sets.multiclass_accuracy, True)})
    assert out[JOINT] == {"multiclass_accuracy": pytest.approx(want)} and set(out) == {*(t.name for t in tasks), JOINT}


def test_a_task_set_refuses_a_malformed_joint_metric_and_the_reserved_task_name():
    with pytest.raises(ValueError, match="must be a pair"):
        TaskSet("s", (Task("a", "binary", 1),), (2,), joint_metrics={"m": (len,)})
    with pytest.raises(ValueError, match="reserved"):
        TaskSet("s", (Task(JOINT, "binary", 1),), (2,))


def test_a_run_writes_its_joint_metric_into_summary_json_and_the_table_shows_it(tmp_path):
    c = tiny("ten_way_sets:ten_way", archs=("hard",))
    c.run.task_set.options = {"n_train": 128, "n_test": 64, "binary_loss": "hinge"}
    c.run.steps, c.run.eval_every = 30, 15
    c.run.optimizer.learning_rate = 1e-2
    (run,) = expand(c)
    runner.run_one(run, str(tmp_path), show_progress=False)
    run_dir = results.run_path(str(tmp_path), run["run_id"])
    summary = results.read_summary(run_dir)
    assert summary["status"] == "done"
    assert results.joint_directions(summary) == {"multiclass_accuracy": True}
    final = summary["metrics"][JOINT]["multiclass_accuracy"]
    last = results.read_metrics(run_dir, "eval")[-1]
    assert last["test"][JOINT]["multiclass_accuracy"] == final and 0.0 <= final <= 1.0
    assert JOINT in summary["test_at_best_validation"] and JOINT in summary["validation_metrics"]
    assert final > 0.3  # ten classes: well above chance (0.1) after 30 steps on separable blobs
    text = tables.markdown_table(str(tmp_path))
    assert "multiclass_accuracy ↑" in text and "joint metrics" in text


def test_one_vs_all_declares_the_multiclass_accuracy_and_takes_the_hinge_option(tmp_path):
    import fixtures_tfds as fx

    fx.write_mnist_like(tmp_path / "src" / "fashion-mnist", n_train=30, n_test=10)
    ts = get_task_set("one_vs_all", manual_dir=str(tmp_path / "src"), data_dir=str(tmp_path / "data"),
                      base="fashion_mnist", binary_loss="hinge")
    assert {t.loss for t in ts.tasks} == {"hinge"}
    fn, higher = ts.joint_metrics["multiclass_accuracy"]
    test = ts.splits["test"]
    y = np.stack([test["targets"][f"is_{k}"] for k in range(10)], 1)
    noisy = {f"is_{k}": y[:, k] + 0.1 * k for k in range(10)}  # the true class still scores highest
    assert higher and fn(noisy, test) == 1.0
    worst = {f"is_{k}": -y[:, k] for k in range(10)}  # the true class now scores lowest
    assert fn(worst, test) == 0.0
