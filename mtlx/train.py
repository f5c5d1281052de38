"""TrainState, the ONE jitted train step, the eval step and the training loop.

``make_train_step`` returns a pure ``train_step(state, batch) -> (state,
metrics)`` for every architecture and weighting: one forward pass, masked
per-task losses, the architecture's penalty terms, the weighting's combine,
one optax update. How the per-task gradients a weighting needs are obtained
(none, Jacobian rows, their Gram matrix, the shared representation's Gram
matrix) is ``mtlx.grads``' business: the step asks ``grads.engine`` for one
pass and hands the weighting's answer back to it. The step is vmappable over
a leading seed axis of ``state`` (and of ``batch``). With a ``schedules.Schedule``
(the run's optional ``training`` section: alternating training) the step draws
one task and applies a masked update; per-task learning rates are part of the
optimizer (``optimizer_of``).

The loop (``train_and_evaluate``) does its periodic work - log, evaluate,
checkpoint - through CLU-style periodic actions (:class:`Every`) and reads and
writes the run directory only through ``mtlx.results``; at the steps
``training.relatedness_every`` selects, the train record also holds the tasks'
gradient relatedness (:class:`_Probe`, ``mtlx.relatedness``).

``make_optimizer``, ``make_schedule``, ``OPTIMIZERS`` and ``SCHEDULES`` moved
to ``mtlx.optim``; they are re-exported here for this release.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtlx import grads, parallel, relatedness, results, schedules, taps, writers
from mtlx import losses as losses_lib
from mtlx.architectures import ARCHITECTURES, build_model, check_heads, param_count
from mtlx.data import get_task_set, pipeline
from mtlx.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule  # noqa: F401  (re-exported)
from mtlx.optim import scale_task_axis
from mtlx.weighting import get_weighting, on_jacobian
from mtlx.weighting import param_state
from mtlx.weighting.base import Weighting


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray
    params: Any  # {"model": model params, "weighting": trainable weighting params}
    opt_state: Any
    wstate: Any  # the weighting's state
    key: jnp.ndarray
    nonfinite_step: jnp.ndarray  # first step whose loss was NaN/inf, -1 if none
    nonfinite_task: jnp.ndarray  # that step's first non-finite task index; T when only the penalty was


# --------------------------------------------------------------------------- the step

SCHEDULE_STREAM = 0x5C4ED  # folded into the weighting's key: alternating training's task draw
MODEL_STREAM = 0x30DE1  # folded into the weighting's key: the model's own draws (``rngs_in_train``)


def _weigh(weighting: Weighting, losses, wanted, state: TrainState, key):
    """The weighting's answer ``(weights, direction, wstate, info, weighting-param grads)``:
    its ``combine`` on what it needs, or, for one with trainable parameters, the gradient of
    its ``objective`` (the weights are then d objective / d L_t)."""
    losses = jax.lax.stop_gradient(losses)
    wgrads = state.params["weighting"]
    if weighting.objective is not None:
        (_, (weights, wgrads)) = jax.value_and_grad(weighting.objective, argnums=(0, 1))(losses, wgrads)
        direction, wstate, info = None, state.wstate, {}
    else:
        weights, direction, wstate, info = weighting.combine(losses, wanted, state.wstate, key)
    return jax.lax.stop_gradient(weights).astype(jnp.float32), direction, wstate, info, wgrads


def _model_randomness(model, step, key) -> dict:
    """The engine's ``rngs`` and ``step`` for a model that draws random numbers in training (its
    class attribute ``rngs_in_train``, e.g. LTB's Gumbel noise): one key per stream, derived from
    the step's key; {} for every other model (its program unchanged)."""
    names = tuple(getattr(type(model), "rngs_in_train", ()))
    if not names:
        return {}
    base = jax.random.fold_in(key, MODEL_STREAM)
    return {"rngs": {n: jax.random.fold_in(base, i) for i, n in enumerate(names)}, "step": step}


def _learning_rate_at(learning_rate, step):
    """The run's learning rate at ``step`` (a schedule or a number; None: not given)."""
    return learning_rate(step) if callable(learning_rate) else learning_rate


