r"""Ma et al. 2018 (MMoE, KDD), Sec. 5.2: census-income, both task groups.

  python -m launch.run --config experiments/census_income.py
  python -m launch.table results/census_income
  python -m launch.plot results/census_income

Task groups (binary, AUC): group 1 = (income > 50K, never married), group 2 =
(education >= college degree, never married); the label columns are removed
from the inputs (482 features: 7 standardised numeric, the rest one-hot).

Data difference to the paper: only the UCI test split (99,762 rows) exists
offline here, so the ``census_income`` builder splits it by a seeded
permutation (seed 0) into 70% train / 15% validation / 15% test (69,833 /
14,965 / 14,964 rows); the paper trains on the 199,523-row train split and
splits the test split 1:1 into validation and test. A user online gets the
paper's split by setting ``--config.run.task_set.options.manual_dir=''``
(download the originals; the builder then uses both files).

Sizes (the paper tunes them and does not list all): MMoE/OMoE use 8 experts of
one dense layer of 4 units (the sizes of the widely used Keras reference
implementation), every other model one dense layer of 32 units in total per
task column or shared bottom (so bottoms have ~15k parameters each); towers
one hidden layer of 8 units. Adam, lr 1e-3, batch 256, 4000 steps (~15
epochs), 3 seeds. The table reports the mean +- 95% CI test AUC over seeds at the
final step; the paper's columns are best / mean over runs of the main task and
mean / at-best of the marital task. Expect: every model near the paper's AUCs
except tensor factorisation, which the paper reports far lower. The
``tucker_independent`` entry tests one explanation of that collapse (factors
drawn independently instead of decomposed from a dense draw): it trains as
well as the decomposed start, so that is not it (results/README.md).
"""

import ml_collections

from mtlx.grid import dotted, experiment_config, smoke

BOTTOM = [{"kind": "dense", "features": 32}]
COLUMN = [{"kind": "dense", "features": 16}]
EXPERT = [{"kind": "dense", "features": 4}]

PAPER = {  # best main / mean main / mean marital / marital at best main (AUC)
    1: {"single_task": (.9398, .9337, .9933, .9922), "hard": (.9361, .9295, .9915, .9921),
        "soft_l2": (.9389, .9359, .9922, .9918), "cross_stitch": (.9406, .9361, .9917, .9922),
        "tensor_factorised": (.7460, .6765, .8175, .8412), "omoe": (.9387, .9319, .9928, .9923),
        "mmoe": (.9410, .9359, .9926, .9927)},
    2: {"single_task": (.8843, .8792, .9933, .9922), "hard": (.8836, .8813, .9927, .9917),
        "soft_l2": (.8855, .8823, .9923, .9918), "cross_stitch": (.8855, .8819, .9919, .9921),
        "tensor_factorised": (.7367, .7256, .7453, .7497), "omoe": (.8852, .8813, .9915, .9912),
        "mmoe": (.8860, .8826, .9932, .9924)},
}
COLUMNS = ("best main AUC", "mean main AUC", "mean marital AUC", "marital AUC at best main")


def get_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(f"experiments/census_income.py: unknown argument {arg!r}; use nothing or 'smoke'")
    config = experiment_config()
    config.experiment = "census_income"
    config.smoke = arg == "smoke"
    run = config.run
    run.task_set.name = "census_income"
    run.task_set.options = ml_collections.ConfigDict({"manual_dir": "../shared/data", "group": 1, "seed": 0})
    run.backbone.blocks = COLUMN
    run.backbone.head_hidden = [8]
    run.optimizer.learning_rate = 1e-3
    run.update({"steps": 4000, "batch_size": 256, "eval_every": 500, "log_every": 100, "checkpoint_every": 2000,
                "eval_batch_size": 4096})
    config.architectures = (
        {"name": "single_task"},
        {"name": "hard", "options": {"split": -1}, "overrides": {"backbone.blocks": BOTTOM}},
        {"name": "soft_l2", "options": {"strength": 1e-3}},
        {"name": "cross_stitch", "options": {"units": "scalar", "stitch_after": (0,)}},
        {"name": "tensor_factorised", "options": {"method": "tucker", "rank": 8}},
        # the README's hypothesis for the paper's Tucker collapse: factors drawn independently, not decomposed
        {"name": "tensor_factorised", "label": "tucker_independent",
         "options": {"method": "tucker", "rank": 8, "factor_init": "independent"}},
        {"name": "omoe", "options": {"num_experts": 8}, "overrides": {"backbone.blocks": EXPERT}},
        {"name": "mmoe", "options": {"num_experts": 8}, "overrides": {"backbone.blocks": EXPERT}},
    )
    config.weightings = ({"name": "equal"},)
    config.seeds = (0, 1, 2)
    config.sweep = dotted({"task_set.options.group": [1, 2]})
    config.paper = dotted({
        "metric_columns": list(COLUMNS),
        "rows": {f"{arch} [group={g}]": dict(zip(COLUMNS, vals)) for g, rows in PAPER.items() for arch, vals in rows.items()},
        "note": "Ma et al. 2018, Table 3 (group 1: income, marital) and Table 4 (group 2: education, marital). "
                "Ours: 70/15/15 split of the 99,762-row UCI test split only (the train split is not available "
                "offline), mean +- 95% CI over 3 seeds at the final step.",
    })
    if config.smoke:
        smoke(config, 40)
    return config
