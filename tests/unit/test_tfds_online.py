"""The online path of mtlx's builders (manual_dir=None), with TFDS's download manager faked.

The fake serves generated files from a tmp dir by URL basename, so the test
checks which URLs a build asks for and that the downloaded files are used,
without network.
"""

import pathlib
import zipfile

import pytest
import tensorflow_datasets as tfds

import fixtures_tfds as fx
from mtlx.data import tfds_sets
from mtlx.data.tfds_builders import common

tfds.disable_progress_bar()


class FakeDownloads:
    """Stands in for tfds.download.DownloadManager: ``download`` maps URLs to local files."""

    downloaded_size = 0

    def __init__(self, root: pathlib.Path):
        self.root, self.urls = root, []

    def _one(self, url: str) -> pathlib.Path:
        self.urls.append(url)
        path = self.root / url.rsplit("/", 1)[-1]
        if not path.exists():
            raise AssertionError(f"unexpected download {url}")
        return path

    def download(self, urls):
        return self._one(urls) if isinstance(urls, str) else {k: self._one(u) for k, u in urls.items()}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    downloads = FakeDownloads(tmp_path / "web")
    downloads.root.mkdir()
    monkeypatch.setattr(common.Builder, "_make_download_manager", lambda self, *a, **k: downloads)
    return downloads


def test_online_mnist_family(fake, tmp_path):
    fx.write_mnist_like(fake.root, n_train=20, n_test=10)
    ts = tfds_sets.multi_mnist(data_dir=str(tmp_path / "data"))
    assert ts.info["num_examples"] == {"train": 18, "validation": 2, "test": 10}
    assert sorted(fake.urls) == sorted(
        "https://storage.googleapis.com/cvdf-datasets/mnist/" + f
        for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    )
    assert "downloaded" in ts.info["source"]


def test_online_omniglot_all(fake, tmp_path):
    fx.write_omniglot_zip(fake.root / "images_background.zip", {"Alpha": 2}, drawings=5)
    fx.write_omniglot_zip(fake.root / "images_evaluation.zip", {"Omega": 2}, drawings=5)
    ts = tfds_sets.omniglot_alphabets(data_dir=str(tmp_path / "data"))
    assert ts.task_names == ("alpha", "omega") and ts.info["num_examples"]["train"] == 12
    assert all(u.startswith("https://github.com/brendenlake/omniglot/") for u in fake.urls)


def test_online_census_uses_both_files(fake, tmp_path):
    fx.write_census(fake.root / "census-income.data.gz", fx.census_rows(12, seed=0))
    fx.write_census(fake.root / "census-income.test.gz", fx.census_rows(8, seed=1, first_age=50))
    ts = tfds_sets.census_income(data_dir=str(tmp_path / "data"))
    assert ts.info["num_examples"] == {"train": 12, "validation": 4, "test": 4}
    assert len(fake.urls) == 2 and all("archive.ics.uci.edu" in u for u in fake.urls)


def test_online_conll_zip(fake, tmp_path):
    with zipfile.ZipFile(fake.root / "conll2003.zip", "w") as z:
        z.writestr("train.txt", fx.conll_text(fx.CONLL_TRAIN))
        z.writestr("valid.txt", fx.conll_text(fx.CONLL_DEV))
        z.writestr("test.txt", fx.conll_text(fx.CONLL_TEST))
    ts = tfds_sets.conll2003_tagging(data_dir=str(tmp_path / "data"))
    assert ts.info["num_examples"] == {"train": 3, "validation": 1, "test": 1}
    assert fake.urls == ["https://data.deepai.org/conll2003.zip"]