def _alternate(schedule, weights, direction, step, key):
    """Alternating training: the step's task drawn (``schedules.Schedule``) as a (T,) one-hot mask,
    and the weights masked by it (only the sampled task's loss back-propagated)."""
    if direction is not None:
        raise ValueError("training.schedule='alternating' needs a weighting that weighs the losses; this one "
                         "returns its own shared-gradient direction (use e.g. weighting 'equal')")
    mask = schedule.mask(step, jax.random.fold_in(key, SCHEDULE_STREAM))
    return mask, weights * mask


def _update(tx, g, state: TrainState, mask, is_task_leaf):
    """One optax update; with a task ``mask``, a masked one: the task-stacked parameters' slices of
    the tasks not drawn keep their values and optimizer moments bit for bit (``schedules``)."""
    updates, opt_state = tx.update(g, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if mask is None:
        return params, opt_state
    paths = schedules.task_leaf_paths(state.params, is_task_leaf)
    bad = {p: s for p, s in paths.items() if not s or s[0] != mask.shape[0]}
    if bad:
        raise ValueError(f"alternating training needs task-specific parameters stacked on a leading task axis "
                         f"of {mask.shape[0]}; these are not: {bad}")
    return schedules.keep_untouched(mask, paths, (params, opt_state), (state.params, state.opt_state))


def task_leaf(model) -> Callable:
    """``is_task_leaf(path)`` for a TrainState parameter path: a task-specific parameter of the model
    (top-level name with one of ``task_specific_prefixes``; ``mtlx.architectures.shared_mask``)."""
    prefixes = tuple(type(model).task_specific_prefixes)
    return lambda path: len(path) > 1 and path[0] == "model" and str(path[1]).startswith(prefixes)


def make_train_step(model, task_list, weighting: Weighting, tx: optax.GradientTransformation,
                    jacobian_chunk: int = 0, ghost: bool | None = None,
                    schedule: schedules.Schedule | None = None, learning_rate=None) -> Callable:
    """The pure train step ``(state, batch) -> (state, metrics)``; jit it once.

    ``jacobian_chunk``: tasks per vmapped backward (0: all at once).
    ``ghost``: for "gram" weightings, form shared Dense blocks' Gram and
    gradients without their rows where that is cheaper (None), always (True)
    or never (False). See ``mtlx.grads``.
    ``schedule``: alternating training (``mtlx.schedules``); None: joint.
    ``learning_rate``: the run's learning rate, a number or a schedule of the
    step (:func:`step_learning_rate`); a "lookahead" weighting's virtual step
    reads it (``weighting.base.Lookahead.lr``). Its batch carries ``batch["meta"]``
    (:func:`batch_order_of`).
    """
    per_task = grads.engine(model, task_list, weighting.needs, jacobian_chunk, ghost)
    is_task_leaf = task_leaf(model)

    def train_step(state: TrainState, batch):
        key, wkey = jax.random.split(state.key)
        losses, penalty, wanted, finish = per_task(state.params["model"], batch,
                                                   **_model_randomness(model, state.step, wkey))
        if weighting.needs == "lookahead":
            wanted = wanted._replace(lr=_learning_rate_at(learning_rate, state.step))
        weights, direction, wstate, info, wgrads = _weigh(weighting, losses, wanted, state, wkey)
        mask = None
        if schedule is not None:
            mask, weights = _alternate(schedule, weights, direction, state.step, wkey)
        g = {"model": finish(weights, direction), "weighting": wgrads}
        params, opt_state = _update(tx, g, state, mask, is_task_leaf)
        total = jnp.sum(weights * losses) + penalty
        finite = jnp.isfinite(losses)
        first_bad = (state.nonfinite_step < 0) & ~jnp.all(finite & jnp.isfinite(total))
        new_state = state.replace(
            step=state.step + 1, params=params, opt_state=opt_state, wstate=wstate, key=key,
            nonfinite_step=jnp.where(first_bad, state.step, state.nonfinite_step),
            # the first non-finite task, or T when every loss is finite and the penalty is not
            nonfinite_task=jnp.where(first_bad, jnp.where(jnp.all(finite), len(finite), jnp.argmin(finite)),
                                     state.nonfinite_task))
        metrics = {"losses": losses, "weights": weights, "penalty": penalty, "total": total, "info": info}
        return new_state, metrics

    return train_step


def step_learning_rate(optimizer: Mapping, steps: int) -> Callable:
    """The run's learning rate as a function of the step: its ``optimizer`` section's schedule
    (``mtlx.optim.make_schedule``; values may be traced, as in ``optimizer_of``)."""
    opt = dict(optimizer)
    return make_schedule(opt["learning_rate"], opt["schedule"], steps, opt["warmup_steps"])


def batch_order_of(run: "Run", train):
    """The run's batch order over its ``train`` split (``mtlx.data.pipeline``): with a meta batch
    at every step when the weighting reads one (``needs="lookahead"``)."""
    return pipeline.batch_order(pipeline.split_size(train), run.cfg.batch_size, run.cfg.seed,
                                meta=run.weighting.needs == "lookahead")


def init_state(model, weighting: Weighting, tx, num_tasks: int, sample_inputs, seed) -> TrainState:
    """Parameters, optimizer and weighting state from an explicit seed (int or key)."""
    key = jax.random.PRNGKey(seed) if np.ndim(seed) == 0 and not isinstance(seed, jax.Array) else seed
    k_init, k_run = jax.random.split(key)
    mparams = model.init(k_init, sample_inputs)["params"]
    wparams = weighting.init_params(num_tasks) if weighting.init_params is not None else {}
    params = {"model": mparams, "weighting": wparams}
    per_param = param_state.takes_num_params(weighting)  # MoCo, DB-MTL, ExcessMTL: a state per shared parameter
    wstate = param_state.init_state(weighting, num_tasks, num_shared(model, mparams) if per_param else 0)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      wstate=wstate, key=k_run,
                      nonfinite_step=-jnp.ones((), jnp.int32), nonfinite_task=-jnp.ones((), jnp.int32))


