"""Optimizers, learning-rate schedules and parameter groups.

``make_optimizer`` builds any optax optimizer over the whole TrainState
params ``{"model": ..., "weighting": ...}``, with its own learning rate for
the mixing units (cross-stitch / sluice alphas and betas, recognised by
``mtlx.taps.is_mixing``): they are few parameters that start near a fixed
point and move slowly at the trunk's learning rate (Misra et al. 2016).
``scale_task_axis`` gives each task's own parameters (stacked on a leading
task axis: heads, task columns) their own learning rate (``mtlx.schedules``).
``successive_regularization`` adds the gradient of a penalty that keeps
parameters near an anchor snapshot refreshed every ``period`` steps (the joint
many-task model's successive regularisation, ``mtlx.architectures.jmt``);
``make_optimizer(model=...)`` chains it first for a model that asks for it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
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
                   momentum: float = 0.9, grad_clip: float = 0.0, model=None) -> optax.GradientTransformation:
    """Optimizer ``name`` with ``schedule``; the mixing units get ``mixing_learning_rate`` (default:
    ``learning_rate``); decoupled weight decay for adamw, added to the gradient otherwise; global-norm
    clipping first when ``grad_clip`` > 0. ``model``: the run's architecture; one with a
    ``successive`` option set (``mtlx.architectures.jmt``) gets its successive-regularisation
    gradient added before everything else (it is part of the loss, so it is clipped with it)."""
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
    tx = optax.chain(optax.clip_by_global_norm(grad_clip), tx) if given(grad_clip) else tx
    successive = successive_of(model)
    return tx if successive is None else optax.chain(successive, tx)


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


# --------------------------------------------------------------------------- successive regularisation


class SuccessiveState(NamedTuple):
    """``count``: updates done; ``anchor``: theta' of the penalised leaves, a flat tuple in the order of
    the parameters' leaves (a tuple, not a copy of the parameter tree, so that alternating training's
    masked update, which restores task slices by parameter path, never reverts it)."""

    count: jnp.ndarray
    anchor: tuple


def successive_regularization(delta: float, period: int, mask: Any) -> optax.GradientTransformation:
    """Adds the gradient of ``delta * sum_i w_i ||theta_i - theta'_i||^2``, i.e. ``2 delta w_i (theta_i -
    theta'_i)``, to the updates of every leaf i with a nonzero weight ``w_i`` (``mask``: a pytree like
    the parameters of bools, numbers or arrays broadcasting to the leaf, or a function params -> that
    pytree; static values); other leaves' updates pass unchanged. The anchor theta' is the parameters
    at the update whose count of previous updates is a multiple of ``period`` (so the first update,
    and every ``period``-th after it, adds zero). With ``delta == 0`` the updates pass unchanged bit
    for bit. Hashimoto et al. 2017, Sec. 3 (``mtlx.architectures.jmt`` says how their per-task
    training reduces to this)."""
    if not (isinstance(period, (int, np.integer)) and period >= 1):
        raise ValueError(f"successive regularisation: period={period!r} must be an int >= 1 (steps)")

    def weights(params):
        w = mask(params) if callable(mask) else mask
        structure = jax.tree_util.tree_structure(params)
        if jax.tree_util.tree_structure(w) != structure:
            raise ValueError(f"successive regularisation: the mask's tree {jax.tree_util.tree_structure(w)} "
                             f"does not match the parameters' {structure}")
        return [(i, v) for i, v in enumerate(jax.tree_util.tree_leaves(w)) if np.any(np.asarray(v) != 0)]

    def init(params):
        leaves = jax.tree_util.tree_leaves(params)
        # copies: the train loop donates the state, and one buffer donated twice is an error
        return SuccessiveState(jnp.zeros((), jnp.int32), tuple(jnp.array(leaves[i], copy=True) for i, _ in weights(params)))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("successive regularisation needs the parameters: call update(updates, state, params)")
        leaves, chosen = jax.tree_util.tree_leaves(params), weights(params)
        refresh = state.count % period == 0
        anchor = tuple(jnp.where(refresh, leaves[i], a) for (i, _), a in zip(chosen, state.anchor))
        new_state = SuccessiveState(state.count + 1, anchor)
        if isinstance(delta, (int, float)) and delta == 0:
            return updates, new_state
        flat, treedef = jax.tree_util.tree_flatten(updates)
        for (i, w), a in zip(chosen, anchor):
            p = leaves[i]
            flat[i] = flat[i] + (2 * delta) * jnp.asarray(w, p.dtype) * (p - a)
        return jax.tree_util.tree_unflatten(treedef, flat), new_state

    return optax.GradientTransformation(init, update)


def successive_of(model) -> optax.GradientTransformation | None:
    """The successive regularisation a model's ``successive`` option asks for ({'delta', 'period'}), over
    the TrainState parameters ``{"model": ..., "weighting": ...}`` with the model's own
    ``successive_weights`` (the weighting's parameters are never penalised); None without one."""
    spec = getattr(model, "successive", None)
    if not spec:
        return None

    def mask(params):
        zeros = jax.tree_util.tree_map(lambda _: 0.0, params)
        return {**zeros, "model": model.successive_weights(params["model"])}

    return successive_regularization(spec["delta"], spec["period"], mask)
