"""Tasks and task sets: what is predicted, its loss and its metrics.

A batch is ``{"inputs": x, "targets": {task: y}, "weights": {task: w}}`` where
``w`` is a per-example 0/1 mask: an example without a label for a task has
``w = 0`` there and contributes nothing to that task's loss or metrics.

The JAX losses and the host-side metrics live in ``mtlx.losses``; this module
imports no JAX, so that the report can read metric directions from it.

Task kinds
  classification  softmax cross-entropy; y int (B,); metric accuracy.
  binary          sigmoid cross-entropy ('logistic') or the hinge loss
                  max(0, 1 - f(x) y), y in {-1, +1} ('hinge', Yang & Hospedales
                  2017, Sec. 4.1), per ``Task.loss`` (``LOSSES``), on
                  ``num_outputs`` independent labels (multi-label when > 1);
                  y float/int (B,) or (B, K) in {0, 1}; metrics accuracy (score
                  > 0) and auc (ROC AUC of the score), valid for either loss.
                  A run config picks the loss of every binary task with
                  ``task_set.options.binary_loss`` (``BINARY_LOSS_OPTION``).
  regression      mean squared error; y float (B,) or (B, K); metric mse.
  tagging         per-token softmax; y int (B, L) with -1 at padding tokens;
                  metric token accuracy; a task whose ``labels`` are IOB tags
                  ('O', 'B-X', 'I-X': chunks, named entities) reports span
                  ``f1`` first (conlleval's, see ``mtlx.losses.span_f1``).

Roles (``ROLES``)
  main            what the experiment is about: Δm, the tables and their
                  significance tests cover the main tasks only.
  auxiliary       trained alongside to help the main tasks (Ruder 2017, Sec. 6)
                  and reported apart: reconstruction, hints, an adversarial
                  discriminator, targets only known at training time
                  (``mtlx.data.auxiliary``). A run config marks tasks
                  auxiliary by name with ``task_set.options.auxiliary``
                  (``AUXILIARY_OPTION``) and adds generated ones with
                  ``task_set.options.auxiliary_tasks`` (``TRANSFORMS_OPTION``);
                  ``auxiliary_names`` reads both from the options alone (the
                  report uses it, no task set built).

Joint metrics (``TaskSet.joint_metrics``)
  A task set may declare metrics computed from ALL its tasks' predictions on
  a split at once (the multi-class accuracy of ten one-vs-all scores, Yang &
  Hospedales 2017's metric (2)). Evaluation stores them beside the tasks'
  metrics under the reserved key ``JOINT``: ``{task: {...}, JOINT: {name:
  value}}``; no task may be named ``JOINT``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

KINDS = ("classification", "binary", "regression", "tagging")
LOSS = "loss"  # every task's eval metrics also hold its loss (lower is better)

# metric name -> higher_is_better, per kind (the first metric is the main one).
METRICS = {
    "classification": {"accuracy": True},
    "binary": {"auc": True, "accuracy": True},
    "regression": {"mse": False},
    "tagging": {"accuracy": True},
}
MAIN, AUXILIARY = "main", "auxiliary"
ROLES = (MAIN, AUXILIARY)
AUXILIARY_OPTION = "auxiliary"  # task_set.options.auxiliary: names of the task set's own tasks made auxiliary
TRANSFORMS_OPTION = "auxiliary_tasks"  # task_set.options.auxiliary_tasks: generated auxiliary tasks (specs)
# loss name per kind, the first the default (``Task.loss``); binary: 'logistic' = sigmoid cross-entropy,
# 'hinge' = max(0, 1 - f(x) y) with y in {-1, +1} (``mtlx.losses.per_example_loss``)
LOSSES = {
    "classification": ("softmax_cross_entropy",),
    "binary": ("logistic", "hinge"),
    "regression": ("squared_error",),
    "tagging": ("softmax_cross_entropy",),
}
BINARY_LOSS_OPTION = "binary_loss"  # task_set.options.binary_loss: the loss of every binary task (LOSSES["binary"])
JOINT = "_joint"  # a split's metrics: {task: {metric: v}, JOINT: {joint metric: v}} (TaskSet.joint_metrics)
SPAN_METRICS = {"f1": True}  # tagging tasks with IOB labels (``Task.spans``) report span F1 too, as their main metric


def _choice_error(field: str, value: Any, choices) -> ValueError:
    return ValueError(f"{field}={value!r} is not valid; choose one of {sorted(choices)}")


@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction problem: ``name``, ``kind`` (see KINDS), ``num_outputs``; ``labels`` optionally
    names the classes in id order (tagging with IOB labels: span F1 is reported); ``role`` (``ROLES``);
    ``gradient_reversal`` lambda >= 0: the head's input passes a gradient-reversal layer that scales
    the gradient flowing back into the layers below by -lambda (Ganin & Lempitsky 2015; 0 = none,
    ``mtlx.gradient_reversal``), so that the shared layers learn to defeat this task's head; ``loss``
    one of ``LOSSES[kind]`` (None: the kind's default, its first)."""

    name: str
    kind: str
    num_outputs: int
    labels: tuple[str, ...] = ()
    role: str = MAIN
    gradient_reversal: float = 0.0
    loss: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise _choice_error(f"Task({self.name!r}).kind", self.kind, KINDS)
        if self.loss is None:
            object.__setattr__(self, "loss", LOSSES[self.kind][0])
        elif self.loss not in LOSSES[self.kind]:
            raise _choice_error(f"Task({self.name!r}).loss", self.loss, LOSSES[self.kind])
        if self.role not in ROLES:
            raise _choice_error(f"Task({self.name!r}).role", self.role, ROLES)
        lam = self.gradient_reversal
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam < float("inf"):
            raise ValueError(f"Task({self.name!r}).gradient_reversal={lam!r} must be a finite number >= 0")
        if self.num_outputs < 1 or (self.kind == "classification" and self.num_outputs < 2):
            raise ValueError(f"Task({self.name!r}).num_outputs={self.num_outputs} is too small for kind {self.kind!r}")
        if self.labels and len(self.labels) != self.num_outputs:
            raise ValueError(f"Task({self.name!r}).labels has {len(self.labels)} names for {self.num_outputs} outputs")

    @property
    def spans(self) -> bool:
        """Whether the labels are IOB span tags (every one 'O', 'B-type' or 'I-type', at least one not 'O')."""
        return (self.kind == "tagging" and any(x != "O" for x in self.labels)
                and all(x == "O" or x[:2] in ("B-", "I-") for x in self.labels))

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics evaluation reports for this task (besides ``LOSS``), main metric first;
        tagging: token accuracy, or span ``f1`` then accuracy when ``spans``."""
        if self.kind == "tagging":
            return ("f1", "accuracy") if self.spans else ("accuracy",)
        return tuple(METRICS[self.kind])

    @property
    def main_metric(self) -> str:
        """The metric tables compare (and the Δm of the report averages)."""
        return self.metrics[0]

    def higher_is_better(self, metric: str | None = None) -> bool:
        """Direction of ``metric`` (default: the main metric); one of ``self.metrics``."""
        metric = metric or self.main_metric
        if metric not in self.metrics:
            raise _choice_error(f"metric of task {self.name!r}", metric, self.metrics)
        return higher_is_better(self.kind, metric)

    @property
    def is_main(self) -> bool:
        return self.role == MAIN


@dataclasses.dataclass(frozen=True)
class TaskSet:
    """Tasks sharing one input, plus the data splits.

    ``input_shape`` is one example's shape; ``input_kind`` is 'dense', 'image'
    (H, W, C) or 'tokens' (L,) int ids with 0 as padding (``vocab_size`` set).
    ``splits`` maps 'train'/'validation'/'test' to a dict of numpy arrays in the
    batch layout (or to any object with ``__len__`` and ``__getitem__(indices)``
    returning that layout, for data that streams). A split dict may also hold
    ``"extras"``: {name: per-example array}, quantities a generator knows but
    the inputs do not show (``mtlx.data.auxiliary`` reads them as targets;
    ``mtlx.data.get_task_set`` drops them before training).
    ``joint_metrics``: {name: (fn, higher_is_better)}, metrics of all tasks'
    predictions at once: ``fn({task: predictions (N, ...)}, split) -> float``
    over one whole split (its ``targets`` and ``weights`` in the batch layout);
    evaluation stores them under ``JOINT``.
    """

    name: str
    tasks: tuple[Task, ...]
    input_shape: tuple[int, ...]
    input_kind: str = "dense"
    vocab_size: int | None = None
    splits: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    info: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    joint_metrics: Mapping[str, tuple[Callable, bool]] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"TaskSet {self.name!r} has duplicate task names {names}")
        if JOINT in names:
            raise ValueError(f"TaskSet {self.name!r}: the task name {JOINT!r} is reserved for the joint metrics")
        for key, spec in self.joint_metrics.items():
            if not (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[0]) and isinstance(spec[1], bool)):
                raise ValueError(f"TaskSet {self.name!r}: joint_metrics[{key!r}]={spec!r} must be a pair "
                                 f"(fn(predictions by task, split) -> float, higher_is_better: bool)")
        if self.tasks and not any(t.is_main for t in self.tasks):
            raise ValueError(f"TaskSet {self.name!r}: every task ({names}) is auxiliary; keep at least one main task")
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

    @property
    def main_task_names(self) -> tuple[str, ...]:
        """The tasks Δm and the tables cover (``role`` 'main')."""
        return tuple(t.name for t in self.tasks if t.is_main)

    @property
    def auxiliary_task_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks if not t.is_main)

    @property
    def roles(self) -> dict:
        """{task: role}, in task order."""
        return {t.name: t.role for t in self.tasks}

    def split(self, name: str):
        """Split ``name``; an unknown name is a ValueError listing the splits there are."""
        if name not in self.splits:
            raise _choice_error(f"split of task set {self.name!r}", name, self.splits)
        return self.splits[name]


def higher_is_better(kind: str, metric: str) -> bool | None:
    """Whether a larger ``metric`` of a task of ``kind`` is better.

    The eval loss (``LOSS``) is lower-is-better for every kind; tagging's span
    ``f1`` (``SPAN_METRICS``) higher-is-better; a metric that ``METRICS`` does
    not list for ``kind`` gives None (the report leaves its
    direction unmarked).
    """
    if metric == LOSS:
        return False
    if kind == "tagging" and metric in SPAN_METRICS:
        return SPAN_METRICS[metric]
    return METRICS.get(kind, {}).get(metric)


def auxiliary_names(options: Mapping) -> tuple[str, ...]:
    """The auxiliary tasks a run's ``task_set.options`` asks for, without building the task set: the
    names listed under ``AUXILIARY_OPTION`` and those of the generated tasks (``TRANSFORMS_OPTION``)."""
    options = options or {}
    marked = tuple(options.get(AUXILIARY_OPTION) or ())
    made = tuple(spec.get("name") for spec in options.get(TRANSFORMS_OPTION) or () if isinstance(spec, Mapping))
    return marked + made
