"""Auto-Lambda (Liu, Johns & Davison, "Auto-Lambda: Disentangling Dynamic Task
Relationships", TMLR 2022).

The task weights lambda are meta-parameters, learned by a one-step lookahead at
every training step (the paper's bilevel problem, its approximation as in DARTS):

    theta'(lambda) = theta - alpha grad_theta [sum_i lambda_i L_i(theta; batch) + penalty]
    M(lambda)      = sum_{j in primary} L_j(theta'(lambda); meta batch)
    lambda        <- lambda - Adam(dM/dlambda)

and the model then takes its real step on ``sum_i lambda_i L_i`` with the
updated lambda. ``primary`` tasks are the ones the user cares about (all:
multi-task learning; some: auxiliary learning, the others only help).

The meta-gradient is EXACT here. theta' is linear in lambda (the gradients
g_i = grad L_i(theta) do not depend on it), so by the chain rule

    dM/dlambda_i = -alpha < grad M(theta'), g_i >,

the directional derivative of L_i at theta along v = grad M(theta'): the loss
vector's Jacobian-vector product, formed by reverse mode twice (:func:`jvp_by_vjp`,
so that layers with hand-written gradients work too) (:func:`meta_gradient`), the same number autodiff through the
virtual step returns (``tests/unit/test_auto_lambda.py`` checks it against a
finite difference of M). The official code approximates exactly this
directional derivative by a central difference (eps = 0.01 / |v|, the DARTS
recipe). A "first-order" variant in DARTS' sense (dropping d theta'/d lambda)
would give a zero gradient, since lambda reaches M only through theta'; it is
not offered.

Choices as in the official code: lambda starts at ``weight_init`` = 0.1 for
every task, is not clipped (it may turn negative), and is moved by Adam with
``lr`` = 1e-4 (their NYUv2 / Cityscapes default; 3e-4 on CIFAR-100); the meta
batch is a second, independently shuffled batch of the TRAINING split (their
``val_loader`` is a copy of the train loader; here ``mtlx.data.pipeline.WithMeta``);
alpha is the model optimizer's learning rate at the step (``lookahead_lr=0``,
the run's schedule applied; the step passes it, ``mtlx.train.make_train_step``),
or ``lookahead_lr`` when > 0. Deviation: the virtual step is a plain gradient
step on every model parameter; the official code adds SGD's momentum buffer
and weight decay to it when the model optimizer has them.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from mtlx.weighting.base import Lookahead, Weighting, is_number, state_optimizer


class AutoLambdaState(NamedTuple):
    lam: jnp.ndarray  # (T,) the task weights lambda
    opt_state: Any    # their Adam moments


def primary_mask(primary: Sequence[str], task_names: Sequence[str]) -> jnp.ndarray:
    """(T,) 1 for the primary tasks (all when ``primary`` is empty), 0 for the auxiliary ones."""
    bad = [p for p in primary if p not in task_names]
    if bad:
        raise ValueError(f"weighting.options.primary={list(primary)} names {bad}, not tasks of this task set; "
                         f"choose among {list(task_names)} (or [] for all)")
    return jnp.asarray([1.0 if not primary or t in primary else 0.0 for t in task_names], jnp.float32)


def meta_gradient(la: Lookahead, lam: jnp.ndarray, primary: jnp.ndarray, alpha) -> tuple:
    """``(M, dM/dlambda)`` at ``lam``: the primary tasks' loss on the meta batch after the
    virtual step ``theta' = theta - alpha grad(sum_i lam_i L_i + penalty)``, and its exact
    gradient ``-alpha J_L(theta) grad M(theta')`` (the module docstring)."""
    g = la.grad_at(lam)
    theta1 = jax.tree_util.tree_map(lambda p, d: p - alpha * d, la.params, g)
    meta_loss, v = jax.value_and_grad(lambda p: jnp.dot(primary, la.losses_at(p, la.meta)[0]))(theta1)
    return meta_loss, -alpha * jvp_by_vjp(lambda p: la.losses_at(p, la.batch)[0], la.params, v)


def jvp_by_vjp(f, x, v):
    """``J_f(x) v`` by reverse mode twice: ``u -> J^T u`` is linear, so its VJP at any ``u`` with
    cotangent ``v`` is ``J v``. Forward mode (``jax.jvp``) would refuse the layers whose gradient
    is hand-written (``jax.custom_vjp``: mtlx.conv's convolutions and max-pool); their backward
    rules are plain JAX and differentiate."""
    y, f_vjp = jax.vjp(f, x)
    _, back = jax.vjp(lambda u: f_vjp(u)[0], jnp.zeros_like(y))
    return back(v)[0]


def lookahead_step_size(lookahead_lr, run_lr):
    """alpha: ``lookahead_lr`` when > 0, else the run's learning rate at the step (``run_lr``)."""
    if run_lr is None:
        if is_number(lookahead_lr) and lookahead_lr == 0:
            raise ValueError("weighting 'auto_lambda': weighting.options.lookahead_lr=0 takes the run's learning "
                             "rate, which this train step was not given (make_train_step(learning_rate=...)); "
                             "set lookahead_lr > 0")
        return lookahead_lr
    if is_number(lookahead_lr):
        return lookahead_lr if lookahead_lr > 0 else run_lr
    return jnp.where(lookahead_lr > 0, lookahead_lr, run_lr)  # a population's traced value


def auto_lambda(primary: Sequence[str] = (), weight_init: float = 0.1, lr: float = 1e-4,
                lookahead_lr: float = 0.0) -> Weighting:
    """Auto-Lambda, Liu et al. (2022) (``needs="lookahead"``; the module docstring).

    ``primary``: the task names whose meta-batch loss lambda is tuned for ([]: every task);
    ``weight_init``: lambda's initial value; ``lr``: Adam's learning rate on lambda;
    ``lookahead_lr``: the virtual step's size alpha (0: the run's learning rate at the step).
    ``weights`` are the updated lambda; ``info``: the meta loss and its gradient.
    """
    primary = tuple(primary)
    tx = state_optimizer("auto_lambda", "adam", lr)

    def init(num_tasks):
        lam = jnp.full((num_tasks,), weight_init, jnp.float32)
        return AutoLambdaState(lam=lam, opt_state=tx.init(lam))

    def combine(losses, la, state, key):
        if not isinstance(la, Lookahead):
            raise ValueError(f"weighting 'auto_lambda' reads a Lookahead (needs='lookahead'), got {type(la).__name__}")
        alpha = lookahead_step_size(lookahead_lr, la.lr)
        meta_loss, grad = meta_gradient(la, state.lam, primary_mask(primary, la.task_names), alpha)
        updates, opt_state = tx.update(grad, state.opt_state, state.lam)
        lam = optax.apply_updates(state.lam, updates)
        info = {"meta_loss": meta_loss, "meta_grad": grad}
        return lam.astype(losses.dtype), None, AutoLambdaState(lam=lam, opt_state=opt_state), info

    return Weighting("auto_lambda", init, combine, "lookahead")
