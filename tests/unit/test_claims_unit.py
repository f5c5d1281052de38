"""Run claims (mtlx.results): exclusive creation, stale detection, one winner per takeover."""

import json
import os
import subprocess
import sys
import threading
import time

from mtlx import results


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_claim(run_dir, **fields):
    os.makedirs(run_dir, exist_ok=True)
    claim = {**results.new_claim(), **fields}
    with open(os.path.join(run_dir, results.CLAIM), "w") as f:
        json.dump(claim, f)
    return claim


def test_the_first_claim_wins_and_the_second_sees_it(tmp_path):
    run = str(tmp_path / "r")
    a, b = results.new_claim(), results.new_claim()
    assert a["token"] != b["token"] and a["pid"] == os.getpid() and a["heartbeat"] == a["started"]
    assert results.claim_run(run, a, 60)["token"] == a["token"]
    held = results.claim_run(run, b, 60)
    assert held["token"] == a["token"] and held["host"] == a["host"] and held["pid"] == a["pid"]
    assert results.read_claim(run)["token"] == a["token"]


def test_stale_means_old_heartbeat_or_dead_pid_on_this_host():
    now = time.time()
    live = results.new_claim(now=now)
    assert not results.claim_is_stale(live, 60, now=now + 59)
    assert results.claim_is_stale(live, 60, now=now + 61)
    dead = {**live, "pid": _dead_pid()}
    assert results.claim_is_stale(dead, 60, now=now)
    elsewhere = {**dead, "host": live["host"] + "-other-node"}  # a pid on another host cannot be checked
    assert not results.claim_is_stale(elsewhere, 60, now=now)
    assert results.claim_is_stale(elsewhere, 60, now=now + 61)


def test_a_stale_claim_is_taken_over(tmp_path):
    old = _write_claim(str(tmp_path / "a"), heartbeat=time.time() - 100, host="another-node")
    dead = _write_claim(str(tmp_path / "b"), pid=_dead_pid())
    for d, stale in (("a", old), ("b", dead)):
        mine = results.new_claim()
        assert results.claim_run(str(tmp_path / d), mine, 10)["token"] == mine["token"] != stale["token"]
        assert results.read_claim(str(tmp_path / d))["token"] == mine["token"]
    fresh = _write_claim(str(tmp_path / "c"), host="another-node")
    assert results.claim_run(str(tmp_path / "c"), results.new_claim(), 10)["token"] == fresh["token"]


def test_an_unreadable_claim_goes_stale_by_its_age(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / results.CLAIM).write_text("{not json")
    assert results.claim_run(str(run), results.new_claim(), 60)["token"] == "unreadable"
    old = time.time() - 120
    os.utime(run / results.CLAIM, (old, old))
    mine = results.new_claim()
    assert results.claim_run(str(run), mine, 60)["token"] == mine["token"]


def test_many_contenders_for_one_stale_claim_give_one_winner(tmp_path):
    run = str(tmp_path / "r")
    _write_claim(run, pid=_dead_pid())
    claims = [results.new_claim() for _ in range(8)]
    got, errors, barrier = [None] * len(claims), [], threading.Barrier(len(claims))

    def contend(k):
        barrier.wait()
        try:
            got[k] = results.claim_run(run, claims[k], 60)["token"]
        except Exception as e:  # a thread's exception would otherwise be only a pytest warning
            errors.append(e)

    threads = [threading.Thread(target=contend, args=(k,)) for k in range(len(claims))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    winners = [c["token"] for c, g in zip(claims, got) if g == c["token"]]
    assert len(winners) == 1 and results.read_claim(run)["token"] == winners[0]
    assert got == winners * len(claims)  # every loser is told who holds the run
    assert not [f for f in os.listdir(run) if f.startswith(".")]  # no temp or lock file left


def test_refresh_and_release_touch_only_ones_own_claim(tmp_path):
    run = str(tmp_path / "r")
    mine = results.new_claim(now=1000.0)
    results.claim_run(run, mine, 1e12)
    assert results.refresh_claim(run, mine, now=2000.0) and results.read_claim(run)["heartbeat"] == 2000.0
    other = results.new_claim()
    results.release_claim(run, other)
    assert results.read_claim(run)["token"] == mine["token"]
    results.release_claim(run, mine)
    assert results.read_claim(run) is None and not os.listdir(run)
    assert not results.refresh_claim(run, mine)


def test_a_claim_does_not_make_a_run_finished(tmp_path):
    run = tmp_path / "wd" / "r1"
    results.write_config(str(run), {"seed": 0, "architecture": {"name": "hard"}, "weighting": {"name": "equal"}})
    results.claim_run(str(run), results.new_claim(), 60)
    (r,) = results.load_runs(str(tmp_path / "wd"))
    assert r["status"] == results.INCOMPLETE and "claimed by" in r["failure"]


def test_a_done_summary_removes_a_stale_error_and_note(tmp_path):
    run = str(tmp_path / "r")
    results.write_error(run, "Traceback ...")
    results.write_interrupted(run, {"step": 3})
    results.write_summary(run, {"status": results.DONE})
    assert sorted(os.listdir(run)) == [results.SUMMARY]
    results.write_error(run, "Traceback ...")
    results.write_summary(run, {"status": results.FAILED})  # a failed run keeps its traceback
    assert os.path.exists(os.path.join(run, results.ERROR))
