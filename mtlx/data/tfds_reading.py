"""The toolkit of the TFDS task sets: build a builder, read its splits, describe it.

A task-set function (see ``mtlx.data.tfds_sets``) builds its TFDS builder once
per ``data_dir`` (``built``), turns the builder's records into the batch layout
``{"inputs", "targets": {task: y}, "weights": {task: w}}`` with a module-level
``transform(records) -> batch`` (``batch``, ``stack``, ``images``), reads each
split through TFDS's data source API (no TensorFlow; ``read_splits``,
``StreamingSplit``) and records where the data came from (``builder_info``).
"""

from __future__ import annotations

import functools
import inspect
import pathlib
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow_datasets as tfds

from mtlx.data.tfds_builders import common
from mtlx.tasks import TaskSet

SPLITS = ("train", "validation", "test")
READ_CHUNK = 4096


def choice(option: str, value: Any, choices) -> Any:
    """``value`` if it is one of ``choices``, else a ValueError naming the option and the valid values."""
    if value not in choices:
        raise ValueError(f"option {option}={value!r} is not valid; choose one of {list(choices)}")
    return value


def task_set_fn(fn: Callable[..., TaskSet]) -> Callable[..., TaskSet]:
    """Decorates a task-set function: keyword-only options; an unknown one is a ValueError listing the valid ones."""
    valid = list(inspect.signature(fn).parameters)

    @functools.wraps(fn)
    def wrapper(*args, **options) -> TaskSet:
        if args:
            raise ValueError(f"{fn.__name__} takes keyword options only: {valid}")
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"{fn.__name__}: unknown option(s) {unknown}; valid options are {valid}")
        return fn(**options)

    return wrapper


def source_dir(manual_dir, subdir: str):
    """Where a builder reads its originals: ``manual_dir/subdir`` if that folder exists, else
    ``manual_dir`` itself; None (download the originals) when ``manual_dir`` is None."""
    if manual_dir is None:
        return None
    root = pathlib.Path(manual_dir).expanduser()
    return root / subdir if (root / subdir).is_dir() else root


def built(cls, config, manual_dir, subdir: str, data_dir):
    """The builder ``cls(config=config)``, after building its files in ``data_dir`` unless they already exist."""
    builder = cls(config=config, data_dir=data_dir, source_dir=source_dir(manual_dir, subdir))
    builder.download_and_prepare()
    return builder


def images(u8: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 in [0, 1], optionally PIL-bilinear resized to ``size``."""
    if size is not None and u8.shape[1:3] != tuple(size):
        u8 = np.stack([common.resize_uint8(im, size) for im in u8])
    return u8.astype(np.float32) / 255.0


def batch(inputs, targets: dict, weights: dict | None = None, **extra) -> dict:
    """The batch layout; ``weights`` default to 1 for every example and task; ``extra`` are further inputs."""
    n = len(inputs)
    weights = weights if weights is not None else {t: np.ones(n, np.float32) for t in targets}
    return {"inputs": inputs, "targets": targets, "weights": weights, **extra}


def stack(records: Sequence[dict], key: str, dtype=None) -> np.ndarray:
    """Feature ``key`` of every record, stacked on a new first axis."""
    return np.stack([np.asarray(r[key], dtype) for r in records])


def concat(parts: Sequence[Any]):
    """Concatenates batch dicts leaf-wise along axis 0, keeping the keys' order."""
    if isinstance(parts[0], dict):
        return {k: concat([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def read_generic(source, rows: list[int]) -> list[dict]:
    """Rows through TFDS's own decoding (any data source, mocks included)."""
    try:
        return list(source.__getitems__(rows))
    except (TypeError, AttributeError):  # tfds.testing.mock_data's sources lack a working __getitems__
        return [source[i] for i in rows]


def read_fast(source, rows: list[int]) -> list[dict]:
    """Rows of a flat-featured TFDS ArrayRecord source, several times faster than ``read_generic``.

    Reads the raw records, parses the tf.train.Example protos and decodes each
    feature with its own ``decode_example_np``; skips TFDS's generic per-record
    flattening, which dominates its reading time.
    """
    from tensorflow_datasets.proto import tf_example_pb2

    features = source.dataset_info.features
    infos = features.get_serialized_info()
    out = []
    for raw in source.data_source.__getitems__(rows):
        proto = tf_example_pb2.Example.FromString(raw).features.feature
        record = {}
        for key, info in infos.items():
            kind = proto[key].WhichOneof("kind")
            values = getattr(proto[key], kind).value if kind else []
            value = values[0] if info.shape == () else np.asarray(values, info.np_dtype)
            record[key] = features[key].decode_example_np(value)
        out.append(record)
    return out


def same_record(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def fast_reading_works(source) -> bool:
    """Whether ``read_fast`` applies to ``source`` and agrees with TFDS's decoding of its first row."""
    try:
        infos = source.dataset_info.features.get_serialized_info()
        if not len(source) or not all(isinstance(i, tfds.features.TensorInfo) for i in infos.values()):
            return False
        return same_record(read_fast(source, [0])[0], read_generic(source, [0])[0])
    except Exception:  # any surprise (mocks, nested features, other formats): use TFDS's decoding
        return False


class StreamingSplit:
    """Rows of a TFDS data source, turned into the batch layout on access.

    ``split[indices]`` reads those rows (``indices`` index this split, which may
    be a subset of the source) and applies ``transform(records) -> batch``.
    Picklable when ``transform`` is (module-level functions and partials are).
    """

    def __init__(self, source, transform: Callable[[list], dict], indices: np.ndarray | None = None):
        self.source = source
        self.transform = transform
        self.indices = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64)
        self.read = read_fast if fast_reading_works(source) else read_generic

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, indices) -> dict:
        rows = self.indices[np.atleast_1d(np.asarray(indices, np.int64))]
        return self.transform(self.read(self.source, rows.tolist()))

    def materialise(self, chunk: int = READ_CHUNK) -> dict:
        """The whole split as one dict of numpy arrays."""
        if len(self) == 0:
            raise ValueError("cannot load an empty split")
        parts = [self[np.arange(s, min(s + chunk, len(self)))] for s in range(0, len(self), chunk)]
        return concat(parts)


def read_splits(builder, transform, in_memory: bool = True) -> dict:
    """``{split: batch dict}`` of a built builder's SPLITS (``{split: StreamingSplit}`` if not ``in_memory``)."""
    sources = builder.as_data_source()
    out = {s: StreamingSplit(sources[s], transform) for s in SPLITS}
    return {s: v.materialise() for s, v in out.items()} if in_memory else out


def builder_info(builder, paper: str, **extra) -> dict:
    """``TaskSet.info`` of a built builder: the paper, the builder and config, where the files are,
    the source and split provenance the builder recorded, the split sizes, plus ``extra``."""
    meta = builder.info.metadata or {}
    return {
        "paper": paper,
        "builder": f"{builder.name}/{builder.builder_config.name}" if builder.builder_config else builder.name,
        "data_dir": str(builder.data_dir),
        "source": meta.get("source"),
        "splits": meta.get("splits"),
        "num_examples": {s: builder.info.splits[s].num_examples for s in SPLITS},
        **extra,
    }
