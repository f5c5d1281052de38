"""The training loop (mtlx.train.train_and_evaluate): every architecture learns; the periodic
actions fire where they should."""

import numpy as np
import pytest

from mtlx import losses as losses_lib
from mtlx.architectures import ARCHITECTURES
from mtlx.grid import run_config
from mtlx.tasks import Task
from mtlx.train import PENALTY, Every, NonFiniteLoss, build_run, init_state, main_score, train_and_evaluate


def test_every_fires_at_multiples_and_at_the_last_step():
    fired = []
    action = Every(4, 10, fired.append)
    for step in range(1, 11):
        action(step)
    assert fired == [4, 8, 10]


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_short_run_lowers_every_task_loss_on_mmoe_synthetic(arch):
    cfg = run_config()
    cfg.task_set.name = "mmoe_synthetic"
    cfg.task_set.options = {"correlation": 0.5, "dim": 8, "n_train": 256, "n_validation": 0, "n_test": 128}
    cfg.backbone.blocks = [{"kind": "dense", "features": 8}] * 2
    cfg.architecture.name = arch
    cfg.architecture.options = {"num_experts": 2} if arch in ("mmoe", "omoe") else {}
    cfg.optimizer.learning_rate = 1e-2
    cfg.steps, cfg.batch_size, cfg.eval_every, cfg.log_every = 100, 32, 100, 50
    run = build_run(cfg)
    test = run.task_set.splits["test"]
    st0 = init_state(run.model, run.weighting, run.tx, 2, test["inputs"][:2], 0)
    preds0, _ = run.model.apply({"params": st0.params["model"]}, test["inputs"])
    before = {t.name: losses_lib.compute_metrics(t, preds0[t.name], test["targets"][t.name], test["weights"][t.name])["mse"]
              for t in run.task_set.tasks}
    summary = train_and_evaluate(cfg)
    for t in run.task_set.tasks:
        assert summary["metrics"][t.name]["mse"] < 0.8 * before[t.name], (arch, t.name, before, summary["metrics"])
    assert summary["steps"] == 100 and np.isfinite(summary["steps_per_s"])


def test_a_non_finite_penalty_is_named_as_such_not_blamed_on_a_task():
    """soft_l2's penalty overflows float32 at this strength while every task loss stays finite."""
    cfg = run_config()
    cfg.task_set.options = {"num_tasks": 2, "dim": 8, "n_train": 64, "n_validation": 16, "n_test": 16}
    cfg.backbone.blocks = [{"kind": "dense", "features": 8}]
    cfg.architecture.name, cfg.architecture.options = "soft_l2", {"strength": 3e38}
    cfg.steps, cfg.batch_size, cfg.eval_every, cfg.log_every = 2, 16, 2, 1
    with pytest.raises(NonFiniteLoss) as err:
        train_and_evaluate(cfg)
    assert (err.value.step, err.value.task) == (1, PENALTY)


def test_main_score_reads_a_null_metric_as_nan():
    """metrics.jsonl stores NaN as null; a resumed run's model selection reads it back: sign * NaN, skipped."""
    tasks = (Task("a", "binary", 1), Task("b", "regression", 1))
    assert main_score({"a": {"auc": None}, "b": {"mse": 0.25}}, tasks) == -0.25
    assert main_score({"a": {"auc": 0.75}, "b": {"mse": 0.25}}, tasks) == 0.25  # mean of +0.75 and -0.25
