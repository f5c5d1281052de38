"""Growing a fully-adaptive feature-sharing tree (Lu, Kumar, Zhai, Cheng, Javidi & Feris 2017, CVPR).

Lu et al. start from a thin network (every layer shared, one branch per task only at the output) and
widen it greedily, top-down, one layer per round (their Sec. 3.3-3.4 and Fig. 2): at the junction
where the current branches meet, the branches are clustered into d groups, the layer below the
junction is copied d times (each copy initialised FROM the parent layer's weights, so the widened
network computes what the thin one did), each group hangs off its copy, and the junction moves one
layer down. Training continues; the procedure stops at the bottom layer, when a round keeps every
branch together, or after a round limit.

The grouping criterion, as we read the paper:

* difficulty: example n is *difficult* for task i when its error margin m_n^i (here: its loss, e.g.
  the cross-entropy, ``mtlx.losses.per_example_loss``) is at least the task's mean margin over the
  examples, e_n^i = 1[m_n^i >= E_n m^i]; easy otherwise;
* task affinity: A(i, j) = P(e^i = 1, e^j = 1) + P(e^i = 0, e^j = 0), the probability that an
  example is simultaneously difficult or simultaneously easy for both tasks, estimated on training
  examples (those labelled for both tasks);
* branch affinity (a branch holds a set of tasks): Ã(k, l) = mean_{i in k} min_{j in l} A(i, j)
  (the worst-matched task), symmetrised A_b(k, l) = (Ã(k, l) + Ã(l, k)) / 2;
* the loss of a grouping g of the n branches into d groups:
  L(g) = (d - 1) * branch_cost * 2^p + L_s(g), L_s(g) = (1/d) sum_k (1 - mean_{a in G_k} min_{b in G_k}
  A_b(a, b)): separation (how unrelated the branches that stay together are) against complexity
  (each extra branch costs ``branch_cost``; Lu et al. double the cost per pooling layer p above the
  split layer, since a lower copy is wider). The best grouping with at most ``max_groups`` groups is
  found exactly, by enumerating every set partition (n <= ``EXACT_UP_TO`` branches), else greedily
  (merging the pair that lowers L most, from singletons).

Design: the tree is a static option of the ``fafs`` architecture (``mtlx.architectures.fafs``), so
each phase has ONE jitted train step (``mtlx.train.make_train_step``). Between phases this driver
measures the affinity with the trained parameters, decides the split (``decide``, pure),
widens the whole TrainState (``widen_state``: params AND optimizer moments copied from the parent
branch into its children, the step count and keys kept, so the optimizer continues as if the
children had always been there), rebuilds the run for the wider tree and trains on. It uses only
public pieces (``build_run``, ``init_state``, ``make_train_step``, ``make_eval_step``,
``evaluate``, ``main_score``) and edits neither ``mtlx.train`` nor ``mtlx.runner``. The whole
procedure takes ``steps`` updates in all (phases of ``phase_steps``, the rest on the final tree), so
a grown run is comparable with the grid's other runs. The branching decisions (the affinity, the
candidate losses, the chosen groups) are records of kind ``branching`` in ``metrics.jsonl`` and
the ``fafs`` entry of the summary.

Launch: ``grow_and_evaluate`` has ``mtlx.train.train_and_evaluate``'s signature; the runner trains
each run with the procedure its config asks for (``procedure_of``), so ``python -m launch.run`` grows a
``fafs`` run with ``grow`` set, and always alone (never in a many-run program). The model itself
refuses to be applied with ``grow`` set (a loop that is not this one would train the thin tree only).
A grown run is not checkpointed: a relaunch redoes it.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mtlx import grid, parallel, results, writers
from mtlx import losses as losses_lib
from mtlx.architectures import fafs as arch
from mtlx.architectures import param_count
from mtlx.data import pipeline
from mtlx.layers import Conv
from mtlx.weighting import param_state

GROW_DEFAULTS = {  # the ``grow`` option's keys (checked by ``mtlx.architectures.fafs.check_grow``)
    "phase_steps": None,       # steps between two widening rounds; None: steps // (number of blocks + 1)
    "max_groups": None,        # at most this many groups per round; None: as many as branches
    "branch_cost": 0.1,        # complexity cost of each extra branch (times 2^pooling layers above)
    "rounds": None,            # at most this many rounds; None: one per block
    "affinity_examples": 2048,  # training examples the affinity is measured on
}
EXACT_UP_TO = 9  # branches up to which the grouping enumerates every set partition (Bell(9) = 21147)
RECORD = "branching"  # metrics.jsonl kind of a round's record


# --------------------------------------------------------------------------- affinity (pure, numpy)


def difficult(margins, weights=None) -> np.ndarray:
    """e (N, T) bool: margin at least the task's mean margin over its labelled examples."""
    m = np.asarray(margins, np.float64)
    w = np.ones_like(m) if weights is None else np.asarray(weights, np.float64)
    mean = (m * w).sum(0) / np.maximum(w.sum(0), 1.0)
    return m >= mean


