"""The blocks' exactness: im2col convolution and reshape max-pool equal XLA's, and
the BiLSTM ignores padding and really runs both ways."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtlx.layers import BiLSTM, Conv, Embed, im2col_conv, max_pool, xla_conv


def test_im2col_conv_and_reshape_pool_equal_xla():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 7, 7, 2)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 2, 4)), jnp.float32)
    c = Conv(4, 3, impl="im2col"), Conv(4, 3, impl="xla")
    w = c[0].init(jax.random.PRNGKey(0), (7, 7, 2))
    y = jnp.asarray(rng.standard_normal((2, 6, 6, 3)), jnp.float32)

    @jax.jit
    def run(x, k, w, y):
        return (im2col_conv(x, k), xla_conv(x, k), max_pool(y, 2), nn.max_pool(y, (2, 2), (2, 2)),
                c[0].apply(w, x), c[1].apply(w, x))

    a, b, p, q, u, v = run(x, k, w, y)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(p, q)
    np.testing.assert_allclose(u, v, atol=1e-4)


def test_bilstm_ignores_padding():
    lstm, emb = BiLSTM(3), Embed(20, 4)
    we, wl = emb.init(jax.random.PRNGKey(0), (5,)), lstm.init(jax.random.PRNGKey(1), (5, 4))
    ids = jnp.array([[3, 7, 2, 0, 0]])
    mask = ids > 0
    run = jax.jit(lambda ids, mask: lstm.apply(wl, emb.apply(we, ids), mask))
    out = run(ids, mask)
    short = run(ids[:, :3], mask[:, :3])
    np.testing.assert_allclose(out[:, :3], short, atol=1e-6)
    # a reverse pass really runs right to left: changing the last token changes the first output
    out2 = run(ids.at[0, 2].set(5), mask)
    assert float(jnp.abs(out2[0, 0, 3:] - out[0, 0, 3:]).max()) > 1e-6
    np.testing.assert_allclose(out2[0, 0, :3], out[0, 0, :3], atol=1e-7)
