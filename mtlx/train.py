"""TrainState, the ONE jitted train step, the eval step and the training loop.

``make_train_step`` returns a pure ``train_step(state, batch) -> (state,
metrics)`` for every architecture and weighting: one forward pass, masked
per-task losses, the architecture's penalty terms, the weighting's combine,
one optax update. Gradient-based weightings get per-task gradients from ONE
VJP evaluated at T cotangents with ``jax.vmap`` (optionally in chunks of the
task axis), so the T backward passes are batched and never leave the device.
Task t's loss reads only its own slice of the heads' input (``MTLModel.head_input``),
so the heads are back-propagated once, for all tasks, and only the layers below
them T times. "gram" weightings get the Gram matrix of the rows; each shared
Dense block's part of it, and its part of the combined gradient, come from its
input and the T cotangents at its pre-activation where that takes fewer FLOPs
than its rows (``_ghost_cheaper``), so those rows are never formed.
MGDA-UB's representation rows come from one backward pass to the
pre-activations of a Dense first task layer (their Gram matrix formed without
the rows where cheaper: ``_tap_gram``), else over per-task copies of the
shared representation (``MTLModel.shared_representation``).
The step is vmappable over a leading seed axis of ``state`` (and of ``batch``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping

import flax
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.flatten_util import ravel_pytree

from mtlx import losses as losses_lib
from mtlx.data import pipeline
from mtlx.architectures import shared_mask
from mtlx.architectures.base import REP_TAP
from mtlx.layers import GHOST_IN, GHOST_TAP
from mtlx.weighting import solvers
from mtlx.weighting.base import Weighting

HIGHEST = jax.lax.Precision.HIGHEST


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: Any  # {"model": model params, "weighting": trainable weighting params}
    opt_state: Any
    wstate: Any  # the weighting's state
    key: jnp.ndarray
    nonfinite_step: jnp.ndarray  # first step whose loss was NaN/inf, -1 if none
    nonfinite_task: jnp.ndarray  # that step's first non-finite task index


# --------------------------------------------------------------------------- optimizer

OPTIMIZERS = {"adam": optax.adam, "adamw": optax.adamw, "sgd": optax.sgd, "momentum": optax.sgd, "rmsprop": optax.rmsprop}
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step")


def make_schedule(lr: float, name: str, steps: int, warmup_steps: int = 0):
    if name not in SCHEDULES:
        raise ValueError(f"optimizer.schedule={name!r} is not valid; choose one of {list(SCHEDULES)}")
    if name == "constant":
        return optax.constant_schedule(lr)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, max(steps, 1))
    if name == "step":  # divide by 10 at 50% and 75% of training
        return optax.piecewise_constant_schedule(lr, {int(steps * 0.5): 0.1, int(steps * 0.75): 0.1})
    return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup_steps, 1), max(steps, warmup_steps + 1))


def param_group(path) -> str:
    """'mixing' for cross-stitch/sluice units (top-level name 'mix_*'), else 'default'."""
    keys = [getattr(p, "key", getattr(p, "name", None)) for p in path]
    return "mixing" if len(keys) > 1 and keys[0] == "model" and str(keys[1]).startswith("mix_") else "default"


def make_optimizer(name: str = "adam", learning_rate: float = 1e-3, mixing_learning_rate: float | None = None,
                   schedule: str = "constant", warmup_steps: int = 0, steps: int = 1, weight_decay: float = 0.0,
                   momentum: float = 0.9, grad_clip: float = 0.0) -> optax.GradientTransformation:
    """Any optax optimizer, with a separate learning rate for the mixing units."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name={name!r} is not valid; choose one of {sorted(OPTIMIZERS)}")

    def one(lr):
        sched = make_schedule(lr, schedule, steps, warmup_steps)
        if name == "adamw":
            return optax.adamw(sched, weight_decay=weight_decay)
        if name == "momentum":
            return optax.sgd(sched, momentum=momentum)
        opt = OPTIMIZERS[name](sched)
        return optax.chain(optax.add_decayed_weights(weight_decay), opt) if weight_decay else opt

    mixing = one(mixing_learning_rate if mixing_learning_rate else learning_rate)
    tx = optax.multi_transform({"default": one(learning_rate), "mixing": mixing},
                               lambda params: jax.tree_util.tree_map_with_path(lambda p, _: param_group(p), params))
    return optax.chain(optax.clip_by_global_norm(grad_clip), tx) if grad_clip else tx


