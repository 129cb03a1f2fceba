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

from ..autodiff.graph import Primitive, Tensor, apply
from ._convert import as_tensor, check_float
from .shape import moveaxis


class EmbeddingGather(Primitive):
    """(weight (V, D)) -> weight[idx], shape idx.shape + (D,)."""
    name = "embedding"

    def forward(self, weight, idx, padding_idx):
        return weight[idx]

    def batch(self, info, weight, idx, padding_idx):
        if info.params:           # batched indices: no rule
            return NotImplemented
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
        if info.params:
            return NotImplemented
        n, d = g.shape[0], g.shape[-1]   # (N, *idx, D) -> (*idx, N * D) -> (num, N, D) -> (N, num, D)
        flat = moveaxis(g, 0, -2).reshape(idx.shape + (n * d,))
        out = apply(self, (flat,), {"idx": idx, "num": num, "padding_idx": padding_idx})
        return moveaxis(out.reshape(num, n, d), 1, 0)

    def vjp(self, ctx, c):
        p = ctx.params
        rows = apply(_gather, (c,), {"idx": p["idx"], "padding_idx": p["padding_idx"]})
        if p["padding_idx"] is None:
            return (rows,)
        keep = (p["idx"] != p["padding_idx"])[..., None].astype(c.dtype)
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
    idx = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {idx.dtype}")
    num = weight.shape[0]
    if idx.size and (idx.min() < 0 or idx.max() >= num):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexError(f"embedding: index {int(bad)} is out of range for a table of {num} "
                         f"rows (shape {weight.shape})")
    if padding_idx is not None:
        if (isinstance(padding_idx, bool) or not isinstance(padding_idx, (int, np.integer))
                or not -num <= padding_idx < num):
            raise ValueError(f"embedding: padding_idx must be an int in [-{num}, {num}), got "
                             f"{padding_idx!r}")
        padding_idx = int(padding_idx) % num
    return apply(_gather, (weight,), {"idx": idx.astype(np.intp, copy=False),
                                      "padding_idx": padding_idx})
