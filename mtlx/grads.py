"""The per-task gradient engine: what the train step asks for, by the weighting's ``needs``.

``engine(model, task_list, needs, jacobian_chunk, ghost)`` returns ONE
function ``(model_params, batch) -> Pass(losses, penalty, grads, finish)``:
``grads`` is what the weighting's ``combine`` reads and ``finish(weights,
direction)`` the model's gradient once the weighting has answered. Each kind
is one function of :data:`ENGINES`:

  "none"            one forward, one VJP: the gradient of ``sum_t w_t L_t + penalty``.
  "jacobian"/"gram" the Jacobian rows ``dL_t/d(shared params)`` from ONE VJP
                    evaluated at T cotangents with ``jax.vmap`` (optionally in
                    chunks of the task axis: :func:`task_cotangents`). Task t's
                    loss reads only its own slice of the heads' input
                    (``MTLModel.head_input``, perturbation ``taps.HEAD_REP``), so
                    the heads are back-propagated once for all tasks and only
                    the layers below them T times. "gram" gets the rows' Gram
                    matrix; each shared Dense block's part of it, and its part of
                    the combined gradient, come from its input and the T
                    cotangents at its pre-activation (``taps.GHOST_PRE``) where
                    that takes fewer FLOPs (:func:`ghost_cheaper`), so those rows
                    are never formed.
  "representation"  MGDA-UB's Gram matrix of ``dL_t/dz`` for the shared
                    representation z: from one backward pass to the
                    pre-activations of a Dense first task layer
                    (``taps.SHARED_REP_PRE``, :func:`tap_gram`), else over
                    per-task copies of z (``taps.SHARED_REP``).
  "lookahead"       "none"'s pass on the batch without its meta batch, and a
                    ``weighting.base.Lookahead`` (the forward as a function of the
                    parameters, that pass's backward, the meta batch
                    ``batch["meta"]``) for a weighting that takes a virtual step.

A model that draws random numbers in training (a class attribute
``rngs_in_train``: rng stream names, e.g. LTB's ``taps.GUMBEL_RNG``) gets the
step's ``rngs`` and the step count (collection ``taps.TRAIN_PROGRESS``) in
every forward of the pass (the same draws in each); evaluation passes neither.

Everything is traced inside the one jitted step; nothing leaves the device,
and every path runs unchanged under ``jax.vmap`` over seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import flax
import jax
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.flatten_util import ravel_pytree

from mtlx import conv as conv_lib
from mtlx import losses as losses_lib
from mtlx.architectures import shared_mask
from mtlx.data.pipeline import META
from mtlx.taps import (GHOST_IN, GHOST_PRE, HEAD_INPUT, HEAD_REP, INTERMEDIATES, PERTURBATIONS, SHARED_REP,
                       SHARED_REP_PRE, STEP_COUNT, TRAIN_PROGRESS)
from mtlx.weighting import solvers
from mtlx.weighting.base import Lookahead

HIGHEST = jax.lax.Precision.HIGHEST
SHARED, SPECIFIC, HELD = 0, 1, 2  # parameter labels: rows by autodiff, task-specific, a ghosted Dense layer


class Pass(NamedTuple):
    """One forward pass and what the weighting reads: the (T,) losses, the
    architecture's penalty (scalar), ``grads`` (None, (T, P) rows or a (T, T)
    Gram matrix) and ``finish(weights, direction) -> model gradient``."""

    losses: jnp.ndarray
    penalty: jnp.ndarray
    grads: Any
    finish: Callable


# --------------------------------------------------------------------------- the model, seen by the engine


@dataclasses.dataclass(frozen=True)
class _Model:
    model: Any
    task_list: tuple
    chunk: int = 0
    ghost: bool | None = None
    rngs: Any = None   # {stream: key} for a model with rngs_in_train, in training
    step: Any = None   # the step count it reads with them (taps.TRAIN_PROGRESS)

    @property
    def num_tasks(self) -> int:
        return len(self.task_list)

    def forward(self, model_params, perturbations, batch):
        """``(losses, penalty, intermediates)`` with the given perturbations (None: none)."""
        variables = {"params": model_params}
        if perturbations is not None:
            variables[PERTURBATIONS] = perturbations
        if self.rngs is not None:
            variables[TRAIN_PROGRESS] = {STEP_COUNT: self.step}
        (preds, aux), state = self.model.apply(variables, batch["inputs"], rngs=self.rngs,
                                               mutable=[INTERMEDIATES])
        losses = losses_lib.task_losses(self.task_list, preds, batch)
        penalty = sum(aux.values()) if aux else jnp.zeros(())
        return losses, jnp.asarray(penalty, jnp.float32), state.get(INTERMEDIATES, {})

    def zero_perturbations(self, batch, *names):
        """Zeros for every perturbation called one of ``names`` (at any module path), or None."""
        shapes = jax.eval_shape(lambda: self.model.init(jax.random.PRNGKey(0), batch["inputs"]))[PERTURBATIONS]
        flat = {k: jnp.zeros(v.shape, v.dtype) for k, v in flatten_dict(flax.core.unfreeze(shapes)).items()
                if k[-1] in names}
        return unflatten_dict(flat) if flat else None

    def has_penalty(self, model_params, batch) -> bool:
        """Whether the architecture adds penalty terms (static: known from shapes)."""
        return bool(jax.eval_shape(lambda: self.model.apply({"params": model_params}, batch["inputs"]))[1])


# --------------------------------------------------------------------------- building blocks


def task_cotangents(row, num_tasks: int, chunk: int):
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


def tap_gram(deltas, params, ghost=None):
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


def ghost_cheaper(T, n, d, h):
    """Whether a Dense layer's Gram and combined kernel gradient cost fewer
    multiply-adds by :func:`dense_gram` / :func:`dense_grads` than through
    its T kernel-gradient rows (T x (d, h), their Gram, their combination)."""
    return n * n * d + T * n * n * h + T * T * n * h + n * d * h < T * n * d * h + T * T * d * h + T * d * h


def dense_gram(x, deltas):
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


def dense_grads(x, deltas, coef):
    """The Dense layer's kernel and bias gradients of ``sum_t coef_t L_t``."""
    D = jnp.tensordot(coef, deltas, axes=1)
    return {"kernel": x.T @ D, "bias": jnp.sum(D, axis=0)}


