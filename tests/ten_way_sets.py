"""A small generated one-vs-all task set (no files) for the hinge-loss and joint-metric tests:
ten binary tasks ``is_0``..``is_9`` of a 10-class Gaussian-blob problem, with one_vs_all's joint
metric. A task-set plug-in: ``task_set.name = "ten_way_sets:ten_way"`` (tests/ is on sys.path)."""

import numpy as np

from mtlx.data import tfds_sets
from mtlx.tasks import Task, TaskSet

CLASSES = 10


def _split(rng, centres, n: int) -> dict:
    labels = rng.integers(0, CLASSES, n)
    x = (centres[labels] + 0.5 * rng.standard_normal((n, centres.shape[1]))).astype(np.float32)
    names = [f"is_{k}" for k in range(CLASSES)]
    return {"inputs": x, "targets": {f"is_{k}": (labels == k).astype(np.float32) for k in range(CLASSES)},
            "weights": {n_: np.ones(n, np.float32) for n_ in names}}


def ten_way(n_train: int = 256, n_test: int = 64, dim: int = 8, seed: int = 0) -> TaskSet:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLASSES, dim)) * 2.0
    splits = {"train": _split(rng, centres, n_train), "validation": _split(rng, centres, n_test),
              "test": _split(rng, centres, n_test)}
    return TaskSet("ten_way", tuple(Task(f"is_{k}", "binary", 1) for k in range(CLASSES)), (dim,), "dense",
                   splits=splits,
                   joint_metrics={tfds_sets.MULTICLASS_ACCURACY: (tfds_sets.multiclass_accuracy, True)})
