"""Paper numbers beside ours (``experiment.json["paper"]``).

A paper row is matched by architecture label, or by weighting label when the
experiment compares weightings (one multi-task architecture, several
weightings); ``arch/weighting`` or ``arch+weighting`` keys match first. A key
may name the sweep value in brackets, ``mmoe [group=1]`` (each swept field's
last component, sorted by field, ', '-joined); such keys match before the bare
label. Matching ignores case, '-' and ' '. ``paper["task_mean"]`` asks the
table for the mean over tasks of the main metric (``aggregate._add_task_mean``)
when the paper reports such a mean.
"""

from __future__ import annotations

import re
from typing import Mapping

from mtlx.report.aggregate import baseline_labels

PAPER_SWEEP_TAG = re.compile(r"\[[^\[\]]*=[^\[\]]*\]\s*$")  # "mmoe [group=1]"


def _norm(s) -> str:
    return str(s).lower().replace("-", "_").replace(" ", "_")


def compares_weightings(rows) -> bool:
    """One multi-task architecture (the baseline aside) and several weightings."""
    archs = {r["architecture"] for r in rows} - baseline_labels(rows)
    return len({r["weighting"] for r in rows}) > 1 and len(archs) <= 1


def _paper_keys(r, by_weighting: bool) -> list[str]:
    """The paper-row keys that may name row ``r``, most specific first."""
    a, w = r["architecture"], r["weighting"]
    keys = [f"{a}/{w}", f"{a}+{w}"]
    keys += [a] if (not by_weighting or r["is_baseline"]) else [w]
    # rows for one sweep value: "mmoe [group=1]" (the swept field's last component)
    tag = ", ".join(f"{str(k).split('.')[-1]}={v}" for k, v in sorted((r.get("sweep") or {}).items()))
    return ([f"{k} [{tag}]" for k in keys] if tag else []) + keys


def match_paper(rows, paper: Mapping | None) -> tuple[list, list, list]:
    """Paper numbers per row: (columns, [ {column: value} or None per row ], unmatched paper labels).

    For a row with sweep values, keys tagged with them (``"mmoe [group=1]"``:
    each swept field's last component) are tried before the bare ones.
    """
    paper = paper or {}
    prow = paper.get("rows") or {}
    cols = list(paper.get("metric_columns") or [])
    for v in prow.values():
        cols += [c for c in v if c not in cols]
    if not prow:
        return [], [None] * len(rows), []
    lookup = {_norm(k): k for k in prow}
    by_weighting = compares_weightings(rows)
    used, out = set(), []
    for r in rows:
        hit = next((lookup[_norm(k)] for k in _paper_keys(r, by_weighting) if _norm(k) in lookup), None)
        out.append(prow[hit] if hit is not None else None)
        if hit is not None:
            used.add(hit)
    return cols, out, [k for k in prow if k not in used]