# --------------------------------------------------------------------------- the step


def _split(tree, labels, n):
    """``n`` pytrees of ``tree``'s structure: part k holds the leaves labelled k (None elsewhere)."""
    return tuple(jax.tree_util.tree_map(lambda l, x: x if l == k else None, labels, tree) for k in range(n))


def _merge(parts, labels):
    """Inverse of :func:`_split`."""
    return jax.tree_util.tree_map(lambda l, *xs: xs[l], labels, *parts, is_leaf=lambda x: x is None)


def _task_cotangents(row, num_tasks: int, chunk: int):
    """``row(e_t)`` for every task t, stacked on a leading task axis: one VJP
    evaluated at T cotangents with ``jax.vmap`` (the batched backward passes).

    With ``chunk`` > 0 the task axis is processed ``chunk`` tasks at a time
    (``lax.map`` over chunks of a vmap) to bound memory when T is large.
    """
    eye = jnp.eye(num_tasks)
    if chunk <= 0 or chunk >= num_tasks:
        return jax.vmap(row)(eye)
    pad = (-num_tasks) % chunk
    eye = jnp.concatenate([eye, jnp.zeros((pad, num_tasks))]).reshape(-1, chunk, num_tasks)
    rows = jax.lax.map(jax.vmap(row), eye)
    return jax.tree_util.tree_map(lambda r: r.reshape((-1,) + r.shape[2:])[:num_tasks], rows)


def _tap_gram(deltas, params, ghost=None):
    """MGDA-UB's Gram matrix ``M_ts = <dL_t/dz, dL_s/dz>`` (T, T) from the
    cotangents ``delta_t`` (T, B, ..., h) at the tapped Dense layer's
    pre-activation and its kernel ``W_t`` (T, d, h), found at the same module
    path in ``params``: the rows are ``dL_t/dz = delta_t W_t^T``.

    ``ghost`` (default: whichever takes fewer FLOPs) forms M without the
    (T, B*d) rows: ``M_ts = sum_hk (W_t^T W_s)_hk (sum_b delta_t[b,h] delta_s[b,k])``,
    two (Th x Th) matmuls - the ghost-norm identity (Goodfellow 2015; Li et
    al. 2022, ghost clipping) taken across tasks instead of examples; with
    ``Th`` small against ``d`` and the batch, it is several times cheaper.
    """
    (path, delta), = flatten_dict(deltas).items()
    W = flatten_dict(params)[path[:-1] + ("kernel",)]          # (T, d, h)
    T, d, h = W.shape
    D = delta.reshape(T, -1, h)                                 # (T, N, h), N = batch (x tokens)
    n = D.shape[1]
    if ghost is None:
        ghost = (T * h) ** 2 * (d + n) < T * n * d * (h + T)
    if not ghost:
        return solvers.gram(jnp.einsum("tnh,tdh->tnd", D, W, precision=HIGHEST).reshape(T, -1))
    Wf, Df = W.transpose(1, 0, 2).reshape(d, T * h), D.transpose(1, 0, 2).reshape(n, T * h)
    P = jnp.matmul(Wf.T, Wf, precision=HIGHEST)               # (Th, Th): W_t^T W_s blocks
    Q = jnp.matmul(Df.T, Df, precision=HIGHEST)               # (Th, Th): delta_t^T delta_s blocks
    return jnp.sum((P * Q).reshape(T, h, T, h), axis=(1, 3))


def _ghost_cheaper(T, n, d, h):
    """Whether a Dense layer's Gram and combined kernel gradient cost fewer
    multiply-adds by :func:`_dense_gram` / :func:`_dense_grads` than through
    its T kernel-gradient rows (T x (d, h), their Gram, their combination)."""
    return n * n * d + T * n * n * h + T * T * n * h + n * d * h < T * n * d * h + T * T * d * h + T * d * h


