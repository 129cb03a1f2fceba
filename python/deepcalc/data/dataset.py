"""Datasets and the DataLoader: seeded shuffling whose state (generator, order of the epoch in
progress, position in it) is saved with ``state_dict`` so a resumed run sees the same batches."""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor
from ..creation import check_generator, default_generator


class Dataset:
    """Protocol: ``__len__`` and ``__getitem__(i)`` returning a tuple of arrays (one sample).
    ``batch(indices)`` returns the tuple of stacked arrays; override it when indexing many
    samples at once is cheaper (TensorDataset does)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i):
        raise NotImplementedError

    def batch(self, indices: np.ndarray) -> tuple:
        return _stack_samples([self[int(i)] for i in indices])


def _stack_samples(samples) -> tuple:
    rows = [s if isinstance(s, tuple) else (s,) for s in samples]
    return tuple(np.stack([np.asarray(x) for x in col]) for col in zip(*rows))


class TensorDataset(Dataset):
    """Samples are rows: item ``i`` is ``(a[i] for a in arrays)``; all arrays share dim 0."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = tuple(a.data if isinstance(a, Tensor) else np.asarray(a) for a in arrays)
        n = [a.shape[0] if a.ndim else None for a in self.arrays]
        if any(k is None for k in n) or len(set(n)) != 1:
            shapes = ", ".join(str(a.shape) for a in self.arrays)
            raise ValueError(f"TensorDataset: all arrays need the same first dimension (the "
                             f"number of samples), got shapes {shapes}")

    def __len__(self) -> int:
        return self.arrays[0].shape[0]

    def __getitem__(self, i):
        return tuple(a[i] for a in self.arrays)

    def batch(self, indices):
        return tuple(a[indices] for a in self.arrays)


class DataLoader:
    """Batches of ``dataset`` as tuples of Tensors (float arrays keep their dtype, integer
    labels stay integer).

    Shuffling uses ``generator`` if given, else ``np.random.default_rng(seed)`` if ``seed`` is
    given, else a generator seeded from ``dc.default_generator()`` when the first iterator is
    created (so ``dc.manual_seed`` before the first epoch fixes the order). Each epoch draws
    a new permutation from that generator.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, generator: np.random.Generator | None = None,
                 seed: int | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
                or batch_size < 1:
            none = "; deepcalc always batches (batch_size=1 yields one sample per batch)" \
                if batch_size is None else ""
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got "
                             f"{batch_size!r}{none}")
        if not (callable(getattr(dataset, "__len__", None))
                and callable(getattr(dataset, "__getitem__", None))):
            raise TypeError(f"DataLoader: dataset must have __len__ and __getitem__ (a Dataset, "
                            f"e.g. TensorDataset(x, y)), got {type(dataset).__name__}")
        if generator is not None and seed is not None:
            raise ValueError("DataLoader: give generator or seed, not both")
        check_generator("DataLoader", generator)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or seed < 0):
            raise ValueError(f"DataLoader: seed must be a non-negative integer, got {seed!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.generator = generator if generator is not None else (
            np.random.default_rng(seed) if seed is not None else None)
        self._order = None      # sample order of the epoch in progress
        self._position = 0      # batches of that epoch already yielded
        self._resume = False    # load_state_dict restored a half-finished epoch

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _new_order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        if self.generator is None:
            self.generator = np.random.default_rng(int(default_generator().integers(2**63)))
        return self.generator.permutation(n)

    def __iter__(self):
        if not self._resume:
            self._order, self._position = self._new_order(), 0
        self._resume = False
        return self._batches(self._order)

    def _batches(self, order):
        bs, n_batches = self.batch_size, len(self)
        batch = getattr(self.dataset, "batch", None)
        while self._position < n_batches and self._order is order:
            idx = order[self._position * bs:(self._position + 1) * bs]
            arrays = batch(idx) if batch is not None else _stack_samples(
                [self.dataset[int(i)] for i in idx])
            self._position += 1
            yield tuple(_to_tensor(a) for a in arrays)

    def state_dict(self) -> dict:
        """Generator state plus the order of the epoch in progress and how many of its batches
        were yielded; JSON values and one int64 array, so ``dc.save`` can store it."""
        from ..serialization import generator_state
        mid_epoch = self._order is not None and self._position < len(self)
        return {"generator": generator_state(self.generator) if self.generator is not None else None,
                "order": self._order.astype(np.int64) if mid_epoch else None,
                "position": self._position if mid_epoch else 0}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()``; the next iterator continues a half-finished epoch."""
        from ..serialization import generator_from_state
        gen = state.get("generator")
        self.generator = generator_from_state(gen) if gen is not None else None
        order = state.get("order")
        if order is not None:
            order = np.asarray(order.data if isinstance(order, Tensor) else order, np.int64)
            if order.shape != (len(self.dataset),):
                raise ValueError(f"DataLoader.load_state_dict: saved order has shape "
                                 f"{order.shape}, the dataset has {len(self.dataset)} samples")
        self._order, self._position = order, int(state.get("position", 0))
        self._resume = order is not None


def _to_tensor(a) -> Tensor:
    a = a.data if isinstance(a, Tensor) else np.asarray(a)
    return Tensor(a)