def task_affinity(hard, weights=None) -> np.ndarray:
    """A (T, T): the share of examples labelled for both tasks that are difficult for both or easy for both."""
    e = np.asarray(hard, np.float64)
    w = np.ones_like(e) if weights is None else (np.asarray(weights) > 0).astype(np.float64)
    same = (e * w).T @ (e * w) + ((1 - e) * w).T @ ((1 - e) * w)
    return same / np.maximum(w.T @ w, 1.0)


def branch_affinity(A, members) -> np.ndarray:
    """A_b (n, n) between branches holding the task lists ``members``: the symmetrised mean over one
    branch's tasks of their least affine task in the other."""
    A = np.asarray(A, np.float64)
    half = np.array([[np.mean([min(A[i, j] for j in ml) for i in mk]) for ml in members] for mk in members])
    return (half + half.T) / 2


def grouping_loss(Ab, labels, branch_cost: float, pools_above: int = 0) -> tuple[float, float, float]:
    """(loss, separation, complexity) of grouping the branches by ``labels`` (a group index per branch)."""
    Ab = np.asarray(Ab, np.float64)
    groups = [np.flatnonzero(np.asarray(labels) == g) for g in sorted(set(labels))]
    separation = float(np.mean([1 - np.mean(Ab[np.ix_(g, g)].min(axis=1)) for g in groups]))
    complexity = (len(groups) - 1) * branch_cost * 2 ** pools_above
    return separation + complexity, separation, complexity


def set_partitions(n: int, max_blocks: int | None = None):
    """Every partition of n items into at most ``max_blocks`` groups, as restricted growth strings."""
    cap = n if not max_blocks else min(n, max_blocks)

    def grow(prefix, used):
        if len(prefix) == n:
            yield tuple(prefix)
            return
        for g in range(min(used + 1, cap)):
            yield from grow(prefix + [g], max(used, g + 1))

    yield from grow([], 0)


def best_grouping(Ab, max_groups: int, branch_cost: float, pools_above: int = 0) -> tuple:
    """The labels (canonical) minimising ``grouping_loss`` with at most ``max_groups`` groups: exact up
    to ``EXACT_UP_TO`` branches, greedy agglomeration beyond. Ties: the first found (fewest groups first)."""
    n = len(Ab)
    loss = lambda lab: grouping_loss(Ab, lab, branch_cost, pools_above)[0]
    if n <= EXACT_UP_TO:
        cands = sorted(set_partitions(n, max_groups), key=lambda lab: max(lab))
        return min(cands, key=loss)
    labels = list(range(n))
    while True:
        merges = [tuple(arch.canonical([a if x == b else x for x in labels]))
                  for a in sorted(set(labels)) for b in sorted(set(labels)) if a < b]
        fits = len(set(labels)) <= (max_groups or n)
        best = min(merges, key=loss, default=None)
        if best is None or (fits and loss(best) >= loss(labels)):
            return tuple(arch.canonical(labels))
        labels = list(best)


