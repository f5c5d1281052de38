"""Task sets built through mtlx's TFDS builders from tiny generated source files.

No network and no local data copies: sources are written in their original formats in
tmp dirs (tests/fixtures_tfds.py); TFDS catalog sets use tfds.testing.mock_data.
"""

import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import fixtures_tfds as fx
from mtlx.data import TASK_SETS, tfds_reading, tfds_sets
from mtlx.data.tfds_builders import census_income as census_lib
from mtlx.data.tfds_builders import common, multi_mnist
from mtlx.tasks import TaskSet

tfds.disable_progress_bar()


def check_layout(ts: TaskSet, split: str):
    """Every split follows the batch layout with per-task targets and 0/1 float weights."""
    d = ts.splits[split]
    n = len(d["inputs"])
    assert d["inputs"].shape[1:] == ts.input_shape
    assert set(d["targets"]) == set(d["weights"]) == set(ts.task_names)
    for task in ts.tasks:
        assert len(d["targets"][task.name]) == n
        w = d["weights"][task.name]
        assert w.shape == (n,) and w.dtype == np.float32 and set(np.unique(w)) <= {0.0, 1.0}
    return d


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds_data"))


# --------------------------------------------------------------------------- MultiMNIST / MultiFashion


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    templates = fx.write_mnist_like(root / "mnist")
    fx.write_mnist_like(root / "fashion-mnist", n_train=30, n_test=10)
    return root, templates


def test_multi_mnist_labels_match_the_digits_placed(mnist_dir, data_dir):
    root, templates = mnist_dir
    ts = tfds_sets.multi_mnist(manual_dir=str(root), data_dir=data_dir)
    assert ts.task_names == ("left", "right") and ts.input_kind == "image" and ts.input_shape == (28, 28, 1)
    assert all(t.kind == "classification" and t.num_outputs == 10 for t in ts.tasks)
    assert {s: len(ts.splits[s]["inputs"]) for s in ("train", "validation", "test")} == {"train": 36, "validation": 4, "test": 20}
    for split in ("train", "validation", "test"):
        d = check_layout(ts, split)
        x, left, right = d["inputs"], d["targets"]["left"], d["targets"]["right"]
        assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        # each image is exactly the composite of the two labelled class templates
        expected = np.stack([
            common.resize_uint8(multi_mnist.overlay(templates[l], templates[r]), (28, 28))[..., None]
            for l, r in zip(left, right)
        ])
        np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), expected)
    # the left labels of the test split are the test digits (each used once)
    assert sorted(ts.splits["test"]["targets"]["left"].tolist()) == sorted(fx.labels_for(20, 1).tolist())
    assert "idx" in ts.info["source"] and ts.info["num_examples"]["train"] == 36


def test_multi_fashion_and_seed_changes_pairing(mnist_dir, data_dir):
    root, _ = mnist_dir
    a = tfds_sets.multi_fashion(manual_dir=str(root), data_dir=data_dir, seed=0)
    b = tfds_sets.multi_fashion(manual_dir=str(root), data_dir=data_dir, seed=1)
    assert a.name == "multi_fashion" and len(a.splits["train"]["inputs"]) == 27
    assert a.info["builder"] == "multi_fashion/seed0" and b.info["builder"] == "multi_fashion/seed1"
    pairs = lambda ts: sorted(zip(ts.splits["test"]["targets"]["left"].tolist(), ts.splits["test"]["targets"]["right"].tolist()))
    assert pairs(a) != pairs(b)


def test_mnist_csv_fallback_when_train_idx_missing(tmp_path):
    fx.write_mnist_like(tmp_path / "src" / "mnist", n_train=20, n_test=10, train=False, csv=True)
    ts = tfds_sets.one_vs_all(manual_dir=str(tmp_path / "src"), data_dir=str(tmp_path / "data"), base="mnist")
    assert ts.info["num_examples"] == {"train": 18, "validation": 2, "test": 10}
    assert "mnist_5k.csv.gz" in ts.info["source"] and "not the full 60,000" in ts.info["source"]


