"""Task sets generated in code (no files): the MMoE regression and a T-task
classification set with a known shared/private structure."""

from __future__ import annotations

import numpy as np

from mtlx.tasks import Task, TaskSet


def _pack(x, ys: dict, dtype=np.float32):
    n = len(x)
    return {"inputs": x.astype(np.float32), "targets": {k: v.astype(dtype) if dtype else v for k, v in ys.items()},
            "weights": {k: np.ones(n, np.float32) for k in ys}}


def _splits(make, n_train, n_validation, n_test):
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    return {name: make(n) for name, n in sizes.items() if n > 0}


def mmoe_synthetic(correlation: float = 0.5, dim: int = 100, num_sin: int = 10, scale: float = 1.0,
                   noise_std: float = 0.1, n_train: int = 10000, n_validation: int = 1000, n_test: int = 2000,
                   seed: int = 0, standardise: bool = True) -> TaskSet:
    """Two regression tasks whose weight vectors have cosine ``correlation`` (Ma et al. 2018, Sec. 4.1).

    u1, u2 orthonormal; w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2); x ~ N(0, I);
    y_k = w_k.x + sum_{i<m} sin(alpha_i w_k.x + beta_i) + eps, eps ~ N(0, noise_std^2).
    alpha_i, beta_i ~ N(0, 1) are drawn once and shared by both tasks (with the
    paper's alpha_i = i, beta_i = i^2 no model learned the targets in a trial
    run here). The data seed fixes u, alpha, beta and every split; the targets
    are standardised with the train split's mean and std when ``standardise``
    (``info`` holds w1, w2, alpha, beta and those (mean, std) pairs).

    The draw of alpha and beta decides how hard the targets are: with seed 0 the
    sines all but cancel the linear term (the best linear fit of y1 on x
    explains 0.4% of its variance; seeds 2 and 3: 98% and 96%), so
    models sit on a plateau first and the test MSE of one architecture ranges
    from about 0.01 to 0.2 across data seeds. Compare architectures over many
    data draws, paired on the draw.
    """
    if not -1.0 <= correlation <= 1.0:
        raise ValueError(f"task_set.correlation={correlation} must lie in [-1, 1]")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, 2)))
    u1, u2 = q[:, 0], q[:, 1]
    w1 = scale * u1
    w2 = scale * (correlation * u1 + np.sqrt(1 - correlation**2) * u2)
    alpha, beta = rng.standard_normal(num_sin), rng.standard_normal(num_sin)

    def target(x, w):
        z = x @ w
        return z + np.sin(np.outer(z, alpha) + beta).sum(-1) + noise_std * rng.standard_normal(len(x))

    def make(n):
        x = rng.standard_normal((n, dim))
        return _pack(x, {"y1": target(x, w1), "y2": target(x, w2)})

    splits = _splits(make, n_train, n_validation, n_test)
    stats = {}
    if standardise:
        stats = {k: (float(v.mean()), float(v.std())) for k, v in splits["train"]["targets"].items()}
        for s in splits.values():
            s["targets"] = {k: ((v - stats[k][0]) / stats[k][1]).astype(np.float32) for k, v in s["targets"].items()}
    tasks = (Task("y1", "regression", 1), Task("y2", "regression", 1))
    return TaskSet("mmoe_synthetic", tasks, (dim,), "dense", splits=splits,
                   info={"correlation": correlation, "cosine_w1_w2": float(w1 @ w2 / scale**2), "seed": seed,
                         "w1": w1.tolist(), "w2": w2.tolist(), "alpha": alpha.tolist(), "beta": beta.tolist(),
                         "standardisation": stats})


