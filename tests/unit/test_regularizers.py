"""Regularisers on task-stacked weights (mtlx.regularizers) against their definitions:
the l1/lq mixed norm by hand, its proximal step zeroing whole rows (every task at
once) of the irrelevant features of a toy multi-task least-squares problem, the
clustered penalty against Jacob et al.'s and Evgeniou & Pontil's formulas, the
relationship (MRN) covariance updates and quadratic form against their Kronecker
closed forms, and the ``regularizer`` option of an architecture."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict

from fixtures_archs import HEAD_HIDDEN, TINY_MLP, tiny_dense
from mtlx import regularizers
from mtlx.architectures import build_model
from mtlx.regularizers import block_sparse, clustering, relationship

RNG = np.random.default_rng(0)


def hand_mixed_norm(w, q):
    """sum_i ||W[:, ..., i, :]||_q, the row of input unit i over every task (numpy, loops)."""
    w = np.asarray(w, np.float64)
    return sum(np.linalg.norm(np.take(w, i, axis=-2).ravel(), ord=q) for i in range(w.shape[-2]))


@pytest.mark.parametrize("q", [1, 1.5, 2, "inf"])
def test_mixed_norm_by_hand(q):
    qn = np.inf if q == "inf" else q
    for shape in [(3, 5, 4), (2, 3, 3, 2, 4)]:  # a Dense stack, a conv stack (rows = input channels)
        w = RNG.standard_normal(shape).astype(np.float32)
        w[:, ..., 1, :] = 0.0  # a zero row: value 0, finite gradient
        value, g = jax.jit(jax.value_and_grad(block_sparse.mixed_norm), static_argnums=1)(jnp.asarray(w), q)
        np.testing.assert_allclose(value, hand_mixed_norm(w, qn), rtol=1e-5)
        assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[:, ..., 1, :] == 0)


@pytest.mark.parametrize("q", [2, "inf"])
def test_prox_satisfies_its_optimality_condition(q):
    """x = prox(v) iff v - x lies in tau * the subdifferential of ||.||_q at x, row by row: a zero row
    has ||v||_dual <= tau; a non-zero row has ||v - x||_dual = tau and <v - x, x> = tau ||x||_q
    (dual norm: l2 for q = 2, l1 for q = inf)."""
    tau = 1.0
    v = RNG.standard_normal((3, 6, 2)).astype(np.float32)
    v[:, :2] *= 0.1  # small rows, which must vanish
    x = np.asarray(jax.jit(block_sparse.prox, static_argnums=2)(jnp.asarray(v), tau, q), np.float64)
    dual, primal = (2, 2) if q == 2 else (1, np.inf)
    for i in range(v.shape[1]):
        vi, xi = v[:, i].ravel().astype(np.float64), x[:, i].ravel()
        if not np.any(xi):
            assert np.linalg.norm(vi, dual) <= tau + 1e-5
        else:
            np.testing.assert_allclose(np.linalg.norm(vi - xi, dual), tau, rtol=1e-4)
            np.testing.assert_allclose(np.dot(vi - xi, xi), tau * np.linalg.norm(xi, primal), rtol=1e-4)
    assert not np.any(x[:, :2]) and np.all(np.any(x[:, 2:] != 0, axis=(0, 2)))


def toy_multitask(T=4, d=8, relevant=3, n=40):
    """T least-squares tasks y_t = X_t w_t + noise whose true w_t use only the first ``relevant`` features."""
    X = RNG.standard_normal((T, n, d)).astype(np.float32)
    w = np.zeros((T, d, 1), np.float32)
    w[:, :relevant] = RNG.uniform(1.0, 2.0, (T, relevant, 1)) * RNG.choice([-1, 1], (T, relevant, 1))
    y = X @ w + 0.1 * RNG.standard_normal((T, n, 1)).astype(np.float32)
    return jnp.asarray(X), jnp.asarray(y)


@functools.partial(jax.jit, static_argnames=("q", "steps"))
def ista(X, y, strength, q, steps=300, lr=0.05):
    """Proximal gradient on sum_t ||X_t w_t - y_t||^2 / (2n) + strength ||W||_{q,1} (W stacked (T, d, 1))."""
    tx = optax.chain(optax.sgd(lr), block_sparse.proximal(strength, lr, q))
    w = jnp.zeros((X.shape[0], X.shape[2], 1))
    loss = lambda w: jnp.sum((X @ w - y) ** 2) / (2 * X.shape[1])  # noqa: E731

    def step(carry, _):
        w, s = carry
        u, s = tx.update(jax.grad(loss)(w), s, w)
        return (optax.apply_updates(w, u), s), None

    return jax.lax.scan(step, (w, tx.init(w)), None, steps)[0][0]


@pytest.mark.parametrize("q", [2, "inf"])
def test_proximal_step_zeroes_the_irrelevant_rows_in_every_task(q):
    X, y = toy_multitask()
    w = np.asarray(ista(X, y, 0.3, q))
    assert not np.any(w[:, 3:]), "the irrelevant features' rows are exactly zero in all tasks"
    assert np.all(np.abs(w[:, :3]) > 0.1), "the relevant features are kept by every task"
    w0 = np.asarray(ista(X, y, 0.0, q))  # without the penalty nothing is exactly zero
    assert np.all(w0[:, 3:] != 0)


def test_clustering_penalty_against_the_formulas():
    W = RNG.standard_normal((5, 7))
    clusters, mean, between, within = (0, 1, 0, 1, 1), 0.3, 0.5, 2.0
    wbar = W.mean(0)
    hand = mean * 5 * wbar @ wbar
    for c in (0, 1):
        members = W[[t for t in range(5) if clusters[t] == c]]
        wc = members.mean(0)
        hand += between * len(members) * np.sum((wc - wbar) ** 2) + within * np.sum((members - wc) ** 2)

    @jax.jit
    def run(W):
        return (clustering.penalty([W[:, :3], W[:, 3:].reshape(5, 2, 2)], k=2, clusters=clusters, mean=mean,
                                   between=between, within=within),
                clustering.penalty([W], mean=mean, within=within))

    got, one = run(jnp.asarray(W, jnp.float32))
    np.testing.assert_allclose(got, hand, rtol=1e-5)
    # one cluster: Evgeniou & Pontil 2004, eps_M T ||w_bar||^2 + eps_W sum_t ||w_t - w_bar||^2
    np.testing.assert_allclose(one, mean * 5 * wbar @ wbar + within * np.sum((W - wbar) ** 2), rtol=1e-5)


def test_learned_clusters_find_the_task_groups():
    """Two well separated groups of tasks: k-means recovers them, so the penalty equals the formula with them."""
    centres = RNG.standard_normal((2, 6)) * 5
    W = jnp.asarray(centres[[0, 1, 1, 0, 1]] + 0.1 * RNG.standard_normal((5, 6)), jnp.float32)
    a, learned, given = jax.jit(lambda W: (clustering.kmeans(W, 2), clustering.penalty([W], k=2),
                                           clustering.penalty([W], k=2, clusters=(0, 1, 1, 0, 1))))(W)
    a = np.asarray(a)
    assert len(set(a[[0, 3]])) == 1 and len(set(a[[1, 2, 4]])) == 1 and a[0] != a[1]
    np.testing.assert_allclose(learned, given, rtol=1e-6)


def kron_updates(W, eps):
    """One round of MRN's flip-flop from identities, with the explicit Kronecker products and unfoldings."""
    T, d1, d2 = W.shape
    WT = W.reshape(T, d1 * d2)                        # columns (a, b): kron(S1, S2)
    W1 = W.transpose(1, 0, 2).reshape(d1, T * d2)     # columns (t, b): kron(ST, S2)
    W2 = W.transpose(2, 0, 1).reshape(d2, T * d1)     # columns (t, a): kron(ST, S1)
    S1, S2 = np.eye(d1), np.eye(d2)
    ST = WT @ np.linalg.inv(np.kron(S1, S2)) @ WT.T / (d1 * d2) + eps * np.eye(T)
    S1 = W1 @ np.linalg.inv(np.kron(ST, S2)) @ W1.T / (T * d2) + eps * np.eye(d1)
    S2 = W2 @ np.linalg.inv(np.kron(ST, S1)) @ W2.T / (T * d1) + eps * np.eye(d2)
    return ST, S1, S2