# --------------------------------------------------------------------------- one-vs-all


def test_one_vs_all_binary_tasks(mnist_dir, data_dir):
    root, templates = mnist_dir
    ts = tfds_sets.one_vs_all(manual_dir=str(root), data_dir=data_dir, base="fashion_mnist")
    assert ts.task_names == tuple(f"is_{k}" for k in range(10))
    assert all(t.kind == "binary" and t.num_outputs == 1 for t in ts.tasks)
    d = check_layout(ts, "test")
    y = np.stack([d["targets"][f"is_{k}"] for k in range(10)], 1)
    assert set(np.unique(y)) == {0.0, 1.0} and (y.sum(1) == 1).all()
    labels = y.argmax(1)
    assert sorted(labels.tolist()) == sorted(fx.labels_for(10, 1).tolist())
    # the image of each example is the template of its class
    np.testing.assert_array_equal(np.round(d["inputs"][..., 0] * 255).astype(np.uint8), templates[labels])
    assert tfds_sets.one_vs_all_accuracy(y, labels) == 1.0
    with pytest.raises(ValueError, match="base"):
        tfds_sets.one_vs_all(manual_dir=str(root), data_dir=data_dir, base="kmnist")


# --------------------------------------------------------------------------- Omniglot


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("sources") / "omniglot"
    root.mkdir()
    fx.write_omniglot_zip(root / "images_background_small1.zip", {"Alpha_(one)": 3, "Beta": 2}, seed=0)
    fx.write_omniglot_zip(root / "images_background_small2.zip", {"Beta": 2, "Gamma": 2}, seed=1)
    return tfds_sets.omniglot_alphabets(manual_dir=str(root.parent), data_dir=data_dir, subset="small")


