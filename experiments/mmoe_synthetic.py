r"""Ma et al. 2018 (MMoE, KDD), Sec. 4: every architecture vs task correlation.

  python -m launch.run --config experiments/mmoe_synthetic.py
  python -m launch.run --config experiments/mmoe_synthetic.py --parallel=2   # 2 processes
  python -m launch.table results/mmoe_synthetic
  python -m launch.plot results/mmoe_synthetic

Two regression tasks on x ~ N(0, I_100) whose weight vectors have cosine
correlation p (``mmoe_synthetic``, Sec. 4.1: y_k = w_k.x + sum of 10 sines + noise;
targets standardised), for p in {1.0, 0.9, 0.5, 0.0}; the nine architectures
of ``COMPARED``, 200 seeds per (architecture, p) as in the paper, each
run with its own draw of the data as well as its own init (``seed_paths``
sets ``task_set.options.seed`` to the run's seed), equal weighting, Adam (lr 1e-3, batch 128, 10000 steps), 100000 / 1000 / 10000
train / validation / test examples. Metrics: the training loss curves (what the
paper's Fig. 4 plots) and test MSE per task (lower is better).

Sizes. Our reading of Sec. 4.3: input dim 100; MMoE / OMoE with 8 experts,
each one dense layer of 16 units; a shared-bottom model with one shared layer
of 113 units; towers of one hidden layer of 8 units for every model. These are
small enough for a CPU as they are, and so is the paper's number of repeats
once the seeds of one (architecture, p) train as one program
(``parallel.runs_per_program = 50``, capped by the launcher at 25 so that 25
stacked 100000-example draws fit ``on_device_max_bytes``): each program of 25
runs took 50-60 s on this 2-core machine (shared; about 2 s per run, against
2.2-3.6 s alone), so the 7200 runs take about 4-5 CPU hours. Programs go
seed block by seed block over every (architecture, p), so an unfinished sweep
has the same number of runs in every row (the table's n column). Architectures with one column per
task (single_task, cross_stitch, sluice, soft_l2, soft_trace, tensor_factorised)
get one dense layer of 64 units per task, so that every model has about
13-15k parameters (measured: MMoE 14.8k, OMoE 14.0k, shared bottom 13.3k, the
two-column models 14.0k; tensor_factorised 2.6k, its Tucker rank 8 being the
point): the comparison is at (roughly) equal size, as in the paper.

What the paper reports (Fig. 4): at p = 1 the models fit both tasks about
equally well; as p falls the shared bottom degrades most, OMoE less, MMoE
least. single_task is the p-free baseline.

Why the first version of this experiment disagreed with the paper (issue 16).
It trained on 10000 examples for 2500 steps (32 epochs) on one draw of the
data (task_set seed 0 for every run). That made it a test of generalisation
from a small sample in 100 dimensions, not of trainability: at the last step
the train MSE of single_task, hard and MMoE was 4-6x below their test MSE
(MMoE at p = 1: 0.047 train vs 0.20 test), all still improving (the best
validation step was the last), and the input-dependent gates of MMoE / OMoE
overfit most (the 2.6k-parameter tensor_factorised model was best). And data
seed 0 is the hardest draw we saw: its sines all but cancel the linear term
(a linear fit explains 0.4% of y1's variance, vs 96-98% for seeds 2 and 3),
so every model first sits on a plateau whose length the init decides; hence
the spread over seeds (single_task y1: 0.46 for seed 0, about 0.1 for seeds
1 and 2). The generator and MMoE match the paper's equations
(tests/unit/test_mmoe_synthetic.py); no bug was found.

Measured in the investigation's controlled runs (test MSE per task, runs paired
on the data draw; ad-hoc runs, not committed -- the committed table is this
file's sweep): with 100000
training examples, 10000 steps and a data seed per run (6 draws), MMoE has the
lowest mean test MSE at every p in {1, 0.9, 0.5, 0} (0.0085-0.0097 on y1 vs
single_task's 0.020), 0.55-0.74x single_task's paired on the draw, OMoE next,
the shared bottom at or behind single_task and furthest behind at p = 0
(1.35-1.44x); at 2500 steps (p = 1 and 0) MMoE is first too. With 10000 training
examples the edge is gone: at p = 0 MMoE trails single_task and the shared
bottom at 2500 and at 10000 steps (10000 steps only widen the train/test gap,
to 10-20x). A zero-initialised gate (uniform mixture at the start) narrows
MMoE's gap with 10000 examples (p = 0, seed 0: 0.34 -> 0.11) but changes
nothing with 100000, so the default init stays.

Time (measured on this 2-core machine, shared): 3100-5400 steps/s for one run
alone, so a 10000-step run takes 2.2-3.6 s with the compilation cache warm
(3-5 s cold); in programs of 25, about 2 s per run including its data draw.

  python -m launch.run --config experiments/mmoe_synthetic.py:smoke --workdir /tmp/mmoe

is every architecture at p = 0.5, one seed, 50 steps on 512 examples (seconds
per run), to check the wiring.
"""

