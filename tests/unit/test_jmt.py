"""The joint many-task model (mtlx.architectures.jmt; Hashimoto et al. 2017) against its definition:
the label embedding y = p(labels | h) @ L, each level's input [x, h_below, y_below] (a forward built
by hand in numpy on a tiny MLP with the model's drawn parameters), the hierarchy order, the counts
of the successive-regularisation terms, one-line option errors, and the model in the one train step
under jax.vmap over seeds with the successive term carried in the optimizer state."""

import jax
import numpy as np
import pytest

from fixtures_train import jit, stack
from helpers import dense_set, token_set
from mtlx.architectures import build_model
from mtlx.architectures.jmt import label_embedding, level_input
from mtlx.data.pipeline import BatchOrder, gather
from mtlx.layers import BiLSTM, Conv, Dense, Embed
from mtlx.optim import SuccessiveState, make_optimizer
from mtlx.train import init_state, make_train_step
from mtlx.weighting import get_weighting

PROBS = {"bin": "sigmoid", "reg": "linear"}  # dense_set: cls (3 classes), bin (2 labels), reg (1 value)
ORDER = ("reg", "cls", "bin")  # bottom first, not the task set's order


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def relu(z):
    return np.maximum(z, 0.0)


def test_label_embedding_is_the_probability_weighted_sum_of_label_rows():
    rng = np.random.default_rng(0)
    logits, table = rng.standard_normal((2, 4, 5)), rng.standard_normal((5, 3))
    want = np.einsum("blj,jd->bld", softmax(logits), table)  # sum_j p(j | h) l(j), per token
    np.testing.assert_allclose(label_embedding(logits, table), want, rtol=1e-5)
    np.testing.assert_allclose(label_embedding(logits, table, "sigmoid"), (1 / (1 + np.exp(-logits))) @ table, rtol=1e-5)
    np.testing.assert_allclose(label_embedding(logits, table, "linear"), logits @ table, rtol=1e-5)
    x, h, y = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 3, 1), (2, 4), (2, 5)))
    np.testing.assert_array_equal(level_input(x, h, y), np.concatenate([x.reshape(2, -1), h, y], -1))


def hand_forward(p, x, tasks, head_hidden):
    """The JMT forward by the paper's equations: x_e shared; level k reads [x_e, h_{k-1}, y_{k-1}]."""
    xe = relu(x @ p["encoder_0"]["kernel"] + p["encoder_0"]["bias"])
    names = [t.name for t in tasks]
    n_out = {t.name: t.num_outputs for t in tasks}
    probs = {"cls": softmax, "bin": lambda z: 1 / (1 + np.exp(-z)), "reg": lambda z: z}

    def head(name, h):
        t = names.index(name)
        for j in range(len(head_hidden)):
            h = relu(h @ p[f"task_head_{j}"]["kernel"][t] + p[f"task_head_{j}"]["bias"][t])
        return (h @ p["task_head_out"]["kernel"][t] + p["task_head_out"]["bias"][t])[:, :n_out[name]]

    preds, h, y = {}, None, None
    for k, name in enumerate(ORDER):
        inp = xe if k == 0 else np.concatenate([xe, h, y], -1)
        assert p[f"level_{k}_1"]["kernel"].shape[0] == inp.shape[1]  # the level's input width
        h = relu(inp @ p[f"level_{k}_1"]["kernel"] + p[f"level_{k}_1"]["bias"])
        preds[name] = head(name, h)
        if k + 1 < len(ORDER):
            y = probs[name](preds[name]) @ p[f"label_embedding_{k}"]
    return preds


def test_forward_equals_the_hand_built_hierarchy_with_shortcuts_and_label_embeddings():
    ts = dense_set(n=5, dim=6)
    head_hidden, blocks = (3,), (Dense(4), Dense(5))
    model = build_model("jmt", ts, blocks, head_hidden=head_hidden, encoder=1, order=ORDER, label_features=2,
                        label_probs=PROBS)
    x = ts.splits["train"]["inputs"]
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    rng = np.random.default_rng(1)  # fixed parameters, biases and all nonzero
    params = jax.tree_util.tree_map(lambda a: (0.7 * rng.standard_normal(a.shape)).astype(np.float32), shapes)
    assert params["level_1_1"]["kernel"].shape == (4 + 5 + 2, 5)  # [x (4), h below (5), y below (2)] -> 5
    assert params["level_0_1"]["kernel"].shape == (4, 5) and "label_embedding_2" not in params
    assert params["label_embedding_0"].shape == (1, 2) and params["label_embedding_1"].shape == (3, 2)  # reg, cls
    preds, aux = jit(model.apply)({"params": params}, x)
    want = hand_forward(jax.tree_util.tree_map(np.asarray, params), x.astype(np.float64), ts.tasks, head_hidden)
    assert aux == {}
    for name in ts.task_names:
        np.testing.assert_allclose(preds[name], want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_bilstm_levels_read_embedding_lstm_below_and_label_embedding_per_token():
    ts = token_set(n=3, length=4)  # pos (5 tags) below ner
    model = build_model("jmt", ts, (Embed(30, 4), BiLSTM(3)), label_features=2)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ts.splits["train"]["inputs"])["params"]
    assert shapes["encoder_0"]["embedding"].shape == (30, 4)
    assert shapes["level_0_1"]["fw"].shape == (4 + 3, 12)  # input rows (x) + recurrent rows, 4 gates
    assert shapes["level_1_1"]["fw"].shape == (4 + 6 + 2 + 3, 12)  # [x, h_pos (2 x 3), y_pos] + recurrent
    assert shapes["label_embedding_0"].shape == (5, 2)
    preds, _ = jax.eval_shape(model.apply, {"params": shapes}, ts.splits["train"]["inputs"])
    assert preds["pos"].shape == (3, 4, 5) and preds["ner"].shape == (3, 4, 3)