def _dense_gram(x, deltas):
    """The (T, T) Gram matrix of a Dense layer's per-task gradients (kernel
    ``x^T delta_t`` and bias ``sum_n delta_t[n]``) from its input ``x``
    (N, d) and the cotangents ``delta`` (T, N, h) at its pre-activation,
    without the (T, d, h) rows: ``<x^T D_t, x^T D_s> = <D_t, (x x^T) D_s>``,
    the ghost-norm identity (Goodfellow 2015; Li et al. 2022) taken across
    tasks instead of examples."""
    K = jnp.matmul(x, x.T, precision=HIGHEST)
    KD = jnp.einsum("nm,tmh->tnh", K, deltas, precision=HIGHEST)
    S = jnp.sum(deltas, axis=1)
    return jnp.einsum("tnh,snh->ts", deltas, KD, precision=HIGHEST) + jnp.matmul(S, S.T, precision=HIGHEST)


def _dense_grads(x, deltas, coef):
    """The Dense layer's kernel and bias gradients of ``sum_t coef_t L_t``."""
    D = jnp.tensordot(coef, deltas, axes=1)
    return {"kernel": x.T @ D, "bias": jnp.sum(D, axis=0)}


def _keys(path):
    return tuple(getattr(p, "key", p) for p in path)


def _ghost_layers(perts, params, labels, T, ghost=None):
    """The tapped Dense blocks (``layers.Block``) whose Gram and gradients the
    step forms from their input and pre-activation cotangents: the shared
    ones where :func:`_ghost_cheaper` (``ghost=None``), or all / none of them
    (``ghost=True`` / ``False``). Returns the perturbations without the
    other taps, ``{module path: (d, h)}`` of those layers, and ``labels``
    with their kernel and bias relabelled 2."""
    flat_p, flat_w = flatten_dict(perts), flatten_dict(params)
    labelled = {_keys(p): l for p, l in jax.tree_util.tree_leaves_with_path(labels)}
    layers = {}
    for k, v in list(flat_p.items()):
        if k[-1] == GHOST_TAP:
            d, h = flat_w[k[:-1] + ("kernel",)].shape
            cheaper = _ghost_cheaper(T, math.prod(v.shape[:-1]), d, h) if ghost is None else ghost
            if labelled[k[:-1] + ("kernel",)] == 0 and cheaper:
                layers[k[:-1]] = (d, h)
            else:
                del flat_p[k]
    labels = jax.tree_util.tree_map_with_path(lambda p, l: 2 if _keys(p)[:-1] in layers else l, labels)
    return unflatten_dict(flat_p), layers, labels


def _flat_rows(rows):
    """(T, P) matrix from a pytree whose leaves have a leading task axis."""
    return jax.vmap(lambda r: ravel_pytree(r)[0])(rows)


