"""The statistics of the tables and figures: confidence intervals, Welch's and paired t-tests, Holm, bootstrap.

Everything over seeds (one number per finished run); scipy does the
distributions. Conventions (stated in every table's notes, ``notes_text``):

  * ``LEVEL`` = 95% confidence intervals. A metric's interval is Student's t
    over seeds: mean ± t_{0.975, n-1} * std / sqrt(n) (``ci_half_width``).
  * Δm%'s interval is a percentile bootstrap over seeds of the per-seed Δm%
    (each seed against the baseline's seed mean), ``N_RESAMPLES`` resamples,
    seeded with ``BOOTSTRAP_SEED`` so that a table is reproducible
    (``bootstrap_ci``).
  * Significance against the baseline: Welch's t-test (unequal variances,
    two-sided) on each task's main metric, Holm-corrected per task across the
    rows of one table section (``holm``); a cell is marked when the corrected p-value
    is below ``ALPHA``. When each seed draws its own data (experiment.json's
    ``grid.seed_paths``), the runs of one seed share that draw, and the test
    is the paired t-test over the seeds both rows finished (``paired_test``):
    the data draw's variance, which Welch counts as noise, cancels in the
    per-seed differences.
  * n = 1: no interval and no test (NaN).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Mapping, Sequence

import numpy as np

LEVEL = 0.95
ALPHA = 0.05
BOOTSTRAP_SEED = 0
N_RESAMPLES = 9999
BETTER, WORSE = "▲", "▼"  # significance marks: significantly better / worse than the baseline
NO_INTERVAL = "n = 1: no interval"


def _finite(values) -> np.ndarray:
    a = np.asarray([v for v in values if v is not None and math.isfinite(float(v))], np.float64)
    return a


def t_quantile(dof: int, level: float = LEVEL) -> float:
    """The two-sided ``level`` Student-t quantile with ``dof`` degrees of freedom (``ci_half_width``'s factor)."""
    from scipy import stats
    return float(stats.t.ppf(0.5 + level / 2, dof))


def ci_half_width(values: Sequence[float], level: float = LEVEL) -> float:
    """Student-t half-width of the ``level`` confidence interval of the mean; NaN when n < 2."""
    a = _finite(values)
    if len(a) < 2:
        return float("nan")
    return t_quantile(len(a) - 1, level) * float(a.std(ddof=1)) / math.sqrt(len(a))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test (scipy.stats.ttest_ind, equal_var=False); NaN when a side has n < 2
    or both have zero variance."""
    from scipy import stats
    a, b = _finite(a), _finite(b)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return float("nan")
    with warnings.catch_warnings():  # nearly identical seeds: scipy warns of precision loss, the p-value stands
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def paired_test(a: Mapping, b: Mapping) -> tuple[float, float]:
    """(two-sided p-value of the paired t-test (scipy.stats.ttest_rel), mean of a - b) over the seeds where
    {seed: value} ``a`` and ``b`` are both finite; the p-value is NaN when there are fewer than 2 pairs or every
    difference is the same (up to rounding), the mean is NaN without pairs."""
    from scipy import stats
    pairs = np.asarray([(a[s], b[s]) for s in a if s in b and _finite([a[s], b[s]]).size == 2],
                       np.float64).reshape(-1, 2)
    d = pairs[:, 0] - pairs[:, 1]
    mean = float(d.mean()) if len(d) else float("nan")
    if len(d) < 2 or np.ptp(d) <= 1e-12 * np.abs(pairs).max():  # the same difference up to rounding
        return float("nan"), mean
    with warnings.catch_warnings():  # nearly identical differences: scipy warns of precision loss
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_rel(pairs[:, 0], pairs[:, 1]).pvalue), mean


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979); NaN entries stay NaN and do not count.

    Sort the m finite p-values ascending, p_(1) <= ... <= p_(m); the adjusted
    p_(i) is max_{j <= i} min(1, (m - j + 1) p_(j)). Rejecting where the
    adjusted value is below alpha is Holm's procedure at level alpha.
    """
    p = [float(x) for x in pvalues]
    idx = sorted((i for i, x in enumerate(p) if math.isfinite(x)), key=lambda i: p[i])
    m, out, running = len(idx), [float("nan")] * len(p), 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def bootstrap_ci(values: Sequence[float], level: float = LEVEL, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap ``level`` interval of the mean (scipy.stats.bootstrap, seeded); NaNs when n < 2."""
    return _bootstrap(tuple(float(v) for v in _finite(values)), level, seed)


@functools.lru_cache(maxsize=4096)
def _bootstrap(a: tuple, level: float, seed: int) -> tuple[float, float]:
    """``bootstrap_ci`` on a tuple (cached: a table and its figures ask for the same rows)."""
    from scipy import stats
    if len(a) < 2:
        return float("nan"), float("nan")
    if all(v == a[0] for v in a):
        return a[0], a[0]
    res = stats.bootstrap((np.asarray(a),), np.mean, confidence_level=level, n_resamples=N_RESAMPLES,
                          method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mark(p_holm: float, better: bool) -> str:
    """The significance mark of one cell: BETTER/WORSE when the corrected p-value is below ALPHA, else ''."""
    if not (math.isfinite(p_holm) and p_holm < ALPHA):
        return ""
    return BETTER if better else WORSE


PAIRED_NOTE = ("paired t-test (two-sided) over the seeds both rows finished (each seed draws its own data, "
               "grid.seed_paths: the runs of one seed share it)")


def notes_text(baseline: str, paired: bool = False) -> str:
    """The table note on intervals and tests (``paired``: the tests are ``paired_test``'s, else Welch's)."""
    test = PAIRED_NOTE if paired else "Welch's t-test (two-sided)"
    return (f"± = half-width of the {LEVEL:.0%} confidence interval over seeds (Student t; the CSV also keeps the "
            f"std); Δm% [lo, hi] = percentile bootstrap over seeds ({N_RESAMPLES} resamples, seed "
            f"{BOOTSTRAP_SEED}); {NO_INTERVAL} and no test. {BETTER}/{WORSE} = significantly better/worse than "
            f"{baseline} on that task's main metric: {test}, Holm-corrected per task across "
            f"the rows of the table, alpha = {ALPHA}.")
