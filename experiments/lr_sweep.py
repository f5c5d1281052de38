r"""A learning-rate sweep as ONE compiled program: 8 learning rates x 3 seeds per architecture.

  python -m launch.run --config experiments/lr_sweep.py
  python -m launch.run --config experiments/lr_sweep.py --config.parallel.runs_per_program=1 --workdir /tmp/lr1

The quickstart's task set (synthetic_classification: 4 tasks, 1000 training
examples) and MLP, hard sharing and single_task, equal weighting, Adam at
learning rates 1e-4 .. 6e-2 (8 values, about 2.5x apart), 3 seeds, 1500 steps.
``parallel.runs_per_program = 0`` lets the launcher put every run of one
architecture into one program (``mtlx.parallel.population``): 24 runs whose
configs differ only in seed and learning rate share one compilation, their
states stacked and the step vmapped; each still writes its own run directory
(config.json, metrics.jsonl, summary.json, checkpoints), exactly as when
trained alone (to float round-off). The second command trains the same 48
runs one per program, for comparison (the run ids are the same: ``parallel``
is not part of a run's config).

The table then has one row per (architecture, learning rate) with 3 seeds
each; ``python -m launch.plot results/lr_sweep`` draws the sweep figure.

  python -m launch.run --config experiments/lr_sweep.py:smoke --workdir /tmp/lr

shrinks it to seconds (2 seeds, 60 steps, 256 examples).
"""

import ml_collections

from experiments import quickstart
from mtlx.grid import dotted, smoke

LEARNING_RATES = [1e-4, 2.5e-4, 6e-4, 1.5e-3, 4e-3, 1e-2, 2.5e-2, 6e-2]


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/lr_sweep.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = quickstart.get_config()
    config.experiment = "lr_sweep"
    config.smoke = arg == "smoke"
    config.architectures = ({"name": "single_task", "options": {}}, {"name": "hard", "options": {"split": -1}})
    config.seeds = (0, 1, 2)
    config.sweep = dotted({"optimizer.learning_rate": LEARNING_RATES})
    config.parallel.runs_per_program = 0  # every run of one architecture in one program
    if config.smoke:
        smoke(config, steps=60, n_train=256, n_validation=128, n_test=128)
        config.seeds = (0, 1)
    return config
