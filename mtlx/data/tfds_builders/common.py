"""Shared pieces of mtlx's TFDS builders: source files, idx reader, split carving.

The builders read their source files themselves, from a local directory
(``source_dir``) or from the originals downloaded through TFDS's download
manager (``dl_manager.download(url)``), so they need no registered checksums
and no TensorFlow: features are ``Tensor``/scalars and files are ArrayRecord.
"""

from __future__ import annotations

import dataclasses
import gzip
import inspect
import io
import pathlib
import zlib
from typing import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image


class SourceFileError(FileNotFoundError):
    """A source file the builder needs is not in the local source directory."""


class CorruptSourceError(ValueError):
    """A source file exists but is not in the expected format."""


def missing_file_error(dataset: str, missing: str, source_dir, expected: Sequence[str], origin: str) -> SourceFileError:
    return SourceFileError(
        f"{dataset}: source file {missing!r} not found in {str(source_dir)!r}. "
        f"Expected files there: {', '.join(expected)}. They come from {origin}."
    )


def local_files(dataset: str, source_dir, required: Sequence[str], origin: str, optional: Sequence[str] = ()):
    """``{name: Path}`` of the required (and present optional) files in ``source_dir``.

    Raises ``SourceFileError`` naming the first missing required file.
    """
    root = pathlib.Path(source_dir)
    expected = [*required, *optional]
    found = {}
    for name in required:
        if not (root / name).is_file():
            raise missing_file_error(dataset, name, root, expected, origin)
        found[name] = root / name
    found.update({n: root / n for n in optional if (root / n).is_file()})
    return found


def download(dl_manager, urls: Mapping[str, str]) -> dict[str, pathlib.Path]:
    """Downloads the originals (online builds): ``{name: local path}``."""
    paths = dl_manager.download(dict(urls))
    return {k: pathlib.Path(v) for k, v in paths.items()}


def read_bytes(path) -> bytes:
    """File bytes, gunzipped when the name ends in .gz; corrupt gzip -> CorruptSourceError."""
    path = pathlib.Path(path)
    raw = path.read_bytes()
    if path.suffix != ".gz" and raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise CorruptSourceError(f"{path}: not a valid gzip file ({e})") from e


def read_text_lines(path) -> list[str]:
    return read_bytes(path).decode("utf-8", errors="replace").splitlines()


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def parse_idx(data: bytes, name: str = "<idx>") -> np.ndarray:
    """Decodes an idx file (LeCun's MNIST format): magic 0x0000TTNN, NN big-endian dims."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise CorruptSourceError(f"{name}: bad idx magic number {data[:4].hex() if data else 'empty'}")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(data[4:header], ">u4"))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    if len(data) - header != int(np.prod(shape)) * dtype.itemsize:
        raise CorruptSourceError(f"{name}: idx payload of {len(data) - header} bytes does not match shape {shape}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    return parse_idx(read_bytes(path), str(path))


def carve(n: int, fractions: Sequence[float], seed: int, *keys: int) -> list[np.ndarray]:
    """Splits ``range(n)`` by a seeded permutation into parts of the given fractions.

    The last part takes the remainder; each part is returned sorted. The
    permutation comes from ``np.random.default_rng([seed, *keys])``, so it is
    bit-exact across machines for a given numpy.
    """
    perm = np.random.default_rng([seed, *keys]).permutation(n)
    cuts = np.round(np.cumsum(fractions[:-1]) * n).astype(int)
    return [np.sort(p) for p in np.split(perm, cuts)]


def resize_uint8(image: np.ndarray, size: tuple[int, int], resample=Image.BILINEAR) -> np.ndarray:
    """PIL resize of an (H, W) or (H, W, C) uint8 image to ``size`` = (H', W')."""
    squeeze = image.ndim == 3 and image.shape[-1] == 1
    pil = Image.fromarray(image[..., 0] if squeeze else image)
    out = np.asarray(pil.resize((size[1], size[0]), resample=resample), np.uint8)
    return out[..., None] if squeeze else out


def decode_png(data: bytes, name: str = "<png>") -> np.ndarray:
    try:
        return np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.uint8)
    except Exception as e:  # PIL raises several types for broken files
        raise CorruptSourceError(f"{name}: cannot decode PNG ({e})") from e


@dataclasses.dataclass(eq=False)
class SeedConfig(tfds.core.BuilderConfig):
    """A builder config whose ``seed`` fixes all build-time randomness (splits, pairing)."""

    seed: int = 0


BUILDERS: dict[str, type] = {}  # TFDS name -> every concrete mtlx builder class defined so far


class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of mtlx's builders: ArrayRecord files, an optional local ``source_dir``.

    ``source_dir=None`` downloads the originals through ``dl_manager.download``;
    a directory reads the files from there and never touches the network.
    Build-time options live in the builder config (``BUILDER_CONFIG_CLASS``),
    whose name encodes them, so each setting is built once per data_dir.
    Defining a subclass registers it, like TFDS does, under its ``name`` in
    ``BUILDERS`` (and in TFDS); ``skip_registration=True`` marks a shared base.
    """

    def __init_subclass__(cls, skip_registration: bool = False, **kwargs):
        super().__init_subclass__(skip_registration=skip_registration, **kwargs)
        if not skip_registration:
            BUILDERS[cls.name] = cls

    VERSION = tfds.core.Version("1.0.0")
    HOMEPAGE = ""
    CITATION = ""
    BUILDER_CONFIG_CLASS = SeedConfig

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This module's file; TFDS's lookup through package resources fails for namespace packages."""
        return epath.Path(inspect.getfile(cls))

    def __init__(self, *, source_dir=None, **kwargs):
        self.source_dir = None if source_dir is None else pathlib.Path(source_dir)
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    @classmethod
    def config_for(cls, name: str, **fields):
        """The predefined config called ``name`` (seed 0 configs), else a new config with these fields."""
        known = cls.builder_configs.get(name)
        if known is not None and all(getattr(known, k) == v for k, v in fields.items()):
            return known
        return cls.BUILDER_CONFIG_CLASS(name=name, **fields)

    def make_info(self, features: dict, description: str) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=description,
            features=tfds.features.FeaturesDict(features),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            metadata=tfds.core.MetadataDict(),
        )


def image_feature(shape) -> tfds.features.Tensor:
    """uint8 image as a zlib-compressed Tensor (tfds.features.Image needs TensorFlow to encode)."""
    return tfds.features.Tensor(shape=tuple(shape), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB)


def vector_feature(dtype) -> tfds.features.Tensor:
    """Variable-length 1-D array stored as raw bytes (about 2x faster to read than the default)."""
    return tfds.features.Tensor(shape=(None,), dtype=dtype, encoding=tfds.features.Encoding.BYTES)
