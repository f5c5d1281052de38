"""Fully-adaptive feature sharing (Lu et al. 2017): the affinity, the grouping loss, the tree, widening.

Definitions are computed here independently: the affinity by counting examples, the grouping's optimum
by brute force over every labelling of the branches, the architectures' equivalences against hard
sharing and single_task. Function preservation is checked to float rounding (rtol 1e-6): a block
copied into n branches runs as one vmapped (batched) matmul where the shared block ran an unbatched
one, and XLA may round the two differently (1 ulp seen on CPU); the copies' weights are bit-identical.
"""

import itertools
import json
import os

import jax
import numpy as np
import pytest

from mtlx import fafs, results
from mtlx.architectures import build_model, param_count
from mtlx.architectures import fafs as arch
from mtlx.data import get_task_set
from mtlx.tasks import TaskSet
from tests import helpers

BLOCKS = [{"kind": "dense", "features": 6}, {"kind": "dense", "features": 5}, {"kind": "dense", "features": 4}]


@pytest.fixture(scope="module")
def task_set():
    return get_task_set("synthetic_classification", num_tasks=4, num_classes=3, dim=8, n_train=64,
                        n_validation=32, n_test=32, groups=2)


@pytest.fixture(scope="module")
def x(task_set):
    return task_set.split("train")["inputs"][:7]


def _model(task_set, x, name, **options):
    m = build_model(name, task_set, BLOCKS, **options)
    return m, m.init(jax.random.PRNGKey(3), x)["params"]


def _shapes(task_set, x, name, **options):
    """The parameter shapes of architecture ``name`` (traced, nothing computed)."""
    return jax.eval_shape(build_model(name, task_set, BLOCKS, **options).init, jax.random.PRNGKey(0), x)["params"]


@pytest.fixture(scope="module")
def thin(task_set, x):
    return _model(task_set, x, "fafs")


def _predict(m, p, x):
    out = m.apply({"params": p}, x)[0]
    return np.concatenate([np.asarray(out[k]).ravel() for k in sorted(out)])


# --------------------------------------------------------------------------- affinity


def test_affinity_is_the_probability_of_simultaneously_easy_or_difficult():
    margins = np.array([[0.1, 2.0, 0.5], [0.9, 0.2, 0.4], [0.3, 1.5, 3.0], [2.0, 0.1, 0.2],
                        [0.2, 0.3, 0.1], [1.0, 1.0, 0.3]])
    # by hand: task means 0.75, 0.85, 0.75; difficult = margin >= mean
    e = np.array([[0, 1, 0], [1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 1, 0]], bool)
    np.testing.assert_array_equal(fafs.difficult(margins), e)
    A = fafs.task_affinity(fafs.difficult(margins))
    for i, j in itertools.product(range(3), repeat=2):
        both = sum(1 for n in range(6) if e[n, i] == e[n, j])
        assert A[i, j] == pytest.approx(both / 6)
    assert A[0, 1] == pytest.approx(2 / 6) and A[1, 2] == pytest.approx(4 / 6)


