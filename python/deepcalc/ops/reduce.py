"""Reductions over axes (NumPy-style ``axis`` / ``keepdims``): sum, max/min (primitives),
mean, var, logsumexp.  The VJP of a reduction re-expands the gradient to the input's shape."""
from __future__ import annotations

import numpy as np

from ..autodiff.batching import constant
from ..autodiff.graph import Primitive, Tensor, apply, wrap
from ._convert import as_tensor, check_float, normalize_axis
from .shape import broadcast_to, reshape


def _keepdims_shape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand(g: Tensor, in_shape, axes, keepdims) -> Tensor:
    """Broadcast a reduced gradient (a Tensor or an array) back over the reduced axes."""
    if not keepdims:
        g = g.reshape(_keepdims_shape(in_shape, axes))
    return broadcast_to(g, in_shape)


def _reduce_rule(self, info, x, axes, keepdims):
    """``batch`` of a reduction over ``axes``: the same reduction one axis further right."""
    return apply(self, (x,), {"axes": tuple(a + 1 for a in axes), "keepdims": keepdims})


class Sum(Primitive):
    name = "sum"
    batch = _reduce_rule

    def forward(self, x, axes, keepdims):
        return np.asarray(np.sum(x, axis=axes, keepdims=keepdims))

    array_rule = True

    def vjp(self, ctx, g):
        p = ctx.params
        return (_expand(g, ctx.inputs[0].data.shape, p["axes"], p["keepdims"]),)

    def jvp(self, ctx, t):
        return apply(self, (t,), ctx.params)


def _ties(x, extreme):
    """The elements equal to their slice's extreme, or NaN where the extreme is NaN (a NaN
    equals nothing): an array mask, element-wise in x and the broadcast extreme."""
    return (x == extreme) | (np.isnan(x) & np.isnan(extreme))


class MaxMin(Primitive):
    """max / min over axes.  Ties share the gradient equally (as torch.amax / amin do); a NaN
    is the max (and min) of its slice, and the NaNs of a slice share its gradient (as
    torch.max() does), the other elements getting 0."""
    saves = True
    batch = _reduce_rule

    def __init__(self, name, fn):
        self.name, self.fn = name, fn

    def forward(self, x, axes, keepdims):
        out = np.asarray(self.fn(x, axis=axes, keepdims=True))
        mask = _ties(x, out)
        weights = (mask / mask.sum(axis=axes, keepdims=True)).astype(x.dtype)
        return (out if keepdims else out.reshape([n for i, n in enumerate(out.shape)
                                                   if i not in axes]), weights)

    def _weights(self, ctx) -> Tensor:
        """The forward's saved weights, or (for a node recorded under vmap, which saves nothing)
        the same weights rebuilt from x and the result: the elements equal to the extreme (or
        NaN where it is NaN), each slice's share 1 / count."""
        if ctx.saved is not None:
            return wrap(ctx.saved)
        x, axes = ctx.inputs[0].detach(), ctx.params["axes"]
        m = ctx.out.detach()
        if not ctx.params["keepdims"]:
            m = reshape(m, _keepdims_shape(x.shape, axes))
        mask = constant(lambda a, e: _ties(a, e).astype(a.dtype), x, m)
        return mask / sum(mask, axes, keepdims=True)

    def vjp(self, ctx, g):
        x = ctx.inputs[0]
        return (_expand(g, x.shape, ctx.params["axes"], ctx.params["keepdims"]) *
                self._weights(ctx),)

    def jvp(self, ctx, t):
        return sum(t * self._weights(ctx), axis=ctx.params["axes"],
                   keepdims=ctx.params["keepdims"])


_sum = Sum()
_max = MaxMin("max", np.max)
_min = MaxMin("min", np.min)


def sum(x, axis=None, keepdims: bool = False) -> Tensor:
    x = as_tensor(x, None, "sum")
    axes = normalize_axis("sum", axis, x.ndim)
    if not axes and x.ndim:
        return x
    return apply(_sum, (x,), {"axes": axes, "keepdims": bool(keepdims)})


def _extreme(prim, opname, x, axis, keepdims):
    x = as_tensor(x, None, opname)
    axes = normalize_axis(opname, axis, x.ndim)
    if any(x.shape[a] == 0 for a in axes) or x.size == 0:
        raise ValueError(f"{opname}: cannot reduce over an empty axis (tensor shape {x.shape}, "
                         f"axis {axis})")
    return apply(prim, (x,), {"axes": axes, "keepdims": bool(keepdims)})


def max(x, axis=None, keepdims: bool = False) -> Tensor:
    return _extreme(_max, "max", x, axis, keepdims)


def min(x, axis=None, keepdims: bool = False) -> Tensor:
    return _extreme(_min, "min", x, axis, keepdims)


def _count(shape, axes) -> int:
    n = 1
    for a in axes:
        n *= shape[a]
    return n


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    x = as_tensor(x, None, "mean")
    check_float("mean", x)
    axes = normalize_axis("mean", axis, x.ndim)
    n = _count(x.shape, axes)
    if n == 0:
        raise ValueError(f"mean: cannot average over an empty axis (tensor shape {x.shape})")
    return sum(x, axes, keepdims) * (1.0 / n)


def var(x, axis=None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Variance, two-pass (subtract the mean first) for accuracy; ``ddof=1`` is unbiased."""
    return _var("var", x, axis, keepdims, ddof)


def std(x, axis=None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    from .elementwise import sqrt
    return sqrt(_var("std", x, axis, keepdims, ddof))


def _var(op, x, axis, keepdims, ddof):
    x = as_tensor(x, None, op)
    check_float(op, x)
    axes = normalize_axis(op, axis, x.ndim)
    n = _count(x.shape, axes)
    if n - ddof <= 0:
        raise ValueError(f"{op}: {n} elements per reduction with ddof={ddof} (tensor shape "
                         f"{x.shape}, axis {axis})")
    d = x - mean(x, axes, keepdims=True)
    return sum(d * d, axes, keepdims) * (1.0 / (n - ddof))


class LogSumExp(Primitive):
    """log sum exp over axes, shifted by the max for stability; d/dx = softmax(x)."""
    name = "logsumexp"
    batch = _reduce_rule

    def forward(self, x, axes, keepdims):
        if x.size == 0:  # an empty slice sums to 0: its log sum exp is -inf (as torch)
            out = np.full(_keepdims_shape(x.shape, axes), -np.inf, x.dtype)
        else:
            m = np.max(x, axis=axes, keepdims=True)
            m = np.where(np.isfinite(m), m, 0)
            out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
        return out if keepdims else out.reshape([n for i, n in enumerate(out.shape) if i not in axes])

    def _softmax(self, ctx):
        from .elementwise import exp
        x = ctx.inputs[0]
        out = ctx.out
        if not ctx.params["keepdims"]:
            out = reshape(out, _keepdims_shape(x.shape, ctx.params["axes"]))
        return exp(x - out)

    def vjp(self, ctx, g):
        x = ctx.inputs[0]
        return (_expand(g, x.shape, ctx.params["axes"], ctx.params["keepdims"]) * self._softmax(ctx),)

    def jvp(self, ctx, t):
        return sum(t * self._softmax(ctx), axis=ctx.params["axes"], keepdims=ctx.params["keepdims"])


_logsumexp = LogSumExp()


def logsumexp(x, axis=None, keepdims: bool = False) -> Tensor:
    x = as_tensor(x, None, "logsumexp")
    check_float("logsumexp", x)
    axes = normalize_axis("logsumexp", axis, x.ndim)
    return apply(_logsumexp, (x,), {"axes": axes, "keepdims": bool(keepdims)})
