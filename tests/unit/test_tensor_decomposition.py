"""mtlx.tensor_decomposition (DMTRL's LAF / Tucker / TT maths) against the formulas:
exactness at full rank, closed-form counts, rank selection by relative error.

Everything that runs JAX code runs under one ``jax.jit`` per case (op-by-op
execution compiles every primitive and is much slower on this CPU).
"""

import jax
import jax.numpy as jnp
import numpy as np
from helpers import dmtrl_param_count
import optax
import pytest

from mtlx import tensor_decomposition as td

STACKED = [(3, 4, 5), (3, 3, 3, 2, 4)]  # (T, *kernel_shape): dense-like and conv-like


def _rel(a, b):
    return float(np.linalg.norm(np.ravel(a - b)) / np.linalg.norm(np.ravel(b)))


# --------------------------------------------------------------------------- pure factorisations


@pytest.mark.parametrize("method", td.METHODS)
def test_full_rank_decomposition_is_exact_and_lower_rank_is_not(method):
    rng = np.random.default_rng(0)
    targets = [rng.standard_normal(s) for s in STACKED]
    papers = [td.to_paper(t) for t in targets]
    fulls = [td.rank_bounds(method, p.shape) for p in papers]

    @jax.jit  # the traceable (jax, float32) path, as used for random init
    def traced(ps):
        fs = [td.decompose(method, p, r) for p, r in zip(ps, fulls)]
        return fs, [td.to_stacked(td.generate(method, f)) for f in fs]

    traced_fs, traced_rebuilt = traced([jnp.asarray(p, jnp.float32) for p in papers])
    for target, paper, full, jfs, jrebuilt in zip(targets, papers, fulls, traced_fs, traced_rebuilt):
        factors = td.decompose(method, paper, full)  # numpy float64 path, as used for init_from
        for fs in (factors, jfs):
            assert tuple(f.shape for f in fs) == td.factor_shapes(method, paper.shape, full)
            assert sum(f.size for f in fs) == td.param_count(method, paper.shape, full) == dmtrl_param_count(
                method, paper.shape, full)
        rebuilt = td.to_stacked(td.generate(method, factors))
        assert rebuilt.shape == jrebuilt.shape == target.shape
        assert _rel(rebuilt, target) < 1e-10
        assert _rel(np.asarray(jrebuilt, np.float64), target) < 1e-5
        # one rank below full cannot represent a generic tensor
        assert td.relative_error(method, paper, (full[0] - 1,) + full[1:]) > 1e-2
    # ranks beyond what an unfolding holds (padded factors) stay exact: mode 0 (7) > 3 * 2
    tall = np.random.default_rng(2).standard_normal((7, 3, 2))
    full = td.rank_bounds(method, tall.shape)
    assert td.relative_error(method, tall, full) < 1e-10
    if method == "tucker":
        u0 = td.decompose(method, tall, full)[1]
        np.testing.assert_allclose(u0.T @ u0, np.eye(7), atol=1e-10)
    if method == "tt":  # r_2 = 4 > r_1 * n_2 = 2 rows at that TT-SVD step
        w = np.random.default_rng(3).standard_normal((2, 2, 2, 2))
        assert td.relative_error("tt", w, (1, 4, 2)) <= td.relative_error("tt", w, (1, 2, 2)) + 1e-12


