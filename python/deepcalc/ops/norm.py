"""Batch and layer normalization: a forward primitive with outputs (y, mean, invstd) and a
backward primitive with outputs (dx, dgamma, dbeta), both fused native kernels (cpp/norm).

With x_hat = (x - mean) * invstd, invstd = 1 / sqrt(var + eps) (biased variance over the
M values that share a statistic), y = gamma * x_hat + beta:

    dx     = gamma * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    dgamma = sum(dy * x_hat)        dbeta = sum(dy)
    tangent of x_hat: invstd * (tx - mean(tx)) - x_hat * mean(x_hat * tx) * invstd

BatchNorm reduces over the batch (and length) axes per channel; LayerNorm over the last axis
per row.  The forward's VJP runs the backward kernel (at every order: under ``create_graph``,
``hvp`` and ``jvp`` too); the backward primitive's own rules (the next order: its JVP written
out, its VJP that of the composite of the equations above) and the forward's JVP are deepcalc
ops, with mean and invstd recomputed from x so every derivative goes through the statistics.  mean and invstd are outputs the backward kernel reuses;
autodiff does not follow them (they are constants of the graph, as in torch).
"""
from __future__ import annotations

import numpy as np

from .. import _core
from ..autodiff.composite import composite_vjp
from ..autodiff.graph import Primitive, apply
from .elementwise import sqrt
from .reduce import mean, sum
from .shape import broadcast_to, reshape


def _contiguous(a):
    return a if a is None or a.flags.c_contiguous else np.ascontiguousarray(a)


class _Layout:
    """Where the statistics live: the axes reduced for mean/invstd and for gamma/beta's
    gradients, and the shape gamma takes to broadcast against x."""

    def __init__(self, batch: bool):
        self.batch = batch

    def axes(self, x):
        if self.batch:
            return (0,) if x.ndim == 2 else (0, 2)
        return (x.ndim - 1,)

    def param_axes(self, x):
        return self.axes(x) if self.batch else tuple(range(x.ndim - 1))

    def param_shape(self, x):
        if self.batch:
            return (x.shape[1],) if x.ndim == 2 else (1, x.shape[1], 1)
        return (x.shape[-1],)

    def stats(self, x, eps):
        """(x_hat, invstd) as differentiable ops of x."""
        axes = self.axes(x)
        d = x - mean(x, axes, keepdims=True)
        invstd = 1 / sqrt(mean(d * d, axes, keepdims=True) + eps)
        return d * invstd, invstd


class _NormForward(Primitive):
    """(x[, gamma, beta]) -> (y, mean, invstd); only y is differentiable."""
    multiple_results = True
    differentiable_outputs = (0,)

    def vjp(self, ctx, gy, gmean, ginvstd):
        _, mu, invstd = ctx.out_data
        return apply(self.backward, (gy,) + tuple(ctx.inputs[:2]),
                     {"eps": ctx.params["eps"], "mean": mu, "invstd": invstd})

    def jvp(self, ctx, tx, *tparams):
        lay, x = self.layout, ctx.inputs[0]
        x_hat = None
        out = None
        if tx is not None:
            axes = lay.axes(x)
            x_hat, invstd = lay.stats(x, ctx.params["eps"])
            tc = tx - mean(tx, axes, keepdims=True)
            out = invstd * (tc - x_hat * mean(x_hat * tc, axes, keepdims=True))
            if tparams:
                out = out * reshape(ctx.inputs[1], lay.param_shape(x))
        if tparams:
            tgamma, tbeta = tparams
            pshape = lay.param_shape(x)
            if tgamma is not None:
                if x_hat is None:
                    x_hat, _ = lay.stats(x, ctx.params["eps"])
                term = x_hat * reshape(tgamma, pshape)
                out = term if out is None else out + term
            if tbeta is not None:
                term = reshape(tbeta, pshape)
                out = term if out is None else out + term
        if out is not None and out.shape != x.shape:  # only tbeta flowed: beta broadcast over x
            out = broadcast_to(out, x.shape)
        return out, None, None


