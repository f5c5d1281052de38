"""The weightings the peer libraries have (issue 20): each against its paper's definition,
recomputed here in numpy / scipy on small hand-made Jacobians (2-4 tasks, 3-6 parameters),
never from mtlx's own output; and every one compiled once in the jitted train step, under
vmap over seeds."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from mtlx.weighting import (PER_PARAMETER_WEIGHTINGS, get_weighting, init_state, objective_weights, on_jacobian)
from mtlx.weighting.fairgrad import fairgrad
from mtlx.weighting.gradvac import GradVacState
from mtlx.weighting.pcgrad import random_orders
from mtlx.weighting.robust import sorted_rows, trimmed_mean_direction
from mtlx.weighting.stch import stch_value

KEY = jax.random.wrap_key_data(np.array([0, 7], np.uint32))
NEW = ("stch", "imtl_l", "gradvac", "fairgrad", "modo", "sdmgrad", "config", "dualproj", "krum", "trimmed_mean",
       "moco", "db_mtl", "excess_mtl")
_JIT = {}


def f32(x):
    return np.asarray(x, np.float32)


P6 = 6   # every test Jacobian is zero-padded to 6 columns (same geometry, fewer compiled shapes)


def run(name, losses, G, state=None, key=KEY, **opts):
    """One call of the weighting on the Jacobian ``G`` (its direction as a vector of G's width)."""
    cfg = (name, tuple(sorted(opts.items())))
    if cfg not in _JIT:
        w = get_weighting(name, **opts)
        _JIT[cfg] = (w, jax.jit(on_jacobian(w)))
    w, f = _JIT[cfg]
    G = np.asarray(G, np.float64)
    width = G.shape[1]
    G = f32(np.concatenate([G, np.zeros((len(G), P6 - width))], axis=1))
    state = init_state(w, G.shape[0], P6) if state is None else state
    out = f(f32(losses), None if w.needs == "none" else G, state, key)
    out = jax.tree.map(lambda x: np.asarray(x, np.float64), out)
    return out[0], None if out[1] is None else out[1][:width], out[2], out[3]


def proj_simplex(v):
    """Euclidean projection onto the simplex, by bisection on the shift (independent of mtlx's sort rule)."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > 1 else (lo, mid)
    return np.maximum(v - 0.5 * (lo + hi), 0)


def cos(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


G3 = np.array([[1.0, 0.5, -0.25, 0.0, 2.0], [-1.5, 1.0, 0.5, 0.25, 0.0], [0.5, -1.0, 1.0, 0.75, -0.5]])
L3 = np.array([0.5, 1.25, 2.0])


# ----------------------------------------------------------------------------- GradVac


def gradvac_reference(G, targets, orders, beta):
    """Wang et al. (2021) Algorithm 1, literally (one g_i at a time, one j at a time)."""
    T = len(G)
    out, tgt = [], targets.copy()
    for i in range(T):
        gi = G[i].copy()
        for j in orders[i]:
            if j == i:
                continue
            phi, hat = cos(gi, G[j]), tgt[i, j]
            if phi < hat:
                gi = gi + np.linalg.norm(gi) * (hat * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - hat**2)) / (
                    np.linalg.norm(G[j]) * np.sqrt(1 - hat**2)) * G[j]
            tgt[i, j] = (1 - beta) * hat + beta * phi
        out.append(gi)
    return np.sum(out, axis=0), tgt


def test_gradvac_reaches_the_target_similarity_and_updates_it_by_ema():
    g1, g2 = np.array([1.0, 0.0, 0.5]), np.array([-0.5, 1.0, 0.0])
    phi = cos(g1, g2)
    targets = np.array([[0.0, 0.3], [0.3, 0.0]])
    _, d, st, _ = run("gradvac", [1, 1], [g1, g2], GradVacState(f32(targets)), beta=0.25)
    # by construction the modified g1' has cos(g1', g2) = 0.3 and lies in span(g1, g2)
    a = (0.3 * np.sqrt(1 - phi**2) - phi * np.sqrt(1 - 0.09)) / np.sqrt(1 - 0.09)
    g1p = g1 + np.linalg.norm(g1) * a / np.linalg.norm(g2) * g2
    g2p = g2 + np.linalg.norm(g2) * a / np.linalg.norm(g1) * g1
    assert cos(g1p, g2) == pytest.approx(0.3) and cos(g2p, g1) == pytest.approx(0.3)
    np.testing.assert_allclose(d, g1p + g2p, rtol=1e-5)
    np.testing.assert_allclose(st.targets, [[0, 0.75 * 0.3 + 0.25 * phi], [0.75 * 0.3 + 0.25 * phi, 0]], atol=1e-6)
    # zero targets (the start): PCGrad's projection of conflicting pairs
    _, d0, _, _ = run("gradvac", [1, 1], [g1, g2], beta=0.25)
    pc = g1 - g1 @ g2 / (g2 @ g2) * g2 + g2 - g1 @ g2 / (g1 @ g1) * g1
    np.testing.assert_allclose(d0, pc, rtol=1e-5, atol=1e-6)


def test_gradvac_three_tasks_matches_algorithm_1():
    targets = np.array([[0, 0.2, -0.1], [0.5, 0, 0.1], [0.0, 0.4, 0]])
    for k in range(3):
        key = jax.random.wrap_key_data(np.array([1, k], np.uint32))
        orders = np.asarray(random_orders(key, 3))
        ref_d, ref_t = gradvac_reference(G3, targets, orders, 0.1)
        _, d, st, _ = run("gradvac", L3, G3, GradVacState(f32(targets)), key=key, beta=0.1)
        np.testing.assert_allclose(d, ref_d, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(st.targets, ref_t, atol=1e-5)


# ----------------------------------------------------------------------------- STCH


def test_stch_value_and_its_tchebycheff_limit():
    f, lam = np.array([0.3, 1.2, 0.9]), np.array([1.0, 0.5, 2.0])
    tch = np.max(lam * f)
    for mu in (1.0, 0.1, 1e-3):
        v = float(stch_value(f32(f), f32(lam), mu))
        x = lam * f
        assert v == pytest.approx(x.max() + mu * np.log(np.sum(np.exp((x - x.max()) / mu))), rel=1e-5)
        assert tch - 1e-6 <= v <= tch + mu * np.log(3) + 1e-6
    assert float(stch_value(f32(f), f32(lam), 1e-4)) == pytest.approx(tch, abs=2e-4)


@pytest.mark.parametrize("mu", [1.0, 0.05])
def test_stch_weights_are_the_gradient_of_the_smooth_tchebycheff_value(mu):
    """w_t = T d/dL_t [mu log sum exp(log(L)/mu)] (central differences in float64); as mu -> 0
    the weight concentrates on the task with the largest (log) loss."""
    def value(L):
        return 3 * mu * np.log(np.sum(np.exp(np.log(L) / mu)))

    w, d, _, info = run("stch", L3, G3, mu=mu)
    num = [(value(L3 + h) - value(L3 - h)) / 2e-6 for h in np.eye(3) * 1e-6]
    assert d is None
    np.testing.assert_allclose(w, num, rtol=1e-4, atol=1e-9)
    if mu < 0.1:
        np.testing.assert_allclose(w, [0, 0, 3 / L3[2]], atol=1e-3)


def test_stch_warmup_normalises_by_the_mean_warmup_loss():
    w_stch = get_weighting("stch", warmup_steps=2)
    f = jax.jit(w_stch.combine)
    st = w_stch.init(3)
    for L in ([1.0, 2.0, 4.0], [3.0, 2.0, 0.5]):
        w, _, st, _ = f(f32(L), None, st, KEY)
        np.testing.assert_allclose(w, 1 / np.array(L), rtol=1e-6)      # warm-up: sum of log losses
    w, _, st, _ = f(f32(L3), None, st, KEY)
    n = np.array([2.0, 2.0, 2.25])
    soft = np.exp(np.log(L3 / n)) / np.sum(np.exp(np.log(L3 / n)))
    np.testing.assert_allclose(w, 3 * soft / L3, rtol=1e-5)


# ----------------------------------------------------------------------------- FairGrad, ConFIG, DualProj


@functools.lru_cache(maxsize=None)
def fairgrad_traced():
    """FairGrad's combine with alpha a traced argument (as a hyperparameter population passes it)."""
    return jax.jit(lambda alpha, G: on_jacobian(fairgrad(alpha=alpha))(np.ones(len(G), np.float32), G, (), KEY))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 0.5])