# --------------------------------------------------------------------------- the tree and its parameters


def elements_at(tree, l: int) -> list:
    """The branches meeting at the junction above block l, as task lists: the tasks (their heads) when
    l is the top block, else block l+1's branches."""
    if l == len(tree) - 1:
        return [[t] for t in range(len(tree[l]))]
    return arch.groups_of(tree)[l + 1]


def split_block(tree, l: int, labels) -> tuple:
    """The tree with block l (one branch) copied into one branch per group: ``labels[k]`` is the group of
    ``elements_at(tree, l)[k]``."""
    if arch.num_branches(tree)[l] != 1:
        raise ValueError(f"block {l} already has {arch.num_branches(tree)[l]} branches; only a shared block splits")
    row = [0] * len(tree[l])
    for k, tasks in enumerate(elements_at(tree, l)):
        for t in tasks:
            row[t] = int(labels[k])
    return tuple(arch.canonical(row) if i == l else r for i, r in enumerate(tree))


def pools_above(blocks, l: int) -> int:
    """Pooling layers above block l (Lu et al.'s p_l: each doubles the cost of a copy of block l)."""
    return sum(1 for b in blocks[l + 1:] if isinstance(b, Conv) and b.pool > 1)


def _source(old_tree, new_tree, l: int) -> np.ndarray:
    """For each branch of block l in ``new_tree``, the branch of ``old_tree`` it is copied from."""
    src = np.zeros(arch.num_branches(new_tree)[l], np.int32)
    for t, c in enumerate(new_tree[l]):
        src[c] = old_tree[l][t]
    if any(len({old_tree[l][t] for t, c in enumerate(new_tree[l]) if c == b}) > 1 for b in range(len(src))):
        raise ValueError(f"block {l}: the new tree merges branches of the old one; widening only splits")
    return src


def widen_params(params: Mapping, old_tree, new_tree) -> dict:
    """Model parameters (or any pytree keyed like them: optimizer moments) of ``old_tree`` as those of
    ``new_tree``, a refinement of it: every child branch a copy of its parent branch. The heads and
    every block whose branching is unchanged are kept as they are."""
    out = dict(params)
    for l in range(len(old_tree)):
        old, new = arch.block_name(old_tree, l), arch.block_name(new_tree, l)
        if old not in params or (old == new and tuple(old_tree[l]) == tuple(new_tree[l])):
            continue
        src, stacked = _source(old_tree, new_tree, l), arch.num_branches(old_tree)[l] > 1
        del out[old]
        out[new] = jax.tree_util.tree_map(lambda w: _copy_branches(w, src, stacked), params[old])
    return out


def _copy_branches(w, src, stacked: bool):
    if not hasattr(w, "shape"):  # a non-array leaf (a mask, an empty optax node): the same for every copy
        return w
    w = jnp.asarray(w)
    return w[src] if stacked else jnp.broadcast_to(w, (len(src),) + w.shape)


def widen_state(state, old_tree, new_tree, weighting=None, model=None, num_tasks: int = 0):
    """The TrainState with ``widen_params`` applied to the model parameters and to every optimizer-state
    entry shaped like the parameters ({'model': ..., 'weighting': ...}); step, keys and the weighting's
    state are kept (re-initialised when it holds one entry per shared parameter, which widening changes)."""
    is_params = lambda x: isinstance(x, Mapping) and set(x) == {"model", "weighting"}
    widen = lambda x: {**x, "model": widen_params(x["model"], old_tree, new_tree)} if is_params(x) else x
    params = widen(state.params)
    opt_state = jax.tree_util.tree_map(widen, state.opt_state, is_leaf=is_params)
    wstate = state.wstate
    if weighting is not None and param_state.takes_num_params(weighting):
        from mtlx.train import num_shared

        wstate = param_state.init_state(weighting, num_tasks, num_shared(model, params["model"]))
    return state.replace(params=params, opt_state=opt_state, wstate=wstate)


