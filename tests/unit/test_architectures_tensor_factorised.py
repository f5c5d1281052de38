"""tensor_factorised (DMTRL, Yang & Hospedales 2017): the flax block and model
against StackedBlock / single_task, the parameter naming and counts, and the
configuration errors.

Everything that runs JAX code runs under one ``jax.jit`` per case (op-by-op
execution compiles every primitive and is much slower on this CPU).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import dmtrl_param_count

from mtlx import tensor_decomposition as td
from mtlx.architectures.single_task import SingleTask
from mtlx.architectures.tensor_factorised import FactorisedStackedBlock, TensorFactorised, factors_from_params
from mtlx.layers import BiLSTM, Conv, Dense, Embed, StackedBlock, apply_stacked

FULL = 10**6  # an int rank caps every rank at its bound: full rank
TASK_AXIS = {"laf": 1, "tucker": 0, "tt": 1}  # where the task index sits in each task factor


def _normal(*shape):
    return lambda seed: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _tokens(seed, length=4, vocab=11):
    ids = np.random.default_rng(seed).integers(1, vocab, (3, length))
    return np.where(np.arange(length)[None] < np.array([4, 2, 3])[:, None], ids, 0)  # 0 = padding


BACKBONES = {  # blocks, input maker, tokens
    "mlp": ((Dense(16), Dense(8)), _normal(4, 10), False),
    "cnn": ((Conv(4, kernel=3), Conv(6, kernel=2, pool=1), Dense(5)), _normal(3, 8, 8, 1), False),
    "bilstm": ((Embed(11, 4), BiLSTM(3)), _tokens, True),
}


def _model(backbone, **kw):
    blocks, _, tokens = BACKBONES[backbone]
    return dict(blocks=blocks, head_hidden=(), num_outputs=(3, 2), task_names=("a", "b"), tokens=tokens, **kw)


def _random_like(tree, seed, scale=0.3):
    """Concrete random values with the shapes of an abstract (eval_shape) pytree."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: (scale * rng.standard_normal(a.shape)).astype(np.float32), tree)


def _count(tree):
    return sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(tree))


# --------------------------------------------------------------------------- the block vs StackedBlock


BLOCK_CASES = {  # spec, input maker, mask maker
    "dense": (Dense(6), _normal(4, 5), None),
    "conv": (Conv(4, kernel=3, pool=2), _normal(3, 6, 6, 2), None),
    "embed": (Embed(11, 5), _tokens, None),
    "bilstm": (BiLSTM(3), _normal(3, 4, 5), lambda x: np.arange(4)[None] < np.array([4, 2, 3])[:, None]),
}


@pytest.mark.parametrize("kind", sorted(BLOCK_CASES))
def test_block_at_full_rank_replaces_stacked_block(kind):
    """Factors of StackedBlock-shaped kernels regenerate those kernels (shape and value),
    and the block's output equals the stacked block's, for every method."""
    spec, make_x, make_mask = BLOCK_CASES[kind]
    x = make_x(1)
    mask = make_mask(x) if make_mask else None
    ref = StackedBlock(spec, 3)
    ref_shapes = jax.eval_shape(lambda: ref.init(jax.random.PRNGKey(2), x, mask, stacked_input=False))["params"]
    ref_params = _random_like(ref_shapes, 2)
    in_shape = x.shape[1:]
    kernels = {w: ref_params[w] for w in spec.weight_shapes(in_shape)}
    biases = {b: ref_params[b] for b in spec.bias_shapes(in_shape)}
    blocks = {m: FactorisedStackedBlock(spec, 3, m, FULL, init_kernels=kernels, init_biases=biases) for m in td.METHODS}

    @jax.jit
    def run(x, mask):
        want = apply_stacked(spec, ref_params, x, mask, stacked_input=False)
        got = {m: b.init_with_output(jax.random.PRNGKey(3), x, mask, stacked_input=False) for m, b in blocks.items()}
        return want, got

    want, got = run(x, mask)
    for method, (out, variables) in got.items():
        params = variables["params"]
        assert set(params) == set(kernels) | {"task"} | ({"bias"} if biases else set())
        for w, kernel in kernels.items():
            gen = td.to_stacked(td.generate(method, factors_from_params(method, params[w], params["task"][w])))
            assert gen.shape == ref_shapes[w].shape
            np.testing.assert_allclose(gen, kernel, atol=1e-5)
        for b, bias in biases.items():
            np.testing.assert_array_equal(params["bias"][b], bias)
        assert out.shape == want.shape
        np.testing.assert_allclose(out, want, atol=1e-5)


