"""A character-level corpus from text that ships with CPython: ``pydoc_data.topics`` (the
help() topics of the Python documentation, about 465,000 characters), with its vocabulary and a
train / validation split (the last ``val_fraction`` of the text)."""
from __future__ import annotations

import numpy as np

from ..creation import check_generator, default_generator

__all__ = ["CharCorpus", "load_pydoc_topics"]


class CharCorpus:
    """``train`` / ``val`` int64 arrays of character indices into ``chars`` (sorted)."""

    def __init__(self, text: str, val_fraction: float = 0.1):
        if not isinstance(text, str) or len(text) < 4:
            raise ValueError("CharCorpus: text must be a str of at least 4 characters")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"CharCorpus: val_fraction must be in (0, 1), got {val_fraction}")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ids = np.fromiter((self.stoi[c] for c in text), np.int64, len(text))
        cut = int(round(len(ids) * (1 - val_fraction)))
        self.train, self.val = ids[:cut], ids[cut:]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> np.ndarray:
        missing = sorted(set(s) - set(self.stoi))
        if missing:
            raise KeyError(f"CharCorpus.encode: characters {missing[:5]!r} are not in the "
                           "vocabulary")
        return np.array([self.stoi[c] for c in s], np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def batch(self, split: str, batch_size: int, seq_len: int, generator=None):
        """(x, y) int64 (batch_size, seq_len): random windows of ``split`` and the same windows
        shifted by one character (the next-character targets)."""
        data = self._split(split)
        if seq_len < 1 or len(data) <= seq_len:
            raise ValueError(f"CharCorpus.batch: seq_len must be in 1..{len(data) - 1} for the "
                             f"{split} split, got {seq_len}")
        g = check_generator("CharCorpus.batch", generator) or default_generator()
        starts = g.integers(0, len(data) - seq_len, batch_size)
        idx = starts[:, None] + np.arange(seq_len + 1)
        w = data[idx]
        return w[:, :-1], w[:, 1:]

    def windows(self, split: str, seq_len: int, limit=None):
        """Consecutive non-overlapping (x, y) windows of ``split`` (for evaluation), as two
        arrays (n, seq_len); at most ``limit`` windows."""
        data = self._split(split)
        n = (len(data) - 1) // seq_len
        if limit is not None:
            n = min(n, limit)
        x = data[:n * seq_len].reshape(n, seq_len)
        y = data[1:n * seq_len + 1].reshape(n, seq_len)
        return x, y

    def _split(self, split):
        if split not in ("train", "val"):
            raise ValueError(f"CharCorpus: split must be 'train' or 'val', got {split!r}")
        return self.train if split == "train" else self.val


def load_pydoc_topics(val_fraction: float = 0.1) -> CharCorpus:
    """The help() topics of the Python documentation (``pydoc_data.topics``), joined in key
    order, as a CharCorpus."""
    from pydoc_data.topics import topics
    return CharCorpus("\n\n".join(topics[k] for k in sorted(topics)), val_fraction)
