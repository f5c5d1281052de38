"""mtlx.parallel: K steps per dispatch equal one step per call; a population trained in one program
equals its runs trained alone (seeds, data draws, learning rates, static weights, a weighting's
float option); a NaN member fails alone; an interrupted population resumes to the uninterrupted
numbers; grouping puts together exactly the runs that can share a program."""

import copy
import os

import jax
import numpy as np
import pytest

from mtlx import grid, results, runner
from mtlx.parallel import chunks, dispatch_size
from mtlx.parallel.population import programs
from mtlx.parallel.program import train_population
from mtlx.train import Interrupted, NonFiniteLoss, train_and_evaluate

from tiny_grid import tiny

# vmapped (batched) matmuls sum in another order than a single run's: float32 round-off only
RTOL, ATOL = 1e-4, 1e-5


def _cfg(**changes):
    """A tiny hard-sharing run config: 12 steps, log 3, eval/checkpoint 6 -> K = 3."""
    rc = copy.deepcopy(grid.expand(tiny())[0]["config"])
    rc["architecture"] = {"name": "hard", "options": {}}
    rc["steps"], rc["log_every"], rc["eval_every"], rc["checkpoint_every"] = 12, 3, 6, 6
    for path, v in changes.items():
        grid._set_path(rc, path.replace("__", "."), v)
    return rc


def _final_params(workdir, cfg):
    from mtlx import checkpoint
    from mtlx.data import pipeline
    from mtlx.train import build_run, init_state

    run = build_run(grid.train_config(cfg), grid.task_set_for(cfg))
    train = run.task_set.split("train")
    like = init_state(run.model, run.weighting, run.tx, run.task_set.num_tasks,
                      pipeline.gather(train, np.arange(2))["inputs"], 0)
    return checkpoint.restore(checkpoint.manager(results.checkpoint_dir(workdir)), like).params


def _close(a, b, rtol=RTOL, atol=ATOL):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_dispatch_size_divides_every_cadence_and_chunks_end_on_them():
    cfg = grid.train_config(_cfg(log_every=10, eval_every=25, checkpoint_every=50))
    assert dispatch_size(cfg) == 5 and dispatch_size(cfg, 4) == 1 and dispatch_size(cfg, 100) == 5
    # a run resumed at step 7 catches up to a multiple of K, then steps K at a time, ending at `steps`
    assert list(chunks(7, 23, 5)) == [(7, 3), (10, 5), (15, 5), (20, 3)]


def test_k_steps_per_dispatch_equal_one_step_per_call_bit_for_bit(tmp_path):
    cfg = _cfg(weighting={"name": "mgda", "options": {}})
    one = train_and_evaluate(grid.train_config(cfg), str(tmp_path / "k1"), execution={"steps_per_dispatch": 1})
    many = train_and_evaluate(grid.train_config(cfg), str(tmp_path / "k3"), execution={"steps_per_dispatch": 3})
    assert many["execution"]["steps_per_dispatch"] == 3
    assert one["metrics"] == many["metrics"]
    a, b = _final_params(str(tmp_path / "k1"), cfg), _final_params(str(tmp_path / "k3"), cfg)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))
    assert results.read_metrics(str(tmp_path / "k1")) == results.read_metrics(str(tmp_path / "k3"))


RELATEDNESS = {"schedule": "joint", "sampling": "uniform", "anneal_to": 0.0, "task_learning_rates": {},
               "relatedness_every": 6, "affinity": True, "affinity_lr": 0.0}  # TAG's step: each member's own lr


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    """Seeds with their own data draws, learning rates and CAGrad's c: three members, one program,
    and the same three runs trained alone; every run logs its tasks' relatedness every 6 steps."""
    d = tmp_path_factory.mktemp("pop")
    members = [_cfg(seed=s, task_set__options__seed=s, optimizer__learning_rate=lr,
                    weighting={"name": "cagrad", "options": {"c": c}}, training=RELATEDNESS)
               for s, lr, c in [(0, 1e-3, 0.4), (1, 1e-2, 0.2), (2, 3e-3, 0.0)]]
    wds = [str(d / f"pop{i}") for i in range(3)]
    out = train_population([grid.train_config(c) for c in members], wds, [grid.task_set_for(c) for c in members])
    alone = [train_and_evaluate(grid.train_config(c), str(d / f"alone{i}"), task_set=grid.task_set_for(c))
             for i, c in enumerate(members)]
    return members, wds, out, alone, d


