"""jmt: the joint many-task model (Hashimoto, Xiong, Tsuruoka & Socher 2017, EMNLP, "A Joint
Many-Task Model: Growing a Neural Network for Multiple NLP Tasks"), reduced to its architecture and
its successive regularisation.

The tasks are stacked in a hierarchy, one level per task, bottom first (``order``: task names; by
default the task set's order, e.g. POS -> chunking -> NER). The backbone splits in two:

  encoder   the first ``encoder`` blocks, shared, give the input x (the paper's word
            representation x_t); by default the leading embed / conv blocks;
  level     the remaining blocks, one copy per level (the paper's one BiLSTM per task).

Level 0 reads x. Level k > 0 reads the concatenation (shortcut connections, Sec. 2.3)

    [x, h_{k-1}, y_{k-1}]

where h_{k-1} is the level below's output and y_{k-1} its task's label embedding (their Eq. for
y^(pos)): the label probabilities of the lower task's prediction times a learned table, one row
per label, y = sum_j p(label j | h_{k-1}) l(j) = p @ L. Each task's head (``head_hidden`` layers,
then the output layer: the paper's ReLU layer and softmax) sits on its own level and is the same
head whose probabilities make y. The probabilities (``label_probs``, per task) are a softmax
(classification, tagging: the paper's), a sigmoid per output (binary tasks: each label's
probability, the negative label's embedding fixed at zero, which the next layer's bias absorbs)
or the prediction itself ("linear": regression, a learned linear embedding of the value). The
default is softmax, sigmoid for a task with one output (a softmax over one output is constant).
The model is not told the tasks' kinds: set ``label_probs`` for binary and regression tasks below
the top.

Parameters: ``encoder_<i>`` and ``level_<k>_<i>`` (block i at level k) and ``label_embedding_<k>``
are shared (each reaches the losses of its level's task and every task above); the heads are
stacked on a leading task axis as in every architecture (``task_head_<j>``, ``task_head_out``)
and are the task-specific parameters. A head also feeds the level above through its label
embedding; the train step's per-task Jacobian (``mtlx.grads``) and alternating training treat it
as its own task's: a Jacobian weighting gives it the weighted sum of the task gradients, and
alternating training moves it only at its own task's steps.

Successive regularisation (Sec. 3). The paper trains the tasks one after another in each epoch,
and task k's objective adds delta * ||theta_{k-1} - theta'_{k-1}||^2, where theta_{k-1} are the
parameters task k-1's objective trains (the embedding, the levels 0..k-1 with their classifiers,
the label embeddings they read) and theta' their values at the end of task k-1's pass in the
current epoch. mtlx trains every task in one step (joint) or draws a task per step (alternating
training), so the reduction is:

  * the sum of the T objectives is what the joint step minimises, and in that sum a parameter
    is penalised once per task above whose theta_{k-1} holds it: ``successive_weights`` gives
    that count per parameter (levels: T-1-k; label_embedding_<k>: T-2-k; the encoder: T-1; a
    head: that of its task's level); the top task's level is never penalised;
  * the anchor theta' of every task is one snapshot of the parameters, taken every ``period``
    steps (e.g. one epoch of the training split, the paper's unit), so within a period the
    penalty pulls the parameters back towards where the period began.

The penalty's gradient 2 * delta * count * (theta - theta') is added to the model's gradient
before the optimizer by ``mtlx.optim.successive_regularization``, whose optax state carries the
anchor and a step count (so it is checkpointed and vmapped over seeds with the rest of the
optimizer state); the option ``successive: {delta, period}`` switches it on, read by
``mtlx.optim.make_optimizer(model=...)``. With delta = 0 the optimizer is the plain one.

Differences from the paper, beside the training schedule: no character n-gram embeddings, no
dependency/relatedness/entailment layers (any task set's tasks form the levels), one label-
embedding width for every task, and each level reads the label embedding of the task directly
below only (as we read the paper, its dependency layer also reads the POS label embedding).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtlx import regularizers, schema
from mtlx.architectures.base import HEAD_PREFIX, MTLModel
from mtlx.layers import BiLSTM, Block, Dense, apply_stacked, init_stacked, shapes_through

LABEL_PROBS = {"softmax": jax.nn.softmax, "sigmoid": jax.nn.sigmoid, "linear": lambda z: z}
LEVEL_BLOCKS = (Dense, BiLSTM)  # blocks a level may hold: they keep the leading axes, so inputs concatenate
SUCCESSIVE_KEYS = ("delta", "period")
ENCODER, LEVEL, LABELS = "encoder_{}", "level_{}_{}", "label_embedding_{}"


def label_embedding(logits, table, probs: str = "softmax"):
    """The lower task's label embedding y = p(labels | h) @ table: ``logits`` (..., n) of that task's
    head, ``table`` (n, d) one learned row per label (Hashimoto et al. 2017, Sec. 2.2)."""
    return LABEL_PROBS[probs](logits) @ table


def flat_features(x):
    """Image features (B, H, W, C) as (B, HWC), what a Dense layer reads; others unchanged."""
    return x.reshape(x.shape[0], -1) if x.ndim == 4 else x


def level_input(x, h_below, y_below):
    """Level k's input: the shortcut concatenation [x, h_{k-1}, y_{k-1}] on the feature axis."""
    return jnp.concatenate([flat_features(x), h_below, y_below], axis=-1)


