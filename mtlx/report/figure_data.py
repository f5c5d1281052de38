"""The numbers each figure draws, from runs and rows (no matplotlib): curves, sweep lines, trade-offs, mixing."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mtlx import results, tasks as tasks_lib
from mtlx.report import stats
from mtlx.report.aggregate import SELECT, _is_done, _num, _sweep_key, metric_of

DELTA_M_PANEL = "__delta_m__"  # sweep_plot_data's pseudo-task holding delta_m


def _train_points(rec) -> dict:
    return rec.get("losses") or {} if rec.get("kind") == "train" else {}


def _validation_points(rec) -> dict:
    if rec.get("kind") != "eval":
        return {}
    return {t: (m or {}).get(tasks_lib.LOSS) for t, m in (rec.get("validation") or {}).items()}


def _seed_curves(runs, points=_train_points) -> dict:
    """{(sweep_key, architecture, weighting): [{task: {step: loss}} per finished seed]}; ``points(record)``:
    {task: value} of one metrics.jsonl record (the training loss, or the validation loss of an eval record)."""
    curves: dict = {}
    for r in runs:
        if not _is_done(r):
            continue
        by_task: dict = {}
        for x in results.read_metrics(r["dir"]):
            for t, v in points(x).items():
                by_task.setdefault(t, {})[int(x["step"])] = _num(v)
        if by_task:
            curves.setdefault((_sweep_key(r["sweep"]), r.get("architecture"), r.get("weighting")), []).append(by_task)
    return curves


def learning_curve_data(runs: Sequence[dict], validation: bool = False) -> dict:
    """Training loss (``validation``: the validation loss of the eval records) per task over steps, over the
    finished seeds of each group.

    Returns {(sweep_key, architecture, weighting): {task: {"steps": array,
    "mean": array, "std": array (ddof=1; 0 when one seed), "ci": array (the half-width of the
    mean's 95% Student-t interval, as the tables'; 0 when one seed), "n": int}}} on the steps
    every seed logged.
    """
    out = {}
    for key, seeds in _seed_curves(runs, _validation_points if validation else _train_points).items():
        out[key] = {}
        for t in sorted({t for s in seeds for t in s}, key=lambda t: list(seeds[0]).index(t) if t in seeds[0] else 1e9):
            per = [s[t] for s in seeds if t in s]
            steps = sorted(set.intersection(*(set(p) for p in per)))
            a = np.asarray([[p[s] for s in steps] for p in per], np.float64)
            std = a.std(0, ddof=1) if len(per) > 1 else np.zeros(len(steps))
            out[key][t] = {"steps": np.asarray(steps), "mean": a.mean(0), "std": std,
                           "ci": std * (stats.t_quantile(len(per) - 1) / np.sqrt(len(per)) if len(per) > 1 else 0.0),
                           "n": len(per)}
    return out


def sweep_plot_data(rows, field: str) -> dict:
    """{(architecture, weighting): {task: [(x value, mean, (error below, error above))]}}: the 95% CI's
    half-width on both sides; delta_m under task DELTA_M_PANEL with its bootstrap interval [lo, hi] as
    (delta_m - lo, hi - delta_m), which need not be symmetric."""
    out: dict = {}
    for r in rows:
        if r["n"] == 0 or field not in r["sweep"]:
            continue
        d = out.setdefault((r["architecture"], r["weighting"]), {})
        for t, k in r["main_metric"].items():
            ms = metric_of(r, t, k)
            if ms is None:
                continue
            d.setdefault(t, []).append((r["sweep"][field], ms["mean"], (ms["ci"], ms["ci"])))
        if r["delta_m"] is not None:  # the bootstrap interval is not symmetric about delta_m
            lo, hi = r["delta_m_ci"] or (float("nan"), float("nan"))
            dm = r["delta_m"]
            d.setdefault(DELTA_M_PANEL, []).append((r["sweep"][field], dm, (_num(dm - lo), _num(hi - dm))))
    return out


def tradeoff_data(runs, tasks: Sequence[str], select: str = "final") -> dict:
    """{(sweep_key, architecture, weighting): [(metric of task a, metric of task b) per finished run]}."""
    a, b = tasks
    out: dict = {}
    for r in runs:
        if not _is_done(r):
            continue
        m = r.get(SELECT[select]) or r.get("metrics") or {}
        info = r.get("tasks") or {}
        if a not in info or b not in info:
            continue
        pa = _num((m.get(a) or {}).get(info[a]["main_metric"]))
        pb = _num((m.get(b) or {}).get(info[b]["main_metric"]))
        out.setdefault((_sweep_key(r["sweep"]), r.get("architecture"), r.get("weighting")), []).append((pa, pb))
    return out


def mixing_data(runs, architecture: str) -> dict:
    """{(sweep_key, weighting): {param name: mean over finished seeds (array)}} for one architecture."""
    acc: dict = {}
    for r in runs:
        if not _is_done(r) or r.get("architecture") != architecture or not r.get("mixing"):
            continue
        g = acc.setdefault((_sweep_key(r["sweep"]), r.get("weighting")), {})
        for k, v in r["mixing"].items():
            g.setdefault(k, []).append(np.asarray(v, np.float64))
    return {g: {k: np.mean(np.stack(vs), 0) for k, vs in d.items() if len({v.shape for v in vs}) == 1}
            for g, d in acc.items()}


def mixing_tasks(runs, architecture: str) -> dict:
    """{sweep_key: every task of the model, auxiliary ones too, in the task set's order}: the axes of its
    mixing units (a table's tasks are the main ones only). Empty where the summaries do not say the order."""
    out: dict = {}
    for r in runs:
        info = r.get("tasks") or {}
        if (_is_done(r) and r.get("architecture") == architecture and info
                and all(isinstance(v.get("index"), int) for v in info.values())):
            out.setdefault(_sweep_key(r["sweep"]), sorted(info, key=lambda t: info[t]["index"]))
    return out
