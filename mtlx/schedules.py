"""Training schedules: joint training, alternating training, per-task learning rates.

A run's optional ``training`` section (absent by default, so that every run
config without it - and its run id - is unchanged) holds:

  schedule            "joint" (every task's loss in every step: today's step) or
                      "alternating" (one task per step, as in the classic
                      two-head example: the step updates ONLY that task's head
                      and the shared trunk).
  sampling            how alternating training draws its task: "uniform";
                      "proportional" to each task's number of labelled training
                      examples N_t; "annealed": p_t ~ N_t^alpha with alpha going
                      linearly from 1 (proportional) at step 0 to ``anneal_to``
                      at the last step (0: uniform; Stickland & Murray 2019,
                      "BERT and PALs", Sec. 4, anneal to 0.2).
  anneal_to           alpha at the last step (see above).
  task_learning_rates {task name: learning rate} of that task's own parameters
                      (its head, its task columns); the shared parameters keep
                      ``optimizer.learning_rate``.
  relatedness_every   every this many steps (a multiple of ``log_every``; 0: never)
                      the train record holds the tasks' gradient relatedness
                      (``mtlx.relatedness``).
  affinity            also the lookahead inter-task affinity (TAG, Fifty et al. 2021).
  affinity_lr         its lookahead SGD step size (0: ``optimizer.learning_rate``).

Why the task mask is not a weighting: a zero loss weight leaves a head's
gradient zero, but Adam still moves a parameter with zero gradient (its
moments decay and the bias-corrected step is nonzero), so alternating
training needs a masked UPDATE - the untouched heads' parameters and
optimizer moments kept bit for bit - which only the step can apply; and the
weighting stays free to scale the sampled task's loss. The task is drawn
from the state's key (deterministic given the seed), inside the jitted step.

Task-specific parameters are stacked on a leading task axis (``MTLModel``:
``task_head_*``, ``task_column_*``), so a "parameter group per task" is a
slice of each such leaf: the mask and the per-task learning rates act along
that axis (``mtlx.optim.scale_task_axis``).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SECTION = "training"
SCHEDULES = ("joint", "alternating")
SAMPLINGS = ("uniform", "proportional", "annealed")
DEFAULTS = {"schedule": "joint", "sampling": "uniform", "anneal_to": 0.0, "task_learning_rates": {},
            "relatedness_every": 0, "affinity": False, "affinity_lr": 0.0}


def _bad(field, value, text) -> ValueError:
    return ValueError(f"config field {SECTION}.{field}={value!r} {text}")


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def check_training(section: Mapping | None, task_names=None, log_every: int | None = None) -> dict:
    """The section with its defaults filled in; one ValueError naming ``training.<field>``, the bad
    value and what is valid. ``task_names`` / ``log_every``: checked against them when given."""
    section = dict(section or {})
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown config field(s): {', '.join(SECTION + '.' + u for u in unknown)}; "
                         f"valid: {sorted(DEFAULTS)}")
    t = {**DEFAULTS, **section}
    for field, choices in (("schedule", SCHEDULES), ("sampling", SAMPLINGS)):
        if t[field] not in choices:
            raise _bad(field, t[field], f"is not valid; choose one of {list(choices)}")
    if not _is_num(t["anneal_to"]) or not 0 <= t["anneal_to"] <= 1:
        raise _bad("anneal_to", t["anneal_to"], "must lie in [0, 1]")
    if not _is_num(t["affinity_lr"]) or t["affinity_lr"] < 0:
        raise _bad("affinity_lr", t["affinity_lr"], "must be a number >= 0")
    if not isinstance(t["affinity"], bool):
        raise _bad("affinity", t["affinity"], "must be a bool")
    every = t["relatedness_every"]
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise _bad("relatedness_every", every, "must be an int >= 0")
    if every and log_every and every % log_every:
        raise _bad("relatedness_every", every, f"must be a multiple of log_every={log_every}")
    if t["affinity"] and not every:
        raise _bad("affinity", True, "needs training.relatedness_every > 0 (it is measured at those steps)")
    lrs = t["task_learning_rates"]
    if not isinstance(lrs, Mapping) or any(not _is_num(v) or v <= 0 for v in lrs.values()):
        raise _bad("task_learning_rates", lrs, "must map task names to learning rates > 0")
    if task_names is not None and (extra := sorted(set(lrs) - set(task_names))):
        raise _bad("task_learning_rates", lrs, f"names unknown tasks {extra}; the tasks are {list(task_names)}")
    return {**t, "task_learning_rates": dict(lrs)}


def training_of(cfg) -> dict:
    """A run config's ``training`` section (absent: the defaults, i.e. today's joint training)."""
    section = cfg.get(SECTION) if hasattr(cfg, "get") else None
    if hasattr(section, "to_dict"):
        section = section.to_dict()
    return check_training(section, None, None)


def label_counts(train_split) -> np.ndarray:
    """Each task's number of labelled training examples (nonzero weight), in task order."""
    if not isinstance(train_split, Mapping):
        raise ValueError(f"{SECTION}.sampling: 'proportional' and 'annealed' need the train split in memory "
                         f"(a dict of arrays), not a stream; use 'uniform'")
    return np.asarray([np.count_nonzero(np.asarray(w) > 0) for w in train_split["weights"].values()], np.float64)


