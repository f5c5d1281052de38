r"""The scalarisation frontier on MultiFashion (Xin et al. 2022): do gradient-based weightings beat a static sweep?

  python -m launch.run --config experiments/scalarization_frontier.py
  python -m launch.table results/scalarization_frontier
  python -m launch.plot results/scalarization_frontier

Xin, Ghorbani, Garg, Firat & Gilmer (2022, "Do current multi-task
optimization methods in deep learning even help?", NeurIPS) compare
multi-task optimisers with the frontier that plain scalarisation
``w L_left + (1 - w) L_right`` traces as w sweeps [0, 1], every point tuned
like the methods; they find the methods on or inside it. This experiment
asks the same on MultiFashion (two tasks, ``left`` and ``right`` item, 10
classes each) with the LeNet of ``experiments/mgda_multimnist.py`` (shared
conv 10@5 - pool - conv 20@5 - pool - FC 50, heads FC 50 - FC 10), hard
sharing, Adam, batch 256, 600 steps.

Rows (one architecture, hard sharing): ``equal``; the static sweep
``static_w0.1`` ... ``static_w0.9`` (``mtlx.frontier.static_sweep(9)``:
weights (w, 1 - w) for the left and right task, summing to 1 where equal's
sum to 2; the ends w = 0, 1 are left out, see ``mtlx.frontier``); and the
gradient-based weightings of ``GRADIENT`` with their default options. Every
row is tuned alike (``mtlx.tune``): a grid search over Adam's learning rate
{3e-4, 1e-3, 3e-3, 1e-2, 3e-2}, each candidate trained with search seed 100,
selected on the validation split (the mean over the two tasks of the
validation accuracy: there is no single-task baseline, so no Δm%), then rerun
with seeds 0, 1, 2 and reported on test. 21 rows x 5 = 105 search runs and 63
final runs. (A first search over {3e-4, 1e-3, 3e-3} selected 3e-3, its top
edge, for every row: the optimum was not bracketed, so the grid was widened
upwards; the table marks any selection still at an edge.)
``parallel.runs_per_program = 0``: runs differing only in seed, learning rate
or static weights share one compiled program, so the whole static sweep x
learning rates (27 search runs) is ONE program, and so are its 27 final
runs; each other row is one program per stage. Measured on the 2-core CPU
(wall time, ``nice -n 10``): the first search (63 runs) 41 min while two other
sweeps shared the cores; the widening (42 more search runs) 20 min and the
63 final runs 23 min with the cores to itself except for one other sweep for
the first minutes. A gradient-based row's program of 3 runs takes 65-130 s,
the static sweep's 27 final runs one program of 470 s.

Result (results/scalarization_frontier, results/README.md): every row chose
learning rate 1e-2 (inside the range); no method lies beyond the frontier
significantly; MGDA-UB and IMTL lie just beyond it, not significantly (Holm
p = 1); equal and the other gradient-based weightings on or inside it.

What comes out: the table's notes say, for every non-static row, whether its
mean test accuracies lie beyond the frontier of the static rows' means (the
upper-right Pareto envelope, piecewise linear between adjacent sweep points)
and whether that is significant: against every sweep point of the envelope,
Welch's t-test on the seeds of one task at least, intersected over the points,
Holm-corrected across rows (``mtlx.report.frontier``). The figure
``frontier_left_vs_right.png`` draws the frontier line through the static
rows' means, every run as a small point and every row's mean with its 95% CI.

  python -m launch.run --config experiments/scalarization_frontier.py:smoke --workdir /tmp/frontier
  python -m launch.table /tmp/frontier
  python -m launch.plot /tmp/frontier

is the protocol shrunk to seconds, without ../shared/data: the registered
``synthetic_classification`` task set with two tasks (``task0``, ``task1``;
256 training examples), a 16-unit MLP, 40 steps, the sweep w in {0.25, 0.5,
0.75}, equal and MGDA, two learning rates, two final seeds: 10 search runs
(3 programs) and 10 final runs (3 programs). Measured on the 2-core CPU
machine while other jobs ran (load average 10-12): launch.run 9-14 s of CPU
time, 25-45 s wall (mostly compilation); launch.table 1 s CPU, 3 s wall;
launch.plot 2 s CPU, 6 s wall. There static_w0.5 and equal reach the same
numbers at the same learning rate (Adam is blind to the loss scale).
"""

import ml_collections

from experiments.mgda_multimnist import lenet_on
from mtlx.frontier import static_sweep
from mtlx.grid import experiment_config, smoke
from mtlx.tune import tune_config

GRADIENT = ("mgda", "mgda_ub", "pcgrad", "cagrad", "imtl", "nash_mtl", "aligned_mtl", "upgrad", "graddrop",
            "gradvac", "fairgrad")  # gradient-based weightings defined for two tasks (the robust ones need many)
LEARNING_RATES = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
SWEEP_POINTS = 9  # w = 0.1, ..., 0.9


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/scalarization_frontier.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = experiment_config()
    config.experiment = "scalarization_frontier"
    config.smoke = arg == "smoke"
    run = config.run
    lenet_on(run, "multi_fashion")
    run.update({"steps": 600, "batch_size": 256, "eval_every": 300, "log_every": 50, "checkpoint_every": 300,
                "eval_batch_size": 2000})
    config.architectures = ({"name": "hard", "options": {"split": -1}},)
    config.weightings = ({"name": "equal"},) + static_sweep(SWEEP_POINTS) + tuple({"name": n} for n in GRADIENT)
    config.seeds = (0, 1, 2)  # the final (reported) seeds
    config.tune = tune_config({"optimizer.learning_rate": LEARNING_RATES}, search="grid", search_seeds=(100,))
    config.parallel.runs_per_program = 0  # the static sweep x learning rates: one program
    if config.smoke:
        _shrink(config)
    return config


def _shrink(config) -> None:
    """The smoke variant: a synthetic two-task set (nothing read from disk), an MLP, three sweep points."""
    run = config.run
    run.task_set.name = "synthetic_classification"
    run.task_set.options = ml_collections.ConfigDict({
        "num_tasks": 2, "num_classes": 3, "dim": 16, "n_train": 256, "n_validation": 128, "n_test": 128, "seed": 0})
    run.backbone.blocks = [{"kind": "dense", "features": 16}]
    run.backbone.head_hidden = []
    run.update({"batch_size": 64, "eval_batch_size": 128})
    smoke(config, 40)
    config.seeds = (0, 1)  # two final seeds: the frontier's significance test runs (n = 1 has none)
    config.weightings = ({"name": "equal"},) + static_sweep(3) + ({"name": "mgda"},)
    config.tune.space["optimizer.learning_rate"] = LEARNING_RATES[1:3]
