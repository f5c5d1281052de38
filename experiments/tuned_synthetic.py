r"""A tuned comparison: every row gets the same random search, selected on validation, reported on fresh seeds.

  python -m launch.run --config experiments/tuned_synthetic.py
  python -m launch.table results/tuned_synthetic
  python -m launch.plot results/tuned_synthetic

Task set: ``synthetic_classification`` (4 tasks, 5 classes, 32 inputs, 1000
training examples; nothing is downloaded). Rows: single_task (equal), hard and
cross_stitch, each with equal weighting and with CAGrad (Liu et al. 2021).
The tuning protocol (``mtlx.tune``): a random search of 8 configurations per
row over the learning rate (log-uniform in [3e-4, 3e-2]) and Adam's weight
decay ({0, 1e-4}), and for the CAGrad rows also CAGrad's c ({0.2, 0.5, 0.8}),
each configuration trained with search seed 100; per row the configuration
with the best validation Δm% (against single_task's mean validation accuracy
over its candidates) is rerun with seeds 0, 1, 2 and reported on test. Every
row has the same budget (8), and candidate k has the same learning rate and
weight decay in every row. 5 rows x 8 = 40 search runs and 15 final runs of
1500 steps (a 64-64 MLP); not measured here.

The table has a ``tuned`` column with each row's selected values ("best of
8"), and its notes state the search, the spaces, the seeds and the
selection; ``tuning.json`` in the workdir holds every candidate's validation
scores. Stopped and relaunched, it resumes (finished search runs are kept;
the final runs start once every search run has finished).

  python -m launch.run --config experiments/tuned_synthetic.py:smoke --workdir /tmp/tuned

is the same protocol shrunk (60 steps, 256 examples, 2 configurations per
row, one final seed): 10 search runs and 5 final runs, then the table.
Measured on the 2-core CPU machine while other jobs ran: 28 s of CPU time,
100 s wall (mostly compilation; the CAGrad runs compile the Gram step).
"""

import ml_collections

from experiments import quickstart
from mtlx.tune import tune_config


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/tuned_synthetic.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = quickstart.get_config(arg)  # the quickstart's task set, backbone, optimizer and budget
    config.experiment = "tuned_synthetic"
    config.architectures = (
        {"name": "single_task", "weightings": ("equal",)},
        {"name": "hard", "options": {"split": -1}},
        {"name": "cross_stitch", "options": {"units": "scalar"}},
    )
    config.weightings = (
        {"name": "equal"},
        {"name": "cagrad", "tune": {"weighting.options.c": [0.2, 0.5, 0.8]}},  # its own hyperparameter
    )
    config.seeds = (0,) if config.smoke else (0, 1, 2)  # the final seeds: the reported runs
    config.tune = tune_config({"optimizer.learning_rate": {"log_uniform": [3e-4, 3e-2]},
                               "optimizer.weight_decay": [0.0, 1e-4]},
                              search="random", budget=2 if config.smoke else 8, seed=0, search_seeds=(100,))
    return config
