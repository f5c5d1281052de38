"""A task set of the user's own (the README's example): two tasks on one input, numpy splits."""

import numpy as np

from mtlx.tasks import Task, TaskSet


def make(n_train: int = 512, dim: int = 8, seed: int = 0) -> TaskSet:
    """Task 'sign' (2 classes) and task 'value' (regression) of one linear map of x ~ N(0, I)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((dim, 2))

    def split(n):
        x = rng.standard_normal((n, dim)).astype(np.float32)
        z = x @ w
        targets = {"sign": (z[:, 0] > 0).astype(np.int32), "value": z[:, 1].astype(np.float32)}
        return {"inputs": x, "targets": targets, "weights": {t: np.ones(n, np.float32) for t in targets}}

    tasks = (Task("sign", "classification", 2), Task("value", "regression", 1))
    return TaskSet("my_tasks", tasks, (dim,), "dense",
                   splits={"train": split(n_train), "validation": split(128), "test": split(128)})