# --------------------------------------------------------------------------- one round's decision


def margins_of(model, tasks, mparams, split, examples: int, batch_size: int = 1024):
    """Per-example margins (N, T) (each task's per-example loss; tagging: per labelled token) and the
    label mask (N, T) on the first ``examples`` examples of ``split``."""
    n = min(examples, pipeline.split_size(split))

    @jax.jit
    def margins(mparams, inputs, targets):
        preds = model.apply({"params": mparams}, inputs)[0]
        cols = []
        for t in tasks:
            loss, count = losses_lib.per_example_loss(t, preds[t.name], targets[t.name])
            cols.append(loss / jnp.maximum(count, 1.0))
        return jnp.stack(cols, axis=1)

    ms, ws = [], []
    for start in range(0, n, batch_size):
        batch = pipeline.gather(split, np.arange(start, min(start + batch_size, n)))
        ms.append(np.asarray(margins(mparams, batch["inputs"], batch["targets"])))
        ws.append(np.stack([np.asarray(batch["weights"][t.name], np.float64) for t in tasks], axis=1))
    return np.concatenate(ms), np.concatenate(ws)


def decide(margins, weights, tree, l: int, blocks, max_groups: int, branch_cost: float) -> dict:
    """One round at block l: the task affinity, the branch affinity at the junction above l, the best
    grouping and its loss (with the loss of keeping every branch together and of splitting them all,
    for reference), and the tree that results. Pure."""
    A = task_affinity(difficult(margins, weights), weights)
    members = elements_at(tree, l)
    Ab, p = branch_affinity(A, members), pools_above(blocks, l)
    labels = best_grouping(Ab, max_groups, branch_cost, p)
    loss, sep, cx = grouping_loss(Ab, labels, branch_cost, p)
    groups = [[t for k, m in enumerate(members) if labels[k] == g for t in m] for g in range(max(labels) + 1)]
    return {"block": l, "branches_at_junction": members, "task_affinity": A.tolist(),
            "branch_affinity": Ab.tolist(), "labels": list(labels), "groups": groups,
            "loss": loss, "separation": sep, "complexity": cx, "pools_above": p,
            "loss_all_together": grouping_loss(Ab, [0] * len(members), branch_cost, p)[0],
            "loss_all_apart": grouping_loss(Ab, list(range(len(members))), branch_cost, p)[0],
            "tree": [list(r) for r in (split_block(tree, l, labels) if len(groups) > 1 else tree)]}


# --------------------------------------------------------------------------- the procedure


def grow_settings(options: Mapping, num_blocks: int, steps: int, num_tasks: int) -> dict:
    """``GROW_DEFAULTS`` with the run's ``grow`` option over them, the unset ones resolved."""
    g = {**GROW_DEFAULTS, **{k: v for k, v in dict(options or {}).items() if v is not None}}
    g["phase_steps"] = g["phase_steps"] or max(steps // (num_blocks + 1), 1)
    g["max_groups"] = g["max_groups"] or num_tasks
    g["rounds"] = min(g["rounds"] or num_blocks, num_blocks)
    return g


def procedure_of(run_cfg: Mapping) -> Callable:
    """The training procedure a run config asks for: ``grow_and_evaluate`` for a ``fafs`` run with a
    ``grow`` option, else ``mtlx.train.train_and_evaluate``."""
    from mtlx import train

    a = run_cfg["architecture"]
    grows = a["name"] == "fafs" and dict(a.get("options") or {}).get("grow") is not None
    return grow_and_evaluate if grows else train.train_and_evaluate


def _phase_cfg(cfg, tree):
    """The run config of one phase: the fixed tree, no ``grow``."""
    c = grid.train_config(cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg))
    c.architecture.options = {**{k: v for k, v in dict(c.architecture.options).items() if k != "grow"},
                              "branches": [list(r) for r in tree]}
    return c


