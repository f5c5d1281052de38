"""Metric writers (mtlx.writers) and the step numbering shared by curves, writers and failures."""

import glob
import os
import struct
import sys
import types

import numpy as np
import pytest

from mtlx import grid, results, runner, writers
from tiny_grid import tiny


def _events(run_dir):
    """{tag: {step: value}} from the TensorBoard event files (TFRecord framing + Event protos)."""
    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, results.TENSORBOARD, "events.out.tfevents.*"))):
        data, pos = open(path, "rb").read(), 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


def _expected(run_dir):
    """{tag: {step: value}} written by hand from metrics.jsonl: train losses, eval metrics."""
    want = {}
    for rec in results.read_metrics(run_dir, "train"):
        for task, loss in rec["losses"].items():
            want.setdefault(f"train/losses/{task}", {})[rec["step"]] = loss
    for rec in results.read_metrics(run_dir, "eval"):
        for task, metrics in rec["validation"].items():
            for m, v in metrics.items():
                want.setdefault(f"eval/validation/{task}/{m}", {})[rec["step"]] = v
    return want


def _one_run(tmp_path, names, **run_fields):
    c = tiny(archs=("hard",))
    for k, v in run_fields.items():
        setattr(c.run, k, v)
    (run,) = grid.expand(c)
    summary = runner.run_one(run, str(tmp_path), show_progress=False, writer_names=names)
    return summary, results.run_path(str(tmp_path), run["run_id"])


def test_tensorboard_event_files_read_back_the_logged_scalars(tmp_path):
    summary, run_dir = _one_run(tmp_path, ("jsonl", "tensorboard"))
    assert summary["status"] == "done"
    got, want = _events(run_dir), _expected(run_dir)
    assert want and set(want["train/losses/task0"]) == {5, 10, 15, 20}  # steps count updates done
    for tag, points in want.items():
        assert set(got[tag]) == set(points), tag
        for step, v in points.items():
            assert np.float32(got[tag][step]) == np.float32(v), (tag, step)


def test_wandb_gets_the_same_points_through_a_fake_module(tmp_path, monkeypatch):
    calls = {"log": [], "finish": 0}

    class FakeRun:
        def log(self, values, step):
            calls["log"].append((step, dict(values)))

        def finish(self):
            calls["finish"] += 1

    def init(**kw):
        calls["init"] = kw
        return FakeRun()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    summary, run_dir = _one_run(tmp_path, ("wandb",))
    assert calls["init"]["name"] == summary["run_id"] and calls["finish"] == 1
    logged = {}
    for step, values in calls["log"]:
        for tag, v in values.items():
            logged.setdefault(tag, {})[step] = v
    for tag, points in _expected(run_dir).items():
        assert logged[tag] == points, tag
    assert not os.path.exists(os.path.join(run_dir, results.TENSORBOARD))


def test_writer_names_are_checked():
    assert writers.check_writers(["tensorboard"]) == ("jsonl", "tensorboard")
    with pytest.raises(ValueError, match=r"'tensorbord' is not a writer; choose from \['jsonl', 'tensorboard'"):
        writers.check_writers(["tensorbord"])
    if "wandb" not in sys.modules:
        try:
            import wandb  # noqa: F401
        except ImportError:
            with pytest.raises(ValueError, match="pip install wandb"):
                writers.check_writers(["wandb"])


def test_a_bad_writer_is_a_config_error_before_anything_is_written(tmp_path):
    with pytest.raises(grid.ConfigError, match="not a writer"):
        runner.launch(tiny(), str(tmp_path / "wd"), show_progress=False, writer_names=["tb"])
    assert not os.path.exists(tmp_path / "wd")


def test_a_failures_step_is_the_curve_step_whose_loss_is_first_non_finite(tmp_path):
    c = tiny("mmoe_synthetic", archs=("hard",))
    c.run.optimizer.name, c.run.optimizer.learning_rate, c.run.log_every = "sgd", 1e6, 1
    (run,) = grid.expand(c)
    summary = runner.run_one(run, str(tmp_path), show_progress=False)
    assert summary["status"] == "failed"
    curve = results.read_metrics(results.run_path(str(tmp_path), run["run_id"]), "train")
    bad = [r["step"] for r in curve if any(v is None for v in r["losses"].values())]  # NaN/inf are stored as null
    assert bad and summary["failure"]["step"] == bad[0] == curve[-1]["step"]
    assert [r["step"] for r in curve] == list(range(1, bad[0] + 1))
    assert f"at step {bad[0]}" in summary["failure"]["message"]
