"""What the two DMTRL experiments (``dmtrl_one_vs_all``, ``dmtrl_omniglot``) share: the
argument grammar and the second stage (tensor factorisation initialised from the first
stage's single-task runs).

Yang & Hospedales 2017 (ICLR, Sec. 4, "Implementation Details"): train the single-task
networks first, stack each layer's T kernels into one tensor, decompose it (SVD for LAF,
HOSVD-like for Tucker, TT-SVD for TT) with the ranks set by a maximum relative
reconstruction error eps = 10% ("throughout"), and train the factorised network from
there; biases are not shared. Hence two stages in one workdir:

  stage 1   ``<file>.py``: single_task and the baselines (every sweep value x seed).
  stage 2   ``<file>.py:factorised,<sweep leaf>=<value>,...,seed=<s>``: LAF / Tucker / TT
            for ONE sweep cell and seed, each ``init_from_run`` = the stage-1
            single_task run of that cell and seed: a pattern ``<workdir>/<its run id
            without the config hash>-*`` (computed by expanding the stage-1 grid, no
            files read here), which must match exactly one finished run when the
            model is built. Give stage 2 the same ``--config.run.*`` overrides as
            stage 1 (its single_task row is then the stage-1 run, found done). The
            grid machinery cannot pair a run with another run of the same cell,
            hence one launch per cell and seed.

Both stages write into the same workdir (same experiment name), so tables and figures
read them together; ``workdir=<dir>`` in the argument when it is not the default.
"""

from __future__ import annotations

import os

from mtlx import grid

TF_METHODS = ("laf", "tucker", "tt")
REL_ERROR = 0.1  # the paper's eps = 10%, "throughout"


def parse_arg(arg, file: str, variants=("smoke",)) -> tuple[set, dict]:
    """``'smoke,factorised,train_fraction=0.1,seed=0'`` -> ({'smoke', 'factorised'}, {'train_fraction': 0.1, 'seed': 0})."""
    flags, keys = set(), {}
    for tok in [t for t in str(arg or "").split(",") if t]:
        if "=" in tok:
            k, v = tok.split("=", 1)
            keys[k] = _value(v)
        elif tok in ("factorised", *variants):
            flags.add(tok)
        else:
            raise ValueError(f"experiments/{file}: unknown argument {tok!r}; use {', '.join(variants)}, "
                             f"'factorised,<sweep leaf>=<value>,...,seed=<s>[,workdir=<dir>]'")
    if keys and "factorised" not in flags:
        raise ValueError(f"experiments/{file}: {sorted(keys)} given without 'factorised'")
    return flags, keys


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def stl_run_dir(stage1, keys: dict, file: str) -> tuple[str, dict, int]:
    """(run dir, {sweep path: value}, seed) of stage 1's single_task run named by ``keys``."""
    keys = dict(keys)
    workdir = keys.pop("workdir", "") or grid.default_workdir(stage1.experiment)
    if "seed" not in keys:
        raise ValueError(f"experiments/{file}: factorised needs seed=<s> (one of {tuple(stage1.seeds)})")
    seed = keys.pop("seed")
    paths = {p.split(".")[-1]: p for p in stage1.sweep}
    missing, unknown = sorted(set(paths) - set(keys)), sorted(set(keys) - set(paths))
    if missing or unknown:
        raise ValueError(f"experiments/{file}: factorised needs one value for each sweep leaf {sorted(paths)}; "
                         f"missing {missing}, unknown {unknown}")
    cell = {paths[k]: v for k, v in keys.items()}
    for r in grid.expand(stage1):
        if r["architecture_name"] == "single_task" and r["seed"] == seed and r["sweep"] == cell:
            # the id without its config hash: overrides given to stage 1 (e.g. --config.run.steps) change
            # the hash; init_from_run's pattern must still match exactly one run
            return os.path.join(workdir, r["run_id"].rsplit("-", 1)[0] + "-*"), cell, seed
    raise ValueError(f"experiments/{file}: stage 1 has no single_task run at {cell}, seed {seed}; "
                     f"sweep values are {dict(stage1.sweep)}, seeds {tuple(stage1.seeds)}")


def factorised_stage(stage1, keys: dict, file: str):
    """Stage 2: stage 1's config, that cell and seed only, with its single_task entry (the stage-1 run
    itself, same id: found done, so the baseline stays in experiment.json) and LAF / Tucker / TT (ranks
    'auto' at eps = 10%, initialised from that single_task run)."""
    run_dir, cell, seed = stl_run_dir(stage1, keys, file)
    config = stage1
    stl = tuple(a for a in stage1.architectures if a["name"] == "single_task")  # the same run: already done
    config.architectures = stl + tuple(
        {"name": "tensor_factorised", "label": m,
         "options": {"method": m, "rank": "auto", "rel_error": REL_ERROR, "init_from_run": run_dir}}
        for m in TF_METHODS)
    config.seeds = (seed,)
    config.sweep = grid.dotted({p: [v] for p, v in cell.items()})
    return config


def stage2_commands(file: str, stage1, extra: str = "") -> list[str]:
    """The stage-2 launch commands, one per sweep cell and seed (for the docstrings and the lead)."""
    import itertools

    leaves = [p.split(".")[-1] for p in stage1.sweep]
    out = []
    for combo in itertools.product(*stage1.sweep.values()):
        for s in stage1.seeds:
            sel = ",".join(f"{k}={v}" for k, v in zip(leaves, combo))
            out.append(f"python -m launch.run --config experiments/{file}:{extra}factorised,{sel},seed={s}")
    return out


def get_config(arg, file: str, stage1):
    """An experiment file's ``get_config``: its stage 1 (``:smoke`` shrunk), or with ``factorised``
    the stage-2 runs (LAF / Tucker / TT from the finished STL run) of one cell and seed."""
    flags, keys = parse_arg(arg, file)
    config = stage1("smoke" in flags)
    if "factorised" in flags:
        config = factorised_stage(config, keys, file)
    return config
