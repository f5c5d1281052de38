"""mtlx.optim.successive_regularization against its definition (Hashimoto et al. 2017, Sec. 3): the
gradient 2 delta w (theta - theta') added to the penalised leaves' updates and nothing else, the anchor
theta' refreshed exactly at the updates whose count is a multiple of ``period`` (a hand-written SGD
loop), and delta = 0 leaving the optimizer bit for bit the plain one. No compilation beyond a few ops."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fixtures_train import jit
from helpers import dense_set
from mtlx.architectures import build_model
from mtlx.layers import Dense
from mtlx.optim import SuccessiveState, make_optimizer, successive_regularization

DELTA, LR = 0.3, 0.1


def tree(seed):
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal((3, 2)).astype(np.float32), "b": rng.standard_normal(4).astype(np.float32),
            "c": {"d": rng.standard_normal((2, 3)).astype(np.float32)}}


MASK = {"a": True, "b": False, "c": {"d": np.array([[2.0], [0.5]], np.float32)}}  # b untouched; d weighted per row


def test_adds_exactly_the_penalty_gradient_to_the_masked_leaves():
    theta0, theta1, g = tree(0), tree(1), tree(2)
    tx = successive_regularization(DELTA, 5, MASK)
    state = tx.init(theta0)
    u0, state = tx.update(g, state, theta0)  # count 0: the anchor is refreshed to theta0, the penalty is zero
    u1, state = tx.update(g, state, theta1)  # count 1: anchor theta0
    for u in (u0, u1):
        np.testing.assert_array_equal(u["b"], g["b"])  # not masked: bit for bit
    np.testing.assert_array_equal(u0["a"], g["a"])
    np.testing.assert_allclose(u1["a"], g["a"] + 2 * DELTA * (theta1["a"] - theta0["a"]), rtol=1e-6)
    np.testing.assert_allclose(u1["c"]["d"], g["c"]["d"] + 2 * DELTA * MASK["c"]["d"] * (theta1["c"]["d"] - theta0["c"]["d"]),
                               rtol=1e-6)
    assert int(state.count) == 2 and len(state.anchor) == 2  # only the penalised leaves are kept


def test_initial_anchor_is_a_copy_so_the_state_can_be_donated():
    params = jax.tree_util.tree_map(jnp.asarray, tree(0))
    state = successive_regularization(DELTA, 2, MASK).init(params)
    bump = jax.jit(lambda t: jax.tree_util.tree_map(lambda x: x + 1, t), donate_argnums=0)
    bump((params, state))  # the train loop donates (params, opt_state): one buffer twice would be an error


@pytest.mark.parametrize("period", [1, 3])
def test_anchor_refreshes_at_multiples_of_period_as_a_hand_written_loop(period):
    grads = [tree(10 + s) for s in range(7)]
    tx = optax.chain(successive_regularization(DELTA, period, MASK), optax.sgd(LR))
    params, state = tree(0), None
    state = tx.init(params)
    # the definition: theta_{s+1} = theta_s - lr (g_s + 2 delta w (theta_s - anchor)), anchor = theta_s when s % period == 0
    ref = {k: np.asarray(v, np.float64) for k, v in jax.tree_util.tree_leaves_with_path(tree(0))}
    weights = dict(jax.tree_util.tree_leaves_with_path(MASK))
    anchor = dict(ref)
    for s, g in enumerate(grads):
        updates, state = tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        if s % period == 0:
            anchor = dict(ref)
        ref = {k: v - LR * (np.asarray(gk, np.float64) + 2 * DELTA * np.asarray(weights[k], np.float64) * (v - anchor[k]))
               for (k, v), (_, gk) in zip(ref.items(), jax.tree_util.tree_leaves_with_path(g))}
        for k, v in jax.tree_util.tree_leaves_with_path(params):
            np.testing.assert_allclose(v, ref[k], rtol=2e-5, atol=2e-6, err_msg=f"step {s} leaf {k}")
    assert int(state[0].count) == len(grads)


def test_delta_zero_is_the_plain_optimizer_bit_for_bit():
    ts = dense_set(n=8, dim=5)
    model = build_model("jmt", ts, (Dense(4),), successive={"delta": 0.0, "period": 2},
                        label_probs={"bin": "sigmoid", "reg": "linear"})
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ts.splits["train"]["inputs"])["params"]
    rng = np.random.default_rng(0)
    mparams = jax.tree_util.tree_map(lambda a: rng.standard_normal(a.shape).astype(np.float32), shapes)
    params = {"model": mparams, "weighting": {}}
    plain, with_term = make_optimizer("adam", 1e-2), make_optimizer("adam", 1e-2, model=model)
    assert isinstance(with_term.init(params)[0], SuccessiveState)  # the term is there, with delta 0

    @jit
    def run(params):
        p1, p2, s1, s2 = params, params, plain.init(params), with_term.init(params)
        for s in range(4):
            g = jax.tree_util.tree_map(lambda x, s=s: jnp.sin(x * (s + 1.0)), p1)
            u1, s1 = plain.update(g, s1, p1)
            u2, s2 = with_term.update(g, s2, p2)
            p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
        return p1, p2

    p1, p2 = run(params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a).view(np.uint32),
                                                                      np.asarray(b).view(np.uint32)), p1, p2)


def test_no_term_without_the_option_and_bad_arguments_are_one_line():
    ts = dense_set(n=8, dim=5)
    model = build_model("hard", ts, (Dense(4),))
    state = make_optimizer("sgd", 0.1, model=model).init({"model": {"w": jnp.ones(2)}, "weighting": {}})
    is_term = lambda x: isinstance(x, SuccessiveState)
    assert not any(map(is_term, jax.tree_util.tree_leaves(state, is_leaf=is_term)))
    with pytest.raises(ValueError, match=r"period=0 must be an int >= 1"):
        successive_regularization(0.1, 0, MASK)
    tx = successive_regularization(0.1, 1, {"a": True})
    with pytest.raises(ValueError, match="the mask's tree .* does not match the parameters'"):
        tx.init(tree(0))
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update(tree(0), SuccessiveState(jnp.zeros((), jnp.int32), ()))