def test_fairgrad_solves_the_alpha_fair_condition(alpha):
    """(G G^T w)_i = w_i^(-1/alpha); at alpha = 1 this is Nash-MTL's w_i (M w)_i = 1."""
    for G in (G3, 10.0 * G3, np.array([[1.0, 0, 0, 0, 0], [0.6, 0.8, 0, 0, 0], [0, 0, 0.1, 0, 0]])):
        w, d, _, _ = jax.tree.map(lambda x: np.asarray(x, np.float64), fairgrad_traced()(np.float32(alpha), f32(G)))
        M = G @ G.T
        assert np.all(w > 0)
        np.testing.assert_allclose(M @ w, w ** (-1 / alpha), rtol=2e-3)
        np.testing.assert_allclose(d, G.T @ w, rtol=1e-4, atol=1e-6)
        if alpha == 1.0:
            np.testing.assert_allclose(w * (M @ w), 1.0, rtol=2e-3)


def test_fairgrad_rejects_a_non_positive_alpha():
    with pytest.raises(ValueError, match="alpha"):
        get_weighting("fairgrad", alpha=0.0)


def test_config_has_equal_positive_cosines_and_the_papers_length():
    rng = np.random.default_rng(3)
    for G in (G3, rng.standard_normal((3, 6)) * np.array([[0.1], [1], [10]]), G3[:2]):
        _, d, _, _ = run("config", np.ones(len(G)), G)
        cosines = G @ d / (np.linalg.norm(G, axis=1) * np.linalg.norm(d))
        assert np.all(cosines > 0)
        np.testing.assert_allclose(cosines, cosines[0], rtol=1e-4)
        U = G / np.linalg.norm(G, axis=1, keepdims=True)
        v = np.linalg.pinv(U) @ np.ones(len(G))          # [u_1 .. u_T]^{-T} 1, minimum norm
        gu = v / np.linalg.norm(v)
        np.testing.assert_allclose(d, np.sum(G @ gu) * gu, rtol=1e-4, atol=1e-6)


