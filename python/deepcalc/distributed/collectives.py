"""all_reduce, broadcast and all_gather of Tensors, NumPy arrays and numbers.

Each returns a new value of the kind it was given (a Tensor without history, an array, or a
Python number) and leaves its argument untouched.  Shapes and dtypes are compared across ranks
first (one small all-gather), so a mismatch is an error on every rank, never a hang or a
silently wrong buffer.
"""
from __future__ import annotations

import numpy as np

from ..autodiff.graph import Tensor
from .world import _OPS, _world


def _as_array(x, op: str) -> tuple[np.ndarray, str]:
    if isinstance(x, Tensor):
        return np.array(x.data, order="C"), "tensor"
    if isinstance(x, np.ndarray):
        return np.array(x, order="C"), "array"
    if isinstance(x, (bool, int, float, np.integer, np.floating)):
        return np.array([x]), "number"
    raise TypeError(f"{op}: expected a Tensor, a numpy array or a number, got "
                    f"{type(x).__name__}")


def _wrap(arr: np.ndarray, kind: str):
    if kind == "tensor":
        return Tensor(arr)
    if kind == "number":
        return arr[0].item()
    return arr


def _check_same(w, op: str, arr: np.ndarray) -> None:
    """Every rank gives the same shape and dtype (else every rank raises the same error)."""
    meta = w.allgather_obj([list(arr.shape), arr.dtype.str])
    for r, m in enumerate(meta):
        if m != meta[0]:
            raise ValueError(f"{op}: rank {r} gives shape {tuple(m[0])} and dtype {m[1]}, rank 0 "
                             f"gives shape {tuple(meta[0][0])} and dtype {meta[0][1]}; every "
                             "rank must give the same")


def all_reduce(x, op: str = "sum"):
    """The element-wise ``op`` ('sum', 'mean', 'max', 'min' or 'prod') of ``x`` over ranks."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {_OPS}, got {op!r}")
    arr, kind = _as_array(x, "all_reduce")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"all_reduce: expected numbers, got dtype {arr.dtype}")
    if op == "mean" and arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    w = _world()
    _check_same(w, "all_reduce", arr)
    w.wait([w.iallreduce(arr, op)])
    if op == "mean":
        arr /= w.size
    return _wrap(arr, kind)


def broadcast(x, src: int = 0):
    """Rank ``src``'s ``x`` on every rank (every rank passes a value of the same shape and
    dtype, e.g. zeros on the receivers)."""
    w = _world()
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < w.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {w.size}), got {src!r}")
    arr, kind = _as_array(x, "broadcast")
    _check_same(w, "broadcast", arr)
    w.wait([w.ibcast(arr, int(src))])
    return _wrap(arr, kind)


def all_gather(x) -> list:
    """The list ``[x from rank 0, x from rank 1, ...]`` on every rank (same shape and dtype)."""
    arr, kind = _as_array(x, "all_gather")
    w = _world()
    _check_same(w, "all_gather", arr)
    out = np.empty((w.size,) + arr.shape, arr.dtype)
    w.wait([w.iallgather(arr, out)])
    return [_wrap(out[r], kind) for r in range(w.size)]
