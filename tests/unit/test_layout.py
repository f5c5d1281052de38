"""The house rules that keep mtlx readable, checked on the source itself:
no function over 60 lines and no file over 600 lines in mtlx/ and launch/,
dependencies pointing down (no mtlx module imports launch; tasks.py and the
report import no JAX), and every shared tap name defined once (mtlx.taps)."""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_FUNCTION, MAX_FILE = 60, 600


def _sources(*dirs):
    for d in dirs:
        for base, _, files in os.walk(os.path.join(ROOT, d)):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(base, f)
                    yield os.path.relpath(path, ROOT), open(path).read()


SOURCES = dict(_sources("mtlx", "launch"))


def _imports(src):
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_file_over_600_lines():
    long = {p: n for p, s in SOURCES.items() if (n := len(s.splitlines())) > MAX_FILE}
    assert not long, f"files over {MAX_FILE} lines: {long}"


def test_no_function_over_60_lines():
    long = {}
    for path, src in SOURCES.items():
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION:
                    long[f"{path}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION} lines: {long}"


def test_dependencies_point_down():
    up = {p: m for p, s in SOURCES.items() if p.startswith("mtlx") for m in _imports(s) if m.split(".")[0] == "launch"}
    assert not up, f"mtlx modules importing launch: {up}"


@pytest.mark.parametrize("module", ["mtlx/tasks.py", "mtlx/results.py", "mtlx/taps.py"])
def test_jax_free_modules(module):
    jax = [m for m in _imports(SOURCES[module]) if m.split(".")[0] in ("jax", "flax", "optax")]
    assert not jax, f"{module} imports {jax}"


def test_report_imports_no_jax():
    report = {p: s for p, s in SOURCES.items() if p.startswith("mtlx/report")}
    assert report
    bad = {p: m for p, s in report.items() for m in _imports(s)
           if m.split(".")[0] in ("jax", "flax", "optax") or m in ("mtlx.architectures", "mtlx.train", "mtlx.losses")}
    assert not bad, f"the report imports {bad}"


def test_tap_names_are_defined_once():
    """A tap name as a string literal anywhere but mtlx/taps.py would let two modules drift apart."""
    import mtlx.taps as taps

    names = {v for k, v in vars(taps).items() if k.isupper() and isinstance(v, str) and k not in ("MIX_PREFIX",)}
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, sorted(names))))
    hits = {p: pattern.findall(s) for p, s in SOURCES.items() if p != "mtlx/taps.py"}
    hits = {p: h for p, h in hits.items() if h}
    assert not hits, f"tap names as literals outside mtlx/taps.py: {hits}"


def test_mixing_rule_lives_in_taps():
    """Mixing units are recognised by ``taps.is_mixing`` and named by ``taps.mixing_name``, nowhere by hand."""
    hits = {p: n for p, s in SOURCES.items() if p != "mtlx/taps.py" and (n := len(re.findall(r"""["']mix_""", s)))}
    assert not hits, f"'mix_' literals outside mtlx/taps.py: {hits}"
