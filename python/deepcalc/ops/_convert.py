"""Turning user values into Tensors, the dtype rule, and the checks every op shares (axes,
sizes, dtypes), so that bad inputs fail the same way everywhere.

The dtype rule: deepcalc computes in float32 (the default) or float64 and never mixes them
silently.  A Python number or list takes the dtype of the tensor it meets (float32 when alone);
an ndarray or Tensor of the other float dtype is a TypeError naming the op.  Integer and bool
tensors exist (labels, masks) but cannot require grad; arithmetic between an integer tensor and a
float one gives the float dtype.  Other dtypes (float16, complex, str, object) are refused.
"""
from __future__ import annotations

import operator

import numpy as np

from ..autodiff.batching import constant
from ..autodiff.graph import Tensor, wrap

DEFAULT_DTYPE = np.dtype(np.float32)
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_FLOAT_CHARS = ("f", "d")          # dtype.char of float32 and float64 (either byte order)
_ARRAY_KINDS = ("b", "i", "u", "f")  # bool, signed and unsigned ints, floats


def check_dtype(op: str, dtype):
    """Refuse array dtypes deepcalc does not hold: float16 and other floats, complex, str,
    object, datetime."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype.char not in _FLOAT_CHARS:
        raise TypeError(f"{op}: deepcalc supports float32 and float64; got {dtype}")
    if dtype.kind not in _ARRAY_KINDS:
        raise TypeError(f"{op}: expected numbers (bool, int or float), got dtype {dtype}")


def to_array(op: str, data, dtype=None) -> np.ndarray:
    """``data`` (a number, bool, ndarray or nested list of them) as an ndarray: of ``dtype``
    when given (converting any bool, int or float data), else of its own dtype, which must be
    one deepcalc holds.  None, str, complex and object data are TypeErrors naming ``op``, ragged
    lists a ValueError."""
    if isinstance(data, np.ndarray):
        arr = data
        if arr.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"{op}: expected numbers (bool, int or float), got an ndarray of "
                            f"dtype {arr.dtype}")
    else:
        try:
            arr = np.asarray(data)
        except ValueError:
            raise ValueError(f"{op}: nested lists have ragged lengths; every row must have the "
                             "same length") from None
        if arr.dtype.kind not in _ARRAY_KINDS:
            inner = f" holding {arr.dtype}" if isinstance(data, (list, tuple)) else ""
            raise TypeError(f"{op}: expected a number, a bool, an ndarray or a nested list of "
                            f"numbers, got {type(data).__name__}{inner}")
    if dtype is None:
        check_dtype(op, arr.dtype)
        return arr
    return arr.astype(dtype, copy=False)


def as_tensor(x, like: Tensor | None = None, op: str = "as_tensor") -> Tensor:
    """``x`` as a Tensor; Python scalars and lists take ``like``'s float dtype (a Python int next
    to an integer tensor takes its dtype)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.ndarray):
        if x.dtype.char not in _FLOAT_CHARS:
            check_dtype(op, x.dtype)
        return wrap(x)
    if isinstance(x, (bool, np.bool_)):
        return wrap(np.asarray(x))
    dtype = like.data.dtype if like is not None and like.data.dtype.kind == "f" else DEFAULT_DTYPE
    if isinstance(x, int) and like is not None and like.data.dtype.kind in "iu":
        return wrap(np.asarray(x, dtype=like.data.dtype))   # int tensor + 1 stays int (torch)
    if isinstance(x, (int, float)):
        return wrap(np.asarray(x, dtype=dtype))
    return wrap(to_array(op, x, dtype))


