"""Pure helpers of mtlx's TFDS builders: no builds, no TFDS files."""

import gzip

import numpy as np
import pytest
import tensorflow_datasets as tfds

import fixtures_tfds as fx
from mtlx.data.tfds_builders import common, conll2003_tagging, multi_mnist, omniglot_alphabets, one_vs_all
from mtlx.data.tfds_builders import census_income as census_lib


def test_overlay_geometry_on_36x36_canvas():
    a = np.full((28, 28), 100, np.uint8)
    b = np.full((28, 28), 200, np.uint8)
    canvas = multi_mnist.overlay(a, b)
    assert canvas.shape == (36, 36)
    # item A occupies rows/cols 0..27, item B rows/cols 8..35; the rest is empty.
    assert (canvas[:8, :28] == 100).all() and (canvas[:28, :8] == 100).all()
    assert (canvas[28:, 8:] == 200).all() and (canvas[8:, 28:] == 200).all()
    assert (canvas[8:28, 8:28] == 200).all()  # overlap: max
    assert (canvas[:8, 28:] == 0).all() and (canvas[28:, :8] == 0).all()
    # max, not overwrite: a brighter A pixel in the overlap survives.
    a[20, 20] = 255
    assert multi_mnist.overlay(a, b)[20, 20] == 255
    assert multi_mnist.overlay(a[None], b[None]).shape == (1, 36, 36)  # batched


def test_compose_pairs_within_split_and_resizes():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (12, 28, 28)).astype(np.uint8)
    labels = np.arange(12) % 10
    multi, left, right = multi_mnist.compose(images, labels, seed=0, split_key=0)
    assert multi.shape == (12, 28, 28, 1) and multi.dtype == np.uint8
    np.testing.assert_array_equal(left, labels)
    assert sorted(right.tolist()) == sorted(labels.tolist())  # every image used once on the right
    again = multi_mnist.compose(images, labels, seed=0, split_key=0)
    np.testing.assert_array_equal(again[0], multi)  # deterministic


def test_idx_round_trip_and_bad_magic(tmp_path):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    np.testing.assert_array_equal(common.parse_idx(fx.idx_bytes(array)), array)
    assert fx.idx_bytes(array)[:4] == bytes([0, 0, 8, 3])
    assert fx.idx_bytes(np.zeros(5, np.uint8))[:4] == bytes([0, 0, 8, 1])
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x12\x34\x08\x03" + b"\0" * 20))
    with pytest.raises(common.CorruptSourceError, match="train-images-idx3-ubyte.gz"):
        common.read_idx(bad)
    notgz = tmp_path / "t10k-labels-idx1-ubyte.gz"
    notgz.write_bytes(b"\x1f\x8bnot gzip")
    with pytest.raises(ValueError, match="t10k-labels"):
        common.read_idx(notgz)


def test_carve_is_a_seeded_partition():
    parts = common.carve(100, [0.7, 0.15, 0.15], 3)
    assert [len(p) for p in parts] == [70, 15, 15]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(100))
    assert all((a == b).all() for a, b in zip(parts, common.carve(100, [0.7, 0.15, 0.15], 3)))
    assert not (parts[1] == common.carve(100, [0.7, 0.15, 0.15], 4)[1]).all()


def test_one_vs_all_accuracy_and_targets():
    labels = np.array([0, 3, 9, 3])
    targets = one_vs_all.one_vs_all_targets(labels)
    stacked = np.stack([targets[f"is_{k}"] for k in range(10)], 1)
    assert (stacked.sum(1) == 1).all() and (stacked.argmax(1) == labels).all()
    assert one_vs_all.one_vs_all_accuracy(stacked, labels) == 1.0
    scores = stacked.copy()
    scores[0] = np.arange(10)  # ranks class 9 first: wrong for label 0
    assert one_vs_all.one_vs_all_accuracy(scores, labels) == 0.75
    with pytest.raises(ValueError):
        one_vs_all.one_vs_all_accuracy(scores[:, :9], labels)


def test_omniglot_split_sizes_and_names():
    assert omniglot_alphabets.split_sizes(20) == (14, 3, 3)
    assert omniglot_alphabets.split_sizes(5) == (3, 1, 1)
    split = omniglot_alphabets.assign_splits(20, 0, 1, 2)
    assert np.bincount(split).tolist() == [14, 3, 3]
    assert omniglot_alphabets.task_name("Japanese_(hiragana)") == "japanese_hiragana"


def test_census_columns_and_degrees():
    assert len(census_lib.COLUMNS) == 42
    assert len(census_lib.NUMERIC) + len(census_lib.CATEGORICAL) + len(census_lib.EXCLUDED) == 42
    assert not set(census_lib.EXCLUDED) & set(census_lib.CATEGORICAL + census_lib.NUMERIC)
    assert "Some college but no degree" not in census_lib.COLLEGE_DEGREES


def test_conll_parse_skips_docstart_and_normalises():
    lines = ["-DOCSTART- -X- O O", "", "EU NNP I-NP I-ORG", "in IN I-PP O", "", "", "1996 CD I-NP O"]
    sentences = conll2003_tagging.parse(lines)
    assert [s["tokens"] for s in sentences] == [["EU", "in"], ["1996"]]
    assert sentences[0]["ner"] == ["I-ORG", "O"]
    assert conll2003_tagging.normalise("Year1996") == "year0000"
    with pytest.raises(common.CorruptSourceError, match="line 3"):
        conll2003_tagging.parse(["a NN I-NP O", "", "b NN"])


def test_builders_register_themselves_under_their_tfds_names():
    from mtlx.data.tfds_builders import BUILDERS

    assert set(BUILDERS) == {"multi_mnist", "multi_fashion", "one_vs_all", "omniglot_alphabets", "census_income", "conll2003_tagging"}
    for name, cls in BUILDERS.items():
        assert cls.name == name and issubclass(cls, common.Builder)
        assert tfds.builder_cls(name) is cls  # registered with TFDS too: tfds.builder(name) finds it
    assert multi_mnist.MultiMnistBase not in BUILDERS.values()  # a shared base (skip_registration) is not a builder