def test_omniglot_one_task_per_alphabet(omniglot):
    ts = omniglot
    assert ts.task_names == ("alpha_one", "beta", "gamma")  # Beta, in both zips, is taken once
    assert [t.num_outputs for t in ts.tasks] == [3, 2, 2] and all(t.kind == "classification" for t in ts.tasks)
    # 5 drawings per character -> 3/1/1 per character, 7 characters
    assert ts.info["num_examples"] == {"train": 21, "validation": 7, "test": 7}
    for split in ("train", "validation", "test"):
        d = check_layout(ts, split)
        w = np.stack([d["weights"][t] for t in ts.task_names], 1)
        assert (w.sum(1) == 1).all()  # exactly one alphabet labelled per example
        for task in ts.tasks:
            y, own = d["targets"][task.name], d["weights"][task.name] > 0
            assert y.dtype == np.int32 and (y[~own] == 0).all()
            assert 0 <= y.min() and y.max() < task.num_outputs
        x = d["inputs"]
        assert x.shape[1:] == (28, 28, 1) and x.max() > 0.5 and x.mean() < 0.3  # inverted: strokes bright
    train = ts.splits["train"]
    assert [int(train["weights"][a].sum()) for a in ts.task_names] == [9, 6, 6]
    assert sorted(train["targets"]["alpha_one"][train["weights"]["alpha_one"] > 0].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


# --------------------------------------------------------------------------- Census-Income


@pytest.fixture(scope="module")
def census_test_only(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("sources")
    rows = fx.census_rows(60, seed=0)
    fx.write_census(root / "census-income" / "census-income.test.gz", rows)
    return rows, tfds_sets.census_income(manual_dir=str(root), data_dir=data_dir, group=1)


def test_census_features_and_labels(census_test_only):
    rows, ts = census_test_only
    assert ts.task_names == ("income_50k", "never_married") and all(t.kind == "binary" for t in ts.tasks)
    assert ts.info["num_examples"] == {"train": 42, "validation": 9, "test": 9}
    names = ts.info["feature_names"]
    assert ts.input_shape == (len(names),) and ts.input_kind == "dense"
    for excluded in ("income_50k", "marital_stat", "education", "instance_weight"):
        assert not any(n == excluded or n.startswith(excluded + "=") for n in names)
    train = check_layout(ts, "train")
    x = train["inputs"]
    assert x.dtype == np.float32
    numeric = x[:, : len(census_lib.NUMERIC)]
    np.testing.assert_allclose(numeric.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(numeric.std(0), 1, atol=1e-4)
    # one-hot widths: one block per categorical column, width = values seen in training, one 1 per row
    col = np.array([n.split("=")[0] for n in names])
    train_rows = [rows[int(a) - 20] for a in ages(ts, x)]
    for c in census_lib.CATEGORICAL:
        block = x[:, col == c]
        assert block.shape[1] == len({r[census_lib.COLUMNS.index(c)] for r in train_rows})
        assert (block.sum(1) == 1).all() and set(np.unique(block)) == {0.0, 1.0}
    assert (col == "class_worker").sum() == 3 and (col == "sex").sum() == 2
    # labels follow the source columns of the same rows (found by their unique age)
    for split in ("train", "validation", "test"):
        d = ts.splits[split]
        src = [rows[int(a) - 20] for a in ages(ts, d["inputs"])]
        expect_income = [r[census_lib.COLUMNS.index("income_50k")] == "50000+." for r in src]
        expect_single = [r[census_lib.COLUMNS.index("marital_stat")] == "Never married" for r in src]
        np.testing.assert_array_equal(d["targets"]["income_50k"], expect_income)
        np.testing.assert_array_equal(d["targets"]["never_married"], expect_single)


def ages(ts, x):
    """The unique ages back from the standardised first column."""
    stats = ts.info["standardisation"]
    assert stats["columns"][0] == "age"
    return np.round(x[:, 0] * stats["std"][0] + stats["mean"][0]).astype(int)


def test_census_group2_and_both_files(tmp_path):
    rows_data, rows_test = fx.census_rows(30, seed=1), fx.census_rows(20, seed=2, first_age=60)
    rows_test[0][census_lib.COLUMNS.index("class_worker")] = "Never seen in training"
    fx.write_census(tmp_path / "census-income" / "census-income.data.gz", rows_data)
    fx.write_census(tmp_path / "census-income" / "census-income.test.gz", rows_test)
    ts = tfds_sets.census_income(manual_dir=str(tmp_path), data_dir=str(tmp_path / "data"), group=2)
    assert ts.task_names == ("college", "never_married")
    assert ts.info["num_examples"] == {"train": 30, "validation": 10, "test": 10}
    assert "MMoE protocol" in ts.info["splits"]
    d = check_layout(ts, "train")
    src = sorted(rows_data, key=lambda r: int(r[0]))
    order = np.argsort(d["inputs"][:, 0])
    expect = [r[census_lib.COLUMNS.index("education")] in census_lib.COLLEGE_DEGREES for r in src]
    np.testing.assert_array_equal(d["targets"]["college"][order], expect)
    # an unseen category encodes as an all-zero block
    names = np.array([n.split("=")[0] for n in ts.info["feature_names"]])
    held = np.concatenate([ts.splits[s]["inputs"][:, names == "class_worker"] for s in ("validation", "test")])
    assert sorted(held.sum(1).tolist()).count(0.0) == 1
    with pytest.raises(ValueError, match="group"):
        tfds_sets.census_income(manual_dir=str(tmp_path), data_dir=str(tmp_path / "data"), group=3)


def test_census_bad_row_names_file_and_line(tmp_path):
    rows = fx.census_rows(5, seed=0)
    rows[2] = rows[2][:40]
    fx.write_census(tmp_path / "census-income.test.gz", rows)
    with pytest.raises(ValueError, match=r"census-income.test.gz, line 3"):
        tfds_sets.census_income(manual_dir=str(tmp_path), data_dir=str(tmp_path / "data"))


# --------------------------------------------------------------------------- CoNLL-2003


@pytest.fixture(scope="module")
def conll_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    fx.write_conll(root / "conll2003")
    return root


def test_conll_tagging_padding_and_vocab(conll_dir, data_dir):
    ts = tfds_sets.conll2003_tagging(manual_dir=str(conll_dir), data_dir=data_dir, max_len=6, max_word_len=4)
    assert ts.task_names == ("pos", "chunk", "ner") and all(t.kind == "tagging" for t in ts.tasks)
    assert ts.input_kind == "tokens" and ts.input_shape == (6,)
    labels = ts.info["labels"]
    assert labels["ner"] == ["I-ORG", "I-PER", "O"] and [t.num_outputs for t in ts.tasks] == [len(labels[t]) for t in ts.task_names]
    train = check_layout(ts, "train")
    x = train["inputs"]
    assert x.dtype == np.int32 and x.shape == (3, 6)
    lengths = (x > 0).sum(1)
    assert sorted(lengths.tolist()) == [4, 5, 6]  # the 8-token sentence is truncated to 6
    assert ts.info["truncated_sentences"] == {"train": 1, "validation": 0, "test": 0}
    for task in ts.task_names:
        y = train["targets"][task]
        assert y.dtype == np.int32 and y.shape == (3, 6)
        assert ((y == -1) == (x == 0)).all()  # -1 exactly at padding
        assert y.max() < len(labels[task])
    # word ids: 'the' (4 times, 'The' included) is the most frequent word -> id 2
    first = [s for s in range(3) if lengths[s] == 4][0]  # 'EU rejects the call'
    assert x[first][2] == 2 and ts.info["min_count"] == 1
    # digits normalised: '1996' and '2001' share one id; the dev's '1984' too
    year_ids = {int(x[s][k]) for s in range(3) for k in range(6) if train["targets"]["pos"][s][k] == labels["pos"].index("CD")}
    assert len(year_ids) == 1
    dev = ts.splits["validation"]
    assert dev["inputs"][0][1] == 1 and dev["inputs"][0][2] in year_ids  # 'Zyzzyva' is OOV
    assert ts.vocab_size == 2 + 11  # 11 distinct normalised training words
    # characters: (N, L, W), 0 at padding, truncated to max_word_len
    chars = train["chars"]
    assert chars.shape == (3, 6, 4) and chars.dtype == np.int32
    assert ((chars.sum(-1) > 0) == (x > 0)).all()
    assert (ts.splits["test"]["chars"] >= 0).all()


def test_conll_min_count_and_unseen_label(conll_dir, data_dir, tmp_path):
    ts = tfds_sets.conll2003_tagging(manual_dir=str(conll_dir), data_dir=data_dir, min_count=2)
    assert ts.vocab_size == 2 + 4  # the, eu, year, 0000 occur twice or more
    x = ts.splits["train"]["inputs"]
    assert x.max() < ts.vocab_size and (x == 1).sum() > 0 and x.shape[1] == 64
    fx.write_conll(tmp_path / "bad", dev=[[("the", "DT", "I-NP", "B-NEW")]])
    with pytest.raises(ValueError, match="B-NEW"):
        tfds_sets.conll2003_tagging(manual_dir=str(tmp_path / "bad"), data_dir=str(tmp_path / "data"))


# --------------------------------------------------------------------------- errors and options


@pytest.mark.parametrize(
    "name, options, missing",
    [
        ("multi_mnist", {}, "t10k-images-idx3-ubyte.gz"),
        ("multi_fashion", {}, "t10k-images-idx3-ubyte.gz"),
        ("one_vs_all", {"base": "fashion_mnist"}, "t10k-images-idx3-ubyte.gz"),
        ("omniglot_alphabets", {"subset": "small1"}, "images_background_small1.zip"),
        ("census_income", {}, "census-income.test.gz"),
        ("conll2003_tagging", {}, "eng.train"),
    ],
)
def test_missing_source_file_is_named(tmp_path, name, options, missing):
    with pytest.raises(FileNotFoundError, match=missing) as err:
        TASK_SETS[name](manual_dir=str(tmp_path), data_dir=str(tmp_path / "data"), **options)
    assert "http" in str(err.value) and "Expected files" in str(err.value)


def test_missing_train_file_is_named(tmp_path):
    fx.write_mnist_like(tmp_path / "fashion-mnist")
    (tmp_path / "fashion-mnist" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte.gz"):
        tfds_sets.multi_fashion(manual_dir=str(tmp_path), data_dir=str(tmp_path / "data"))


def test_unknown_options_are_value_errors():
    with pytest.raises(ValueError, match="unknown option.*colour.*valid options"):
        tfds_sets.multi_mnist(colour="red")
    with pytest.raises(ValueError, match="subset"):
        tfds_sets.omniglot_alphabets(subset="everything")
    with pytest.raises(ValueError, match="max_len"):
        tfds_sets.conll2003_tagging(max_len=0)
    assert set(TASK_SETS) == {
        "mmoe_synthetic", "synthetic_classification",
        "multi_mnist", "multi_fashion", "one_vs_all", "omniglot_alphabets",
        "census_income", "conll2003_tagging", "celeb_a", "cifar100",
    }  # fmt: skip
    # the old name of the TFDS part of the registry still reads (for this release)
    assert tfds_sets.TFDS_TASK_SETS == {k: v for k, v in TASK_SETS.items() if "synthetic" not in k}


# --------------------------------------------------------------------------- TFDS catalog (mock data)


def test_celeb_a_streams_forty_attributes():
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        ts = tfds_sets.celeb_a(image_size=16)
        assert ts.num_tasks == 40 and all(t.kind == "binary" and t.num_outputs == 1 for t in ts.tasks)
        assert "Smiling" in ts.task_names and ts.input_shape == (16, 16, 3)
        split = ts.splits["validation"]
        assert len(split) == 6 and not isinstance(split, dict)
        batch = split[np.array([0, 3, 5])]
        assert batch["inputs"].shape == (3, 16, 16, 3) and batch["inputs"].dtype == np.float32
        assert 0 <= batch["inputs"].min() and batch["inputs"].max() <= 1
        assert set(batch["targets"]) == set(ts.task_names)
        assert all(set(np.unique(v)) <= {0.0, 1.0} and v.shape == (3,) for v in batch["targets"].values())
        assert all((w == 1).all() for w in batch["weights"].values())
    assert "tensorflow" not in sys.modules


@pytest.mark.parametrize("in_memory", [True, False])
def test_cifar100_coarse_and_fine(in_memory):
    with tfds.testing.mock_data(num_examples=10, policy=tfds.testing.MockPolicy.USE_CODE):
        ts = tfds_sets.cifar100(in_memory=in_memory, validation_fraction=0.2, seed=1)
        assert ts.task_names == ("coarse", "fine") and [t.num_outputs for t in ts.tasks] == [20, 100]
        assert ts.info["num_examples"] == {"train": 8, "validation": 2, "test": 10}
        split = ts.splits["train"]
        batch = split if in_memory else split[np.arange(len(split))]
        assert batch["inputs"].shape == (8, 32, 32, 3) and batch["inputs"].dtype == np.float32
        assert 0 <= batch["targets"]["coarse"].min() and batch["targets"]["coarse"].max() < 20
        assert 0 <= batch["targets"]["fine"].min() and batch["targets"]["fine"].max() < 100
    assert "tensorflow" not in sys.modules


def test_fast_reading_matches_tfds_decoding(census_test_only, data_dir):
    from mtlx.data.tfds_builders import CensusIncome

    source = CensusIncome(config=CensusIncome.config_for("seed0", seed=0), data_dir=data_dir).as_data_source()["train"]
    assert tfds_reading.fast_reading_works(source)
    rows = list(range(len(source)))
    fast, generic = tfds_reading.read_fast(source, rows), tfds_reading.read_generic(source, rows)
    assert all(tfds_reading.same_record(a, b) for a, b in zip(fast, generic))
