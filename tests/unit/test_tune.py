"""The tuning protocol (mtlx.tune): the block's checks, the searches, selection on validation only, stage 2.

Selection is tested on FAKE search-run directories (summaries written through
mtlx.results) whose test metrics would pick another winner than their
validation metrics; the expected winner is worked out here from Δm's
definition (Maninis et al. 2019). One end-to-end test trains a tiny grid
through runner.launch (3 tiny runs).
"""

import itertools
import json
import math
import os

import numpy as np
import pytest

from tiny_grid import tiny
from mtlx import grid, report, results, runner, tune
from mtlx.schema import ConfigError

LR = "optimizer.learning_rate"
WD = "optimizer.weight_decay"


def tuned(archs=("hard", "single_task"), seeds=(0, 1), **fields):
    c = tiny(archs=archs, seeds=seeds)
    fields.setdefault("search_seeds", (10, 11))
    c.tune = tune.tune_config(fields.pop("space", {LR: [1e-3, 1e-2, 1e-1]}), **fields)
    return c


def prepared(c):
    e = grid.check_experiment(c)
    runs = grid.expand(e)
    return e, runs


# --------------------------------------------------------------------------- the block's checks


def _set(c, path, value):
    node = c
    for k in path.split(".")[:-1]:
        node = node[k]
    node[path.split(".")[-1]] = value


BAD = [  # (what to change, words the one-line error must hold)
    (lambda c: _set(c, "tune.search", "foo"), ["config.tune.search='foo'", "'grid'", "'random'"]),
    (lambda c: setattr(c, "seeds", (0, 10)), ["config.tune.search_seeds=(10, 11)", "overlaps config.seeds", "[10]"]),
    (lambda c: _set(c, "tune.search_seeds", ()), ["config.tune.search_seeds=()", "non-empty"]),
    (lambda c: c.tune.update({"budjet": 3}), ["config.tune.budjet", "did you mean 'budget'"]),
    (lambda c: _set(c, "tune.select_on", "test"), ["config.tune.select_on='test'", "'validation'"]),
    (lambda c: _set(c, "tune.search", "random"), ["config.tune.budget=0", ">= 1", "random"]),
    (lambda c: _set(c, "tune.space", grid.dotted({LR: {"log_uniform": [1e-4, 1e-2]}})),
     ["search='grid' needs value lists", LR]),
    (lambda c: c.tune.space.update({LR: [0.0, 1e-3]}), [f"config.tune.space['{LR}']", "learning_rate=0.0"]),
    (lambda c: setattr(c, "tune", tune.tune_config({LR: {"log_uniform": [0.0, 1.0]}}, search="random", budget=2,
                                                   search_seeds=(10,))),
     ["log_uniform", "lo > 0"]),
    (lambda c: c.tune.space.update({"optimizer.lr": [1e-3]}), ["optimizer.lr", "did you mean optimizer.learning_rate"]),
    (lambda c: c.tune.space.update({"architecture.options.split": [1]}), ["architecture entry's own 'tune'"]),
    (lambda c: setattr(c, "sweep", grid.dotted({LR: [1e-3, 1e-2]})), [LR, "also set by config.sweep"]),
    (lambda c: _set(c, "tune.budget", 2), ["config.tune.budget=2", "3 configurations"]),
    (lambda c: _set(c, "tune.space", grid.dotted({})), ["config.tune.space is empty", "nothing to tune"]),
    (lambda c: setattr(c, "weightings", ({"name": "cagrad", "tune": {"weighting.options.c": [-0.5, 0.5]}},)),
     ["config.weightings[0].tune['weighting.options.c']", "c=-0.5"]),
]