class _Phases:
    """The mutable side of a grown run: the run (rebuilt per tree), the state, the curves, selection."""

    def __init__(self, cfg, task_set, writer, progress):
        from mtlx import train

        self.train_lib, self.cfg, self.writer, self.progress = train, cfg, writer, progress
        self.task_set = task_set
        self.split = task_set.split("train")
        self.order = pipeline.BatchOrder(pipeline.split_size(self.split), cfg.batch_size, cfg.seed)
        whole = self.split if isinstance(self.split, Mapping) else pipeline.gather(
            self.split, np.arange(pipeline.split_size(self.split)))
        self.data = jax.device_put(dict(whole))  # the train split on the device; batches gathered in the step
        self.best, self.best_test, self.last_eval, self.t_train = -np.inf, None, None, 0.0

    def build(self, tree):
        self.tree = tuple(tuple(r) for r in tree)
        self.run = self.train_lib.build_run(_phase_cfg(self.cfg, tree), self.task_set)
        step = self.train_lib.make_train_step(self.run.model, self.task_set.tasks, self.run.weighting, self.run.tx,
                                              self.cfg.jacobian_chunk, schedule=self.run.schedule)
        self.chunk = jax.jit(parallel.scanned(step, lambda d, idx: pipeline.gather(d, idx)), donate_argnums=0)
        self.eval_step = jax.jit(self.train_lib.make_eval_step(self.run.model))

    def start(self):
        sample = pipeline.gather(self.split, self.order(0))["inputs"]
        r, T, seed = self.run, self.task_set.num_tasks, self.cfg.seed
        # one compiled program (op-by-op initialisation compiles every op once: seconds on CPU)
        self.state = jax.jit(lambda s: self.train_lib.init_state(r.model, r.weighting, r.tx, T, s, seed))(sample)

    def train_to(self, start: int, end: int, should_stop=None):
        """Steps ``start..end-1`` of the current tree, logging and evaluating on the run's cadence."""
        cfg = self.cfg
        k = math.gcd(cfg.log_every, cfg.eval_every)
        for s, n in parallel.chunks(start, end, k):
            t0 = time.time()
            self.state, metrics = self.chunk(self.state, self.data, np.stack([self.order(s + j) for j in range(n)]))
            jax.block_until_ready(self.state.step)
            self.t_train += time.time() - t0
            if (s + n) % cfg.log_every == 0 or s + n == cfg.steps:
                self.log(s + n, metrics)
            if (s + n) % cfg.eval_every == 0 or s + n == cfg.steps:
                self.evaluate(s + n)
            if should_stop is not None and s + n < cfg.steps and should_stop():
                raise self.train_lib.Interrupted(s + n)

    def log(self, step, metrics):
        names = self.task_set.task_names
        m = parallel.to_host({k: metrics[k] for k in ("losses", "weights", "penalty")})
        if not np.all(np.isfinite(m["losses"])):
            bad = names[int(np.argmin(np.isfinite(m["losses"])))]
            raise self.train_lib.NonFiniteLoss(step, bad)
        rec = {"step": step, "kind": "train", "losses": dict(zip(names, m["losses"].tolist())),
               "weights": dict(zip(names, m["weights"].tolist())), "penalty": float(m["penalty"])}
        self.write(rec)
        if self.progress:
            self.progress(step, rec["losses"])

    def evaluate(self, step):
        splits = {s: self.task_set.splits[s] for s in ("validation", "test") if s in self.task_set.splits}
        out = {s: self.train_lib.evaluate(self.eval_step, self.state.params["model"], split, self.task_set.tasks,
                                          self.cfg.eval_batch_size, self.task_set.joint_metrics)
               for s, split in splits.items()}
        self.write({"step": step, "kind": "eval", **out})
        self.last_eval = out
        score = self.train_lib.main_score(out.get("validation", out.get("test")), self.task_set.tasks)
        if score > self.best:
            self.best, self.best_test = score, out.get("test")

    def write(self, rec):
        if self.writer:
            self.writer.write_record(rec)