def binary_operands(op: str, a, b):
    """Tensors for a binary op, enforcing the dtype rule."""
    if not isinstance(a, Tensor):
        a = as_tensor(a, b if isinstance(b, Tensor) else None, op)
    if not isinstance(b, Tensor):
        b = as_tensor(b, a, op)
    da, db = a.data.dtype, b.data.dtype
    if da != db and da.kind == "f" and db.kind == "f":
        raise TypeError(f"{op}: operands are {da} {a.shape} and {db} {b.shape}; deepcalc never "
                        f"mixes float dtypes silently, convert one with .astype()")
    if da.kind != "f" and db.kind == "f":  # integer / bool data take the float's dtype
        a = constant(lambda v: v.astype(db), a)
    elif db.kind != "f" and da.kind == "f":
        b = constant(lambda v: v.astype(da), b)
    return a, b


def broadcast_shapes(op: str, *shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op}: shapes {', '.join(str(tuple(s)) for s in shapes)} cannot be "
                         "broadcast together") from None


def check_float(op: str, t: Tensor):
    if t.data.dtype.char not in _FLOAT_CHARS:
        check_dtype(op, t.data.dtype)  # float16, complex, ...: the dtype itself is refused
        raise TypeError(f"{op}: expected a float32 or float64 tensor, got {t.data.dtype} "
                        f"with shape {t.shape}")


def _axis_error(op: str, axis, ndim: int):
    lo, hi = -max(ndim, 1), max(ndim, 1) - 1
    return np.exceptions.AxisError(
        f"{op}: axis {axis} is out of range for a tensor with {ndim} dimensions (expected "
        f"an axis in [{lo}, {hi}])")


def normalize_one_axis(op: str, axis, ndim: int, scalar_ok: bool = False) -> int:
    """One axis as a non-negative int: an int in [-ndim, ndim), else AxisError (both an
    IndexError, as torch raises, and a ValueError) or TypeError naming ``op``.  With
    ``scalar_ok`` a 0-d tensor has the one axis 0 (or -1), as in torch."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__} ({axis!r})")
    n = max(ndim, 1) if scalar_ok else ndim
    if not -n <= axis < n:
        raise _axis_error(op, axis, ndim)
    return int(axis) % n


def normalize_axis(op: str, axis, ndim: int):
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative ints (None: all axes).
    A 0-d tensor accepts axis 0 and -1, which reduce nothing (as torch)."""
    if axis is None:
        return tuple(range(ndim))
    if type(axis) is int and -ndim <= axis < ndim:  # the common case: one valid axis
        return (axis % ndim,)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else axis
    if not isinstance(axes, (tuple, list)):
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got "
                        f"{type(axis).__name__} ({axis!r})")
    out = tuple(sorted(normalize_one_axis(op, a, ndim, scalar_ok=True) for a in axes))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis}")
    return out if ndim else ()


def check_permutation(op: str, axes, ndim: int, shape) -> tuple:
    """``axes`` as non-negative ints forming a permutation of a tensor's ``ndim`` axes."""
    if len(axes) != ndim:
        raise ValueError(f"{op}: axes {tuple(axes)} are not a permutation of the {ndim} axes "
                         f"of a tensor of shape {shape}")
    out = tuple(normalize_one_axis(op, a, ndim) for a in axes)
    if len(set(out)) != ndim:
        raise ValueError(f"{op}: repeated axis in {tuple(axes)} (a tensor of shape {shape})")
    return out


def check_shape(op: str, shape, infer: bool = False) -> tuple:
    """A tuple of sizes: ints >= 0 (and one -1 to infer when ``infer``); floats are refused,
    as torch does, never truncated."""
    out = []
    for s in shape:
        try:
            out.append(operator.index(s))
        except TypeError:
            raise TypeError(f"{op}: sizes must be ints, got {type(s).__name__} ({s!r}) in "
                            f"{tuple(shape)}") from None
    if any(s < (-1 if infer else 0) for s in out):
        what = "non-negative or -1 (inferred)" if infer else "non-negative"
        raise ValueError(f"{op}: sizes must be {what}, got {tuple(out)}")
    return tuple(out)


def contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` itself when C-contiguous, else a C-ordered copy; keeps 0-d arrays 0-d (unlike
    ``np.ascontiguousarray``, which returns at least 1-d)."""
    return a if a.flags.c_contiguous else np.array(a, order="C")