def num_shared(model, mparams) -> int:
    """The number of shared parameters: the width P of the (T, P) Jacobian the step forms."""
    from mtlx.architectures import shared_mask

    mask = shared_mask(model, mparams)
    return int(sum(np.size(p) for p, m in zip(jax.tree_util.tree_leaves(mparams), jax.tree_util.tree_leaves(mask)) if m))


def check_weighting_fits(model, weighting: Weighting, arch_name: str = "") -> None:
    """A weighting that differentiates the representation shared below the heads needs a model that
    shares one (``MTLModel.shares_representation``: e.g. hard with split >= 1)."""
    if weighting.needs == "representation" and not model.shares_representation():
        fits = [n for n, cls in ARCHITECTURES.items() if getattr(cls, "has_shared_representation", False)]
        raise ValueError(f"weighting.name={weighting.name!r} differentiates the representation shared below the "
                         f"heads, which architecture {arch_name or type(model).__name__!r} lacks (it shares no "
                         f"block); use it with one of {fits} sharing at least one block")


def make_eval_step(model) -> Callable:
    """Pure ``eval_step(model_params, inputs) -> preds``."""
    return lambda mparams, inputs: model.apply({"params": mparams}, inputs)[0]


def evaluate(eval_step, mparams, split, task_list, batch_size: int = 1024, joint_metrics=None) -> dict:
    """Per-task metrics over a whole split (host-side metric computation), plus the task set's
    ``joint_metrics`` (computed from every task's predictions at once) under ``mtlx.tasks.JOINT``
    (``losses.split_metrics``)."""
    n = len(split["inputs"]) if isinstance(split, Mapping) else len(split)
    preds = {t.name: [] for t in task_list}
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        batch = pipeline.gather(split, idx)
        out = eval_step(mparams, batch["inputs"])
        for t in task_list:
            preds[t.name].append(parallel.to_host(out[t.name]))
    whole = split if isinstance(split, Mapping) else pipeline.gather(split, np.arange(n))
    return losses_lib.split_metrics(task_list, {k: np.concatenate(v) for k, v in preds.items()}, whole, joint_metrics)


