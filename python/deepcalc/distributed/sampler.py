"""DistributedSampler: this rank's shard of a dataset, as a Dataset for ``dc.data.DataLoader``.

Each epoch, every rank draws the same permutation of all samples (seeded by ``seed + epoch``),
pads it by repeating its first samples (or, with ``drop_last``, cuts it) to a multiple of the
world size, and keeps every ``world_size``-th index starting at its rank: the shards are
disjoint (but for the padding) and equal in size, so every rank runs the same number of steps.
Call ``set_epoch(epoch)`` before each epoch to reshuffle (``fit`` does it), as with torch's.
"""
from __future__ import annotations

import numpy as np

from .world import _world


class DistributedSampler:
    """``DataLoader(DistributedSampler(dataset), batch_size=B)`` gives this rank its B-sample
    batches.  ``num_replicas`` and ``rank`` default to the world's.  Iterating yields the
    shard's indices into ``dataset``; indexing gives its samples."""

    def __init__(self, dataset, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if not (callable(getattr(dataset, "__len__", None))
                and callable(getattr(dataset, "__getitem__", None))):
            raise TypeError(f"DistributedSampler: dataset must have __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        if num_replicas is None or rank is None:
            w = _world()
            num_replicas = w.size if num_replicas is None else num_replicas
            rank = w.rank if rank is None else rank
        for name, v, low in (("num_replicas", num_replicas, 1), ("seed", seed, 0)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"DistributedSampler: {name} must be an integer >= {low}, got "
                                 f"{v!r}")
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) \
                or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: rank must be in [0, {num_replicas}), got "
                             f"{rank!r}")
        n = len(dataset)
        if drop_last and n < num_replicas:
            raise ValueError(f"DistributedSampler: drop_last with {n} samples and {num_replicas} "
                             "ranks leaves every shard empty")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.epoch = 0
        self.num_samples = n // self.num_replicas if drop_last else -(-n // self.num_replicas)
        self._indices = self._shard()

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (every rank must pass the same epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"DistributedSampler.set_epoch: epoch must be an integer >= 0, got "
                             f"{epoch!r}")
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._indices = self._shard()

    def _shard(self) -> np.ndarray:
        n = len(self.dataset)
        order = (np.random.default_rng(self.seed + self.epoch).permutation(n) if self.shuffle
                 else np.arange(n))
        total = self.num_samples * self.num_replicas
        if total > n:      # pad with the first samples again (repeated as often as needed)
            order = np.concatenate([order, np.resize(order, total - n)])
        return order[:total][self.rank::self.num_replicas]

    def indices(self) -> np.ndarray:
        """This rank's indices into ``dataset`` for the current epoch."""
        return self._indices.copy()

    def __iter__(self):
        return iter(self._indices.tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i):
        return self.dataset[int(self._indices[i])]

    def batch(self, idx) -> tuple:
        """The samples at shard positions ``idx``, stacked (``DataLoader`` calls this)."""
        rows = self._indices[np.asarray(idx)]
        batch = getattr(self.dataset, "batch", None)
        if batch is not None:
            return batch(rows)
        from ..data.dataset import _stack_samples
        return _stack_samples([self.dataset[int(i)] for i in rows])

    def __repr__(self):
        return (f"DistributedSampler({len(self.dataset)} samples, rank {self.rank} of "
                f"{self.num_replicas}, {self.num_samples} per rank, shuffle={self.shuffle}, "
                f"seed={self.seed}, epoch={self.epoch})")
