"""Task relatedness (mtlx.relatedness): the probe's cosine matrix is the one of separate
``jax.grad`` calls per task; TAG's lookahead affinity is its definition; on a synthetic set with
known task groups the measured affinity ranks within-group pairs above across-group pairs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from fixtures_train import MLP, jit, tiny
from mtlx import losses as losses_lib
from mtlx import relatedness
from mtlx.architectures import build_model, shared_mask
from mtlx.data.synthetic import synthetic_classification
from mtlx.layers import Dense
from mtlx.optim import make_optimizer
from mtlx.train import init_state, make_train_step
from mtlx.weighting import get_weighting


def _task_loss(model, task_list, t, batch):
    def f(mparams):
        preds, _ = model.apply({"params": mparams}, batch["inputs"])
        return losses_lib.task_losses(task_list, preds, batch)[t]
    return f


def _shared_grads(model, ts, mparams, batch):
    """(T, P): task t's gradient of the shared parameters, from its own ``jax.grad`` call."""
    mask = shared_mask(model, mparams)
    rows = []
    for t in range(ts.num_tasks):
        g = jit(jax.grad(_task_loss(model, ts.tasks, t, batch)))(mparams)
        shared = [x for x, s in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(mask)) if s]
        rows.append(np.concatenate([np.ravel(x) for x in shared]).astype(np.float64))
    return np.stack(rows)


@pytest.fixture(scope="module")
def tiny_probe():
    _, ts, batch = tiny("mlp")
    model = build_model("hard", ts, MLP)
    mparams = model.init(jax.random.PRNGKey(3), batch["inputs"])["params"]
    probe = jit(relatedness.make_probe(model, ts.tasks, affinity=True, affinity_lr=0.5))
    return model, ts, batch, mparams, probe(mparams, batch)


def test_cosine_matrix_equals_separate_grads(tiny_probe):
    model, ts, batch, mparams, out = tiny_probe
    G = _shared_grads(model, ts, mparams, batch)
    norms = np.linalg.norm(G, axis=1)
    cos = G @ G.T / np.outer(norms, norms)
    np.testing.assert_allclose(out["cosine"], cos, atol=2e-5)
    np.testing.assert_allclose(out["grad_norm"], norms, rtol=1e-4)
    iu = np.triu_indices(len(G), 1)
    assert float(out["conflict_rate"]) == pytest.approx(np.mean(cos[iu] < 0))
    mag = 2 * np.outer(norms, norms) / (norms[:, None] ** 2 + norms[None, :] ** 2)
    np.testing.assert_allclose(out["magnitude_similarity"], mag, rtol=1e-4)


def test_lookahead_affinity_is_tags_definition(tiny_probe):
    """Fifty et al. 2021, Eq. 2: Z[i, j] = 1 - L_j(theta_s - lr g_i^s, theta_j) / L_j(theta)."""
    model, ts, batch, mparams, out = tiny_probe
    G = _shared_grads(model, ts, mparams, batch)
    mask = shared_mask(model, mparams)
    flat, unravel = ravel_pytree(mparams)
    is_shared = ravel_pytree(jax.tree_util.tree_map(lambda x, s: jnp.full(x.shape, s), mparams, mask))[0]
    Z = np.zeros((ts.num_tasks, ts.num_tasks))
    loss = [jit(_task_loss(model, ts.tasks, j, batch)) for j in range(ts.num_tasks)]
    for i in range(ts.num_tasks):
        step = np.zeros(flat.shape, np.float64)
        step[np.asarray(is_shared)] = G[i]
        ahead = unravel(flat - 0.5 * jnp.asarray(step, flat.dtype))
        for j in range(ts.num_tasks):
            Z[i, j] = 1 - float(loss[j](ahead)) / float(loss[j](mparams))
    np.testing.assert_allclose(out["affinity"], Z, atol=1e-5)