# --------------------------------------------------------------------------- one run


PENALTY = "penalty"  # NonFiniteLoss.task when the architecture's penalty, not a task loss, went NaN/inf


class NonFiniteLoss(RuntimeError):
    """``step``: the 1-based number of the update whose loss was NaN/inf (the curves' numbering);
    ``task``: the first task whose loss was, or PENALTY when only the penalty term was."""

    def __init__(self, step: int, task: str):
        super().__init__(f"loss of task {task!r} became NaN/inf at step {step}")
        self.step, self.task = step, task


class Interrupted(Exception):
    """Training stopped on request (SIGINT/SIGTERM) after ``step`` updates, checkpointed there."""

    def __init__(self, step: int | None, run_id: str | None = None, signum: int | None = None):
        super().__init__(step, run_id, signum)
        self.step, self.run_id, self.signum = step, run_id, signum


@dataclasses.dataclass
class Run:
    """Everything a run builds from its (already validated) config; built before any compilation."""

    cfg: Any
    task_set: Any
    model: Any
    weighting: Weighting
    tx: optax.GradientTransformation
    training: dict = dataclasses.field(default_factory=lambda: dict(schedules.DEFAULTS))  # mtlx.schedules
    schedule: schedules.Schedule | None = None  # alternating training; None: joint


def build_run(cfg, task_set=None) -> Run:
    """Task set, model, weighting and optimizer from a run config whose schema was checked
    (``mtlx.grid``); the errors raised while building them are the pre-compile validation."""
    if task_set is None:
        task_set = get_task_set(cfg.task_set.name, **dict(cfg.task_set.options))
    model = build_model(cfg.architecture.name, task_set, list(cfg.backbone.blocks), tuple(cfg.backbone.head_hidden),
                        **dict(cfg.architecture.options))
    check_heads(model, task_set)
    weighting = get_weighting(cfg.weighting.name, **dict(cfg.weighting.options))
    check_weighting_fits(model, weighting, cfg.architecture.name)
    param_state.init_state(weighting, task_set.num_tasks, 0)  # validates weighting options against T
    if weighting.needs == "lookahead":  # its options may name tasks (Auto-Lambda's primary): traced once on a toy
        jax.eval_shape(on_jacobian(weighting, task_set.task_names), jnp.ones(task_set.num_tasks),
                       jnp.eye(task_set.num_tasks), weighting.init(task_set.num_tasks), jax.random.PRNGKey(0))
    training = schedules.check_training(schedules.training_of(cfg), task_set.task_names, cfg.log_every)
    tx = optimizer_of(cfg.optimizer, cfg.steps, training, task_set.task_names, model)
    return Run(cfg, task_set, model, weighting, tx, training, schedules.schedule_of(training, task_set, cfg.steps))


def optimizer_of(optimizer: Mapping, steps: int, training: Mapping | None = None, task_names=(),
                 model=None) -> optax.GradientTransformation:
    """The run's optax optimizer from its ``optimizer`` config section (values may be traced:
    ``mtlx.parallel`` passes a population's learning rates as arrays); with the ``training``
    section's per-task learning rates, each task's own parameters scaled to theirs (``task_names``
    and ``model`` then needed)."""
    opt = dict(optimizer)
    tx = make_optimizer(steps=steps, model=model, **opt)
    ratios = schedules.task_lr_ratios(training, task_names, opt["learning_rate"]) if training else None
    return tx if ratios is None else optax.chain(tx, scale_task_axis(ratios, task_leaf(model)))


def main_score(metrics: Mapping, task_list) -> float:
    """Mean over the main tasks (auxiliary ones are not selected for) of the main metric, signed so that
    higher is better (model selection)."""
    task_list = [t for t in task_list if t.is_main]
    vals = [metrics[t.name][t.main_metric] for t in task_list]  # NaN is stored as null in metrics.jsonl
    vals = [(1 if t.higher_is_better() else -1) * (np.nan if v is None else v) for t, v in zip(task_list, vals)]
    return float(np.nanmean(vals))


