"""Tiny source files in the original formats, for building mtlx's TFDS builders in tests.

Nothing here touches the network or local data copies: every file is generated.
"""

from __future__ import annotations

import gzip
import io
import pathlib
import zipfile

import numpy as np
from PIL import Image

from mtlx.data.tfds_builders import census_income as census_lib


# --------------------------------------------------------------------------- MNIST-like idx


def class_templates(seed: int = 0) -> np.ndarray:
    """(10, 28, 28) uint8: one distinct random bright pattern per class."""
    rng = np.random.default_rng(seed)
    templates = np.zeros((10, 28, 28), np.uint8)
    for k in range(10):
        templates[k, 4:24, 4:24] = rng.integers(0, 256, (20, 20)) * (rng.random((20, 20)) < 0.3)
        templates[k, 2, 2 + 2 * k] = 255  # a class-specific marker pixel
    return templates


def labels_for(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, n).astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 array as idx bytes (LeCun's format: 0, 0, 0x08 = uint8, ndim; big-endian uint32 dims; data)."""
    array = np.ascontiguousarray(array, np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.tobytes()


def write_idx_gz(path: pathlib.Path, array: np.ndarray):
    path.write_bytes(gzip.compress(idx_bytes(array)))


def write_mnist_like(root: pathlib.Path, n_train: int = 40, n_test: int = 20, train: bool = True, csv: bool = False):
    """idx .gz files (and optionally the 5k-style csv) whose image of class k is template k."""
    root.mkdir(parents=True, exist_ok=True)
    templates = class_templates()
    splits = {"t10k": labels_for(n_test, 1)}
    if train:
        splits["train"] = labels_for(n_train, 2)
    for prefix, labels in splits.items():
        write_idx_gz(root / f"{prefix}-images-idx3-ubyte.gz", templates[labels])
        write_idx_gz(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    if csv:
        labels = labels_for(n_train, 3)
        rows = np.concatenate([templates[labels].reshape(n_train, -1), labels[:, None]], axis=1)
        text = "\n".join(",".join(map(str, r)) for r in rows) + "\n"
        (root / "mnist_5k.csv.gz").write_bytes(gzip.compress(text.encode()))
    return templates


# --------------------------------------------------------------------------- Omniglot zips


def png_bytes(rng: np.random.Generator) -> bytes:
    """A 105x105 1-bit drawing: white background, a black random stroke box."""
    image = np.ones((105, 105), bool)
    r, c = rng.integers(10, 60, 2)
    image[r : r + 30, c : c + 4] = False
    image[r : r + 4, c : c + 30] = False
    buf = io.BytesIO()
    Image.fromarray(image).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def write_omniglot_zip(path: pathlib.Path, alphabets: dict[str, int], drawings: int = 5, seed: int = 0):
    """``<zipname>/<Alphabet>/characterNN/<id>_<NN>.png`` for ``{alphabet: number of characters}``."""
    rng = np.random.default_rng(seed)
    top = path.stem
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{top}/", b"")
        for alphabet, n_chars in alphabets.items():
            for c in range(1, n_chars + 1):
                for d in range(1, drawings + 1):
                    z.writestr(f"{top}/{alphabet}/character{c:02d}/{1000 + c:04d}_{d:02d}.png", png_bytes(rng))


# --------------------------------------------------------------------------- Census-Income csv

CATEGORY_VALUES = {
    "class_worker": ["Private", "Not in universe", "Self-employed-incorporated"],
    "sex": ["Male", "Female"],
    "race": ["White", "Black", "Other"],
}
EDUCATION = ["Children", "High school graduate", "Some college but no degree", "Bachelors degree(BA AB BS)", "Associates degree-academic program", "Doctorate degree(PhD EdD)"]
MARITAL = ["Never married", "Married-civilian spouse present", "Divorced"]
INCOME = ["- 50000.", "50000+."]


def census_rows(n: int, seed: int, first_age: int = 20) -> list[list[str]]:
    """Rows of 42 values; ages are unique (first_age + i), so a row can be found from its features."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = []
        for col in census_lib.COLUMNS:
            if col == "age":
                row.append(str(first_age + i))
            elif col == "education":
                row.append(EDUCATION[rng.integers(len(EDUCATION))])
            elif col == "marital_stat":
                row.append(MARITAL[rng.integers(len(MARITAL))])
            elif col == "income_50k":
                row.append(INCOME[rng.integers(2)])
            elif col in census_lib.NUMERIC or col == "instance_weight":
                row.append(f"{rng.integers(0, 1000) / 10:.1f}")
            elif col in CATEGORY_VALUES:
                row.append(CATEGORY_VALUES[col][rng.integers(len(CATEGORY_VALUES[col]))])
            else:
                row.append(f"v{rng.integers(3)}")
        rows.append(row)
    return rows


def write_census(path: pathlib.Path, rows: list[list[str]]):
    """Comma-separated with the UCI file's leading spaces, gzipped."""
    text = "".join(", ".join(r) + "\n" for r in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()))


# --------------------------------------------------------------------------- CoNLL-2003

CONLL_TRAIN = [
    [("EU", "NNP", "I-NP", "I-ORG"), ("rejects", "VBZ", "I-VP", "O"), ("the", "DT", "I-NP", "O"), ("call", "NN", "I-NP", "O")],
    [("The", "DT", "I-NP", "O"), ("year", "NN", "I-NP", "O"), ("1996", "CD", "I-NP", "O"), ("ended", "VBD", "I-VP", "O"), (".", ".", "O", "O")],
    [("Peter", "NNP", "I-NP", "I-PER"), ("saw", "VBD", "I-VP", "O"), ("the", "DT", "I-NP", "O"), ("EU", "NNP", "I-NP", "I-ORG"), ("in", "IN", "I-PP", "O"), ("the", "DT", "I-NP", "O"), ("year", "NN", "I-NP", "O"), ("2001", "CD", "I-NP", "O")],
]
CONLL_DEV = [[("the", "DT", "I-NP", "O"), ("Zyzzyva", "NNP", "I-NP", "I-ORG"), ("1984", "CD", "I-NP", "O")]]
CONLL_TEST = [[("Peter", "NNP", "I-NP", "I-PER"), ("rejects", "VBZ", "I-VP", "O"), ("x", "NN", "I-NP", "O")]]


def conll_text(sentences, docstart: bool = True) -> str:
    lines = ["-DOCSTART- -X- O O", ""] if docstart else []
    for s in sentences:
        lines += [" ".join(tok) for tok in s] + [""]
    return "\n".join(lines) + "\n"


def write_conll(root: pathlib.Path, dev=CONLL_DEV):
    root.mkdir(parents=True, exist_ok=True)
    (root / "eng.train").write_text(conll_text(CONLL_TRAIN[:1]) + conll_text(CONLL_TRAIN[1:]))
    (root / "eng.testa").write_text(conll_text(dev))
    (root / "eng.testb").write_text(conll_text(CONLL_TEST, docstart=False))
