"""The two input pipelines agreeing (the quickstart smoke run end to end is in tests/integration/test_launch_cli.py)."""

import pytest

from mtlx.config import run_config
from mtlx.train import train_and_evaluate


def test_streaming_pipeline_equals_on_device_pipeline():
    cfg = run_config()
    cfg.task_set.options = {"n_train": 300, "n_validation": 64, "n_test": 64, "dim": 8}
    cfg.architecture.name = "cross_stitch"
    cfg.steps, cfg.batch_size, cfg.eval_every, cfg.log_every = 40, 32, 20, 10
    on_device = train_and_evaluate(cfg)
    cfg.on_device_max_bytes = 0  # forces the host-side prefetching path
    streamed = train_and_evaluate(cfg)
    assert on_device["on_device_data"] and not streamed["on_device_data"]
    for t, m in on_device["metrics"].items():
        assert streamed["metrics"][t] == pytest.approx(m, rel=1e-6)