@pytest.mark.parametrize("change,words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_tune_blocks_give_one_line_naming_the_field(change, words):
    c = tuned()
    change(c)
    with pytest.raises(ConfigError) as err:
        grid.check_experiment(c)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_an_entry_space_needs_the_tune_block():
    c = tiny()
    c.weightings = ({"name": "cagrad", "tune": {"weighting.options.c": [0.1, 0.5]}},)
    with pytest.raises(ConfigError, match=r"config.weightings\[0\].tune is set but config.tune is empty"):
        grid.check_experiment(c)


def test_untuned_experiments_are_unchanged():
    e, runs = prepared(tiny())
    assert e["tune"] == {} and "tune" not in e["architectures"][0]
    assert "tune" not in grid.experiment_record(e, runs)["grid"]
    assert tune.search_then_select(e, runs, runs, "/nonexistent", False, print, None) == (runs, runs)


# --------------------------------------------------------------------------- the searches


SPACE = {LR: {"log_uniform": [1e-4, 1e-1]}, WD: {"uniform": [0.0, 0.01]}, "batch_size": {"int_uniform": [8, 64]},
         "optimizer.name": {"values": ["adam", "sgd"]}}


def test_random_search_is_reproducible_within_the_space_and_shared_across_rows():
    a = tune.candidates(SPACE, "random", 25, seed=3)
    assert a == tune.candidates(SPACE, "random", 25, seed=3)
    assert a != tune.candidates(SPACE, "random", 25, seed=4)
    assert len(a) == 25 and len({json.dumps(x, sort_keys=True) for x in a}) == 25
    for x in a:
        assert 1e-4 <= x[LR] <= 1e-1 and 0.0 <= x[WD] <= 0.01
        assert isinstance(x["batch_size"], int) and 8 <= x["batch_size"] <= 64
        assert x["optimizer.name"] in ("adam", "sgd")
        assert float(f"{x[LR]:.{tune.SIGNIFICANT}g}") == x[LR]
    # log-uniform: the logs spread over the whole range (not bunched at the top, as a uniform draw would)
    logs = np.log10([x[LR] for x in tune.candidates({LR: SPACE[LR]}, "random", 200, seed=0)])
    assert logs.min() < -3.5 and logs.max() > -1.5 and abs(np.median(logs) + 2.5) < 0.4
    # each path has its own stream, whatever the other paths of the row's space: candidate k holds draw k
    rng = tune.path_rng(3, LR)
    stream = [tune.draw(SPACE[LR], rng) for _ in range(25)]
    for other in ({"weighting.options.c": {"uniform": [0.0, 1.0]}}, {WD: {"log_uniform": [1e-6, 1e-2]}}):
        assert [x[LR] for x in tune.candidates({LR: SPACE[LR], **other}, "random", 25, seed=3)] == stream


def test_grid_search_enumerates_the_product():
    space = {LR: {"values": [1e-3, 1e-2]}, WD: {"values": [0.0, 1e-4, 1e-3]}, "batch_size": {"values": [16, 32]}}
    got = tune.candidates(space, "grid", 0, seed=0)
    want = [dict(zip(sorted(space), combo)) for combo in
            itertools.product(*(space[p]["values"] for p in sorted(space)))]
    assert got == want and len(got) == 12
    assert tune.candidates({}, "grid", 0, 0) == [{}]


def test_rows_get_their_entry_space_and_search_ids_are_marked():
    c = tuned(archs=("hard",), seeds=(0,))
    c.weightings = ({"name": "equal"}, {"name": "cagrad", "tune": {"weighting.options.c": [0.2, 0.8]}})
    e, runs = prepared(c)
    rows, search = tune.plan(e, runs, runs)
    by = {r["weighting"]: r for r in rows}
    assert list(by["equal"]["space"]) == [LR] and list(by["cagrad"]["space"]) == [LR, "weighting.options.c"]
    assert len(by["cagrad"]["candidates"]) == 6 and len(search) == (3 + 6) * 2  # x 2 search seeds
    assert all(results.is_search_run(r["run_id"]) and r["seed"] in (10, 11) for r in search)
    assert not any(results.is_search_run(r["run_id"]) for r in runs)
    cand = by["cagrad"]["candidates"][5]
    run = next(r for r in search if r["run_id"] == cand["run_ids"][0])
    assert run["config"]["weighting"]["options"]["c"] == cand["values"]["weighting.options.c"]
    assert run["config"]["optimizer"]["learning_rate"] == cand["values"][LR]


# --------------------------------------------------------------------------- selection on fake run directories

TASKS = {"task0": ("accuracy", True), "task1": ("mse", False)}


def _summary(run, validation, test) -> dict:
    """A finished search run's summary: its validation metrics, and test metrics that must never be read."""
    info = {t: {"main_metric": k, "higher_is_better": {k: hib, "loss": False}, "index": i, "kind": "x"}
            for i, (t, (k, hib)) in enumerate(TASKS.items())}
    as_metrics = lambda v: {t: {TASKS[t][0]: x, "loss": 1.0} for t, x in zip(TASKS, v)}  # noqa: E731
    return {"status": results.DONE, "run_id": run["run_id"], "architecture": run["architecture"],
            "weighting": run["weighting"], "seed": run["seed"], "sweep": run["sweep"], "tasks": info,
            "config": run["config"], "validation_metrics": as_metrics(validation), "metrics": as_metrics(test),
            "test_at_best_validation": as_metrics(test)}


# validation (task0 accuracy, task1 mse) per (architecture, candidate); test = the reverse preference
VALIDATION = {"single_task": [(0.70, 0.50), (0.74, 0.46), (0.60, 0.70)],
              "hard": [(0.70, 0.40), (0.80, 0.45), (0.76, 0.30)]}
TEST = {"single_task": [(0.90, 0.10), (0.50, 0.90), (0.70, 0.40)],
        "hard": [(0.95, 0.10), (0.50, 0.90), (0.40, 0.95)]}


def hand_delta_m(v, ref) -> float:
    """Maninis et al. (2019): mean over tasks of the signed relative change, in %."""
    return 100 * ((v[0] - ref[0]) / ref[0] - (v[1] - ref[1]) / ref[1]) / 2


def _write_search(tmp_path, e, search, rows, skip=()):
    seed_shift = {10: 0.0, 11: 0.01}  # the second search seed a little better on task0
    for row in rows:
        for k, cand in enumerate(row["candidates"]):
            for rid in cand["run_ids"]:
                if rid in skip:
                    continue
                run = next(r for r in search if r["run_id"] == rid)
                v, t = VALIDATION[row["architecture"]][k], TEST[row["architecture"]][k]
                results.write_summary(results.run_path(str(tmp_path), rid),
                                      _summary(run, (v[0] + seed_shift[run["seed"]], v[1]), t))


def test_selection_takes_the_best_validation_score_and_never_reads_test(tmp_path):
    e, runs = prepared(tuned())
    rows, search = tune.plan(e, runs, runs)
    _write_search(tmp_path, e, search, rows)
    log = []
    final, chosen = tune.search_then_select(e, runs, runs, str(tmp_path), False, log.append,
                                            lambda todo: pytest.fail(f"nothing to train, got {todo}"))
    # by hand: the reference = the baseline's mean validation metrics over its candidates and both seeds
    ref = (np.mean([v[0] for v in VALIDATION["single_task"]]) + 0.005, np.mean([v[1] for v in VALIDATION["single_task"]]))
    want, on_test = {}, {}
    for arch in VALIDATION:
        dm = [hand_delta_m((v[0] + 0.005, v[1]), ref) for v in VALIDATION[arch]]
        want[arch] = int(np.argmax(dm))
        on_test[arch] = int(np.argmax([hand_delta_m(t, ref) for t in TEST[arch]]))
        assert on_test[arch] != want[arch]  # the fixture: test metrics would pick another winner
    rec = results.read_tuning(str(tmp_path))
    assert rec["status"] == "selected"
    for row in rec["rows"]:
        assert row["selected"] == want[row["architecture"]] and row["score_kind"] == tune.DELTA_M
        for k, cand in enumerate(row["candidates"]):
            v = VALIDATION[row["architecture"]][k]
            assert cand["score"] == pytest.approx(hand_delta_m((v[0] + 0.005, v[1]), ref))
    lrs = e["tune"]["space"][LR]["values"]
    assert len(final) == len(runs) == 4 and chosen == final
    for r in final:
        assert r["config"]["optimizer"]["learning_rate"] == lrs[want[r["architecture"]]]
        assert r["seed"] in (0, 1) and not results.is_search_run(r["run_id"])
    assert any("hard/equal: selected learning_rate=" in line for line in log)


def test_a_failed_candidate_loses_and_one_task_uses_the_signed_main_metric():
    summ = lambda acc, status=results.DONE: {  # noqa: E731
        "status": status, "tasks": {"a": {"main_metric": "mse", "higher_is_better": {"mse": False}}},
        "validation_metrics": {"a": {"mse": acc}}, "metrics": {"a": {"mse": 0.0}}}
    rows = [{"architecture": "hard", "weighting": "equal", "sweep": {}, "space": {LR: {"values": [1, 2, 3]}},
             "candidates": [{"values": {LR: v}, "run_ids": [f"r{v}"]} for v in (1, 2, 3)]}]
    views = {"r1": tune.validation_view(summ(0.5)), "r2": tune.validation_view(summ(0.1, results.FAILED)),
             "r3": tune.validation_view(summ(0.3))}
    out = tune.select(rows, views, baseline=None)[0]
    assert out["selected"] == 2 and out["score_kind"] == tune.SIGNED_MAIN  # mse 0.3 < 0.5; the failed one's 0.1 is out
    assert out["candidates"][1]["score"] == -math.inf and out["candidates"][2]["score"] == pytest.approx(-0.3)


def test_a_missing_search_run_keeps_stage_2_from_starting(tmp_path):
    e, runs = prepared(tuned())
    rows, search = tune.plan(e, runs, runs)
    _write_search(tmp_path, e, search, rows, skip={search[3]["run_id"]})
    asked, log = [], []
    got = tune.search_then_select(e, runs, runs, str(tmp_path), False, log.append, asked.append)
    assert [r["run_id"] for r in asked[0]] == [search[3]["run_id"]]  # it asked to train the missing one
    assert got == (search, []) and results.read_tuning(str(tmp_path))["status"] == "searching"
    assert any("stage 2 does not start: 1 of 12 search runs" in line for line in log)


# --------------------------------------------------------------------------- both stages through runner.launch


def test_two_stages_through_launch_resume_and_the_table(tmp_path):
    c = tuned(archs=("hard",), seeds=(0,), space={LR: [1e-3, 3e-2]}, search_seeds=(5,))
    c.run.eval_every = c.run.checkpoint_every = c.run.steps  # one evaluation, one checkpoint: faster
    wd = str(tmp_path / "wd")
    out = runner.launch(c, workdir=wd, show_progress=False, log=lambda m: None)
    rec = results.read_tuning(wd)
    row = rec["rows"][0]
    assert rec["status"] == "selected" and row["score_kind"] == tune.SIGNED_MAIN  # no baseline in this grid
    scores = []
    for cand in row["candidates"]:  # the winner by hand: mean validation accuracy over the two tasks
        s = results.read_summary(results.run_path(wd, cand["run_ids"][0]))
        scores.append(np.mean([s["validation_metrics"][t]["accuracy"] for t in s["tasks"]]))
    assert row["selected"] == int(np.argmax(scores))
    (rid, summary), = out["summaries"].items()
    assert not results.is_search_run(rid) and summary["seed"] == 0
    assert summary["config"]["optimizer"]["learning_rate"] == [1e-3, 3e-2][row["selected"]]
    assert sum(results.is_search_run(d) for d in os.listdir(wd)) == 2
    again = runner.launch(c, workdir=wd, show_progress=False, log=lambda m: None)  # resumable: nothing to train
    assert again["trained"] == [] and list(again["summaries"]) == [rid]
    md = report.markdown_table(wd)
    body = [ln for ln in md.splitlines() if ln.startswith("| hard")]
    assert len(body) == 1 and f"learning_rate={[0.001, 0.03][row['selected']]:g} (best of 2)" in body[0]
    assert "grid search" in md and "search seeds (5,)" in md and "test never read" in md


def _record_row(space, chosen, arch="hard", weighting="equal"):
    cands = [{"values": dict(zip(space, vals)), "run_ids": [], "score": 0.0}
             for vals in itertools.product(*(s["values"] for s in space.values()))]
    pick = next(i for i, c in enumerate(cands) if c["values"] == chosen)
    return {"architecture": arch, "weighting": weighting, "sweep": {}, "space": space, "candidates": cands,
            "selected": pick, "selected_values": chosen, "score_kind": tune.SIGNED_MAIN}


def test_a_selection_at_an_end_of_its_value_list_is_marked():
    """The search did not bracket the optimum when the winner is the smallest or largest value tried
    (3 or more values; with 2, every winner is at an end and nothing is marked)."""
    wide = {LR: {"values": [3e-4, 1e-3, 3e-3]}, "optimizer.weight_decay": {"values": [0.0, 1e-4, 1e-3]}}
    top = _record_row(wide, {LR: 3e-3, "optimizer.weight_decay": 1e-4})
    inner = _record_row(wide, {LR: 1e-3, "optimizer.weight_decay": 1e-4}, weighting="mgda")
    low = _record_row(wide, {LR: 1e-3, "optimizer.weight_decay": 0.0}, weighting="pcgrad")
    two = _record_row({LR: {"values": [1e-3, 3e-3]}}, {LR: 3e-3}, weighting="cagrad")
    assert [report.tuning.at_edge(r) for r in (top, inner, low, two)] == [[LR], [], ["optimizer.weight_decay"], []]
    assert report.tuning.cell(top) == "learning_rate=0.003†, weight_decay=0.0001 (best of 9)"
    assert report.tuning.cell(low) == "learning_rate=0.001, weight_decay=0† (best of 9)"
    assert report.tuning.cell(inner).count(report.tuning.EDGE_MARK) == 0
    rows = [{"architecture": r["architecture"], "weighting": r["weighting"]} for r in (top, inner, low, two)]
    rec = {"status": "selected", "search": "grid", "budget": 0, "seed": 0, "search_seeds": [100], "final_seeds": [0],
           "space": wide, "rows": [top, inner, low, two]}
    notes = report.tuning.notes(rec, rows, [top, inner, low, two], 27)
    edge_note = [n for n in notes if n.startswith(report.tuning.EDGE_MARK)]
    assert len(edge_note) == 1 and "2 of 4 tuned rows: hard/equal, hard/pcgrad" in edge_note[0]
    assert json.loads(report.tuning.csv_cells(top)[-1]) == [LR]


def test_the_tuned_example_experiment_validates(tmp_path):
    import importlib

    mod = importlib.import_module("experiments.tuned_synthetic")
    for arg, n_search, n_final in ((None, 5 * 8, 5 * 3), ("smoke", 5 * 2, 5)):
        e, runs, chosen, _ = grid.prepare(mod.get_config(arg), str(tmp_path / "wd"))
        rows, search = tune.plan(e, runs, chosen)
        assert (len(search), len(runs)) == (n_search, n_final) and not set(e["seeds"]) & set(e["tune"]["search_seeds"])
        cagrad = [r for r in rows if r["weighting"] == "cagrad"]
        assert cagrad and all("weighting.options.c" in r["space"] for r in cagrad)
    assert not os.path.exists(tmp_path / "wd")  # checking writes nothing


def test_static_weights_are_tunable_per_entry():
    c = tuned(archs=("hard",), seeds=(0,))
    c.weightings = ({"name": "static", "options": {"weights": (1.0, 1.0)},
                     "tune": {"weighting.options.weights": [(1.0, 1.0), (1.0, 3.0)]}},)
    e, runs = prepared(c)
    rows, search = tune.plan(e, runs, runs)
    assert {tuple(r["config"]["weighting"]["options"]["weights"]) for r in search} == {(1.0, 1.0), (1.0, 3.0)}
    c.weightings = ({"name": "static", "options": {"weights": (1.0, 1.0)},
                     "tune": {"weighting.options.weights": [(1.0, float("nan"))]}},)
    with pytest.raises(ConfigError, match=r"config.weightings\[0\].tune\['weighting.options.weights'\].*finite"):
        grid.check_experiment(c)
