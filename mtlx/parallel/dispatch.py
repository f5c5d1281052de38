"""Several steps per dispatch: ``lax.scan`` over K train steps inside one jitted call.

A small model on a CPU is dispatch-bound: the host's per-call overhead
(argument handling, launching the executable) exceeds the step's arithmetic.
Running K steps in one call pays it once per K steps. The loop synchronises
with the host only where it must (logging, evaluation, checkpoints, a stop
request), so K is chosen from those cadences: every action step is the end of
a chunk. The scan body is the same step program, so the numbers equal K=1
(bit for bit on XLA:CPU; ``tests/unit/test_parallel_dispatch.py``).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import jax

AUTO = 0  # steps_per_dispatch: chosen from the cadences


def scan_is_slow(cfg) -> bool:
    """On a CPU, a convolution whose gradient is autodiff's of XLA's convolution runs 5-8x slower
    inside ``lax.scan`` than outside it (``mtlx.conv``): a conv block with ``impl='xla'``, or 'auto'
    under a weighting whose Jacobian / Gram pass vmaps the backward over tasks (``mtlx.grads``
    ``PER_TASK_BACKWARD``: 'auto' keeps XLA's gradient there). AUTO gives such a run one step per
    dispatch; 'auto' elsewhere picks 'patches' / 'eigen', which scan at full speed."""
    if jax.default_backend() != "cpu":
        return False
    impls = {b.get("impl", "auto") for b in cfg.backbone.blocks if b.get("kind") == "conv"}
    if "xla" in impls:
        return True
    if "auto" not in impls:
        return False
    from mtlx.grads import PER_TASK_BACKWARD
    from mtlx.weighting import get_weighting

    return get_weighting(cfg.weighting.name, **dict(cfg.weighting.options)).needs in PER_TASK_BACKWARD


def dispatch_size(cfg, requested: int = AUTO) -> int:
    """K: the greatest common divisor of the log, eval and checkpoint cadences (so every
    periodic action falls on a chunk end), at most ``requested`` when that is given (>= 1);
    AUTO for a model whose steps a scan slows down (:func:`scan_is_slow`): 1."""
    if requested == AUTO and scan_is_slow(cfg):
        return 1
    k = math.gcd(int(cfg.log_every), int(cfg.eval_every), int(cfg.checkpoint_every))
    if requested and requested != AUTO:
        k = max(d for d in range(1, min(k, int(requested)) + 1) if k % d == 0)
    return max(k, 1)


def chunks(start: int, steps: int, k: int) -> Iterator[tuple[int, int]]:
    """``(first step, length)`` of each dispatch from ``start`` to ``steps``: chunks end on
    multiples of ``k`` (a resumed run first catches up to one) and at ``steps``."""
    s = start
    while s < steps:
        n = min(k - s % k, steps - s)
        yield s, n
        s += n


def scanned(step: Callable, batch_of: Callable) -> Callable:
    """``chunk(state, data, xs) -> (state, last metrics)``: ``step(state, batch_of(data, x))``
    for each ``x`` along ``xs``' leading axis, in one program; only the last step's metrics
    come back (the loop logs at chunk ends)."""

    def chunk(state, data, xs):
        if jax.tree_util.tree_leaves(xs)[0].shape[0] == 1:  # one step: no scan (a convolution is slow in one)
            return step(state, batch_of(data, jax.tree_util.tree_map(lambda x: x[0], xs)))
        state, metrics = jax.lax.scan(lambda st, x: step(st, batch_of(data, x)), state, xs)
        return state, jax.tree_util.tree_map(lambda m: m[-1], metrics)

    return chunk
