"""Making tensors: ``tensor`` (zero-copy from float ndarrays), zeros/ones/full/arange/eye, and
random tensors from deepcalc's seeded generator (``manual_seed``).  Bad data (None, str,
complex, float16), float sizes and unknown dtypes are TypeErrors naming the function."""
from __future__ import annotations

import numpy as np

from .autodiff.graph import Tensor, wrap
from .ops._convert import DEFAULT_DTYPE, check_dtype, check_shape, to_array


class _RNG:
    generator = np.random.default_rng(0)


def manual_seed(seed: int) -> np.random.Generator:
    """Seed deepcalc's global generator (initializers, dropout, shuffling); returns it."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__} ({seed!r})")
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be non-negative, got {seed}")
    _RNG.generator = np.random.default_rng(int(seed))
    return _RNG.generator


def default_generator() -> np.random.Generator:
    return _RNG.generator


def check_generator(op: str, generator):
    """``generator`` if it is None or a numpy Generator; anything else is a TypeError naming
    ``op``."""
    if generator is not None and not isinstance(generator, np.random.Generator):
        raise TypeError(f"{op}: generator must be a numpy.random.Generator, got "
                        f"{type(generator).__name__}")
    return generator


def _dtype(op, dtype, float_only=False):
    if dtype is None:
        return DEFAULT_DTYPE
    try:
        d = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{op}: {dtype!r} is not a dtype") from None
    check_dtype(op, d)
    if float_only and d.kind != "f":
        raise TypeError(f"{op}: dtype must be float32 or float64, got {d}")
    return d


def _make(op, arr, requires_grad) -> Tensor:
    if requires_grad and arr.dtype.kind != "f":
        raise TypeError(f"{op}: only float tensors can require grad, got {arr.dtype}")
    return Tensor(arr, requires_grad)


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A Tensor from array-like ``data``: a number, bool, ndarray or nested list of numbers.

    A float32/float64 ndarray is wrapped without copying (its dtype kept) unless ``dtype``
    asks for another; Python numbers and lists become float32 unless ``dtype`` is given;
    integer and bool arrays keep their dtype (they cannot require grad).  None, str, complex
    and object data, and float16 arrays without a ``dtype`` to convert to, are TypeErrors.
    """
    if isinstance(data, Tensor):
        data = data.data
    target = None if dtype is None else _dtype("tensor", dtype)
    arr = to_array("tensor", data, target)
    if target is None and not isinstance(data, np.ndarray):
        if arr.dtype.kind == "f" or (arr.dtype.kind in "iu" and requires_grad):
            arr = arr.astype(DEFAULT_DTYPE)
    return _make("tensor", arr, requires_grad)


def zeros(*shape, dtype=None, requires_grad=False) -> Tensor:
    return _make("zeros", np.zeros(_shape("zeros", shape), _dtype("zeros", dtype)), requires_grad)


def ones(*shape, dtype=None, requires_grad=False) -> Tensor:
    return _make("ones", np.ones(_shape("ones", shape), _dtype("ones", dtype)), requires_grad)


def full(shape, value, dtype=None, requires_grad=False) -> Tensor:
    if isinstance(value, Tensor) and value.ndim == 0:
        value = value.item()
    if not isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        raise TypeError(f"full: the fill value must be a number, got {type(value).__name__}")
    arr = np.full(_shape("full", (shape,)), value, _dtype("full", dtype))
    return _make("full", arr, requires_grad)


def zeros_like(x, requires_grad=False) -> Tensor:
    arr = to_array("zeros_like", x.data if isinstance(x, Tensor) else x)
    return _make("zeros_like", np.zeros_like(arr), requires_grad)


def ones_like(x, requires_grad=False) -> Tensor:
    arr = to_array("ones_like", x.data if isinstance(x, Tensor) else x)
    return _make("ones_like", np.ones_like(arr), requires_grad)


def arange(*args, dtype=None) -> Tensor:
    """NumPy's arange(start, stop, step), float32 unless ``dtype`` says otherwise."""
    if not 1 <= len(args) <= 3:
        raise TypeError(f"arange: expected 1 to 3 arguments (start, stop, step), got {len(args)}")
    for a in args:
        if not isinstance(a, (int, float, np.integer, np.floating)) or isinstance(a, bool):
            raise TypeError(f"arange: start, stop and step must be numbers, got "
                            f"{type(a).__name__} ({a!r})")
    if len(args) == 3 and args[2] == 0:
        raise ValueError("arange: step must be non-zero")
    return wrap(np.arange(*args, dtype=_dtype("arange", dtype)))


def eye(n, m=None, dtype=None) -> Tensor:
    n, m = _shape("eye", (n, n if m is None else m))
    return wrap(np.eye(n, m, dtype=_dtype("eye", dtype)))


def randn(*shape, dtype=None, requires_grad=False, generator=None) -> Tensor:
    g = generator or _RNG.generator
    d = _dtype("randn", dtype, float_only=True)
    return Tensor(g.standard_normal(_shape("randn", shape)).astype(d), requires_grad)


def rand(*shape, dtype=None, requires_grad=False, generator=None) -> Tensor:
    g = generator or _RNG.generator
    d = _dtype("rand", dtype, float_only=True)
    return Tensor(g.random(_shape("rand", shape)).astype(d), requires_grad)


def _shape(op, shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return check_shape(op, shape)
