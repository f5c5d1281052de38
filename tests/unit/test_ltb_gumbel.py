"""LTB's branching in training (Guo, Lee & Ulbricht 2020; mtlx.architectures.ltb) against the
Gumbel-softmax's definition (Jang et al. 2017): d = softmax((theta + g) / tau), g ~ Gumbel(0, 1).
At tau -> 0 the sample is the one-hot argmax of theta + g, whose frequencies are softmax(theta)
(the Gumbel-max trick); at tau = 1 its mean is E_g[softmax(theta + g)], estimated here from
independent numpy draws; its gradient with respect to theta is the softmax Jacobian at the sample.
The train step passes the model its Gumbel stream (each key its own draw), evaluation none; the
temperature anneals exponentially with the step count the step passes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures_archs import TINY_MLP, tiny_dense
from fixtures_train import jit
from mtlx import taps
from mtlx.architectures import build_model
from mtlx.architectures.ltb import annealed_temperature
from mtlx.losses import task_losses
from mtlx.optim import make_optimizer
from mtlx.tasks import Task, TaskSet
from mtlx.train import init_state, make_eval_step, make_train_step
from mtlx.weighting import get_weighting

P = 3  # parents (the nodes of the one block)
THETA = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]], np.float32))  # the two heads' branching logits
HEADS = taps.mixing_name("branch", "heads")


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def readout(**options):
    """An LTB whose predictions ARE the heads' branching d: one block of P nodes, node p outputting the
    one-hot e_p (kernel 0, bias e_p), identity output layers; task t predicts d[t] (P outputs)."""
    x = np.ones((2, 2), np.float32)
    names = ("a", "b")
    split = {"inputs": x, "targets": {t: np.zeros((2, P), np.float32) for t in names},
             "weights": {t: np.ones(2, np.float32) for t in names}}
    ts = TaskSet("readout", tuple(Task(t, "regression", P) for t in names), (2,), "dense", splits={"train": split})
    model = build_model("ltb", ts, [{"kind": "dense", "features": P}], nodes=(P,), **options)
    params = {"node_0": {"kernel": np.zeros((P, 2, P), np.float32), "bias": np.eye(P, dtype=np.float32)},
              "task_head_out": {"kernel": np.stack([np.eye(P, dtype=np.float32)] * 2),
                                "bias": np.zeros((2, P), np.float32)},
              HEADS: THETA}
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"])
    return model, params, x


def branching(model, params, x, keys, step=None):
    """d (N, 2, P): the heads' branching drawn with each key (the model's own Gumbel stream)."""
    extra = {} if step is None else {taps.TRAIN_PROGRESS: {taps.STEP_COUNT: step}}

    def one(key):
        preds = model.apply({"params": params, **extra}, x, rngs={taps.GUMBEL_RNG: key})[0]
        return jnp.stack([preds["a"][0], preds["b"][0]])

    return np.asarray(jax.jit(jax.vmap(one))(keys))


def test_at_low_temperature_the_draws_are_one_hot_with_softmax_frequencies():
    """The Gumbel-max trick: argmax(theta + g) ~ Categorical(softmax(theta)); tolerance 5 standard
    errors of a frequency over N draws."""
    model, params, x = readout(temperature=1e-5)
    n = 20000
    d = branching(model, params, x, jax.random.split(jax.random.PRNGKey(0), n))
    assert np.mean(d.max(-1) > 1 - 1e-3) > 0.999  # one-hot (but for near ties of theta + g, P = O(tau))
    freq = np.stack([np.bincount(d[:, t].argmax(-1), minlength=P) / n for t in range(2)])
    p = _softmax(THETA)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n)), (freq, p)


def test_at_temperature_one_the_mean_draw_is_the_gumbel_softmax_expectation():
    model, params, x = readout(temperature=1.0)
    n = 20000
    d = branching(model, params, x, jax.random.split(jax.random.PRNGKey(1), n))
    np.testing.assert_allclose(d.sum(-1), 1.0, atol=1e-5)
    assert d.max() < 1 - 1e-6 and d.std(0).min() > 0.05  # soft samples that vary with the key
    g = np.random.default_rng(0).gumbel(size=(400000, 2, P))
    expected = _softmax(THETA[None] + g).mean(0)  # E_g softmax(theta + g), g ~ Gumbel(0, 1)
    assert np.all(np.abs(d.mean(0) - expected) < 5 * d.std(0) / np.sqrt(n)), (d.mean(0), expected)
    assert np.abs(expected - _softmax(THETA)).max() > 10 * (d.std(0) / np.sqrt(n)).max()  # not the plain softmax


def test_the_gradient_reaches_the_logits_as_the_softmax_jacobian_at_the_sample():
    """d = softmax((theta + g) / tau) with g independent of theta: dd/dtheta = (diag(d) - d d^T) / tau."""
    tau = 0.7
    model, params, x = readout(temperature=tau)
    key, c = jax.random.PRNGKey(3), np.array([[0.3, -1.0, 2.0], [1.5, 0.2, -0.4]], np.float32)

    def readout_of(theta):
        preds = model.apply({"params": {**params, HEADS: theta}}, x, rngs={taps.GUMBEL_RNG: key})[0]
        return jnp.stack([preds["a"][0], preds["b"][0]])

    d, grad = jax.jit(lambda th: (readout_of(th), jax.grad(lambda t: jnp.sum(c * readout_of(t)))(th)))(THETA)
    d, grad = np.asarray(d), np.asarray(grad)
    want = np.stack([(np.diag(d[t]) - np.outer(d[t], d[t])) @ c[t] / tau for t in range(2)])
    np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)
    assert np.abs(d - _softmax(THETA / tau)).max() > 1e-3  # the sample, not the noiseless softmax


def test_the_temperature_anneals_exponentially_and_evaluation_uses_where_it_ends():
    t0, t1, n = 2.0, 0.5, 100
    assert annealed_temperature(t0, t1, n, 0) == pytest.approx(t0)
    assert float(annealed_temperature(t0, t1, n, n // 2)) == pytest.approx(np.sqrt(t0 * t1), rel=1e-6)  # geometric
    assert float(annealed_temperature(t0, t1, n, n)) == pytest.approx(t1)
    assert float(annealed_temperature(t0, t1, n, 3 * n)) == pytest.approx(t1)
    assert annealed_temperature(t0, t1, n) == t1 and annealed_temperature(t0, t1, 0, 50) == t0
    model, params, x = readout(temperature=t0, min_temperature=t1, anneal_steps=n, gumbel=False)
    for step in (0, 25, n, 2 * n):  # the step count the train step passes sets tau: d = softmax(theta / tau)
        d = branching(model, params, x, jax.random.split(jax.random.PRNGKey(0), 1), step=step)[0]
        tau = t0 * (t1 / t0) ** min(step / n, 1)
        np.testing.assert_allclose(d, _softmax(THETA / tau), rtol=1e-5)
    preds = model.apply({"params": params}, x)[0]  # evaluation: no noise, tau where training ends
    np.testing.assert_allclose(np.stack([preds["a"][0], preds["b"][0]]), _softmax(THETA / t1), rtol=1e-5)


@pytest.mark.parametrize("options, error", [({"min_temperature": 0.0}, "min_temperature=0.0"),
                                            ({"anneal_steps": -1}, "anneal_steps=-1"),
                                            ({"gumbel": 1}, "gumbel=1")])
def test_bad_annealing_options_are_refused_in_one_line(options, error):
    with pytest.raises(ValueError, match=f"architecture.options.{error}"):
        build_model("ltb", tiny_dense(), TINY_MLP, **options)


@pytest.fixture(scope="module")
def ltb_step():
    ts = tiny_dense()
    model = build_model("ltb", ts, TINY_MLP)
    tx = make_optimizer("sgd", 0.1)
    w = get_weighting("equal")
    batch = jax.tree_util.tree_map(np.asarray, dict(ts.splits["train"]))
    state = jit(lambda x: init_state(model, w, tx, ts.num_tasks, x, 0))(batch["inputs"][:2])  # one program
    return ts, model, state, batch, jit(make_train_step(model, ts.tasks, w, tx))


def test_the_train_step_draws_per_key_and_evaluation_stays_deterministic(ltb_step):
    ts, model, state, batch, step = ltb_step
    other = state.replace(key=jax.random.PRNGKey(7))
    losses = [np.asarray(step(s, batch)[1]["losses"]) for s in (state, state, other)]
    np.testing.assert_array_equal(losses[0], losses[1])  # a key: one draw
    assert np.abs(losses[0] - losses[2]).max() > 1e-5  # two keys (two seeds' streams): two draws
    evaluate = jit(make_eval_step(model))
    preds, again = (evaluate(state.params["model"], batch["inputs"]) for _ in range(2))
    assert all(np.array_equal(preds[k], again[k]) for k in preds)  # evaluation: no noise
    plain = np.asarray(task_losses(ts.tasks, preds, batch))  # the deterministic forward's losses
    assert np.abs(losses[0] - plain).max() > 1e-5  # the step's are a noisy draw's
    new = step(state, batch)[0]  # the branching logits learn through the noisy draw
    moved = [k for k in new.params["model"] if taps.is_mixing(k)
             and np.abs(np.asarray(new.params["model"][k]) - np.asarray(state.params["model"][k])).max() > 0]
    assert moved and len(moved) == len([k for k in state.params["model"] if taps.is_mixing(k)])