class Schedule(NamedTuple):
    """Alternating training's task sampler: ``probs(step)`` (T,) and ``mask(step, key)`` (T,) one-hot."""

    sampling: str
    counts: Any  # (T,) labelled training examples per task
    steps: int
    anneal_to: float = 0.0

    def probs(self, step) -> jnp.ndarray:
        counts = jnp.asarray(self.counts, jnp.float32)
        if self.sampling == "uniform":
            return jnp.full(counts.shape, 1.0 / counts.shape[0])
        if self.sampling == "proportional":
            alpha = jnp.ones(())
        else:  # annealed: alpha 1 -> anneal_to, linearly over the run
            frac = jnp.clip(step / max(self.steps - 1, 1), 0.0, 1.0)
            alpha = 1.0 - (1.0 - self.anneal_to) * frac
        p = jnp.where(counts > 0, counts, 1.0) ** alpha * (counts > 0)
        return p / jnp.sum(p)

    def mask(self, step, key) -> jnp.ndarray:
        """The step's task as a (T,) float one-hot, drawn from ``probs(step)`` with ``key``."""
        p = self.probs(step)
        return jax.nn.one_hot(jax.random.choice(key, p.shape[0], p=p), p.shape[0], dtype=jnp.float32)


def schedule_of(training: Mapping, task_set, steps: int) -> Schedule | None:
    """The run's Schedule (None for joint training)."""
    if training["schedule"] == "joint":
        return None
    n = task_set.num_tasks
    counts = np.ones(n) if training["sampling"] == "uniform" else label_counts(task_set.split("train"))
    return Schedule(training["sampling"], tuple(float(c) for c in counts), int(steps), float(training["anneal_to"]))


def task_lr_ratios(training: Mapping, task_names, learning_rate):
    """(T,) ratios lr_t / ``optimizer.learning_rate`` of the per-task learning rates (None: none set);
    the base rate may be traced (a population's learning rates)."""
    lrs = training["task_learning_rates"]
    if not lrs:
        return None
    if isinstance(learning_rate, (int, float)):
        return np.asarray([lrs.get(t, learning_rate) / learning_rate for t in task_names], np.float32)
    lr = jnp.asarray(learning_rate, jnp.float32)
    return jnp.stack([jnp.asarray(lrs[t], jnp.float32) / lr if t in lrs else jnp.ones((), jnp.float32)
                      for t in task_names])


# --------------------------------------------------------------------------- the masked update


def _dict_suffix(path) -> tuple:
    """The trailing dict keys of a pytree path (an optimizer state leaf's parameter path)."""
    out = []
    for p in reversed(path):
        if not isinstance(p, jax.tree_util.DictKey):
            break
        out.append(p.key)
    return tuple(reversed(out))


def task_leaf_paths(params, is_task_leaf) -> dict:
    """{parameter path: shape} of the TrainState parameters ``is_task_leaf(path)`` selects."""
    return {_dict_suffix(p): np.shape(x) for p, x in jax.tree_util.tree_leaves_with_path(params)
            if is_task_leaf(_dict_suffix(p))}


def keep_untouched(mask, task_paths: Mapping, new, old):
    """``new`` where the task's slice was updated, ``old`` elsewhere: every leaf of ``new`` (params
    or an optimizer state) that belongs to a task-stacked parameter (``task_paths``: its path ends
    with one of them and it has that shape) keeps the old values of the tasks whose ``mask`` is 0;
    every other leaf (the shared parameters, their moments, step counts) is ``new``."""

    def pick(path, n, o):
        shape = task_paths.get(_dict_suffix(path))
        if shape is None or np.shape(n) != shape:
            return n
        m = mask.reshape((-1,) + (1,) * (n.ndim - 1)) > 0
        return jnp.where(m, n, o)

    return jax.tree_util.tree_map_with_path(pick, new, old)
