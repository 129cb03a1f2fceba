"""Batch and layer normalization primitives: fused native forward and first-order backward
(cpp/norm), with the same equations as deepcalc ops for higher order and forward mode.

With x_hat = (x - mean) * invstd, invstd = 1 / sqrt(var + eps) (biased variance over the
M values that share a statistic), y = gamma * x_hat + beta:

    dx     = gamma * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    dgamma = sum(dy * x_hat)        dbeta = sum(dy)
    tangent of x_hat: invstd * (tx - mean(tx)) - x_hat * mean(x_hat * tx) * invstd

BatchNorm reduces over the batch (and length) axes per channel; LayerNorm over the last axis
per row.  In the differentiable path mean and invstd are recomputed from x with deepcalc ops,
so every derivative of any order goes through the batch statistics.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from ..autodiff.graph import Primitive, apply, needs_graph, wrap
from .reduce import mean, sum
from .elementwise import sqrt
from .shape import broadcast_to, reshape


def _contiguous_params(params):
    """(gamma, beta) as the kernels take them: C-contiguous (a strided view is copied), or
    (None, None) without an affine map."""
    if not params:
        return None, None
    return tuple(p if p.flags.c_contiguous else np.ascontiguousarray(p) for p in params)


class _Norm(Primitive):
    """Shared rules; subclasses define the reduction axes, parameter shape and kernels."""
    saves = True

    def axes(self, x):
        raise NotImplementedError

    def param_shape(self, x):
        raise NotImplementedError

    def _stats(self, x, eps):
        """(x_hat, invstd) as differentiable ops of x."""
        axes = self.axes(x)
        mu = mean(x, axes, keepdims=True)
        d = x - mu
        invstd = 1 / sqrt(mean(d * d, axes, keepdims=True) + eps)
        return d * invstd, invstd

    def _gamma(self, ctx):
        if len(ctx.inputs) == 1:
            return None
        return reshape(ctx.inputs[1], self.param_shape(ctx.inputs[0]))

    def vjp(self, ctx, g):
        x = ctx.inputs[0]
        affine = len(ctx.inputs) == 3
        if not needs_graph(g, *ctx.inputs):
            mu, invstd = ctx.saved
            dx, dgamma, dbeta = self.kernel_backward(
                np.ascontiguousarray(g.data), x.data, mu, invstd,
                np.ascontiguousarray(ctx.inputs[1].data) if affine else None)
            return (wrap(dx),) + ((wrap(dgamma), wrap(dbeta)) if affine else ())
        axes = self.axes(x)
        x_hat, invstd = self._stats(x, ctx.params["eps"])
        gamma = self._gamma(ctx)
        gx = g * gamma if gamma is not None else g
        dx = invstd * (gx - mean(gx, axes, keepdims=True)
                       - x_hat * mean(gx * x_hat, axes, keepdims=True))
        if not affine:
            return (dx,)
        pshape = ctx.inputs[1].shape
        other = self.param_axes(x)
        return (dx, reshape(sum(g * x_hat, other), pshape), reshape(sum(g, other), pshape))

    def jvp(self, ctx, tx, *tparams):
        x = ctx.inputs[0]
        axes = self.axes(x)
        out = None
        if tx is not None:
            x_hat, invstd = self._stats(x, ctx.params["eps"])
            tc = tx - mean(tx, axes, keepdims=True)
            t_hat = invstd * (tc - x_hat * mean(x_hat * tc, axes, keepdims=True))
            gamma = self._gamma(ctx)
            out = t_hat * gamma if gamma is not None else t_hat
        if tparams:
            tgamma, tbeta = tparams
            pshape = self.param_shape(x)
            if tgamma is not None:
                x_hat, _ = self._stats(x, ctx.params["eps"])
                term = x_hat * reshape(tgamma, pshape)
                out = term if out is None else out + term
            if tbeta is not None:
                term = reshape(tbeta, pshape)
                out = term if out is None else out + term
        if out is not None and out.shape != x.shape:  # only tbeta flowed: beta broadcast over x
            out = broadcast_to(out, x.shape)
        return out


class BatchNormTrain(_Norm):
    """x is (N, C) or (N, C, L); statistics per channel over N (and L)."""
    name = "batch_norm"

    def axes(self, x):
        return (0,) if x.ndim == 2 else (0, 2)

    def param_axes(self, x):
        return self.axes(x)

    def param_shape(self, x):
        return (x.shape[1],) if x.ndim == 2 else (1, x.shape[1], 1)

    def forward(self, x, *params, eps, stats):
        gamma, beta = _contiguous_params(params)
        y, mu, invstd = _core.batchnorm_forward_train(np.ascontiguousarray(x), gamma, beta, eps)
        stats["mean"], stats["invstd"] = mu, invstd
        return y, (mu, invstd)

    def kernel_backward(self, dy, x, mu, invstd, gamma):
        return _core.batchnorm_backward(dy, np.ascontiguousarray(x), mu, invstd, gamma)


class LayerNorm(_Norm):
    """Normalizes over the last axis of any-shaped x; gamma/beta have shape (C,)."""
    name = "layer_norm"

    def axes(self, x):
        return (x.ndim - 1,)

    def param_axes(self, x):
        return tuple(range(x.ndim - 1))

    def param_shape(self, x):
        return (x.shape[-1],)

    def forward(self, x, *params, eps):
        gamma, beta = _contiguous_params(params)
        y, mu, invstd = _core.layernorm_forward(np.ascontiguousarray(x), gamma, beta, eps)
        return y, (mu, invstd)

    def kernel_backward(self, dy, x, mu, invstd, gamma):
        return _core.layernorm_backward(dy, np.ascontiguousarray(x), mu, invstd, gamma)


_batch_norm_train = BatchNormTrain()
_layer_norm = LayerNorm()


def batch_norm_train(x, weight, bias, eps):
    """Training-mode batch norm; returns (y, mean, invstd) with the batch statistics as arrays."""
    stats = {}
    inputs = (x,) if weight is None else (x, weight, bias)
    y = apply(_batch_norm_train, inputs, {"eps": float(eps), "stats": stats})
    return y, stats["mean"], stats["invstd"]


def update_running_stats(running_mean, running_var, mean, invstd, m, momentum, eps):
    """In place, torch's rule (in double): running_mean <- (1 - momentum) running_mean +
    momentum mean, running_var <- (1 - momentum) running_var + momentum * unbiased variance,
    the variance recovered from invstd over m values; NaN statistics propagate."""
    _core.batchnorm_update_running(running_mean, running_var, mean, invstd, m, float(momentum),
                                   float(eps))


def layer_norm(x, weight, bias, eps):
    inputs = (x,) if weight is None else (x, weight, bias)
    return apply(_layer_norm, inputs, {"eps": float(eps)})