def test_relationship_covariance_updates_and_penalty_against_the_closed_form():
    W = RNG.standard_normal((3, 4, 2))
    eps = 0.1
    pen = functools.partial(relationship.layer_penalty, iterations=2, eps=eps)

    @jax.jit
    def run(W):
        return (relationship.flip_flop(W, iterations=1, eps=eps), relationship.flip_flop(W, iterations=2, eps=eps),
                relationship.flip_flop(W, eps=eps, features="identity")[0], jax.value_and_grad(pen)(W))

    one, two, st, (value, grad) = run(jnp.asarray(W, jnp.float32))
    for got, want in zip(one, kron_updates(W, eps)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # features='identity': the matrix-normal MLE of the task covariance alone
    np.testing.assert_allclose(st, W.reshape(3, -1) @ W.reshape(3, -1).T / 8 + eps * np.eye(3), rtol=1e-4)
    # the penalty: 1/2 vec(W)^T (ST x S1 x S2)^{-1} vec(W); its gradient holds the covariances fixed
    ST, S1, S2 = (np.asarray(c, np.float64) for c in two)
    K = np.linalg.inv(np.kron(np.kron(ST, S1), S2))
    np.testing.assert_allclose(value, 0.5 * W.ravel() @ K @ W.ravel(), rtol=1e-3)
    np.testing.assert_allclose(np.ravel(grad), K @ W.ravel(), rtol=2e-3, atol=1e-4)


def test_related_tasks_show_in_the_learned_task_covariance():
    base = RNG.standard_normal((6, 3))
    W = jnp.asarray(np.stack([base, -base + 0.01 * RNG.standard_normal((6, 3)), RNG.standard_normal((6, 3))]),
                    jnp.float32)
    r = np.asarray(jax.jit(lambda W: relationship.correlation(relationship.task_covariance(W, eps=1e-4)))(W))
    assert r[0, 1] < -0.99 and abs(r[0, 2]) < 0.9 and np.allclose(np.diag(r), 1, atol=1e-5)


def test_the_regularizer_option_adds_its_penalty_to_aux():
    ts = tiny_dense()
    x = ts.splits["train"]["inputs"]
    spec = {"name": "block_sparse", "q": 2, "strength": 0.5, "layers": [2, "heads"]}
    m = build_model("hard", ts, TINY_MLP, head_hidden=HEAD_HIDDEN, split=2, regularizer=spec)
    rel_spec = {"name": "relationship", "features": "identity"}
    rel = build_model("hard", ts, TINY_MLP, head_hidden=HEAD_HIDDEN, split=2, regularizer=rel_spec)

    @jax.jit
    def run(key):
        params = m.init(key, x)["params"]
        want = relationship.flip_flop(params["task_head_0"]["kernel"], **regularizers.options_of(rel.regularizer))[0]
        return params, m.apply({"params": params}, x)[1], rel.task_covariances(params), want

    params, aux, cov, want = run(jax.random.key(0, impl="rbg"))  # rbg: compiles faster than threefry on CPU
    chosen = [params["task_column_2"]["kernel"], params["task_head_0"]["kernel"], params["task_head_out"]["kernel"]]
    np.testing.assert_allclose(aux["regularizer_block_sparse"], 0.5 * sum(hand_mixed_norm(w, 2) for w in chosen),
                               rtol=1e-5)
    # the relationship regulariser's learned task covariances, for logging: one (T, T) per layer
    assert sorted(cov) == ["task_column_2/kernel", "task_head_0/kernel", "task_head_out/kernel"]
    assert all(c.shape == (3, 3) for c in cov.values())
    mask = flatten_dict(m.regularized_mask(params))
    assert sorted("/".join(k) for k, on in mask.items() if on) == [
        "task_column_2/kernel", "task_head_0/kernel", "task_head_out/kernel"]
    np.testing.assert_allclose(cov["task_head_0/kernel"], want, rtol=1e-6)
    assert hash(rel) == hash(build_model("hard", ts, TINY_MLP, head_hidden=HEAD_HIDDEN, split=2,
                                         regularizer=dict(rel_spec)))


BAD = [  # (architecture, regularizer, words the one-line message must contain)
    ("single_task", {"name": "group_lasso"}, ["regularizer.name='group_lasso'", "'block_sparse'", "'clustering'"]),
    ("single_task", {"name": "block_sparse", "q": 0.5}, ["architecture.options.regularizer.q=0.5", ">= 1", "'inf'"]),
    ("single_task", {"name": "block_sparse", "layers": [3]}, ["regularizer.layers=[3]", "0..2", "'heads'"]),
    ("single_task", {"name": "block_sparse", "rho": 1}, ["unknown keys ['rho']", "'q'"]),
    ("single_task", {"name": "clustering", "clusters": [0, 1]}, ["regularizer.clusters=[0, 1]", "0..0"]),
    ("single_task", {"name": "clustering", "k": 2, "clusters": [0, 1]}, ["regularizer.clusters", "one id per task"]),
    ("single_task", {"name": "clustering", "k": 2, "between": 2.0}, ["regularizer.between=2.0", "<= within"]),
    ("single_task", {"name": "relationship", "features": "diag"}, ["regularizer.features='diag'", "'identity'"]),
    ("single_task", {"name": "relationship", "strength": -1}, ["regularizer.strength=-1", ">= 0"]),
    ("mmoe", "block_sparse", ["regularizer='block_sparse'", "must be a dict"]),
]


@pytest.mark.parametrize("arch,spec,words", BAD)
def test_bad_regularizer_options_in_one_line(arch, spec, words):
    with pytest.raises(ValueError) as err:
        build_model(arch, tiny_dense(), TINY_MLP, regularizer=spec)
    msg = str(err.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_a_column_the_architecture_lacks_is_named():
    ts = tiny_dense()
    m = build_model("hard", ts, TINY_MLP, split=2, regularizer={"name": "block_sparse", "layers": [1]})
    with pytest.raises(ValueError, match=r"names blocks \[1\].*task columns: \[2\]"):
        jax.eval_shape(m.init, jax.random.PRNGKey(0), ts.splits["train"]["inputs"])
    with pytest.raises(ValueError, match=r"valid options \[\] \(and, for every architecture, \['regularizer'\]\)"):
        build_model("single_task", ts, TINY_MLP, regulariser={"name": "block_sparse"})


def test_a_config_dict_regularizer_is_accepted_and_hashable():
    import ml_collections

    opts = ml_collections.ConfigDict({"regularizer": {"name": "clustering", "k": 2, "clusters": [0, 1, 1]}})
    a, b = (build_model("single_task", tiny_dense(), TINY_MLP, **dict(opts)) for _ in range(2))
    assert a.regularizer["clusters"] == (0, 1, 1) and hash(a) == hash(b)