def _keys(path):
    return tuple(getattr(p, "key", p) for p in path)


def ghost_layers(perts, params, labels, T, ghost=None):
    """The tapped Dense blocks (``layers.Block``) whose Gram and gradients the
    step forms from their input and pre-activation cotangents: the shared
    ones where :func:`ghost_cheaper` (``ghost=None``), or all / none of them
    (``ghost=True`` / ``False``). Returns the perturbations without the
    other taps, ``{module path: (d, h)}`` of those layers, and ``labels``
    with their kernel and bias relabelled HELD."""
    flat_p, flat_w = flatten_dict(perts), flatten_dict(params)
    labelled = {_keys(p): l for p, l in jax.tree_util.tree_leaves_with_path(labels)}
    layers = {}
    for k, v in list(flat_p.items()):
        if k[-1] == GHOST_PRE:
            d, h = flat_w[k[:-1] + ("kernel",)].shape
            cheaper = ghost_cheaper(T, math.prod(v.shape[:-1]), d, h) if ghost is None else ghost
            if labelled[k[:-1] + ("kernel",)] == SHARED and cheaper:
                layers[k[:-1]] = (d, h)
            else:
                del flat_p[k]
    labels = jax.tree_util.tree_map_with_path(lambda p, l: HELD if _keys(p)[:-1] in layers else l, labels)
    return unflatten_dict(flat_p), layers, labels


def _split(tree, labels, n):
    """``n`` pytrees of ``tree``'s structure: part k holds the leaves labelled k (None elsewhere)."""
    return tuple(jax.tree_util.tree_map(lambda l, x: x if l == k else None, labels, tree) for k in range(n))


def _merge(parts, labels):
    """Inverse of :func:`_split`."""
    return jax.tree_util.tree_map(lambda l, *xs: xs[l], labels, *parts, is_leaf=lambda x: x is None)


def flat_rows(rows):
    """(T, P) matrix from a pytree whose leaves have a leading task axis."""
    return jax.vmap(lambda r: ravel_pytree(r)[0])(rows)


# --------------------------------------------------------------------------- the kinds


def _plain(m: _Model, mparams, batch) -> Pass:
    """"none": the losses; the model gradient of ``sum_t w_t L_t + penalty`` by one VJP."""
    (losses, penalty), vjp_fn = jax.vjp(lambda p: m.forward(p, None, batch)[:2], mparams)
    return Pass(losses, penalty, None, lambda weights, _: vjp_fn((weights, jnp.ones(())))[0])


