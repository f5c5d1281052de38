"""Run store: JSON/JSONL files written atomically (temp file, then rename)."""

from __future__ import annotations

import json
import math
import os
import tempfile


def _clean(x):
    """NaN/inf -> None so that files are strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` through a temp file in the same directory, then rename: a reader never
    sees a half-written file and an old file is never lost."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=1, sort_keys=True))


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def read_jsonl(path: str) -> list:
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut by a kill: ignore it
                    pass
    return out


class JsonlWriter:
    """Appends one JSON record a line (CLU-style metric writer)."""

    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(_clean(record), sort_keys=True) + "\n")
            f.flush()


def truncate_jsonl(path: str, step: int) -> None:
    """Keep only records with step <= ``step`` (after resuming from that checkpoint)."""
    if not os.path.exists(path):
        return
    keep = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep))
