"""What a table says about a tuned experiment: per row the selected values, in the notes the protocol.

Reads ``<workdir>/tuning.json`` (``mtlx.results.read_tuning``; written by
``mtlx.tune``): per row (architecture, weighting, sweep value) its search
space, candidates with their validation scores, and the selected
configuration. No JAX (the report never imports ``mtlx.tune``).
"""

from __future__ import annotations

import json
import math
from typing import Mapping, Sequence

from mtlx.report.aggregate import fmt_value

NOT_TUNED = "not tuned"
EDGE_MARK = "†"  # a selected value at the end of its value list: the search did not bracket the optimum
EDGE_MIN_VALUES = 3  # with two values every selection is at an end: no mark
SCORE_TEXT = {"delta_m": "validation Δm% against the baseline row's mean validation metrics over its candidates",
              "signed_main": "the validation main metric (mean over tasks, signed so that higher is better)"}


def _key(arch, weighting, sweep) -> str:
    return json.dumps([sweep or {}, arch, weighting], sort_keys=True)


def rows_of(tuning: Mapping | None, rows: Sequence[Mapping]) -> list[dict | None]:
    """Per table row, its tuning record row (None when the experiment is not tuned or the row has none)."""
    if not tuning:
        return [None] * len(rows)
    by = {_key(t["architecture"], t["weighting"], t["sweep"]): t for t in tuning.get("rows") or []}
    return [by.get(_key(r["architecture"], r["weighting"], r["sweep"])) for r in rows]


def leaf(path: str) -> str:
    return path.split(".")[-1]


def spec_text(spec: Mapping) -> str:
    """``{0.001, 0.01}``, ``log-uniform [0.0001, 0.01]``, ..."""
    if "values" in spec:
        return "{" + ", ".join(fmt_value(v) for v in spec["values"]) + "}"
    kind, (lo, hi) = next(iter(spec.items()))
    return f"{kind.replace('_', '-')} [{fmt_value(lo)}, {fmt_value(hi)}]"


def space_text(space: Mapping) -> str:
    return "; ".join(f"{p} ∈ {spec_text(s)}" for p, s in space.items())


def _numeric(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def at_edge(row: Mapping | None) -> list[str]:
    """The paths whose selected value is the smallest or largest of a numeric value list of at least
    ``EDGE_MIN_VALUES`` values: the best configuration may lie beyond the searched range."""
    if row is None or not row.get("space") or row.get("selected") is None:
        return []
    chosen = row["candidates"][row["selected"]]["values"]
    out = []
    for path, spec in row["space"].items():
        vals = spec.get("values") if isinstance(spec, Mapping) else None
        if (vals and len(vals) >= EDGE_MIN_VALUES and all(_numeric(v) for v in vals) and path in chosen
                and chosen[path] in (min(vals), max(vals))):
            out.append(path)
    return out


def cell(row: Mapping | None) -> str:
    """The table cell of one row: its selected values (``EDGE_MARK`` after one at the end of its
    list) and how many candidates it chose from."""
    if row is None or not row.get("space"):
        return NOT_TUNED
    if row.get("selected") is None:
        return "no candidate finished"
    values, edge = row["candidates"][row["selected"]]["values"], at_edge(row)
    return (", ".join(f"{leaf(p)}={fmt_value(v)}" + (EDGE_MARK if p in edge else "") for p, v in values.items())
            + f" (best of {len(row['candidates'])})")


def score(row: Mapping | None) -> float:
    """The selected candidate's validation score (NaN when none)."""
    if row is None or row.get("selected") is None or not row.get("space"):
        return float("nan")
    s = row["candidates"][row["selected"]].get("score")
    return float(s) if isinstance(s, (int, float)) and math.isfinite(s) else float("nan")


def notes(tuning: Mapping | None, table_rows: Sequence[Mapping], tuned: Sequence[Mapping | None],
          search_runs: int) -> list[str]:
    """The notes: the protocol (search, budget, seeds, selection), the global space, each row's own additions."""
    if not tuning:
        return []
    if tuning.get("status") != "selected":
        return [f"Tuning in progress (tuning.json): the search ({search_runs} search runs so far) has not finished; "
                f"the rows appear once the selected configurations have run with the final seeds."]
    budget = tuning["budget"] if tuning["search"] == "random" else (tuning["budget"] or "all")
    kinds = sorted({t["score_kind"] for t in tuned if t is not None and t.get("space")})
    lines = [f"Tuned (tuning.json): {tuning['search']} search (budget {budget} configurations per row"
             + (f", sampling seed {tuning['seed']}" if tuning["search"] == "random" else "")
             + f"), each configuration trained with search seeds {tuple(tuning['search_seeds'])}; selected per row "
             f"on {'; '.join(SCORE_TEXT.get(k, k) for k in kinds) or 'validation'} (test never read); the selected "
             f"configuration rerun with the reported seeds {tuple(tuning['final_seeds'])}. "
             f"Search space: {space_text(tuning['space']) or 'none'}."]
    extra = {}
    for r, t in zip(table_rows, tuned):
        own = {p: s for p, s in ((t or {}).get("space") or {}).items() if tuning["space"].get(p) != s}
        if own:
            extra.setdefault(space_text(own), []).append(f"{r['architecture']}/{r['weighting']}")
    lines += [f"Also tuned for {', '.join(dict.fromkeys(who))}: {text}." for text, who in extra.items()]
    edges = [f"{r['architecture']}/{r['weighting']}" for r, t in zip(table_rows, tuned) if at_edge(t)]
    if edges:
        lines.append(f"{EDGE_MARK} = the selected value is the smallest or largest of its list ({len(edges)} of "
                     f"{sum(1 for t in tuned if t is not None and t.get('space'))} tuned rows: "
                     f"{', '.join(dict.fromkeys(edges))}): the search did not bracket the optimum, which may lie "
                     f"beyond the range; widen the space before trusting the comparison.")
    return lines


def csv_cells(row: Mapping | None) -> list:
    """tuned, tuned_space (JSON), tuned_candidates, tuned_selected (JSON), tuned_validation_score,
    tuned_at_edge (JSON list of paths)."""
    if row is None or not row.get("space"):
        return [False, "", "", "", "", ""]
    sel = row["candidates"][row["selected"]]["values"] if row.get("selected") is not None else None
    s = score(row)
    return [True, json.dumps(row["space"], sort_keys=True), len(row["candidates"]), json.dumps(sel, sort_keys=True),
            repr(s) if math.isfinite(s) else "", json.dumps(at_edge(row))]


CSV_HEAD = ["tuned", "tuned_space", "tuned_candidates", "tuned_selected", "tuned_validation_score", "tuned_at_edge"]
