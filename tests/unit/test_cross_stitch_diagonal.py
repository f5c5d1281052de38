"""cross_stitch units='diagonal' (the ablation control of experiments/cross_stitch_ablation.py):
by definition x'_t = alpha[t, t] * x_t per channel, no column reads another. Checked against
'channel' units whose off-diagonal entries are zeroed by hand, on the tiny MLP and CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures_archs import HEAD_HIDDEN, TINY_BACKBONES, batch, task_set
from mtlx import taps
from mtlx.architectures import build_model
from mtlx.losses import task_losses


@pytest.mark.parametrize("backbone", ["mlp", "cnn"])
def test_diagonal_units_equal_channel_units_without_cross_terms(backbone):
    ts, blocks = task_set(backbone), TINY_BACKBONES[backbone][0]
    b = batch(backbone)
    diag, chan = (build_model("cross_stitch", ts, blocks, head_hidden=HEAD_HIDDEN, units=u, self_weight=0.8)
                  for u in ("diagonal", "channel"))
    params = jax.device_get(jax.jit(diag.init)(jax.random.key(0, impl="rbg"), b["inputs"])["params"])
    units = [k for k in params if taps.is_mixing(k)]
    assert units
    T = ts.num_tasks
    eye = np.eye(T)[:, :, None]
    for k in units:  # initialised self_weight on the diagonal, 0 across
        np.testing.assert_allclose(np.asarray(params[k]), np.broadcast_to(0.8 * eye, params[k].shape))
    # arbitrary values everywhere, off-diagonal entries included: 'diagonal' must ignore the latter
    rng = np.random.default_rng(1)
    noisy = dict(params, **{k: jnp.asarray(rng.uniform(0.2, 1.5, params[k].shape), jnp.float32) for k in units})
    zeroed = dict(noisy, **{k: noisy[k] * eye for k in units})

    def loss(model, p):
        preds, aux = model.apply({"params": p}, b["inputs"])
        return jnp.sum(task_losses(ts.tasks, preds, b)) + sum(aux.values()), preds

    @jax.jit  # one compile for the three passes (the tests' time is XLA's compile time on a CPU)
    def passes(noisy, zeroed):
        (_, pd), gd = jax.value_and_grad(lambda p: loss(diag, p), has_aux=True)(noisy)
        (_, pc), gc = jax.value_and_grad(lambda p: loss(chan, p), has_aux=True)(zeroed)
        return pd, gd, pc, gc, chan.apply({"params": noisy}, b["inputs"])[0]

    pd, gd, pc, gc, pn = jax.device_get(passes(noisy, zeroed))
    for t in pd:
        np.testing.assert_allclose(np.asarray(pd[t]), np.asarray(pc[t]), rtol=1e-5, atol=1e-6)
    assert abs(float(pc[ts.tasks[0].name].std())) > 0
    for k in units:
        g = np.asarray(gd[k])
        assert np.all(g * (1 - eye) == 0), k  # no gradient reaches the held-off entries: Adam never moves them
        np.testing.assert_allclose(g * eye, np.asarray(gc[k]) * eye, rtol=1e-4, atol=1e-6)
        assert np.abs(g).sum() > 0, k
    # and 'channel' with the same arbitrary values does mix: the control differs from the network it ablates
    assert any(not np.allclose(np.asarray(pn[t]), np.asarray(pd[t]), atol=1e-4) for t in pd)
