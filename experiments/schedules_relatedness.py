r"""Training schedules and task relatedness on a synthetic set whose relatedness is known (issue 19, items 4-5).

  python -m launch.run --config experiments/schedules_relatedness.py
  python -m launch.table results/schedules_relatedness
  python -m launch.plot results/schedules_relatedness

Six classification tasks (``synthetic_classification``: 5 classes, inputs x ~
N(0, I_32)) in two groups of three: each group's labels read a projection of x
shared within the group only (``groups=2``, weight 0.9), plus one private
projection per task. The tasks have unequal labelled training data
(``train_labelled``: 100%, 50%, 20% of 2000 examples in each group), so that
sampling proportional to data size differs from uniform sampling.

One architecture (hard sharing: a 64-64 shared trunk, one linear head per
task), equal loss weighting, Adam (lr 1e-3, batch 128, 3000 steps), 5 seeds;
five schedules (mtlx.schedules; the run's ``training`` section), one per
"weighting" entry of the grid:

  joint            every task's loss in every step (today's step);
  alt_uniform      alternating training, one task per step drawn uniformly;
  alt_proportional drawn with probability proportional to its labelled examples;
  alt_annealed     p_t ~ N_t^alpha, alpha from 1 to 0 over the run (Stickland & Murray 2019);
  task_lrs         joint, each head at its own learning rate: lr * N_t / N_max
                   (the heads of label-scarce tasks move slower).

Every run logs, every 50 steps, the pairwise cosine of the tasks' gradients of
the shared trunk, the conflict rate and gradient norms, and TAG's lookahead
affinity (Fifty et al. 2021) with an SGD step of 0.1 (mtlx.relatedness).
``launch.plot`` draws per schedule the relatedness heatmaps over training and
writes a grouping suggestion beside each (``figures/relatedness_*.json``): per
measure, the partition of the tasks with the largest within-group cosine /
affinity, to compare with the true groups {task0, task1, task2} and {task3,
task4, task5}. Measured (results/schedules_relatedness, 5 seeds): over the EARLY
window (the first fifth of the logged steps, steps 50-600; ``early`` in the json) the
mean cosine's best partition into two groups is exactly the true one under all five
schedules, and its best partition overall never puts tasks of different groups together
({task0, task1, task2} or {task0, task1}, {task2}; {task3}, {task4, task5}); TAG's
affinity (one SGD step of 0.1) gives the true two groups under the three alternating
schedules, not under joint training or task_lrs. Averaged over the whole run the
structure fades under joint training (task3 joins the first group): once the trunk has
converged the gradients carry less of it; under alt_uniform the whole run's cosine
still gives exactly the true partition. Alternating training beat joint training on
every task here (the annealed sampling best: avg rank 1.5 of 5).
(tests/unit/test_relatedness.py shows both measures ranking
within-group pairs first on a smaller set, early in training.)

  python -m launch.run --config experiments/schedules_relatedness.py:smoke --workdir /tmp/sr

shrinks it to seconds (1 seed, 60 steps, 256 examples; 29 s wall for its 5 runs
on a busy 2-core machine). A full-length run took 8-14 s there (3000 steps), so
the 25 runs take about 5 minutes.
"""

import ml_collections

from mtlx.grid import experiment_config, smoke

LABELLED = (1.0, 0.5, 0.2, 1.0, 0.5, 0.2)
LEARNING_RATE = 1e-3
RELATEDNESS = {"relatedness_every": 50, "affinity": True, "affinity_lr": 0.1}


def training(**kw) -> dict:
    """A full ``training`` section: the relatedness logging of every run plus ``kw``."""
    base = {"schedule": "joint", "sampling": "uniform", "anneal_to": 0.0, "task_learning_rates": {}}
    return {**base, **RELATEDNESS, **kw}


SCHEDULES = {
    "joint": training(),
    "alt_uniform": training(schedule="alternating", sampling="uniform"),
    "alt_proportional": training(schedule="alternating", sampling="proportional"),
    "alt_annealed": training(schedule="alternating", sampling="annealed"),
    "task_lrs": training(task_learning_rates={f"task{t}": LEARNING_RATE * f / max(LABELLED)
                                              for t, f in enumerate(LABELLED)}),
}


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/schedules_relatedness.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = experiment_config()
    config.experiment = "schedules_relatedness"
    config.smoke = arg == "smoke"
    run = config.run
    run.task_set.name = "synthetic_classification"
    run.task_set.options = ml_collections.ConfigDict({
        "num_tasks": 6, "num_classes": 5, "dim": 32, "shared_fraction": 0.9, "groups": 2,
        "train_labelled": LABELLED, "n_train": 2000, "n_validation": 1000, "n_test": 2000, "seed": 0})
    run.backbone.blocks = [{"kind": "dense", "features": 64}, {"kind": "dense", "features": 64}]
    run.backbone.head_hidden = []
    run.optimizer.learning_rate = LEARNING_RATE
    run.update({"steps": 3000, "batch_size": 128, "eval_every": 500, "log_every": 50, "checkpoint_every": 500})
    config.architectures = ({"name": "hard", "options": {"split": -1}},)
    config.weightings = tuple({"name": "equal", "options": {}, "label": label, "overrides": {"training": t}}
                              for label, t in SCHEDULES.items())
    config.seeds = (0, 1, 2, 3, 4)
    if config.smoke:
        smoke(config, 60, n_train=256, n_validation=128, n_test=128)
        for w in config.weightings:
            w["overrides"]["training"]["relatedness_every"] = 20
    return config
