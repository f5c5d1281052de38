"""Training a population (``mtlx.parallel.population``) in one compiled program.

``train_population(cfgs, workdirs, task_sets)`` is ``mtlx.train.train_and_evaluate``
for N runs at once: each member keeps its own ``_Loop`` (run directory,
writers, model selection, checkpoints, summary); the state is stacked on a
leading member axis and K vmapped steps run per dispatch. A member's result is
its summary dict, or the ``NonFiniteLoss`` that failed it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mtlx import checkpoint as ckpt
from mtlx import losses as losses_lib
from mtlx import writers
from mtlx.data import pipeline
from mtlx.parallel import dispatch, mesh as mesh_lib
from mtlx.parallel.population import _make_weighting, _varying, _with, split_shapes


def stack(trees: Sequence):
    return jax.tree_util.tree_map(lambda *x: jnp.stack(x), *trees)


def member(tree, i: int):
    return jax.tree_util.tree_map(lambda x: x[i], tree)


def _hyperparameters(cfgs: Sequence[Mapping]) -> dict:
    """{path: (N, ...) float32 array} of the non-seed, non-data population values that differ."""
    paths = [p for p in _varying(list(cfgs)) if p != "seed" and not p.startswith("task_set.")]
    from mtlx.schema import _get_path

    return {p: np.asarray([_get_path(c, p) for c in cfgs], np.float32) for p in paths}


def member_step(run0, cfg0: Mapping, stacked_data: bool, mesh) -> Callable:
    """``step(state, hp, data, idx) -> (state, metrics)`` of one member, to vmap: the optimizer and
    weighting rebuilt from the member's (traced) hyperparameters ``hp``; a member whose loss went
    NaN/inf keeps its state (only its failure record moves)."""
    from mtlx.train import make_train_step, optimizer_of, step_learning_rate

    def step(state, hp, data, idx):
        c = _with(cfg0, hp)
        tx = optimizer_of(c["optimizer"], c["steps"], run0.training, run0.task_set.task_names, run0.model)
        fn = make_train_step(run0.model, run0.task_set.tasks, _make_weighting(c["weighting"]), tx,
                             c["jacobian_chunk"], schedule=run0.schedule,
                             learning_rate=step_learning_rate(c["optimizer"], c["steps"]))
        batch = mesh_lib.constrain_batch(pipeline.gather(data, idx), mesh)
        new, metrics = fn(state, batch)
        ok = new.nonfinite_step < 0
        kept = jax.tree_util.tree_map(lambda n, o: jnp.where(ok, n, o), new, state)
        return kept.replace(nonfinite_step=new.nonfinite_step, nonfinite_task=new.nonfinite_task), metrics

    return step


def member_axis(run0, mesh) -> str:
    """How the members share the step: "vmap" (one batched computation), or, for convolutions on a
    CPU without a mesh (a vmapped convolution becomes a grouped one, several times slower on XLA:CPU
    than the members' plain ones), "map" (``lax.map``: the members' steps one after another in a
    loop) or, where a convolution is slow inside a loop body (``dispatch.scan_is_slow``), "unroll"
    (one after another, written out)."""
    convs = any(b.get("kind") == "conv" for b in run0.cfg.backbone.blocks)
    if mesh is not None or not convs or jax.default_backend() != "cpu":
        return "vmap"
    return "unroll" if dispatch.scan_is_slow(run0.cfg) else "map"


def _chunk_fn(run0, cfg0, stacked_data: bool, mesh) -> Callable:
    """The jitted chunk: K steps of the member step over the member axis (vmapped, the axis split
    along the mesh's ``runs`` axis; or mapped, see :func:`member_axis`)."""
    one = member_step(run0, cfg0, stacked_data, mesh)
    if member_axis(run0, mesh) == "unroll":
        def each(st, hp, data, idx):
            n = len(idx)
            outs = [one(member(st, i), member(hp, i), member(data, i) if stacked_data else data, idx[i])
                    for i in range(n)]
            return stack([o[0] for o in outs]), stack([o[1] for o in outs])
    elif member_axis(run0, mesh) == "map":
        def each(st, hp, data, idx):
            if stacked_data:
                return jax.lax.map(lambda a: one(*a), (st, hp, data, idx))
            return jax.lax.map(lambda a: one(a[0], a[1], data, a[2]), (st, hp, idx))
    else:
        each = jax.vmap(one, in_axes=(0, 0, 0 if stacked_data else None, 0),
                        spmd_axis_name=mesh_lib.RUNS if mesh is not None else None)
    chunk = dispatch.scanned(lambda st, a: each(st, a[0], a[1], a[2]), lambda d, idx: (d[0], d[1], idx))
    return jax.jit(chunk, donate_argnums=0)


@dataclasses.dataclass
class _Members:
    """The population's host side: one ``_Loop`` per member, its batch order, and the results so far
    (None while training; a summary or a NonFiniteLoss once it ends)."""

    loops: list
    orders: list
    results: list

    def alive(self) -> list[int]:
        return [i for i, r in enumerate(self.results) if r is None]


def _data(task_sets, mesh, max_bytes: int):
    """The train data on the device: one copy when every member reads the same task set, else the
    members' splits stacked; None when it does not fit (``on_device_max_bytes``)."""
    shared = all(ts is task_sets[0] for ts in task_sets)
    trains = [dict(ts.split("train")) for ts in (task_sets[:1] if shared else task_sets)]
    if len({split_shapes(ts) for ts in task_sets}) > 1:
        raise ValueError("the task sets of this program's runs differ in shape (a task-set option other than "
                         "'seed' changes them?); train them with parallel.runs_per_program=1")
    if not all(isinstance(t, Mapping) for t in trains) or \
            sum(pipeline.split_nbytes(t) for t in trains) > max_bytes:
        raise ValueError(f"the train splits of this program ({len(trains)} x {pipeline.split_nbytes(trains[0])} "
                         f"bytes) exceed on_device_max_bytes={max_bytes}; lower parallel.runs_per_program or "
                         f"raise on_device_max_bytes")
    return (mesh_lib.put(trains[0], mesh) if shared else mesh_lib.put(stack(trains), mesh, stacked=True)), not shared


def _evaluate(eval_v, params, loops, alive: list[int], stacked: bool) -> dict:
    """{member: its evaluation ({split: {task: metrics}})} for the alive members; the predictions of
    every member made by one vmapped program per batch of examples."""
    out = {i: {} for i in alive}
    first = loops[alive[0]]
    for name in first.splits:
        splits = [lp.splits[name] for lp in loops] if stacked else [first.splits[name]]
        n, bs = pipeline.split_size(splits[0]), first.cfg.eval_batch_size
        preds = {t.name: [] for t in first.tasks}
        for a in range(0, n, bs):
            idx = np.arange(a, min(a + bs, n))
            inputs = [pipeline.gather(s, idx)["inputs"] for s in splits]
            got = mesh_lib.to_host(eval_v(params, stack(inputs) if stacked else inputs[0]))
            for t in first.tasks:
                preds[t.name].append(got[t.name])
        for i in alive:
            whole = splits[i if stacked else 0]
            out[i][name] = losses_lib.split_metrics(
                first.tasks, {t.name: np.concatenate(preds[t.name], axis=1)[i] for t in first.tasks}, whole, first.joint)
    return out


class _Program:
    """The device side of a population: the stacked state, its hyperparameters and data, and the
    host-side actions at chunk ends (log, evaluate, checkpoint, stop) for every alive member."""

    def __init__(self, runs, members: _Members, state, start: int, mesh, progress):
        self.runs, self.m, self.state, self.start, self.mesh = runs, members, state, start, mesh
        self.cfg, self.progress, self.metrics = runs[0].cfg, progress, None
        cfgs = [r.cfg.to_dict() for r in runs]
        self.hp = mesh_lib.put(_hyperparameters(cfgs), mesh, stacked=True)
        self.data, self.stacked = _data([r.task_set for r in runs], mesh, self.cfg.on_device_max_bytes)
        self.chunk = _chunk_fn(runs[0], cfgs[0], self.stacked, mesh)
        from mtlx.train import make_eval_step

        self.eval_v = jax.jit(jax.vmap(make_eval_step(runs[0].model), in_axes=(0, 0 if self.stacked else None)))

    def advance(self, s: int, k: int) -> None:
        idx = np.stack([np.stack([o(s + j) for o in self.m.orders]) for j in range(k)])  # (K, N, B)
        self.state, self.metrics = self.chunk(self.state, (self.hp, self.data), idx)

    def act(self, step: int, should_stop) -> None:
        """The periodic work due after ``step`` updates, then a stop request."""
        cfg, last = self.cfg, self.cfg.steps
        due = lambda every: step % every == 0 or step == last
        if due(cfg.log_every):
            self.log(step)
        t = time.time()
        if due(cfg.eval_every) and self.m.alive():
            evals = _evaluate(self.eval_v, self.state.params["model"], self.m.loops, self.m.alive(), self.stacked)
            for i, out in evals.items():
                self.m.loops[i].record_eval(step, out)
        if due(cfg.checkpoint_every):
            self.checkpoint(step)
        for loop in self.m.loops:  # kept off the steps/s clock, as a single run's loop does
            loop.t_other += time.time() - t if loop.t_first is not None else 0.0
        if should_stop is not None and step < last and should_stop():
            from mtlx.train import Interrupted

            self.checkpoint(step)
            raise Interrupted(step)

    def log(self, step: int) -> None:
        """Each alive member's train record; a member whose loss went NaN/inf fails here."""

        host = mesh_lib.to_host(self.metrics)
        for i in self.m.alive():
            loop = self.m.loops[i]
            extra = loop.probe(step, member(self.state.params["model"], i)) if loop.probe is not None else None
            losses = loop.record_train(step, member(host, i), extra)
            if self.progress and i == self.m.alive()[0]:
                self.progress(step, losses)
        self.fail_nonfinite()

    def fail_nonfinite(self) -> None:
        """Fail (and so freeze) every alive member whose loss went NaN/inf, naming its step and task."""
        from mtlx.train import NonFiniteLoss, PENALTY

        bad, task = mesh_lib.to_host((self.state.nonfinite_step, self.state.nonfinite_task))
        for i in self.m.alive():
            if bad[i] >= 0:
                tasks = self.m.loops[i].tasks
                self.m.results[i] = NonFiniteLoss(int(bad[i]) + 1, tasks[task[i]].name if task[i] < len(tasks) else PENALTY)
                if self.m.loops[i].writer:
                    self.m.loops[i].writer.close()
                    self.m.loops[i].writer = None

    def checkpoint(self, step: int) -> None:
        self.fail_nonfinite()  # never checkpoint a state whose loss already went NaN/inf
        for i in self.m.alive():
            loop = self.m.loops[i]
            if loop.mgr is not None and ckpt.latest_step(loop.mgr) != step:
                ckpt.save(loop.mgr, step, member(self.state, i))


def _shared_probe(probe, earlier: list):
    """``probe`` using an earlier member's compiled probe function when it computes the same thing
    (the same affinity step size: a learning-rate population's may differ); None stays None."""
    for lp in earlier:
        if probe is not None and lp.probe is not None and lp.probe.lr == probe.lr:
            return dataclasses.replace(probe, fn=lp.probe.fn)
    return probe


def _start(runs, workdirs, mesh, progress, writer_names):
    """Each member's initial (or resumed) state and its ``_Loop`` (with its relatedness probe, one
    compiled probe shared by the members whose probes agree); all must resume at one step."""
    from mtlx.train import _Loop, _Probe, _resume, batch_order_of, init_state

    loops, orders, states, starts = [], [], [], []
    for run, wd in zip(runs, workdirs):
        train = run.task_set.split("train")
        order = batch_order_of(run, train)
        state = init_state(run.model, run.weighting, run.tx, run.task_set.num_tasks,
                           pipeline.gather(train, order(0))["inputs"], run.cfg.seed)
        mgr, state, start = _resume(wd, state)
        loops.append(_Loop(run, state, wd, mgr, None, start, writer_names))
        loops[-1].probe = _shared_probe(_Probe.of(run, train, order), loops[:-1])
        orders.append(order), states.append(state), starts.append(start)
    if len(set(starts)) > 1:
        raise ValueError(f"the runs of one program resume at different steps {sorted(set(starts))}; "
                         f"train them with parallel.runs_per_program=1")
    return _Members(loops, orders, [None] * len(runs)), mesh_lib.put(stack(states), mesh, stacked=True), starts[0]


def train_population(cfgs: Sequence, workdirs: Sequence, task_sets: Sequence, progress: Callable | None = None,
                     should_stop: Callable[[], bool] | None = None, writer_names=writers.DEFAULT,
                     execution=None) -> list:
    """Train the runs ``cfgs`` (one program key, ``mtlx.parallel.population``) together; each writes
    ``workdirs[i]`` as ``train_and_evaluate`` would. Returns per run its summary or its NonFiniteLoss.
    ``should_stop()`` is asked after every dispatch: the alive members are checkpointed and
    Interrupted raised."""
    from mtlx import parallel
    from mtlx.architectures import param_count
    from mtlx.train import build_run

    ex = parallel.Execution.of(execution)
    runs = [build_run(c, ts) for c, ts in zip(cfgs, task_sets)]
    mesh = mesh_lib.make_mesh(ex.data_devices, ex.run_devices)
    mesh_lib.check_divisible(mesh, runs[0].cfg.batch_size, len(runs))
    members, state, start = _start(runs, workdirs, mesh, progress, writer_names)
    try:
        prog = _Program(runs, members, state, start, mesh, progress)
        n_params, t0 = param_count(member(state.params["model"], 0)), time.time()
        for s, k in dispatch.chunks(start, prog.cfg.steps, dispatch.dispatch_size(prog.cfg, ex.steps_per_dispatch)):
            prog.advance(s, k)
            prog.act(s + k, should_stop)
        record = {**ex.record(mesh), "program_runs": len(runs)}
        for i in members.alive():
            members.loops[i].state = member(prog.state, i)
            members.results[i] = {**members.loops[i].summary(t0, n_params, True), "execution": record}
        return members.results
    finally:
        for loop in members.loops:
            if loop.writer:
                loop.writer.close()