def _round(ph: _Phases, g: dict, l: int, step: int) -> dict:
    """Measure, decide and (when the decision splits) widen the state and rebuild the run for block l."""
    margins, weights = margins_of(ph.run.model, ph.task_set.tasks, ph.state.params["model"], ph.split,
                                  g["affinity_examples"], ph.cfg.eval_batch_size)
    d = decide(margins, weights, ph.tree, l, ph.run.model.blocks, g["max_groups"], g["branch_cost"])
    d["step"] = step
    new = tuple(tuple(r) for r in d["tree"])
    if new != ph.tree:
        old, state = ph.tree, ph.state
        ph.build(new)
        ph.state = widen_state(state, old, new, ph.run.weighting, ph.run.model, ph.task_set.num_tasks)
    ph.write({"step": step, "kind": RECORD, **{k: d[k] for k in ("block", "groups", "labels", "loss", "separation",
                                                                  "complexity", "task_affinity", "branch_affinity",
                                                                  "branches_at_junction", "tree")}})
    return d


def grow_and_evaluate(cfg, workdir: str | None = None, task_set=None, progress: Callable | None = None,
                      should_stop: Callable[[], bool] | None = None, writer_names=writers.DEFAULT,
                      execution: Mapping | None = None) -> dict:
    """Grow the run's tree (module docstring) and train it, ``cfg.steps`` updates in all; returns the
    summary (``mtlx.train.train_and_evaluate``'s fields plus ``fafs``: every round's decision and the
    final tree). With ``workdir``, curves and ``branching`` records go to its metrics file. ``execution``
    is accepted for the signature's sake: a grown run trains on one device, one step per chunk entry."""
    from mtlx.data import get_task_set

    t0 = time.time()
    ts = task_set or get_task_set(cfg.task_set.name, **dict(cfg.task_set.options))
    opts = dict(cfg.architecture.options)
    L = len(cfg.backbone.blocks)
    g = grow_settings(opts.get("grow"), L, cfg.steps, ts.num_tasks)
    tree = tuple(arch.canonical(r) for r in opts.get("branches") or arch.thin_tree(ts.num_tasks, L))
    writer = writers.open_writers(writer_names, workdir, 0) if workdir else None
    ph = _Phases(cfg, ts, writer, progress)
    try:
        ph.build(tree)
        ph.start()
        step, rounds, l = 0, [], L - 1
        while step < cfg.steps:
            growing = len(rounds) < g["rounds"] and l >= 0
            end = min(step + g["phase_steps"], cfg.steps) if growing else cfg.steps
            ph.train_to(step, end, should_stop)
            step = end
            if not growing or step >= cfg.steps:
                break
            d = _round(ph, g, l, step)
            rounds.append(d)
            l = l - 1 if len(d["groups"]) > 1 else -1  # all branches kept together: nothing left to split below
        return _summary(ph, t0, rounds, g)
    finally:
        if writer:
            writer.close()


def _summary(ph: _Phases, t0: float, rounds: list, g: dict) -> dict:
    ev, steps = ph.last_eval, int(parallel.to_host(ph.state.step))
    return {"status": results.DONE, "steps": steps, "param_count": param_count(ph.state.params["model"]),
            "wall_time_s": time.time() - t0, "steps_per_s": steps / ph.t_train if ph.t_train > 0 else float("nan"),
            "metrics": ev.get("test", ev.get("validation")), "validation_metrics": ev.get("validation"),
            "test_at_best_validation": ph.best_test, "on_device_data": True, "mixing": {},
            "fafs": {"settings": g, "rounds": rounds, "branches": [list(r) for r in ph.tree],
                     "groups": arch.groups_of(ph.tree)}, **_joint_directions(ph.task_set)}


def _joint_directions(task_set) -> dict:
    """The summary's ``joint_metrics`` entry ({name: higher_is_better}) when the task set has any."""
    joint = task_set.joint_metrics
    return {results.JOINT_METRICS: {k: h for k, (_, h) in joint.items()}} if joint else {}
