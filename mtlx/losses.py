"""The JAX losses (masked per-task means) and the host-side metrics of a task.

A batch is ``{"inputs": x, "targets": {task: y}, "weights": {task: w}}`` with
``w`` a per-example 0/1 mask (see ``mtlx.tasks``): an example with ``w = 0``
adds nothing to that task's loss or metrics. The losses are what the train
step differentiates; ``compute_metrics`` runs on the host (numpy) at eval time
and reports the same loss as ``LOSS`` next to the task's metrics.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtlx.tasks import JOINT, LOSS, Task


def per_example_loss(task: Task, pred: jnp.ndarray, target: jnp.ndarray):
    """Per-example loss and the per-example validity (tagging: token counts).

    classification: softmax cross-entropy of the int target; binary
    (``task.loss``, ``mtlx.tasks.LOSSES``): sigmoid cross-entropy in its
    log-sum-exp form ('logistic') or the hinge loss max(0, 1 - s y) with the
    {0, 1} target mapped to y in {-1, +1} ('hinge', Yang & Hospedales 2017,
    Sec. 4.1), averaged over the ``num_outputs`` labels; regression: squared error averaged over outputs; tagging: the
    softmax cross-entropy summed over the tokens whose target is not -1.
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
        if task.loss == "hinge":  # relu's gradient at 0 is 0: a margin of exactly 1 gets no gradient
            return jnp.mean(jax.nn.relu(1.0 - logits * (2.0 * y - 1.0)), axis=-1), jnp.ones(logits.shape[0])
        # softplus(l) - l y: its gradient is sigmoid(l) - y everywhere, also at l = 0 (the max/abs form's
        # autodiff gives -y there: JAX differentiates max(l, 0) and |l| at 0 by convention)
        bce = jax.nn.softplus(logits) - logits * y
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


def span_f1(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> float:
    """Micro-averaged span F1 over sentences of IOB tags, as conlleval computes it (Tjong Kim Sang &
    Buchholz 2000; CoNLL-2003's evaluation script): a span is a maximal run of one type started by
    B-X, by I-X after O or after another type, and ended by O, B-, another type or the sentence's end;
    IOB1 and IOB2 read alike. A span counts as correct only with the same type, start and end.
    Implemented by ``seqeval`` in its default (conlleval-compatible, not ``strict``) mode; 0 when
    there are no predicted or no gold spans, as conlleval prints."""
    from seqeval.metrics import f1_score  # host-side only; imports scikit-learn

    return float(f1_score([list(g) for g in gold], [list(p) for p in pred], average="micro", zero_division=0))


def tag_sequences(ids: np.ndarray, target: np.ndarray, labels: Sequence[str]) -> list[list[str]]:
    """Label names of each row of ``ids`` (B, L) at its labelled positions (``target >= 0``)."""
    names = np.asarray(labels, dtype=object)
    return [list(names[row[t >= 0]]) for row, t in zip(ids, target)]


def compute_metrics(task: Task, pred: np.ndarray, target: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """``{LOSS, *task.metrics}`` of one task over the examples with weight > 0 (all NaN, without
    ``LOSS``, when there are none); binary: accuracy at logit 0, AUC averaged over the labels
    that have both classes; tagging with IOB labels: also span F1 (``span_f1``), each row one sentence."""
    pred, target = np.asarray(pred), np.asarray(target)
    keep = np.asarray(weight) > 0
    pred, target = pred[keep], target[keep]
    out: dict[str, float] = {}
    if len(target) == 0:
        return {m: float("nan") for m in task.metrics}
    loss, count = per_example_loss(task, jnp.asarray(pred), jnp.asarray(target))
    out[LOSS] = float(np.sum(loss) / max(float(np.sum(count)), 1.0))
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
        if task.spans:
            gold = tag_sequences(np.maximum(target, 0), target, task.labels)
            out["f1"] = span_f1(gold, tag_sequences(pred.argmax(-1), target, task.labels))
    return out


def split_metrics(tasks, preds: Mapping, split: Mapping, joint_metrics: Mapping | None = None) -> dict:
    """The evaluation of one whole split: ``{task: compute_metrics(...)}`` for ``tasks``, plus
    ``JOINT: {name: fn(preds, split)}`` for the task set's ``joint_metrics`` ({name: (fn,
    higher_is_better)}, ``mtlx.tasks.TaskSet``) when there are any. ``preds``: {task: (N, ...)} host
    arrays; ``split``: the split in the batch layout (``targets``, ``weights``)."""
    out = {t.name: compute_metrics(t, preds[t.name], split["targets"][t.name], split["weights"][t.name])
           for t in tasks}
    if joint_metrics:
        out[JOINT] = {name: float(fn(preds, split)) for name, (fn, _) in joint_metrics.items()}
    return out
