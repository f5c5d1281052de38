"""Tasks and task sets: what is predicted, its loss and its metrics.

A batch is ``{"inputs": x, "targets": {task: y}, "weights": {task: w}}`` where
``w`` is a per-example 0/1 mask: an example without a label for a task has
``w = 0`` there and contributes nothing to that task's loss or metrics.

Task kinds
  classification  softmax cross-entropy; y int (B,); metric accuracy.
  binary          sigmoid cross-entropy on ``num_outputs`` independent labels
                  (multi-label when > 1); y float/int (B,) or (B, K) in {0, 1};
                  metrics accuracy and auc (ROC AUC).
  regression      mean squared error; y float (B,) or (B, K); metric mse.
  tagging         per-token softmax; y int (B, L) with -1 at padding tokens;
                  metric token accuracy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("classification", "binary", "regression", "tagging")

# metric name -> higher_is_better, per kind (the first metric is the main one).
METRICS = {
    "classification": {"accuracy": True},
    "binary": {"auc": True, "accuracy": True},
    "regression": {"mse": False},
    "tagging": {"accuracy": True},
}


def _choice_error(field: str, value: Any, choices) -> ValueError:
    return ValueError(f"{field}={value!r} is not valid; choose one of {sorted(choices)}")


@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction problem: ``name``, ``kind`` (see KINDS), ``num_outputs``."""

    name: str
    kind: str
    num_outputs: int

    def __post_init__(self):
        if self.kind not in KINDS:
            raise _choice_error(f"Task({self.name!r}).kind", self.kind, KINDS)
        if self.num_outputs < 1 or (self.kind == "classification" and self.num_outputs < 2):
            raise ValueError(f"Task({self.name!r}).num_outputs={self.num_outputs} is too small for kind {self.kind!r}")

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(METRICS[self.kind])

    @property
    def main_metric(self) -> str:
        return self.metrics[0]

    def higher_is_better(self, metric: str | None = None) -> bool:
        return METRICS[self.kind][metric or self.main_metric]


@dataclasses.dataclass(frozen=True)
class TaskSet:
    """Tasks sharing one input, plus the data splits.

    ``input_shape`` is one example's shape; ``input_kind`` is 'dense', 'image'
    (H, W, C) or 'tokens' (L,) int ids with 0 as padding (``vocab_size`` set).
    ``splits`` maps 'train'/'validation'/'test' to a dict of numpy arrays in the
    batch layout (or to any object with ``__len__`` and ``__getitem__(indices)``
    returning that layout, for data that streams).
    """

    name: str
    tasks: tuple[Task, ...]
    input_shape: tuple[int, ...]
    input_kind: str = "dense"
    vocab_size: int | None = None
    splits: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"TaskSet {self.name!r} has duplicate task names {names}")
        if self.input_kind not in ("dense", "image", "tokens"):
            raise _choice_error("TaskSet.input_kind", self.input_kind, ("dense", "image", "tokens"))
        if self.input_kind == "tokens" and not self.vocab_size:
            raise ValueError(f"TaskSet {self.name!r}: input_kind='tokens' needs vocab_size")
        if any(t.kind == "tagging" for t in self.tasks) and self.input_kind != "tokens":
            raise ValueError(f"TaskSet {self.name!r}: tagging tasks need input_kind='tokens'")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    def split(self, name: str):
        if name not in self.splits:
            raise _choice_error(f"split of task set {self.name!r}", name, self.splits)
        return self.splits[name]


# --------------------------------------------------------------------------- losses


def _masked_mean(values: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """sum(mask * values) / max(sum(mask), 1): a task with no labelled example has loss 0."""
    mask = mask.astype(values.dtype)
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def per_example_loss(task: Task, pred: jnp.ndarray, target: jnp.ndarray):
    """Per-example loss and the per-example validity (tagging: token counts).

    Returns ``(loss (B,), count (B,))`` where count is the number of labelled
    positions that contributed (1 for non-sequence tasks).
    """
    if task.kind == "classification":
        logp = jax.nn.log_softmax(pred.astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(logp, target.astype(jnp.int32)[:, None], axis=-1)[:, 0]
        return nll, jnp.ones_like(nll)
    if task.kind == "binary":
        logits = pred.astype(jnp.float32).reshape(pred.shape[0], -1)
        y = target.astype(jnp.float32).reshape(logits.shape)
        bce = jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits)))
        return jnp.mean(bce, axis=-1), jnp.ones(logits.shape[0])
    if task.kind == "regression":
        p = pred.astype(jnp.float32).reshape(pred.shape[0], -1)
        y = target.astype(jnp.float32).reshape(p.shape)
        se = jnp.mean((p - y) ** 2, axis=-1)
        return se, jnp.ones_like(se)
    # tagging: pred (B, L, C), target (B, L) with -1 padding.
    valid = (target >= 0).astype(jnp.float32)
    logp = jax.nn.log_softmax(pred.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.maximum(target, 0).astype(jnp.int32)[..., None], axis=-1)[..., 0]
    return jnp.sum(nll * valid, axis=-1), jnp.sum(valid, axis=-1)


def task_loss(task: Task, pred, target, weight) -> jnp.ndarray:
    """Masked mean loss of one task (tagging: mean over labelled tokens)."""
    loss, count = per_example_loss(task, pred, target)
    w = weight.astype(jnp.float32)
    return jnp.sum(loss * w) / jnp.maximum(jnp.sum(count * w), 1.0)


def task_losses(tasks, preds: Mapping, batch: Mapping) -> jnp.ndarray:
    """Stacked (T,) vector of masked per-task losses, in task order."""
    return jnp.stack([task_loss(t, preds[t.name], batch["targets"][t.name], batch["weights"][t.name]) for t in tasks])


# --------------------------------------------------------------------------- metrics (host, numpy)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank statistic (Mann-Whitney U), ties averaged."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def compute_metrics(task: Task, pred: np.ndarray, target: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """Metrics of one task over the examples with weight 1."""
    pred, target = np.asarray(pred), np.asarray(target)
    keep = np.asarray(weight) > 0
    pred, target = pred[keep], target[keep]
    out: dict[str, float] = {}
    if len(target) == 0:
        return {m: float("nan") for m in task.metrics}
    loss, count = per_example_loss(task, jnp.asarray(pred), jnp.asarray(target))
    out["loss"] = float(np.sum(loss) / max(float(np.sum(count)), 1.0))
    if task.kind == "classification":
        out["accuracy"] = float(np.mean(pred.argmax(-1) == target))
    elif task.kind == "binary":
        logits = pred.reshape(len(pred), -1)
        y = target.reshape(logits.shape)
        out["accuracy"] = float(np.mean((logits > 0) == (y > 0.5)))
        aucs = [roc_auc(logits[:, k], y[:, k] > 0.5) for k in range(logits.shape[1])]
        out["auc"] = float(np.nanmean(aucs)) if not all(np.isnan(aucs)) else float("nan")
    elif task.kind == "regression":
        p = pred.reshape(len(pred), -1)
        out["mse"] = float(np.mean((p - target.reshape(p.shape)) ** 2))
    else:
        valid = target >= 0
        out["accuracy"] = float(np.sum((pred.argmax(-1) == target) & valid) / max(valid.sum(), 1))
    return out