@pytest.mark.parametrize("method", td.METHODS)
def test_full_rank_gradient_fit_reaches_any_tensor(method):
    """Adam on the factors (started from the decomposition of ANOTHER random tensor) fits the target."""
    rng = np.random.default_rng(1)
    starts, targets = [], []
    for stacked in STACKED:
        target = td.to_paper(rng.standard_normal(stacked))
        start = td.decompose(method, td.to_paper(rng.standard_normal(stacked)), td.rank_bounds(method, target.shape))
        starts.append(tuple(jnp.asarray(f, jnp.float32) for f in start))
        targets.append(jnp.asarray(target, jnp.float32))
    opt = optax.adam(0.03)

    def errors(fs, ts):
        return [jnp.sqrt(jnp.sum((td.generate(method, f) - t) ** 2) / jnp.sum(t**2)) for f, t in zip(fs, ts)]

    @jax.jit
    def fit(fs, ts):
        def step(carry, _):
            fs, state = carry
            g = jax.grad(lambda fs: sum(e**2 for e in errors(fs, ts)))(fs)
            updates, state = opt.update(g, state, fs)
            return (optax.apply_updates(fs, updates), state), None

        (fit_fs, _), _ = jax.lax.scan(step, (fs, opt.init(fs)), None, length=400)
        return errors(fs, ts), errors(fit_fs, ts)

    before, after = fit(starts, targets)
    assert min(float(e) for e in before) > 0.5
    assert max(float(e) for e in after) < 2e-2, after


def test_closed_form_countsdmtrl_param_count():
    assert td.param_count("laf", (4, 5, 3), (2,)) == 20 * 2 + 2 * 3
    assert td.param_count("tucker", (4, 5, 3), (2, 3, 2)) == 2 * 3 * 2 + 4 * 2 + 5 * 3 + 3 * 2
    assert td.param_count("tt", (4, 5, 3), (2, 3)) == 1 * 4 * 2 + 2 * 5 * 3 + 3 * 3 * 1
    assert td.rank_bounds("tt", (3, 3, 2, 4, 3)) == (3, 9, 12, 3)
    assert td.rank_bounds("laf", (3, 3, 2, 4, 3)) == (3,)


def _decaying(shape, seed):
    """A tensor whose spectra decay (low multilinear rank plus small noise)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(tuple(max(1, n // 2) for n in shape))
    for k, n in enumerate(shape):
        w = td.mode_product(w, rng.standard_normal((n, w.shape[k])), k)
    return w + 0.03 * np.std(w) * rng.standard_normal(shape)


@pytest.mark.parametrize("eps", [0.05, 0.2])
@pytest.mark.parametrize("method", td.METHODS)
def test_auto_rank_is_smallest_meeting_rel_error(method, eps):
    for seed, shape in enumerate([(8, 6, 3), (3, 3, 4, 5, 3)]):
        w = _decaying(shape, seed)
        ranks = td.select_ranks(method, w, eps)
        assert td.relative_error(method, w, ranks) <= eps
        assert ranks != td.rank_bounds(method, shape)  # not trivially full rank
        for k in range(len(ranks)):  # lowering any rank by one misses eps
            if ranks[k] > 1:
                lower = ranks[:k] + (ranks[k] - 1,) + ranks[k + 1:]
                assert td.relative_error(method, w, lower) > eps, (ranks, k)
        assert tuple(f.shape for f in td.decompose(method, w, "auto", eps)) == td.factor_shapes(method, shape, ranks)
    assert td.select_ranks(method, w, 0.0) == td.rank_bounds(method, w.shape)




def test_rank_errors_name_the_rank_and_its_range():
    with pytest.raises(ValueError, match=r"rank=\(4, 4\) has 2 entries.*needs 3.*1\.\.\(4, 5, 3\)"):
        td.resolve_rank("tucker", (4, 5, 3), (4, 4))
    with pytest.raises(ValueError, match=r"entry 0 = 5 is out of range"):
        td.resolve_rank("tucker", (4, 5, 3), (5, 1, 1))
    with pytest.raises(ValueError, match="rank=0 must be >= 1"):
        td.resolve_rank("laf", (4, 5, 3), 0)
    with pytest.raises(ValueError, match=r"method='svd' is not valid; choose one of \['laf', 'tucker', 'tt'\]"):
        td.resolve_rank("svd", (4, 5, 3), 2)
    with pytest.raises(ValueError, match=r"rel_error=1.0 must be in \[0, 1\)"):
        td.select_ranks("tt", np.ones((2, 2, 2)), 1.0)
    assert td.resolve_rank("tt", (4, 5, 3), 100) == td.rank_bounds("tt", (4, 5, 3)) == (4, 3)
