"""Token embeddings and the Transformer's sinusoidal positional encoding.

Embedding is torch.nn.Embedding (a table (V, E), N(0, 1) initialized, the padding row zero and
never updated); its gradient is the sort-based scatter-add of ops/embedding.py.
PositionalEncoding adds PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos /
10000^(2i/d)) to the embeddings, then applies dropout (Vaswani et al. 2017, section 3.5)."""
from __future__ import annotations

import numpy as np

from .. import ops
from ..autodiff.graph import wrap
from ..creation import default_generator
from ..ops.embedding import embedding
from . import _checks
from .layers import Dropout
from .module import Module, Parameter

__all__ = ["Embedding", "PositionalEncoding", "sinusoidal_table"]


class Embedding(Module):
    """weight[indices] for integer indices of any shape -> indices.shape + (embedding_dim,)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None,
                 max_norm=None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight=None, _freeze: bool = False, dtype=np.float32,
                 generator=None):
        super().__init__()
        op = "Embedding"
        num_embeddings = _checks.integer(op, "num_embeddings", num_embeddings)
        embedding_dim = _checks.integer(op, "embedding_dim", embedding_dim)
        if max_norm is not None or scale_grad_by_freq or sparse:
            raise ValueError(f"{op}: max_norm, scale_grad_by_freq and sparse are not supported")
        if padding_idx is not None:
            if (isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer))
                    or not -num_embeddings <= padding_idx < num_embeddings):
                raise ValueError(f"{op}: padding_idx must be an int within num_embeddings "
                                 f"({num_embeddings}), got {padding_idx!r}")
            padding_idx = int(padding_idx) % num_embeddings
        dtype = _checks.float_dtype(op, dtype)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx = padding_idx
        if _weight is not None:
            w = np.array(getattr(_weight, "data", _weight), dtype)
            if w.shape != (num_embeddings, embedding_dim):
                raise ValueError(f"{op}: _weight has shape {w.shape}, expected "
                                 f"{(num_embeddings, embedding_dim)}")
        else:
            g = generator or default_generator()
            w = g.standard_normal((num_embeddings, embedding_dim)).astype(dtype)
            if padding_idx is not None:
                w[padding_idx] = 0
        self.weight = Parameter(w, requires_grad=not _freeze)

    def forward(self, indices):
        return embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self):
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


def sinusoidal_table(max_len: int, d_model: int, dtype=np.float32) -> np.ndarray:
    """(max_len, d_model): row pos holds sin(pos / 10000^(2i/d)) at 2i, cos(...) at 2i + 1."""
    pos = np.arange(max_len, dtype=np.float64)[:, None]
    freq = np.power(10000.0, -np.arange(0, d_model, 2, dtype=np.float64) / d_model)
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(pos * freq)
    pe[:, 1::2] = np.cos(pos * freq[: d_model // 2])
    return pe.astype(dtype)


class PositionalEncoding(Module):
    """x + PE[offset : offset + L], then dropout.  x is (B, L, E) when ``batch_first`` (the
    default here), else (L, B, E) as torch's tutorial module.  ``offset`` shifts the positions
    (incremental decoding feeds one position at a time)."""

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000,
                 batch_first: bool = True, dtype=np.float32):
        super().__init__()
        self.d_model = _checks.integer("PositionalEncoding", "d_model", d_model)
        self.max_len = _checks.integer("PositionalEncoding", "max_len", max_len)
        self.batch_first = bool(batch_first)
        self.dropout = Dropout(dropout)
        self._pe = {np.dtype(dtype): sinusoidal_table(self.max_len, self.d_model, dtype)}

    def table(self, dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        if dtype not in self._pe:
            self._pe[dtype] = sinusoidal_table(self.max_len, self.d_model, dtype)
        return self._pe[dtype]

    def forward(self, x, offset: int = 0):
        x = ops.as_tensor(x, None, "PositionalEncoding")
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"PositionalEncoding: expected x of shape "
                             f"{'(B, L, ' if self.batch_first else '(L, B, '}{self.d_model}), "
                             f"got {x.shape}")
        n = x.shape[1] if self.batch_first else x.shape[0]
        if offset < 0 or offset + n > self.max_len:
            raise ValueError(f"PositionalEncoding: positions {offset}..{offset + n - 1} exceed "
                             f"max_len {self.max_len}")
        pe = self.table(x.dtype)[offset:offset + n]
        return self.dropout(x + wrap(pe if self.batch_first else pe[:, None, :]))

    def extra_repr(self):
        return f"d_model={self.d_model}, max_len={self.max_len}"
