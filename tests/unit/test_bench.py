"""The benchmark's loop baseline computes the same step as the vectorised one."""

import jax
import numpy as np
import pytest

from fixtures_train import MLP, tiny
from launch import bench
from mtlx.architectures import build_model
from mtlx.optim import make_optimizer
from mtlx.weighting import get_weighting


@pytest.mark.parametrize("arch,name", [("hard", "mgda"), ("hard", "imtl"), ("cross_stitch", "upgrad")])
def test_loop_step_applies_the_same_update_as_the_train_step(arch, name):
    """The loop-based step the bench times (T backward calls, then combine and
    Adam) gives the states the jitted step gives, over two threaded steps
    (MGDA's second solve starts from the first one's weights): it is a fair
    baseline."""
    _, ts, batch = tiny("mlp")
    batch = jax.device_put(batch)
    model = build_model(arch, ts, MLP)
    w = get_weighting(name)
    tx = make_optimizer("sgd", 1.0)   # Adam's first step is sign(g): blind to errors in |g|
    compiled, state = bench.compiled_step(model, ts, w, batch, tx)
    vectorised, looped = bench.threaded(compiled, state, batch), bench.loop_step(model, ts, w, batch, tx)
    first = lambda p: jax.tree_util.tree_leaves(p["model"])[0]
    for step in range(2):
        new, ref = vectorised(), looped()
        assert int(new.step) == int(ref.step) == step + 1
        assert not np.allclose(first(new.params), first(state.params))
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                               (new.params["model"], new.wstate), (ref.params["model"], ref.wstate))