def synthetic_classification(num_tasks: int = 4, num_classes: int = 5, dim: int = 32, shared_dim: int = 8,
                             private_dim: int = 8, shared_fraction: float = 0.75, hidden: int = 32,
                             n_train: int = 4000, n_validation: int = 1000, n_test: int = 2000,
                             label_noise: float = 0.05, seed: int = 0, groups: int = 1,
                             train_labelled: tuple = (), extras: bool = False) -> TaskSet:
    """T classification tasks with a known shared/private structure.

    x ~ N(0, I_dim). A shared projection z_s = tanh(S x) (shared_dim) and one
    private projection per task z_t = tanh(P_t x) (private_dim) feed task t's
    labeller: y_t = argmax(V_t [sqrt(f) z_s ; sqrt(1 - f) z_t]) with f =
    ``shared_fraction`` (1: tasks depend on the same features only; 0: nothing
    in common). ``label_noise`` flips that fraction of labels uniformly.

    ``groups`` > 1: the tasks fall into that many contiguous groups (task t in
    group ``t * groups // num_tasks``), each with its own shared projection
    S_g (S_0 = S, the others drawn after V), so tasks share structure within
    their group only: a known pairwise relatedness (``info["groups"]``, the
    group of each task). ``groups`` = 1 is the set as before, draw for draw.

    ``train_labelled``: per task, the fraction of training examples that carry
    its label (the others get weight 0: unequal data sizes, e.g. for sampling
    proportional to them); drawn from a stream of their own, so the data are
    those of the set without it. () = every example labelled for every task.

    ``extras``: each split also holds ``extras`` (``mtlx.tasks.TaskSet``) for auxiliary tasks
    (``mtlx.data.auxiliary``): ``shared_latent`` (N, shared_dim), the first group's z_s, and
    ``clean_<task>`` (N,), task t's label before the noise; the draws are the same without them.
    """
    if not 0.0 <= shared_fraction <= 1.0:
        raise ValueError(f"task_set.shared_fraction={shared_fraction} must lie in [0, 1]")
    if num_tasks < 1 or num_classes < 2:
        raise ValueError(f"task_set: num_tasks={num_tasks} must be >= 1 and num_classes={num_classes} >= 2")
    if not isinstance(groups, int) or not 1 <= groups <= num_tasks:
        raise ValueError(f"task_set.groups={groups!r} must be an int in [1, num_tasks={num_tasks}]")
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((dim, shared_dim)) / np.sqrt(dim)
    P = rng.standard_normal((num_tasks, dim, private_dim)) / np.sqrt(dim)
    V = rng.standard_normal((num_tasks, shared_dim + private_dim, num_classes))
    Ss = [S] + [rng.standard_normal((dim, shared_dim)) / np.sqrt(dim) for _ in range(groups - 1)]
    group = [t * groups // num_tasks for t in range(num_tasks)]
    names = [f"task{t}" for t in range(num_tasks)]

    def make(n):
        x = rng.standard_normal((n, dim))
        zs = [np.tanh(2 * x @ Sg) for Sg in Ss]
        clean = {name: (np.concatenate([np.sqrt(shared_fraction) * zs[group[t]], np.sqrt(1 - shared_fraction)
                                        * np.tanh(2 * x @ P[t])], -1) @ V[t]).argmax(-1).astype(np.int32)
                 for t, name in enumerate(names)}
        out = _pack(x, {name: _noisy(rng, y, label_noise, num_classes) for name, y in clean.items()}, dtype=None)
        if extras:
            out["extras"] = {"shared_latent": zs[0].astype(np.float32), **{f"clean_{k}": v for k, v in clean.items()}}
        return out

    tasks = tuple(Task(n, "classification", num_classes) for n in names)
    splits = _splits(make, n_train, n_validation, n_test)
    if train_labelled:
        _unlabel(splits.get("train"), names, train_labelled, seed)
    return TaskSet("synthetic_classification", tasks, (dim,), "dense", splits=splits,
                   info={"shared_fraction": shared_fraction, "groups": group})


def _noisy(rng, y, label_noise: float, num_classes: int):
    """``y`` with a ``label_noise`` fraction of its labels replaced by uniform draws."""
    flip = rng.random(len(y)) < label_noise
    return np.where(flip, rng.integers(0, num_classes, len(y)), y).astype(np.int32)


def _unlabel(train, names, fractions, seed) -> None:
    """Keep the labels of ``fractions[t]`` of the training examples of task t (weight 1), the
    others weight 0; the kept examples drawn from a stream of their own (``seed``, 1)."""
    if len(fractions) != len(names) or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in fractions):
        raise ValueError(f"task_set.train_labelled={list(fractions)!r} must give one fraction in (0, 1] per task "
                         f"({len(names)} tasks)")
    if train is None:
        return
    rng = np.random.default_rng([seed, 1])
    n = len(train["inputs"])
    for name, f in zip(names, fractions):
        keep = np.zeros(n, np.float32)
        keep[rng.permutation(n)[:max(1, int(round(f * n)))]] = 1.0
        train["weights"][name] = keep