def test_a_population_equals_its_runs_trained_alone(population):
    members, wds, out, alone, d = population
    assert len({len(programs([{"run_id": str(i), "config": c} for i, c in enumerate(members)], 0,
                             grid.task_set_for))}) == 1  # one program
    for i, (p, a) in enumerate(zip(out, alone)):
        for split in ("metrics", "validation_metrics", "test_at_best_validation"):
            _close([p[split][t][m] for t in sorted(p[split]) for m in sorted(p[split][t])],
                   [a[split][t][m] for t in sorted(a[split]) for m in sorted(a[split][t])])
        _close(_final_params(wds[i], members[i]), _final_params(str(d / f"alone{i}"), members[i]))
        curves_p, curves_a = results.read_metrics(wds[i], "train"), results.read_metrics(str(d / f"alone{i}"), "train")
        assert [r["step"] for r in curves_p] == [r["step"] for r in curves_a] == [3, 6, 9, 12]
        _close([list(r["losses"].values()) for r in curves_p], [list(r["losses"].values()) for r in curves_a])
    # the members really differ (their own seed, data and hyperparameters), so the check above has teeth
    assert out[0]["metrics"] != out[1]["metrics"] != out[2]["metrics"]


def test_a_member_whose_loss_turns_nan_fails_alone(tmp_path):
    """SGD at learning rate 1e30 overflows at once; its neighbour at 0.01 trains as it would alone."""
    members = [_cfg(optimizer__name="sgd", optimizer__learning_rate=lr) for lr in (1e-2, 1e30)]
    out = train_population([grid.train_config(c) for c in members], [str(tmp_path / "a"), str(tmp_path / "b")],
                           [grid.task_set_for(c) for c in members])
    assert isinstance(out[1], NonFiniteLoss) and out[1].step <= 3
    alone = train_and_evaluate(grid.train_config(members[0]), task_set=grid.task_set_for(members[0]))
    _close([v for t in sorted(alone["metrics"]) for v in alone["metrics"][t].values()],
           [v for t in sorted(out[0]["metrics"]) for v in out[0]["metrics"][t].values()])


def test_an_interrupted_population_resumes_to_the_uninterrupted_numbers(tmp_path, population):
    members, wds, out, _, _ = population
    dirs = [str(tmp_path / f"m{i}") for i in range(3)]
    args = ([grid.train_config(c) for c in members], dirs, [grid.task_set_for(c) for c in members])
    with pytest.raises(Interrupted) as stop:
        train_population(*args, should_stop=lambda: True)
    assert stop.value.step == 3
    resumed = train_population(*args)
    for a, b in zip(resumed, out):
        assert a["metrics"] == b["metrics"]  # the same program from the same checkpoint: bit for bit
    assert results.read_metrics(dirs[1]) == results.read_metrics(wds[1])


def test_grouping_shares_programs_only_where_shapes_and_structure_agree():
    base = _cfg()
    runs = [{"run_id": f"r{i}", "config": c} for i, c in enumerate([
        base, _cfg(seed=1), _cfg(optimizer__learning_rate=0.5),            # one program
        _cfg(optimizer__weight_decay=0.1),                                  # weight decay adds a transform
        _cfg(task_set__options__n_train=128),                               # other data shapes
        _cfg(weighting={"name": "static", "options": {"weights": (1.0, 2.0)}}),
        _cfg(weighting={"name": "static", "options": {"weights": (2.0, 1.0)}}),  # static weights share
        _cfg(batch_size=16)])]                                              # other shapes
    groups = [[r["run_id"] for r in g] for g in programs(runs, 0, grid.task_set_for)]
    assert groups == [["r0", "r1", "r2"], ["r3"], ["r4"], ["r5", "r6"], ["r7"]]
    assert [[r["run_id"] for r in g] for g in programs(runs, 2, grid.task_set_for)][:2] == [["r0", "r1"], ["r2"]]
    assert all(len(g) == 1 for g in programs(runs, 1, grid.task_set_for))


def test_members_with_their_own_data_are_capped_by_on_device_max_bytes():
    """5 seeds, each its own data draw: the stacked train splits of a program fit on_device_max_bytes."""
    one = sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(dict(grid.task_set_for(_cfg()).split("train"))))
    runs = [{"run_id": f"r{s}", "config": _cfg(seed=s, task_set__options__seed=s, on_device_max_bytes=int(2.5 * one))}
            for s in range(5)]
    assert [len(g) for g in programs(runs, 0, grid.task_set_for)] == [2, 2, 1]
    shared = [{"run_id": f"r{s}", "config": _cfg(seed=s, on_device_max_bytes=int(2.5 * one))} for s in range(5)]
    assert [len(g) for g in programs(shared, 0, grid.task_set_for)] == [5]  # one copy of the data serves all


