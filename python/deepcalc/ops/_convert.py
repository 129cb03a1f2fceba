"""Turning user values into Tensors, and the dtype rule.

The dtype rule: deepcalc computes in float32 (the default) or float64 and never mixes them
silently.  A Python number or list takes the dtype of the tensor it meets (float32 when alone);
an ndarray or Tensor of the other float dtype is a TypeError naming the op.  Integer and bool
tensors exist (labels, masks) but cannot require grad; arithmetic between an integer tensor and a
float one gives the float dtype.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor, wrap

DEFAULT_DTYPE = np.dtype(np.float32)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """``x`` as a Tensor; Python scalars and lists take ``like``'s float dtype."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        return wrap(x)
    dtype = like.data.dtype if like is not None and like.data.dtype.kind == "f" else DEFAULT_DTYPE
    if isinstance(x, (bool, np.bool_)):
        return wrap(np.asarray(x))
    return wrap(np.asarray(x, dtype=dtype))


def binary_operands(op: str, a, b):
    """Tensors for a binary op, enforcing the dtype rule."""
    if not isinstance(a, Tensor):
        a = as_tensor(a, b if isinstance(b, Tensor) else None)
    if not isinstance(b, Tensor):
        b = as_tensor(b, a)
    da, db = a.data.dtype, b.data.dtype
    if da != db and da.kind == "f" and db.kind == "f":
        raise TypeError(f"{op}: operands are {da} {a.shape} and {db} {b.shape}; deepcalc never "
                        f"mixes float dtypes silently, convert one with .astype()")
    if da.kind != "f" and db.kind == "f":
        a = wrap(a.data.astype(db))
    elif db.kind != "f" and da.kind == "f":
        b = wrap(b.data.astype(da))
    return a, b


def broadcast_shapes(op: str, *shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op}: shapes {', '.join(str(tuple(s)) for s in shapes)} cannot be "
                         "broadcast together") from None


def check_float(op: str, t: Tensor):
    if t.data.dtype.kind != "f":
        raise TypeError(f"{op}: expected a float32 or float64 tensor, got {t.data.dtype} "
                        f"with shape {t.shape}")


def normalize_axis(op: str, axis, ndim: int):
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative ints (None: all axes)."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return tuple(sorted(out))


def contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` itself when C-contiguous, else a C-ordered copy; keeps 0-d arrays 0-d (unlike
    ``np.ascontiguousarray``, which returns at least 1-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")