def _split_tasks(w, n):
    """The T task slices of stacked weights (leading axis T), taken apart by one ``jnp.split`` (VJP: one
    concatenate, see ``MTLModel.heads``)."""
    parts = {k: [p[0] for p in jnp.split(v, n)] for k, v in w.items()}
    return [{k: parts[k][t] for k in w} for t in range(n)]


class JMT(MTLModel):
    order: tuple = ()  # task names, bottom level first; (): the task set's order
    encoder: int = -1  # leading blocks shared as the input x; -1: the leading embed / conv blocks
    label_features: int = 16  # width of the label embeddings
    label_probs: object = None  # {task: 'softmax' | 'sigmoid' | 'linear'}; unset: softmax (sigmoid for 1 output)
    successive: object = None  # {'delta': >= 0, 'period': steps >= 1}: successive regularisation (mtlx.optim)

    task_specific_prefixes: ClassVar[tuple] = (HEAD_PREFIX,)

    def __post_init__(self):  # config lists/dicts -> tuples/FrozenDict: keeps the module hashable
        for field in ("order", "label_probs", "successive"):
            if getattr(self, field) is not None:
                object.__setattr__(self, field, regularizers.freeze(getattr(self, field)))
        super().__post_init__()

    # ---- options

    @classmethod
    def check_options(cls, blocks, options, num_tasks) -> None:
        super().check_options(blocks, options, num_tasks)
        start = encoder_depth(blocks, options.get("encoder", -1))
        if not 0 <= start < len(blocks):
            raise schema.OptionError("encoder", options["encoder"], f"leaves no block for the task levels of a "
                                     f"{len(blocks)}-block backbone; choose 0..{len(blocks) - 1} (or -1)")
        bad = sorted({type(b).__name__ for b in blocks[start:] if not isinstance(b, LEVEL_BLOCKS)})
        if bad:
            raise schema.OptionError("encoder", options.get("encoder", -1), f"leaves {bad} blocks in the task "
                                     f"levels, which concatenate their inputs on the feature axis; only "
                                     f"{[b.__name__ for b in LEVEL_BLOCKS]} blocks may follow the encoder")
        if options.get("label_features", 1) < 1:
            raise schema.OptionError("label_features", options["label_features"], "must be an int >= 1")
        check_successive(options.get("successive"))
        probs = regularizers.plain(options.get("label_probs"))
        if probs is not None and not (isinstance(probs, Mapping) and set(probs.values()) <= set(LABEL_PROBS)):
            raise schema.OptionError("label_probs", probs, f"must be a dict {{task: one of {list(LABEL_PROBS)}}}")

    def check_shapes(self, input_shape) -> None:
        self.levels()  # ``order`` names every task once
        unknown = sorted(set(self.label_probs or {}) - set(self.task_names))
        if unknown:
            raise schema.OptionError("label_probs", dict(self.label_probs), f"names unknown tasks {unknown}; "
                                     f"the tasks are {list(self.task_names)}")

    def levels(self) -> tuple:
        """The task index at each level, bottom first."""
        if not self.order:
            return tuple(range(self.num_tasks))
        if sorted(self.order) != sorted(self.task_names) or len(set(self.order)) != len(self.order):
            raise schema.OptionError("order", list(self.order), f"must list every task once, bottom level first; "
                                     f"the tasks are {list(self.task_names)}")
        return tuple(self.task_names.index(t) for t in self.order)

    def probs_of(self, t: int) -> str:
        default = "sigmoid" if self.num_outputs[t] == 1 else "softmax"
        return (self.label_probs or {}).get(self.task_names[t], default)

    # ---- the forward

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        start = encoder_depth(self.blocks, self.encoder)
        for i in range(start):
            x = Block(self.blocks[i], name=ENCODER.format(i))(x, mask)
        levels, T = self.levels(), self.num_tasks
        layers, stacked = self.head_weights(shapes_through(self.blocks[start:], x.shape[1:])[-1])
        per_task = _split_tasks_all(stacked, T)
        hs, logits = [None] * T, [None] * T
        h = x
        for k, t in enumerate(levels):
            if k:
                below = levels[k - 1]
                table = self.param(LABELS.format(k - 1), nn.initializers.normal(0.1),
                                   (self.num_outputs[below], self.label_features))
                y = label_embedding(logits[below][..., :self.num_outputs[below]], table, self.probs_of(below))
                h = level_input(x, hs[below], y)
            for i in range(start, len(self.blocks)):
                h = Block(self.blocks[i], name=LEVEL.format(k, i))(h, mask)
            hs[t] = h
            logits[t] = apply_head(layers, per_task[t], h)
        return self.predictions(layers, stacked, hs, logits, mask), {}

    def head_weights(self, in_shape):
        """The heads' layer specs and their task-stacked weights {name: {weight: (T, ...)}}."""
        specs = [Dense(w) for w in self.head_hidden] + [Dense(max(self.num_outputs), "none")]
        names = [f"{HEAD_PREFIX}{j}" for j in range(len(self.head_hidden))] + [f"{HEAD_PREFIX}out"]
        shapes = shapes_through(specs, in_shape)
        stacked = {name: self.param(name, lambda key, s=spec, i=shape: init_stacked(s, key, self.num_tasks, i))
                   for name, spec, shape in zip(names, specs, shapes)}
        return list(zip(names, specs)), stacked

    def predictions(self, layers, stacked, hs, logits, mask):
        """{task: prediction}: the levels' head outputs; when the train step perturbs the heads' input
        (``MTLModel.head_input``), the heads applied once more, stacked, to the perturbed copies."""
        h_all = jnp.stack(hs)
        h_in, _ = self.head_input(h_all, True)
        if h_in is not h_all:
            for name, spec in layers:
                h_in = apply_stacked(spec, stacked[name], h_in, mask, stacked_input=True)
            logits = [p[0] for p in jnp.split(h_in, self.num_tasks)]
        return {name: (z if z.shape[-1] == n else z[..., :n])
                for z, n, name in zip(logits, self.num_outputs, self.task_names)}

    # ---- successive regularisation (read by mtlx.optim)

    def successive_weights(self, params) -> dict:
        """Per parameter leaf of ``params`` (this model's): how many tasks' successive-regularisation
        terms hold it (see the module docstring); an array over the task axis for the stacked heads."""
        K = self.num_tasks
        rank = {t: k for k, t in enumerate(self.levels())}

        def count(name, leaf):
            if name.startswith(HEAD_PREFIX):  # task t's head: the count of its level
                per_task = np.array([K - 1 - rank[t] for t in range(K)], np.float32)
                return per_task.reshape((K,) + (1,) * (np.ndim(leaf) - 1))
            if name.startswith("encoder_"):
                return float(K - 1)
            if name.startswith("level_"):
                return float(K - 1 - int(name.split("_")[1]))
            if name.startswith("label_embedding_"):
                return float(K - 2 - int(name.rsplit("_", 1)[1]))
            raise ValueError(f"jmt: no successive-regularisation rule for parameter {name!r}")

        return {name: jax.tree_util.tree_map(lambda leaf, n=name: count(n, leaf), sub) for name, sub in params.items()}


