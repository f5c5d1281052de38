"""Speed and memory benchmarks; writes results/bench/<part>-<backend>.{json,md}.

  python -m launch.bench                       # all parts
  python -m launch.bench --parts=architectures # steps/s and FLOP/s per architecture
  python -m launch.bench --parts=weightings --tasks=2,10,40
  python -m launch.bench --parts=peer          # against plain PyTorch (optional extra: pip install -e ".[bench]")

architectures: steps/s of every architecture's train step (equal weighting,
Adam) on the MLP (784-256-256) and CNN (LeNet: conv 10@5, conv 20@5, FC 50)
backbones at batch 256, two 10-way tasks; FLOPs per step from XLA's cost
analysis; achieved FLOP/s against a 2048x2048 float32 matmul timed in the
same interleaved rounds as the steps.
Every part compiles all its steps first, then times them in 5 interleaved rounds
(median per step), so that load changes on a shared machine hit all alike; each
step is fed the state the previous one returned, as in training.
weightings: for T tasks on a hard-sharing MLP, each weighting's step time over
equal weighting's; the measured time of one forward plus T separate backward
passes (a jitted VJP whose residuals are reused by T jitted backward calls: the
loop a per-task backward pays; it has no optimizer update and no weighting,
which every step pays on top); for each full-Jacobian weighting also that loop
followed by the same combine and Adam update (a loop-based step); for MGDA
also the same step with ghost=False (every shared layer's Jacobian rows
formed; see ``mtlx.grads``); XLA's planned peak memory of
each step.
peer: launch/bench_peer.py (the same MLP and LeNet steps in plain PyTorch, side by side).
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from jax.flatten_util import ravel_pytree

from mtlx import losses as losses_lib
from mtlx.architectures import ARCHITECTURES, build_model, shared_mask
from mtlx.conv import select_impl, stacked_mode
from mtlx.results import atomic_write_text, read_json, write_json
from mtlx.tasks import Task, TaskSet
from mtlx.optim import make_optimizer
from mtlx.train import init_state, make_train_step
from mtlx.weighting import WEIGHTINGS, get_weighting, on_jacobian

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["architectures", "weightings"], "which benchmarks to run ('' = only rewrite README.md)")
flags.DEFINE_list("tasks", ["2", "10", "40"], "task counts for the weighting benchmark")
flags.DEFINE_integer("batch_size", 256, "batch size")
flags.DEFINE_integer("iters", 4, "timed steps per entry in each of 5 interleaved rounds (after warm-up)")
flags.DEFINE_string("out", "results/bench", "output directory")
flags.DEFINE_list("architectures", [], "subset of architectures (default: all)")
flags.DEFINE_list("weightings", [], "subset of weightings (default: all)")
flags.DEFINE_string("peer_jax_python", "", "peer part: also time mtlx's steps under this interpreter (e.g. a "
                    "Python 3.12 venv with a newer jax and this checkout installed), as a third side")

MLP = [{"kind": "dense", "features": 256}, {"kind": "dense", "features": 256}]
FULL_JACOBIAN = ("jacobian", "gram")  # weightings of the per-task gradients of every shared parameter
CNN = [{"kind": "conv", "features": 10, "kernel": 5}, {"kind": "conv", "features": 20, "kernel": 5},
       {"kind": "dense", "features": 50}]


def time_all(calls, iters, rounds=5):
    """Median seconds per call of each zero-argument callable, measured in
    ``rounds`` interleaved rounds of ``iters`` calls each, so that load changes
    on a shared machine hit every entry alike (ratios are taken between them)."""
    samples = {name: [] for name in calls}
    for fn in calls.values():
        jax.block_until_ready(fn())
    for _ in range(rounds):
        for name, fn in calls.items():
            for _ in range(iters):
                t = time.perf_counter()
                jax.block_until_ready(fn())
                samples[name].append(time.perf_counter() - t)
    return {name: float(np.median(v)) for name, v in samples.items()}


def matmul_call(n=2048):
    """A zero-argument n x n float32 matmul and its FLOP count (the reference rate)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    return (lambda: f(a)), 2 * n**3


def task_set(num_tasks, input_shape, kind, batch_size=None):
    rng = np.random.default_rng(0)
    n = batch_size or FLAGS.batch_size
    x = rng.random((n,) + input_shape).astype(np.float32)
    names = [f"t{i}" for i in range(num_tasks)]
    split = {"inputs": x, "targets": {t: rng.integers(0, 10, n).astype(np.int32) for t in names},
             "weights": {t: np.ones(n, np.float32) for t in names}}
    return TaskSet("bench", tuple(Task(t, "classification", 10) for t in names), input_shape, kind,
                   splits={"train": split})


