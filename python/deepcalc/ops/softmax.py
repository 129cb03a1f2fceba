"""softmax and log_softmax over one axis: forward and backward are fused native row kernels
(cpp/softmax), the backward a primitive of its own so that it runs at every order.

softmax:      y = exp(x - logsumexp(x));   dx = y * (g - sum(g * y))
log_softmax:  y = x - logsumexp(x);        dx = g - exp(y) * sum(g)

The backward's own derivatives (the next order), with s = sum(g * y), p = exp(y), S = sum(g):
softmax:      d/dg: y * (c - sum(c * y)) (itself);   d/dy: c * (g - s) - sum(c * y) * g
log_softmax:  d/dg: c - sum(c * p);                  d/dy: -c * p * S
"""
from __future__ import annotations

import numpy as np

from .. import _core
from ..autodiff.graph import Primitive, Tensor, apply
from ._convert import as_tensor, check_float, normalize_one_axis
from .elementwise import exp
from .reduce import sum
from .shape import materialize


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
        self.backward = SoftmaxBackward(log)

    def batch(self, info, x, axis):
        return apply(self, (x,), {"axis": axis + 1})

    def forward(self, x, axis):
        return _unrows(_core.softmax_forward(_rows(x, axis), self.log), axis)

    def vjp(self, ctx, g):
        return (apply(self.backward, (ctx.out, g), ctx.params),)

    def jvp(self, ctx, t):
        y = ctx.out
        if self.log:
            return t - sum(exp(y) * t, ctx.params["axis"], keepdims=True)
        return apply(self.backward, (y, t), ctx.params)  # softmax's Jacobian is symmetric


class SoftmaxBackward(Primitive):
    """(y, g) -> dx for softmax (or log_softmax) output y and output gradient g."""

    def __init__(self, log: bool):
        self.log = log
        self.name = "log_softmax_backward" if log else "softmax_backward"

    def batch(self, info, y, g, axis):
        y, g = (materialize(v, b, info.size) for v, b in zip((y, g), info.batched))
        return apply(self, (y, g), {"axis": axis + 1})

    def forward(self, y, g, axis):
        return _unrows(_core.softmax_backward(_rows(y, axis), _rows(g, axis), self.log), axis)

    def vjp(self, ctx, c):
        (y, g), axis = ctx.inputs, ctx.params["axis"]
        if self.log:
            p = exp(y)
            cg = c - sum(c * p, axis, keepdims=True) if g.requires_grad else None
            cy = -c * p * sum(g, axis, keepdims=True) if y.requires_grad else None
            return cy, cg
        cy = None
        if y.requires_grad:
            cy = c * (g - sum(g * y, axis, keepdims=True)) - sum(c * y, axis, keepdims=True) * g
        return cy, (apply(self, (y, c), ctx.params) if g.requires_grad else None)

    def jvp(self, ctx, ty, tg):
        (y, g), axis = ctx.inputs, ctx.params["axis"]
        out = None
        if tg is not None:
            out = (tg - exp(y) * sum(tg, axis, keepdims=True) if self.log
                   else apply(self, (y, tg), ctx.params))
        if ty is not None:
            if self.log:
                term = -exp(y) * ty * sum(g, axis, keepdims=True)
            else:
                term = ty * (g - sum(g * y, axis, keepdims=True)) - y * sum(g * ty, axis,
                                                                            keepdims=True)
            out = term if out is None else out + term
        return out


_softmax = Softmax(log=False)
_log_softmax = Softmax(log=True)


def _call(prim, x, axis):
    x = as_tensor(x, op=prim.name)
    check_float(prim.name, x)
    if x.ndim == 0:
        raise ValueError(f"{prim.name}: expected a tensor with at least 1 dimension, got a scalar")
    axis = normalize_one_axis(prim.name, axis, x.ndim)
    return apply(prim, (x,), {"axis": axis})


def softmax(x, axis: int = -1) -> Tensor:
    return _call(_softmax, x, axis)


def log_softmax(x, axis: int = -1) -> Tensor:
    return _call(_log_softmax, x, axis)