class _NormBackward(Primitive):
    """(dy, x[, gamma]) -> (dx[, dgamma, dbeta]), mean and invstd of x as parameters."""
    multiple_results = True

    def composite(self, eps):
        """The backward as deepcalc ops of (dy, x[, gamma]): its derivatives are this one's."""
        lay = self.layout

        def fn(g, x, *gamma):
            axes = lay.axes(x)
            x_hat, invstd = lay.stats(x, eps)
            gx = g * reshape(gamma[0], lay.param_shape(x)) if gamma else g
            dx = invstd * (gx - mean(gx, axes, keepdims=True)
                           - x_hat * mean(gx * x_hat, axes, keepdims=True))
            if not gamma:
                return dx
            pshape, other = gamma[0].shape, lay.param_axes(x)
            return dx, reshape(sum(g * x_hat, other), pshape), reshape(sum(g, other), pshape)
        return fn

    def vjp(self, ctx, *cotangents):
        return composite_vjp(self.composite(ctx.params["eps"]), ctx, cotangents)

    def jvp(self, ctx, tg, tx, *tgamma):
        """With h = dy * gamma, m1 = mean(h x_hat), r = mean(x_hat tx) (means over the statistic's
        axes): tangent of x_hat = invstd (tx - mean(tx) - x_hat r), of invstd = -invstd^2 r,
        so t_dx = -invstd r dx + invstd (th - mean(th) - t_xhat m1 - x_hat (mean(th x_hat) +
        mean(h t_xhat))) with th = t_dy gamma + dy t_gamma; t_dgamma = sum(t_dy x_hat + dy t_xhat),
        t_dbeta = sum(t_dy)."""
        lay, eps = self.layout, ctx.params["eps"]
        g, x = ctx.inputs[:2]
        axes = lay.axes(x)
        avg = lambda v: mean(v, axes, keepdims=True)  # noqa: E731
        x_hat, invstd = lay.stats(x, eps)
        gamma = reshape(ctx.inputs[2], lay.param_shape(x)) if len(ctx.inputs) == 3 else None
        h = g * gamma if gamma is not None else g
        th = None
        if tg is not None:
            th = tg * gamma if gamma is not None else tg
        if tgamma and tgamma[0] is not None:
            term = g * reshape(tgamma[0], lay.param_shape(x))
            th = term if th is None else th + term
        tdx = tx_hat = None
        if tx is not None:
            r = avg(x_hat * tx)
            tx_hat = invstd * (tx - avg(tx) - x_hat * r)
            m1 = avg(h * x_hat)
            dx = invstd * (h - avg(h) - x_hat * m1)
            tdx = -(invstd * r) * dx - invstd * (tx_hat * m1 + x_hat * avg(h * tx_hat))
        if th is not None:
            term = invstd * (th - avg(th) - x_hat * avg(th * x_hat))
            tdx = term if tdx is None else tdx + term
        if tdx is not None and tdx.shape != x.shape:
            tdx = broadcast_to(tdx, x.shape)
        if gamma is None:
            return (tdx,)
        pshape, other = ctx.inputs[2].shape, lay.param_axes(x)
        tdg = None
        for term in (tg * x_hat if tg is not None else None,
                     g * tx_hat if tx_hat is not None else None):
            if term is not None:
                tdg = term if tdg is None else tdg + term
        tdg = reshape(sum(tdg, other), pshape) if tdg is not None else None
        tdb = reshape(sum(tg, other), pshape) if tg is not None else None
        return tdx, tdg, tdb


class BatchNormTrain(_NormForward):
    """x is (N, C) or (N, C, L); statistics per channel over N (and L)."""
    name = "batch_norm"
    layout = _Layout(batch=True)

    def forward(self, x, *params, eps):
        gamma, beta = (_contiguous(p) for p in params) if params else (None, None)
        return _core.batchnorm_forward_train(np.ascontiguousarray(x), gamma, beta, eps)


class BatchNormBackward(_NormBackward):
    name = "batch_norm_backward"
    layout = _Layout(batch=True)

    def forward(self, dy, x, *gamma, eps, mean, invstd):
        dx, dgamma, dbeta = _core.batchnorm_backward(
            np.ascontiguousarray(dy), np.ascontiguousarray(x), mean, invstd,
            _contiguous(gamma[0]) if gamma else None)
        return (dx, dgamma, dbeta) if gamma else (dx,)


class LayerNorm(_NormForward):
    """Normalizes over the last axis of any-shaped x; gamma/beta have shape (C,)."""
    name = "layer_norm"
    layout = _Layout(batch=False)

    def forward(self, x, *params, eps):
        gamma, beta = (_contiguous(p) for p in params) if params else (None, None)
        return _core.layernorm_forward(np.ascontiguousarray(x), gamma, beta, eps)


class LayerNormBackward(_NormBackward):
    name = "layer_norm_backward"
    layout = _Layout(batch=False)

    def forward(self, dy, x, *gamma, eps, mean, invstd):
        dx, dgamma, dbeta = _core.layernorm_backward(
            np.ascontiguousarray(dy), np.ascontiguousarray(x), mean, invstd,
            _contiguous(gamma[0]) if gamma else None)
        return (dx, dgamma, dbeta) if gamma else (dx,)


_batch_norm_train = BatchNormTrain()
_batch_norm_train.backward = BatchNormBackward()
_layer_norm = LayerNorm()
_layer_norm.backward = LayerNormBackward()


def batch_norm_train(x, weight, bias, eps):
    """Training-mode batch norm: Tensors (y, mean, invstd), the statistics per channel (not
    followed by autodiff)."""
    inputs = (x,) if weight is None else (x, weight, bias)
    return apply(_batch_norm_train, inputs, {"eps": float(eps)})


def update_running_stats(running_mean, running_var, mean, invstd, m, momentum, eps):
    """In place, torch's rule (in double): running_mean <- (1 - momentum) running_mean +
    momentum mean, running_var <- (1 - momentum) running_var + momentum * unbiased variance,
    the variance recovered from invstd over m values; NaN statistics propagate."""
    _core.batchnorm_update_running(running_mean, running_var, mean, invstd, m, float(momentum),
                                   float(eps))


def layer_norm(x, weight, bias, eps):
    """Layer norm over the last axis: y (the statistics are outputs of the primitive)."""
    inputs = (x,) if weight is None else (x, weight, bias)
    return apply(_layer_norm, inputs, {"eps": float(eps)})[0]