def make_train_step(model, task_list, weighting: Weighting, tx: optax.GradientTransformation,
                    jacobian_chunk: int = 0, ghost: bool | None = None) -> Callable:
    """The pure train step ``(state, batch) -> (state, metrics)``; jit it once.

    ``jacobian_chunk``: tasks per vmapped backward (0: all at once).
    ``ghost``: for "gram" weightings, form shared Dense blocks' Gram and
    gradients without their rows where that is cheaper (None), always (True)
    or never (False).
    """
    task_list = tuple(task_list)
    T = len(task_list)
    needs = weighting.needs

    traced = {}

    def forward(model_params, perturbations, batch):
        variables = {"params": model_params}
        if perturbations is not None:
            variables["perturbations"] = perturbations
        (preds, aux), state = model.apply(variables, batch["inputs"], mutable=["intermediates"])
        losses = losses_lib.task_losses(task_list, preds, batch)
        traced["has_penalty"] = bool(aux)  # static: known once traced
        penalty = sum(aux.values()) if aux else jnp.zeros(())
        return losses, jnp.asarray(penalty, jnp.float32), state.get("intermediates", {})

    def zero_perturbations(batch, *names):
        """Zeros for every perturbation called one of ``names`` (at any module path), or None."""
        shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), batch["inputs"]))["perturbations"]
        flat = {k: jnp.zeros(v.shape, v.dtype) for k, v in flatten_dict(flax.core.unfreeze(shapes)).items()
                if k[-1] in names}
        return unflatten_dict(flat) if flat else None

    def has_penalty(mparams, batch):
        return bool(jax.eval_shape(lambda: model.apply({"params": mparams}, batch["inputs"]))[1])

    def train_step(state: TrainState, batch):
        key, wkey = jax.random.split(state.key)
        mparams = state.params["model"]
        grads_or_none = None
        if needs == "representation" and (taps := zero_perturbations(batch, REP_TAP)) is not None:
            # the Dense first task layer's pre-activations a_t perturbed (MTLModel.shared_representation):
            # one backward at cotangent 1, through the layers above them only, gives delta_t = dL_t/da_t
            (losses, penalty, _), vjp_tap = jax.vjp(lambda p, e: forward(p, e, batch), mparams, taps)
            vjp_fn = lambda ct: vjp_tap((*ct, {}))[:1]
            grads_or_none = _tap_gram(vjp_tap((jnp.ones(T), jnp.zeros(()), {}))[1], mparams)
        elif needs == "representation":
            (losses, penalty), vjp_fn = jax.vjp(lambda p: forward(p, None, batch)[:2], mparams)
            # the same forward with T per-task copies of the representation, perturbed
            # (MTLModel.task_copies; XLA shares the layers below them): one backward at
            # cotangent 1 gives every row dL_t/dz, traversing only the layers above z
            _, vjp_rep = jax.vjp(lambda z: forward(mparams, z, batch)[0], zero_perturbations(batch, "shared_rep"))
            grads_or_none = solvers.gram(_flat_rows(vjp_rep(jnp.ones(T))[0]))
        elif needs in ("jacobian", "gram"):
            # labels: 0 shared (rows by autodiff), 1 task-specific, 2 a ghosted shared Dense layer
            perts, ghost_layers = zero_perturbations(batch, "head_rep", GHOST_TAP if needs == "gram" else None), {}
            labels = jax.tree_util.tree_map(lambda m: 0 if m else 1, shared_mask(model, mparams))
            if needs == "gram" and not has_penalty(mparams, batch):
                perts, ghost_layers, labels = _ghost_layers(perts, mparams, labels, T, ghost)
            rest, specific, held = _split(mparams, labels, 3)
            (losses, penalty, inter), vjp_fn = jax.vjp(
                lambda s, o, z: forward(_merge((s, o, held), labels), z, batch), rest, specific, perts)
            h = inter["head_input"][0]  # the heads' input (MTLModel.head_input)
            inter_ct = lambda ct: {**jax.tree_util.tree_map(jnp.zeros_like, inter), "head_input": (ct,)}
            no_h = inter_ct(jnp.zeros_like(h))
            # one backward through the heads: C[t] = dL_t/dh_t (task t reads only its copy)
            C = vjp_fn((jnp.ones(T), jnp.zeros(()), no_h))[2]["head_rep"]
            per_task = C.shape == h.shape  # h stacked (T, B, ...) or shared (B, ...)
            ct_h = (lambda e: e.reshape((T,) + (1,) * (C.ndim - 1)) * C) if per_task else (
                lambda e: jnp.tensordot(e, C, axes=1))
            # T backward passes below the heads only, vmapped: the Jacobian rows of the shared
            # parameters, and the cotangents at the ghosted layers' pre-activations
            def row(e):
                g = vjp_fn((jnp.zeros(T), jnp.zeros(()), inter_ct(ct_h(e))))
                return g[0], {k: flatten_dict(g[2])[k + (GHOST_TAP,)] for k in ghost_layers}
            rows, deltas = _task_cotangents(row, T, jacobian_chunk)
            G = _flat_rows(rows) if jax.tree_util.tree_leaves(rest) else jnp.zeros((T, 0))
            flat_inter = flatten_dict(inter)
            xs = {k: flat_inter[k + (GHOST_IN,)][0].reshape(-1, ghost_layers[k][0]) for k in ghost_layers}
            ds = {k: deltas[k].reshape(T, -1, ghost_layers[k][1]) for k in ghost_layers}
            grads_or_none = G
            if needs == "gram":
                grads_or_none = sum((_dense_gram(xs[k], ds[k]) for k in ghost_layers), solvers.gram(G))
        else:
            (losses, penalty), vjp_fn = jax.vjp(lambda p: forward(p, None, batch)[:2], mparams)

        losses_sg = jax.lax.stop_gradient(losses)
        wgrads = state.params["weighting"]
        if weighting.objective is not None:
            (_, (weights, wgrads)) = jax.value_and_grad(weighting.objective, argnums=(0, 1))(
                losses_sg, state.params["weighting"])
            direction, wstate, info = None, state.wstate, {}
        else:
            weights, direction, wstate, info = weighting.combine(losses_sg, grads_or_none, state.wstate, wkey)
        weights = jax.lax.stop_gradient(weights).astype(jnp.float32)

        if needs in ("jacobian", "gram"):
            coef = direction if needs == "gram" else None   # the shared gradient is G^T coef
            if coef is not None:
                direction = solvers.combine_rows(coef, G)
            if direction is not None:
                g_rest = ravel_pytree(rest)[1](direction)
            else:
                g_rest = jax.tree_util.tree_map(lambda r: jnp.tensordot(weights, r, axes=1), rows)
            g_specific = vjp_fn((weights, jnp.zeros(()), no_h))[1]  # heads + task columns
            if traced["has_penalty"]:  # the penalty's gradient is not in the task Jacobian
                pen = vjp_fn((jnp.zeros(T), jnp.ones(()), no_h))[:2]
                g_rest, g_specific = jax.tree_util.tree_map(jnp.add, (g_rest, g_specific), pen)
            coef = weights if coef is None else coef
            g_held = {k + (name,): g for k in ghost_layers for name, g in _dense_grads(xs[k], ds[k], coef).items()}
            g_held = jax.tree_util.tree_map_with_path(lambda p, _: g_held.get(_keys(p)), labels)
            mgrads = _merge((g_rest, g_specific, g_held), labels)
        else:
            mgrads = vjp_fn((weights, jnp.ones(())))[0]

        grads = {"model": mgrads, "weighting": wgrads}
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        total = jnp.sum(weights * losses) + penalty
        finite = jnp.isfinite(losses)
        first_bad = (state.nonfinite_step < 0) & ~jnp.all(finite & jnp.isfinite(total))
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, wstate=wstate, key=key,
            nonfinite_step=jnp.where(first_bad, state.step, state.nonfinite_step),
            nonfinite_task=jnp.where(first_bad, jnp.argmin(finite), state.nonfinite_task))
        metrics = {"losses": losses, "weights": weights, "penalty": penalty, "total": total, "info": info}
        return new_state, metrics

    return train_step


