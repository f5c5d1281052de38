r"""Quickstart: five sharing schemes on one synthetic task set, on a laptop CPU.

  python -m launch.run --config experiments/quickstart.py
  python -m launch.table results/quickstart
  python -m launch.plot results/quickstart

Trains single_task, hard, cross_stitch, sluice and tensor_factorised (3 seeds
each, equal loss weighting, Adam) on ``synthetic_classification``: 4 tasks,
5 classes each, inputs x ~ N(0, I_32), labels from a shared projection of x
(weight 0.9) and one private projection per task; 1000 training examples, so
sharing matters. Nothing is downloaded. 15 runs of 1500 steps (batch 128) with
a 32-64-64 MLP backbone. On 2 CPU cores the whole grid, compilation included,
took 29 s wall (36 s of CPU time) from a cold compilation cache on an otherwise
idle 2-core machine (the README gives the command that measured it).

What you should see: one progress bar per run
``hard-equal-s0-56e81ba0 (2/15): 40%| 600/1500 [00:16<00:20, 43.8step/s, task0=0.41, ...]``
(step, per-task training losses, ETA), a line per finished run with its test
accuracies, then the table: mean +- 95% CI over seeds of each task's test accuracy,
delta_m vs single_task and parameter counts. Test accuracies land around
0.60-0.68 (5 classes, 5% label noise, 1000 examples).
Every run writes ``results/quickstart/<run_id>/`` (config.json, metrics.jsonl,
summary.json). Run it again and it does nothing (finished runs are skipped);
interrupt it and run it again and it resumes from the last checkpoint.

  python -m launch.run --config experiments/quickstart.py:smoke --workdir /tmp/qs

is the same grid shrunk to seconds (1 seed, 60 steps, 256 examples), for a
first check that everything is wired.
"""

import ml_collections

from mtlx.grid import experiment_config, smoke


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/quickstart.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = experiment_config()
    config.experiment = "quickstart"
    config.smoke = arg == "smoke"

    run = config.run
    run.task_set.name = "synthetic_classification"
    run.task_set.options = ml_collections.ConfigDict({
        "num_tasks": 4, "num_classes": 5, "dim": 32, "shared_fraction": 0.9,
        "n_train": 1000, "n_validation": 1000, "n_test": 2000, "seed": 0})
    run.backbone.blocks = [{"kind": "dense", "features": 64}, {"kind": "dense", "features": 64}]
    run.backbone.head_hidden = []
    run.optimizer.name = "adam"
    run.optimizer.learning_rate = 1e-3
    run.update({"steps": 1500, "batch_size": 128, "eval_every": 500, "log_every": 50, "checkpoint_every": 500})

    config.architectures = (
        {"name": "single_task", "options": {}},
        {"name": "hard", "options": {"split": -1}},  # shared 2-block trunk, one linear head per task
        {"name": "cross_stitch", "options": {"units": "scalar"}},  # stitched after block 0
        {"name": "sluice", "options": {"subspaces": 2}},
        {"name": "tensor_factorised", "options": {"method": "tucker", "rank": 8}},
    )
    config.weightings = ({"name": "equal", "options": {}},)
    config.seeds = (0, 1, 2)

    if config.smoke:
        smoke(config, 60, n_train=256, n_validation=128, n_test=128)
    return config
