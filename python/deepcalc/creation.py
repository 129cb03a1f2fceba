"""Making tensors: ``tensor`` (zero-copy from float ndarrays), zeros/ones/full/arange/eye, and
random tensors from deepcalc's seeded generator (``manual_seed``)."""
from __future__ import annotations

import numpy as np

from .autodiff.graph import Tensor, wrap
from .ops._convert import DEFAULT_DTYPE


class _RNG:
    generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Seed deepcalc's global generator (initializers, dropout, shuffling); returns it."""
    _RNG.generator = np.random.default_rng(int(seed))
    return _RNG.generator


def default_generator() -> np.random.Generator:
    return _RNG.generator


def _dtype(dtype):
    if dtype is None:
        return DEFAULT_DTYPE
    d = np.dtype(dtype)
    return d


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A Tensor from array-like ``data``.

    A float32/float64 ndarray is wrapped without copying (its dtype kept) unless ``dtype``
    asks for another; Python numbers and lists become float32 unless ``dtype`` is given;
    integer and bool arrays keep their dtype (they cannot require grad).
    """
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, np.ndarray):
        arr = data if dtype is None else data.astype(dtype, copy=False)
    else:
        arr = np.asarray(data)
        if dtype is not None:
            arr = arr.astype(dtype, copy=False)
        elif arr.dtype.kind in "fc" or arr.dtype == object:
            arr = arr.astype(DEFAULT_DTYPE)
        elif arr.dtype.kind in "iu" and requires_grad:
            arr = arr.astype(DEFAULT_DTYPE)
    return Tensor(arr, requires_grad=requires_grad)


def zeros(*shape, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), _dtype(dtype)), requires_grad)


def ones(*shape, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(np.ones(_shape(shape), _dtype(dtype)), requires_grad)


def full(shape, value, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(np.full(_shape((shape,)), value, _dtype(dtype)), requires_grad)


def zeros_like(x, requires_grad=False) -> Tensor:
    return Tensor(np.zeros_like(np.asarray(x)), requires_grad)


def ones_like(x, requires_grad=False) -> Tensor:
    return Tensor(np.ones_like(np.asarray(x)), requires_grad)


def arange(*args, dtype=None) -> Tensor:
    return wrap(np.arange(*args, dtype=_dtype(dtype)))


def eye(n, m=None, dtype=None) -> Tensor:
    return wrap(np.eye(n, m, dtype=_dtype(dtype)))


def randn(*shape, dtype=None, requires_grad=False, generator=None) -> Tensor:
    g = generator or _RNG.generator
    return Tensor(g.standard_normal(_shape(shape)).astype(_dtype(dtype)), requires_grad)


def rand(*shape, dtype=None, requires_grad=False, generator=None) -> Tensor:
    g = generator or _RNG.generator
    return Tensor(g.random(_shape(shape)).astype(_dtype(dtype)), requires_grad)


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)
