"""The input pipeline: deterministic batch order, on-device data or streaming.

A split small enough (``on_device_max_bytes``) is put on the device once and
batches are gathered inside the jitted step from host-computed indices (only B
int32 indices cross per step). A larger split (or a streaming source) is read
on the host and prefetched by a background thread.

The order is a pure function of (seed, step): epoch e uses the permutation
``default_rng([seed, e])``; so a resumed run sees exactly the batches an
uninterrupted one would.
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


class BatchOrder:
    """Indices of the batch at any step; shuffling refuses to run without a seed."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if seed is None:
            raise ValueError("BatchOrder needs an explicit seed")
        if n < 1:
            raise ValueError("the train split is empty")
        self.n, self.batch_size, self.seed = n, batch_size, int(seed)
        self.per_epoch = max(n // batch_size, 1)
        self._cache = (None, None)

    def _perm(self, epoch):
        if self._cache[0] != epoch:
            self._cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return self._cache[1]

    def __call__(self, step: int) -> np.ndarray:
        epoch, i = divmod(int(step), self.per_epoch)
        perm = self._perm(epoch)
        idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
        if len(idx) < self.batch_size:  # fewer examples than one batch: wrap around
            idx = np.resize(perm, self.batch_size)
        return idx.astype(np.int32)


def gather(data, idx):
    """The batch at ``idx`` from a split dict (numpy or device arrays) or a streaming source."""
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
