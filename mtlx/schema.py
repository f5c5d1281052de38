"""The run-config schema and the value checks every config field goes through.

``run_config()`` holds every field one training run reads, with its default;
``check_fields`` refuses unknown (misspelled), missing and mistyped fields and
values out of range (``RULES``: learning rates finite and > 0, counts >= 1,
names from their registries, each backbone block's fields), each as one
ValueError naming the dotted field path, the bad value and what is valid.
``check_cross`` checks the fields that constrain one another (``warmup_steps``
<= ``steps``).

Options (``task_set.options``, an architecture's or a weighting's) are
free-form here: the registry that reads them checks them with
``check_options`` (types from the signature's annotations or defaults, ranges
by option name), raising an ``OptionError`` whose text names the option's
path once the caller knows its section (``err.within("weighting.options")``).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
from typing import Mapping

import ml_collections

from mtlx.layers import check_block
from mtlx.optim import OPTIMIZERS, SCHEDULES

FREE = "options"  # a run-config key whose value is free-form (checked by the registry that reads it)
GRID_PATHS = ("architecture", "weighting", "seed")  # set by the grid itself, not sweepable


def _optional_sections() -> dict:
    """Run-config sections that may be absent (then their defaults hold) and are written into a run's
    config only when set, so that configs without them - and their run ids - are unchanged:
    {name: check(section, log_every) -> the section with its defaults}."""
    from mtlx import schedules

    return {schedules.SECTION: lambda section, log_every=None: schedules.check_training(section, None, log_every)}


class ConfigError(ValueError):
    """A bad experiment config: one line, raised before any training."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class OptionError(ValueError):
    """A bad option value; its text names ``section.option`` once ``within`` gave the section."""

    def __init__(self, option: str, value, text: str, section: str = "", owner: str = ""):
        self.option, self.value, self.text, self.section, self.owner = option, value, text, section, owner
        path = f"{section}.{option}" if section else option
        super().__init__(f"{path}={value!r} {text}" + (f" ({owner})" if owner else ""))

    def within(self, section: str, owner: str = "") -> "OptionError":
        return OptionError(self.option, self.value, self.text, section, owner or self.owner)


# --------------------------------------------------------------------------- the schema


def run_config() -> ml_collections.ConfigDict:
    """One run: the defaults of every field."""
    from mtlx.architectures import BASELINE

    c = ml_collections.ConfigDict()
    c.task_set = ml_collections.ConfigDict({"name": "synthetic_classification", "options": {}})
    c.backbone = ml_collections.ConfigDict({"blocks": [{"kind": "dense", "features": 64}] * 2, "head_hidden": []})
    c.architecture = ml_collections.ConfigDict({"name": BASELINE, "options": {}})  # a grid sets it per run
    c.weighting = ml_collections.ConfigDict({"name": "equal", "options": {}})
    c.seed = 0
    c.optimizer = ml_collections.ConfigDict({
        "name": "adam", "learning_rate": 1e-3, "mixing_learning_rate": 0.0, "schedule": "constant",
        "warmup_steps": 0, "weight_decay": 0.0, "momentum": 0.9, "grad_clip": 0.0})
    c.steps = 1000
    c.batch_size = 128
    c.eval_every = 250
    c.eval_batch_size = 1024
    c.log_every = 50
    c.checkpoint_every = 500
    c.jacobian_chunk = 0
    c.on_device_max_bytes = 2**30
    return c


def _plain(x):
    """ConfigDicts (also ones with dotted keys) to plain dicts, tuples kept."""
    if isinstance(x, ml_collections.ConfigDict):
        x = x.to_dict()
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    return x


def _jsonable(x):
    try:
        return json.loads(json.dumps(_plain(x)))
    except (TypeError, ValueError) as e:  # e.g. a numpy scalar or an object in the config
        raise ConfigError(f"the config holds a value that is not plain data (str, number, bool, list, dict): {e}") from None


