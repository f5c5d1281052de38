"""Task-relatedness figures and a task-grouping suggestion (no JAX).

A run whose ``training.relatedness_every`` is set logs, in some train records
of metrics.jsonl, ``relatedness``: the tasks' pairwise gradient cosines, the
conflict rate, gradient norms and, optionally, TAG's lookahead affinity
(``mtlx.relatedness``). Here, per (sweep value, architecture, weighting):

- :func:`relatedness_data`: the mean over finished seeds of every matrix at
  the steps every seed logged;
- :func:`figure_relatedness`: heatmaps of the mean cosine (and affinity) at up
  to ``SNAPSHOTS`` steps spread over training, the last included - how the
  relatedness evolves and where it ends - and the conflict rate over steps;
- a grouping suggestion written beside the figure (``<figure>.json``): the
  partition of the tasks maximising the total within-group affinity
  (:func:`best_partition`, exhaustive over all set partitions for T <= 8),
  from the affinity (else the cosine) averaged over every logged step (TAG
  averages its affinities over training, Fifty et al. 2021, Sec. 3.1), and
  the best partition with each number of groups; the same from the early
  window of training only (``early``, :func:`grouping`).
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from mtlx import results
from mtlx.report.aggregate import _is_done, _sweep_key

KEY = "relatedness"  # the train record's key (mtlx.relatedness.RECORD_KEY)
MATRICES = ("cosine", "affinity")
SNAPSHOTS = 4
MAX_EXHAUSTIVE = 8  # Bell(8) = 4140 partitions
EARLY_FRACTION = 0.2  # the early window of the grouping suggestion: this share of the logged steps, the first


def _series(run_dir: str) -> dict:
    """{step: relatedness entry} of one run's train records."""
    return {int(r["step"]): r[KEY] for r in results.read_metrics(run_dir, "train") if r.get(KEY)}


def relatedness_data(runs: Sequence[dict]) -> dict:
    """{(sweep_key, architecture, weighting): {"tasks", "steps", "n", "conflict_rate" (S,), and
    "cosine" / "affinity" (S, T, T) where logged}}: means over the finished seeds at the steps all
    of them logged."""
    by_group: dict = {}
    for r in runs:
        if _is_done(r) and (s := _series(r["dir"])):
            by_group.setdefault((_sweep_key(r["sweep"]), r.get("architecture"), r.get("weighting")), []).append(s)
    out = {}
    for key, seeds in by_group.items():
        steps = sorted(set.intersection(*(set(s) for s in seeds)))
        if not steps:
            continue
        first = seeds[0][steps[0]]
        d = {"tasks": list(first["tasks"]), "steps": np.asarray(steps), "n": len(seeds),
             "conflict_rate": np.mean([[s[t]["conflict_rate"] for t in steps] for s in seeds], axis=0)}
        for m in MATRICES:
            if all(m in s[t] for s in seeds for t in steps):
                d[m] = np.mean([[np.asarray(s[t][m], np.float64) for t in steps] for s in seeds], axis=0)
        out[key] = d
    return out


def _data_of(ctx) -> dict:
    """:func:`relatedness_data` of the context's runs, read once per context."""
    if getattr(ctx, "_relatedness", None) is None:
        ctx._relatedness = relatedness_data(ctx.runs)
    return ctx._relatedness


# --------------------------------------------------------------------------- grouping


def set_partitions(n: int):
    """Every partition of ``range(n)`` into nonempty groups (restricted growth strings)."""
    def grow(i, labels, k):
        if i == n:
            yield [[j for j in range(n) if labels[j] == g] for g in range(k)]
            return
        for g in range(k + 1):
            yield from grow(i + 1, labels + [g], max(k, g + 1))
    yield from grow(0, [], 0)


def partition_score(S: np.ndarray, groups) -> float:
    """The total within-group affinity: the sum over groups of ``S[i, j] + S[j, i]`` over pairs
    i < j of the group (a singleton adds 0)."""
    return float(sum(S[i, j] + S[j, i] for g in groups for a, i in enumerate(g) for j in g[a + 1:]))


def best_partition(S: np.ndarray, num_groups: int | None = None) -> tuple[list, float] | None:
    """The partition maximising :func:`partition_score` (with exactly ``num_groups`` groups when
    given; ties: fewer groups, then the first found), and its score; None beyond MAX_EXHAUSTIVE
    tasks. Pairs with positive affinity are pulled together, negative ones apart: the grouping
    question of TAG (Fifty et al. 2021, Sec. 3.2) without a budget of networks."""
    S = np.asarray(S, np.float64)
    if len(S) > MAX_EXHAUSTIVE:
        return None
    best = None
    for p in set_partitions(len(S)):
        if num_groups is not None and len(p) != num_groups:
            continue
        score = partition_score(S, p)
        if best is None or score > best[1] + 1e-12 or (abs(score - best[1]) <= 1e-12 and len(p) < len(best[0])):
            best = (p, score)
    return best


def _suggest(M: np.ndarray, names) -> dict:
    """The best partition of the mean matrix ``M`` and the best with each number of groups."""
    named = lambda p: [[names[i] for i in g] for g in p]
    best = best_partition(M)
    if best is None:
        return {"mean": M.tolist(), "note": f"more than {MAX_EXHAUSTIVE} tasks: no exhaustive grouping"}
    by_k = {k: {"groups": named(b[0]), "score": b[1]} for k in range(1, len(names) + 1)
            if (b := best_partition(M, k))}
    return {"mean": M.tolist(), "suggested_groups": named(best[0]), "score": best[1], "by_number_of_groups": by_k}