def _split_tasks_all(stacked, n):
    """{name: weights} stacked over tasks -> per task [{name: weights}]."""
    per_layer = {name: _split_tasks(w, n) for name, w in stacked.items()}
    return [{name: per_layer[name][t] for name in stacked} for t in range(n)]


def apply_head(layers, weights, h):
    """One task's head (its slice of the stacked weights) on its level's output ``h``."""
    for name, spec in layers:
        h = spec.apply(weights[name], h)
    return h


def encoder_depth(blocks, encoder: int) -> int:
    """The number of encoder blocks: ``encoder``, or for -1 the leading blocks a level cannot hold."""
    if encoder != -1:
        return encoder
    n = 0
    while n < len(blocks) and not isinstance(blocks[n], LEVEL_BLOCKS):
        n += 1
    return n


def check_successive(spec) -> None:
    """The ``successive`` option: None, or {'delta': a number >= 0, 'period': an int >= 1}."""
    spec = regularizers.plain(spec)
    if spec is None:
        return
    ok = (isinstance(spec, Mapping) and set(spec) == set(SUCCESSIVE_KEYS) and schema.is_number(spec["delta"])
          and np.isfinite(spec["delta"]) and spec["delta"] >= 0 and schema.is_int(spec["period"])
          and spec["period"] >= 1)
    if not ok:
        raise schema.OptionError("successive", spec, "must be {'delta': a number >= 0, 'period': steps, an int "
                                 ">= 1} (or None: no successive regularisation)")