def nearest(path: str, paths) -> str | None:
    """The valid dotted path a misspelled ``path`` most likely meant: a sibling whose words' initials spell
    its leaf ('lr' -> 'learning_rate'), else the closest sibling, else the closest path."""
    parent, _, leaf = path.rpartition(".")
    siblings = [p for p in paths if p.rpartition(".")[0] == parent]
    by_initials = [p for p in siblings if "".join(w[:1] for w in p.rpartition(".")[2].split("_")) == leaf]
    if by_initials:
        return by_initials[0]
    m = difflib.get_close_matches(leaf, [p.rpartition(".")[2] for p in siblings], 1, 0.5)
    if m:
        return f"{parent}.{m[0]}" if parent else m[0]
    m = difflib.get_close_matches(path, list(paths), 1)
    return m[0] if m else None


def _did_you_mean(name, choices) -> str:
    m = difflib.get_close_matches(str(name), [str(c) for c in choices], 1)
    return f" (did you mean {m[0]!r}?)" if m else ""


_SCHEMA: dict = {}


def schema() -> dict:
    """The run-config schema as a plain dict: ``run_config()``'s defaults (built once)."""
    if not _SCHEMA:
        _SCHEMA.update(_plain(run_config()))
    return _SCHEMA


def _fields(d: Mapping, prefix: str = "") -> set:
    """Dotted leaf paths of a run config; an ``options`` dict is one leaf (free-form)."""
    out = set()
    for k, v in d.items():
        if isinstance(v, Mapping) and k != FREE:
            out |= _fields(v, f"{prefix}{k}.")
        else:
            out.add(f"{prefix}{k}")
    return out


