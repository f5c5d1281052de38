"""Optimizers, learning-rate schedules and parameter groups.

``make_optimizer`` builds any optax optimizer over the whole TrainState
params ``{"model": ..., "weighting": ...}``, with its own learning rate for
the mixing units (cross-stitch / sluice alphas and betas, recognised by
``mtlx.taps.is_mixing``): they are few parameters that start near a fixed
point and move slowly at the trunk's learning rate (Misra et al. 2016).
``scale_task_axis`` gives each task's own parameters (stacked on a leading
task axis: heads, task columns) their own learning rate (``mtlx.schedules``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mtlx import taps

OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "momentum": optax.sgd,
              "rmsprop": optax.rmsprop}
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step")
MIXING, DEFAULT = "mixing", "default"


def make_schedule(lr: float, name: str, steps: int, warmup_steps: int = 0):
    """The learning rate at each step: constant, cosine decay to 0 over ``steps``, linear warmup then
    cosine, or "step" (divided by 10 at 50% and again at 75% of training)."""
    if name not in SCHEDULES:
        raise ValueError(f"optimizer.schedule={name!r} is not valid; choose one of {list(SCHEDULES)}")
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, max(steps, 1))
    if name == "step":
        return optax.piecewise_constant_schedule(lr, {int(steps * 0.5): 0.1, int(steps * 0.75): 0.1})
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup_steps, 1), max(steps, warmup_steps + 1))


def param_group(path) -> str:
    """The group of the parameter at ``path`` in ``{"model": ..., "weighting": ...}``: MIXING for a
    mixing unit of the model (its top-level name passes ``taps.is_mixing``), else DEFAULT."""
    keys = [getattr(p, "key", getattr(p, "name", None)) for p in path]
    return MIXING if len(keys) > 1 and keys[0] == "model" and taps.is_mixing(keys[1]) else DEFAULT


def param_groups(params):
    """``params``' tree of group labels (what ``optax.multi_transform`` reads)."""
    return jax.tree_util.tree_map_with_path(lambda p, _: param_group(p), params)


def given(x) -> bool:
    """``x != 0`` for a number; True for an array (``mtlx.parallel`` passes a population's values as
    arrays only where its program key fixed them all nonzero)."""
    return bool(x) if isinstance(x, (int, float)) or x is None else True


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3, mixing_learning_rate: float | None = None,
                   schedule: str = "constant", warmup_steps: int = 0, steps: int = 1, weight_decay: float = 0.0,
                   momentum: float = 0.9, grad_clip: float = 0.0) -> optax.GradientTransformation:
    """Optimizer ``name`` with ``schedule``; the mixing units get ``mixing_learning_rate`` (default:
    ``learning_rate``); decoupled weight decay for adamw, added to the gradient otherwise; global-norm
    clipping first when ``grad_clip`` > 0."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={name!r} is not valid; choose one of {sorted(OPTIMIZERS)}")

    def one(lr):
        sched = make_schedule(lr, schedule, steps, warmup_steps)
        if name == "adamw":
            return optax.adamw(sched, weight_decay=weight_decay)
        if name == "momentum":
            return optax.sgd(sched, momentum=momentum)
        opt = OPTIMIZERS[name](sched)
        return optax.chain(optax.add_decayed_weights(weight_decay), opt) if given(weight_decay) else opt

    mixing = one(mixing_learning_rate if given(mixing_learning_rate) else learning_rate)
    tx = optax.multi_transform({DEFAULT: one(learning_rate), MIXING: mixing}, param_groups)
    return optax.chain(optax.clip_by_global_norm(grad_clip), tx) if given(grad_clip) else tx


def scale_task_axis(ratios, is_task_leaf) -> optax.GradientTransformation:
    """Per-task learning rates: the updates of the parameters ``is_task_leaf(path)`` selects (in
    ``{"model": ..., "weighting": ...}``; task-stacked, leading axis T) scaled along that axis by
    ``ratios`` (T,) = lr_t / lr. Chained after the optimizer, whose update is proportional to its
    learning rate (Adam, SGD, RMSprop; adamw's decoupled decay too), it is the optimizer run with
    learning rate lr_t on task t's slice: a parameter group per task. ``ratios`` may be traced."""

    def update(updates, state, params=None):
        def scale(path, u):
            keys = tuple(getattr(p, "key", getattr(p, "name", None)) for p in path)
            if not is_task_leaf(keys):
                return u
            return u * jnp.asarray(ratios, u.dtype).reshape((-1,) + (1,) * (u.ndim - 1))

        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)