def init_state(model, weighting: Weighting, tx, num_tasks: int, sample_inputs, seed) -> TrainState:
    """Parameters, optimizer and weighting state from an explicit seed (int or key)."""
    key = jax.random.PRNGKey(seed) if np.ndim(seed) == 0 and not isinstance(seed, jax.Array) else seed
    k_init, k_run = jax.random.split(key)
    mparams = model.init(k_init, sample_inputs)["params"]
    wparams = weighting.init_params(num_tasks) if weighting.init_params is not None else {}
    params = {"model": mparams, "weighting": wparams}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      wstate=weighting.init(num_tasks), key=k_run,
                      nonfinite_step=-jnp.ones((), jnp.int32), nonfinite_task=-jnp.ones((), jnp.int32))


def check_weighting_fits(model, weighting: Weighting, arch_name: str = "") -> None:
    if weighting.needs == "representation" and not type(model).has_shared_representation:
        raise ValueError(f"weighting {weighting.name!r} differentiates a shared representation, which architecture "
                         f"{arch_name or type(model).__name__!r} lacks; use it with 'hard' (split > 0), 'mmoe' or 'omoe'")


def make_eval_step(model) -> Callable:
    """Pure ``eval_step(model_params, inputs) -> preds``."""
    return lambda mparams, inputs: model.apply({"params": mparams}, inputs)[0]