def _representation(m: _Model, mparams, batch) -> Pass:
    """"representation": the Gram matrix of ``dL_t/dz`` (MGDA-UB), from the tap on a Dense
    first task layer where the architecture has one, else from per-task copies of z."""
    T = m.num_tasks
    if (tapped := m.zero_perturbations(batch, SHARED_REP_PRE)) is not None:
        # the Dense first task layer's pre-activations a_t perturbed (MTLModel.shared_representation):
        # one backward at cotangent 1, through the layers above them only, gives delta_t = dL_t/da_t
        (losses, penalty, _), vjp_tap = jax.vjp(lambda p, e: m.forward(p, e, batch), mparams, tapped)
        gram = tap_gram(vjp_tap((jnp.ones(T), jnp.zeros(()), {}))[1], mparams)
        return Pass(losses, penalty, gram, lambda weights, _: vjp_tap((weights, jnp.ones(()), {}))[0])
    plain = _plain(m, mparams, batch)
    # the same forward with T per-task copies of the representation, perturbed
    # (MTLModel.task_copies; XLA shares the layers below them): one backward at
    # cotangent 1 gives every row dL_t/dz, traversing only the layers above z
    _, vjp_rep = jax.vjp(lambda z: m.forward(mparams, z, batch)[0], m.zero_perturbations(batch, SHARED_REP))
    return plain._replace(grads=solvers.gram(flat_rows(vjp_rep(jnp.ones(T))[0])))


def _row_layout(m: _Model, mparams, batch, gram: bool):
    """The perturbations of the rows pass (the heads' input; for "gram" also the ghosted Dense
    blocks' pre-activations), the ghosted layers ``{path: (d, h)}`` and the parameter labels."""
    perts, layers = m.zero_perturbations(batch, HEAD_REP, GHOST_PRE if gram else None), {}
    labels = jax.tree_util.tree_map(lambda s: SHARED if s else SPECIFIC, shared_mask(m.model, mparams))
    if gram and not m.has_penalty(mparams, batch):
        perts, layers, labels = ghost_layers(perts, mparams, labels, m.num_tasks, m.ghost)
    return perts, layers, labels


def _rows(m: _Model, mparams, batch, gram: bool) -> Pass:
    """"jacobian" / "gram": the Jacobian rows of the shared parameters (or their Gram matrix,
    ghosted Dense blocks' part formed without their rows); ``finish`` in :class:`_Rows`."""
    T = m.num_tasks
    perts, layers, labels = _row_layout(m, mparams, batch, gram)
    rest, specific, held = _split(mparams, labels, 3)
    (losses, penalty, inter), vjp_fn = jax.vjp(
        lambda s, o, z: m.forward(_merge((s, o, held), labels), z, batch), rest, specific, perts)
    h = inter[HEAD_INPUT][0]  # the heads' input (MTLModel.head_input)
    inter_ct = lambda ct: {**jax.tree_util.tree_map(jnp.zeros_like, inter), HEAD_INPUT: (ct,)}
    no_h = inter_ct(jnp.zeros_like(h))
    # one backward through the heads: C[t] = dL_t/dh_t (task t reads only its copy)
    C = vjp_fn((jnp.ones(T), jnp.zeros(()), no_h))[2][HEAD_REP]
    per_task = C.shape == h.shape  # h stacked (T, B, ...) or shared (B, ...)
    ct_h = (lambda e: e.reshape((T,) + (1,) * (C.ndim - 1)) * C) if per_task else (
        lambda e: jnp.tensordot(e, C, axes=1))

    # T backward passes below the heads only, vmapped: the Jacobian rows of the shared
    # parameters, and the cotangents at the ghosted layers' pre-activations
    def row(e):
        g = vjp_fn((jnp.zeros(T), jnp.zeros(()), inter_ct(ct_h(e))))
        return g[0], {k: flatten_dict(g[2])[k + (GHOST_PRE,)] for k in layers}

    rows, deltas = task_cotangents(row, T, m.chunk)
    G = flat_rows(rows) if jax.tree_util.tree_leaves(rest) else jnp.zeros((T, 0))
    flat_inter = flatten_dict(inter)
    xs = {k: flat_inter[k + (GHOST_IN,)][0].reshape(-1, layers[k][0]) for k in layers}
    ds = {k: deltas[k].reshape(T, -1, layers[k][1]) for k in layers}
    rows_pass = _Rows(gram, rest, rows, G, vjp_fn, no_h, labels, xs, ds, m.has_penalty(mparams, batch))
    grads = sum((dense_gram(xs[k], ds[k]) for k in layers), solvers.gram(G)) if gram else G
    return Pass(losses, penalty, grads, rows_pass.finish)