def test_affinity_counts_only_examples_labelled_for_both_tasks():
    margins = np.array([[1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    w = np.array([[1, 1], [1, 1], [1, 1], [1, 0]])
    e = fafs.difficult(margins, w)  # task 1's mean over its 3 labelled examples: 1/3
    np.testing.assert_array_equal(e[:3], [[True, True], [False, False], [True, False]])
    assert fafs.task_affinity(e, w)[0, 1] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- the grouping loss


def _paper_loss(A, members, labels, cost, pools):
    """Lu et al.'s loss written out: branch affinity (mean over one branch's tasks of the least affine
    task of the other, symmetrised), per-group separation 1 - mean_a min_b A_b, complexity (d-1) c 2^p."""
    def tilde(k, m):
        return sum(min(A[i][j] for j in members[m]) for i in members[k]) / len(members[k])
    groups = {}
    for k, g in enumerate(labels):
        groups.setdefault(g, []).append(k)
    seps = [1 - sum(min((tilde(a, b) + tilde(b, a)) / 2 for b in g) for a in g) / len(g) for g in groups.values()]
    return sum(seps) / len(seps) + (len(groups) - 1) * cost * 2 ** pools


@pytest.mark.parametrize("seed,cost,max_groups,members", [
    (0, 0.05, 4, [[0], [1], [2], [3]]), (1, 0.2, 4, [[0], [1], [2], [3]]), (2, 0.0, 2, [[0], [1], [2], [3]]),
    (3, 0.1, 3, [[0, 1], [2], [3, 4], [5]]), (4, 0.02, 4, [[0], [1, 2, 3], [4], [5]])])
def test_grouping_minimises_the_paper_loss_over_every_partition(seed, cost, max_groups, members):
    rng = np.random.default_rng(seed)
    T = max(t for m in members for t in m) + 1
    A = rng.uniform(0.3, 1.0, (T, T))
    A = (A + A.T) / 2
    np.fill_diagonal(A, 1.0)
    Ab = fafs.branch_affinity(A, members)
    best = fafs.best_grouping(Ab, max_groups, cost, pools_above=1)
    brute = min(_paper_loss(A, members, lab, cost, 1) for lab in itertools.product(range(4), repeat=4)
                if len(set(lab)) <= max_groups)
    assert len(set(best)) <= max_groups
    assert _paper_loss(A, members, best, cost, 1) == pytest.approx(brute)
    assert fafs.grouping_loss(Ab, best, cost, 1)[0] == pytest.approx(brute)


def test_set_partitions_are_the_bell_numbers():
    assert [len(list(fafs.set_partitions(n))) for n in range(1, 7)] == [1, 2, 5, 15, 52, 203]
    assert len(list(fafs.set_partitions(5, 2))) == 16  # S(5,1) + S(5,2)


def test_greedy_grouping_beyond_the_exact_range_finds_planted_groups():
    A = np.full((12, 12), 0.2) + 0.7 * np.kron(np.eye(3), np.ones((4, 4)))
    np.fill_diagonal(A, 1.0)
    labels = fafs.best_grouping(fafs.branch_affinity(A, [[t] for t in range(12)]), 12, 0.05)
    assert labels == tuple(t // 4 for t in range(12))
    assert len(set(fafs.best_grouping(fafs.branch_affinity(A, [[t] for t in range(12)]), 2, 0.05))) <= 2


# --------------------------------------------------------------------------- the tree


def test_every_task_apart_is_single_task_and_all_shared_is_hard(task_set, x, thin):
    apart, single = _shapes(task_set, x, "fafs", branches=[[0, 1, 2, 3]] * 3), _shapes(task_set, x, "single_task")
    assert jax.tree_util.tree_structure(apart) == jax.tree_util.tree_structure(single)
    assert param_count(apart) == param_count(single)
    hard = _shapes(task_set, x, "hard", split=-1)
    assert jax.tree_util.tree_structure(thin[1]) == jax.tree_util.tree_structure(hard)
    assert param_count(thin[1]) == param_count(hard)
    np.testing.assert_array_equal(_predict(thin[0], thin[1], x),
                                  _predict(build_model("hard", task_set, BLOCKS, split=-1), thin[1], x))
    assert thin[0].shares_representation() and not build_model("fafs", task_set, BLOCKS,
                                                               branches=[[0] * 4, [0, 0, 1, 1], [0] * 2 + [1] * 2]
                                                               ).shares_representation()


def test_a_tree_must_nest(task_set):
    with pytest.raises(ValueError, match=r"architecture.options.branches=.*is not a tree"):
        build_model("fafs", task_set, BLOCKS, branches=[[0, 0, 1, 1], [0, 1, 1, 2], [0, 1, 2, 3]])
    with pytest.raises(ValueError, match=r"branches=.*must give 3 rows"):
        build_model("fafs", task_set, BLOCKS, branches=[[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"grow=.*unknown keys \['cost'\]"):
        build_model("fafs", task_set, BLOCKS, grow={"cost": 1})


def test_split_block_groups_the_branches_at_the_junction():
    thin = arch.thin_tree(4, 3)
    top = fafs.split_block(thin, 2, (1, 1, 0, 0))
    assert top == ((0,) * 4, (0,) * 4, (0, 0, 1, 1))
    assert fafs.elements_at(top, 1) == [[0, 1], [2, 3]]
    assert fafs.split_block(top, 1, (0, 0)) == top[:1] + ((0,) * 4, (0, 0, 1, 1))[:1] + top[2:]
    assert fafs.split_block(top, 1, (0, 1)) == ((0,) * 4, (0, 0, 1, 1), (0, 0, 1, 1))


@pytest.mark.parametrize("new", [
    ((0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 1, 1)),    # one round: the top split (hard path -> gathered path)
    ((0, 0, 0, 0), (0, 0, 1, 1), (0, 1, 2, 3)),    # block 1 split, the top per task
    ((0, 0, 1, 1), (0, 0, 1, 1), (0, 1, 2, 2)),    # every block widened at once
])
def test_children_copied_from_the_parent_compute_what_the_thin_network_did(task_set, x, thin, new):
    pw = fafs.widen_params(thin[1], arch.thin_tree(4, 3), new)
    wide = build_model("fafs", task_set, BLOCKS, branches=[list(r) for r in new])
    shapes = _shapes(task_set, x, "fafs", branches=[list(r) for r in new])
    assert jax.tree_util.tree_structure(pw) == jax.tree_util.tree_structure(shapes)
    assert jax.tree_util.tree_map(np.shape, pw) == jax.tree_util.tree_map(np.shape, shapes)
    np.testing.assert_allclose(_predict(wide, pw, x), _predict(thin[0], thin[1], x), rtol=1e-6, atol=1e-7)


def _three_tasks(ts):
    """A helper set with its first task again as a third one (a tree needs 3 tasks to be other than hard)."""
    a = ts.tasks[0]
    split = ts.splits["train"]
    split = {"inputs": split["inputs"], "targets": {**split["targets"], "again": split["targets"][a.name]},
             "weights": {**split["weights"], "again": split["weights"][a.name]}}
    return TaskSet(ts.name, (*ts.tasks[:2], type(a)("again", a.kind, a.num_outputs)), ts.input_shape, ts.input_kind,
                   vocab_size=ts.vocab_size, splits={"train": split})


@pytest.mark.parametrize("backbone", ["bilstm"])  # token inputs (a branched embed), tagging heads; the MLP: above
def test_widening_preserves_the_function_on_every_backbone(backbone):
    blocks, make = helpers.BACKBONES[backbone]
    ts = _three_tasks(make(n=6))
    x = ts.splits["train"]["inputs"]
    thin = build_model("fafs", ts, blocks)
    pt = jax.jit(thin.init)(jax.random.PRNGKey(1), x)["params"]  # whole programs: an LSTM op by op compiles slower
    new = ((0, 0, 0), (0, 0, 1), (0, 1, 2))
    wide = build_model("fafs", ts, blocks, branches=[list(r) for r in new])
    pw = fafs.widen_params(pt, arch.thin_tree(3, 3), new)
    assert param_count(pw) == param_count(jax.eval_shape(wide.init, jax.random.PRNGKey(0), x)["params"])
    run = lambda m, p: np.concatenate([np.ravel(v) for _, v in sorted(jax.jit(m.apply)({"params": p}, x)[0].items())])
    np.testing.assert_allclose(run(wide, pw), run(thin, pt), rtol=1e-5, atol=1e-6)


def test_widening_twice_preserves_the_function(task_set, x, thin):
    t1 = ((0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 1, 1))
    t2 = ((0, 0, 0, 0), (0, 0, 1, 1), (0, 0, 1, 1))
    m1 = build_model("fafs", task_set, BLOCKS, branches=[list(r) for r in t1])
    p1 = fafs.widen_params(thin[1], arch.thin_tree(4, 3), t1)
    p1 = jax.tree_util.tree_map(lambda w: w + 0.01 * np.arange(w.size).reshape(w.shape) % 0.3, p1)  # branches differ
    m2 = build_model("fafs", task_set, BLOCKS, branches=[list(r) for r in t2])
    np.testing.assert_allclose(_predict(m2, fafs.widen_params(p1, t1, t2), x), _predict(m1, p1, x), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="merges branches"):
        fafs.widen_params(p1, t1, arch.thin_tree(4, 3))


def test_a_growing_model_refuses_the_plain_training_loop(task_set, x, thin):
    m = build_model("fafs", task_set, BLOCKS, grow={"phase_steps": 5})
    with pytest.raises(ValueError, match="mtlx.fafs.grow_and_evaluate"):
        m.apply({"params": thin[1]}, x)


# --------------------------------------------------------------------------- the procedure


def test_experiment_smoke_grows_and_logs_its_decisions(tmp_path):
    from experiments import fafs_synthetic

    cfg = fafs_synthetic.get_config("smoke")
    cfg.architectures = cfg.architectures[:1]
    cfg.run.backbone.blocks = [{"kind": "dense", "features": 8}] * 2
    cfg.run.update({"steps": 6, "eval_every": 6, "log_every": 1, "batch_size": 16})
    cfg.run.task_set.options.update(n_train=48, n_validation=16, n_test=16)
    cfg.architectures[0]["options"]["grow"].update(phase_steps=2, affinity_examples=48, branch_cost=0.0)
    from mtlx import runner

    runner.launch(cfg, workdir=str(tmp_path), show_progress=False, log=lambda _: None)
    (s,) = [results.read_summary(os.path.join(str(tmp_path), d)) for d in os.listdir(str(tmp_path))
            if os.path.isdir(os.path.join(str(tmp_path), d))]
    assert s["status"] == results.DONE and s["steps"] == 6
    rounds = s["fafs"]["rounds"]
    assert [r["block"] for r in rounds] == [1, 0]  # cost 0: every round splits every branch apart
    assert s["fafs"]["groups"] == [[[t] for t in range(6)]] * 2
    run_dir = os.path.join(str(tmp_path), s["run_id"])
    recs = results.read_metrics(run_dir, fafs.RECORD)
    assert [r["step"] for r in recs] == [2, 4] and len(recs[0]["task_affinity"]) == 6
    assert len(results.read_metrics(run_dir, "train")) == 6 and len(results.read_metrics(run_dir, "eval")) == 1
    assert json.loads(json.dumps(s))["fafs"]["branches"][-1] == list(range(6))
