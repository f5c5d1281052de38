"""The scalarisation sweep of a two-task experiment: static weights (w, 1 - w) on an even grid.

Xin et al. (2022, "Do current multi-task optimization methods in deep
learning even help?", NeurIPS) compare multi-task optimisers with the
*scalarisation frontier*: the test metrics reached by minimising
``w L_1 + (1 - w) L_2`` for a sweep of fixed w, each tuned like the methods.
A method helps only where it lands beyond that frontier.
``mtlx.report.frontier`` computes the frontier from the rows this module's
entries produce and tests which methods lie beyond it.

Convention (the scale of the weights). ``static`` minimises
``sum_t w_t L_t`` with the given weights (``mtlx.weighting.loss_based``);
the sweep's weights sum to 1 (points of the simplex), whereas ``equal``
weights every task by 1 (they sum to T = 2). So ``static_w0.5`` is ``equal``
at half the loss scale: under Adam, whose update is invariant to a constant
scale of the loss (up to its epsilon and weight decay), the two coincide at
the same learning rate; under SGD the scale multiplies the learning rate.
Tune the learning rate per row (``config.tune``) and the scale matters
little either way.
"""

from __future__ import annotations

STATIC = "static"  # the WEIGHTINGS key of fixed weights
LABEL_PREFIX = "static_w"  # a sweep entry's label: LABEL_PREFIX + f"{w:g}", w the FIRST task's weight
DECIMALS = 6  # the weights are rounded so that labels and run ids stay short and stable


def sweep_weights(n: int, endpoints: bool = False) -> list[tuple[float, float]]:
    """``n`` weight pairs (w, 1 - w), w increasing on an even grid of [0, 1].

    ``endpoints=False`` (default): the interior grid w_k = k / (n + 1), k = 1..n
    (n = 9: 0.1, ..., 0.9). ``endpoints=True``: w_k = k / (n - 1), k = 0..n-1,
    0 and 1 included (n >= 2), as Xin et al. sweep w over [0, 1]. The ends are
    left out by default because at w = 0 (or 1) one task's loss has no
    weight: its head never trains, its metric is an untrained head's (chance
    level), a point that lies on the Pareto front trivially and stretches the
    trade-off figure down to chance; the single-task baseline is the reference
    for the extremes.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < (2 if endpoints else 1):
        raise ValueError(f"static_sweep: n={n!r} must be an int >= {2 if endpoints else 1} "
                         f"(endpoints={endpoints}): the number of weights in the sweep")
    ws = [k / (n - 1) for k in range(n)] if endpoints else [k / (n + 1) for k in range(1, n + 1)]
    return [(round(w, DECIMALS), round(1.0 - w, DECIMALS)) for w in ws]


def label(w: float) -> str:
    """The label of the sweep entry whose first task has weight ``w``: ``static_w0.1``."""
    return f"{LABEL_PREFIX}{w:g}"


def static_sweep(n: int, endpoints: bool = False) -> tuple[dict, ...]:
    """``config.weightings`` entries for the sweep (see ``sweep_weights`` for the grid and the ends):
    ``{"name": "static", "options": {"weights": (w, 1 - w)}, "label": "static_w<w>"}``.

    The weights are floats, so that ``config.parallel.runs_per_program`` trains the whole sweep (and a tuned
    learning-rate grid over it) as one compiled program (``mtlx.parallel.population``)."""
    return tuple({"name": STATIC, "options": {"weights": (float(a), float(b))}, "label": label(a)}
                 for a, b in sweep_weights(n, endpoints))