class _Rows(NamedTuple):
    """What the rows pass keeps for the model gradient once the weighting has answered."""

    gram: bool
    rest: Any       # the shared parameters with rows (their structure, for unravelling)
    rows: Any       # their per-task gradients, leading task axis
    G: jnp.ndarray  # the same, flattened (T, P)
    vjp_fn: Callable
    no_h: Any       # the intermediates' cotangent that leaves the heads' input alone
    labels: Any
    xs: dict        # ghosted layers' inputs (N, d)
    ds: dict        # and their pre-activation cotangents (T, N, h)
    has_penalty: bool

    def finish(self, weights, direction):
        """The model gradient: the shared parameters get ``direction`` ("jacobian": a (P,)
        vector; "gram": coefficients c of ``G^T c``) or ``sum_t w_t row_t``, the task-specific
        ones that of ``sum_t w_t L_t``; every parameter also the penalty's gradient."""
        T = len(weights)
        coef = direction if self.gram else None   # the shared gradient is G^T coef
        if coef is not None:
            direction = solvers.combine_rows(coef, self.G)
        if direction is not None:
            g_rest = ravel_pytree(self.rest)[1](direction)
        else:
            g_rest = jax.tree_util.tree_map(lambda r: jnp.tensordot(weights, r, axes=1), self.rows)
        g_specific = self.vjp_fn((weights, jnp.zeros(()), self.no_h))[1]  # heads + task columns
        if self.has_penalty:  # the penalty's gradient is not in the task Jacobian
            pen = self.vjp_fn((jnp.zeros(T), jnp.ones(()), self.no_h))[:2]
            g_rest, g_specific = jax.tree_util.tree_map(jnp.add, (g_rest, g_specific), pen)
        coef = weights if coef is None else coef
        g_held = {k + (name,): g for k in self.xs for name, g in dense_grads(self.xs[k], self.ds[k], coef).items()}
        g_held = jax.tree_util.tree_map_with_path(lambda p, _: g_held.get(_keys(p)), self.labels)
        return _merge((g_rest, g_specific, g_held), self.labels)


def _lookahead(m: _Model, mparams, batch) -> Pass:
    """"lookahead": "none"'s pass on the step's batch; ``grads`` a ``Lookahead`` on it and on
    ``batch[META]`` (the step sets its learning rate)."""
    if META not in batch:
        raise ValueError(f"a weighting with needs='lookahead' reads a second batch, batch[{META!r}]; this batch "
                         f"has only {sorted(batch)} (build the order with mtlx.data.pipeline.batch_order(meta=True))")
    main = {k: v for k, v in batch.items() if k != META}
    plain = _plain(m, mparams, main)
    losses_at = lambda p, b: m.forward(p, None, b)[:2]  # noqa: E731
    grad_at = lambda w: plain.finish(w, None)  # noqa: E731
    names = tuple(t.name for t in m.task_list)
    return plain._replace(grads=Lookahead(losses_at, grad_at, mparams, main, batch[META], names))


# the passes that run the model's VJP vmapped over task cotangents: traced inside
# ``mtlx.conv.per_task_backward`` (a convolution then keeps XLA's own gradient, which batches well)
PER_TASK_BACKWARD = ("jacobian", "gram")
ENGINES = {
    "none": _plain,
    "jacobian": functools.partial(_rows, gram=False),
    "gram": functools.partial(_rows, gram=True),
    "representation": _representation,
    "lookahead": _lookahead,
}


def engine(model, task_list, needs: str, jacobian_chunk: int = 0, ghost: bool | None = None) -> Callable:
    """``(model_params, batch, rngs=None, step=None) -> Pass`` for a weighting that needs ``needs``.

    ``jacobian_chunk``: tasks per vmapped backward (0: all at once).
    ``ghost``: for "gram", form shared Dense blocks' Gram and gradients
    without their rows where that is cheaper (None), always (True) or never
    (False).
    ``rngs``, ``step``: the random streams a model with ``rngs_in_train`` draws
    from in training and the step count (None: none, its deterministic form).
    """
    if needs not in ENGINES:
        raise ValueError(f"weighting needs={needs!r} is not valid; choose one of {sorted(ENGINES)}")
    m = _Model(model, tuple(task_list), jacobian_chunk, ghost)

    def run(model_params, batch, rngs=None, step=None) -> Pass:
        with conv_lib.per_task_backward() if needs in PER_TASK_BACKWARD else contextlib.nullcontext():
            return ENGINES[needs](m if rngs is None else dataclasses.replace(m, rngs=rngs, step=step),
                                  model_params, batch)

    return run