def test_dualproj_is_the_projection_of_the_mean_onto_the_dual_cone():
    rng = np.random.default_rng(4)
    for G in (G3, rng.standard_normal((3, 6)), np.array([[1.0, 0.2, 0], [0.5, 1.0, 0.1], [-1.0, 0.1, 0.3]])):
        _, d, _, _ = run("dualproj", np.ones(len(G)), G, reg_eps=0.0)
        g0 = G.mean(0)
        ref = scipy.optimize.minimize(lambda x: np.sum((x - g0) ** 2), g0, jac=lambda x: 2 * (x - g0),
                                      constraints=[{"type": "ineq", "fun": lambda x: G @ x, "jac": lambda x: G}],
                                      method="SLSQP", options={"ftol": 1e-14, "maxiter": 500}).x
        assert np.all(G @ d >= -1e-5 * np.abs(G).max() ** 2)
        np.testing.assert_allclose(d, ref, atol=2e-4 * np.linalg.norm(g0) + 1e-6)
    G = np.array([[1.0, 0.2, 0], [0.5, 1.0, 0.1], [0.8, 0.5, 0.3]])     # no conflict: the mean itself
    np.testing.assert_allclose(run("dualproj", np.ones(3), G, reg_eps=0.0)[1], G.mean(0), rtol=1e-5)


# ----------------------------------------------------------------------------- Krum, trimmed mean


