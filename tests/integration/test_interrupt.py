"""SIGINT / SIGTERM stop launch.run at a step boundary with a checkpoint and one line; a relaunch resumes
and gives an uninterrupted run's numbers."""

import os
import re
import signal

from mtlx import grid, results, runner
from test_resume_kill import _assert_close, _load
from tiny_grid import experiment_source, kill_group, launch_process, wait_until

STEPS, LOG = 1500, 10

EXPERIMENT = experiment_source("interrupt", STEPS, 32, 8, 256, 64, 16, 1, 500, LOG, 1000)


def _signal_once_past(exp, workdir, run_dir, past, sig, log_path, cache):
    """Launch; send ``sig`` once the run has logged a step beyond ``past``; return (exit code, output)."""
    def logged_past():
        steps = [r["step"] for r in results.read_metrics(run_dir, "train")]
        return bool(steps) and max(steps) > past

    with open(log_path, "w") as log:
        proc = launch_process(exp, workdir, log, cache)
        try:
            if wait_until(proc, logged_past):
                proc.send_signal(sig)
            code = proc.wait(timeout=120)
        finally:
            kill_group(proc)
    return code, log_path.read_text()


def _stopped_at(code, out, sig, run_id, run_dir):
    """The run stopped cleanly after the signal: exit code, one line, checkpoint, note, no summary."""
    assert code == 128 + sig, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    lines = [ln for ln in out.splitlines() if ln.startswith("interrupted")]
    assert len(lines) == 1 and out.strip().splitlines()[-1] == lines[0], out
    m = re.fullmatch(rf"interrupted: run {run_id} at step (\d+); relaunch to resume", lines[0])
    step = int(m.group(1))
    assert os.listdir(results.checkpoint_dir(run_dir)) == [str(step)]
    assert results.read_summary(run_dir) is None and results.read_claim(run_dir) is None
    assert results.read_interrupted(run_dir)["step"] == step and step < STEPS
    assert max(r["step"] for r in results.read_metrics(run_dir)) <= step
    return step


def test_sigint_then_sigterm_leave_a_run_that_resumes_to_the_uninterrupted_numbers(tmp_path):
    exp = tmp_path / "interrupt_exp.py"
    exp.write_text(EXPERIMENT)
    (run,) = grid.expand(_load(exp))
    workdir = tmp_path / "wd"
    run_dir = results.run_path(str(workdir), run["run_id"])

    code, out = _signal_once_past(exp, workdir, run_dir, 3 * LOG, signal.SIGINT, tmp_path / "sigint.log",
                                  tmp_path / "jax")
    first = _stopped_at(code, out, signal.SIGINT, run["run_id"], run_dir)
    code, out = _signal_once_past(exp, workdir, run_dir, first + 3 * LOG, signal.SIGTERM, tmp_path / "sigterm.log",
                                  tmp_path / "jax")
    second = _stopped_at(code, out, signal.SIGTERM, run["run_id"], run_dir)
    assert first < second

    resumed = runner.run_one(run, str(workdir), show_progress=False)
    assert resumed["status"] == "done" and resumed["resumed_from_step"] == second
    assert results.read_interrupted(run_dir) is None and os.listdir(results.checkpoint_dir(run_dir)) == [str(STEPS)]
    ref = runner.run_one(run, str(tmp_path / "ref"), show_progress=False)
    _assert_close(resumed["metrics"], ref["metrics"])
    _assert_close(results.read_metrics(run_dir), results.read_metrics(results.run_path(str(tmp_path / "ref"),
                                                                                       run["run_id"])))