def evaluate(eval_step, mparams, split, task_list, batch_size: int = 1024) -> dict:
    """Per-task metrics over a whole split (host-side metric computation)."""
    n = len(split["inputs"]) if isinstance(split, Mapping) else len(split)
    preds = {t.name: [] for t in task_list}
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        batch = pipeline.gather(split, idx)
        out = eval_step(mparams, batch["inputs"])
        for t in task_list:
            preds[t.name].append(np.asarray(out[t.name]))
    whole = split if isinstance(split, Mapping) else pipeline.gather(split, np.arange(n))
    return {t.name: losses_lib.compute_metrics(t, np.concatenate(preds[t.name]), whole["targets"][t.name],
                                              whole["weights"][t.name]) for t in task_list}


# --------------------------------------------------------------------------- the loop


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, task: str):
        super().__init__(f"loss of task {task!r} became NaN/inf at step {step}")
        self.step, self.task = step, task


@dataclasses.dataclass
class Run:
    """Everything a run builds from its config, validated before any compilation."""

    cfg: Any
    task_set: Any
    model: Any
    weighting: Weighting
    tx: optax.GradientTransformation


def build_run(cfg, task_set=None) -> Run:
    """Task set, model, weighting and optimizer from a run config; every error here is pre-compile."""
    from mtlx.architectures import build_model, check_heads
    from mtlx.config import check_run_config
    from mtlx.data import get_task_set
    from mtlx.weighting import get_weighting

    check_run_config(cfg)
    if task_set is None:
        task_set = get_task_set(cfg.task_set.name, **dict(cfg.task_set.options))
    model = build_model(cfg.architecture.name, task_set, list(cfg.backbone.blocks), tuple(cfg.backbone.head_hidden),
                        **dict(cfg.architecture.options))
    check_heads(model, task_set)
    weighting = get_weighting(cfg.weighting.name, **dict(cfg.weighting.options))
    check_weighting_fits(model, weighting, cfg.architecture.name)
    weighting.init(task_set.num_tasks)  # validates weighting options against T
    opt = dict(cfg.optimizer)
    opt["mixing_learning_rate"] = opt["mixing_learning_rate"] or None
    tx = make_optimizer(steps=cfg.steps, **opt)
    return Run(cfg, task_set, model, weighting, tx)


def main_score(metrics: Mapping, task_list) -> float:
    """Mean over tasks of the main metric, signed so that higher is better (model selection)."""
    vals = [(1 if t.higher_is_better() else -1) * metrics[t.name][t.main_metric] for t in task_list]
    return float(np.nanmean(vals))


