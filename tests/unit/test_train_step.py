"""The one train step (mtlx.train): every weighting's state is a fixed point of it, it runs
unchanged under vmap over seeds for every kind of per-task gradient, masked examples do not
count."""

import jax
import numpy as np
import pytest

from fixtures_train import MLP, jit, stack, tiny
from mtlx import losses as losses_lib
from mtlx.architectures import ARCHITECTURES, build_model
from mtlx.data.pipeline import BatchOrder, gather
from mtlx.optim import make_optimizer
from mtlx.train import check_weighting_fits, init_state, make_train_step
from mtlx.weighting import WEIGHTINGS, get_weighting


def weighting(name, T=3):
    return get_weighting(name, **({"weights": [1.0, 0.5, 2.0][:T]} if name == "static" else {}))


def avals(tree):
    return jax.tree_util.tree_map(lambda a: (a.shape, a.dtype, getattr(a, "weak_type", False)), tree)


def test_every_weighting_keeps_the_state_shapes():
    """Tracing the step maps the state to a state of identical shapes, dtypes and weak types:
    the condition for jit to compile it once and reuse it at every step. Checked here for every
    weighting (its state and weights); for every architecture and per-task-gradient path in
    test_grads.py (the model's parameters)."""
    _, ts, batch = tiny("mlp")
    model = build_model("hard", ts, MLP)
    for name in sorted(WEIGHTINGS):
        w = weighting(name)
        tx = make_optimizer("adam", 1e-2)
        st = init_state(model, w, tx, 3, batch["inputs"], 0)
        b = {**batch, "meta": batch} if w.needs == "lookahead" else batch
        out, metrics = jax.eval_shape(make_train_step(model, ts.tasks, w, tx, learning_rate=1e-2), st, b)
        assert avals(out) == avals(st), name
        assert metrics["losses"].shape == (3,) and metrics["weights"].shape == (3,), name


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_representation_weighting_needs_a_shared_representation(arch):
    _, ts, _ = tiny("mlp")
    model = build_model(arch, ts, MLP, **({"num_experts": 2} if arch in ("mmoe", "omoe") else {}))
    w = get_weighting("mgda_ub")
    refused = pytest.raises(ValueError, match=r"'mgda_ub' differentiates the representation shared below the heads, "
                                              rf"which architecture '{arch}' lacks .*one of \[.*'hard'")
    if type(model).has_shared_representation:
        check_weighting_fits(model, w, arch)
    else:
        with refused:
            check_weighting_fits(model, w, arch)
    if arch == "hard":  # split=0: every block is a task column, nothing is shared below the heads
        with refused:
            check_weighting_fits(build_model(arch, ts, MLP, split=0), w, arch)


KINDS = [  # (architecture, weighting, ghost): every way the step obtains per-task gradients
    ("cross_stitch", "famo", None),      # "none", a weighting with state; mixing units at their own lr
    ("hard", "uncertainty", None),       # "none", trainable weighting parameters (objective)
    ("hard", "graddrop", None),          # "jacobian", random per step
    ("hard", "mgda", None),              # "gram" from the rows
    ("hard", "nash_mtl", True),          # "gram", shared Dense blocks' part without their rows
    ("hard", "mgda_ub", None),           # "representation" (tap on the Dense head)
]


@pytest.mark.parametrize("arch,name,ghost", KINDS)
def test_step_under_vmap_over_seeds_equals_separate_runs(arch, name, ghost):
    """Three seeds vmapped through three steps give the states three separate runs give
    (parameters, optimizer and weighting states), and the step compiles once."""
    _, ts, _ = tiny("mlp")
    data = ts.splits["train"]
    model = build_model(arch, ts, MLP)
    w = weighting(name)
    tx = make_optimizer("adam", 1e-2, mixing_learning_rate=0.1)
    step = make_train_step(model, ts.tasks, w, tx, ghost=ghost)
    seeds = (0, 1, 2)
    orders = [BatchOrder(8, 4, s) for s in seeds]

    @jit
    def program(stacked, separate, batches):
        one = [step(st, jax.tree_util.tree_map(lambda b: b[k], batches))[0] for k, st in enumerate(separate)]
        return jax.vmap(step)(stacked, batches)[0], one

    separate = [init_state(model, w, tx, 3, data["inputs"][:2], s) for s in seeds]
    stacked = stack(separate)
    for i in range(3):
        stacked, separate = program(stacked, separate, stack([gather(data, o(i)) for o in orders]))
    assert program._cache_size() == 1
    for k, st in enumerate(separate):
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a[k], b, rtol=1e-4, atol=1e-5),
                               (stacked.params, stacked.opt_state, stacked.wstate), (st.params, st.opt_state, st.wstate))
    assert int(separate[0].step) == 3


def test_masked_example_does_not_change_its_task_gradient():
    _, ts, batch = tiny("mlp")
    model = build_model("hard", ts, MLP, split=1)
    params = model.init(jax.random.PRNGKey(0), batch["inputs"])["params"]

    @jit
    def grads(b):
        def loss(p, t):
            preds, _ = model.apply({"params": p}, b["inputs"])
            return losses_lib.task_losses(ts.tasks, preds, b)[t]
        return [jax.grad(loss)(params, t) for t in range(3)]

    masked = jax.tree_util.tree_map(np.copy, batch)
    masked["weights"]["cls"][:3] = 0.0
    changed = jax.tree_util.tree_map(np.copy, masked)
    changed["targets"]["cls"][:3] = (changed["targets"]["cls"][:3] + 1) % 3  # other labels where masked
    g_masked, g_changed = grads(masked), grads(changed)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), g_masked[0], g_changed[0])
    # and the mask matters: without it the same label change moves the gradient
    unmasked = jax.tree_util.tree_map(np.copy, changed)
    unmasked["weights"]["cls"][:3] = 1.0
    diff = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), grads(unmasked)[0], g_masked[0])
    assert max(jax.tree_util.tree_leaves(diff)) > 1e-4