def test_krum_picks_the_gradient_closest_to_its_neighbours():
    G = np.array([[1.0, 0, 0], [1.1, 0.1, 0], [0.9, 0.0, 0.2], [-5.0, 4.0, 3.0]])
    D = ((G[:, None] - G[None]) ** 2).sum(-1)
    scores = [np.sort(np.delete(D[i], i))[:4 - 0 - 2].sum() for i in range(4)]   # T - f - 2 neighbours
    _, d, _, _ = run("krum", np.ones(4), G)
    np.testing.assert_allclose(d, G[np.argmin(scores)], rtol=1e-5)
    two = np.argsort(scores)[:2]
    np.testing.assert_allclose(run("krum", np.ones(4), G, n_selected=2)[1], G[two].mean(0), rtol=1e-5)
    # f = 1: one neighbour, so the two rows of the closest pair tie: their mean
    i, j = np.unravel_index(np.argmin(D + np.diag(np.full(4, np.inf))), D.shape)
    np.testing.assert_allclose(run("krum", np.ones(4), G, n_byzantine=1)[1], (G[i] + G[j]) / 2, rtol=1e-5)
    np.testing.assert_allclose(run("krum", np.ones(2), G[:2])[1], G[:2].mean(0), rtol=1e-5)  # a tie: the mean


def test_trimmed_mean_per_coordinate():
    G = np.array([[1.0, -2, 3, 0.5], [4.0, 0, -1, 0.5], [-3.0, 1, 2, 0.5], [0.0, 5, 0, -9]])
    ref = np.array([np.mean(np.sort(G[:, p])[1:3]) for p in range(4)])
    np.testing.assert_allclose(run("trimmed_mean", np.ones(4), G)[1], ref, rtol=1e-6)
    np.testing.assert_allclose(run("trimmed_mean", np.ones(4), G, trim_number=0)[1], G.mean(0), rtol=1e-6)
    np.testing.assert_allclose(run("trimmed_mean", np.ones(2), G[:2])[1], G[:2].mean(0), rtol=1e-6)


@pytest.mark.parametrize("T", [2, 5, 8, 41])  # 41: past the sorting network, jnp.sort
def test_sorted_rows_is_a_sort_with_ties(T):
    G = np.random.default_rng(T).integers(-3, 4, (T, 40)).astype(np.float32)  # many ties
    np.testing.assert_array_equal(np.asarray(sorted_rows(jnp.asarray(G))), np.sort(G, axis=0))
    b = 2 if T > 4 else 0
    ref = np.sort(G, axis=0)[b:T - b].mean(0)
    np.testing.assert_allclose(np.asarray(trimmed_mean_direction(jnp.asarray(G), 2)), ref, rtol=1e-6)


# ----------------------------------------------------------------------------- MoDo, SDMGrad, MoCo


def test_modo_projected_step_on_lambda():
    M = G3 @ G3.T
    lam0 = np.full(3, 1 / 3)
    for gamma, rho in ((1e-3, 0.1), (0.3, 0.0)):
        _, d, st, _ = run("modo", L3, G3, gamma=gamma, rho=rho)
        lam = proj_simplex(lam0 - gamma * (M @ lam0 + rho * lam0))
        np.testing.assert_allclose(st.lam, lam, atol=1e-6)
        np.testing.assert_allclose(d, G3.T @ lam, rtol=1e-5, atol=1e-6)


def test_sdmgrad_solves_its_direction_oriented_problem():
    """With plain small steps and many iterations, w -> argmin_{simplex} ||G^T w + lam g0||^2 and
    d = (G^T w + lam g0) / (1 + lam)."""
    lam = 0.3
    g0 = G3.mean(0)
    ref = scipy.optimize.minimize(lambda w: np.sum((G3.T @ w + lam * g0) ** 2), np.full(3, 1 / 3),
                                  constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}], bounds=[(0, 1)] * 3,
                                  method="SLSQP", options={"ftol": 1e-15}).x
    _, d, st, _ = run("sdmgrad", L3, G3, lam=lam, lr=0.05, momentum=0.0, num_iters=3000)
    np.testing.assert_allclose(st.w, ref, atol=2e-3)
    np.testing.assert_allclose(d, (G3.T @ st.w + lam * g0) / (1 + lam), rtol=1e-5, atol=1e-6)


def test_sdmgrad_inner_steps_with_momentum():
    M = G3 @ G3.T
    Mn = M / np.mean(np.sqrt(np.diag(M))) ** 2
    w, buf = np.full(3, 1 / 3), np.zeros(3)
    eta = min(5.0, 1 / np.trace(Mn))                   # the step, capped below 1 / lambda_max
    for _ in range(3):
        buf = 0.5 * buf + Mn @ w + 0.3 * Mn.mean(1)
        w = proj_simplex(w - eta * buf)
    _, _, st, _ = run("sdmgrad", L3, G3, num_iters=3)
    np.testing.assert_allclose(st.w, w, atol=1e-5)


