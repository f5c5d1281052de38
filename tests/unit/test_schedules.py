"""Training schedules (mtlx.schedules): alternating training touches only the sampled task's
slice of the task-stacked parameters (and their optimizer moments) plus the shared trunk; the
task draws follow the scheme; per-task learning rates scale each task's own update."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.stats

from fixtures_train import MLP, jit, tiny
from mtlx import schedules
from mtlx.architectures import build_model, shared_mask
from mtlx.optim import make_optimizer
from mtlx.train import init_state, make_train_step, optimizer_of, task_leaf
from mtlx.weighting import get_weighting

T = 3


@pytest.fixture(scope="module")
def alternating():
    """A tiny hard-sharing model, Adam, the alternating step (uniform draws) jitted, a state after one
    joint warm-up step (so that every head's Adam moments are nonzero), and the batch."""
    _, ts, batch = tiny("mlp")
    model = build_model("hard", ts, MLP)
    w, tx = get_weighting("equal"), make_optimizer("adam", 1e-2)
    state = init_state(model, w, tx, T, batch["inputs"], 0)
    state, _ = jit(make_train_step(model, ts.tasks, w, tx))(state, batch)
    sched = schedules.Schedule("uniform", (1.0,) * T, 100)
    return model, jit(make_train_step(model, ts.tasks, w, tx, schedule=sched)), state, batch, sched


def _slices(tree, model, t):
    """Task t's slice of every task-specific leaf of a params-shaped tree under "model"."""
    mask = shared_mask(model, tree)
    return [np.asarray(x[t]) for x, s in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(mask)) if not s]


def _moments(opt_state) -> dict:
    """{(moment name, group index): its tree of the model's parameters} of Adam's states in ``opt_state``."""
    out = {}
    for path, sub in jax.tree_util.tree_flatten_with_path(
            opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))[0]:
        if isinstance(sub, optax.ScaleByAdamState):
            model_of = lambda tree: {k: v for k, v in tree["model"].items() if not isinstance(v, optax.MaskedNode)}
            out[("mu", len(out))], out[("nu", len(out) + 1)] = model_of(sub.mu), model_of(sub.nu)
    return out


def _shared(tree, model):
    mask = shared_mask(model, tree)
    return [np.asarray(x) for x, s in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(mask)) if s]


def test_alternating_step_changes_only_the_sampled_head_and_the_trunk(alternating):
    model, step, state, batch, sched = alternating
    seen = set()
    for _ in range(6):
        new, metrics = step(state, batch)
        drawn = int(np.argmax(metrics["weights"]))  # equal weighting: the mask itself
        np.testing.assert_array_equal(np.asarray(metrics["weights"]), np.eye(T)[drawn])
        # the draw is the schedule's, from the state's key
        expect = sched.mask(state.step, jax.random.fold_in(jax.random.split(state.key)[1], 0x5C4ED))
        assert int(np.argmax(expect)) == drawn
        old_m, new_m = _moments(state.opt_state), _moments(new.opt_state)
        assert {k[0] for k in old_m} == {"mu", "nu"}
        for t in range(T):
            pairs = [(state.params["model"], new.params["model"])] + [(old_m[k], new_m[k]) for k in old_m]
            for old, now in pairs:
                for a, b in zip(_slices(old, model, t), _slices(now, model, t)):
                    if t == drawn:
                        assert not np.array_equal(a, b)
                    else:
                        np.testing.assert_array_equal(a, b)  # bit for bit
        for a, b in zip(_shared(state.params["model"], model), _shared(new.params["model"], model)):
            assert not np.array_equal(a, b)  # the trunk moves every step
        seen.add(drawn)
        state = new
    assert len(seen) > 1


def _chi2_pvalue(sched, steps, n_draws=3000):
    keys = jax.random.split(jax.random.PRNGKey(1), n_draws)
    draws = np.asarray(jit(jax.vmap(lambda s, k: jnp.argmax(sched.mask(s, k))))(steps, keys))
    return draws


@pytest.mark.parametrize("sampling", ["uniform", "proportional"])
def test_sampling_frequencies_match_the_scheme(sampling):
    counts = np.array([100.0, 300.0, 600.0])
    sched = schedules.Schedule(sampling, tuple(counts), 1000)
    draws = _chi2_pvalue(sched, jnp.zeros(3000, jnp.int32))
    p = np.full(3, 1 / 3) if sampling == "uniform" else counts / counts.sum()
    observed = np.bincount(draws, minlength=3)
    assert scipy.stats.chisquare(observed, p * len(draws)).pvalue > 1e-3


