"""Loss weightings, tested against the papers' definitions (not our own output); their
interface (jit, vmap over seeds, named states) in tests/unit/test_weightings_interface.py."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from mtlx.weighting import NEEDS, WEIGHTINGS, EmptyState, get_weighting, init_state, objective_weights, on_jacobian, solvers
from mtlx.weighting.aligned_mtl import alignment_matrix
from mtlx.weighting.graddrop import graddrop_direction
from mtlx.weighting.pcgrad import pcgrad_coefficients, random_orders
from weighting_helpers import KEY, P10, R6, T3, f32, jitted, key, pad, run


def test_registry_and_errors():
    assert set(WEIGHTINGS) >= {"equal", "static", "uncertainty", "dwa", "rlw", "gls", "famo", "gradnorm",
                               "mgda", "mgda_ub", "pcgrad", "cagrad", "imtl", "nash_mtl", "aligned_mtl",
                               "upgrad", "graddrop"}
    with pytest.raises(ValueError, match="choose one of"):
        get_weighting("nope")
    with pytest.raises(ValueError, match="bad options"):
        get_weighting("mgda", alpha=1.0)
    with pytest.raises(ValueError):
        get_weighting("mgda", normalization="bogus")
    for name in ("gradnorm", "famo"):
        with pytest.raises(ValueError, match=rf"{name}: optimizer='rmsprop' is not valid; choose one of"):
            get_weighting(name, optimizer="rmsprop")
    for name, ctor in WEIGHTINGS.items():
        w = ctor([1.0, 1.0]) if name == "static" else ctor()
        assert w.name == name and w.needs in NEEDS


# --------------------------------------------------------------------------
# MGDA
# --------------------------------------------------------------------------


@pytest.mark.parametrize("solver", ["active_set", "frank_wolfe"])
def test_mgda_two_tasks_closed_form(solver):
    """Sener & Koltun Alg. 1: gamma = clip(((g2 - g1).g2) / ||g1 - g2||^2, 0, 1)."""
    rng = np.random.default_rng(0)
    cases = [rng.standard_normal((2, P10)) for _ in range(4)]
    g = rng.standard_normal(P10)
    cases += [np.stack([g, 3 * g + rng.standard_normal(P10) * 0.1]),   # clipped at gamma = 1
              np.stack([5 * g, 0.2 * g])]                                # clipped at gamma = 0
    for G in cases:
        g1, g2 = G
        gamma = np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0.0, 1.0)
        w, d, _, _ = run("mgda", [1.0, 1.0], G, solver=solver)
        assert d is None
        np.testing.assert_allclose(np.asarray(w), [gamma, 1 - gamma], atol=2e-5)


def _simplex_grid(T, n):
    grid = np.array([c for c in itertools.product(range(n + 1), repeat=T - 1) if sum(c) <= n], float)
    return np.concatenate([grid, n - grid.sum(1, keepdims=True)], axis=1) / n


@pytest.mark.parametrize("T,n", [(3, 240), (4, 60)])
def test_mgda_min_norm_point_brute_force(T, n):
    """The weights are the min-norm point of the convex hull: compare with a grid
    over the simplex, and check the exact optimality condition
    g_w . g_i >= ||g_w||^2 for every i (the min-norm point's characterisation)."""
    rng = np.random.default_rng(T)
    grid = _simplex_grid(T, n)
    for trial in range(4):
        rank = [2, 5, 8, 8][trial]                    # rank < T: 0 may lie inside the hull
        G = pad(rng.standard_normal((T, rank)) * rng.uniform(0.3, 3.0, (T, 1)))
        if trial == 3:
            G[1:] += 2.0 * G[0]                       # correlated, non-trivial face
        M = G @ G.T
        w = np.asarray(run("mgda", np.ones(T), G)[0], np.float64)
        assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-6
        f_w = w @ M @ w
        f_grid = np.einsum("ki,ij,kj->k", grid, M, grid).min()
        scale = np.max(np.diag(M))
        assert f_w <= f_grid + 1e-6 * scale
        # grid resolution: f(grid best) - f* <= |grad| * (T/n) + ||M|| (T/n)^2
        assert f_grid - f_w <= 2 * np.abs(M @ w).max() * T / n + scale * (T / n) ** 2 + 1e-6 * scale
        gw = G.T @ w
        assert np.all(G @ gw >= gw @ gw - 1e-5 * scale)


def test_mgda_warm_start_reaches_the_cold_solution():
    """Started from the previous step's weights (kept in the state), MGDA's
    solve reaches the cold start's min-norm point on every step of a drifting
    sequence of gradients, full-rank and rank-deficient (T > rank: the
    weights need not be unique, the norm is)."""
    rng = np.random.default_rng(21)
    for rank in (P10, 2):
        base, drift = rng.standard_normal((2, T3, rank))
        state = get_weighting("mgda").init(T3)
        assert not np.any(state.weights)                      # none yet: the best vertex
        for step in range(6):
            G = pad(base + 0.4 * step * drift)
            M = G @ G.T
            w, _, state, _ = run("mgda", np.ones(T3), G, state=state)
            cold, _, cold_state, _ = run("mgda", np.ones(T3), G, warm_start=False)
            assert cold_state == EmptyState()
            w, cold = np.asarray(w, np.float64), np.asarray(cold, np.float64)
            np.testing.assert_array_equal(np.asarray(state.weights), w)
            assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-6
            assert abs(w @ M @ w - cold @ M @ cold) <= 1e-6 * np.max(np.diag(M))
            if rank == P10:
                np.testing.assert_allclose(w, cold, atol=1e-5)


def test_mgda_ub_on_representation_gradients():
    rng = np.random.default_rng(3)
    assert get_weighting("mgda_ub").needs == "representation"
    E = 2.0 * np.eye(T3, R6)                           # orthogonal, equal norms
    w, d, _, _ = run("mgda_ub", np.ones(T3), E @ E.T)   # the step passes the rows' Gram matrix
    assert d is None
    np.testing.assert_allclose(np.asarray(w), np.full(T3, 1 / 3), atol=1e-6)
    Rg = rng.standard_normal((T3, R6))
    w = np.asarray(run("mgda_ub", np.ones(T3), Rg @ Rg.T)[0], np.float64)
    np.testing.assert_allclose(w, np.asarray(run("mgda", np.ones(T3), Rg)[0]), atol=1e-6)
    gw = Rg.T @ w
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-6
    assert np.all(Rg @ gw >= gw @ gw - 1e-5 * np.max(np.sum(Rg * Rg, 1)))


def test_simplex_qp_matches_scipy_on_a_larger_problem():
    """Solver accuracy for a bigger T (the min-norm workhorse) against a float64
    SLSQP. (The cone solver is checked against scipy's NNLS through UPGrad.)"""
    rng = np.random.default_rng(7)
    T, P = 12, 30
    J = rng.standard_normal((T, P)) * np.exp(rng.uniform(-1, 1, (T, 1)))
    M = J @ J.T
    w = np.asarray(jax.jit(solvers.simplex_qp)(f32(M)), np.float64)
    ref = scipy.optimize.minimize(lambda x: x @ M @ x, np.ones(T) / T, jac=lambda x: 2 * M @ x,
                                  bounds=[(0, 1)] * T, method="SLSQP",
                                  constraints={"type": "eq", "fun": lambda x: x.sum() - 1},
                                  options={"ftol": 1e-15, "maxiter": 1000}).x
    assert w @ M @ w <= ref @ M @ ref + 1e-6 * np.max(np.diag(M))
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-6


# --------------------------------------------------------------------------
# PCGrad
# --------------------------------------------------------------------------


def _pcgrad_reference(G, orders):
    """Yu et al. (2020) Algorithm 1, literally, on the vectors."""
    G = np.asarray(G, np.float64)
    out = []
    for i in range(len(G)):
        gi = G[i].copy()
        for j in orders[i]:
            if j != i and gi @ G[j] < 0:
                gi -= (gi @ G[j]) / (G[j] @ G[j]) * G[j]
        out.append(gi)
    return np.array(out)


def test_pcgrad_two_tasks_no_conflict_after_projection():
    rng = np.random.default_rng(1)
    coefficients = jax.jit(lambda G, key: pcgrad_coefficients(solvers.gram(G), random_orders(key, 2)))
    for trial in range(5):
        g1 = rng.standard_normal(7)
        g2 = rng.standard_normal(7)
        g2 = -g2 if g1 @ g2 > 0 else g2                          # a conflicting pair
        G = np.stack([g1, g2])
        Gpc = np.asarray(coefficients(f32(G), key(trial)), np.float64) @ G
        for i, j in itertools.product(range(2), range(2)):
            cos = Gpc[i] @ G[j] / (np.linalg.norm(Gpc[i]) * np.linalg.norm(G[j]))
            assert cos >= -1e-5
        np.testing.assert_allclose(Gpc, _pcgrad_reference(G, [[0, 1], [0, 1]]), rtol=1e-4, atol=1e-5)


_orders = jax.jit(lambda k: random_orders(k, T3))


def test_pcgrad_matches_algorithm_and_sum_without_conflicts():
    rng = np.random.default_rng(2)
    for trial in range(3):
        G = rng.standard_normal((T3, P10))
        orders = np.asarray(_orders(key(trial)))
        assert all(sorted(o) == list(range(T3)) for o in orders)
        w, d, _, _ = run("pcgrad", np.ones(T3), G, key=key(trial))
        np.testing.assert_allclose(np.asarray(d), _pcgrad_reference(G, orders).sum(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(w), 1.0)
    # pairwise non-conflicting gradients: PCGrad is the plain sum
    G = rng.standard_normal(P10) + 0.2 * rng.standard_normal((T3, P10))
    assert np.all(G @ G.T > 0)
    _, d, _, _ = run("pcgrad", np.ones(T3), G)
    np.testing.assert_allclose(np.asarray(d), G.sum(0), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# CAGrad
# --------------------------------------------------------------------------


def _cagrad_reference(G, c):
    """The paper's dual solved with scipy SLSQP (as the authors' code), float64."""
    T = len(G)
    M = G @ G.T
    b = M.mean(1)
    sphi = c * np.sqrt(b.mean())
    F = lambda w: w @ b + sphi * np.sqrt(max(w @ M @ w, 1e-300))
    best = None
    for x0 in [np.ones(T) / T] + [0.9 * np.eye(T)[i] + 0.1 / T for i in range(T)]:
        r = scipy.optimize.minimize(F, x0, bounds=[(0, 1)] * T, method="SLSQP",
                                    constraints={"type": "eq", "fun": lambda w: w.sum() - 1},
                                    options={"ftol": 1e-15, "maxiter": 2000})
        best = r if best is None or r.fun < best.fun else best
    gw = G.T @ best.x
    return G.mean(0) + sphi * gw / np.linalg.norm(gw), best.fun, F


def test_cagrad_solves_the_dual_for_many_tasks():
    """T=12 (warm-started search rounds) against the float64 SLSQP dual."""
    rng = np.random.default_rng(11)
    c = 0.5
    G = rng.standard_normal((12, 40)) * np.exp(rng.uniform(-1, 1, (12, 1))) + 0.5 * rng.standard_normal(40)
    d_ref, F_ref, F = _cagrad_reference(G, c)
    _, direction, _, info = jax.jit(lambda G: on_jacobian(get_weighting("cagrad", c=c))(
        jnp.ones(12), G, EmptyState(), jax.random.PRNGKey(0)))(f32(G))
    assert F(np.asarray(info["dual_weights"], np.float64)) <= F_ref + 1e-5 * abs(F_ref) + 1e-6
    np.testing.assert_allclose(np.asarray(direction, np.float64) * (1 + c * c), d_ref, rtol=2e-3,
                               atol=2e-3 * np.linalg.norm(d_ref))


def test_simplex_qp_warm_start_reaches_the_same_optimum():
    rng = np.random.default_rng(12)
    J = rng.standard_normal((20, 25))
    M, b = f32(J @ J.T), f32(rng.standard_normal(20))
    cold = np.asarray(jax.jit(solvers.simplex_qp)(M, b))
    for x0 in (np.full(20, 0.05), np.eye(20)[3], cold + 0.01 * rng.random(20)):
        warm = np.asarray(jax.jit(lambda M, b, x: solvers.simplex_qp(M, b, x0=x))(M, b, f32(x0)))
        obj = lambda w: 0.5 * w @ np.asarray(M, np.float64) @ w + np.asarray(b, np.float64) @ w
        assert abs(obj(warm) - obj(cold)) <= 1e-6 * np.max(np.diag(np.asarray(M)))
        assert np.all(warm >= 0) and abs(warm.sum() - 1) < 1e-6


def test_cagrad_c0_is_mean_gradient():
    G = np.random.default_rng(4).standard_normal((T3, P10))
    w, d, _, _ = run("cagrad", np.ones(T3), G, c=0.0)
    np.testing.assert_allclose(np.asarray(d), G.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(w), 1.0)


def test_cagrad_solves_the_dual():
    rng = np.random.default_rng(5)
    c = 0.5                                                 # the default
    for rank in [8, 2, 10]:
        G = pad(rng.standard_normal((T3, rank)) * rng.uniform(0.5, 2.0, (T3, 1)))
        d_ref, F_ref, F = _cagrad_reference(G, c)
        weights, direction, _, info = run("cagrad", np.ones(T3), G)
        d = np.asarray(direction, np.float64) * (1 + c * c)   # rescale=1: direction = d / (1 + c^2)
        assert F(np.asarray(info["dual_weights"], np.float64)) <= F_ref + 1e-5 * abs(F_ref) + 1e-6
        np.testing.assert_allclose(d, d_ref, rtol=2e-3, atol=2e-3 * np.linalg.norm(d_ref))
        g0 = G.mean(0)
        assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-4)   # primal feasibility
        np.testing.assert_allclose(np.asarray(weights), 1.0)


# --------------------------------------------------------------------------
# Nash-MTL, UPGrad, IMTL-G, Aligned-MTL, GradDrop
# --------------------------------------------------------------------------


def test_nash_mtl_bargaining_condition():
    rng = np.random.default_rng(6)
    for scale in [1e-2, 1.0, 30.0]:
        G = (rng.standard_normal((T3, P10)) + 0.5 * rng.standard_normal(P10)) * scale
        M = G @ G.T
        assert np.linalg.cond(M) < 1e3
        w, d, _, _ = run("nash_mtl", np.ones(T3), G)
        alpha = np.asarray(w, np.float64)
        assert np.all(alpha > 0)
        np.testing.assert_allclose(M @ alpha, 1.0 / alpha, rtol=1e-3)     # G G^T alpha = 1 / alpha
        assert abs(alpha @ M @ alpha - T3) < 1e-2                         # hence ||G^T alpha||^2 = T
        gd = G.T @ alpha                                                  # clipped to max_norm = 1
        np.testing.assert_allclose(np.asarray(d), gd / np.linalg.norm(gd), rtol=1e-3, atol=1e-5)


def test_upgrad_non_conflicting_and_mean():
    rng = np.random.default_rng(8)
    for trial in range(5):
        G = rng.standard_normal((T3, P10)) * rng.uniform(0.2, 3.0, (T3, 1))
        if trial == 0:
            G[1] = -0.8 * G[0] + 0.3 * rng.standard_normal(P10)   # strong conflict
        if trial == 1:
            G = pad(G[:, :2])                                       # rank 2: 0 may be in the hull
        _, d, _, _ = run("upgrad", np.ones(T3), G)
        d = np.asarray(d, np.float64)
        cos = G @ d / (np.linalg.norm(G, axis=1) * np.linalg.norm(d) + 1e-30)
        assert np.all(cos >= -1e-4), cos
    # no conflicts: the mean
    G = rng.standard_normal(P10) + 0.3 * rng.standard_normal((T3, P10))
    assert np.all(G @ G.T > 0)
    _, d, _, _ = run("upgrad", np.ones(T3), G)
    np.testing.assert_allclose(np.asarray(d), G.mean(0), rtol=1e-5, atol=1e-5)


def test_upgrad_is_mean_of_dual_cone_projections():
    """1/T sum_i pi_J(g_i), each projection computed independently by scipy's
    exact NNLS on the paper's Prop. 1 dual. TorchJD's normalised and
    regularised Gramian M/tr(M) + eps I is the Gramian of the augmented
    matrix [J / ||J||_F, sqrt(eps) I], so the reference uses that matrix."""
    rng = np.random.default_rng(9)
    G = rng.standard_normal((T3, P10))
    G[2] = -0.7 * G[0] + 0.5 * G[2]
    _, d, _, info = run("upgrad", np.ones(T3), G)
    Ja = np.concatenate([G / np.sqrt(np.trace(G @ G.T)), np.sqrt(1e-4) * np.eye(T3)], axis=1)
    w_ref = np.full(T3, 1 / T3)
    for i in range(T3):
        mu, _ = scipy.optimize.nnls(Ja.T, -Ja[i] / T3)   # v = e_i/T + mu, min ||Ja^T v||, mu >= 0
        w_ref += mu
    np.testing.assert_allclose(np.asarray(info["aggregation_weights"]), w_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(d), G.T @ w_ref, rtol=1e-4, atol=1e-5)


def test_imtl_g_equal_projections():
    rng = np.random.default_rng(10)
    for trial in range(3):
        G = rng.standard_normal((T3, P10)) * rng.uniform(0.1, 5.0, (T3, 1))
        w, d, _, info = run("imtl", np.ones(T3), G)
        d = np.asarray(d, np.float64)
        U = G / np.linalg.norm(G, axis=1, keepdims=True)
        proj = U @ d
        np.testing.assert_allclose(proj, proj.mean(), rtol=1e-3)
        alpha = np.asarray(info["alpha"], np.float64)
        assert abs(alpha.sum() - 1) < 1e-5
        np.testing.assert_allclose(d, G.T @ alpha, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(w), 1.0)


def test_aligned_mtl_equal_singular_values():
    rng = np.random.default_rng(11)
    align = jax.jit(alignment_matrix)
    G = rng.standard_normal((T3, P10)) * rng.uniform(0.3, 3.0, (T3, 1))
    W = np.asarray(align(f32(G @ G.T)), np.float64)
    Gh = W @ G                                            # aligned task gradients (rows)
    smin = np.linalg.svd(G, compute_uv=False).min()
    np.testing.assert_allclose(Gh @ Gh.T, smin ** 2 * np.eye(T3), atol=1e-4 * smin ** 2)
    np.testing.assert_allclose(np.linalg.svd(Gh, compute_uv=False), smin, rtol=1e-4)
    _, d, _, _ = run("aligned_mtl", np.ones(T3), G)
    np.testing.assert_allclose(np.asarray(d), Gh.sum(0), rtol=1e-4, atol=1e-5)
    # rank-deficient: the non-zero singular values are equalised to the smallest non-zero one
    G2 = rng.standard_normal((T3, 2)) @ rng.standard_normal((2, P10))
    W2 = np.asarray(align(f32(G2 @ G2.T)), np.float64)
    s_in = np.linalg.svd(G2, compute_uv=False)
    s_out = np.linalg.svd(W2 @ G2, compute_uv=False)
    np.testing.assert_allclose(s_out[:2], s_in[1], rtol=1e-3)
    assert s_out[2] < 1e-3 * s_in[0]


def test_graddrop_sign_consistency():
    rng = np.random.default_rng(12)
    for trial in range(5):
        G = rng.standard_normal((T3, P10))
        _, d, _, _ = run("graddrop", np.ones(T3), G, key=key(trial))
        d = np.asarray(d, np.float64)
        pos, neg = np.clip(G, 0, None).sum(0), np.clip(G, None, 0).sum(0)
        # each coordinate kept only the positive or only the negative components
        assert np.all(np.isclose(d, pos, atol=1e-5) | np.isclose(d, neg, atol=1e-5))
    # all-agreeing coordinates: the plain sum
    Ga = np.abs(G) * np.sign(rng.standard_normal(P10))
    _, d, _, _ = run("graddrop", np.ones(T3), Ga)
    np.testing.assert_allclose(np.asarray(d), Ga.sum(0), rtol=1e-5, atol=1e-6)
    # positives are kept with probability P = 0.5 (1 + sum g / sum |g|)
    g = np.array([[1.0, 2.0, -1.0], [-3.0, 1.0, -1.0]])
    purity = 0.5 * (1 + g.sum(0) / np.abs(g).sum(0))
    keys = jax.random.wrap_key_data(np.stack([np.zeros(4000), np.arange(4000)], 1).astype(np.uint32))
    outs = np.asarray(jax.jit(jax.vmap(lambda k: graddrop_direction(f32(g), k)))(keys))
    freq_pos = np.mean(np.isclose(outs, np.clip(g, 0, None).sum(0)), axis=0)
    np.testing.assert_allclose(freq_pos, purity, atol=0.03)


# --------------------------------------------------------------------------
# Loss-based weightings and GradNorm
# --------------------------------------------------------------------------


@pytest.mark.parametrize("form,optimum", [("regression", lambda L: np.log(L)),
                                          ("classification", lambda L: np.log(2 * L))])
def test_uncertainty_reaches_analytic_optimum(form, optimum):
    w = get_weighting("uncertainty", form=form)
    losses = f32([0.1, 1.0, 4.0])
    tx = optax.adam(0.05)
    params = w.init_params(3)

    @jax.jit
    def fit(params):
        def step(carry, _):
            p, s = carry
            g = jax.grad(w.objective, argnums=1)(losses, p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None
        (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=600)
        return p

    s = np.asarray(fit(params)["log_var"])
    np.testing.assert_allclose(s, optimum(np.asarray(losses)), atol=2e-2)
    eff = np.asarray(objective_weights(w, losses, {"log_var": f32(s)}))
    np.testing.assert_allclose(eff, 0.5 / np.asarray(losses), rtol=5e-2)   # 0.5 / L at the optimum


def test_dwa_block_average_softmax():
    period, temp = 2, 2.0
    w, f = jitted("dwa", temperature=temp, period=period)
    seq = np.random.default_rng(13).uniform(0.5, 2.0, (8, T3))
    state = init_state(w, T3, P10)
    blocks = [seq[0:2].mean(0), seq[2:4].mean(0), seq[4:6].mean(0)]
    expected = [np.ones(T3)] * 4 + [T3 * _softmax(blocks[1] / blocks[0] / temp)] * 2 \
        + [T3 * _softmax(blocks[2] / blocks[1] / temp)] * 2
    for k in range(8):
        weights, _, state, _ = f(f32(seq[k]), None, state, KEY)
        np.testing.assert_allclose(np.asarray(weights), expected[k], rtol=1e-5)
        assert abs(float(weights.sum()) - T3) < 1e-5


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def test_rlw_weights():
    L = np.ones(T3)
    w1 = np.asarray(run("rlw", L, key=key(1))[0])
    w2 = np.asarray(run("rlw", L, key=key(2))[0])
    assert np.all(w1 > 0) and abs(w1.sum() - 1) < 1e-6
    assert not np.allclose(w1, w2)
    np.testing.assert_allclose(np.asarray(run("rlw", L, key=key(1))[0]), w1)      # key-determined
    lam = np.asarray(jax.jit(lambda k: jax.random.normal(k, (T3,), jnp.float32))(key(1)))
    np.testing.assert_allclose(w1, _softmax(lam), rtol=1e-5)                      # softmax(N(0, I))
    ws = np.asarray(run("rlw", L, key=key(1), scale=True)[0])
    np.testing.assert_allclose(ws, T3 * w1, rtol=1e-6)


def test_gls_gradient_is_geometric_mean_gradient():
    gls = get_weighting("gls")
    A = f32(np.random.default_rng(14).standard_normal((3, 4)))
    theta = f32([0.3, -0.2, 0.5, 1.0])
    losses_fn = lambda th: (A @ th) ** 2 + f32([0.1, 0.5, 2.0])
    geo = lambda th: jnp.prod(losses_fn(th)) ** (1 / 3)

    def weighted(th):
        L = losses_fn(th)
        w = gls.combine(jax.lax.stop_gradient(L), None, gls.init(3), KEY)[0]
        return jnp.sum(jax.lax.stop_gradient(w) * L)

    g_w, g_geo = jax.jit(lambda th: (jax.grad(weighted)(th), jax.grad(geo)(th)))(theta)
    np.testing.assert_allclose(g_w, g_geo, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_famo_one_step_matches_algorithm_1(optimizer):
    beta = 0.025  # the default; the decay term gamma * xi vanishes at xi_0 = 0
    opts = {} if optimizer == "adam" else {"optimizer": "sgd"}
    w, f = jitted("famo", **opts)
    L1, L2 = np.array([1.0, 2.0, 0.5]), np.array([0.8, 1.9, 0.3])
    w1, _, state, info = f(f32(L1), None, init_state(w, T3, P10), KEY)
    z = np.ones(T3) / T3
    np.testing.assert_allclose(np.asarray(w1), (z / L1) / (z / L1).sum(), rtol=1e-5)
    w2, _, state, info = f(f32(L2), None, state, KEY)
    # Alg. 1: delta = J_softmax(xi)^T (log L(t) - log L(t+1)), xi <- xi - beta (delta + gamma xi), xi_0 = 0
    J = np.diag(z) - np.outer(z, z)
    u = J.T @ (np.log(L1 + 1e-8) - np.log(L2 + 1e-8))
    xi = -beta * u if optimizer == "sgd" else -beta * u / (np.abs(u) + 1e-8)   # Adam's first step
    np.testing.assert_allclose(np.asarray(state.logits), xi, rtol=1e-4, atol=1e-9)
    z2 = _softmax(xi)
    expect = (z2 / L2) / (z2 / L2).sum()
    np.testing.assert_allclose(np.asarray(w2), expect, rtol=1e-5)
    assert np.all(np.asarray(w2) > 0) and abs(float(w2.sum()) - 1) < 1e-6
    np.testing.assert_allclose(np.asarray(info["z"]), z2, rtol=1e-5)


def test_gradnorm_update_rule():
    """One step by hand: L(t) = L(0) so r_i = 1; ||g_i|| = (2, 1, 1) and w = 1 give
    G_i = (2, 1, 1), target = G_bar = 4/3, dL_grad/dw = sign(G - target) ||g|| = (2, -1, -1)."""
    G = pad(np.diag([2.0, 1.0, 1.0]))
    w, d, state, _ = run("gradnorm", np.ones(T3), G, optimizer="sgd", lr=0.1)
    assert d is None
    np.testing.assert_allclose(np.asarray(w), 1.0)
    expect = np.array([1 - 0.1 * 2, 1 + 0.1, 1 + 0.1])
    np.testing.assert_allclose(np.asarray(state.weights), T3 * expect / expect.sum(), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(n for n in WEIGHTINGS if get_weighting(
    n, **({"weights": (1.0,)} if n == "static" else {})).needs != "none"))
def test_degenerate_gradients_stay_finite(name):
    """All-zero gradients (as with no shared parameters) and a task with a zero
    gradient: finite weights and directions; uniform fallbacks where the
    method is undefined."""
    gram = get_weighting(name).needs == "representation"   # it gets the rows' Gram matrix
    dim = R6 if gram else P10
    rng = np.random.default_rng(15)
    for G in [np.zeros((T3, dim)), np.concatenate([rng.standard_normal((2, dim)), np.zeros((1, dim))])]:
        w, d, _, _ = run(name, np.ones(T3), G @ G.T if gram else G)
        assert np.all(np.isfinite(np.asarray(w))), (name, w)
        assert d is None or np.all(np.isfinite(np.asarray(d)))
        if not G.any():
            assert d is None or not np.asarray(d).any()
            if name in ("mgda", "mgda_ub"):
                np.testing.assert_allclose(np.asarray(w), 1 / T3)
            if name == "nash_mtl":
                np.testing.assert_allclose(np.asarray(w), 1.0)
        elif name in ("mgda", "mgda_ub"):           # the min-norm point of the hull is the zero row: w = e_3
            np.testing.assert_allclose(np.asarray(w), [0.0, 0.0, 1.0], atol=1e-5)
        elif name == "nash_mtl":                    # the zero-gradient task gets the others' mean alpha
            a = np.asarray(w, np.float64)
            M = G @ G.T
            np.testing.assert_allclose((M @ a)[:2], 1 / a[:2], rtol=1e-3)
            np.testing.assert_allclose(a[2], a[:2].mean(), rtol=1e-5)