def test_gram_stats_of_a_zero_gradient():
    out = jit(relatedness.gram_stats)(jnp.array([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_array_equal(out["cosine"], [[1.0, 0.0], [0.0, 1.0]])
    assert float(out["conflict_rate"]) == 0.0


def test_affinity_ranks_within_group_pairs_first():
    """Six tasks in two groups of three, each group's labels read from its own shared projection
    (``groups=2``, shared_fraction 1): over a short joint training (30 steps) the summed TAG affinity and
    gradient cosine rank within-group pairs above across-group pairs - their mean is higher and a
    random within-group pair beats a random across-group pair with probability >= 0.7 (the
    Mann-Whitney AUC). Single pairs may still disagree: tasks of one group read the same features
    through their own random read-outs, which need not pull the trunk the same way. (Data and
    init seeds 0-4 all pass; the lowest AUC among them, 0.72, is seed 4's affinity.)"""
    ts = synthetic_classification(num_tasks=6, groups=2, shared_fraction=1.0, dim=16, shared_dim=4,
                                  private_dim=4, n_train=512, n_validation=0, n_test=0, label_noise=0.0, seed=0)
    model = build_model("hard", ts, (Dense(16), Dense(16)))
    w, tx = get_weighting("equal"), make_optimizer("adam", 1e-2)
    train = ts.split("train")
    state = init_state(model, w, tx, 6, train["inputs"][:64], 0)
    step = jit(make_train_step(model, ts.tasks, w, tx))
    probe = jit(relatedness.make_probe(model, ts.tasks, affinity=True, affinity_lr=0.1))
    rng = np.random.default_rng(0)
    sums = {"affinity": 0.0, "cosine": 0.0}
    for _ in range(30):  # measured on each step's batch before the step (TAG's protocol)
        idx = rng.choice(512, 128, replace=False)
        batch = jax.tree_util.tree_map(lambda a: a[idx], dict(train))
        out = probe(state.params["model"], batch)
        sums = {key: v + np.asarray(out[key]) for key, v in sums.items()}
        state, _ = step(state, batch)
    group = np.asarray(ts.info["groups"])
    iu = np.triu_indices(6, 1)
    same = (group[:, None] == group[None, :])[iu]
    for key, m in sums.items():
        pairs = (m + m.T)[iu]
        within, across = pairs[same], pairs[~same]
        auc = np.mean(within[:, None] > across[None, :])
        assert within.mean() > across.mean() and auc >= 0.7, (key, within, across)


def test_the_loop_logs_relatedness_at_its_steps(tmp_path):
    """A run with ``training.relatedness_every`` writes the relatedness into the train records of
    those steps (and the last), with cosines on [-1, 1] and a unit diagonal; the figure draws them
    and its grouping suggestion lands beside it."""
    import json
    import types

    import ml_collections

    from mtlx.grid import run_config
    from mtlx.report.plotting import STYLE, plt
    from mtlx.report.relatedness import figure_relatedness, relatedness_applies
    from mtlx.results import read_metrics
    from mtlx.train import train_and_evaluate

    cfg = run_config()
    cfg.task_set.options = {"num_tasks": 3, "dim": 8, "n_train": 64, "n_validation": 16, "n_test": 16}
    cfg.backbone.blocks = [{"kind": "dense", "features": 8}]
    cfg.architecture.name, cfg.architecture.options = "hard", {"split": -1}
    cfg.steps, cfg.batch_size, cfg.eval_every, cfg.log_every, cfg.checkpoint_every = 6, 16, 6, 2, 6
    cfg.training = ml_collections.ConfigDict({"relatedness_every": 4})
    train_and_evaluate(cfg, str(tmp_path / "run"))
    recs = {r["step"]: r for r in read_metrics(str(tmp_path / "run"), "train")}
    assert sorted(s for s, r in recs.items() if "relatedness" in r) == [4, 6]
    rel = recs[6]["relatedness"]
    cos = np.asarray(rel["cosine"])
    assert rel["tasks"] == ["task0", "task1", "task2"] and "affinity" not in rel
    np.testing.assert_allclose(np.diag(cos), 1.0) and np.testing.assert_array_less(np.abs(cos), 1 + 1e-6)
    norms = np.asarray([rel["grad_norm"][t] for t in rel["tasks"]])
    np.testing.assert_allclose(np.asarray(rel["magnitude_ratio"], float), norms[:, None] / norms[None, :], rtol=1e-6)
    runs = [{"dir": str(tmp_path / "run"), "status": "done", "sweep": {}, "architecture": "hard", "weighting": "equal"}]
    ctx = types.SimpleNamespace(runs=runs)
    (key, stem, arg), = relatedness_applies(ctx)
    with plt().rc_context(STYLE):
        figure_relatedness(ctx, str(tmp_path / "fig" / f"{stem}.png"), arg)
    suggestion = json.loads((tmp_path / "fig" / f"{stem}.json").read_text())
    assert (tmp_path / "fig" / f"{stem}.png").exists() and suggestion["steps"] == [4, 6]
    assert sorted(sum(suggestion["cosine"]["suggested_groups"], [])) == ["task0", "task1", "task2"]


def test_best_partition_maximises_within_group_affinity():
    """Against its definition: every partition of 5 tasks scored by the sum of S_ij + S_ji over
    within-group pairs; the best one found by brute force over all label assignments."""
    import itertools

    from mtlx.report.relatedness import best_partition, set_partitions

    rng = np.random.default_rng(0)
    S = rng.standard_normal((5, 5))
    score = lambda lab: sum(S[i, j] + S[j, i] for i in range(5) for j in range(i + 1, 5) if lab[i] == lab[j])
    brute = max(score(lab) for lab in itertools.product(range(5), repeat=5))
    groups, best = best_partition(S)
    assert best == pytest.approx(brute)
    assert sum(1 for _ in set_partitions(5)) == 52  # Bell(5)
    two = np.kron(np.eye(2), np.ones((3, 3))) - 0.5  # two blocks of three: +0.5 within, -0.5 across
    assert best_partition(two)[0] == [[0, 1, 2], [3, 4, 5]]
    assert best_partition(two, 1)[0] == [[0, 1, 2, 3, 4, 5]]


def test_the_early_grouping_reads_the_early_steps_only():
    """The "early" suggestion averages the first EARLY_FRACTION of the logged steps and nothing after:
    early matrices pair tasks {0,1},{2,3}, later ones {0,2},{1,3}, outweighing them over the run."""
    from mtlx.report.relatedness import EARLY_FRACTION, early_steps, grouping

    a = np.kron(np.eye(2), np.ones((2, 2))) - 0.5
    b = a[np.ix_([0, 2, 1, 3], [0, 2, 1, 3])]
    n = 10
    k = early_steps(n)
    assert k == round(EARLY_FRACTION * n) and early_steps(1) == 1
    d = {"tasks": ["t0", "t1", "t2", "t3"], "steps": np.arange(1, n + 1) * 5, "n": 2,
         "cosine": np.stack([a] * k + [b] * (n - k))}
    g = grouping(d)
    assert g["early_steps"] == [5 * i for i in range(1, k + 1)]
    assert g["cosine"]["early"]["suggested_groups"] == [["t0", "t1"], ["t2", "t3"]]
    assert g["cosine"]["suggested_groups"] == [["t0", "t2"], ["t1", "t3"]]