def test_launch_with_runs_per_program_writes_the_same_run_directories(tmp_path):
    c = tiny(seeds=(0, 1))
    c.parallel.runs_per_program = 0
    out = runner.launch(c, str(tmp_path), show_progress=False)
    assert sorted(out["summaries"]) == sorted(r["run_id"] for r in grid.expand(tiny(seeds=(0, 1))))
    for rid, s in out["summaries"].items():
        assert s["status"] == results.DONE and s["execution"]["program_runs"] == 2
        assert results.read_config(os.path.join(str(tmp_path), rid)) == s["config"]


def test_bad_parallel_field_is_one_line_naming_it():
    c = tiny()
    c.parallel.runs_per_program = -1
    with pytest.raises(grid.ConfigError, match=r"config.parallel.runs_per_program=-1 must be an int >= 0"):
        grid.check_experiment(c)


def test_a_slurm_job_of_several_tasks_asks_for_them_and_joins_them_before_training(monkeypatch, tmp_path):
    """--slurm_tasks=2: submitit gets tasks_per_node=2 and the job body initialises jax.distributed first."""
    import submitit

    seen = {}

    class FakeExecutor:
        cluster = "fake"

        def __init__(self, folder, cluster=None):
            pass

        def update_parameters(self, **params):
            seen["params"] = params

        def submit(self, fn, *args):
            seen["fn"] = fn
            return type("Job", (), {"job_id": 1})()

    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    runner._submit_slurm([[{"run_id": "r"}]], str(tmp_path), False, {"tasks": 2, "gpus": 2}, 1, "x", (), False,
                         lambda *a: None)
    assert seen["params"]["tasks_per_node"] == 2 and seen["fn"] is runner.run_many_spanning
    runner._submit_slurm([[{"run_id": "r"}]], str(tmp_path), False, {}, 1, "x", (), False, lambda *a: None)
    assert "tasks_per_node" not in seen["params"] and seen["fn"] is runner.run_many


CNN = [{"kind": "conv", "features": 4, "kernel": 5}, {"kind": "conv", "features": 6, "kernel": 3},  # 'patches', 'eigen'
       {"kind": "dense", "features": 10}]


def test_a_conv_population_maps_its_members_and_equals_its_runs_alone(tmp_path):
    """On a CPU a convolutional model's members run one after another in a ``lax.map`` (vmapped
    convolutions become grouped ones there), and its 'auto' convolutions ('patches', 'eigen') run
    inside that loop and inside K-step scans: the numbers equal the runs trained alone."""
    from mtlx.parallel.program import member_axis
    from mtlx.train import build_run

    members = [_cfg(seed=s, task_set={"name": "helpers:image_set", "options": {"n": 16, "seed": s}},
                    backbone={"blocks": CNN, "head_hidden": []}) for s in (0, 1)]
    cfgs = [grid.train_config(c) for c in members]
    run0 = build_run(cfgs[0], grid.task_set_for(members[0]))
    assert member_axis(run0, None) == ("map" if jax.default_backend() == "cpu" else "vmap")
    assert dispatch_size(cfgs[0]) == 3  # no conv here keeps autodiff's XLA gradient: K from the cadences
    wds = [str(tmp_path / f"pop{i}") for i in range(2)]
    out = train_population(cfgs, wds, [grid.task_set_for(c) for c in members])
    for i, c in enumerate(members):
        a = train_and_evaluate(cfgs[i], str(tmp_path / f"alone{i}"), task_set=grid.task_set_for(c))
        _close([out[i]["metrics"][t][m] for t in sorted(a["metrics"]) for m in sorted(a["metrics"][t])],
               [a["metrics"][t][m] for t in sorted(a["metrics"]) for m in sorted(a["metrics"][t])])
        _close(_final_params(wds[i], c), _final_params(str(tmp_path / f"alone{i}"), c))
    assert out[0]["metrics"] != out[1]["metrics"]


def test_a_population_logs_each_members_relatedness_as_its_run_alone(population):
    """``training.relatedness_every`` in a program: every member's train records carry its own
    relatedness (cosines, TAG affinity at its own learning rate), as the member's run alone writes."""
    members, wds, out, alone, d = population
    for i in range(len(members)):
        pop = {r["step"]: r["relatedness"] for r in results.read_metrics(wds[i], "train") if "relatedness" in r}
        solo = {r["step"]: r["relatedness"] for r in results.read_metrics(str(d / f"alone{i}"), "train")
                if "relatedness" in r}
        assert sorted(pop) == sorted(solo) == [6, 12]
        for s in pop:
            for key in ("cosine", "affinity", "magnitude_similarity"):
                _close(pop[s][key], solo[s][key])
    last = [results.read_metrics(w, "train")[-1]["relatedness"]["affinity"] for w in wds]
    assert last[0] != last[1]  # the members' own measurements, not one copied