def compiled_step(model, ts, weighting, batch, tx=None, **step_options):
    tx = tx or make_optimizer("adam", 1e-3)
    state = init_state(model, weighting, tx, ts.num_tasks, batch["inputs"][:2], 0)
    step = jax.jit(make_train_step(model, ts.tasks, weighting, tx, **step_options))
    compiled = step.lower(state, batch).compile()
    return compiled, state


def threaded(step, state, *args):
    """A zero-argument callable running ``state = step(state, *args)[0]`` (as
    in training: each call gets the state the previous one returned, so
    stateful weightings, e.g. warm-started solvers, run as they do in a run);
    returns the new state."""
    box = [state]

    def call():
        box[0] = step(box[0], *args)[0]
        return box[0]

    return call


def cost(compiled):
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    mem = compiled.memory_analysis()
    peak = None
    if mem is not None:
        peak = int(mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes)
    return float(ca.get("flops", float("nan"))), peak


def bench_architectures():
    rows, peaks = [], []
    archs = FLAGS.architectures or sorted(ARCHITECTURES)
    for backbone, blocks, shape, kind in (("mlp", MLP, (784,), "dense"), ("cnn", CNN, (28, 28, 1), "image")):
        ts = task_set(2, shape, kind)
        batch = jax.device_put(ts.splits["train"])
        compiled = {}
        for name in archs:
            model = build_model(name, ts, blocks, **({"subspaces": 2} if name == "sluice" else {}))
            compiled[name] = compiled_step(model, ts, get_weighting("equal"), batch)
        calls = {n: threaded(c, st, batch) for n, (c, st) in compiled.items()}
        calls["matmul"], matmul_flops = matmul_call()   # timed in the same interleaved rounds
        secs = time_all(calls, FLAGS.iters)
        peak = matmul_flops / secs["matmul"]
        peaks.append(peak)
        print(f"{backbone:4s} 2048x2048 matmul {peak / 1e9:.1f} GFLOP/s", flush=True)
        for name, (c, _) in compiled.items():
            flops, mem = cost(c)
            sec = secs[name]
            rows.append({"backbone": backbone, "architecture": name, "ms_per_step": 1e3 * sec, "steps_per_s": 1 / sec,
                         "gflop_per_step": flops / 1e9, "achieved_gflop_per_s": flops / sec / 1e9,
                         "matmul_gflop_per_s": peak / 1e9, "fraction_of_matmul": flops / sec / peak, "peak_bytes": mem})
            print(f"{backbone:4s} {name:18s} {1e3 * sec:8.2f} ms  {flops / sec / 1e9:7.1f} GFLOP/s  "
                  f"{100 * flops / sec / peak:5.1f}% of matmul", flush=True)
    mode = stacked_mode("auto")   # 'unroll': stacked copies are unrolled shared-style layers
    conv_impl = {"shared": [select_impl("auto", c) for c in (1, 10)], "stacked": mode if mode == "unroll" else
                 [select_impl("auto", c, True) for c in (1, 10)]}
    return {"matmul_gflop_per_s": float(np.mean(peaks)) / 1e9, "batch_size": FLAGS.batch_size, "rows": rows,
            "conv_impl": conv_impl}


def loop_of_backwards(model, ts, batch, params=None, with_losses=False):
    """One forward + T separate backward passes (a jitted VJP whose residuals
    are reused by T jitted backward calls), as a callable ``run(p=params)``
    returning the T gradients at ``p`` (and first the losses, ``with_losses``)."""
    if params is None:
        params = model.init(jax.random.PRNGKey(0), batch["inputs"][:2])["params"]

    def losses(p):
        preds, _ = model.apply({"params": p}, batch["inputs"])
        return losses_lib.task_losses(ts.tasks, preds, batch)

    fwd = jax.jit(lambda p: jax.vjp(losses, p))
    bwd = jax.jit(lambda vjp_fn, ct: vjp_fn(ct)[0])
    eye = jnp.eye(ts.num_tasks)

    def run(p=params):
        out, vjp_fn = fwd(p)
        grads = [bwd(vjp_fn, eye[t]) for t in range(ts.num_tasks)]
        return (out, grads) if with_losses else grads

    return run