def train_and_evaluate(cfg, workdir: str | None = None, task_set=None, progress: Callable | None = None) -> dict:
    """Train one run, evaluating periodically; returns the summary.

    With ``workdir``: appends curves to ``metrics.jsonl``, checkpoints the
    TrainState with orbax every ``checkpoint_every`` steps and resumes from the
    last checkpoint (dropping curve lines written after it). ``progress(step,
    losses)`` is called at every log step. Raises NonFiniteLoss naming the step
    and task when a loss turns NaN/inf.
    """
    import os
    import time

    from mtlx import checkpoint, results
    from mtlx.architectures import param_count
    run = build_run(cfg, task_set)
    ts, tl = run.task_set, run.task_set.tasks
    train = ts.split("train")
    evals = {s: ts.splits[s] for s in ("validation", "test") if s in ts.splits}
    order = pipeline.BatchOrder(pipeline.split_size(train), cfg.batch_size, cfg.seed)
    sample = pipeline.gather(train, order(0))["inputs"]
    state = init_state(run.model, run.weighting, run.tx, ts.num_tasks, sample, cfg.seed)
    n_params = param_count(state.params["model"])

    mgr, start = None, 0
    if workdir:
        mgr = checkpoint.manager(os.path.join(workdir, "checkpoints"))
        if checkpoint.latest_step(mgr) is not None:
            state = checkpoint.restore(mgr, state)
            start = int(state.step)
        results.truncate_jsonl(os.path.join(workdir, "metrics.jsonl"), start)
    writer = results.JsonlWriter(os.path.join(workdir, "metrics.jsonl")) if workdir else None

    step_fn = make_train_step(run.model, tl, run.weighting, run.tx, cfg.jacobian_chunk)
    on_device = 0 <= pipeline.split_nbytes(train) <= cfg.on_device_max_bytes
    if on_device:
        data = pipeline.to_device(train)
        jstep = jax.jit(lambda st, d, idx: step_fn(st, pipeline.gather(d, idx)), donate_argnums=0)
        next_args = lambda s: (data, order(s))
    else:
        prefetch = pipeline.Prefetcher(train, order, start, cfg.steps)
        jstep = jax.jit(step_fn, donate_argnums=0)
        next_args = lambda s: (prefetch.next(),)
    eval_step = jax.jit(make_eval_step(run.model))

    def do_eval(step):
        out = {s: evaluate(eval_step, state.params["model"], split, tl, cfg.eval_batch_size) for s, split in evals.items()}
        if writer:
            writer.write({"step": step, "kind": "eval", **out})
        return out

    best, best_test, last_eval = -np.inf, None, None
    if workdir:  # a resumed run: model selection continues from the evaluations already written
        for rec in results.read_jsonl(os.path.join(workdir, "metrics.jsonl")):
            if rec.get("kind") == "eval":
                last_eval = {k: rec[k] for k in ("validation", "test") if k in rec}
                score = main_score(last_eval.get("validation", last_eval.get("test")), tl)
                if score > best:
                    best, best_test = score, last_eval.get("test")
        if start < cfg.steps:
            last_eval = None

    def check_finite():
        if int(state.nonfinite_step) >= 0:
            raise NonFiniteLoss(int(state.nonfinite_step), tl[int(state.nonfinite_task)].name)

    t0 = time.time()
    t_other, t_first = 0.0, None  # eval/checkpoint time; end of the first (compiling) interval
    for s in range(start, cfg.steps):
        state, m = jstep(state, *next_args(s))
        if (s + 1) % cfg.log_every == 0 or s + 1 == cfg.steps:
            losses = np.asarray(m["losses"])  # host sync
            if t_first is None:
                t_first, s_first = time.time(), s + 1
            check_finite()
            rec = {"step": s + 1, "kind": "train", "losses": dict(zip(ts.task_names, losses.tolist())),
                   "weights": dict(zip(ts.task_names, np.asarray(m["weights"]).tolist())),
                   "penalty": float(m["penalty"])}
            if writer:
                writer.write(rec)
            if progress:
                progress(s + 1, rec["losses"])
        t = time.time()
        if (s + 1) % cfg.eval_every == 0 or s + 1 == cfg.steps:
            last_eval = do_eval(s + 1)
            score = main_score(last_eval.get("validation", last_eval.get("test")), tl)
            if score > best:
                best, best_test = score, last_eval.get("test")
        if mgr and ((s + 1) % cfg.checkpoint_every == 0 or s + 1 == cfg.steps):
            check_finite()  # never checkpoint a state whose loss already went NaN/inf
            checkpoint.save(mgr, s + 1, state)
        t_other += time.time() - t if t_first is not None else 0.0
    if last_eval is None:  # resumed after the last step with no evaluation on record
        last_eval = do_eval(int(state.step))
        best_test = last_eval.get("test")
    wall = time.time() - t0
    timed = (time.time() - t_first - t_other) if t_first is not None else 0.0
    n_timed = (cfg.steps - s_first) if t_first is not None else 0
    return {
        "status": "done", "steps": int(state.step), "param_count": n_params, "wall_time_s": wall,
        "steps_per_s": n_timed / timed if n_timed > 0 and timed > 0 else float("nan"),
        "metrics": last_eval.get("test", last_eval.get("validation")),
        "validation_metrics": last_eval.get("validation"),
        "test_at_best_validation": best_test,
        "on_device_data": on_device,
        "mixing": {k: np.asarray(v).tolist() for k, v in state.params["model"].items() if k.startswith("mix_")},
    }
