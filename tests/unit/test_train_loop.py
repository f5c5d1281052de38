"""The training loop (mtlx.train.train_and_evaluate): every architecture learns; the periodic
actions fire where they should."""

import numpy as np
import pytest

from mtlx import losses as losses_lib
from mtlx.architectures import ARCHITECTURES
from mtlx.config import run_config
from mtlx.train import Every, build_run, init_state, train_and_evaluate


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
