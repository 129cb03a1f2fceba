"""Argument checks shared by the layers' constructors and the functional ops, so that every
nonsense argument fails where it is given, with a message naming the layer and the argument."""
from __future__ import annotations

import numpy as np

_INTS = (int, np.integer)
_REALS = (int, float, np.integer, np.floating)


def integer(owner: str, name: str, v, minimum: int = 1) -> int:
    """``v`` as an int >= ``minimum``; floats and bools are rejected (as torch's sizes)."""
    if isinstance(v, bool) or not isinstance(v, _INTS):
        raise TypeError(f"{owner}: {name} must be an integer, got {type(v).__name__} {v!r}")
    if v < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{owner}: {name} must be {what}, got {v}")
    return int(v)


def real(owner: str, name: str, v, low: float | None = None, high: float | None = None,
         high_open: bool = False) -> float:
    """``v`` as a float in [low, high] (or [low, high) with ``high_open``); NaN is rejected."""
    if isinstance(v, bool) or not isinstance(v, _REALS):
        raise TypeError(f"{owner}: {name} must be a number, got {type(v).__name__} {v!r}")
    v = float(v)
    too_low = low is not None and not v >= low
    too_high = high is not None and not (v < high if high_open else v <= high)
    if too_low or too_high or v != v:
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{owner}: {name} must be in [{lo}, {hi}{')' if high_open else ']'}, "
                         f"got {v}")
    return v


def probability(owner: str, name: str, p) -> float:
    return real(owner, name, p, 0.0, 1.0)


def float_dtype(owner: str, dtype) -> np.dtype:
    """float32 or float64, the dtypes deepcalc's kernels compute in."""
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype!r}")
    return dt