def early_steps(n: int) -> int:
    """How many of ``n`` logged steps form the early window: the first ``EARLY_FRACTION``, at least one."""
    return max(1, int(round(EARLY_FRACTION * n)))


def grouping(d: dict) -> dict:
    """The suggestion for one group of runs, per measure logged (cosine; affinity): from its mean
    over every logged step, and under "early" from its mean over the early window only
    (:func:`early_steps`: once the shared layers have converged, the tasks' gradients carry less
    of their structure; measured on results/schedules_relatedness, the early cosines recovered the
    true groups under every schedule, the whole run's only under alternating training)."""
    names = d["tasks"]
    k = early_steps(len(d["steps"]))
    out = {"tasks": names, "steps": [int(s) for s in d["steps"]], "seeds": d["n"],
           "early_steps": [int(s) for s in d["steps"][:k]]}
    for measure in (m for m in MATRICES if m in d):
        out[measure] = {**_suggest(d[measure].mean(axis=0), names), "early": _suggest(d[measure][:k].mean(axis=0), names)}
    return out


# --------------------------------------------------------------------------- the figure


def snapshot_indices(n: int, k: int = SNAPSHOTS) -> list[int]:
    """Up to ``k`` indices spread over ``range(n)``, the first and the last included."""
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(k, n))})


def _off_diagonal(M) -> np.ndarray:
    """``M`` with NaN on the diagonal (a task's relatedness to itself is not drawn)."""
    M = np.array(M, np.float64)
    np.fill_diagonal(M, np.nan)
    return M


def _scale(vmax: float) -> int:
    """The power of ten the annotations are given in (0 when the values reach 0.1)."""
    return 0 if vmax >= 0.1 else int(np.floor(np.log10(vmax)))


def _heatmap(ax, M, names, title, vmax):
    k = _scale(vmax)
    M, vmax = M / 10.0 ** k, vmax / 10.0 ** k
    im = ax.imshow(M, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.grid(False)
    ax.set_title(title)
    if len(names) <= 6:
        for i in range(len(names)):
            for j in range(len(names)):
                if i != j:
                    ax.text(j, i, f"{M[i, j]:.1f}" if k else f"{M[i, j]:.2f}", ha="center", va="center", fontsize=5)
    return im


def figure_relatedness(ctx, path: str, key) -> dict:
    """Heatmaps of the mean cosine (row 1) and TAG affinity (row 2, when logged) at a few steps, the
    diagonal left blank and the colour scale set by the largest off-diagonal value of the row; the
    conflict rate over steps (last column); the grouping suggestion as ``<path>.json``."""
    from mtlx.report.plotting import save, subplots

    d = _data_of(ctx)[key]
    rows = [m for m in MATRICES if m in d]
    idx = snapshot_indices(len(d["steps"]))
    fig, axes = subplots(len(rows), len(idx) + 1, layout="constrained")
    for r, m in enumerate(rows):
        mats = [_off_diagonal(d[m][i]) for i in idx]
        vmax = max(max(float(np.nanmax(np.abs(x))) for x in mats) if len(d["tasks"]) > 1 else 0.0, 1e-12)
        for c, (i, M) in enumerate(zip(idx, mats)):
            im = _heatmap(axes[r, c], M, d["tasks"], f"{m}, step {int(d['steps'][i])}", vmax)
        if m == "affinity":  # Z[i, j]: task i's lookahead step, task j's loss
            axes[r, 0].set_ylabel("lookahead step on")
            axes[r, 0].set_xlabel("loss of")
        k = _scale(vmax)
        fig.colorbar(im, ax=axes[r, :len(idx)].tolist(), shrink=0.8, label=m + (f" (x 1e{k})" if k else ""))
        axes[r, len(idx)].axis("off")
    ax = axes[0, len(idx)]
    ax.axis("on")
    ax.plot(d["steps"], d["conflict_rate"], marker="o", markersize=2)
    ax.set_xlabel("step")
    ax.set_ylabel("conflict rate (share of pairs, cos < 0)")
    ax.set_ylim(-0.02, 1.02)
    _, arch, w = key
    fig.suptitle(f"{arch} / {w}: task relatedness (mean over {d['n']} seed(s))")
    save(fig, path)
    suggestion = grouping(d)
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(suggestion, f, indent=1)
    return {"steps": d["steps"].tolist(), "grouping": suggestion}


def group_name(key) -> str:
    """``<architecture>_<weighting>[_<sweep leaf><value>...]``: the figure's ``<group>``."""
    from mtlx.report.tables import slug

    skey, arch, w = key
    sweep = "_".join(f"{k.split('.')[-1]}{json.loads(v)}" for k, v in skey)
    return slug(f"{arch}_{w}" + (f"_{sweep}" if sweep else ""))


def relatedness_applies(ctx):
    """One figure ``relatedness_<group>`` per (sweep value, architecture, weighting) with
    relatedness records."""
    data = _data_of(ctx)
    if not data:
        return "no relatedness in the train records (training.relatedness_every)"
    return [(f"relatedness_{group_name(key)}", f"relatedness_{group_name(key)}", key) for key in data]
