"""Tiny backbones and task sets for the architecture tests, and ONE compiled
forward/gradient per (architecture, options, backbone) shared by every test
of the session (XLA compile time dominates these tests on a CPU).

Shapes are the smallest that still exercise each scheme: batch 3-4, widths
3-6 (even where sluice splits them in two subspaces), sequences of 4 tokens
(with padding), 8x8 images. Params are drawn with the ``rbg`` PRNG: the same
initialisers, but XLA:CPU compiles threefry's bit generator slowly (2-3x the
init's compile time); nothing here depends on the particular draw.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtlx.architectures import build_model
from mtlx.layers import BiLSTM, Conv, Dense, Embed
from mtlx.losses import task_losses
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


class Compiled:
    """A model with its jitted init and its jitted ``params -> (preds, aux, grads)``
    of the summed task losses (plus aux penalties), each compiled once."""

    def __init__(self, name, backbone, options, head_hidden):
        self.task_set = ts = task_set(backbone)
        self.blocks = TINY_BACKBONES[backbone][0]
        self.model = model = build_model(name, ts, self.blocks, head_hidden=head_hidden, **dict(options))
        self.batch = batch(backbone)
        self.x = self.batch["inputs"]
        self._init = jax.jit(model.init)

        def loss(p, b):
            preds, aux = model.apply({"params": p}, b["inputs"])
            return jnp.sum(task_losses(ts.tasks, preds, b)) + sum(aux.values()), (preds, aux)

        self._grads = jax.jit(jax.grad(loss, has_aux=True))
        self._params = None

    def init(self, seed=0):
        return self._init(jax.random.key(seed, impl="rbg"), self.x)["params"]

    @property
    def params(self):
        """The params at seed 0 (computed once)."""
        if self._params is None:
            self._params = self.init(0)
        return self._params

    def outputs_and_grads(self, params):
        g, (preds, aux) = self._grads(params, self.batch)
        return preds, aux, g


@functools.lru_cache(maxsize=None)
def _compiled(name, backbone, options, head_hidden):
    return Compiled(name, backbone, options, head_hidden)


@pytest.fixture(scope="session")
def compiled():
    """``compiled(name, backbone, head_hidden=HEAD_HIDDEN, **options)`` -> Compiled, shared by the session."""

    def get(name, backbone, head_hidden=HEAD_HIDDEN, **options):
        return _compiled(name, backbone, tuple(sorted(options.items())), tuple(head_hidden))

    return get