# --------------------------------------------------------------------------- the architecture


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_init_from_single_task_at_full_rank_reproduces_it(backbone):
    blocks, make_x, _ = BACKBONES[backbone]
    x = make_x(1)
    st = SingleTask(**_model(backbone))
    st_params = _random_like(jax.eval_shape(st.init, jax.random.PRNGKey(5), x)["params"], 5)
    models = {m: TensorFactorised(**_model(backbone, method=m, rank=FULL, init_from={"params": st_params}))
              for m in td.METHODS}

    @jax.jit
    def run(x):
        return st.apply({"params": st_params}, x)[0], {m: model.init_with_output(jax.random.PRNGKey(0), x)
                                                        for m, model in models.items()}

    want, got = run(x)
    for method, ((preds, aux), variables) in got.items():
        params = variables["params"]
        for i, kernels in models[method].kernels(params).items():
            for w, k in kernels.items():
                assert k.shape == st_params[f"task_column_{i}"][w].shape
                np.testing.assert_allclose(k, st_params[f"task_column_{i}"][w], atol=1e-5)
        copied = {"task_head_out": st_params["task_head_out"]}  # heads and biases are copied
        copied.update({f"task_bias_{i}": st_params[f"task_column_{i}"] for i in range(len(blocks))
                       if f"task_bias_{i}" in params})
        for name, src in copied.items():
            for k, v in params[name].items():
                np.testing.assert_array_equal(v, src[k])
        assert aux == {}
        for name in want:
            assert preds[name].shape == want[name].shape
            np.testing.assert_allclose(preds[name], want[name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method,rank", [("laf", 2), ("tucker", 3), ("tucker", (3, 2, 2)), ("tt", 3), ("tt", (4, 2))])
def test_param_counts_and_naming(method, rank):
    model = TensorFactorised(**_model("mlp", method=method, rank=rank))
    x = BACKBONES["mlp"][1](0)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
    counts, ranks = model.param_counts((10,)), model.ranks((10,))
    for i, shape in {0: (10, 16, 2), 1: (16, 8, 2)}.items():  # paper order, tasks last
        r = ranks[i]["kernel"]
        if not isinstance(rank, int):
            assert r == rank
        else:
            assert r == tuple(min(rank, b) for b in td.rank_bounds(method, shape))
        built = _count(params[f"factorised_{i}"]["kernel"]) + _count(params[f"task_factor_{i}"]["kernel"])
        assert built == counts[i]["kernel"] == dmtrl_param_count(method, shape, r)
        assert params[f"task_factor_{i}"]["kernel"].shape == td.factor_shapes(method, shape, r)[-1]
        assert params[f"task_bias_{i}"]["bias"].shape == (2, shape[1])
    assert all(k.startswith(("factorised_", "task_factor_", "task_bias_", "task_head_")) for k in params)


def test_auto_rank_in_model_follows_the_kernels():
    x = BACKBONES["mlp"][1](1)
    st_params = _random_like(jax.eval_shape(SingleTask(**_model("mlp")).init, jax.random.PRNGKey(5), x)["params"], 5)
    for method in td.METHODS:
        model = TensorFactorised(**_model("mlp", method=method, rank="auto", rel_error=0.4, init_from=st_params))
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
        for i, shape in {0: (10, 16, 2), 1: (16, 8, 2)}.items():
            want = td.select_ranks(method, td.to_paper(np.asarray(st_params[f"task_column_{i}"]["kernel"])), 0.4)
            assert model.ranks((10,))[i]["kernel"] == want
            assert params[f"task_factor_{i}"]["kernel"].shape == td.factor_shapes(method, shape, want)[-1]
        # random init: ranks from a fixed reference draw, the same when init and apply trace
        model = TensorFactorised(**_model("mlp", method=method, rank="auto", rel_error=0.4), )
        model = model.clone(blocks=(Dense(16),))
        params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]
        jax.eval_shape(model.apply, {"params": params}, x)
        assert params["task_factor_0"]["kernel"].shape == td.factor_shapes(method, (10, 16, 2),
                                                                           model.ranks((10,))[0]["kernel"])[-1]


@pytest.mark.parametrize("kw,words", [
    (dict(method="svd"), ["method", "'laf'", "'tucker'", "'tt'"]),
    (dict(rank=0), ["rank", ">= 1"]),
    (dict(rank="full"), ["rank", "'auto'"]),
    (dict(rank=True), ["rank"]),
    (dict(method="tucker", rank=(4, 4)), ["rank", "block 0", "needs 3"]),
    (dict(method="tt", rank=(4, 4, 4)), ["rank", "block 0", "needs 2"]),
    (dict(method="tucker", rank=(4, 0, 2)), ["rank", "1.."]),
    (dict(rank=(4, "auto", 3)), ["rank", "per block", "2 blocks"]),
    (dict(rel_error=1.5), ["rel_error"]),
    (dict(init_from={"task_column_0": {}}), ["init_from", "task_column_1"]),
    (dict(factor_init="svd"), ["factor_init", "'svd'", "decomposed", "independent"]),
    (dict(factor_init="independent", init_from_run="/nowhere"), ["factor_init", "init_from_run"]),
])
def test_bad_config_raises_at_construction(kw, words):
    with pytest.raises(ValueError) as err:
        TensorFactorised(**_model("mlp", **kw))
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize("method,rank,words", [
    ("tucker", (11, 4, 2), ["rank", "block 0", "1..(10, 16, 2)"]),
    ("tucker", (4, 4, 3), ["rank", "block 0", "1..(10, 16, 2)"]),
    ("laf", (3,), ["rank", "block 0", "1..(2,)"]),
    ("tt", (4, 3), ["rank", "block 0", "1..(10, 2)"]),
])
def test_rank_beyond_mode_size_raises_while_tracing(method, rank, words):
    model = TensorFactorised(**_model("mlp", method=method, rank=rank))
    x = BACKBONES["mlp"][1](0)
    for check in (lambda: model.ranks((10,)), lambda: jax.eval_shape(model.init, jax.random.PRNGKey(0), x)):
        with pytest.raises(ValueError) as err:  # eval_shape only traces: nothing is compiled
            check()
        for word in words:
            assert word in str(err.value), (word, str(err.value))


def test_init_from_wrong_task_count_raises():
    x = BACKBONES["mlp"][1](0)
    st = SingleTask(blocks=(Dense(16), Dense(8)), num_outputs=(3, 2, 2), task_names=("a", "b", "c"))
    st_params = _random_like(jax.eval_shape(st.init, jax.random.PRNGKey(0), x)["params"], 0)
    model = TensorFactorised(**_model("mlp", init_from=st_params))
    with pytest.raises(ValueError, match="init_from"):
        jax.eval_shape(model.init, jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("backbone,method", [("mlp", "laf"), ("mlp", "tucker"), ("mlp", "tt"),
                                             ("cnn", "tucker"), ("bilstm", "tt")])
def test_forward_and_grad_are_task_specific_where_named(backbone, method):
    """Task a's loss reaches every shared factor, and only task a's slice of the task
    factors and biases: the 'task_' names are exactly the task-specific parameters."""
    blocks, make_x, _ = BACKBONES[backbone]
    x = make_x(1)
    model = TensorFactorised(**_model(backbone, method=method, rank=3))

    params = _random_like(jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"], 0)

    @jax.jit
    def grads(params):
        def loss_a(p):
            preds, _ = model.apply({"params": p}, x)
            return jnp.mean(preds["a"] ** 2) + jnp.mean(jnp.sin(preds["a"]))

        return jax.grad(loss_a)(params)

    g = jax.device_get(grads(params))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(g))
    for i in range(len(blocks)):
        for leaf in jax.tree_util.tree_leaves(g[f"factorised_{i}"]):
            assert np.abs(leaf).max() > 0
        for leaf in jax.tree_util.tree_leaves(g[f"task_factor_{i}"]):
            own, other = np.take(leaf, 0, axis=TASK_AXIS[method]), np.take(leaf, 1, axis=TASK_AXIS[method])
            assert np.abs(own).max() > 0 and np.abs(other).max() == 0
        for leaf in jax.tree_util.tree_leaves(g.get(f"task_bias_{i}", {})):
            assert np.abs(leaf[0]).max() > 0 and np.abs(leaf[1]).max() == 0


def test_random_init_is_seeded_vmappable_and_keeps_scale():
    x = BACKBONES["mlp"][1](1)
    model = TensorFactorised(blocks=(Dense(16),), num_outputs=(3, 2), task_names=("a", "b"), method="tucker", rank=4)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    batched = jax.eval_shape(jax.vmap(model.init, in_axes=(0, None)), keys, x)["params"]  # seeds-in-one-step
    assert batched["factorised_0"]["kernel"]["core"].shape == (2, 4, 4, 2)
    init = jax.jit(model.init)
    p0, p1 = (jax.device_get(init(k, x)["params"]) for k in keys)
    assert not np.allclose(p0["factorised_0"]["kernel"]["core"], p1["factorised_0"]["kernel"]["core"])
    kernel = np.asarray(model.kernels(p0)[0]["kernel"])
    assert kernel.shape == (2, 10, 16) and np.all(np.isfinite(kernel))
    glorot = np.sqrt(kernel.size * 2 / (10 + 16))  # expected norm of StackedBlock's Glorot-uniform draw
    assert abs(np.linalg.norm(kernel) / glorot - 1) < 0.2  # the rank-4 kernel keeps the draw's norm
    st_params = {"task_column_0": {"kernel": np.zeros(3)}}  # dict-valued field
    assert hash(TensorFactorised(blocks=(Dense(16),), rank=[2, 2, 2], init_from=st_params))  # usable as a static arg


def test_independent_factor_init_draws_each_factor_glorot_uniform():
    """factor_init='independent': every factor is its own Glorot-uniform draw (bound
    sqrt(6 / (fan_in + fan_out)) over its last two axes, variance bound^2 / 3), so the
    generated kernel's scale is the product of the factors' scales, far from a dense
    layer's Glorot norm (which the default, decomposed init keeps: the test above)."""
    x = BACKBONES["mlp"][1](1)
    model = TensorFactorised(blocks=(Dense(64),), num_outputs=(3, 2), task_names=("a", "b"), method="tucker",
                             rank=(8, 16, 2), factor_init="independent")
    p = jax.device_get(jax.jit(model.init)(jax.random.PRNGKey(3), x)["params"])
    f = dict(p["factorised_0"]["kernel"], task=p["task_factor_0"]["kernel"])
    assert {k: v.shape for k, v in f.items()} == {"core": (8, 16, 2), "mode_0": (10, 8), "mode_1": (64, 16),
                                                  "task": (2, 2)}
    rf = {"core": 8}  # Glorot's receptive field: the leading axes of a >2-D factor
    for name, a in f.items():
        fan_in, fan_out = a.shape[-2] * rf.get(name, 1), a.shape[-1] * rf.get(name, 1)
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        assert np.abs(a).max() <= bound + 1e-7, name
        assert np.abs(a).max() > 0.8 * bound, name  # uniform over the whole interval, not a rescaled draw
        if a.size >= 256:
            np.testing.assert_allclose(a.var(), bound ** 2 / 3, rtol=0.25, err_msg=name)
    kernel = np.asarray(model.kernels(p)[0]["kernel"])
    generated = np.einsum("abc,ia,jb,tc->tij", f["core"], f["mode_0"], f["mode_1"], f["task"])
    np.testing.assert_allclose(kernel, generated, rtol=1e-4, atol=1e-6)  # the kernel is the Tucker product
    glorot = np.sqrt(kernel.size * 2 / (10 + 64))
    assert np.linalg.norm(kernel) < 0.5 * glorot  # not a dense layer's scale
