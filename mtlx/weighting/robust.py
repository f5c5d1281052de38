"""Byzantine-robust aggregators from distributed learning, as TorchJD offers them:
Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, "Machine Learning with Adversaries:
Byzantine Tolerant Gradient Descent", NeurIPS 2017) and the coordinate-wise trimmed
mean (Yin, Chen, Ramchandran & Bartlett, "Byzantine-Robust Distributed Learning:
Towards Optimal Statistical Rates", ICML 2018)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtlx.schema import OptionError
from mtlx.weighting.base import Weighting, no_state


def krum_weights(M: jnp.ndarray, n_byzantine: int = 0, n_selected: int = 1) -> jnp.ndarray:
    """(Multi-)Krum's weights on ``M = G G^T`` (Blanchard et al. 2017, Sec. 4).

    Each gradient's score is the sum of its squared distances
    ``||g_i - g_j||^2 = M_ii + M_jj - 2 M_ij`` to its ``k = T - f - 2`` nearest other
    gradients (``f = n_byzantine``); Krum returns the gradient of lowest score,
    Multi-Krum the mean of the ``n_selected`` lowest. The weights are ``1/n_selected``
    on those (ties at the cut share the remaining slots equally, so equal scores - e.g.
    T = 2 - give the mean). The paper needs ``T >= f + 3``; below that ``k`` is taken
    as 1 (the nearest other gradient).
    """
    T = M.shape[0]
    M = M.astype(jnp.float32)
    M = 0.5 * (M + M.T)
    d = jnp.diag(M)
    D = jnp.maximum(d[:, None] + d[None, :] - 2.0 * M, 0.0)
    D = jnp.where(jnp.eye(T, dtype=bool), jnp.inf, D)
    k = max(T - n_byzantine - 2, 1)
    scores = jnp.sum(jnp.sort(D, axis=1)[:, :k], axis=1)
    m = min(n_selected, T)
    cut = jnp.sort(scores)[m - 1]
    below = scores < cut
    at = scores == cut
    free = m - jnp.sum(below)
    w = jnp.where(below, 1.0, jnp.where(at, free / jnp.maximum(jnp.sum(at), 1), 0.0))
    return w / m


def krum(n_byzantine: int = 0, n_selected: int = 1) -> Weighting:
    """Krum / Multi-Krum (``needs="gram"``: distances come from inner products):
    ``direction = G^T w`` with :func:`krum_weights`, i.e. the task gradient (or mean of
    the ``n_selected`` gradients) closest to its neighbours; ``weights`` are ones."""

    def combine(losses, M, state, key):
        w = krum_weights(jax.lax.stop_gradient(M), n_byzantine, n_selected)
        return jnp.ones_like(losses), w, state, {"aggregation_weights": w}

    return Weighting("krum", no_state, combine, "gram")


SORTING_NETWORK_MAX_ROWS = 40  # up to this many tasks the rows are sorted by compare-exchange


def sorted_rows(G: jnp.ndarray) -> jnp.ndarray:
    """``jnp.sort(G, axis=0)``. Up to ``SORTING_NETWORK_MAX_ROWS`` rows by odd-even transposition
    (T rounds of elementwise min / max over neighbouring rows: exact, O(T^2 P) work that XLA fuses,
    where XLA:CPU's generic sort is many times slower at these T: ``launch.bench --parts=weightings``,
    trimmed_mean); more rows by ``jnp.sort`` (the unrolled network's compile time grows as T^2:
    about 7 s at T = 40, 44 s at T = 64 on this 2-core CPU)."""
    T = G.shape[0]
    if T > SORTING_NETWORK_MAX_ROWS:
        return jnp.sort(G, axis=0)
    rows = list(G)
    for r in range(T):
        for i in range(r % 2, T - 1, 2):
            rows[i], rows[i + 1] = jnp.minimum(rows[i], rows[i + 1]), jnp.maximum(rows[i], rows[i + 1])
    return jnp.stack(rows)


def trimmed_mean_direction(G: jnp.ndarray, trim_number: int = 1) -> jnp.ndarray:
    """Coordinate-wise trimmed mean of the rows of ``G`` (T, P) (Yin et al. 2018, Def. 2):
    in every coordinate, drop the ``b`` largest and ``b`` smallest of the T values and
    average the rest. ``b = min(trim_number, (T - 1) // 2)`` (at least one value stays;
    T = 2: the mean)."""
    T = G.shape[0]
    b = min(trim_number, (T - 1) // 2)
    G32 = G.astype(jnp.float32)
    S = sorted_rows(G32) if b else G32
    return jnp.mean(S[b:T - b], axis=0).astype(G.dtype)


def trimmed_mean(trim_number: int = 1) -> Weighting:
    """Trimmed mean (``needs="jacobian"``: a per-coordinate order statistic, no function of
    inner products): ``direction`` from :func:`trimmed_mean_direction`; ``weights`` ones."""
    if trim_number < 0:
        raise OptionError("trim_number", trim_number, "must be >= 0", "weighting.options", "weighting 'trimmed_mean'")

    def combine(losses, grads, state, key):
        return jnp.ones_like(losses), trimmed_mean_direction(jax.lax.stop_gradient(grads), trim_number), state, {}

    return Weighting("trimmed_mean", no_state, combine, "jacobian")
