"""Run claiming end to end: concurrent launchers, a busy sweep, a claim left by a SIGKILLed launcher."""

import json
import os
import re
import signal
import textwrap
import time

import pytest

from mtlx import grid, results, runner
from tiny_grid import REPO, kill_group, launch_process, run_dirs, tiny, wait_until

SEEDS = (0, 1, 2)  # x 2 architectures = 6 runs of 20 steps


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


def _experiment(tmp_path):
    exp = tmp_path / "claims_exp.py"
    exp.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(REPO, "tests")!r})
        from tiny_grid import tiny

        def get_config(arg=None):
            return tiny(seeds={SEEDS!r})
    """))
    return exp


def _check_clean(workdir):
    """Every run done once: each curve step once, only the final checkpoint, no error, no claim."""
    dirs = run_dirs(workdir)
    assert len(dirs) == 2 * len(SEEDS), dirs
    for d in dirs:
        path = os.path.join(workdir, d)
        assert results.read_summary(path)["status"] == "done"
        assert [r["step"] for r in results.read_metrics(path, "train")] == [5, 10, 15, 20]
        assert [r["step"] for r in results.read_metrics(path, "eval")] == [10, 20]
        assert os.listdir(results.checkpoint_dir(path)) == ["20"]
        assert not {results.ERROR, results.CLAIM, results.INTERRUPTED} & set(os.listdir(path))
        assert not [f for f in os.listdir(path) if f.startswith(".")]


def test_two_launchers_on_one_sweep_train_every_run_exactly_once(tmp_path, jax_cache):
    exp, workdir = _experiment(tmp_path), tmp_path / "wd"
    logs = [tmp_path / f"launch{k}.log" for k in (1, 2)]
    files = [open(p, "w") for p in logs]
    procs = [launch_process(exp, workdir, f, jax_cache) for f in files]
    codes = [p.wait(timeout=300) for p in procs]
    for f in files:
        f.close()
    text = [p.read_text() for p in logs]
    assert codes == [0, 0], text
    for t in text:
        assert "Traceback" not in t and "rror" not in t, t
    trained = re.findall(r"\] (\S+) done in", "".join(text))  # one line per run a launcher trained
    assert sorted(trained) == sorted(run_dirs(workdir)), text
    # each launcher's closing report counts what it trained itself; at least one of the two saw the other
    own = [len(re.findall(r"\] \S+ done in", t)) for t in text]
    said = [int(m.group(1)) if (m := re.search(r"this launcher trained (\d+)", t)) else None for t in text]
    assert any(n is not None for n in said), text
    assert all(n is None or n == k for n, k in zip(said, own)) and sum(own) == len(run_dirs(workdir)), text
    _check_clean(str(workdir))


def _kill_while_a_run_is_claimed(exp, workdir, tmp_path, cache):
    def claimed_and_training():  # a run (not the last) with curves and a claim but no summary
        for d in run_dirs(workdir)[:-1]:
            path = os.path.join(workdir, d)
            if (results.read_metrics(path, "train") and os.path.exists(os.path.join(path, results.CLAIM))
                    and not results.read_summary(path)):
                return path
        return None

    with open(tmp_path / "killed.log", "w") as log:
        proc = launch_process(exp, workdir, log, cache)
        try:
            wait_until(proc, claimed_and_training)
        finally:
            kill_group(proc)
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    return proc.pid


def test_a_claim_left_by_a_sigkilled_launcher_is_recovered(tmp_path, jax_cache):
    exp, workdir = _experiment(tmp_path), tmp_path / "wd"
    pid = _kill_while_a_run_is_claimed(exp, workdir, tmp_path, jax_cache)
    left = [d for d in run_dirs(workdir) if os.path.exists(workdir / d / results.CLAIM)]
    assert left and all(results.read_claim(str(workdir / d))["pid"] == pid for d in left)
    with open(tmp_path / "relaunch.log", "w") as log:
        assert launch_process(exp, workdir, log, jax_cache).wait(timeout=300) == 0, (tmp_path / "relaunch.log").read_text()
    _check_clean(str(workdir))


def test_a_busy_sweep_skips_live_claims_and_takes_stale_ones(tmp_path):
    c = tiny()
    busy, stale = (r["run_id"] for r in grid.expand(c))
    workdir = tmp_path / "wd"
    now = time.time()
    for rid, beat in ((busy, now), (stale, now - 120)):  # launchers on another node: only heartbeats tell
        os.makedirs(workdir / rid)
        (workdir / rid / results.CLAIM).write_text(json.dumps(
            {**results.new_claim(host="node-b", pid=4242), "heartbeat": beat}))
    out = runner.launch(c, str(workdir), show_progress=False, compilation_cache=None, claim_timeout_s=60)
    assert out["trained"] == [stale] and out["others"] == {busy: "node-b pid 4242"}
    assert results.read_summary(str(workdir / stale))["status"] == "done"
    assert results.read_summary(str(workdir / busy)) is None
    assert results.read_claim(str(workdir / busy))["host"] == "node-b"  # not touched
    assert "other launchers 1 (still running: " + busy in runner.summarise(out)
