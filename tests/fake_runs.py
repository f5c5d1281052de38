"""A fake experiment directory with known numbers, in exactly launch.run's layout.

    <root>/experiment.json
    <root>/<run_id>/config.json, metrics.jsonl, summary.json

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
import os
import zlib
from typing import Callable

import numpy as np

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


def _write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)


def make_experiment(root: str, *, name: str = "fake_experiment", tasks: dict | Callable | None = None,
                    architectures=("single_task", "hard", "cross_stitch", "sluice"), weightings=("equal",),
                    seeds=(0, 1, 2), sweep: dict | None = None, paper: dict | None = None,
                    failed=(), incomplete=(), metric_fn: Callable = default_metric,
                    steps=tuple(range(10, 101, 10)), channels: int = 4, subspaces: int = 2,
                    layout: str = "brief", arch_names: dict | None = None) -> Fake:
    """Write a fake experiment; ``failed``/``incomplete``: (arch, weighting, seed, sweep dict) tuples.

    ``tasks``: {task: kind}, or a function sweep point -> {task: kind} when
    the sweep changes the task set (a task name keeps one kind throughout).

    Failed runs get ``status: failed``, a ``failure`` and metrics of
    FAILED_VALUE; incomplete runs get config.json and metrics.jsonl but no
    summary.json. Their numbers are not recorded in ``Fake.metrics``.

    ``layout``: 'brief' writes experiment.json with top-level experiment /
    architectures / weightings / seeds / sweep / paper and string failures;
    'launch_run' writes what mtlx.experiment writes: ``name``, the grid under
    ``grid`` (entries as {name, options, label, overrides}), the ``runs``
    list, and failures as {step, task, message}. ``arch_names``: label ->
    ARCHITECTURES name (default: the label), written as ``architecture_name``.
    """
    arch_names = dict(arch_names or {})
    fixed = None if callable(tasks) else dict(tasks or {"a": "classification", "b": "regression"})
    tasks_fn = tasks if fixed is None else (lambda point: fixed)
    sweep = dict(sweep or {})
    os.makedirs(root, exist_ok=True)
    fake = Fake(root, {}, list(architectures), list(weightings), list(seeds), sweep)
    for point in fake.sweep_points():
        fake.point_tasks[json.dumps(point, sort_keys=True)] = dict(tasks_fn(point))
        for t, k in fake.point_tasks[json.dumps(point, sort_keys=True)].items():
            if fake.tasks.setdefault(t, k) != k:
                raise ValueError(f"task {t!r} is {fake.tasks[t]!r} at one sweep point and {k!r} at another")
    if layout == "brief":
        exp_json = {"experiment": name, "paper": paper or {}, "architectures": list(architectures),
                    "weightings": list(weightings), "seeds": list(seeds), "sweep": sweep,
                    "task_set": {"name": "fake_task_set", "options": {}}}
    elif layout == "launch_run":
        entry = lambda lab, nm: {"name": nm, "options": {}, "label": lab, "overrides": {}}  # noqa: E731
        grid_runs = [{"run_id": _run_id(a, w, s, p), "architecture": a, "weighting": w, "seed": s, "sweep": p}
                     for p in fake.sweep_points() for s in seeds for a in architectures for w in weightings]
        exp_json = {"name": name, "smoke": False, "paper": paper or {},
                    "grid": {"architectures": [entry(a, arch_names.get(a, a)) for a in architectures],
                             "weightings": [entry(w, w) for w in weightings], "seeds": list(seeds), "sweep": sweep,
                             "num_runs": len(grid_runs)},
                    "runs": grid_runs, "run": {}}
    else:
        raise ValueError(f"layout={layout!r}: choose 'brief' or 'launch_run'")
    _write(os.path.join(root, "experiment.json"), exp_json)
    failed_keys = {(a, w, s, json.dumps(p, sort_keys=True)) for a, w, s, p in failed}
    incomplete_keys = {(a, w, s, json.dumps(p, sort_keys=True)) for a, w, s, p in incomplete}
    for point in fake.sweep_points():
        sj = json.dumps(point, sort_keys=True)
        tasks = fake.point_tasks[sj]
        T = len(tasks)
        task_info = {t: {"main_metric": next(iter(KIND_METRICS[k])), "higher_is_better": dict(KIND_METRICS[k])}
                     for t, k in tasks.items()}
        for ai, arch in enumerate(architectures):
            for w in weightings:
                for seed in seeds:
                    run_id = _run_id(arch, w, seed, point)
                    d = os.path.join(root, run_id)
                    os.makedirs(d, exist_ok=True)
                    key = (sj, arch, w, seed)
                    cfg = {"architecture": {"name": arch, "options": {}}, "weighting": {"name": w, "options": {}},
                           "seed": seed, "steps": max(steps), "task_set": {"name": "fake_task_set", "options": {}}}
                    for field, v in point.items():  # the swept field, at its dotted path
                        cur = cfg
                        parts = field.split(".")
                        for p in parts[:-1]:
                            cur = cur.setdefault(p, {})
                        cur[parts[-1]] = v
                    _write(os.path.join(d, "config.json"), cfg)
                    # curves: loss_t(step) = scale * exp(-step / 40) + floor + seed noise
                    r = _rng("curve", arch, w, seed, point)
                    curve = {t: [(s, float((1.0 + 0.3 * ai + 0.2 * ti) * math.exp(-s / 40.0) + 0.05 * seed
                                              + 0.01 * r.random())) for s in steps]
                             for ti, t in enumerate(tasks)}
                    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
                        for i, s in enumerate(steps):
                            f.write(json.dumps({"step": s, "kind": "train",
                                                "losses": {t: curve[t][i][1] for t in tasks},
                                                "weights": {t: 1.0 for t in tasks}, "penalty": 0.0},
                                               sort_keys=True) + "\n")
                        f.write(json.dumps({"step": steps[-1], "kind": "eval",
                                            "validation": {t: {"loss": 0.5} for t in tasks},
                                            "test": {t: {"loss": 0.5} for t in tasks}}) + "\n")
                    gkey = (arch, w, seed, sj)
                    if gkey in incomplete_keys:
                        continue
                    mix = {}
                    if arch == "cross_stitch":
                        mix = {"mix_stitch_0": r.uniform(0, 1, (T, T)), "mix_stitch_1": r.uniform(0, 1, (T, T, channels))}
                    elif arch == "sluice":
                        mix = {"mix_alpha_0": r.uniform(0, 1, (T * subspaces,) * 2),
                               "mix_alpha_1": r.uniform(0, 1, (T * subspaces,) * 2), "mix_beta": r.uniform(0, 1, (T, 3))}
                    if gkey in failed_keys:
                        metrics = {t: {m: FAILED_VALUE for m in list(KIND_METRICS[k]) + ["loss"]} for t, k in tasks.items()}
                    else:
                        metrics = {t: {m: metric_fn(arch, w, seed, point, t, m) for m in list(KIND_METRICS[k]) + ["loss"]}
                                   for t, k in tasks.items()}
                    summary = {
                        "status": "failed" if gkey in failed_keys else "done", "run_id": run_id, "experiment": name,
                        "architecture": arch, "architecture_name": arch_names.get(arch, arch),
                        "weighting": w, "weighting_name": w, "seed": seed, "sweep": point,
                        "task_set": "fake_task_set", "tasks": task_info, "metrics": metrics,
                        "validation_metrics": metrics,
                        "test_at_best_validation": {t: {m: v + BEST_OFFSET for m, v in tm.items()}
                                                    for t, tm in metrics.items()},
                        "param_count": 1000 * (ai + 1), "wall_time_s": 10.0 + seed, "steps_per_s": 100.0,
                        "steps": max(steps), "mixing": {k: v.tolist() for k, v in mix.items()},
                    }
                    if gkey in failed_keys:
                        summary["failure"] = (
                            "Traceback ...\nNonFiniteLoss: loss of task b is nan at step 40" if layout == "brief"
                            else {"step": 40, "task": "b", "message": "loss of task b is nan at step 40"})
                        summary["metrics"] = metrics if layout == "brief" else None
                        fake.failed.append(run_id)
                    else:
                        fake.metrics[key] = metrics
                        fake.curves[key] = curve
                        fake.mixing[key] = mix
                    fake.run_ids[key] = run_id
                    _write(os.path.join(d, "summary.json"), summary)
    return fake