# --------------------------------------------------------------------------- value rules


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Range:
    """lo <= v <= hi (or < where open); None: unbounded. Non-finite numbers are always out."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def holds(self, v) -> bool:
        if not is_number(v) or not math.isfinite(v):
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self) -> str:
        if self.hi is None:
            return f"must be {'>' if self.lo_open else '>='} {self.lo}"
        return (f"must lie in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}")


POSITIVE, NONNEG, UNIT = Range(0, lo_open=True), Range(0), Range(0, 1)
COUNT, INDEX = Range(1), Range(0)  # ints: >= 1 and >= 0

RULES = {  # run-config path -> Range or tuple of valid names; types come from the schema's defaults
    "steps": COUNT, "batch_size": COUNT, "eval_every": COUNT, "log_every": COUNT, "checkpoint_every": COUNT,
    "eval_batch_size": COUNT, "seed": INDEX, "jacobian_chunk": INDEX, "on_device_max_bytes": INDEX,
    "optimizer.name": tuple(sorted(OPTIMIZERS)), "optimizer.schedule": SCHEDULES,
    "optimizer.learning_rate": POSITIVE, "optimizer.mixing_learning_rate": NONNEG,
    "optimizer.warmup_steps": INDEX, "optimizer.weight_decay": NONNEG, "optimizer.momentum": UNIT,
    "optimizer.grad_clip": NONNEG,
}


def _check_rule(path: str, value, rule) -> None:
    if isinstance(rule, Range) and not rule.holds(value):
        raise ValueError(f"config field {path}={value!r} {rule}")
    if isinstance(rule, tuple) and value not in rule:
        raise ValueError(f"config field {path}={value!r} is not valid{_did_you_mean(value, rule)}; "
                         f"choose one of {list(rule)}")


def _check_backbone(path: str, value) -> None:
    if path == "backbone.blocks":
        if not value:
            raise ValueError(f"config field {path} is empty; give at least one block")
        for i, b in enumerate(value):
            check_block(b, f"config field {path}[{i}]")
    for i, w in enumerate(value if path == "backbone.head_hidden" else ()):
        if not is_int(w) or w < 1:
            raise ValueError(f"config field {path}[{i}]={w!r} must be an int >= 1 (a task tower's width)")


_TYPES = {bool: (bool,), int: (int,), float: (int, float), str: (str,), list: (list, tuple), tuple: (list, tuple)}


def _check_value(path: str, value, default) -> None:
    """``value`` fits the schema field ``path`` whose default is ``default``: its type and its rule."""
    if isinstance(default, Mapping) and not path.endswith(FREE):
        return check_fields(value, path + ".", default)
    want = (Mapping,) if isinstance(default, Mapping) else _TYPES[type(default)]
    if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
        raise ValueError(f"config field {path}={value!r} must be a {' or '.join(t.__name__ for t in want)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"config field {path}={value!r} must be a finite number")
    if path in RULES:
        _check_rule(path, value, RULES[path])
    if path in ("backbone.blocks", "backbone.head_hidden"):
        _check_backbone(path, value)
    if path.endswith(".name") and (not isinstance(value, str) or not value):
        raise ValueError(f"config field {path}={value!r} must be a non-empty name")


def check_fields(cfg: Mapping, prefix: str = "", default: Mapping | None = None) -> None:
    """Unknown (e.g. misspelled) and missing fields, wrong types and values out of range raise one ValueError."""
    top = default is None
    default = schema() if default is None else default
    if not isinstance(cfg, Mapping):
        raise ValueError(f"config field {prefix.rstrip('.') or 'run'} must be a dict, got {cfg!r}")
    optional = {k: check for k, check in _optional_sections().items() if top and k in cfg}
    for name, check in optional.items():
        if not isinstance(cfg[name], Mapping):
            raise ValueError(f"config field {name}={cfg[name]!r} must be a dict")
        check(cfg[name], cfg.get("log_every") if isinstance(cfg.get("log_every"), int) else None)
    cfg = {k: v for k, v in cfg.items() if k not in optional}
    want, have = _fields(default), _fields(cfg)
    unknown, missing = sorted(have - want), sorted(want - have)
    if unknown:
        hints = [f"{prefix}{u} (did you mean {prefix}{m}?)" if (m := nearest(u, want)) else prefix + u
                 for u in unknown]
        raise ValueError(f"unknown config field(s): {', '.join(hints)}")
    if missing:
        raise ValueError(f"missing config field(s): {', '.join(prefix + m for m in missing)}")
    for path in sorted(want):
        _check_value(prefix + path, _get_path(cfg, path), _get_path(default, path))


def check_cross(cfg: Mapping) -> None:
    """The fields that constrain one another, on a whole (plain) run config."""
    warm, steps = cfg["optimizer"]["warmup_steps"], cfg["steps"]
    if warm > steps:
        raise ValueError(f"config field optimizer.warmup_steps={warm} must be <= steps={steps}")


def check_run_config(cfg) -> None:
    """A whole run config (ConfigDict or dict) against the schema; one ValueError names any problem."""
    cfg = _plain(cfg)
    check_fields(cfg)
    check_cross(cfg)


def check_override(path: str, value) -> None:
    """A dotted run-config path and its value against the schema, without building the run config."""
    if not isinstance(path, str) or path.split(".")[0] in GRID_PATHS:
        raise ValueError(f"{path!r} is set by the grid; use config.architectures, config.weightings "
                         f"or config.seeds instead")
    section = path.split(".")[0]
    if section in _optional_sections():
        value = _plain(value)
        return _optional_sections()[section](value if path == section else {path.split(".", 1)[1]: value})
    node, keys = schema(), path.split(".")
    for i, k in enumerate(keys):
        if not isinstance(node, Mapping) or k not in node:
            m = nearest(path, sorted(_fields(schema())))
            raise ValueError(f"unknown config field(s): {path}" + (f" (did you mean {m}?)" if m else ""))
        if k == FREE and i < len(keys) - 1:
            return  # inside options: free-form, checked when the run is built
        node = node[k]
    _check_value(path, _plain(value), node)


def _get_path(d: Mapping, path: str):
    for k in path.split("."):
        d = d[k]
    return d


def _set_path(d: dict, path: str, value) -> dict:
    keys = path.split(".")
    node = d
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value
    return d


# --------------------------------------------------------------------------- options (free-form sections)

_ANNOTATIONS = {"int": (is_int, "an int"), "float": (is_number, "a number"), "bool": (lambda v: isinstance(v, bool), "a bool"),
                "str": (lambda v: isinstance(v, str), "a str"),
                "tuple": (lambda v: isinstance(v, (list, tuple)), "a list or tuple")}
_SEQUENCES = ("Sequence[", "tuple[", "list[")


def _annotation_check(annotation: str, default):
    """(predicate, description) for a parameter's annotation (a string: ``from __future__ import annotations``),
    else from its default's type; None when neither says (anything goes)."""
    a = "" if annotation is inspect.Parameter.empty else str(annotation).replace(" ", "")
    optional = a.startswith("Optional[") or a.endswith("|None")
    a = a[len("Optional["):-1] if a.startswith("Optional[") else a.removesuffix("|None")
    check = _ANNOTATIONS.get(a)
    for s in _SEQUENCES:
        if a.startswith(s) and a[len(s):].split(",")[0].rstrip("]") in _ANNOTATIONS:
            inner, what = _ANNOTATIONS[a[len(s):].split(",")[0].rstrip("]")]
            check = (lambda v, inner=inner: isinstance(v, (list, tuple)) and all(inner(x) for x in v),
                     f"a list of {what.split(' ', 1)[1]}s")
    if check is None and a in ("", "None", "_empty", "inspect._empty") and type(default) in (int, float, bool, str):
        check = _ANNOTATIONS[type(default).__name__]
    if check is None or not optional:
        return check
    return (lambda v: v is None or check[0](v)), f"{check[1]} or None"


