"""Low supervision (Søgaard & Goldberg 2016) as hard sharing's ``head_depth``: a task whose
head reads block k gets no gradient from the blocks above k (nor from other tasks'
columns and heads), its prediction is that of hard sharing truncated after block k,
and with every head on the top block it IS hard sharing (same parameters, same outputs)."""

import functools

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

from fixtures_archs import HEAD_HIDDEN, TINY_BACKBONES, TINY_MLP, batch, task_set, tiny_dense
from mtlx.architectures import build_model
from mtlx.layers import Dense
from mtlx.losses import task_losses

KEY = jax.random.key(0, impl="rbg")  # rbg: the same initialisers, compiles faster than threefry on CPU
SMOOTH = {"mlp": tuple(Dense(b.features, "tanh") for b in TINY_MLP)}  # no dead ReLU paths: every gradient reaches


def build(backbone, blocks=None, **options):
    blocks = TINY_BACKBONES[backbone][0] if blocks is None else blocks
    return build_model("hard", task_set(backbone), blocks, head_hidden=HEAD_HIDDEN, **options)


@pytest.mark.parametrize("backbone,form", [("mlp", "list"), ("bilstm", "dict")])
def test_every_head_on_the_top_block_is_hard_sharing(backbone, form):
    L, ts, x = len(TINY_BACKBONES[backbone][0]), task_set(backbone), batch(backbone)["inputs"]
    depth = [L - 1] * ts.num_tasks if form == "list" else {ts.task_names[0]: L - 1}  # a dict: the others on top
    hard, low = build(backbone), build(backbone, head_depth=depth)

    @jax.jit
    def run(key):
        ps = [m.init(key, x)["params"] for m in (hard, low)]
        return ps, [m.apply({"params": p}, x)[0] for m, p in zip((hard, low), ps)]

    (p_hard, p_low), (y_hard, y_low) = run(KEY)
    assert jax.tree_util.tree_structure(p_low) == jax.tree_util.tree_structure(p_hard)
    jax.tree_util.tree_map(np.testing.assert_array_equal, (p_low, y_low), (p_hard, y_hard))
    assert low.shares_representation()


def block_of(path) -> int | None:
    """The backbone block a parameter belongs to (``shared_<i>`` / ``task_column_<i>``), None for a head."""
    top = str(path[0])
    return None if top.startswith("task_head_") else int(top.rsplit("_", 1)[1])


@functools.lru_cache(maxsize=None)
def per_task_gradients(backbone, split, reads):
    """The model and {param path: (T, ...) gradients of each task's loss alone} (one jacrev)."""
    ts, b = task_set(backbone), batch(backbone)
    m = build(backbone, SMOOTH.get(backbone), split=split, head_depth=list(reads))

    @jax.jit
    def run(key):
        params = m.init(key, b["inputs"])["params"]
        return jax.jacrev(lambda p: task_losses(ts.tasks, m.apply({"params": p}, b["inputs"])[0], b))(params)

    return m, flatten_dict(run(KEY))


CASES = [("mlp", -1, (0, 2, 1)), ("mlp", 1, (0, 2, 1)), ("bilstm", -1, (0, 2))]  # split 1: heads on columns too


@pytest.mark.parametrize("backbone,split,reads", CASES)
def test_a_head_gets_no_gradient_from_blocks_above_the_one_it_reads(backbone, split, reads):
    m, grads = per_task_gradients(backbone, split, reads)
    assert not m.shares_representation()
    for t, k in enumerate(reads):
        reached = set()  # the shared blocks task t's gradient reaches
        for path, g in grads.items():
            g = np.asarray(g[t])  # task t's loss alone
            i, column = block_of(path), str(path[0]).startswith("task_")
            if i is not None and i > k:
                assert not np.any(g), (t, k, path)  # above the block it reads (or not built at all)
            elif column:  # a task column or head: task t's slice only
                assert not np.any(np.delete(g, t, axis=0)), (t, k, path)
            elif np.any(g):
                reached.add(i)
        assert reached == set(range(min(k + 1, m.depth))), (t, k, reached)  # every shared block at or below k
    assert not any(block_of(p) is not None and block_of(p) > max(reads) for p in grads), "a block above every read"


def test_a_head_reads_its_block_as_hard_sharing_truncated_there():
    """Task t on block k: its prediction is that of hard sharing over blocks 0..k with the same trunk
    and t's head (its kernel's rows cut to block k's width: the padding rows read zeros)."""
    ts, x = tiny_dense(), tiny_dense().splits["train"]["inputs"]
    reads = (0, 2, 1)
    low = build_model("hard", ts, TINY_MLP, head_hidden=HEAD_HIDDEN, head_depth=list(reads))
    cut = {k: build_model("hard", ts, TINY_MLP[:k + 1], head_hidden=HEAD_HIDDEN) for k in (0, 1)}

    @jax.jit
    def run(key):
        p = low.init(key, x)["params"]
        out = {"low": low.apply({"params": p}, x)[0]}
        for k, m in cut.items():
            width = TINY_MLP[k].features
            q = {f"shared_{i}": p[f"shared_{i}"] for i in range(k + 1)}
            q["task_head_0"] = {"kernel": p["task_head_0"]["kernel"][:, :width], "bias": p["task_head_0"]["bias"]}
            q["task_head_out"] = p["task_head_out"]
            out[f"k{k}"] = m.apply({"params": q}, x)[0]
        return out

    out = run(KEY)
    for t, k in ((0, 0), (2, 1)):
        name = ts.task_names[t]
        np.testing.assert_allclose(out["low"][name], out[f"k{k}"][name], rtol=1e-5, atol=1e-6)


BAD = [  # (head_depth, words the one-line message must contain)
    ([0, 5, 1], ["'hard'", "head_depth=[0, 5, 1]", "0..2"]),
    ([0, 1], ["head_depth=[0, 1]", "one block per task (3 tasks)"]),
    ({"cls": 0, "nope": 1}, ["head_depth=", "unknown tasks ['nope']", "['cls', 'bin', 'reg']"]),
    ("top", ["head_depth='top'", "a list in task order or a dict"]),
]


@pytest.mark.parametrize("depth,words", BAD)
def test_bad_head_depth_in_one_line(depth, words):
    with pytest.raises(ValueError) as err:
        build_model("hard", tiny_dense(), TINY_MLP, head_depth=depth)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
