"""``launch.bench --parts=parallel``: many runs in one program, K steps per dispatch, host devices.

On the MMoE synthetic MLP (Ma et al. 2018's sizes: 8 experts of 16 units,
towers of 8, batch 128) and the LeNet (conv 10@5, conv 20@5, FC 50, batch 256,
two 10-way tasks), all timed in the same interleaved rounds:

- ``sequential``: one run, one step per jitted call (the loop before
  ``mtlx.parallel``); 8 seeds = 8 such runs one after another;
- ``dispatch``: one run, K steps per call (``lax.scan``);
- ``program``: 8 seeds in one program (vmapped), one step per call;
- ``program+dispatch``: 8 seeds in one program, K steps per call.

Each is reported as seed-steps per second and as its ratio to ``sequential``.
The ``devices`` rows run in a child process with 8 forced host devices: one
run's K-step chunk on a (data=8) mesh against the same chunk on one device of
that process: the cost of splitting a CPU's batch 8 ways (on a CPU the
"devices" share the same cores, so this measures overhead, not speed-up).

On a GPU (not measured here: no device was lent) we expect the gains to be
larger: one step of these models is a few hundred small kernels, each far
below the device's capacity, so a step costs about its launch and host
overhead; K steps per dispatch removes the per-step host round trip, and 8
vmapped seeds run in the same kernels at little extra cost until the device
saturates (the MLP's 8 seeds are a few MFLOP per step). The 8-device mesh on
one host's GPUs adds an all-reduce of the gradients per step; at these sizes it
would dominate, so data parallelism pays only for large batches or models.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import jax
import numpy as np

from mtlx import grid
from mtlx.data import pipeline
from mtlx.parallel import make_mesh, put
from mtlx.parallel.program import _chunk_fn, _hyperparameters, stack
from mtlx.train import _jitted_chunk, build_run, init_state

SEEDS = 8
GPU_NOTE = ("On a GPU (not measured: no device lent) we expect larger gains than on this CPU: a step of these "
            "models is launch-bound there, which K steps per dispatch and vmapped seeds amortise "
            "(see launch/bench_parallel.py).")
K = {"mmoe_mlp": 50, "lenet": 10}  # steps per dispatch (the LeNet's fewer: one call is already 10 x 8 steps)
MMOE = {"task_set": {"name": "mmoe_synthetic", "options": {"correlation": 0.5, "n_train": 20000, "n_validation": 0,
                                                            "n_test": 100}},
        "backbone": {"blocks": [{"kind": "dense", "features": 16}], "head_hidden": [8]},
        "architecture": {"name": "mmoe", "options": {"num_experts": 8}}, "batch_size": 128}
LENET = {"task_set": {"name": "launch.bench_parallel:lenet_images", "options": {"n_train": 2048}},
         "backbone": {"blocks": [{"kind": "conv", "features": 10, "kernel": 5},
                                 {"kind": "conv", "features": 20, "kernel": 5}, {"kind": "dense", "features": 50}],
                      "head_hidden": []},
         "architecture": {"name": "hard", "options": {}}, "batch_size": 256}


def lenet_images(n_train: int = 2048, seed: int = 0):
    """Random 28x28 images with two 10-way labels: the LeNet's shapes (the timing needs no real data)."""
    from mtlx.tasks import Task, TaskSet

    rng = np.random.default_rng(seed)
    names = ("left", "right")

    def split(n):
        return {"inputs": rng.random((n, 28, 28, 1)).astype(np.float32),
                "targets": {t: rng.integers(0, 10, n).astype(np.int32) for t in names},
                "weights": {t: np.ones(n, np.float32) for t in names}}

    return TaskSet("lenet_images", tuple(Task(t, "classification", 10) for t in names), (28, 28, 1), "image",
                   splits={"train": split(n_train), "test": split(64)})


def run_config(model: dict, seed: int) -> dict:
    rc = copy.deepcopy(grid.schema())
    rc.update(copy.deepcopy(model))
    rc.update({"seed": seed, "steps": 10**6, "log_every": 10, "eval_every": 10, "checkpoint_every": 10})
    return rc


