"""The researcher's path end to end, and the two input pipelines agreeing."""

import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mtlx.config import run_config
from mtlx.train import train_and_evaluate

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def run(*args, cwd):
    out = subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_quickstart_smoke_then_table_and_plot(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    work = tmp_path / "qs"
    run("launch.run", "--config", "experiments/quickstart.py:smoke", "--workdir", str(work), "--noprogress",
        "--compilation_cache=", cwd=repo)
    summaries = [json.load(open(p)) for p in glob.glob(str(work / "*" / "summary.json"))]
    assert len(summaries) == 5 and all(s["status"] == "done" for s in summaries)
    run("launch.table", str(work), cwd=repo)
    run("launch.plot", str(work), cwd=repo)
    assert os.path.getsize(work / "figures" / "main_metric_bars.png") > 1000
    by_arch = {s["architecture"]: s for s in summaries}
    base = by_arch["single_task"]["metrics"]
    rows = {r["architecture"]: r for r in csv.DictReader(open(work / "table.csv"))}
    for arch, s in by_arch.items():  # delta_m by hand: mean over tasks of the relative change in accuracy
        want = 100 * np.mean([(s["metrics"][t]["accuracy"] - base[t]["accuracy"]) / base[t]["accuracy"] for t in base])
        assert float(rows[arch]["delta_m"]) == pytest.approx(want, abs=1e-9)
        assert float(rows[arch]["task0/accuracy/mean"]) == pytest.approx(s["metrics"]["task0"]["accuracy"])


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