def test_successive_counts_follow_the_per_task_terms():
    """Task k's term covers what task k-1 trains: the encoder, levels 0..k-1 and their heads, the
    label embeddings 0..k-2. Summed over k = 1..T-1 (here T = 3):"""
    ts = dense_set(n=5, dim=6)
    model = build_model("jmt", ts, (Dense(4), Dense(5)), encoder=1, order=ORDER, label_probs=PROBS)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), ts.splits["train"]["inputs"])["params"]
    w = model.successive_weights(shapes)
    assert w["encoder_0"] == {"kernel": 2.0, "bias": 2.0}
    assert [w[f"level_{k}_1"]["kernel"] for k in range(3)] == [2.0, 1.0, 0.0]
    assert [w[f"label_embedding_{k}"] for k in range(2)] == [1.0, 0.0]
    # heads stacked in task order (cls, bin, reg) at levels (1, 2, 0)
    np.testing.assert_array_equal(w["task_head_out"]["kernel"].ravel(), [1.0, 0.0, 2.0])
    assert w["task_head_out"]["kernel"].shape == (3, 1, 1) and w["task_head_out"]["bias"].shape == (3, 1)


@pytest.mark.parametrize("options,blocks,words", [
    ({"order": ["cls", "bin"]}, None, ["architecture.options.order=['cls', 'bin']", "every task once",
                                       "['cls', 'bin', 'reg']"]),
    ({"order": ["cls", "cls", "reg"]}, None, ["order=", "every task once"]),
    ({"encoder": 2}, None, ["encoder=2", "leaves no block", "choose 0..1"]),
    ({"encoder": 0}, "image", ["encoder=0", "['Conv']", "['Dense', 'BiLSTM']"]),
    ({"successive": {"delta": 0.1}}, None, ["successive=", "'period'"]),
    ({"successive": {"delta": -1.0, "period": 3}}, None, ["successive=", ">= 0"]),
    ({"label_probs": {"cls": "tanh"}}, None, ["label_probs=", "'softmax'"]),
    ({"label_probs": {"nope": "linear"}}, None, ["label_probs=", "unknown tasks ['nope']"]),
])
def test_bad_options_are_one_line_naming_the_field(options, blocks, words):
    from helpers import image_set

    ts = image_set(n=2) if blocks == "image" else dense_set(n=4, dim=6)
    backbone = (Conv(2, 5), Dense(4)) if blocks == "image" else (Dense(4), Dense(5))
    with pytest.raises(ValueError) as err:
        build_model("jmt", ts, backbone, **options)
    msg = str(err.value)
    assert "\n" not in msg and "jmt" in msg
    for word in words:
        assert word in msg, (word, msg)


def test_step_compiles_once_and_runs_under_vmap_over_seeds_with_the_anchor_in_the_optimizer_state():
    ts = dense_set(n=8, dim=5)
    data = ts.splits["train"]
    model = build_model("jmt", ts, (Dense(4),), label_probs=PROBS, successive={"delta": 0.5, "period": 2})
    w = get_weighting("equal")
    tx = make_optimizer("sgd", 0.1, model=model)
    step = make_train_step(model, ts.tasks, w, tx)
    seeds, orders = (0, 1), [BatchOrder(8, 4, s) for s in (0, 1)]

    @jit
    def program(stacked, separate, batches):
        one = [step(st, jax.tree_util.tree_map(lambda b: b[k], batches))[0] for k, st in enumerate(separate)]
        return jax.vmap(step)(stacked, batches)[0], one

    init = jit(lambda key: init_state(model, w, tx, 3, data["inputs"][:2], key))
    separate = [init(jax.random.PRNGKey(s)) for s in seeds]
    stacked, history = stack(separate), []
    for i in range(3):
        history.append(stacked.params["model"])
        stacked, separate = program(stacked, separate, stack([gather(data, o(i)) for o in orders]))
    assert program._cache_size() == 1
    for k, st in enumerate(separate):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[k], b, rtol=1e-4, atol=1e-5),
                               (stacked.params, stacked.opt_state), (st.params, st.opt_state))
    term = stacked.opt_state[0]
    assert isinstance(term, SuccessiveState) and np.all(term.count == 3)
    # refreshed at the update with count 2: the anchor is the parameters after two steps
    encoder_anchor = term.anchor[0]  # leaves in tree order: encoder... -> the first penalised leaf
    first = jax.tree_util.tree_leaves({"model": history[2], "weighting": {}})
    penalised = [i for i, v in enumerate(jax.tree_util.tree_leaves(
        {"model": model.successive_weights(history[2]), "weighting": {}})) if np.any(np.asarray(v) != 0)]
    np.testing.assert_array_equal(encoder_anchor, first[penalised[0]])
    assert len(term.anchor) == len(penalised)
