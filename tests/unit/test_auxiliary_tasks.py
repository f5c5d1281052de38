"""Auxiliary tasks (mtlx.tasks roles, mtlx.data.auxiliary, mtlx.gradient_reversal, the report on main tasks),
checked against their definitions: the reversal layer's gradient is exactly -lambda times the plain one and its
forward the identity (Ganin & Lempitsky 2015), at the heads of every architecture; reconstruction / hint targets
are the inputs / the feature; a train-only task has no eval metrics; Δm (Maninis et al. 2019) is the mean over
the MAIN tasks only, computed here by hand."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fixtures_archs import HEAD_HIDDEN, TINY_MLP, tiny_dense, tiny_image
from mtlx import grads, results, tasks
from mtlx.architectures import ARCHITECTURES, build_model
from mtlx.architectures.base import HEAD_PREFIX
from mtlx.data import auxiliary, get_task_set
from mtlx.gradient_reversal import reverse_gradient
from mtlx.losses import compute_metrics
from mtlx.report.aggregate import aggregate, metric_columns
from mtlx.weighting import WEIGHTINGS

LAM = 0.7
KEY = jax.random.key(0, impl="rbg")  # cheap to compile on XLA:CPU (see fixtures_archs)
OPTIONS = {"mmoe": {"num_experts": 2}, "omoe": {"num_experts": 2}}  # the others: their defaults


def row_sum(x):
    """A 'provided function of the inputs' for a hint (imported by the transform as test_auxiliary_tasks:row_sum)."""
    return x.reshape(len(x), -1).sum(-1)


# --------------------------------------------------------------------------- the reversal layer


def test_reverse_gradient_is_identity_forward_and_flips_the_gradient_exactly():
    x = jax.random.normal(jax.random.key(1), (4, 3))
    w = jax.random.normal(jax.random.key(2), (4, 3))
    g = lambda z: jnp.sum(jnp.sin(z) * w)  # noqa: E731
    np.testing.assert_array_equal(reverse_gradient(x, LAM), x)
    np.testing.assert_array_equal(jax.grad(lambda z: g(reverse_gradient(z, LAM)))(x), -LAM * jax.grad(g)(x))
    # lambda traced (a vmapped population of lambdas): the same, per member
    lams = jnp.array([0.5, 2.0])
    got = jax.vmap(lambda lam: jax.grad(lambda z: g(reverse_gradient(z, lam)))(x))(lams)
    np.testing.assert_array_equal(got, -lams[:, None, None] * jax.grad(g)(x)[None])


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_architecture_reads_its_heads_input_through_the_reversal(name):
    """Traced only (no compilation): every registry architecture's forward goes through
    ``MTLModel.reversed_for_heads`` once, where the gradient test below checks what it does."""
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    rev = build_model(name, ts, TINY_MLP, HEAD_HIDDEN, **OPTIONS.get(name, {})).clone(gradient_reversal=(0, LAM, 0))
    calls = []

    def count(next_fun, args, kwargs, context):
        if context.method_name == "reversed_for_heads":
            calls.append(context.module.name)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(count):
        jax.eval_shape(lambda: rev.apply(rev.init(KEY, x), x))
    assert len(calls) == 2  # once in init, once in apply


# single_task: stacked task columns reach the heads; hard: a shared trunk (h copied per task, then reversed)
@pytest.mark.parametrize("name", ["single_task", "hard"])
def test_reversal_at_the_heads_flips_exactly_the_gradient_below_them(name):
    """Task 'bin' reversed: the same predictions; the gradient of its loss is unchanged on the head's own
    parameters and exactly -lambda times the plain one on every parameter below the head."""
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    plain = build_model(name, ts, TINY_MLP, HEAD_HIDDEN, **OPTIONS.get(name, {}))
    rev = plain.clone(gradient_reversal=(0.0, LAM, 0.0))
    params = plain.init(KEY, x)["params"]
    c = jax.random.normal(jax.random.key(3), (len(x), 2))

    def loss(model):
        return lambda p: jnp.sum(model.apply({"params": p}, x)[0]["bin"] * c)

    (p0, g0), (p1, g1) = (jax.jit(lambda p, m=m: (m.apply({"params": p}, x)[0], jax.grad(loss(m))(p)))(params)
                          for m in (plain, rev))
    for t in ts.task_names:  # a shared h becomes T copies: the heads' matmuls may round differently
        np.testing.assert_allclose(p0[t], p1[t], rtol=1e-6, atol=1e-7)
    for top in params:
        want = g0[top] if str(top).startswith(HEAD_PREFIX) else jax.tree_util.tree_map(lambda a: -LAM * a, g0[top])
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1[top], want)


def test_gradient_engine_rows_and_mgda_ub_gram_see_the_reversal():
    """The gradient engine's per-task rows (one backward through the heads, the rows below from the sown
    heads' input): task 'bin''s row is -lambda times its plain row, the others' rows unchanged; MGDA-UB's
    Gram of dL_t/dz (the shared representation) is diag(s) G diag(s), s = (1, -lambda, 1)."""
    ts = tiny_dense()
    batch = jax.tree_util.tree_map(jnp.asarray, dict(ts.splits["train"]))
    plain = build_model("hard", ts, TINY_MLP, HEAD_HIDDEN, split=-1)
    rev = plain.clone(gradient_reversal=(0.0, LAM, 0.0))
    params = plain.init(KEY, batch["inputs"])["params"]
    (rows0, gram0), (rows1, gram1) = (
        jax.jit(lambda p, m=m: tuple(grads.engine(m, ts.tasks, k)(p, batch).grads for k in ("jacobian",
                                                                                         "representation")))(params)
        for m in (plain, rev))
    s = np.array([1.0, -LAM, 1.0])
    np.testing.assert_allclose(rows1, s[:, None] * rows0, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gram1, np.outer(s, s) * gram0, rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- the transforms


def _with(ts_fn, specs, marked=()):
    return auxiliary.apply(ts_fn(), {tasks.TRANSFORMS_OPTION: specs, tasks.AUXILIARY_OPTION: list(marked)})


def test_reconstruction_and_hint_targets_are_the_inputs_and_the_feature():
    ts = _with(tiny_image, [{"kind": "reconstruction", "name": "rec"},
                            {"kind": "hint", "name": "pix", "feature": [3, 10]},
                            {"kind": "hint", "name": "sum", "function": "test_auxiliary_tasks:row_sum"},
                            {"kind": "hint", "name": "sign", "feature": 7, "target_kind": "binary"}])
    split = ts.splits["train"]
    x = split["inputs"]
    flat = x.reshape(len(x), -1)
    np.testing.assert_array_equal(split["targets"]["rec"], flat)
    np.testing.assert_array_equal(split["targets"]["pix"], flat[:, [3, 10]])
    np.testing.assert_allclose(split["targets"]["sum"], x.sum((1, 2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(split["targets"]["sign"], (flat[:, 7] > 0).astype(np.float32))
    by_name = {t.name: t for t in ts.tasks}
    assert (by_name["rec"].kind, by_name["rec"].num_outputs) == ("regression", 64)
    assert by_name["pix"].num_outputs == 2 and by_name["sign"].kind == "binary"
    assert ts.main_task_names == ("a", "b") and ts.auxiliary_task_names == ("rec", "pix", "sum", "sign")
    assert all(np.all(split["weights"][t] == 1) for t in ("rec", "pix", "sum", "sign"))


def test_adversarial_task_carries_its_reversal_and_copies_a_tasks_labels():
    ts = _with(tiny_dense, [{"kind": "adversarial", "name": "adv", "task": "cls", "reversal": 0.25}])
    adv = ts.tasks[-1]
    assert (adv.kind, adv.num_outputs, adv.role, adv.gradient_reversal) == ("classification", 3, "auxiliary", 0.25)
    np.testing.assert_array_equal(ts.splits["train"]["targets"]["adv"], ts.splits["train"]["targets"]["cls"])


def test_future_task_has_train_targets_only_and_no_eval_metrics():
    ts = get_task_set("synthetic_classification", num_tasks=2, num_classes=3, dim=4, n_train=40, n_validation=10,
                      n_test=10, extras=True, label_noise=0.5,
                      auxiliary_tasks=[{"kind": "future", "name": "fut", "extra": "clean_task0",
                                        "target_kind": "classification"}])
    plain = get_task_set("synthetic_classification", num_tasks=2, num_classes=3, dim=4, n_train=40, n_validation=10,
                         n_test=10, label_noise=0.0)  # the same draws without noise: the clean labels
    fut = ts.tasks[-1]
    assert fut.role == "auxiliary" and "fut" not in ts.main_task_names
    np.testing.assert_array_equal(ts.splits["train"]["targets"]["fut"], plain.splits["train"]["targets"]["task0"])
    assert np.all(ts.splits["train"]["weights"]["fut"] == 1)
    for s in ("validation", "test"):
        assert np.all(ts.splits[s]["weights"]["fut"] == 0)
        m = compute_metrics(fut, np.zeros((10, 3)), ts.splits[s]["targets"]["fut"], ts.splits[s]["weights"]["fut"])
        assert tasks.LOSS not in m and all(math.isnan(v) for v in m.values())
    assert all("extras" not in split for split in ts.splits.values())  # never shipped to the train step


def test_static_weights_on_auxiliary_tasks_weight_their_gradients():
    """``static`` (weights in task-set order, auxiliary tasks last): the model gradient is sum_t w_t dL_t/dtheta,
    L_t written here by hand (cross-entropy, mean squared error)."""
    ts = _with(tiny_dense, [{"kind": "reconstruction", "name": "rec"}], marked=["reg"])
    batch = jax.tree_util.tree_map(jnp.asarray, dict(ts.splits["train"]))
    model = build_model("hard", ts, TINY_MLP, HEAD_HIDDEN, split=-1)
    params = model.init(KEY, batch["inputs"])["params"]
    w = [1.0, 1.0, 0.3, 0.3]
    weights, *_ = WEIGHTINGS["static"](weights=w).combine(jnp.zeros(4), None, None, None)
    got = jax.jit(lambda p: grads.engine(model, ts.tasks, "none")(p, batch).finish(weights, None))(params)

    def total(p):
        out = model.apply({"params": p}, batch["inputs"])[0]
        y = batch["targets"]
        ce = optax.softmax_cross_entropy_with_integer_labels(out["cls"], y["cls"]).mean()
        bce = optax.sigmoid_binary_cross_entropy(out["bin"], y["bin"]).mean()
        mse = lambda p_, t: jnp.mean((p_.reshape(t.shape[0], -1) - t.reshape(t.shape[0], -1)) ** 2)  # noqa: E731
        return w[0] * ce + w[1] * bce + w[2] * mse(out["reg"], y["reg"]) + w[3] * mse(out["rec"], y["rec"])

    want = jax.jit(jax.grad(total))(params)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), got, want)


# --------------------------------------------------------------------------- errors: one line naming the field


@pytest.mark.parametrize("make,words", [
    (lambda: tasks.Task("x", "regression", 1, role="helper"), ["Task('x').role='helper'", "auxiliary", "main"]),
    (lambda: tasks.Task("x", "regression", 1, gradient_reversal=-1.0), ["Task('x').gradient_reversal=-1.0"]),
    (lambda: _with(tiny_dense, [], marked=["nope"]), ["task_set.options.auxiliary=['nope']", "'cls'"]),
    (lambda: _with(tiny_dense, [], marked=["cls", "bin", "reg"]), ["task_set.options.auxiliary", "no main task"]),
    (lambda: _with(tiny_dense, [{"kind": "hints", "name": "h"}]),
     ["task_set.options.auxiliary_tasks[0].kind='hints'", "reconstruction"]),
    (lambda: _with(tiny_dense, [{"kind": "hint", "name": "h", "feature": 9}]),
     ["task_set.options.auxiliary_tasks[0].feature=9"]),
    (lambda: _with(tiny_dense, [{"kind": "hint", "name": "h"}]), ["auxiliary_tasks[0]", "exactly one of"]),
    (lambda: _with(tiny_dense, [{"kind": "adversarial", "name": "h", "task": "cls", "reversal": 0}]),
     ["task_set.options.auxiliary_tasks[0].reversal=0"]),
    (lambda: _with(tiny_dense, [{"kind": "hint", "name": "cls", "feature": 0}]),
     ["task_set.options.auxiliary_tasks[0].name='cls'"]),
])
def test_bad_roles_and_auxiliary_options_are_one_line_naming_the_field(make, words):
    with pytest.raises(ValueError) as e:
        make()
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


# --------------------------------------------------------------------------- Δm over main tasks


def _summary(arch, seed, values, roles_in_summary=True):
    """A finished run's summary: tasks a (accuracy), b (mse) main; aux (accuracy) and fut (accuracy, NaN) auxiliary."""
    kinds = {"a": ("accuracy", True), "b": ("mse", False), "aux": ("accuracy", True), "fut": ("accuracy", True)}
    info = {t: {"index": i, "main_metric": m, "higher_is_better": {m: hib, "loss": False}}
            for i, (t, (m, hib)) in enumerate(kinds.items())}
    if roles_in_summary:
        for t in ("aux", "fut"):
            info[t]["role"] = "auxiliary"
    config = {"task_set": {"name": "x", "options": {"auxiliary": ["aux"], "auxiliary_tasks": [{"name": "fut"}]}}}
    return {"status": results.DONE, "run_id": f"{arch}-s{seed}", "architecture": arch, "weighting": "equal",
            "seed": seed, "sweep": {}, "tasks": info, "config": config,
            "metrics": {t: {kinds[t][0]: v} for t, v in values.items()}}


