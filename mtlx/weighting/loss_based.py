"""Loss-based weightings: they see only the (T,) loss vector (``needs="none"``).

All of them return ``direction=None``: the step back-propagates
``sum_t weights_t * L_t`` (or ``objective`` for uncertainty weighting) through
every parameter. Losses arrive stop-gradient'ed; weights are constants.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from mtlx.schema import OptionError
from mtlx.weighting.base import EmptyState, Weighting, no_state, state_optimizer


def equal() -> Weighting:
    """Uniform weights: minimise sum_t L_t."""

    def combine(losses, grads, state, key):
        return jnp.ones_like(losses), None, state, {}

    return Weighting("equal", no_state, combine)


def static(weights: Sequence[float]) -> Weighting:
    """Fixed user-given weights w_t: minimise sum_t w_t L_t."""
    w = jnp.asarray(weights, jnp.float32)

    def init(num_tasks):
        if len(weights) != num_tasks:
            raise OptionError("weights", list(weights), f"has {len(weights)} entries but the task set has {num_tasks} "
                              f"tasks", "weighting.options", "weighting 'static'")
        return EmptyState()

    def combine(losses, grads, state, key):
        return w.astype(losses.dtype), None, state, {}

    return Weighting("static", init, combine)


# --------------------------------------------------------------------------
# Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018)
# --------------------------------------------------------------------------


def uncertainty(form: str = "regression", init_log_var: float = 0.0) -> Weighting:
    """Homoscedastic-uncertainty weighting, Kendall, Gal & Cipolla (2018).

    Learned log-variances ``s_t = log sigma_t^2`` (``init_params``), trained
    jointly with the model by the run's optimizer on ``objective``:

    * ``form="regression"`` (default; Eq. 7 of the paper, Gaussian likelihood;
      the form of the Nash-MTL and LibMTL reference code - the authors'
      example notebook uses twice this, with the same optimum)::

          objective = sum_t 0.5 * exp(-s_t) * L_t + 0.5 * s_t
          optimum:   s_t* = log L_t            (effective weight 0.5 / L_t)

    * ``form="classification"`` (the softmax-likelihood term of Eq. 10,
      ``1/sigma^2 L + log sigma``)::

          objective = sum_t exp(-s_t) * L_t + 0.5 * s_t
          optimum:   s_t* = log(2 L_t)         (effective weight 0.5 / L_t)

    For fixed losses the objective is convex in each ``s_t``; the optima
    above follow from ``d/ds = 0``. ``combine`` returns ones (the step
    minimises ``objective`` instead of the weighted sum); the effective loss
    weights ``d objective / d L_t`` are available through
    :func:`mtlx.weighting.base.objective_weights` for logging.
    """
    if form not in ("regression", "classification"):
        raise ValueError(f"uncertainty: form={form!r} is not valid; choose 'regression' or 'classification'")
    c_loss = 0.5 if form == "regression" else 1.0

    def init_params(num_tasks):
        return {"log_var": jnp.full((num_tasks,), init_log_var, jnp.float32)}

    def objective(losses, params):
        s = params["log_var"].astype(losses.dtype)
        return jnp.sum(c_loss * jnp.exp(-s) * losses + 0.5 * s)

    def combine(losses, grads, state, key):
        return jnp.ones_like(losses), None, state, {}

    return Weighting("uncertainty", no_state, combine, "none", init_params, objective)


# --------------------------------------------------------------------------
# Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019)
# --------------------------------------------------------------------------


class DWAState(NamedTuple):
    count: jnp.ndarray    # () int32: steps in the current block
    acc: jnp.ndarray      # (T,) loss sum of the current block
    history: jnp.ndarray  # (2, T): [L(k-2), L(k-1)]
    blocks: jnp.ndarray   # () int32: completed blocks (saturates at 2)


def dwa(temperature: float = 2.0, period: int = 25) -> Weighting:
    """Dynamic Weight Average, Liu, Johns & Davison (2019), the DWA rule of Sec. 3::

        w_t(k) = T * exp(r_t(k-1) / temp) / sum_i exp(r_i(k-1) / temp),
        r_t(k-1) = L_t(k-1) / L_t(k-2)

    The paper's ``k`` is an epoch and ``L_t(k)`` the epoch-average loss. Here
    ``k`` indexes blocks of ``period`` consecutive steps and ``L_t(k)`` is the
    mean step loss over block ``k`` (accumulated in the state): with
    ``period = steps per epoch`` this is exactly the paper's rule; the default
    ``period=25`` matches the averaging window of the Nash-MTL reference code.
    Weights stay constant within a block and are equal (ones) for the first
    two blocks (the paper sets ``r = 1`` for ``k = 1, 2``). ``temp=2`` as in
    the paper. Weights sum to T.
    """
    if period < 1:
        raise ValueError(f"dwa: period must be >= 1, got {period}")

    def init(num_tasks):
        return DWAState(count=jnp.zeros((), jnp.int32), acc=jnp.zeros((num_tasks,), jnp.float32),
                        history=jnp.ones((2, num_tasks), jnp.float32), blocks=jnp.zeros((), jnp.int32))

    def combine(losses, grads, state, key):
        T = losses.shape[0]
        prev2, prev1 = state.history[0], state.history[1]
        r = prev1 / jnp.where(prev2 > 0, prev2, 1.0)
        w = T * jax.nn.softmax(r / temperature)
        w = jnp.where(state.blocks >= 2, w, jnp.ones_like(w))

        acc = state.acc + losses.astype(jnp.float32)
        count = state.count + 1
        done = count >= period
        mean = acc / period
        history = jnp.where(done, jnp.stack([prev1, mean]), state.history)
        new_state = DWAState(count=jnp.where(done, 0, count), acc=jnp.where(done, jnp.zeros_like(acc), acc),
                             history=history, blocks=jnp.minimum(state.blocks + done.astype(jnp.int32), 2))
        return w.astype(losses.dtype), None, new_state, {}

    return Weighting("dwa", init, combine)


# --------------------------------------------------------------------------
# Random loss weighting (Lin et al., TMLR 2022)
# --------------------------------------------------------------------------


def rlw(distribution: str = "normal", scale: bool = False) -> Weighting:
    """Random Loss Weighting, Lin et al. (2022), "Reasonable Effectiveness of
    Random Weighting: A Litmus Test for Multi-Task Learning" (arXiv:2111.10603),
    Sec. 3: each step draws ``lambda ~ p(lambda)`` and uses
    ``w = softmax(lambda)``, with ``p`` the standard normal by default (the
    paper's and LibMTL's default). So weights lie on the simplex (sum 1), as in
    the paper; ``scale=True`` multiplies them by T (sum T, same scale as
    ``equal``). ``distribution="uniform"``: ``lambda ~ U(0, 1)^T``.
    Randomness comes from the step's ``key`` only.
    """
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"rlw: distribution={distribution!r} is not valid; choose 'normal' or 'uniform'")

    def combine(losses, grads, state, key):
        T = losses.shape[0]
        if distribution == "normal":
            lam = jax.random.normal(key, (T,), jnp.float32)
        else:
            lam = jax.random.uniform(key, (T,), jnp.float32)
        w = jax.nn.softmax(lam)
        if scale:
            w = T * w
        return w.astype(losses.dtype), None, state, {}

    return Weighting("rlw", no_state, combine)


# --------------------------------------------------------------------------
# Geometric loss strategy (Chennupati et al., CVPRW 2019)
# --------------------------------------------------------------------------


def gls(eps: float = 1e-12) -> Weighting:
    """Geometric Loss Strategy, Chennupati et al. (2019), "MultiNet++", the GLS objective:
    minimise the geometric mean ``G = (prod_t L_t)^(1/T)``.

    Since ``dG/dL_t = G / (T L_t)``, the weights (from the stop-gradient
    losses)::

        w_t = (prod_i L_i)^(1/T) / (T L_t)

    make ``sum_t w_t L_t`` have exactly the gradient of ``G``. ``G`` is computed
    as ``exp(mean(log L))`` (no overflow of the product); losses are clamped
    at ``eps``.
    """

    def combine(losses, grads, state, key):
        T = losses.shape[0]
        L = jnp.maximum(losses.astype(jnp.float32), eps)
        geo = jnp.exp(jnp.mean(jnp.log(L)))
        w = geo / (T * L)
        return w.astype(losses.dtype), None, state, {"geometric_mean": geo}

    return Weighting("gls", no_state, combine)


# --------------------------------------------------------------------------
# FAMO (Liu, Liu, Jin, Stone & Liu, NeurIPS 2023)
# --------------------------------------------------------------------------


class FAMOState(NamedTuple):
    logits: jnp.ndarray       # (T,) xi
    opt_state: Any            # the logits' optimizer state
    prev_losses: jnp.ndarray  # (T,) the previous call's shifted losses
    has_prev: jnp.ndarray     # () bool: whether there was a previous call


def _famo_logit_update(tx, state: FAMOState, D):
    """Alg. 1, lines 6-7: the logits after the previous step, given this step's shifted
    losses ``D`` (unchanged on the first call); returns (logits, optimizer state)."""
    xi = state.logits
    z = jax.nn.softmax(xi)
    dlog = jnp.log(state.prev_losses) - jnp.log(D)
    delta = z * dlog - z * jnp.dot(z, dlog)   # J_softmax^T dlog, J = diag(z) - z z^T
    updates, opt_state = tx.update(delta, state.opt_state, xi)
    xi_new = optax.apply_updates(xi, updates)
    has_prev = state.has_prev
    xi = jnp.where(has_prev, xi_new, xi)
    opt_state = jax.tree.map(lambda a, b: jnp.where(has_prev, a, b), opt_state, state.opt_state)
    return xi, opt_state


def famo(lr: float = 0.025, decay: float = 0.01, optimizer: str = "adam",
         min_losses: Optional[Sequence[float]] = None, eps: float = 1e-8) -> Weighting:
    """Fast Adaptive Multitask Optimization, Liu et al. (2023), Algorithm 1.

    Logits ``xi`` (state, init 0), ``z = softmax(xi)``. Step t uses loss weights
    (the gradient of ``sum_i z_i log(L_i - L_i^min) / c``, Alg. 1's
    ``c_t = (sum_i z_i / L_i)^-1``)::

        w_i = c_t z_i / (L_i - L_i^min + eps)      (on the simplex: sum w = 1)

    and then updates the logits with the log-loss decrease it caused::

        delta = J_softmax(xi_t)^T [log L_i(t) - log L_i(t+1)]_i
        xi_{t+1} = xi_t - beta (delta + gamma xi_t)

    ``lr`` = beta = 0.025 and ``decay`` = gamma = 0.01 are the defaults of the
    official code (the paper tunes gamma per data set, e.g. 1e-3 on QM9).

    ``optimizer="adam"`` (default) feeds ``delta + gamma xi`` to Adam with
    learning rate beta, exactly what the official implementation does
    (``torch.optim.Adam(lr=w_lr, weight_decay=gamma)``) and what produced the
    paper's results; ``optimizer="sgd"`` is the literal plain-gradient step
    written in Algorithm 1.

    Deviation forced by the interface: ``combine`` only sees the current
    step's losses, so ``L(t+1)`` is the next call's losses (a new batch) rather
    than a re-evaluation of the same batch after the update as in the
    official code. The state keeps the previous losses and the logit update
    for step t happens at the start of call t+1, before computing that step's
    weights. The first call uses ``xi = 0`` (uniform ``z``). The official code
    also clips the shared-parameter gradient norm at 1.0; that belongs to the
    run's optimizer (e.g. ``optax.clip_by_global_norm``), not to this function.
    """
    tx = state_optimizer("famo", optimizer, lr, decay)

    def init(num_tasks):
        xi = jnp.zeros((num_tasks,), jnp.float32)
        return FAMOState(logits=xi, opt_state=tx.init(xi), prev_losses=jnp.ones((num_tasks,), jnp.float32),
                         has_prev=jnp.zeros((), bool))

    def _shift(losses):
        L = losses.astype(jnp.float32)
        if min_losses is not None:
            L = L - jnp.asarray(min_losses, jnp.float32)
        return L + eps

    def combine(losses, grads, state, key):
        D = _shift(losses)
        xi, opt_state = _famo_logit_update(tx, state, D)
        # --- this step's weights (Alg. 1, lines 4-5)
        z = jax.nn.softmax(xi)
        zl = z / D
        w = zl / jnp.sum(zl)
        new_state = FAMOState(logits=xi, opt_state=opt_state, prev_losses=D, has_prev=jnp.ones((), bool))
        return w.astype(losses.dtype), None, new_state, {"z": z}

    return Weighting("famo", init, combine)