# --------------------------------------------------------------------------- the loop


@dataclasses.dataclass(frozen=True)
class Every:
    """A periodic action in the style of ``clu.periodic_actions`` (whose import needs
    TensorFlow): ``fn(step)`` after every ``every``-th step and after the ``last`` one."""

    every: int
    last: int
    fn: Callable[[int], Any]

    def __call__(self, step: int) -> None:
        if step % self.every == 0 or step == self.last:
            self.fn(step)


class _Loop:
    """The mutable side of one run's loop: the state, the curves, model selection, the clocks.
    ``step`` arguments count finished steps."""

    def __init__(self, run: Run, state: TrainState, workdir, mgr, progress, start: int, writer_names):
        ts = run.task_set
        self.cfg, self.tasks, self.names = run.cfg, ts.tasks, ts.task_names
        self.joint = dict(ts.joint_metrics)
        self.state, self.mgr, self.progress = state, mgr, progress
        config = run.cfg.to_dict() if hasattr(run.cfg, "to_dict") else dict(run.cfg)
        self.metrics, self.probe = None, None  # probe: a _Probe (train_and_evaluate sets it)
        write = workdir and parallel.is_main()  # several processes: process 0 writes
        self.writer = writers.open_writers(writer_names, workdir, start, config=config) if write else None
        self.splits = {s: ts.splits[s] for s in ("validation", "test") if s in ts.splits}
        self.eval_step = jax.jit(make_eval_step(run.model))
        self.best, self.best_test, self.last_eval = -np.inf, None, None
        self.t_first, self.s_first, self.t_other = None, None, 0.0  # end of the first (compiling) interval
        if workdir:  # a resumed run: model selection continues from the evaluations already written
            for rec in results.read_metrics(workdir, "eval"):
                self.select({k: rec[k] for k in ("validation", "test") if k in rec})
            if start < self.cfg.steps:
                self.last_eval = None

    def actions(self) -> list[Every]:
        last, cfg = self.cfg.steps, self.cfg
        acts = [Every(cfg.log_every, last, self.log), Every(cfg.eval_every, last, self._timed(self.evaluate))]
        return acts + ([Every(cfg.checkpoint_every, last, self._timed(self.checkpoint))] if self.mgr else [])

    def _timed(self, fn):
        """``fn`` whose time after the first log is kept off the steps/s clock."""
        def call(step):
            t = time.time()
            fn(step)
            self.t_other += time.time() - t if self.t_first is not None else 0.0
        return call

    def check_finite(self):
        """Raise NonFiniteLoss at the 1-based step of the first NaN/inf update (the state holds
        the number of updates done before it)."""
        bad, t = (int(x) for x in parallel.to_host((self.state.nonfinite_step, self.state.nonfinite_task)))
        if bad >= 0:
            raise NonFiniteLoss(bad + 1, self.tasks[t].name if t < len(self.tasks) else PENALTY)

    def log(self, step):
        """One train record (written even when its loss is NaN/inf, then the run fails), with the
        tasks' relatedness at the steps ``training.relatedness_every`` selects."""
        extra = self.probe(step, self.state.params["model"]) if self.probe is not None else None
        losses = self.record_train(step, self.metrics, extra)
        self.check_finite()
        if self.progress:
            self.progress(step, losses)

    def record_train(self, step, metrics, extra: Mapping | None = None) -> dict:
        """Write the train record of ``metrics`` (host sync), with ``extra``'s entries; its losses by task."""
        if self.t_first is None:
            self.t_first, self.s_first = time.time(), step
        metrics = parallel.to_host({k: metrics[k] for k in ("losses", "weights", "penalty")})
        rec = {"step": step, "kind": "train", "losses": dict(zip(self.names, metrics["losses"].tolist())),
               "weights": dict(zip(self.names, metrics["weights"].tolist())), "penalty": float(metrics["penalty"]),
               **(extra or {})}
        if self.writer:
            self.writer.write_record(rec)
        return rec["losses"]

    def select(self, evaluation):
        """Model selection: keep the test metrics at the best validation score so far."""
        self.last_eval = evaluation
        score = main_score(evaluation.get("validation", evaluation.get("test")), self.tasks)
        if score > self.best:
            self.best, self.best_test = score, evaluation.get("test")

    def evaluate(self, step):
        self.record_eval(step, {s: evaluate(self.eval_step, self.state.params["model"], split, self.tasks,
                                            self.cfg.eval_batch_size, self.joint) for s, split in self.splits.items()})

    def record_eval(self, step, out: dict):
        """Write one evaluation ({split: {task: metrics}}) and select on it."""
        if self.writer:
            self.writer.write_record({"step": step, "kind": "eval", **out})
        self.select(out)

    def checkpoint(self, step):
        from mtlx import checkpoint

        self.check_finite()  # never checkpoint a state whose loss already went NaN/inf
        if checkpoint.latest_step(self.mgr) != step:
            checkpoint.save(self.mgr, step, self.state)

    def stop(self, step):
        """Stop on request after ``step`` updates: checkpoint there, raise Interrupted."""
        if self.mgr:
            self.checkpoint(step)
        raise Interrupted(step)

    def summary(self, t0, n_params, on_device) -> dict:
        if self.last_eval is None:  # resumed after the last step with no evaluation on record
            self.evaluate(int(parallel.to_host(self.state.step)))
            self.best_test = self.last_eval.get("test")
        wall, ev = time.time() - t0, self.last_eval
        timed = (time.time() - self.t_first - self.t_other) if self.t_first is not None else 0.0
        n_timed = (self.cfg.steps - self.s_first) if self.t_first is not None else 0
        return {
            "status": results.DONE, "steps": int(parallel.to_host(self.state.step)), "param_count": n_params, "wall_time_s": wall,
            "steps_per_s": n_timed / timed if n_timed > 0 and timed > 0 else float("nan"),
            "metrics": ev.get("test", ev.get("validation")), "validation_metrics": ev.get("validation"),
            "test_at_best_validation": self.best_test, "on_device_data": on_device,
            "mixing": {k: parallel.to_host(v).tolist() for k, v in self.state.params["model"].items() if taps.is_mixing(k)},
            **({results.JOINT_METRICS: {k: hib for k, (_, hib) in self.joint.items()}} if self.joint else {}),
        }


