"""A fake experiment directory with known numbers, written through mtlx.results' writers.

    <root>/experiment.json                                  (results.write_experiment)
    <root>/<run_id>/config.json, metrics.jsonl, summary.json (write_config, metrics_writer, write_summary)

``make_experiment`` returns a ``Fake`` that records every number it wrote
(final metrics per run, training-loss curves, mixing weights), so that tests
can recompute means, stds and delta_m by hand. ``tasks`` may be a function of
the sweep point, for a swept option that changes the task set (as
census-income's ``task_set.options.group`` does).
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from typing import Callable

import numpy as np

from mtlx import results, taps

KIND_METRICS = {  # kind -> {metric: higher_is_better}; first metric is the main one
    "classification": {"accuracy": True},
    "binary": {"auc": True, "accuracy": True},
    "regression": {"mse": False},
}
BEST_OFFSET = 0.001  # test_at_best_validation = final metrics + this
FAILED_VALUE = 1.0e6  # what a failed run's summary carries: averaging it in would show


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(json.dumps(key, sort_keys=True, default=str).encode()))


def default_metric(arch: str, weighting: str, seed: int, sweep: dict, task: str, metric: str) -> float:
    """Deterministic, seed-varying, architecture-dependent numbers."""
    r = _rng("metric", arch, weighting, seed, sweep, task, metric)
    arch_shift = {"single_task": 0.0, "hard": 0.02, "cross_stitch": 0.035, "sluice": 0.03}.get(arch, 0.01)
    if metric in ("accuracy", "auc"):
        return float(np.clip(0.80 + arch_shift + 0.01 * r.standard_normal(), 0, 1))
    if metric == "mse":
        return float(0.50 - 2 * arch_shift + 0.02 * r.standard_normal())
    return float(0.40 + 0.05 * r.random())  # loss


@dataclasses.dataclass
class Fake:
    root: str
    tasks: dict  # task -> kind (every task of any sweep point)
    architectures: list
    weightings: list
    seeds: list
    sweep: dict
    metrics: dict = dataclasses.field(default_factory=dict)  # (sweep_json, arch, w, seed) -> {task: {metric: v}}
    curves: dict = dataclasses.field(default_factory=dict)  # (sweep_json, arch, w, seed) -> {task: [(step, loss)]}
    mixing: dict = dataclasses.field(default_factory=dict)  # (sweep_json, arch, w, seed) -> {name: ndarray}
    failed: list = dataclasses.field(default_factory=list)  # run ids
    run_ids: dict = dataclasses.field(default_factory=dict)  # key -> run id
    point_tasks: dict = dataclasses.field(default_factory=dict)  # sweep_json -> {task: kind} at that point
    seed_paths: tuple = ()  # run-config fields set to the run's seed (experiment.json's grid.seed_paths)
    overrides: Callable | None = None  # (arch, w, seed, point) -> {dotted path: value} in the run's config

    def config(self, arch, w, seed, point, steps) -> dict:
        """The run config written to config.json and the summary's ``config``."""
        return _config(arch, w, seed, point, steps, self.seed_paths, self.overrides)

    def tasks_at(self, sweep) -> dict:
        """{task: kind} of the runs at one sweep point."""
        return self.point_tasks[json.dumps(sweep, sort_keys=True)]

    def main_metric(self, task):
        return next(iter(KIND_METRICS[self.tasks[task]]))

    def higher_is_better(self, task, metric=None):
        return KIND_METRICS[self.tasks[task]][metric or self.main_metric(task)]

    def values(self, arch, weighting, sweep, task, metric):
        """Numbers of the finished seeds of one group, in seed order."""
        sj = json.dumps(sweep, sort_keys=True)
        return [self.metrics[(sj, arch, weighting, s)][task][metric] for s in self.seeds
                if (sj, arch, weighting, s) in self.metrics]

    def sweep_points(self):
        fields = list(self.sweep)
        if not fields:
            return [{}]
        pts = [{}]
        for f in fields:
            pts = [dict(p, **{f: v}) for p in pts for v in self.sweep[f]]
        return pts


def _run_id(arch, weighting, seed, point) -> str:
    slug = "-".join(f"{k.split('.')[-1]}{v}" for k, v in sorted(point.items()))
    return f"{arch}-{weighting}-s{seed}" + (f"-{slug}" if slug else "")


DEFAULT_BASELINE = "single_task"  # the label a fake grid names as its baseline when it has one


def _experiment_json(fake: Fake, name, paper, arch_names, baseline) -> dict:
    """experiment.json's one shape: name, smoke, paper, grid (with the baseline label), runs, run."""
    entry = lambda lab, nm: {"name": nm, "options": {}, "label": lab, "overrides": {}}  # noqa: E731
    grid_runs = [{"run_id": _run_id(a, w, s, p), "architecture": a, "weighting": w, "seed": s, "sweep": p}
                 for p in fake.sweep_points() for s in fake.seeds for a in fake.architectures for w in fake.weightings]
    return {"name": name, "experiment": name, "smoke": False, "paper": paper or {},
            "grid": {"architectures": [entry(a, arch_names.get(a, a)) for a in fake.architectures],
                     "weightings": [entry(w, w) for w in fake.weightings], "seeds": list(fake.seeds),
                     "sweep": fake.sweep, "num_runs": len(grid_runs), "baseline": baseline,
                     "seed_paths": list(fake.seed_paths)},
            "runs": grid_runs, "run": {}}


