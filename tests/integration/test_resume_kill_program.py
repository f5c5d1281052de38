"""SIGKILL a launch training 3 seeds in ONE program mid-way, relaunch, and get the numbers of the
same program run uninterrupted: every member resumes from its own last checkpoint."""

from mtlx import grid, results
from mtlx.parallel.program import train_population
from tiny_grid import experiment_source, launch_process

from test_resume_kill import CKPT, LOG, STEPS, _assert_close, _kill_during_second_run, _load

EXPERIMENT = experiment_source("resume_program", STEPS, 64, 16, 512, 128, 64, 2, 200, LOG, CKPT, seeds=(0, 1, 2)) + \
    "\n_get = get_config\n\ndef get_config(arg=None):\n    c = _get(arg)\n    c.parallel.runs_per_program = 0\n" \
    "    return c\n"


def test_sigkill_then_relaunch_of_a_program_matches_the_uninterrupted_program(tmp_path):
    exp = tmp_path / "resume_program.py"
    exp.write_text(EXPERIMENT)
    workdir = tmp_path / "wd"
    runs = grid.expand(_load(exp))
    dirs = [workdir / r["run_id"] for r in runs]

    _kill_during_second_run(exp, workdir, dirs[-1], tmp_path)  # SIGKILL once a member is past a checkpoint
    assert not any((d / results.SUMMARY).exists() for d in dirs), "the program finished before the kill"

    with open(tmp_path / "launch2.log", "w") as log:
        proc = launch_process(exp, workdir, log, tmp_path / "jax")
        assert proc.wait(timeout=300) == 0, (tmp_path / "launch2.log").read_text()
    resumed = [results.read_summary(str(d)) for d in dirs]
    assert all(s["status"] == "done" and s["execution"]["program_runs"] == 3 for s in resumed)
    assert len({s["resumed_from_step"] for s in resumed}) == 1 and resumed[0]["resumed_from_step"] >= CKPT

    refs = [tmp_path / "ref" / r["run_id"] for r in runs]
    ref = train_population([grid.train_config(r["config"]) for r in runs], [str(d) for d in refs],
                           [grid.task_set_for(r["config"]) for r in runs])
    for s, r, d, rd in zip(resumed, ref, dirs, refs):
        _assert_close(s["metrics"], r["metrics"])
        _assert_close(results.read_metrics(str(d)), results.read_metrics(str(rd)))
