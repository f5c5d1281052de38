"""Auto-Lambda (Liu, Johns & Davison 2022; mtlx.weighting.auto_lambda) against its definition:
the meta-gradient of the primary tasks' meta-batch loss after a virtual SGD step, checked against
a finite difference (and autodiff) of that loss built by hand; the one train step's lambda update
(Adam's first step) and model update (SGD on the updated lambda); lambda rising for an auxiliary
task identical to the primary one and falling behind for a conflicting one; the meta-batch stream
(pure in seed and step, so a resumed run reads the same); a population of two seeds."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures_train import jit
from mtlx import grid, results
from mtlx.architectures import build_model
from mtlx.data import pipeline
from mtlx.optim import make_optimizer
from mtlx.parallel.population import programs
from mtlx.parallel.program import train_population
from mtlx.tasks import Task, TaskSet
from mtlx.train import batch_order_of, build_run, init_state, make_train_step, step_learning_rate
from mtlx.weighting import WEIGHTINGS, Lookahead, get_weighting, on_jacobian
from mtlx.weighting.auto_lambda import lookahead_step_size, meta_gradient
from tiny_grid import tiny

# --------------------------------------------------------------------------- the meta-gradient, by hand


def _hand_problem(T=3, d=4, h=3, n=6):
    """A one-hidden-layer tanh network with T linear outputs, squared-error task losses and an L2
    penalty on the hidden layer; a training batch and an independent meta batch (float64)."""
    rng = np.random.default_rng(0)
    params = {"W": jnp.asarray(rng.standard_normal((d, h)) * 0.7), "V": jnp.asarray(rng.standard_normal((T, h)))}
    batch = (jnp.asarray(rng.standard_normal((n, d))), jnp.asarray(rng.standard_normal((n, T))))
    meta = (jnp.asarray(rng.standard_normal((n, d))), jnp.asarray(rng.standard_normal((n, T))))

    def losses_at(p, b):
        x, y = b
        pred = jnp.tanh(x @ p["W"]) @ p["V"].T
        return jnp.mean((pred - y) ** 2, axis=0), 0.01 * jnp.sum(p["W"] ** 2)

    return params, batch, meta, losses_at


def test_meta_gradient_is_the_derivative_of_the_lookahead_meta_loss():
    """dM/dlambda with M(lambda) = sum_{j primary} L_j(theta - alpha grad[sum_i lambda_i L_i + penalty](theta);
    meta batch), written out here: a central difference and autodiff through the virtual step agree with
    meta_gradient (float64)."""
    alpha, lam, primary = 0.3, np.array([0.4, -0.2, 0.9]), np.array([1.0, 0.0, 1.0])
    with jax.enable_x64(True):
        params, batch, meta, losses_at = _hand_problem()
        weighted = lambda p, w: jnp.dot(w, losses_at(p, batch)[0]) + losses_at(p, batch)[1]  # noqa: E731

        def M(w):
            g = jax.grad(weighted)(params, w)
            theta1 = jax.tree_util.tree_map(lambda p, d: p - alpha * d, params, g)
            return jnp.dot(primary, losses_at(theta1, meta)[0])

        la = Lookahead(losses_at, lambda w: jax.grad(weighted)(params, w), params, batch, meta, ("a", "b", "c"))
        value, grad = jax.jit(lambda w: meta_gradient(la, w, jnp.asarray(primary), alpha))(jnp.asarray(lam))
        eps = 1e-5
        at = jax.jit(jax.vmap(M))(jnp.asarray(np.concatenate([lam + eps * np.eye(3), lam - eps * np.eye(3), [lam]])))
        fd = (at[:3] - at[3:6]) / (2 * eps)
        np.testing.assert_allclose(float(value), float(at[6]), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(grad), np.asarray(fd), rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(np.asarray(grad), np.asarray(jax.jit(jax.grad(M))(jnp.asarray(lam))), rtol=1e-10)
        assert np.all(np.abs(np.asarray(grad)) > 1e-3)  # every task moves M here (the check has teeth)


# --------------------------------------------------------------------------- the train step


ALPHA, ETA, META_LR, B = 0.05, 0.1, 0.01, 8


def _regression_set(n=32, dim=4, names=("r0", "r1", "r2"), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    split = {"inputs": x, "targets": {t: rng.standard_normal(n).astype(np.float32) for t in names},
             "weights": {t: np.ones(n, np.float32) for t in names}}
    return TaskSet("regression", tuple(Task(t, "regression", 1) for t in names), (dim,), "dense",
                   splits={"train": split})


@pytest.fixture(scope="module")
def one_step():
    """One train step of Auto-Lambda (primary r0, r2) on hard sharing with SGD, on the first
    (training, meta) batch pair of the order; what it needs to be checked by hand."""
    ts = _regression_set()
    model = build_model("hard", ts, [{"kind": "dense", "features": 4}] * 2)
    w = get_weighting("auto_lambda", primary=["r0", "r2"], lr=META_LR)
    tx = make_optimizer("sgd", ETA)
    state = jit(lambda x: init_state(model, w, tx, 3, x, 0))(ts.splits["train"]["inputs"][:2])  # one program
    batch = pipeline.gather(ts.splits["train"], pipeline.WithMeta(32, B, seed=0)(0))
    new, metrics = jit(make_train_step(model, ts.tasks, w, tx, learning_rate=ALPHA))(state, batch)
    return ts, model, state, batch, new, metrics


def _losses(model, ts, p, b):
    """The tasks' mean squared errors, by hand."""
    preds = model.apply({"params": p}, b["inputs"])[0]
    return jnp.stack([jnp.mean((preds[t.name].reshape(-1) - b["targets"][t.name]) ** 2) for t in ts.tasks])