def _set(cfg: dict, field: str, v) -> None:
    cur = cfg
    parts = field.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = v


def _config(arch, w, seed, point, steps, seed_paths=(), overrides=None) -> dict:
    """The run config: the swept fields at their dotted paths, ``seed_paths`` set to the seed, then
    ``overrides(arch, w, seed, point)`` ({dotted path: value}; e.g. another number of steps for some runs)."""
    cfg = {"architecture": {"name": arch, "options": {}}, "weighting": {"name": w, "options": {}},
           "seed": seed, "steps": max(steps), "task_set": {"name": "fake_task_set", "options": {"seed": 0}}}
    for field, v in point.items():  # the swept field, at its dotted path
        _set(cfg, field, v)
    for field in seed_paths:
        _set(cfg, field, seed)
    for field, v in ((overrides or (lambda *a: {}))(arch, w, seed, point) or {}).items():
        _set(cfg, field, v)
    return cfg


def _relatedness(tasks, r) -> dict:
    """A train record's ``relatedness`` entry (mtlx.relatedness.record): random cosines, unit diagonal."""
    T = len(tasks)
    c = np.clip(r.uniform(-1, 1, (T, T)), -1, 1)
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    return {"tasks": list(tasks), "cosine": c.tolist(), "conflict_rate": float(np.mean(c[np.triu_indices(T, 1)] < 0)),
            "grad_norm": {t: 1.0 for t in tasks}, "magnitude_similarity": np.ones((T, T)).tolist()}


