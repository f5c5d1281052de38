"""Small fixtures shared by the core tests: tiny task sets, no files."""

import jax
import numpy as np

from mtlx.data.synthetic import mmoe_synthetic, synthetic_classification  # noqa: F401 (re-exported for tests)
from mtlx.layers import BiLSTM, Conv, Dense, Embed
from mtlx.tasks import Task, TaskSet

MLP = (Dense(16), Dense(12), Dense(8))
CNN = (Conv(4, 5), Conv(6, 3), Dense(10))
LSTM = (Embed(30, 8), BiLSTM(6), BiLSTM(4))


def dense_set(n=64, dim=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    split = {"inputs": x,
             "targets": {"cls": rng.integers(0, 3, n).astype(np.int32),
                         "bin": rng.integers(0, 2, (n, 2)).astype(np.float32),
                         "reg": rng.standard_normal(n).astype(np.float32)},
             "weights": {k: np.ones(n, np.float32) for k in ("cls", "bin", "reg")}}
    tasks = (Task("cls", "classification", 3), Task("bin", "binary", 2), Task("reg", "regression", 1))
    return TaskSet("tiny_dense", tasks, (dim,), "dense", splits={"train": split, "test": split})


def image_set(n=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 12, 12, 1)).astype(np.float32)
    split = {"inputs": x, "targets": {"a": rng.integers(0, 4, n).astype(np.int32), "b": rng.integers(0, 2, n).astype(np.float32)},
             "weights": {"a": np.ones(n, np.float32), "b": np.ones(n, np.float32)}}
    return TaskSet("tiny_image", (Task("a", "classification", 4), Task("b", "binary", 1)), (12, 12, 1), "image",
                   splits={"train": split, "test": split})


def token_set(n=16, length=7, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, length + 1, n)
    x = rng.integers(1, 30, (n, length)).astype(np.int32)
    pad = np.arange(length)[None] >= lengths[:, None]
    x[pad] = 0
    ys = {k: np.where(pad, -1, rng.integers(0, c, (n, length))).astype(np.int32) for k, c in (("pos", 5), ("ner", 3))}
    split = {"inputs": x, "targets": ys, "weights": {k: np.ones(n, np.float32) for k in ys}}
    return TaskSet("tiny_tokens", (Task("pos", "tagging", 5), Task("ner", "tagging", 3)), (length,), "tokens",
                   vocab_size=30, splits={"train": split, "test": split})


BACKBONES = {"mlp": (MLP, dense_set), "cnn": (CNN, image_set), "bilstm": (LSTM, token_set)}


def batch_of(ts, split="train"):
    return jax.tree_util.tree_map(np.asarray, dict(ts.splits[split]))


def dmtrl_param_count(method, shape, r):
    """DMTRL's counts: LAF D r + r T; Tucker prod(r) + sum n_i r_i; TT sum r_{k-1} n_k r_k."""
    if method == "laf":
        return int(np.prod(shape[:-1])) * r[0] + r[0] * shape[-1]
    if method == "tucker":
        return int(np.prod(r)) + sum(n * k for n, k in zip(shape, r))
    full = (1,) + tuple(r) + (1,)
    return sum(full[k] * shape[k] * full[k + 1] for k in range(len(shape)))
