"""The pooling guard: a table row averages seeds of ONE configuration.

A row is a (sweep value, architecture label, weighting label) group. Its
finished runs must have the same run config up to ``seed`` and the fields of
experiment.json's ``grid.seed_paths`` (set to the run's seed on purpose, e.g.
a task set's data seed), and up to references to another run OF THE SAME SEED
(a string holding the run-id token ``-s<seed>-`` of its own seed, e.g. DMTRL's
``init_from_run``: each seed starts from its own single-task run). Runs
launched into one workdir with another setting (``--config.run.steps=1000``)
would otherwise be averaged with the rest silently. ``check`` names the differing fields and raises ``PoolingError``;
``pool=True`` (launch.table ``--pool_configs``) pools anyway and returns the
differences for the table's notes.

Run configs come from each summary's ``config``, else the run's config.json
(both through ``mtlx.results``).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from typing import Mapping, Sequence

from mtlx import results


class PoolingError(ValueError):
    """Runs of one table row differ in more than the seed."""


def _flat(cfg, prefix: str = "") -> dict:
    """{dotted path: canonical JSON of the leaf}."""
    out = {}
    for k, v in (cfg or {}).items():
        path = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(_flat(v, path + "."))
        else:
            out[path] = json.dumps(v, sort_keys=True)
    return out


def run_config(run: Mapping) -> dict:
    """A finished run's config: its summary's ``config``, else its config.json ({} when neither exists)."""
    if run.get("config"):
        return dict(run["config"])
    d = run.get("dir")
    return results.read_config(d) if d and os.path.exists(os.path.join(d, results.CONFIG)) else {}


def _seed_blind(flat: dict, seed) -> dict:
    """``flat`` with the run-id token of the run's own seed (``-s<seed>-``) in its string values
    replaced by a placeholder: a reference to the same-seed run of another row is not a difference."""
    token = f"-s{seed}-"
    return {p: v.replace(token, "-s<seed>-") if v.startswith('"') else v for p, v in flat.items()}


def _ignored(exp: Mapping) -> set:
    return {"seed", *((exp.get("grid") or {}).get("seed_paths") or ())}


def differences(runs: Sequence[Mapping], exp: Mapping) -> list[dict]:
    """Per group whose finished runs differ beyond the seed: {group, fields {path: [values]}, run_ids}."""
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for r in runs:
        if r.get("status") == results.DONE:
            key = (json.dumps(r.get("sweep") or {}, sort_keys=True), r.get("architecture"), r.get("weighting"))
            groups.setdefault(key, []).append(r)
    skip, out = _ignored(exp), []
    for (sweep, arch, w), members in groups.items():
        flats = [_seed_blind(_flat(run_config(r)), r.get("seed")) for r in members]
        paths = sorted(set().union(*flats) - skip) if flats else []
        fields = {p: sorted({f.get(p, "<absent>") for f in flats}) for p in paths}
        fields = {p: v for p, v in fields.items() if len(v) > 1}
        if fields:
            label = f"{arch}/{w}" + (f" ({sweep})" if sweep != "{}" else "")
            out.append({"group": label, "fields": fields, "run_ids": [r["run_id"] for r in members]})
    return out


def describe(diffs: Sequence[Mapping], limit: int = 3) -> str:
    """One line: the differing fields and where."""
    fields = sorted({p for d in diffs for p in d["fields"]})
    where = "; ".join(f"{d['group']}: " + ", ".join(f"{p} in {{{', '.join(v)}}}" for p, v in d["fields"].items())
                      for d in diffs[:limit])
    more = f" (and {len(diffs) - limit} more rows)" if len(diffs) > limit else ""
    return f"runs of one row differ in {', '.join(fields)} — {where}{more}"


def check(runs: Sequence[Mapping], exp: Mapping, pool: bool = False) -> list[dict]:
    """Refuse (PoolingError) to average runs whose configs differ beyond the seed and ``grid.seed_paths``;
    with ``pool`` return the differences instead (for the notes)."""
    diffs = differences(runs, exp)
    if diffs and not pool:
        raise PoolingError(f"{describe(diffs)}. A row averages seeds of one configuration: launch such runs into "
                           f"another --workdir, or pass --pool_configs to average them anyway (the table says so).")
    return diffs
