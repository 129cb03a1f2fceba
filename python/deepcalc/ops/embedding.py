"""Embedding lookup (rows of a table gathered by integer indices) and its adjoint, a
scatter-add of gradient rows into the table, done by sorting the indices instead of
``np.add.at`` (which adds one element at a time):

    order = argsort(idx);  starts = first position of each run of equal sorted indices
    dW[unique(idx)] = add.reduceat(g[order], starts)          (rows of the padding index: 0)

Both maps are linear, so each one's VJP is the other and each one's JVP is itself applied to
the tangent.  ``idx`` (any shape, integer) and ``padding_idx`` travel as parameters.  Under
vmap a batched table or gradient (N, ..., D) folds N into the feature axis: one lookup or one
scatter of rows of N * D values."""
from __future__ import annotations

import numpy as np

from ..autodiff.batching import constant, values
from ..autodiff.graph import BatchedData, Primitive, Tensor, apply, wrap
from ._convert import as_tensor, check_float
from .shape import materialize, moveaxis, reshape


def _offset_rows(idx: np.ndarray, num: int) -> np.ndarray:
    """Per-slice indices (N, ...) into one table of N * num rows: slice i's rows start at
    i * num."""
    n = idx.shape[0]
    return idx + (np.arange(n, dtype=idx.dtype) * num).reshape((n,) + (1,) * (idx.ndim - 1))


class EmbeddingGather(Primitive):
    """(weight (V, D)) -> weight[idx], shape idx.shape + (D,)."""
    name = "embedding"

    def forward(self, weight, idx, padding_idx):
        return weight[idx]

    def batch(self, info, weight, idx, padding_idx):
        if info.params:           # per-slice indices (N, ...)
            if not info.batched[0]:   # a shared table: one lookup of every slice's indices
                return apply(self, (weight,), {"idx": idx, "padding_idx": padding_idx})
            if type(idx) is BatchedData:
                return NotImplemented
            n, v, d = weight.shape    # per-slice tables too: rows of one (N * V, D) table
            return apply(self, (reshape(weight, (n * v, d)),),
                         {"idx": _offset_rows(idx, v), "padding_idx": None})
        n, v, d = weight.shape    # (N, V, D) -> (V, N * D) -> (*idx, N * D) -> (N, *idx, D)
        rows = moveaxis(weight, 0, 1).reshape(v, n * d)
        out = apply(self, (rows,), {"idx": idx, "padding_idx": padding_idx})
        return moveaxis(out.reshape(idx.shape + (n, d)), -2, 0)

    def vjp(self, ctx, g):
        p = ctx.params
        return (apply(_scatter, (g,), {"idx": p["idx"], "num": ctx.inputs[0].shape[0],
                                       "padding_idx": p["padding_idx"]}),)

    def jvp(self, ctx, t):
        return apply(self, (t,), ctx.params)


class EmbeddingScatter(Primitive):
    """(g, shape idx.shape + (D,)) -> dW (num, D): the rows of g summed per index, the padding
    row left at zero (torch's padding_idx: that row gets no gradient)."""
    name = "embedding_backward"

    def forward(self, g, idx, num, padding_idx):
        d = g.shape[-1]
        flat = idx.reshape(-1)
        out = np.zeros((num, d), g.dtype)
        if flat.size:
            order = np.argsort(flat, kind="stable")
            s = flat[order]
            starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
            out[s[starts]] = np.add.reduceat(g.reshape(-1, d)[order], starts, axis=0)
        if padding_idx is not None:
            out[padding_idx] = 0
        return out

    def batch(self, info, g, idx, num, padding_idx):
        if info.params:   # per-slice indices: each slice scatters into its own table
            if type(idx) is BatchedData:
                return NotImplemented
            n, d = idx.shape[0], g.shape[-1]
            g = materialize(g, info.batched[0], n)
            out = reshape(apply(self, (g,), {"idx": _offset_rows(idx, num), "num": n * num,
                                             "padding_idx": None}), (n, num, d))
            if padding_idx is None:
                return out
            keep = np.ones((num, 1), g.dtype)
            keep[padding_idx] = 0
            return out * wrap(keep)
        n, d = g.shape[0], g.shape[-1]   # (N, *idx, D) -> (*idx, N * D) -> (num, N, D) -> (N, num, D)
        flat = moveaxis(g, 0, -2).reshape(idx.shape + (n * d,))
        out = apply(self, (flat,), {"idx": idx, "num": num, "padding_idx": padding_idx})
        return moveaxis(out.reshape(num, n, d), 1, 0)

    def vjp(self, ctx, c):
        p = ctx.params
        rows = apply(_gather, (c,), {"idx": p["idx"], "padding_idx": p["padding_idx"]})
        if p["padding_idx"] is None:
            return (rows,)
        pad = p["padding_idx"]
        keep = constant(lambda i: (i != pad)[..., None].astype(c.dtype), wrap(p["idx"]))
        return (rows * keep,)

    def jvp(self, ctx, t):
        return apply(self, (t,), ctx.params)


_gather = EmbeddingGather()
_scatter = EmbeddingScatter()


def embedding(indices, weight, padding_idx=None) -> Tensor:
    """weight[indices] for an integer array/Tensor ``indices`` of any shape and a float table
    ``weight`` (num_embeddings, embedding_dim), as torch.nn.functional.embedding.  The gradient
    of the row ``padding_idx`` stays zero."""
    weight = as_tensor(weight, op="embedding")
    check_float("embedding", weight)
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got "
                         f"shape {weight.shape}")
    idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    num = weight.shape[0]
    every = values(wrap(idx)) if type(idx) is BatchedData else idx   # all slices' under vmap
    if every.size and (every.min() < 0 or every.max() >= num):
        bad = every.min() if every.min() < 0 else every.max()
        raise IndexError(f"embedding: index {int(bad)} is out of range for a table of {num} "
                         f"rows (shape {weight.shape})")
    if padding_idx is not None:
        if (isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer))
                or not -num <= padding_idx < num):
            raise ValueError(f"embedding: padding_idx must be an int in [-{num}, {num}), got "
                             f"{padding_idx!r}")
        padding_idx = int(padding_idx) % num
    idx = constant(lambda i: i.astype(np.intp, copy=False), wrap(idx)).data
    return apply(_gather, (weight,), {"idx": idx, "padding_idx": padding_idx})
