"""The input pipeline: deterministic batch order, on-device data or streaming.

A split small enough (``on_device_max_bytes``) is put on the device once and
batches are gathered inside the jitted step from host-computed indices (only B
int32 indices cross per step). A larger split (or a streaming source) is read
on the host and prefetched by a background thread.

The order is a pure function of (seed, step): epoch e uses the permutation
``default_rng([seed, e])``; so a resumed run sees exactly the batches an
uninterrupted one would.

A weighting with ``needs="lookahead"`` (Auto-Lambda) also reads a second,
independent batch of the training split at every step, ``batch[META]``: its
own order (:class:`WithMeta`, permutations ``default_rng([seed, META_STREAM,
e])``), as pure a function of (seed, step) as the first. The step's indices
are then (2, B) and :func:`gather` returns both batches.
"""

from __future__ import annotations

import queue
import threading
from typing import Mapping

import jax
import numpy as np


def split_size(split) -> int:
    return len(split["inputs"]) if isinstance(split, Mapping) else len(split)


def split_nbytes(split) -> int:
    if not isinstance(split, Mapping):
        return -1
    return int(sum(np.asarray(a).nbytes for a in jax.tree_util.tree_leaves(split)))


META = "meta"  # the batch key of the second batch a lookahead weighting reads
META_STREAM = 0x3E7A  # the meta batches' own permutation stream (WithMeta)


class BatchOrder:
    """Indices of the batch at any step; shuffling refuses to run without a seed. ``stream``
    (None: the step's batches) draws the permutations of another, independent order."""

    def __init__(self, n: int, batch_size: int, seed: int, stream: int | None = None):
        if seed is None:
            raise ValueError("BatchOrder needs an explicit seed")
        if n < 1:
            raise ValueError("the train split is empty")
        self.n, self.batch_size, self.seed, self.stream = n, batch_size, int(seed), stream
        self.per_epoch = max(n // batch_size, 1)
        self._cache = (None, None)

    def _perm(self, epoch):
        if self._cache[0] != epoch:
            entropy = [self.seed, epoch] if self.stream is None else [self.seed, self.stream, epoch]
            self._cache = (epoch, np.random.default_rng(entropy).permutation(self.n))
        return self._cache[1]

    def __call__(self, step: int) -> np.ndarray:
        epoch, i = divmod(int(step), self.per_epoch)
        perm = self._perm(epoch)
        idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
        if len(idx) < self.batch_size:  # fewer examples than one batch: wrap around
            idx = np.resize(perm, self.batch_size)
        return idx.astype(np.int32)


class WithMeta:
    """The step's batch indices and those of its meta batch, stacked (2, B): the first row is
    :class:`BatchOrder`'s (the batches a run without a meta batch sees), the second an
    independent shuffle of the same split (``META_STREAM``), so the two differ at a step
    while each is a pure function of (seed, step) (a resumed run draws the same)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.main, self.meta = BatchOrder(n, batch_size, seed), BatchOrder(n, batch_size, seed, META_STREAM)
        self.n, self.batch_size, self.seed = n, batch_size, self.main.seed

    def __call__(self, step: int) -> np.ndarray:
        return np.stack([self.main(step), self.meta(step)])


def batch_order(n: int, batch_size: int, seed: int, meta: bool = False):
    """The run's batch order: :class:`BatchOrder`, or :class:`WithMeta` when the step reads a
    meta batch (a weighting with ``needs="lookahead"``)."""
    return WithMeta(n, batch_size, seed) if meta else BatchOrder(n, batch_size, seed)


def gather(data, idx):
    """The batch at ``idx`` from a split dict (numpy or device arrays) or a streaming source;
    (2, B) indices (:class:`WithMeta`): the first row's batch with the second's under ``META``."""
    if np.ndim(idx) == 2:
        return {**gather(data, idx[0]), META: gather(data, idx[1])}
    if isinstance(data, Mapping):
        return jax.tree_util.tree_map(lambda a: a[idx], dict(data))
    return data[np.asarray(idx)]


def to_device(split):
    return jax.tree_util.tree_map(lambda a: jax.device_put(np.asarray(a)), dict(split))


class Prefetcher:
    """Host batches for steps start..stop-1 read ahead by a daemon thread."""

    def __init__(self, split, order: BatchOrder, start: int, stop: int, depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)

        def work():
            for s in range(start, stop):
                self._q.put(jax.device_put(gather(split, order(s))))

        threading.Thread(target=work, daemon=True).start()

    def next(self):
        return self._q.get()
