"""Kill ``launch.run`` with SIGKILL mid-run, relaunch, and get an uninterrupted run's results."""

import importlib.util
import signal

import numpy as np

from mtlx import grid, results, runner
from tiny_grid import experiment_source, kill_group, launch_process, wait_until

STEPS, CKPT, LOG = 600, 100, 10

EXPERIMENT = experiment_source("resume", STEPS, 64, 16, 512, 128, 64, 2, 200, LOG, CKPT, seeds=(0, 1, 2))


def _assert_close(a, b, tol=1e-6):
    """Nested dicts/lists of numbers equal up to ``tol``."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (a, b)
        for k in a:
            _assert_close(a[k], b[k], tol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (a, b)
        for x, y in zip(a, b):
            _assert_close(x, y, tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert np.isclose(a, b, rtol=0, atol=tol), (a, b)
    else:
        assert a == b, (a, b)


def _load(path):
    spec = importlib.util.spec_from_file_location("resume_exp", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def _kill_during_second_run(exp, workdir, second, tmp_path):
    """Launch; SIGKILL once the second run is past its first checkpoint (and not finished)."""
    def past_checkpoint():
        steps = [r["step"] for r in results.read_metrics(str(second), "train")]
        return bool(steps) and max(steps) >= CKPT + LOG

    with open(tmp_path / "launch1.log", "w") as log:
        proc = launch_process(exp, workdir, log, tmp_path / "jax")
        try:
            wait_until(proc, past_checkpoint)
        finally:
            kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "launch1.log").read_text()


def test_sigkill_then_relaunch_resumes_and_matches_an_uninterrupted_run(tmp_path):
    exp = tmp_path / "resume_exp.py"
    exp.write_text(EXPERIMENT)
    workdir = tmp_path / "wd"
    runs = grid.expand(_load(exp))
    first, second, third = (workdir / r["run_id"] for r in runs)

    # 1. Launch; SIGKILL while the second run is between checkpoints.
    _kill_during_second_run(exp, workdir, second, tmp_path)
    assert (first / results.SUMMARY).exists(), "the first run should have finished before the kill"
    assert not (second / results.SUMMARY).exists(), "the second run finished before the kill: make it longer"
    assert not third.exists()
    files = (results.SUMMARY, results.METRICS)
    before = {p: ((first / p).stat().st_mtime_ns, (first / p).read_bytes()) for p in files}

    # 2. Relaunch: the first run is skipped, the second resumes from its checkpoint, the third runs.
    with open(tmp_path / "launch2.log", "w") as log:
        proc = launch_process(exp, workdir, log, tmp_path / "jax")
        assert proc.wait(timeout=300) == 0, (tmp_path / "launch2.log").read_text()
    for d in (first, second, third):
        assert results.read_summary(str(d))["status"] == "done"
    assert {p: ((first / p).stat().st_mtime_ns, (first / p).read_bytes()) for p in files} == before
    resumed = results.read_summary(str(second))
    step = resumed["resumed_from_step"]  # a checkpoint's step: the kill came after the first one
    assert step is not None and CKPT <= step < STEPS and step % CKPT == 0

    # 3. The same run uninterrupted (in this process) gives the same curves and final metrics.
    ref_dir = tmp_path / "ref"
    ref = runner.run_one(runs[1], str(ref_dir), show_progress=False)
    assert ref["resumed_from_step"] is None and ref["status"] == "done"
    _assert_close(resumed["metrics"], ref["metrics"])
    _assert_close(results.read_metrics(str(second)), results.read_metrics(str(ref_dir / runs[1]["run_id"])))