@dataclasses.dataclass
class _Probe:
    """The relatedness measurement at log steps (``mtlx.relatedness``): every ``every`` steps and at
    the last, on the batch the step after it would draw."""

    fn: Callable   # jitted probe(model params, batch) -> stats
    batch_of: Callable  # step -> batch
    every: int
    last: int
    names: tuple
    lr: float  # TAG's lookahead step size (affinity_lr, else the run's learning rate)

    @classmethod
    def of(cls, run: Run, train, order):
        t = run.training
        if not t["relatedness_every"]:
            return None
        lr = t["affinity_lr"] or float(run.cfg.optimizer.learning_rate)
        fn = relatedness.make_probe(run.model, run.task_set.tasks, t["affinity"], lr, run.cfg.jacobian_chunk)
        return cls(jax.jit(fn), lambda s: pipeline.gather(train, order(s)), t["relatedness_every"],
                   run.cfg.steps, run.task_set.task_names, lr)

    def __call__(self, step: int, mparams) -> dict | None:
        if step % self.every and step != self.last:
            return None
        stats = parallel.to_host(self.fn(mparams, self.batch_of(step)))
        return {relatedness.RECORD_KEY: relatedness.record(stats, self.names)}


def _resume(workdir, state):
    """The checkpoint manager (None without ``workdir``), the state and its step: the last
    checkpoint's when there is one; curve lines written after it are dropped."""
    if not workdir:
        return None, state, 0
    from mtlx import checkpoint

    mgr, start = checkpoint.manager(results.checkpoint_dir(workdir)), 0
    if checkpoint.latest_step(mgr) is not None:
        state = checkpoint.restore(mgr, state)
        start = int(state.step)
    if parallel.is_main():
        results.truncate_metrics(workdir, start)
    return mgr, state, start