def _write_curves(d, tasks, ai, arch, w, seed, point, steps, relatedness=False) -> tuple[dict, np.random.Generator]:
    """metrics.jsonl: loss_t(step) = scale * exp(-step / 40) + floor + seed noise; one eval record;
    with ``relatedness``, a relatedness entry in every train record."""
    r = _rng("curve", arch, w, seed, point)
    curve = {t: [(s, float((1.0 + 0.3 * ai + 0.2 * ti) * math.exp(-s / 40.0) + 0.05 * seed + 0.01 * r.random()))
                 for s in steps] for ti, t in enumerate(tasks)}
    writer = results.metrics_writer(d)
    for i, s in enumerate(steps):
        writer.write({"step": s, "kind": "train", "losses": {t: curve[t][i][1] for t in tasks},
                      "weights": {t: 1.0 for t in tasks}, "penalty": 0.0,
                      **({"relatedness": _relatedness(tasks, r)} if relatedness else {})})
    for s in steps[len(steps) // 2 - 1::len(steps) // 2] if len(steps) > 1 else steps:  # two eval records
        writer.write({"step": s, "kind": "eval", "validation": {t: {"loss": validation_loss(ai, seed, s)} for t in tasks},
                      "test": {t: {"loss": 0.5} for t in tasks}})
    return curve, r


def validation_loss(ai: int, seed: int, step: int) -> float:
    """The validation loss of every task of a fake eval record."""
    return 2.0 + 0.1 * ai + 0.01 * seed - step / 1000.0


def _mixing(arch, r, T, channels, subspaces) -> dict:
    if arch == "cross_stitch":
        return {taps.mixing_name("stitch", 0): r.uniform(0, 1, (T, T)),
                taps.mixing_name("stitch", 1): r.uniform(0, 1, (T, T, channels))}
    if arch == "sluice":
        return {taps.mixing_name("alpha", 0): r.uniform(0, 1, (T * subspaces,) * 2),
                taps.mixing_name("alpha", 1): r.uniform(0, 1, (T * subspaces,) * 2),
                taps.mixing_name("beta"): r.uniform(0, 1, (T, 3))}
    return {}


def make_experiment(root: str, *, name: str = "fake_experiment", tasks: dict | Callable | None = None,
                    architectures=("single_task", "hard", "cross_stitch", "sluice"), weightings=("equal",),
                    seeds=(0, 1, 2), sweep: dict | None = None, paper: dict | None = None,
                    failed=(), incomplete=(), metric_fn: Callable = default_metric,
                    steps=tuple(range(10, 101, 10)), channels: int = 4, subspaces: int = 2,
                    arch_names: dict | None = None, baseline="default", seed_paths=(),
                    config_overrides: Callable | None = None, relatedness: bool = False) -> Fake:
    """Write a fake experiment; ``failed``/``incomplete``: (arch, weighting, seed, sweep dict) tuples.

    ``tasks``: {task: kind}, or a function sweep point -> {task: kind} when
    the sweep changes the task set (a task name keeps one kind throughout).

    Failed runs get ``status: failed``, a ``failure`` {step, task, message}
    and metrics of FAILED_VALUE; incomplete runs get config.json and
    metrics.jsonl but no summary.json. Their numbers are not recorded in
    ``Fake.metrics``. ``arch_names``: label -> ARCHITECTURES name (default:
    the label), written as ``architecture_name``. ``baseline``: the
    ``grid.baseline`` label (default: DEFAULT_BASELINE when it is one of the
    architectures, else None). ``seed_paths``: run-config fields set to the
    seed (and listed in grid.seed_paths); ``config_overrides(arch, w, seed,
    point)`` -> {dotted path: value} changes some runs' configs (e.g. their
    steps, which the report's pooling guard must refuse to average).
    ``relatedness``: train records carry a relatedness entry (mtlx.relatedness).
    """
    if baseline == "default":
        baseline = DEFAULT_BASELINE if DEFAULT_BASELINE in architectures else None
    fixed = None if callable(tasks) else dict(tasks or {"a": "classification", "b": "regression"})
    tasks_fn = tasks if fixed is None else (lambda point: fixed)
    fake = Fake(root, {}, list(architectures), list(weightings), list(seeds), dict(sweep or {}),
                seed_paths=tuple(seed_paths), overrides=config_overrides)
    for point in fake.sweep_points():
        fake.point_tasks[json.dumps(point, sort_keys=True)] = dict(tasks_fn(point))
        for t, k in fake.point_tasks[json.dumps(point, sort_keys=True)].items():
            if fake.tasks.setdefault(t, k) != k:
                raise ValueError(f"task {t!r} is {fake.tasks[t]!r} at one sweep point and {k!r} at another")
    results.write_experiment(root, _experiment_json(fake, name, paper, dict(arch_names or {}), baseline))
    failed_keys = {(a, w, s, json.dumps(p, sort_keys=True)) for a, w, s, p in failed}
    incomplete_keys = {(a, w, s, json.dumps(p, sort_keys=True)) for a, w, s, p in incomplete}
    for point in fake.sweep_points():
        for ai, arch in enumerate(architectures):
            for w in weightings:
                for seed in seeds:
                    gkey = (arch, w, seed, json.dumps(point, sort_keys=True))
                    if gkey not in incomplete_keys:
                        _write_run(fake, name, point, ai, arch, w, seed, gkey in failed_keys, metric_fn, steps,
                                   channels, subspaces, dict(arch_names or {}), relatedness)
                    else:
                        d = results.run_path(root, _run_id(arch, w, seed, point))
                        results.write_config(d, fake.config(arch, w, seed, point, steps))
                        _write_curves(d, fake.tasks_at(point), ai, arch, w, seed, point, steps)
    return fake


def _write_run(fake, name, point, ai, arch, w, seed, failed, metric_fn, steps, channels, subspaces, arch_names,
               relatedness=False):
    """One finished (done or failed) run: config, curves, summary; its numbers recorded in ``fake``."""
    sj = json.dumps(point, sort_keys=True)
    tasks = fake.point_tasks[sj]
    run_id = _run_id(arch, w, seed, point)
    d = results.run_path(fake.root, run_id)
    results.write_config(d, fake.config(arch, w, seed, point, steps))
    curve, r = _write_curves(d, tasks, ai, arch, w, seed, point, steps, relatedness)
    mix = _mixing(arch, r, len(tasks), channels, subspaces)
    value = (lambda t, m: FAILED_VALUE) if failed else (lambda t, m: metric_fn(arch, w, seed, point, t, m))
    metrics = {t: {m: value(t, m) for m in list(KIND_METRICS[k]) + ["loss"]} for t, k in tasks.items()}
    task_info = {t: {"main_metric": next(iter(KIND_METRICS[k])), "higher_is_better": dict(KIND_METRICS[k]), "index": i}
                 for i, (t, k) in enumerate(tasks.items())}
    summary = {
        "status": results.FAILED if failed else results.DONE, "run_id": run_id, "experiment": name,
        "architecture": arch, "architecture_name": arch_names.get(arch, arch),
        "weighting": w, "weighting_name": w, "seed": seed, "sweep": point,
        "task_set": "fake_task_set", "tasks": task_info, "metrics": metrics, "validation_metrics": metrics,
        "test_at_best_validation": {t: {m: v + BEST_OFFSET for m, v in tm.items()} for t, tm in metrics.items()},
        "param_count": 1000 * (ai + 1), "wall_time_s": 10.0 + seed, "steps_per_s": 100.0,
        "steps": max(steps), "mixing": {k: v.tolist() for k, v in mix.items()},
        "config": fake.config(arch, w, seed, point, steps),
    }
    key = (sj, arch, w, seed)
    if failed:
        summary["failure"] = {"step": 40, "task": "b", "message": "NonFiniteLoss: loss of task b is nan at step 40"}
        fake.failed.append(run_id)
    else:
        fake.metrics[key] = metrics
        fake.curves[key] = curve
        fake.mixing[key] = mix
    fake.run_ids[key] = run_id
    results.write_summary(d, summary)