@pytest.mark.parametrize("roles_in_summary", [True, False])
def test_delta_m_is_the_mean_over_main_tasks_only(roles_in_summary):
    base = {0: {"a": 0.80, "b": 0.50, "aux": 0.3, "fut": float("nan")},
            1: {"a": 0.84, "b": 0.46, "aux": 0.4, "fut": float("nan")}}
    mine = {0: {"a": 0.90, "b": 0.40, "aux": 0.1, "fut": float("nan")},
            1: {"a": 0.86, "b": 0.44, "aux": 0.2, "fut": float("nan")}}
    exp = {"grid": {"baseline": "single_task"}}

    def rows(aux_shift):
        runs = [_summary("single_task", s, v, roles_in_summary) for s, v in base.items()]
        runs += [_summary("hard", s, {**v, "aux": v["aux"] + aux_shift}, roles_in_summary) for s, v in mine.items()]
        return aggregate(runs, experiment=exp)

    a_b, a_m = np.mean([0.80, 0.84]), np.mean([0.90, 0.86])
    b_b, b_m = np.mean([0.50, 0.46]), np.mean([0.40, 0.44])
    by_hand = 100 * ((a_m - a_b) / a_b + -(b_m - b_b) / b_b) / 2
    for shift in (0.0, 0.55, -0.3):  # the auxiliary task's metric changed arbitrarily: Δm does not move
        hard = rows(shift)[1]
        assert hard["delta_m"] == pytest.approx(by_hand, rel=1e-12)
        assert list(hard["main_metric"]) == ["a", "b"] and hard["auxiliary_tasks"] == ["aux", "fut"]
        assert set(hard["tests"]) <= {"a", "b"}
        assert hard["auxiliary_metrics"]["aux"]["accuracy"]["mean"] == pytest.approx(0.15 + shift)
    assert metric_columns(rows(0.0)) == [("a", "accuracy"), ("b", "mse")]


def test_task_roles_read_from_the_summary_else_the_config():
    s = _summary("hard", 0, {"a": 0.9}, roles_in_summary=False)
    assert results.task_roles(s) == {"a": "main", "b": "main", "aux": "auxiliary", "fut": "auxiliary"}
    s["tasks"]["b"]["role"] = "auxiliary"
    assert results.task_roles(s)["b"] == "auxiliary"