def _jitted_chunk(run: Run, train, order, start: int, mesh):
    """The jitted chunk of K steps (``mtlx.parallel.dispatch``) and its arguments for K steps from
    step s: indices into the split kept on the device(s) when it fits (``on_device_max_bytes``),
    else stacked host batches from a prefetching thread. On a mesh the batch is split along
    ``data`` inside the program."""
    cfg = run.cfg
    step_fn = make_train_step(run.model, run.task_set.tasks, run.weighting, run.tx, cfg.jacobian_chunk,
                              schedule=run.schedule, learning_rate=step_learning_rate(cfg.optimizer, cfg.steps))
    if 0 <= pipeline.split_nbytes(train) <= cfg.on_device_max_bytes:
        data = parallel.put(dict(train), mesh)
        chunk = parallel.scanned(step_fn, lambda d, idx: parallel.constrain_batch(pipeline.gather(d, idx), mesh))
        steps = lambda s, k: (data, np.stack([order(s + j) for j in range(k)]))
        return jax.jit(chunk, donate_argnums=0), steps, True
    prefetch = pipeline.Prefetcher(train, order, start, cfg.steps)
    chunk = parallel.scanned(step_fn, lambda _, b: parallel.constrain_batch(b, mesh))
    steps = lambda s, k: (None, jax.tree_util.tree_map(lambda *b: jnp.stack(b), *[prefetch.next() for _ in range(k)]))
    return jax.jit(chunk, donate_argnums=0), steps, False


def train_and_evaluate(cfg, workdir: str | None = None, task_set=None, progress: Callable | None = None,
                       should_stop: Callable[[], bool] | None = None,
                       writer_names=writers.DEFAULT, execution: Mapping | None = None) -> dict:
    """Train one run, evaluating periodically; returns the summary.

    With ``workdir`` (the run directory): appends curves to its metrics file
    (and to the other ``writer_names``, see ``mtlx.writers``), checkpoints the
    TrainState with orbax every ``checkpoint_every`` steps and resumes from the
    last checkpoint (dropping curve lines written after it).
    ``progress(step, losses)`` is called at every log step. Raises
    NonFiniteLoss naming the step and task when a loss turns NaN/inf.
    ``should_stop()`` is asked after every dispatch but the last: when it says
    so, the state is checkpointed and Interrupted(step) raised.
    ``execution``: how to run, not what (``mtlx.parallel.Execution``: steps per
    dispatch, data-parallel devices); the numbers do not depend on it beyond
    float tolerance (K steps per dispatch: bit for bit).
    """
    ex = parallel.Execution.of(execution)
    run = build_run(cfg, task_set)
    ts = run.task_set
    train = ts.split("train")
    order = batch_order_of(run, train)
    sample = pipeline.gather(train, order(0))["inputs"]
    mesh = parallel.make_mesh(ex.data_devices)
    parallel.check_divisible(mesh, cfg.batch_size)
    state = init_state(run.model, run.weighting, run.tx, ts.num_tasks, sample, cfg.seed)
    n_params = param_count(state.params["model"])
    mgr, state, start = _resume(workdir, state)
    loop = _Loop(run, parallel.put(state, mesh), workdir, mgr, progress, start, writer_names)
    loop.probe = _Probe.of(run, train, order)
    try:
        chunk, next_args, on_device = _jitted_chunk(run, train, order, start, mesh)
        actions, t0 = loop.actions(), time.time()
        for s, k in parallel.chunks(start, cfg.steps, parallel.dispatch_size(cfg, ex.steps_per_dispatch)):
            loop.state, loop.metrics = chunk(loop.state, *next_args(s, k))
            for action in actions:
                action(s + k)
            if should_stop is not None and s + k < cfg.steps and should_stop():
                loop.stop(s + k)
        return {**loop.summary(t0, n_params, on_device), "execution": ex.record(mesh)}
    finally:
        if loop.writer:
            loop.writer.close()