def _single(rc, k: int, mesh=None):
    """A zero-argument callable: k steps of one run per call (the state threaded through)."""
    run = build_run(grid.train_config(rc), grid.task_set_for(rc))
    train = run.task_set.split("train")
    order = pipeline.BatchOrder(pipeline.split_size(train), rc["batch_size"], rc["seed"])
    state = put(init_state(run.model, run.weighting, run.tx, run.task_set.num_tasks,
                           pipeline.gather(train, order(0))["inputs"], rc["seed"]), mesh)
    chunk, args, _ = _jitted_chunk(run, train, order, 0, mesh)
    box, a = [state], args(0, k)

    def call():
        box[0] = chunk(box[0], *a)[0]
        return box[0]

    return call


def _program(rcs, k: int):
    """A zero-argument callable: k steps of len(rcs) runs in one program per call."""
    runs = [build_run(grid.train_config(rc), grid.task_set_for(rc)) for rc in rcs]
    train = runs[0].task_set.split("train")
    orders = [pipeline.BatchOrder(pipeline.split_size(train), rc["batch_size"], rc["seed"]) for rc in rcs]
    states = [init_state(r.model, r.weighting, r.tx, r.task_set.num_tasks, pipeline.gather(train, o(0))["inputs"],
                         rc["seed"]) for r, o, rc in zip(runs, orders, rcs)]
    chunk = _chunk_fn(runs[0], runs[0].cfg.to_dict(), False, None)
    data = (put(_hyperparameters([r.cfg.to_dict() for r in runs]), None), put(dict(train), None))
    idx = np.stack([np.stack([o(j) for o in orders]) for j in range(k)])
    box = [stack(states)]

    def call():
        box[0] = chunk(box[0], data, idx)[0]
        return box[0]

    return call


def bench_parallel(time_all, iters: int) -> dict:
    rows = []
    for name, model in (("mmoe_mlp", MMOE), ("lenet", LENET)):
        rcs, k = [run_config(model, s) for s in range(SEEDS)], K[name]
        calls = {"sequential": _single(rcs[0], 1), "dispatch": _single(rcs[0], k),
                 "program": _program(rcs, 1), "program+dispatch": _program(rcs, k)}
        secs = time_all(calls, iters)
        seed_steps = {"sequential": 1, "dispatch": k, "program": SEEDS, "program+dispatch": SEEDS * k}
        base = seed_steps["sequential"] / secs["sequential"]
        for mode, sec in secs.items():
            rate = seed_steps[mode] / sec
            rows.append({"model": name, "mode": mode, "seeds": SEEDS if "program" in mode else 1,
                         "steps_per_call": k if "dispatch" in mode else 1, "ms_per_call": 1e3 * sec,
                         "seed_steps_per_s": rate, "ratio_to_sequential": rate / base})
            print(f"{name:9s} {mode:17s} {1e3 * sec:9.2f} ms/call {rate:10.1f} seed-steps/s  x{rate / base:.2f}",
                  flush=True)
    rows += _devices_rows(iters)
    return {"seeds": SEEDS, "steps_per_dispatch": K, "rows": rows}


def _devices_rows(iters: int) -> list:
    """The ``devices`` rows, measured in a child process with 8 forced host devices."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "-m", "launch.bench_parallel", str(iters)], env=env, capture_output=True,
                       text=True, timeout=1200)
    if p.returncode != 0:
        raise RuntimeError(f"the 8-device child failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _devices_child(iters: int) -> list:
    from launch.bench import time_all

    rows = []
    for name, model in (("mmoe_mlp", MMOE), ("lenet", LENET)):
        rc, k = run_config(model, 0), K[name]
        secs = time_all({"1 device": _single(rc, k), "8 devices": _single(rc, k, make_mesh(8))}, iters)
        for mode, sec in secs.items():
            rows.append({"model": name, "mode": f"dispatch, {mode}", "seeds": 1, "steps_per_call": k,
                         "ms_per_call": 1e3 * sec, "seed_steps_per_s": k / sec,
                         "ratio_to_sequential": secs["1 device"] / sec})
    return rows


if __name__ == "__main__":  # the 8-device child of _devices_rows
    assert len(jax.devices()) == 8, jax.devices()
    print(json.dumps(_devices_child(int(sys.argv[1]))))
