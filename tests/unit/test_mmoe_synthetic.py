"""The MMoE synthetic task set against its definition (Ma et al. 2018, Sec. 4.1), and its data seed.

u1, u2 orthonormal; w1 = c u1, w2 = c (p u1 + sqrt(1 - p^2) u2), so cos(w1, w2) = p;
y_k = w_k.x + sum_i sin(alpha_i w_k.x + beta_i) + eps. No files, no network; well under 5 s.
"""

import itertools

import numpy as np
import pytest

from mtlx.data import get_task_set
from mtlx.data.synthetic import mmoe_synthetic

SMALL = {"n_train": 512, "n_validation": 64, "n_test": 64}


@pytest.mark.parametrize("p", [1.0, 0.9, 0.5, 0.0, -0.4])
@pytest.mark.parametrize("seed", [0, 3])
def test_cosine_of_the_two_task_weight_vectors_equals_p(p, seed):
    # Noise-free linear targets (no sines) give the weight vectors back by least squares,
    # independently of what the generator reports about itself.
    ts = mmoe_synthetic(correlation=p, dim=20, num_sin=0, noise_std=0.0, scale=2.0, standardise=False,
                        seed=seed, **SMALL)
    tr = ts.splits["train"]
    w1, w2 = (np.linalg.lstsq(tr["inputs"].astype(np.float64), tr["targets"][k].astype(np.float64), rcond=None)[0]
              for k in ("y1", "y2"))
    np.testing.assert_allclose([np.linalg.norm(w1), np.linalg.norm(w2)], [2.0, 2.0], rtol=1e-4)
    np.testing.assert_allclose(w1 @ w2 / (np.linalg.norm(w1) * np.linalg.norm(w2)), p, atol=1e-4)
    assert ts.info["cosine_w1_w2"] == pytest.approx(p, abs=1e-9)


@pytest.mark.parametrize("p", [0.9, 0.0])
def test_targets_follow_the_papers_formula(p):
    ts = mmoe_synthetic(correlation=p, dim=30, num_sin=10, noise_std=0.0, standardise=False, seed=5, **SMALL)
    info = ts.info
    w1, w2, alpha, beta = (np.asarray(info[k]) for k in ("w1", "w2", "alpha", "beta"))
    u1 = w1  # c = 1
    u2 = (w2 - p * u1) / np.sqrt(1 - p**2)
    np.testing.assert_allclose(np.array([[u1 @ u1, u1 @ u2], [u2 @ u1, u2 @ u2]]), np.eye(2), atol=1e-12)
    for split in ts.splits.values():
        x = split["inputs"].astype(np.float64)
        for name, w in (("y1", w1), ("y2", w2)):
            z = x @ w
            want = z + np.sin(np.outer(z, alpha) + beta).sum(-1)  # the same alpha, beta for both tasks
            np.testing.assert_allclose(split["targets"][name], want, rtol=1e-5, atol=1e-5)


def test_targets_empirical_correlation_falls_as_p_falls():
    ps = [1.0, 0.9, 0.5, 0.0]
    for seed in (0, 1, 2):
        corr = []
        for p in ps:
            tr = mmoe_synthetic(correlation=p, n_train=20000, n_validation=0, n_test=0, seed=seed).splits["train"]
            corr.append(np.corrcoef(tr["targets"]["y1"], tr["targets"]["y2"])[0, 1])
        assert corr[0] > 0.99, (seed, corr)  # only the noise separates the tasks at p = 1
        assert all(a > b for a, b in itertools.pairwise(corr)), (seed, corr)
        assert abs(corr[-1]) < 0.05, (seed, corr)  # w1 _|_ w2 and x ~ N(0, I): independent targets


def _same(a, b):
    return all(np.array_equal(a[s]["inputs"], b[s]["inputs"])
               and all(np.array_equal(a[s]["targets"][k], b[s]["targets"][k]) for k in ("y1", "y2"))
               for s in ("train", "validation", "test"))


def test_data_seed_same_seed_same_data_other_seed_other_data():
    a = get_task_set("mmoe_synthetic", correlation=0.5, seed=7, **SMALL)
    b = get_task_set("mmoe_synthetic", correlation=0.5, seed=7, **SMALL)
    c = get_task_set("mmoe_synthetic", correlation=0.5, seed=8, **SMALL)
    assert _same(a.splits, b.splits) and a.info["w1"] == b.info["w1"] and a.info["alpha"] == b.info["alpha"]
    assert not np.array_equal(a.splits["train"]["inputs"], c.splits["train"]["inputs"])
    for s in ("train", "validation", "test"):
        for k in ("y1", "y2"):
            assert not np.allclose(a.splits[s]["targets"][k], c.splits[s]["targets"][k])
    # the draw of the task itself changes too, not only the sample: weight vectors and sine parameters
    assert not np.allclose(a.info["w1"], c.info["w1"]) and not np.allclose(a.info["alpha"], c.info["alpha"])
    # ... while the correlation p keeps its meaning for every data seed
    assert a.info["cosine_w1_w2"] == pytest.approx(0.5) and c.info["cosine_w1_w2"] == pytest.approx(0.5)


def test_standardised_with_the_train_splits_statistics():
    raw = mmoe_synthetic(correlation=0.5, standardise=False, seed=4, **SMALL)
    std = mmoe_synthetic(correlation=0.5, standardise=True, seed=4, **SMALL)
    for k in ("y1", "y2"):
        mean, sd = std.info["standardisation"][k]
        assert mean == pytest.approx(raw.splits["train"]["targets"][k].mean(), rel=1e-5)
        for s in ("train", "validation", "test"):
            np.testing.assert_allclose(std.splits[s]["targets"][k], (raw.splits[s]["targets"][k] - mean) / sd,
                                       rtol=1e-4, atol=1e-5)
        assert std.splits["train"]["targets"][k].std() == pytest.approx(1.0, abs=1e-4)
