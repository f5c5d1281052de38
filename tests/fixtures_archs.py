"""Tiny backbones and task sets for the architecture tests (XLA compile time,
which grows with the shapes and the number of models, dominates them on a CPU).

Shapes are the smallest that still exercise each scheme: batch 3-4, widths
3-6 (even where sluice splits them in two subspaces), sequences of 4 tokens
(with padding), 8x8 images. The tests draw params with the ``rbg`` PRNG
(``jax.random.key(0, impl="rbg")``): the same initialisers, but XLA:CPU
compiles threefry's bit generator slowly (2-3x an init's compile time);
nothing in them depends on the particular draw.
"""

import functools

import numpy as np

from mtlx.layers import BiLSTM, Conv, Dense, Embed
from mtlx.tasks import Task, TaskSet

TINY_MLP = (Dense(6), Dense(4), Dense(4))
TINY_CNN = (Conv(4, kernel=3), Conv(4, kernel=2, pool=1), Dense(4))
TINY_LSTM = (Embed(12, 4), BiLSTM(2), Dense(4))  # Dense per token
HEAD_HIDDEN = (3,)


def _split(inputs, targets):
    n = len(inputs)
    return {"inputs": inputs, "targets": targets, "weights": {k: np.ones(n, np.float32) for k in targets}}


def tiny_dense(n=4, dim=5, seed=0):
    """Three tasks of three kinds and output widths (3, 2, 1)."""
    rng = np.random.default_rng(seed)
    split = _split(rng.standard_normal((n, dim)).astype(np.float32),
                   {"cls": rng.integers(0, 3, n).astype(np.int32),
                    "bin": rng.integers(0, 2, (n, 2)).astype(np.float32),
                    "reg": rng.standard_normal(n).astype(np.float32)})
    tasks = (Task("cls", "classification", 3), Task("bin", "binary", 2), Task("reg", "regression", 1))
    return TaskSet("tiny_dense", tasks, (dim,), "dense", splits={"train": split})


def tiny_equal(n=4, dim=5, seed=1):
    """Three 3-way classification tasks (one output width)."""
    rng = np.random.default_rng(seed)
    names = ("a", "b", "c")
    split = _split(rng.standard_normal((n, dim)).astype(np.float32),
                   {k: rng.integers(0, 3, n).astype(np.int32) for k in names})
    return TaskSet("tiny_equal", tuple(Task(k, "classification", 3) for k in names), (dim,), "dense",
                   splits={"train": split})


def tiny_image(n=3, seed=0):
    rng = np.random.default_rng(seed)
    split = _split(rng.random((n, 8, 8, 1)).astype(np.float32),
                   {"a": rng.integers(0, 4, n).astype(np.int32), "b": rng.integers(0, 2, n).astype(np.float32)})
    return TaskSet("tiny_image", (Task("a", "classification", 4), Task("b", "binary", 1)), (8, 8, 1), "image",
                   splits={"train": split})


def tiny_tokens(n=3, length=4, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.array([4, 2, 3])[:n]
    x = rng.integers(1, 12, (n, length)).astype(np.int32)
    pad = np.arange(length)[None] >= lengths[:, None]
    x[pad] = 0
    ys = {k: np.where(pad, -1, rng.integers(0, c, (n, length))).astype(np.int32) for k, c in (("pos", 5), ("ner", 3))}
    return TaskSet("tiny_tokens", (Task("pos", "tagging", 5), Task("ner", "tagging", 3)), (length,), "tokens",
                   vocab_size=12, splits={"train": _split(x, ys)})


TINY_BACKBONES = {"mlp": (TINY_MLP, tiny_dense), "cnn": (TINY_CNN, tiny_image), "bilstm": (TINY_LSTM, tiny_tokens)}


@functools.lru_cache(maxsize=None)
def task_set(backbone):
    return TINY_BACKBONES[backbone][1]()


def batch(backbone):
    return task_set(backbone).splits["train"]
