"""The loss-weighting interface (DESIGN.md), in the spirit of optax.

A weighting is a NamedTuple of pure functions with an explicit state pytree
(checkpointed with the run):

  init(num_tasks) -> state
  combine(losses, grads, state, key) -> (weights, direction, state, info)

``losses`` is the (T,) vector of the step's task losses (stop-gradient'ed).
``grads`` depends on ``needs``:
  "none"            -> None (loss-based weightings);
  "jacobian"        -> (T, P) per-task gradients of the shared parameters,
                       flattened (vmap of one VJP, inside the jitted step);
  "gram"            -> the (T, T) Gram matrix ``G G^T`` of those gradients
                       (weightings that act on the task gradients only
                       through their inner products, and return the shared
                       gradient as a combination ``G^T c`` of them); the
                       step forms it without the rows where that is cheaper;
  "representation"  -> the (T, T) Gram matrix <dL_t/dz, dL_s/dz> of the
                       per-task gradients of the shared representation z
                       (MGDA-UB, Sener & Koltun 2018, Sec. 3.3); the step
                       forms it without the rows where that is cheaper;
  "lookahead"       -> a :class:`Lookahead`: the model's forward as a function
                       of its parameters, the step's batch and a second,
                       independent batch of the training split (the step's
                       ``batch["meta"]``, ``mtlx.data.pipeline.WithMeta``), for
                       weightings that take a virtual step of the model
                       (Auto-Lambda, Liu et al. 2022).
``weights`` (T,) scale the per-task losses. If ``direction`` is None the step
back-propagates ``sum_t weights_t * L_t`` through every parameter. Otherwise
``direction`` replaces the shared parameters' gradient - a (P,) vector
("jacobian"), or the (T,) coefficients ``c`` of ``G^T c`` ("gram") - and the
task-specific parameters get the gradient of ``sum_t weights_t * L_t``.
:func:`on_jacobian` runs any weighting on an explicit (T, P) Jacobian.
``info`` is a dict of scalars/arrays for logging (keep it small).

``state`` is a NamedTuple with named fields (as optax's states), a pytree the
step carries, vmaps over seeds and checkpoints; ``EmptyState()`` when a
weighting keeps none.

A weighting with trainable parameters (uncertainty weighting) sets
``init_params(num_tasks) -> params`` and ``objective(losses, params) ->
scalar``: the step then minimises ``objective`` (instead of the weighted sum)
jointly with the model, with the run's optimizer.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from mtlx import schema
from mtlx.weighting import solvers

NEEDS = ("none", "jacobian", "gram", "representation", "lookahead")

OPTION_RANGES = {  # by option name, for every weighting constructor (a plug-in's too); types: the signature's
    "lr": schema.POSITIVE, "decay": schema.NONNEG, "alpha": schema.NONNEG, "c": schema.NONNEG,
    "eps": schema.NONNEG, "temperature": schema.POSITIVE, "max_norm": schema.NONNEG,
    "min_weight": schema.NONNEG, "leak": schema.UNIT, "norm_eps": schema.NONNEG, "reg_eps": schema.NONNEG,
    "update_weights_every": schema.COUNT, "max_iters": schema.COUNT, "period": schema.COUNT,
    "rescale": (0, 1, 2),
    "beta": schema.UNIT, "beta_sigma": schema.NONNEG, "gamma": schema.NONNEG, "gamma_sigma": schema.NONNEG,
    "rho": schema.NONNEG, "mu": schema.POSITIVE, "warmup_steps": schema.INDEX, "step_size": schema.NONNEG,
    "lam": schema.NONNEG, "num_iters": schema.COUNT, "momentum": schema.UNIT, "rcond": schema.NONNEG,
    "n_byzantine": schema.INDEX, "n_selected": schema.COUNT, "trim_number": schema.INDEX,
    "weight_init": schema.NONNEG, "lookahead_lr": schema.NONNEG,
}


def is_number(x) -> bool:
    """A plain number (a constructor checks and branches on it); False for an array, which
    ``mtlx.parallel`` passes for a hyperparameter that differs across a population and was checked
    concretely before."""
    return isinstance(x, (int, float))


class Weighting(NamedTuple):
    name: str
    init: Callable[[int], Any]
    combine: Callable[..., tuple]
    needs: str = "none"
    init_params: Optional[Callable[[int], Any]] = None
    objective: Optional[Callable[[jnp.ndarray, Any], jnp.ndarray]] = None


class Lookahead(NamedTuple):
    """What a ``needs="lookahead"`` weighting's ``combine`` gets as ``grads``: enough to take a
    virtual step of the model and evaluate it elsewhere, inside the jitted step.

    ``losses_at(model_params, batch) -> ((T,) task losses, penalty)``: the model's forward;
    ``grad_at(weights)``: the model gradient of ``sum_t weights_t L_t + penalty`` at ``params``
    on ``batch`` (the step's own backward pass, reused); ``meta``: an independent batch of the
    training split; ``lr``: the run's learning rate at this step (None when the step was not
    given one, ``mtlx.train.make_train_step``)."""

    losses_at: Callable
    grad_at: Callable
    params: Any
    batch: Any
    meta: Any
    task_names: tuple
    lr: Any = None


def linearized_lookahead(losses: jnp.ndarray, G: jnp.ndarray, task_names: Optional[Sequence[str]] = None,
                         lr: Any = 1.0) -> Lookahead:
    """The :class:`Lookahead` of the losses linearised at theta, ``L(theta + delta) = losses + G delta``
    (G the (T, P) Jacobian, delta (P,)), whose meta batch is the step's own: what a "lookahead"
    weighting runs on when all it has is an explicit Jacobian (:func:`on_jacobian`). Auto-Lambda's
    meta-gradient there is ``-lr G G^T p`` (p: the primary tasks' indicator). Tasks are named
    ``task_names`` (default t0, t1, ...); the penalty is 0."""
    losses_at = lambda params, batch: (losses + G @ params, jnp.zeros((), losses.dtype))  # noqa: E731
    names = tuple(task_names) if task_names is not None else tuple(f"t{t}" for t in range(G.shape[0]))
    return Lookahead(losses_at, lambda w: G.T @ w, jnp.zeros(G.shape[1:], G.dtype), None, None, names, lr)


def on_jacobian(weighting: Weighting, task_names: Optional[Sequence[str]] = None, lr: Any = 1.0) -> Callable:
    """``combine`` of a "jacobian" or "gram" weighting as a function of the
    (T, P) Jacobian ``G``: ``(losses, G, state, key) -> (weights, direction,
    state, info)`` with ``direction`` a (P,) vector or None (``G^T weights``),
    whichever the weighting needs - what the train step computes, written
    out on an explicit ``G`` (tests, the benchmark's loop-based step). A
    "lookahead" weighting runs on the linearised losses
    (:func:`linearized_lookahead`, tasks ``task_names``, step size ``lr``)."""
    if weighting.needs == "lookahead":
        return lambda losses, G, state, key: weighting.combine(
            losses, linearized_lookahead(losses, G, task_names, lr), state, key)
    if weighting.needs != "gram":
        return weighting.combine

    def combine(losses, G, state, key):
        weights, coef, state, info = weighting.combine(losses, solvers.gram(G), state, key)
        return weights, None if coef is None else solvers.combine_rows(coef, G), state, info

    return combine


class EmptyState(NamedTuple):
    """The state of a weighting that keeps none (as ``optax.EmptyState``)."""


def no_state(num_tasks: int) -> EmptyState:
    return EmptyState()


def objective_weights(weighting: Weighting, losses: jnp.ndarray, params: Any) -> jnp.ndarray:
    """Effective loss weights ``d objective / d L_t`` of a weighting with an
    ``objective`` (e.g. ``0.5 exp(-s_t)`` for uncertainty weighting); for
    logging. For weightings without one, raises ValueError."""
    if weighting.objective is None:
        raise ValueError(f"weighting {weighting.name!r} has no objective")
    return jax.grad(weighting.objective)(losses, params)


STATE_OPTIMIZERS = ("adam", "sgd")


def state_optimizer(weighting: str, optimizer: str, lr: float, decay: float = 0.0) -> optax.GradientTransformation:
    """The optimizer of a weighting's own state variables (GradNorm's weights,
    FAMO's logits): ``decay * x`` added to the gradient (torch-style weight
    decay), then Adam or a plain step, learning rate ``lr``."""
    if optimizer not in STATE_OPTIMIZERS:
        raise ValueError(f"{weighting}: optimizer={optimizer!r} is not valid; choose one of {STATE_OPTIMIZERS}")
    scale = (optax.scale_by_adam(),) if optimizer == "adam" else ()
    return optax.chain(optax.add_decayed_weights(decay), *scale, optax.scale(-lr))