def loop_step(model, ts, weighting, batch, tx=None):
    """A Jacobian weighting's whole step with its per-task gradients from the
    loop instead: :func:`loop_of_backwards` (full backward calls), then one
    jitted call that flattens the shared rows, combines and applies the same
    Adam update - what a loop-based implementation of the step pays. A
    zero-argument callable returning the new state (:func:`threaded`)."""
    tx = tx or make_optimizer("adam", 1e-3)
    state = init_state(model, weighting, tx, ts.num_tasks, batch["inputs"][:2], 0)
    params = state.params["model"]
    mask = shared_mask(model, params)
    flat_shared = lambda g: ravel_pytree(jax.tree_util.tree_map(lambda k, x: x if k else None, mask, g))
    unravel = flat_shared(params)[1]

    @jax.jit
    def finish(state, losses, grads):
        rows = jnp.stack([flat_shared(g)[0] for g in grads])
        key, wkey = jax.random.split(state.key)
        weights, direction, wstate, _ = on_jacobian(weighting)(losses, rows, state.wstate, wkey)
        g = jax.tree_util.tree_map(lambda *gs: sum(w * x for w, x in zip(weights, gs)), *grads)
        if direction is not None:
            g = jax.tree_util.tree_map(lambda k, a, b: a if k else b, mask, unravel(direction), g)
        updates, opt_state = tx.update({"model": g, "weighting": {}}, state.opt_state, state.params)
        return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                             opt_state=opt_state, wstate=wstate, key=key), None

    loop = loop_of_backwards(model, ts, batch, params, with_losses=True)
    return threaded(lambda st: finish(st, *loop(st.params["model"])), state)


def bench_weightings():
    rows = []
    names = FLAGS.weightings or sorted(WEIGHTINGS)
    names = ["equal"] + [n for n in names if n != "equal"]
    for T in [int(t) for t in FLAGS.tasks]:
        ts = task_set(T, (784,), "dense")
        batch = jax.device_put(ts.splits["train"])
        model = build_model("hard", ts, MLP)
        steps, needs, weightings, batches = {}, {}, {}, {}
        for name in names:
            w = weightings[name] = get_weighting(name, **({"weights": [1.0] * T} if name == "static" else {}))
            # a "lookahead" weighting (auto_lambda) also reads a second batch; here the same examples
            batches[name] = {**batch, "meta": batch} if w.needs == "lookahead" else batch
            steps[name], needs[name] = compiled_step(model, ts, w, batches[name], learning_rate=1e-3), w.needs
        if "mgda" in names:   # the same step with every shared layer's rows formed (no ghost Gram)
            steps["mgda:rows"] = compiled_step(model, ts, weightings["mgda"], batch, ghost=False)
        calls = {n: threaded(c, st, batches.get(n, batch)) for n, (c, st) in steps.items()}
        calls["loop"] = loop_of_backwards(model, ts, batch)
        for name in names:
            if needs[name] in FULL_JACOBIAN:
                calls["loop_step:" + name] = loop_step(model, ts, weightings[name], batch)
        secs = time_all(calls, FLAGS.iters)
        base, loop = secs["equal"], secs["loop"]
        for name in names:
            _, mem = cost(steps[name][0])
            sec = secs[name]
            loop_ms = 1e3 * secs.get("loop_step:" + name, float("nan"))
            rows_ms = 1e3 * secs.get(name + ":rows", float("nan"))
            rows.append({"tasks": T, "weighting": name, "needs": needs[name], "ms_per_step": 1e3 * sec,
                         "without_ghost_ms": rows_ms,
                         "ratio_to_equal": sec / base, "loop_fwd_plus_T_bwd_ms": 1e3 * loop,
                         "ratio_to_loop": sec / loop, "loop_step_ms": loop_ms,
                         "ratio_to_loop_step": 1e3 * sec / loop_ms, "peak_bytes": mem})
            print(f"T={T:3d} {name:12s} {1e3 * sec:8.2f} ms  x{sec / base:5.2f} equal  x{sec / loop:5.2f} loop "
                  f"(loop {1e3 * loop:.2f} ms)  x{1e3 * sec / loop_ms:5.2f} loop step  "
                  f"peak {mem / 2**20 if mem else float('nan'):.1f} MiB  (without ghost {rows_ms:.2f} ms)", flush=True)
    return {"batch_size": FLAGS.batch_size, "rows": rows}


