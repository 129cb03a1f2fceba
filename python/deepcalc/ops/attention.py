"""Scaled dot-product attention on (B, H, L, D) tensors.

    S = scale * Q K^T (+ additive mask, or -inf where a boolean mask is False or causal hides)
    P = softmax(S) over the keys,   O = P V

A row whose scores are all -inf (every key masked) gives O = 0 and zero gradients, as torch 2.13
does on CPU (its math backend's "safe softmax" and its flash kernel agree).

This module holds the reference composite (matmul, where, softmax: differentiable at every
order, O(L^2) memory).
"""
from __future__ import annotations

import math

import numpy as np

from ..autodiff.graph import Tensor, wrap
from ._convert import as_tensor, check_float
from .elementwise import where
from .linalg import matmul
from .shape import swapaxes
from .softmax import softmax

_OP = "scaled_dot_product_attention"


def _check_operands(q, k, v):
    q, k, v = (as_tensor(t, None, _OP) for t in (q, k, v))
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(_OP, t)
        if t.ndim != 4:
            raise ValueError(f"{_OP}: {name} must be 4-D (B, H, L, D), got shape {t.shape}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{_OP}: q, k, v are {q.dtype}, {k.dtype}, {v.dtype}; expected one "
                        "dtype: deepcalc never mixes dtypes silently, convert with .astype()")
    (b, h, lq, d), (bk, hk, lk, dk), (bv, hv, lv, dv) = q.shape, k.shape, v.shape
    if (bk, hk) != (b, h) or (bv, hv) != (b, h):
        raise ValueError(f"{_OP}: q {q.shape}, k {k.shape} and v {v.shape} must share batch and "
                         "head axes (B, H)")
    if dk != d:
        raise ValueError(f"{_OP}: q has head dim {d} (shape {q.shape}) but k has {dk} "
                         f"(shape {k.shape}); expected equal")
    if lv != lk:
        raise ValueError(f"{_OP}: k has {lk} keys (shape {k.shape}) but v has {lv} "
                         f"(shape {v.shape}); expected equal")
    return q, k, v


def _check_mask(mask, q, k):
    """The mask as an array broadcastable to (B, H, Lq, Lk): bool (True = may attend) or q's
    float dtype (added to the scores); a float Tensor that requires grad stays a Tensor."""
    if mask is None:
        return None
    target = q.shape[:3] + (k.shape[2],)
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype.kind == "b":
        pass
    elif m.dtype.kind == "f":
        if m.dtype != q.dtype:
            raise TypeError(f"{_OP}: a float mask must have q's dtype ({q.dtype}), got "
                            f"{m.dtype}; deepcalc never mixes dtypes silently")
    else:
        raise TypeError(f"{_OP}: mask must be boolean (True = may attend) or a float additive "
                        f"mask, got dtype {m.dtype}")
    try:
        if np.broadcast_shapes(m.shape, target) != target:
            raise ValueError
    except ValueError:
        raise ValueError(f"{_OP}: mask of shape {m.shape} does not broadcast to (B, H, Lq, Lk) "
                         f"= {target}") from None
    if isinstance(mask, Tensor) and mask.requires_grad:
        return mask
    return m


def _check_scale(scale, d):
    if scale is None:
        return 1.0 / math.sqrt(d) if d else 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"{_OP}: scale must be a number or None, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"{_OP}: scale must be finite, got {scale}")
    return scale


def causal_mask(lq: int, lk: int) -> np.ndarray:
    """(Lq, Lk) boolean, True where query i may see key j: j <= i (top-left aligned, torch's
    is_causal)."""
    return np.tril(np.ones((lq, lk), dtype=bool))


def attention_reference(q, k, v, mask=None, causal=False, scale=1.0):
    """(O, P): the composite of deepcalc ops, O(Lq Lk) memory; every argument checked already.
    Rows whose scores are all -inf get P = 0 (so O = 0), as torch's safe softmax."""
    s = matmul(q, swapaxes(k, -1, -2)) * scale
    neg_inf = wrap(np.asarray(-np.inf, q.dtype))
    if mask is not None:
        m = mask.data if isinstance(mask, Tensor) else mask
        if m.dtype.kind == "b":
            s = where(m, s, neg_inf)
        else:
            s = s + (mask if isinstance(mask, Tensor) else wrap(m))
    if causal:
        s = where(causal_mask(q.shape[2], k.shape[2]), s, neg_inf)
    dead = np.all(s.data == -np.inf, axis=-1, keepdims=True)
    if dead.any():
        zero = wrap(np.zeros((), q.dtype))
        p = where(dead, zero, softmax(where(dead, zero, s), axis=-1))
    else:
        p = softmax(s, axis=-1)
    return matmul(p, v), p


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, scale=None,
                                 return_weights=False):
    """softmax(scale * q k^T + mask) v on q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv).

    ``mask`` is torch's ``attn_mask``: boolean (True where a query may attend) or a float mask
    added to the scores, broadcast to (B, H, Lq, Lk).  ``causal`` is torch's ``is_causal``:
    query i sees keys j <= i (top-left aligned, also when Lq != Lk); it combines with ``mask``.
    ``scale`` defaults to 1 / sqrt(D).  A query row with every key masked gives zeros and zero
    gradients (torch 2.13 on CPU does the same).  ``return_weights=True`` also returns the
    attention table P (B, H, Lq, Lk).  Differentiable in q, k, v (and in a float mask that
    requires grad) at every order."""
    q, k, v = _check_operands(q, k, v)
    mask = _check_mask(mask, q, k)
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"{_OP}: causal must be a bool, got {type(causal).__name__}")
    scale = _check_scale(scale, q.shape[3])
    out, p = attention_reference(q, k, v, mask, bool(causal), scale)
    return (out, p) if return_weights else out
