"""The benchmark's loop baseline computes the same step as the vectorised one."""

import jax
import numpy as np
import pytest

from helpers import MLP, batch_of, dense_set
from launch import bench
from mtlx.architectures import build_model
from mtlx.train import make_optimizer
from mtlx.weighting import get_weighting


@pytest.mark.parametrize("arch,name", [("hard", "mgda"), ("hard", "imtl"), ("cross_stitch", "upgrad")])
def test_loop_step_applies_the_same_update_as_the_train_step(arch, name):
    """The loop-based step the bench times (T backward calls, then combine and
    Adam) gives the parameters the jitted step gives: it is a fair baseline."""
    ts = dense_set()
    batch = jax.device_put(batch_of(ts))
    model = build_model(arch, ts, MLP)
    w = get_weighting(name)
    tx = make_optimizer("sgd", 1.0)   # Adam's first step is sign(g): blind to errors in |g|
    compiled, state = bench.compiled_step(model, ts, w, batch, tx)
    new, _ = compiled(state, batch)
    assert not np.allclose(jax.tree_util.tree_leaves(new.params["model"])[0], jax.tree_util.tree_leaves(state.params["model"])[0])
    params, _ = bench.loop_step(model, ts, w, batch, tx)()
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                           new.params["model"], params["model"])