import ml_collections

from mtlx.grid import dotted, experiment_config, smoke

EXPERT = [{"kind": "dense", "features": 16}]  # one MMoE expert (x 8 experts)
SHARED_BOTTOM = [{"kind": "dense", "features": 113}]  # the paper's shared bottom
COLUMN = [{"kind": "dense", "features": 64}]  # one per-task column (two of them ~ 8 x 16 expert units)

OPTIONS = {  # per architecture; every other registered one runs with its defaults over COLUMN
    "hard": {"options": {"split": -1}, "label": "hard", "overrides": {"backbone.blocks": SHARED_BOTTOM}},
    "mmoe": {"options": {"num_experts": 8}, "overrides": {"backbone.blocks": EXPERT}},
    "omoe": {"options": {"num_experts": 8}, "overrides": {"backbone.blocks": EXPERT}},
    "cross_stitch": {"options": {"units": "scalar", "stitch_after": (0,)}},
    "sluice": {"options": {"subspaces": 2}},
    "tensor_factorised": {"options": {"method": "tucker", "rank": 8}},
}


# the architectures compared (the committed runs'); the mixture-of-experts relatives added since (cgc, ple,
# dselect_k) join with an entry in OPTIONS matching MMoE's 8 x 16 expert units and a name here
COMPARED = ("single_task", "hard", "cross_stitch", "sluice", "soft_l2", "soft_trace", "mmoe", "omoe",
            "tensor_factorised")


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/mmoe_synthetic.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = experiment_config()
    config.experiment = "mmoe_synthetic"
    config.smoke = arg == "smoke"

    run = config.run
    run.task_set.name = "mmoe_synthetic"
    run.task_set.options = ml_collections.ConfigDict({
        "correlation": 0.5, "dim": 100, "num_sin": 10, "noise_std": 0.1,
        "n_train": 100000, "n_validation": 1000, "n_test": 10000, "seed": 0})
    run.backbone.blocks = COLUMN
    run.backbone.head_hidden = [8]  # the towers
    run.optimizer.name = "adam"
    run.optimizer.learning_rate = 1e-3
    run.update({"steps": 10000, "batch_size": 128, "eval_every": 1000, "log_every": 100, "checkpoint_every": 5000})

    config.architectures = tuple(
        {"name": name, "options": OPTIONS.get(name, {}).get("options", {}),
         "overrides": OPTIONS.get(name, {}).get("overrides", {})} for name in COMPARED)
    config.weightings = ({"name": "equal", "options": {}},)
    config.seeds = tuple(range(200))  # the paper's 200 runs per p
    config.parallel.runs_per_program = 50  # 50 seeds (each its own data draw) per compiled program
    config.seed_paths = ("task_set.options.seed",)  # every run draws its own data (Ma et al.: 200 draws per p)
    config.sweep = dotted({"task_set.options.correlation": [1.0, 0.9, 0.5, 0.0]})
    config.paper = dotted({
        "metric_columns": [],
        "rows": {},
        "note": "Ma et al. 2018 report this experiment as curves (Fig. 4: training loss vs steps per correlation, "
                "200 runs each), not a table: MMoE < OMoE < Shared-Bottom in loss, the gap growing as p falls. "
                "Ours: up to 200 runs per p (the n column: the sweep runs in parts), each its own data draw, final "
                "test MSE, tests paired by seed. With 90-125 runs per p: MMoE significantly ahead of single_task "
                "on both tasks at every p (OMoE on at least one) and the shared bottom going from Delta_m +4% at p = 1 "
                "to -9% at p = 0: the paper's ordering over the shared bottom holds, its gap growing as p falls; "
                "MMoE is not alone in front (tensor_factorised level with it, best mean at p = 0.9 and 0, "
                "intervals overlapping); the verdict is revisited once every row has its 200 runs.",
    })

    if config.smoke:
        smoke(config, 50, n_train=512, n_validation=128, n_test=128)
        config.sweep = dotted({"task_set.options.correlation": [0.5]})
    return config