def _finite(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_finite(x) for x in v)
    return not isinstance(v, float) or math.isfinite(v)


def check_options(params: Mapping, options: Mapping, ranges: Mapping | None = None) -> None:
    """``options`` against ``params`` {name: (annotation, default)}: unknown names, types, non-finite numbers,
    and ``ranges`` {name: Range or tuple of choices} (by option name); an ``OptionError`` (no section) names it."""
    unknown = sorted(set(options) - set(params))
    if unknown:
        hint = _did_you_mean(unknown[0], params)
        raise ValueError(f"unknown option(s) {unknown}{hint}; valid options {sorted(params)}")
    for name, value in options.items():
        check = _annotation_check(*params[name])
        if check is not None and not check[0](value):
            raise OptionError(name, value, f"must be {check[1]}")
        if not _finite(value):
            raise OptionError(name, value, "must be finite (no nan or inf)")
        rule = (ranges or {}).get(name)
        if isinstance(rule, Range) and is_number(value) and not rule.holds(value):
            raise OptionError(name, value, str(rule))
        if isinstance(rule, tuple) and value not in rule:
            raise OptionError(name, value, f"is not valid; choose one of {list(rule)}")


def signature_params(fn) -> dict:
    """{name: (annotation, default)} of a function's keyword parameters (``inspect.signature``)."""
    return {n: (p.annotation, None if p.default is p.empty else p.default)
            for n, p in inspect.signature(fn).parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def takes_any_option(fn) -> bool:
    return any(p.kind == p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())


def in_section(err: ValueError, section: str, owner: str) -> ValueError:
    """A registry's error with its field path: an OptionError within ``section``, else ``owner: message``."""
    if isinstance(err, OptionError):
        return err if err.section else err.within(section, owner)
    return ValueError(f"{owner}: {err}")


def flag_path_error(path: str, experiment_fields) -> str | None:
    """For a ``--config.<path>`` flag absl refused: a line naming the unknown field, else None."""
    keys = path.split(".")
    if keys[0] != "run" or len(keys) < 2:
        if keys[0] in experiment_fields:
            return None
        return f"--config.{path}: unknown experiment field {keys[0]!r}{_did_you_mean(keys[0], experiment_fields)}"
    sub = ".".join(keys[1:])
    try:
        value = _get_path(schema(), sub)
    except (KeyError, TypeError):
        value = None
    try:
        check_override(sub, value)
    except ValueError as e:
        return f"--config.{path}: {e}"
    return None
