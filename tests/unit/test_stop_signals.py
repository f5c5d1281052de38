"""SIGINT/SIGTERM become a stop flag (no KeyboardInterrupt); the loop stops at a step boundary with a checkpoint."""

import os
import signal

import pytest

from mtlx import checkpoint, grid, results, runner, train
from tiny_grid import tiny


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_sets_the_stop_flag_and_the_old_handler_comes_back(sig):
    before = signal.getsignal(sig)
    with runner.stop_on_signals():
        assert not runner.stop_requested()
        with runner.stop_on_signals():  # nested: the same flag
            os.kill(os.getpid(), sig)
        assert runner.stop_requested()
    assert signal.getsignal(sig) is before
    with runner.stop_on_signals():  # a new outermost scope starts without the old stop
        assert not runner.stop_requested()


def test_the_loop_stops_after_the_step_it_was_asked_at_with_a_checkpoint(tmp_path):
    (run,) = grid.expand(tiny(archs=("hard",)))
    cfg, run_dir = grid.train_config(run["config"]), str(tmp_path / "run")
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) == 7  # asked after each step: stop after the 7th

    with pytest.raises(train.Interrupted) as e:  # one step per dispatch: asked after every step
        train.train_and_evaluate(cfg, run_dir, should_stop=should_stop, execution={"steps_per_dispatch": 1})
    assert e.value.step == 7
    assert checkpoint.latest_step(checkpoint.manager(results.checkpoint_dir(run_dir))) == 7
    assert [r["step"] for r in results.read_metrics(run_dir, "train")] == [5]
    done = train.train_and_evaluate(cfg, run_dir)
    assert done["steps"] == cfg.steps
    assert [r["step"] for r in results.read_metrics(run_dir, "train")] == [5, 10, 15, 20]


def test_with_k_steps_per_dispatch_the_stop_comes_at_the_end_of_a_dispatch(tmp_path):
    """log 5 / eval 10 / checkpoint 10 -> K = 5: asked after steps 5, 10, ...; the 2nd ask stops at 10."""
    (run,) = grid.expand(tiny(archs=("hard",)))
    cfg, run_dir, asked = grid.train_config(run["config"]), str(tmp_path / "run"), []
    with pytest.raises(train.Interrupted) as e:
        train.train_and_evaluate(cfg, run_dir, should_stop=lambda: asked.append(1) or len(asked) == 2)
    assert e.value.step == 10 and len(asked) == 2
    assert checkpoint.latest_step(checkpoint.manager(results.checkpoint_dir(run_dir))) == 10
