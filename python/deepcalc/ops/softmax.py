"""softmax and log_softmax over one axis: forward and first-order backward run the fused
native row kernels (cpp/softmax); when the backward itself must be differentiable (create_graph
or forward mode) the same formulas run as deepcalc ops.

softmax:      y = exp(x - logsumexp(x));   dx = y * (g - sum(g * y))
log_softmax:  y = x - logsumexp(x);        dx = g - exp(y) * sum(g)
"""
from __future__ import annotations

import numpy as np

from .. import _core
from ..autodiff.graph import Primitive, Tensor, apply, needs_graph, wrap
from ._convert import as_tensor, check_float, normalize_axis
from .elementwise import exp
from .reduce import sum


def _rows(x: np.ndarray, axis: int) -> np.ndarray:
    """x with ``axis`` moved last, C-contiguous (a copy only when needed)."""
    if axis != x.ndim - 1:
        x = np.moveaxis(x, axis, -1)
    return np.ascontiguousarray(x)


def _unrows(y: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(y, -1, axis) if axis != y.ndim - 1 else y


class Softmax(Primitive):
    def __init__(self, log: bool):
        self.log = log
        self.name = "log_softmax" if log else "softmax"

    def forward(self, x, axis):
        return _unrows(_core.softmax_forward(_rows(x, axis), self.log), axis)

    def vjp(self, ctx, g):
        axis, y = ctx.params["axis"], ctx.out
        if not needs_graph(g, y):
            dx = _core.softmax_backward(_rows(y.data, axis), _rows(g.data, axis), self.log)
            return (wrap(_unrows(dx, axis)),)
        if self.log:
            return (g - exp(y) * sum(g, axis, keepdims=True),)
        return (y * (g - sum(g * y, axis, keepdims=True)),)

    def jvp(self, ctx, t):
        axis, y = ctx.params["axis"], ctx.out
        if self.log:
            return t - sum(exp(y) * t, axis, keepdims=True)
        return y * (t - sum(y * t, axis, keepdims=True))


_softmax = Softmax(log=False)
_log_softmax = Softmax(log=True)


def _call(prim, x, axis):
    x = as_tensor(x, op=prim.name)
    check_float(prim.name, x)
    if x.ndim == 0:
        raise ValueError(f"{prim.name}: expected a tensor with at least 1 dimension, got a scalar")
    axis = normalize_axis(prim.name, axis, x.ndim)[0]
    return apply(prim, (x,), {"axis": axis})


def softmax(x, axis: int = -1) -> Tensor:
    return _call(_softmax, x, axis)


def log_softmax(x, axis: int = -1) -> Tensor:
    return _call(_log_softmax, x, axis)