def test_moco_tracks_gradients_and_steps_lambda():
    beta, gamma, rho, sig = 0.5, 0.2, 0.1, 0.5
    Y, lam = np.zeros_like(G3), np.full(3, 1 / 3)
    w = get_weighting("moco", beta=beta, gamma=gamma, rho=rho, beta_sigma=sig, gamma_sigma=sig)
    st = init_state(w, 3, G3.shape[1])
    f = jax.jit(w.combine)
    for k, G in enumerate((G3, G3[::-1], 2 * G3), start=1):
        Y = Y - beta / k**sig * (Y - G)
        lam = proj_simplex(lam - gamma / k**sig * ((Y @ Y.T + rho * np.eye(3)) @ lam))
        _, d, st, _ = f(f32(L3), f32(G), st, KEY)
        np.testing.assert_allclose(np.asarray(st.tracked), Y, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(d), Y.T @ lam, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- DB-MTL, ExcessMTL, IMTL-L


def test_db_mtl_balances_log_loss_gradients_to_the_largest_norm():
    beta, sig = 0.9, 0.5
    H = np.zeros_like(G3)
    w_db = get_weighting("db_mtl", beta=beta, beta_sigma=sig)
    st = init_state(w_db, 3, G3.shape[1])
    f = jax.jit(w_db.combine)
    for k, (G, L) in enumerate(((G3, L3), (G3[::-1], L3[::-1])), start=1):
        b = beta / k**sig
        H = b * H + (1 - b) * G / L[:, None]                 # EMA of grad log L_t
        n = np.linalg.norm(H, axis=1)
        w, d, st, _ = f(f32(L), f32(G), st, KEY)
        np.testing.assert_allclose(np.asarray(d), n.max() * np.sum(H / n[:, None], axis=0), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(w), 1 / L, rtol=1e-6)


def test_excess_mtl_exponentiated_steps_on_relative_excess_risk():
    eta = 0.5
    w_ex = get_weighting("excess_mtl", step_size=eta)
    st = init_state(w_ex, 3, G3.shape[1])
    f = jax.jit(w_ex.combine)
    S, w, e0 = np.zeros_like(G3), np.ones(3), None
    for G in (G3, 0.5 * G3 + 0.1, G3[::-1]):
        S = S + G**2
        e = np.sum(G**2 / np.sqrt(S + 1e-7), axis=1)       # g^T diag(AdaGrad)^-1 g
        if e0 is None:
            e0 = e
        else:
            w = w * np.exp(eta * e / e0)
            w = 3 * w / w.sum()
        got, d, st, _ = f(f32(L3), f32(G), st, KEY)
        assert d is None
        np.testing.assert_allclose(np.asarray(got), w, rtol=1e-5)


def test_imtl_l_scaled_losses_balance_at_the_optimum():
    w = get_weighting("imtl_l")
    params = w.init_params(3)
    assert w.needs == "none" and w.objective is not None
    g = jax.grad(w.objective, argnums=1)(f32(L3), params)["log_scale"]
    np.testing.assert_allclose(np.asarray(g), L3 - 1.0, rtol=1e-6)               # d/ds (e^s L - s) at s = 0
    opt = {"log_scale": f32(-np.log(L3))}
    np.testing.assert_allclose(np.asarray(jax.grad(w.objective, argnums=1)(f32(L3), opt)["log_scale"]), 0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(objective_weights(w, f32(L3), opt)), 1 / L3, rtol=1e-6)


# ----------------------------------------------------------------------------- hard matrices


def hard_cases():
    rng = np.random.default_rng(9)
    g = rng.standard_normal((2, 6))
    return {"rank_deficient": np.stack([g[0], g[1], g[0] + g[1]]),
            "opposite": np.stack([g[0], -g[0], g[1]]),
            "near_zero_row": np.stack([1e-6 * g[0], g[1], g[0] - g[1]]),
            "spread": rng.standard_normal((3, 6)) * np.array([[1e-2], [1.0], [1e2]])}


@pytest.mark.parametrize("name", [n for n in NEW if n not in ("stch", "imtl_l")])
def test_gradient_weightings_stay_finite_on_hard_matrices(name):
    """Linearly dependent, exactly opposed, near-zero and badly scaled gradients: finite weights
    and directions; DualProj's and ConFIG's directions conflict with no task (to float32 level)."""
    for case, G in hard_cases().items():
        w, d, _, info = run(name, L3, G)
        assert np.all(np.isfinite(w)) and (d is None or np.all(np.isfinite(d))), (name, case)
        if name in ("dualproj", "config") and case != "opposite":
            tol = 1e-5 * np.max(np.sum(G * G, axis=1)) * np.linalg.norm(d) / np.max(np.linalg.norm(G, axis=1))
            if name == "dualproj":   # TorchJD's reg_eps = 1e-4 on M / tr(M) loosens the cone (as UPGrad's)
                tol = tol + 1e-4 * np.sum(G * G) * np.abs(info["aggregation_weights"])
            assert np.all(G @ d >= -tol), (name, case, G @ d)


# ----------------------------------------------------------------------------- interface


def test_per_parameter_weightings_need_num_params():
    for name in PER_PARAMETER_WEIGHTINGS:
        with pytest.raises(ValueError, match=rf"weighting '{name}' keeps a per-shared-parameter state"):
            get_weighting(name).init(3)
    with pytest.raises(ValueError, match=r"weighting.options.n_selected=0 must be >= 1"):
        get_weighting("krum", n_selected=0)
    with pytest.raises(ValueError, match=r"weighting.options.beta=1.5 must lie in \[0, 1\]"):
        get_weighting("gradvac", beta=1.5)


@pytest.fixture(scope="module")
def step_setup():
    from fixtures_train import MLP, tiny
    from mtlx.architectures import build_model, shared_mask

    _, ts, _ = tiny("mlp")
    model = build_model("hard", ts, MLP)
    params = model.init(jax.random.PRNGKey(0), ts.splits["train"]["inputs"][:2])["params"]
    mask = jax.tree_util.tree_leaves(shared_mask(model, params))
    P = sum(int(np.size(p)) for p, m in zip(jax.tree_util.tree_leaves(params), mask) if m)
    return ts, model, P


def test_every_new_weighting_compiles_once_in_the_step_under_vmap_over_seeds(step_setup):
    """One jitted program runs every new weighting's train step, vmapped over three seeds,
    for two steps (one compilation for all: XLA:CPU compile time dominates)."""
    from fixtures_train import jit, stack
    from mtlx.data.pipeline import BatchOrder, gather
    from mtlx.optim import make_optimizer
    from mtlx.train import init_state as train_init_state
    from mtlx.train import make_train_step

    ts, model, P = step_setup
    data = ts.splits["train"]
    tx = make_optimizer("adam", 1e-2)
    weightings = {name: get_weighting(name) for name in NEW}
    steps = {name: jax.vmap(make_train_step(model, ts.tasks, w, tx)) for name, w in weightings.items()}
    program = jit(lambda states, batches: {n: steps[n](states[n], batches) for n in NEW})
    seeds = (0, 1, 2)
    states = {}
    for name, w in weightings.items():
        w_no_p = w._replace(init=lambda T: None)      # the step's state; the weighting's own set below
        states[name] = stack([train_init_state(model, w_no_p, tx, 3, data["inputs"][:2], s)
                              .replace(wstate=init_state(w, 3, P)) for s in seeds])
    orders = [BatchOrder(8, 4, s) for s in seeds]
    for i in range(2):
        out = program(states, stack([gather(data, o(i)) for o in orders]))
        states = {n: out[n][0] for n in NEW}
    assert program._cache_size() == 1
    for name in NEW:
        st, metrics = out[name]
        assert int(st.step[0]) == 2, name
        for leaf in jax.tree_util.tree_leaves((st.params, st.wstate, metrics["weights"])):
            assert np.all(np.isfinite(np.asarray(leaf, np.float64))), name
        first = jax.tree_util.tree_leaves(st.params["model"])[0]
        assert not np.allclose(first[0], first[1]), name     # the seeds ran separately
