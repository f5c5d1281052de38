"""Every convolution implementation of mtlx/conv.py is lax.conv_general_dilated (VALID, stride 1,
NHWC/HWIO): values and gradients for several shapes and channel counts, alone, inside the
conv + bias + activation + max-pool block, and for stacked copies under vmap; and 'auto'
resolves to the expected implementation per backend."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mtlx import conv as conv_lib
from mtlx.layers import Conv, apply_stacked, check_block, init_stacked

IMPLS = [i for i in conv_lib.IMPLS if i != "auto"]
# (batch, H, W, C_in, kernel, C_out): one input channel, RGB-like, more channels, non-square
SHAPES = [(2, 7, 6, 1, 3, 4), (3, 9, 9, 3, 5, 2), (2, 6, 8, 5, 2, 3)]


def reference(x, k):
    return lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)


def reference_pool(y, p):
    return lax.reduce_window(y, -jnp.inf, lax.max, (1, p, p, 1), (1, p, p, 1), "VALID")


def arrays(shape, seed=0):
    b, h, w, cin, k, cout = shape
    r = np.random.default_rng(seed)
    return (jnp.asarray(r.normal(size=(b, h, w, cin)), jnp.float32), jnp.asarray(r.normal(size=(k, k, cin, cout)), jnp.float32),
            jnp.asarray(r.normal(size=(b, h - k + 1, w - k + 1, cout)), jnp.float32))


def value_and_grads(f, x, k, ct):
    """f(x, k), and the gradients of <f(x, k), ct> in x and k."""
    return f(x, k), jax.grad(lambda x, k: jnp.vdot(f(x, k), ct), (0, 1))(x, k)


@pytest.mark.parametrize("shape", SHAPES)
def test_each_conv_equals_lax_conv_with_gradients(shape):
    x, k, ct = arrays(shape)
    run = jax.jit(lambda x, k, ct: [value_and_grads(f, x, k, ct) for f in
                                    [reference] + [conv_lib.CONVS[i] for i in IMPLS]])
    (want, (wdx, wdk)), *got = run(x, k, ct)
    for impl, (y, (dx, dk)) in zip(IMPLS, got):
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4, err_msg=impl)
        np.testing.assert_allclose(dx, wdx, rtol=1e-4, atol=1e-4, err_msg=impl)
        np.testing.assert_allclose(dk, wdk, rtol=1e-4, atol=1e-4, err_msg=impl)


def test_conv_block_with_bias_activation_and_pool_equals_definition():
    """relu(conv(x) + b) then VALID max-pool (odd 5 x 5 map: the last row/column dropped)."""
    x, k, _ = arrays((2, 9, 9, 2, 5, 3), seed=1)
    b = jnp.asarray([0.1, -0.2, 0.3])
    ref = lambda x, k, b: reference_pool(jax.nn.relu(reference(x, k) + b), 2)
    loss = lambda f: lambda x, k, b: jnp.sum(f(x, k, b) ** 2)
    blocks = [ref] + [lambda x, k, b, i=i: conv_lib.conv_act_pool(x, k, b, jax.nn.relu, 2, i) for i in IMPLS]
    run = jax.jit(lambda x, k, b: [(f(x, k, b), jax.grad(loss(f), (0, 1, 2))(x, k, b)) for f in blocks])
    (want, wgrads), *got = run(x, k, b)
    assert want.shape == (2, 2, 2, 3)
    for impl, (y, grads) in zip(IMPLS, got):
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4, err_msg=impl)
        for g, wg in zip(grads, wgrads):
            np.testing.assert_allclose(g, wg, rtol=1e-4, atol=1e-4, err_msg=impl)


@pytest.mark.parametrize("impl,stacked_input", [("auto", False), ("auto", True), ("patches", True)])
def test_stacked_copies_equal_one_reference_conv_per_copy(impl, stacked_input):
    """n = 3 task columns / experts (the input shared or stacked): unrolled ('auto' on CPU) or
    one vmap over the stacked kernels ('patches': batched matmuls)."""
    n, spec = 3, Conv(4, kernel=3, pool=2, impl=impl)
    r = np.random.default_rng(2)
    w = init_stacked(spec, jax.random.PRNGKey(0), n, (8, 8, 2))
    w["bias"] = jnp.asarray(r.normal(size=(n, 4)), jnp.float32)
    x = jnp.asarray(r.normal(size=((n,) if stacked_input else ()) + (2, 8, 8, 2)), jnp.float32)

    def per_copy(w, x):
        xs = x if stacked_input else [x] * n
        return jnp.stack([reference_pool(jax.nn.relu(reference(xs[i], w["kernel"][i]) + w["bias"][i]), 2)
                          for i in range(n)])

    loss = lambda f: lambda w, x: jnp.sum(jnp.sin(f(w, x)))
    stacked = lambda w, x: apply_stacked(spec, w, x, stacked_input=stacked_input)
    run = jax.jit(lambda w, x: [(f(w, x), jax.grad(loss(f), (0, 1))(w, x)) for f in (per_copy, stacked)])
    (want, wgrads), (got, grads) = run(w, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for g, wg in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(wgrads)):
        np.testing.assert_allclose(g, wg, rtol=1e-4, atol=1e-4)


def test_auto_selects_the_expected_implementation_per_backend():
    sel = conv_lib.select_impl
    for backend in ("gpu", "tpu", "cuda", "rocm"):   # stock XLA convolutions off CPU, always
        assert {sel("auto", c, s, backend) for c in (1, 3, 64) for s in (False, True)} == {"xla"}
    assert sel("auto", 1, False, "cpu") == "patches"
    assert sel("auto", conv_lib.PATCHES_MAX_IN_CHANNELS - 1, False, "cpu") == "patches"
    assert sel("auto", conv_lib.PATCHES_MAX_IN_CHANNELS, False, "cpu") == "eigen"
    assert sel("auto", 64, False, "cpu", per_task=True) == "xla"  # a VJP vmapped over tasks keeps XLA's
    with conv_lib.per_task_backward():
        assert sel("auto", 64, False, "cpu") == "xla" and sel("auto", 64, False, "cpu", per_task=False) == "eigen"
    assert sel("auto", 64, False, "cpu") == "eigen"
    assert sel("auto", 64, True, "cpu") == "patches"         # stacked copies: never a grouped conv
    for impl in IMPLS:                                        # an explicit choice wins everywhere
        assert sel(impl, 1, True, "cpu") == sel(impl, 64, False, "gpu") == impl
    assert sel("auto", 1) in IMPLS                            # this process's backend
    assert conv_lib.stacked_mode("auto", "cpu") == "unroll"
    assert {conv_lib.stacked_mode(i, b) for i in conv_lib.IMPLS for b in ("gpu", "tpu")} == {"vmap"}
    assert {conv_lib.stacked_mode(i, "cpu") for i in IMPLS} == {"vmap"}


def test_bad_impl_is_one_clear_error():
    with pytest.raises(ValueError, match=r"backbone\.blocks\[0\]\.impl='fft' is not valid; choose one of"):
        check_block({"kind": "conv", "features": 4, "impl": "fft"}, "backbone.blocks[0]")
    with pytest.raises(ValueError, match="conv impl='fft' is not valid"):
        conv_lib.select_impl("fft", 1)
    check_block({"kind": "conv", "features": 4, "impl": "patches"})
