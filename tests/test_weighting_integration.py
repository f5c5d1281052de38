"""Every weighting with every architecture in the one train step: compiles once, vmaps over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtlx.architectures import ARCHITECTURES, build_model
from mtlx.data import get_task_set
from mtlx.data.pipeline import BatchOrder, gather
from mtlx.train import check_weighting_fits, init_state, make_optimizer, make_train_step
from mtlx.weighting import WEIGHTINGS, get_weighting

TS = get_task_set("synthetic_classification", num_tasks=3, num_classes=3, dim=6, n_train=64, n_validation=0, n_test=0)
BLOCKS = [{"kind": "dense", "features": 8}, {"kind": "dense", "features": 8}]


def weighting(name):
    return get_weighting(name, **({"weights": [1.0, 0.5, 2.0]} if name == "static" else {}))


def model(name):
    return build_model(name, TS, BLOCKS, **({"num_experts": 2} if name in ("mmoe", "omoe") else {}))


def avals(tree):
    return jax.tree_util.tree_map(lambda a: (a.shape, a.dtype, getattr(a, "weak_type", False)), tree)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_weighting_with_architecture_is_one_fixed_point_step(arch):
    """Tracing the step maps the state to a state of identical shapes, dtypes and weak types:
    the condition for jit to compile it once and reuse it at every step (checked for all pairs)."""
    m = model(arch)
    batch = gather(TS.splits["train"], BatchOrder(64, 16, 0)(0))
    for name in sorted(WEIGHTINGS):
        w = weighting(name)
        if w.needs == "representation" and not type(m).has_shared_representation:
            with pytest.raises(ValueError, match="shared representation"):
                check_weighting_fits(m, w, arch)
            continue
        tx = make_optimizer("adam", 1e-2)
        st = init_state(m, w, tx, 3, TS.splits["train"]["inputs"][:2], 0)
        out, metrics = jax.eval_shape(make_train_step(m, TS.tasks, w, tx), st, batch)
        assert avals(out) == avals(st), (arch, name)
        assert metrics["losses"].shape == (3,) and metrics["weights"].shape == (3,), (arch, name)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_gradient_weightings_train_every_architecture(arch):
    m = model(arch)
    order = BatchOrder(64, 16, 0)
    names = ["pcgrad", "uncertainty"] + (["mgda_ub"] if type(m).has_shared_representation else ["mgda"])
    for name in names:
        w = weighting(name)
        tx = make_optimizer("adam", 1e-2)
        st = init_state(m, w, tx, 3, TS.splits["train"]["inputs"][:2], 0)
        step = jax.jit(make_train_step(m, TS.tasks, w, tx))
        p0 = st.params["model"]
        for i in range(3):
            st, metrics = step(st, gather(TS.splits["train"], order(i)))
        assert step._cache_size() == 1, (arch, name)
        assert np.all(np.isfinite(metrics["losses"])), (arch, name)
        moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()), p0, st.params["model"])
        assert max(jax.tree_util.tree_leaves(moved)) > 0, (arch, name, moved)


@pytest.mark.parametrize("name,ghost", [(n, None) for n in sorted(WEIGHTINGS)] + [("mgda", True), ("nash_mtl", True)])
def test_weighting_step_under_vmap_over_seeds_equals_separate_runs(name, ghost):
    """(ghost=True: the shared Dense blocks' Gram and gradients formed without
    their rows, which these small layers would not choose by cost.)"""
    m = model("hard")
    w = weighting(name)
    tx = make_optimizer("adam", 1e-2)
    seeds = (0, 1, 2)
    orders = [BatchOrder(64, 16, s) for s in seeds]
    step = make_train_step(m, TS.tasks, w, tx, ghost=ghost)
    jstep = jax.jit(step)
    separate = []
    for s, order in zip(seeds, orders):
        st = init_state(m, w, tx, 3, TS.splits["train"]["inputs"][:2], s)
        for i in range(3):
            st, _ = jstep(st, gather(TS.splits["train"], order(i)))
        separate.append(st)
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a),
                                     *[init_state(m, w, tx, 3, TS.splits["train"]["inputs"][:2], s) for s in seeds])
    vstep = jax.jit(jax.vmap(step))
    for i in range(3):
        batch = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *[gather(TS.splits["train"], o(i)) for o in orders])
        stacked, _ = vstep(stacked, batch)
    for k, st in enumerate(separate):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[k], b, rtol=1e-4, atol=1e-5),
                               (stacked.params, stacked.wstate), (st.params, st.wstate))