def markdown(part, res):
    rows = res["rows"]
    cols = list(rows[0])
    lines = [f"# bench: {part} ({jax.default_backend()}, {jax.devices()[0].device_kind})", "",
             "Regenerate: `python -m launch.bench --parts=" + part + "`", ""]
    if "matmul_gflop_per_s" in res:
        lines += [f"2048x2048 float32 matmul: {res['matmul_gflop_per_s']:.1f} GFLOP/s "
                  "(mean over the backbones, timed in their interleaved rounds)", ""]
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary(out_dir: str) -> str:
    """results/bench/README.md: the headline ratios of every stored benchmark, with its command."""
    lines = ["# bench", "", "Written by `python -m launch.bench` from the JSON files beside it (each also has a",
             "`.md` table); rerun it to regenerate. Ratios are taken within one run of one process.", ""]
    for name in sorted(os.listdir(out_dir)):
        if not name.endswith(".json"):
            continue
        res = read_json(os.path.join(out_dir, name))
        rows = res["rows"]
        lines += [f"## {name[:-5]}", "", f"`{res['command']}` on {res['backend']} ({res['device']}), jax {res['jax']}, "
                  f"{res['date']}; table: `{name[:-5]}.md`", ""]
        if name.startswith("peer"):
            from launch import bench_peer
            lines += bench_peer.summary_lines(res)
        elif "steps_per_dispatch" in res:  # the parallel part
            for r in rows:
                lines.append(f"- {r['model']} {r['mode']} ({r['seeds']} seed(s), {r['steps_per_call']} step(s) per call): "
                             f"{r['seed_steps_per_s']:.1f} seed-steps/s, x{r['ratio_to_sequential']:.2f}")
            from launch.bench_parallel import GPU_NOTE

            lines.append(f"- {GPU_NOTE}")
        elif "matmul_gflop_per_s" in res:
            lines.append(f"- 2048x2048 float32 matmul: {res['matmul_gflop_per_s']:.1f} GFLOP/s")
            if "conv_impl" in res:
                lines.append(f"- CNN convolutions ('auto', mtlx.conv): shared layers {res['conv_impl']['shared']}, "
                             f"stacked copies {res['conv_impl']['stacked']}")
            for r in rows:
                if r["architecture"] in ("hard", "single_task", "mmoe"):
                    lines.append(f"- {r['backbone']} {r['architecture']}: {r['ms_per_step']:.2f} ms/step, "
                                 f"{100 * r['fraction_of_matmul']:.0f}% of the matmul rate")
        else:
            for T in sorted({r["tasks"] for r in rows}):
                sub = [r for r in rows if r["tasks"] == T]
                ub = [r for r in sub if r["weighting"] == "mgda_ub"]
                jac = [r["ratio_to_loop"] for r in sub if r["needs"] in FULL_JACOBIAN]
                jac_step = [r["ratio_to_loop_step"] for r in sub if r["needs"] in FULL_JACOBIAN and "ratio_to_loop_step" in r]
                same = [r["ratio_to_equal"] for r in sub if r["weighting"] == "static"]
                lines.append(f"- T={T}: mgda_ub / equal = {ub[0]['ratio_to_equal']:.2f}" if ub else f"- T={T}:")
                if jac:
                    lines[-1] += (f"; full-Jacobian methods / (1 forward + T backward loop) = "
                                  f"{min(jac):.2f}-{max(jac):.2f}")
                if jac_step:
                    lines[-1] += (f"; / the same step with that loop's gradients (+ combine + update) = "
                                  f"{min(jac_step):.2f}-{max(jac_step):.2f}")
                ghost = [r for r in sub if r["weighting"] == "mgda" and np.isfinite(r.get("without_ghost_ms", np.nan))]
                if ghost:
                    lines[-1] += (f"; mgda / mgda without the ghost Gram (ghost=False) = "
                                  f"{ghost[0]['ms_per_step'] / ghost[0]['without_ghost_ms']:.2f}")
                if same:
                    lines[-1] += f"; static / equal (identical work: the noise level) = {same[0]:.2f}"
        lines.append("")
    return "\n".join(lines)


def main(argv):
    from launch import bench_peer
    from launch.bench_parallel import bench_parallel

    parts = {"architectures": bench_architectures, "weightings": bench_weightings,
             "peer": lambda: bench_peer.bench_peer(sys.modules[__name__]),
             "parallel": lambda: bench_parallel(time_all, FLAGS.iters)}
    parts_wanted = [p for p in FLAGS.parts if p]
    for part in parts_wanted:
        if part not in parts:
            raise app.UsageError(f"--parts: {part!r} is not valid; choose from {sorted(parts)}")
    backend = jax.default_backend()
    for part in parts_wanted:
        res = parts[part]()
        if res is None:   # skipped (it said why)
            continue
        res.update({"backend": backend, "device": jax.devices()[0].device_kind, "jax": jax.__version__,
                    "date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(["python -m launch.bench"] + sys.argv[1:])})
        path = os.path.join(FLAGS.out, f"{part}-{backend}")
        write_json(path + ".json", res)
        atomic_write_text(path + ".md", markdown(part, res))
        print("wrote", path + ".json", flush=True)
    atomic_write_text(os.path.join(FLAGS.out, "README.md"), summary(FLAGS.out))


if __name__ == "__main__":
    app.run(main)