def test_annealed_sampling_goes_from_proportional_to_uniform():
    """Stickland & Murray 2019: p_t ~ N_t^alpha, alpha 1 -> anneal_to linearly over the run."""
    counts = np.array([100.0, 300.0, 600.0])
    sched = schedules.Schedule("annealed", tuple(counts), 101, anneal_to=0.0)
    np.testing.assert_allclose(sched.probs(0), counts / counts.sum(), rtol=1e-6)
    np.testing.assert_allclose(sched.probs(100), np.full(3, 1 / 3), rtol=1e-6)
    half = counts ** 0.5
    np.testing.assert_allclose(sched.probs(50), half / half.sum(), rtol=1e-5)
    draws = _chi2_pvalue(sched, jnp.full(3000, 50, jnp.int32))
    assert scipy.stats.chisquare(np.bincount(draws, minlength=3), half / half.sum() * 3000).pvalue > 1e-3


def test_per_task_learning_rates_scale_each_heads_update():
    """SGD: task t's slice moves by lr_t times its gradient, the shared trunk by the base lr."""
    _, ts, batch = tiny("mlp")
    model = build_model("hard", ts, MLP)
    w = get_weighting("equal")
    lrs = {"cls": 0.1, "bin": 0.4}  # "reg" keeps the base lr 0.2
    opt = {"name": "sgd", "learning_rate": 0.2}
    plain, scaled = optimizer_of(opt, 10), optimizer_of(opt, 10, {"task_learning_rates": lrs}, ts.task_names, model)
    st0 = init_state(model, w, plain, T, batch["inputs"], 0)
    st1 = init_state(model, w, scaled, T, batch["inputs"], 0)
    a, _ = jit(make_train_step(model, ts.tasks, w, plain))(st0, batch)
    b, _ = jit(make_train_step(model, ts.tasks, w, scaled))(st1, batch)
    ratio = {"cls": 0.5, "bin": 2.0, "reg": 1.0}
    for t, name in enumerate(ts.task_names):
        for p0, pa, pb in zip(_slices(st0.params["model"], model, t), _slices(a.params["model"], model, t),
                              _slices(b.params["model"], model, t)):
            np.testing.assert_allclose(pb - p0, ratio[name] * (pa - p0), rtol=1e-5, atol=1e-7)
    for pa, pb in zip(_shared(a.params["model"], model), _shared(b.params["model"], model)):
        np.testing.assert_array_equal(pa, pb)


def test_task_leaf_selects_the_stacked_task_parameters():
    _, ts, batch = tiny("mlp")
    model = build_model("hard", ts, MLP)
    params = {"model": model.init(jax.random.PRNGKey(0), batch["inputs"])["params"], "weighting": {}}
    paths = schedules.task_leaf_paths(params, task_leaf(model))
    assert paths and all(p[1].startswith("task_") and s[0] == T for p, s in paths.items())


def test_training_section_errors_name_the_field():
    with pytest.raises(ValueError, match=r"training.schedule='alternate' is not valid; choose one of"):
        schedules.check_training({"schedule": "alternate"})
    with pytest.raises(ValueError, match=r"training.sampling='size'"):
        schedules.check_training({"sampling": "size"})
    with pytest.raises(ValueError, match=r"unknown config field\(s\): training.lrs"):
        schedules.check_training({"lrs": {}})
    with pytest.raises(ValueError, match=r"training.task_learning_rates=.*unknown tasks \['x'\]"):
        schedules.check_training({"task_learning_rates": {"x": 0.1}}, ("a", "b"))
    with pytest.raises(ValueError, match=r"training.relatedness_every=30 must be a multiple of log_every=20"):
        schedules.check_training({"relatedness_every": 30}, None, 20)
    assert schedules.check_training(None) == schedules.DEFAULTS


def test_alternating_refuses_a_direction_weighting():
    _, ts, batch = tiny("mlp")
    model = build_model("hard", ts, MLP)
    w, tx = get_weighting("pcgrad"), optax.sgd(0.1)
    st = init_state(model, w, tx, T, batch["inputs"], 0)
    step = make_train_step(model, ts.tasks, w, tx, schedule=schedules.Schedule("uniform", (1.0,) * T, 10))
    with pytest.raises(ValueError, match="alternating.*own shared-gradient direction"):
        jax.eval_shape(step, st, batch)