def test_the_step_takes_the_meta_gradient_on_its_meta_batch_then_steps_on_the_new_lambda(one_step):
    ts, model, state, batch, new, metrics = one_step
    main = {k: v for k, v in batch.items() if k != pipeline.META}
    theta, lam0, primary = state.params["model"], np.full(3, 0.1, np.float32), jnp.array([1.0, 0.0, 1.0])

    def M(lam):
        g = jax.grad(lambda p: jnp.dot(lam, _losses(model, ts, p, main)))(theta)
        return jnp.dot(primary, _losses(model, ts, jax.tree_util.tree_map(lambda p, d: p - ALPHA * d, theta, g),
                                        batch[pipeline.META]))

    h, E = 0.02, np.eye(3, dtype=np.float32)
    at = jit(jax.vmap(M))(jnp.asarray(np.concatenate([lam0 + h * E, lam0 - h * E])))
    fd = np.asarray(at[:3] - at[3:]) / (2 * h)
    got = np.asarray(metrics["info"]["meta_grad"])
    np.testing.assert_allclose(got, fd, rtol=5e-3, atol=1e-6)
    assert np.all(np.abs(got) > 1e-4)
    # lambda: Adam's first step, -lr m_hat / (sqrt(v_hat) + eps) = -lr g / (|g| + eps)
    lam1 = lam0 - META_LR * got / (np.abs(got) + 1e-8)
    np.testing.assert_allclose(np.asarray(metrics["weights"]), lam1, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new.wstate.lam), lam1, rtol=1e-6)
    # the model: one SGD step on sum_i lambda1_i L_i (the updated lambda, as the official code does)
    g = jax.grad(lambda p: jnp.dot(jnp.asarray(lam1), _losses(model, ts, p, main)))(theta)
    want = jax.tree_util.tree_map(lambda p, d: p - ETA * d, theta, g)
    for a, b in zip(jax.tree_util.tree_leaves(new.params["model"]), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    aval = lambda t: jax.tree_util.tree_map(lambda a: (a.shape, a.dtype, getattr(a, "weak_type", False)), t)  # noqa: E731
    assert aval(new) == aval(state)  # the state keeps its shapes and types: jit compiles the step once


def test_a_batch_without_its_meta_batch_and_an_unknown_primary_task_are_refused(one_step):
    ts, model, state, batch, _, _ = one_step
    w = get_weighting("auto_lambda", lr=META_LR)
    step = make_train_step(model, ts.tasks, w, make_optimizer("sgd", ETA), learning_rate=ALPHA)
    with pytest.raises(ValueError, match=r"batch\['meta'\]"):
        jax.eval_shape(step, state, {k: v for k, v in batch.items() if k != pipeline.META})
    bad = get_weighting("auto_lambda", primary=["r9"])
    with pytest.raises(ValueError, match=r"weighting.options.primary=\['r9'\].*\['r0', 'r1', 'r2'\]"):
        jax.eval_shape(make_train_step(model, ts.tasks, bad, make_optimizer("sgd", ETA), learning_rate=ALPHA),
                       state, batch)
    assert "auto_lambda" in WEIGHTINGS
    with pytest.raises(ValueError, match=r"weighting.options.primary='a' must be a list of strs"):
        get_weighting("auto_lambda", primary="a")
    c = tiny()  # and before anything compiles: the grid's validation builds every run
    c.weightings = ({"name": "auto_lambda", "options": {"primary": ["nope"]}},)
    with pytest.raises(ValueError, match=r"weighting.options.primary=\['nope'\].*\['task0', 'task1'\]"):
        grid.validate(grid.expand(c))


def test_lambda_rises_for_a_helping_auxiliary_task_and_falls_behind_for_a_conflicting_one():
    """Primary a; auxiliary b has a's targets (and a's head at init, so their gradients agree),
    auxiliary c a target along an orthogonal direction of the input. Through a shared linear trunk
    of width 1 (one feature for all), c pulls the feature away from a's: lambda_b rises, lambda_c
    stays well below it (three seeds)."""
    rng = np.random.default_rng(0)
    n, dim = 256, 4
    x = rng.standard_normal((n, dim)).astype(np.float32)
    ya, yc = x @ np.array([1.0, 1.0, 0, 0], np.float32), x @ np.array([0, 0, 1.0, -1.0], np.float32)
    names = ("a", "b", "c")
    split = {"inputs": x, "targets": dict(zip(names, (ya, ya, yc))), "weights": {t: np.ones(n, np.float32) for t in names}}
    ts = TaskSet("toy", tuple(Task(t, "regression", 1) for t in names), (dim,), "dense", splits={"train": split})
    model = build_model("hard", ts, [{"kind": "dense", "features": 1, "activation": "none"}])
    w, tx = get_weighting("auto_lambda", primary=["a"], lr=0.01), make_optimizer("sgd", 0.05)
    step, data = make_train_step(model, ts.tasks, w, tx, learning_rate=0.05), jax.device_put(split)
    train = jit(lambda st, idx: jax.lax.scan(lambda s, i: (step(s, pipeline.gather(data, i))[0], None), st, idx)[0])
    init = jit(lambda seed: init_state(model, w, tx, 3, x[:2], jax.random.PRNGKey(seed)))
    for seed in range(3):
        state = init(seed)
        heads = {k: v.at[1].set(v[0]) for k, v in state.params["model"]["task_head_out"].items()}  # b's head = a's
        state = state.replace(params={**state.params, "model": {**state.params["model"], "task_head_out": heads}})
        order = pipeline.WithMeta(n, 32, seed=seed)
        lam = np.asarray(train(state, np.stack([order(s) for s in range(100)])).wstate.lam)
        assert lam[1] > 0.1 + 0.2 and lam[1] > lam[2] + 0.2, (seed, lam)


# --------------------------------------------------------------------------- the meta-batch stream


def test_the_meta_batches_are_a_pure_function_of_seed_and_step():
    order, fresh = pipeline.WithMeta(100, 16, seed=3), pipeline.WithMeta(100, 16, seed=3)
    walked = [order(s) for s in range(30)]  # crosses epochs (6 batches each)
    for s in (0, 7, 29):
        np.testing.assert_array_equal(pipeline.WithMeta(100, 16, seed=3)(s), walked[s])  # a restart at step s
    np.testing.assert_array_equal(fresh(29), walked[29])
    main = pipeline.BatchOrder(100, 16, seed=3)
    for s in range(30):
        np.testing.assert_array_equal(walked[s][0], main(s))  # the step's batch: as without Auto-Lambda
        assert not np.array_equal(walked[s][1], walked[s][0])  # its meta batch: another draw
    assert len(set(np.concatenate([w[1] for w in walked[:6]]))) == 96  # an epoch of meta batches: a permutation
    assert not np.array_equal(pipeline.WithMeta(100, 16, seed=4)(0), walked[0])


def _cfg(**changes):
    rc = copy.deepcopy(grid.expand(tiny())[0]["config"])
    rc["architecture"] = {"name": "hard", "options": {}}
    rc["weighting"] = {"name": "auto_lambda", "options": {"lr": 0.01}}
    rc["steps"], rc["log_every"], rc["eval_every"], rc["checkpoint_every"] = 12, 3, 6, 12
    for path, v in changes.items():
        grid._set_path(rc, path.replace("__", "."), v)
    return rc


def test_a_population_of_two_seeds_trains_as_its_runs_alone(tmp_path):
    """The population stacks each member's meta batches: member 0's curves (lambda and the losses at
    the log steps) are those of seed 0's run, its steps replayed here on its batch order."""
    members = [_cfg(seed=s) for s in (0, 1)]
    train_population([grid.train_config(c) for c in members], [str(tmp_path / "p0"), str(tmp_path / "p1")],
                     [grid.task_set_for(c) for c in members])
    curves = [results.read_metrics(str(tmp_path / f"p{i}"), "train") for i in (0, 1)]
    assert [r["step"] for r in curves[0]] == [3, 6, 9, 12]
    cfg = grid.train_config(members[0])
    run = build_run(cfg, grid.task_set_for(members[0]))
    train = run.task_set.split("train")
    order = batch_order_of(run, train)
    step = make_train_step(run.model, run.task_set.tasks, run.weighting, run.tx,
                           learning_rate=step_learning_rate(cfg.optimizer, cfg.steps))
    state = init_state(run.model, run.weighting, run.tx, 2, pipeline.gather(train, order(0))["inputs"], 0)
    data = jax.device_put(dict(train))
    alone = jit(lambda st, idx: jax.lax.scan(lambda s, i: step(s, pipeline.gather(data, i)), st, idx)[1])(
        state, np.stack([order(s) for s in range(12)]))
    for key in ("weights", "losses"):
        np.testing.assert_allclose([list(r[key].values()) for r in curves[0]], np.asarray(alone[key])[2::3],
                                   rtol=1e-4, atol=1e-6)
    lam = [np.array(list(c[-1]["weights"].values())) for c in curves]
    assert np.all(np.abs(lam[0] - 0.1) > 1e-3) and not np.allclose(lam[0], lam[1])  # lambda moved, per seed


# --------------------------------------------------------------------------- on an explicit Jacobian; populations


def test_on_a_jacobian_the_meta_gradient_is_minus_lr_g_gt_p():
    """The linearised losses L(theta + d) = L + G d with the meta batch the step's own: M = p.(L - lr G G^T lambda),
    so dM/dlambda = -lr G G^T p."""
    G = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    w = get_weighting("auto_lambda", primary=["b"])
    out = jit(on_jacobian(w, ("a", "b", "c"), lr=0.5))(jnp.ones(3), jnp.asarray(G), w.init(3), jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(out[3]["meta_grad"]), -0.5 * G @ G.T @ np.array([0.0, 1.0, 0.0]), rtol=1e-5)


def test_a_population_shares_one_program_across_lambda_options_and_alpha_follows_each_member():
    """Members differing in Auto-Lambda's float options trace them (one program); lookahead_lr = 0 then
    still means the run's learning rate, member by member."""
    members = [_cfg(seed=s, weighting={"name": "auto_lambda", "options": {"primary": ["task0"], "lr": lr,
                                                                          "lookahead_lr": la}})
               for s, lr, la in [(0, 0.01, 0.0), (1, 0.02, 0.3)]]
    groups = programs([{"run_id": str(i), "config": c} for i, c in enumerate(members)], 0, grid.task_set_for)
    assert len(groups) == 1
    np.testing.assert_allclose(lookahead_step_size(jnp.array([0.0, 0.3]), 0.05), [0.05, 0.3])
    assert lookahead_step_size(0.0, 0.05) == 0.05 and lookahead_step_size(0.2, 0.05) == 0.2
