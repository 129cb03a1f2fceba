"""Batch and layer normalization: a forward primitive with outputs (y, mean, invstd) and a
backward primitive with outputs (dx, dgamma, dbeta), both fused native kernels (cpp/norm).

With x_hat = (x - mean) * invstd, invstd = 1 / sqrt(var + eps) (biased variance over the
M values that share a statistic), y = gamma * x_hat + beta:

    dx     = gamma * invstd * (dy - mean(dy) - x_hat * mean(dy * x_hat))
    dgamma = sum(dy * x_hat)        dbeta = sum(dy)
    tangent of x_hat: invstd * (tx - mean(tx)) - x_hat * mean(x_hat * tx) * invstd

BatchNorm reduces over the batch (and length) axes per channel; LayerNorm over the last axis
per row.  Four primitives per layer, each a fused native kernel (so every order runs them):
the forward (y, mean, invstd), the backward (dx, dgamma, dbeta), and the forward-mode tangents
of both (the forward's JVP, and the backward's JVP that forward-over-reverse HVPs need).  The
backward's VJP is made of the two tangent kernels (see ``_NormBackward.vjp``); the tangent
kernels' own rules are their equations as deepcalc ops (``_forward_tangent``,
``_backward_tangent``), with mean and invstd recomputed from x so every derivative goes
through the statistics.  mean and invstd are outputs the kernels reuse;
autodiff does not follow them (they are constants of the graph, as in torch).
"""
from __future__ import annotations

import builtins

import numpy as np

from .. import _core
from ..autodiff.composite import composite_jvp, composite_vjp
from ..autodiff.graph import Primitive, apply, wrap
from .elementwise import sqrt
from .reduce import mean, sum

_mean = mean
from .shape import broadcast_to, reshape


def _contiguous(a):
    return a if a is None or a.flags.c_contiguous else np.ascontiguousarray(a)


class _Layout:
    """Where the statistics live: the axes reduced for mean/invstd and for gamma/beta's
    gradients, the shape gamma takes to broadcast against x, and the family's kernels."""

    def __init__(self, batch: bool):
        self.batch = batch
        self.forward_kernel = _core.batchnorm_forward_train if batch else _core.layernorm_forward
        self.backward_kernel = _core.batchnorm_backward if batch else _core.layernorm_backward

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

    def to_kernel(self, a):
        """The array as the kernels take it: C-contiguous, layer norm's rows as a 2-D (R, C)."""
        if a is None:
            return None
        a = np.ascontiguousarray(a)
        return a if self.batch or a.ndim == 2 else a.reshape(-1, a.shape[-1])

    def from_kernel(self, a, like):
        return a.reshape(like.shape)

    def stat(self, s):
        return np.ascontiguousarray(s).reshape(-1)

    def stats(self, x, eps):
        """(x_hat, invstd) as differentiable ops of x."""
        axes = self.axes(x)
        d = x - mean(x, axes, keepdims=True)
        invstd = 1 / sqrt(mean(d * d, axes, keepdims=True) + eps)
        return d * invstd, invstd


def _forward_tangent(lay, eps, x, gamma, tx, tgamma, tbeta):
    """t_y as deepcalc ops: gamma * t_xhat + x_hat * t_gamma + t_beta, with
    t_xhat = invstd * (tx - mean(tx) - x_hat * mean(x_hat * tx))."""
    axes, pshape = lay.axes(x), lay.param_shape(x)
    x_hat = out = None
    if tx is not None:
        x_hat, invstd = lay.stats(x, eps)
        tc = tx - mean(tx, axes, keepdims=True)
        out = invstd * (tc - x_hat * mean(x_hat * tc, axes, keepdims=True))
        if gamma is not None:
            out = out * reshape(gamma, pshape)
    if tgamma is not None:
        if x_hat is None:
            x_hat, _ = lay.stats(x, eps)
        term = x_hat * reshape(tgamma, pshape)
        out = term if out is None else out + term
    if tbeta is not None:
        term = reshape(tbeta, pshape)
        out = term if out is None else out + term
    if out is not None and out.shape != x.shape:  # only tbeta flowed: beta broadcast over x
        out = broadcast_to(out, x.shape)
    return out


def _backward_tangent(lay, eps, g, x, gamma, tg, tx, tgamma):
    """(t_dx[, t_dgamma, t_dbeta]) as deepcalc ops.  With h = dy * gamma, m1 = mean(h x_hat),
    r = mean(x_hat tx) (means over the statistic's axes): tangent of x_hat = invstd (tx -
    mean(tx) - x_hat r), of invstd = -invstd^2 r, so t_dx = -invstd r dx + invstd (th - mean(th)
    - t_xhat m1 - x_hat (mean(th x_hat) + mean(h t_xhat))) with th = t_dy gamma + dy t_gamma;
    t_dgamma = sum(t_dy x_hat + dy t_xhat), t_dbeta = sum(t_dy)."""
    axes, pshape = lay.axes(x), lay.param_shape(x)
    avg = lambda v: mean(v, axes, keepdims=True)  # noqa: E731
    x_hat, invstd = lay.stats(x, eps)
    gs = reshape(gamma, pshape) if gamma is not None else None
    h = g * gs if gs is not None else g
    th = None
    if tg is not None:
        th = tg * gs if gs is not None else tg
    if tgamma is not None:
        term = g * reshape(tgamma, pshape)
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
    tdx = _shaped_like(tdx, x)
    if gamma is None:
        return (tdx,)
    other = lay.param_axes(x)
    tdg = None
    for term in (tg * x_hat if tg is not None else None,
                 g * tx_hat if tx_hat is not None else None):
        if term is not None:
            tdg = term if tdg is None else tdg + term
    tdg = reshape(sum(tdg, other), gamma.shape) if tdg is not None else _shaped_like(None, gamma)
    tdb = reshape(sum(tg, other), gamma.shape) if tg is not None else _shaped_like(None, gamma)
    return tdx, tdg, tdb


def _shaped_like(t, like):
    """``t`` broadcast to ``like``'s shape, or zeros of that shape when ``t`` is None (no
    tangent flowed), so composite rules always return full-shaped Tensors."""
    if t is None:
        return wrap(np.zeros(like.shape, like.dtype))
    return t if t.shape == like.shape else broadcast_to(t, like.shape)


def _pack(base, tangents):
    """Primitive inputs: ``base`` then the tangents that are present, and which those are."""
    present = tuple(t is not None for t in tangents)
    return tuple(base) + tuple(t for t in tangents if t is not None), present


def _unpack(values, present):
    """(base, three tangents) from ``_pack``'s inputs (absent tangents as None)."""
    n_base = len(values) - builtins.sum(present)
    it = iter(values[n_base:])
    present = tuple(present) + (False,) * (3 - len(present))
    return values[:n_base], tuple(next(it) if p else None for p in present)


_BATCH = _Layout(batch=True)    # statistics per channel over N (and L)
_LAYER = _Layout(batch=False)   # statistics per row over the last axis


class _NormForward(Primitive):
    """(x[, gamma, beta]) -> (y, mean, invstd); only y is differentiable."""
    multiple_results = True
    differentiable_outputs = (0,)

    def batch(self, info, x, *params, eps):
        """Layer norm of a batched x with shared gamma and beta: the kernel on the whole batch
        (its rows are independent).  Other cases: ``decompose``."""
        if self.layout.batch or not info.batched[0] or any(info.batched[1:]):
            return NotImplemented
        return apply(self, (x,) + params, {"eps": eps})

    def decompose(self, x, *params, eps):
        """(y, mean, invstd) as deepcalc ops (statistics per slice under vmap)."""
        lay = self.layout
        x_hat, invstd = lay.stats(x, eps)
        axes = lay.axes(x)
        y = x_hat
        if params:
            shape = lay.param_shape(x)
            y = x_hat * reshape(params[0], shape) + reshape(params[1], shape)
        keep = [n for i, n in enumerate(x.shape) if i not in axes]
        return (y, reshape(mean(x, axes, keepdims=True), keep).detach(),
                reshape(invstd, keep).detach())

    def forward(self, x, *params, eps):
        gamma, beta = (_contiguous(p) for p in params) if params else (None, None)
        return self.layout.forward_kernel(np.ascontiguousarray(x), gamma, beta, eps)

    def vjp(self, ctx, gy, gmean, ginvstd):
        _, mu, invstd = ctx.out_data
        return apply(self.backward, (gy,) + tuple(ctx.inputs[:2]),
                     {"eps": ctx.params["eps"], "mean": mu, "invstd": invstd})

    def jvp(self, ctx, tx, *tparams):
        tangents = (tx,) + tparams
        if all(t is None for t in tangents):
            return None, None, None
        _, mu, invstd = (o.data for o in ctx.outs)
        inputs, present = _pack(ctx.inputs[:2], tangents)
        ty = apply(self.forward_jvp, inputs,
                   {"eps": ctx.params["eps"], "mean": mu, "invstd": invstd, "present": present})
        return ty, None, None


class _NormForwardJvp(Primitive):
    """(x[, gamma], present tangents of x, gamma, beta) -> t_y: the forward's tangent in one
    native pass (cpp/norm); its own rules are those of ``_forward_tangent``."""

    def decompose(self, *inputs, **params):  # under vmap: the composite, batched op by op
        return self.composite(params)(*inputs)

    def forward(self, *arrays, eps, mean, invstd, present):
        (x, *gamma), (tx, tgamma, tbeta) = _unpack(arrays, present)
        lay = self.layout
        return lay.from_kernel(_core.norm_forward_jvp(
            lay.to_kernel(x), lay.stat(mean), lay.stat(invstd), _contiguous(gamma[0]) if gamma
            else None, lay.to_kernel(tx), _contiguous(tgamma), _contiguous(tbeta), lay.batch), x)

    def composite(self, params):
        lay, eps, present = self.layout, params["eps"], params["present"]

        def fn(*inputs):
            (x, *gamma), tangents = _unpack(inputs, present)
            return _shaped_like(_forward_tangent(lay, eps, x, gamma[0] if gamma else None,
                                                   *tangents), x)
        return fn

    def vjp(self, ctx, c):
        return composite_vjp(self.composite(ctx.params), ctx, (c,))

    def jvp(self, ctx, *tangents):
        return composite_jvp(self.composite(ctx.params), ctx, tangents)[0]


class _NormBackward(Primitive):
    """(dy, x[, gamma]) -> (dx[, dgamma, dbeta]), mean and invstd of x as parameters."""
    multiple_results = True

    def decompose(self, dy, x, *gamma, eps, mean, invstd):
        """Under vmap: dx = invstd (h - mean(h) - x_hat mean(h x_hat)), h = dy gamma, and
        dgamma = sum(dy x_hat), dbeta = sum(dy) as deepcalc ops, x_hat from x (so every slice
        gets its own statistics and parameter gradients)."""
        lay = self.layout
        axes = lay.axes(x)
        x_hat, inv = lay.stats(x, eps)
        h = dy * reshape(gamma[0], lay.param_shape(x)) if gamma else dy
        avg = lambda v: _mean(v, axes, keepdims=True)  # noqa: E731
        dx = inv * (h - avg(h) - x_hat * avg(h * x_hat))
        if not gamma:
            return (dx,)
        other = lay.param_axes(x)
        return (dx, reshape(sum(dy * x_hat, other), gamma[0].shape),
                reshape(sum(dy, other), gamma[0].shape))

    def forward(self, dy, x, *gamma, eps, mean, invstd):
        dx, dgamma, dbeta = self.layout.backward_kernel(
            np.ascontiguousarray(dy), np.ascontiguousarray(x), mean, invstd,
            _contiguous(gamma[0]) if gamma else None)
        return (dx, dgamma, dbeta) if gamma else (dx,)

    def vjp(self, ctx, c_dx, *c_params):
        """The backward is the gradient of L = <dy, y(x, gamma, beta)>, linear in dy, so its VJP
        needs no new kernel: the dy part is the forward's tangent along the cotangents (J c),
        the (x, gamma) part the Hessian of L applied to them (H c, symmetric), which is the
        backward's own tangent with t_dy = 0."""
        g, x = ctx.inputs[:2]
        gamma = tuple(ctx.inputs[2:])
        stats = {"eps": ctx.params["eps"], "mean": ctx.params["mean"],
                 "invstd": ctx.params["invstd"]}
        c_g = c_x = c_gamma = None
        forward_t = (c_dx,) + c_params
        if g.requires_grad and any(t is not None for t in forward_t):
            inputs, present = _pack((x,) + gamma, forward_t)
            c_g = apply(self.forward_jvp, inputs, dict(stats, present=present))
        hessian_t = (None, c_dx) + c_params[:1]
        if (x.requires_grad or (gamma and gamma[0].requires_grad)) and \
                any(t is not None for t in hessian_t):
            inputs, present = _pack((g, x) + gamma, hessian_t)
            outs = apply(self.backward_jvp, inputs, dict(stats, present=present))
            c_x = outs[0]
            c_gamma = outs[1] if gamma else None
        return (c_g, c_x) + ((c_gamma,) if gamma else ())

    def jvp(self, ctx, tg, tx, *tgamma):
        tangents = (tg, tx) + tgamma
        if all(t is None for t in tangents):
            return (None,) * len(ctx.outs)
        inputs, present = _pack(ctx.inputs, tangents)
        return apply(self.backward_jvp, inputs, dict(ctx.params, present=present))


class _NormBackwardJvp(Primitive):
    """(dy, x[, gamma], present tangents of dy, x, gamma) -> (t_dx[, t_dgamma, t_dbeta]): the
    backward's tangent in one native kernel (cpp/norm); its own rules are those of
    ``_backward_tangent``."""
    multiple_results = True

    def decompose(self, *inputs, **params):  # under vmap: the composite, batched op by op
        return tuple(self.composite(params)(*inputs))

    def forward(self, *arrays, eps, mean, invstd, present):
        (g, x, *gamma), (tg, tx, tgamma) = _unpack(arrays, present)
        lay = self.layout
        tdx, tdg, tdb = _core.norm_backward_jvp(
            lay.to_kernel(g), lay.to_kernel(x), lay.stat(mean), lay.stat(invstd),
            _contiguous(gamma[0]) if gamma else None, lay.to_kernel(tg), lay.to_kernel(tx),
            _contiguous(tgamma), lay.batch)
        tdx = lay.from_kernel(tdx, x)
        return (tdx, tdg, tdb) if gamma else (tdx,)

    def composite(self, params):
        lay, eps, present = self.layout, params["eps"], params["present"]

        def fn(*inputs):
            (g, x, *gamma), tangents = _unpack(inputs, present)
            return _backward_tangent(lay, eps, g, x, gamma[0] if gamma else None, *tangents)
        return fn

    def vjp(self, ctx, *cotangents):
        return composite_vjp(self.composite(ctx.params), ctx, cotangents)

    def jvp(self, ctx, *tangents):
        return composite_jvp(self.composite(ctx.params), ctx, tangents)


class BatchNormTrain(_NormForward):
    """x is (N, C) or (N, C, L); statistics per channel over N (and L)."""
    name = "batch_norm"
    layout = _BATCH


class BatchNormBackward(_NormBackward):
    name = "batch_norm_backward"
    layout = _BATCH


class LayerNorm(_NormForward):
    """Normalizes over the last axis of any-shaped x; gamma/beta have shape (C,)."""
    name = "layer_norm"
    layout = _LAYER


class LayerNormBackward(_NormBackward):
    name = "layer_norm_backward"
    layout = _LAYER


class BatchNormEval(Primitive):
    """Eval-mode batch norm, (x[, gamma, beta]) -> y = gamma (x - running_mean) s + beta with
    s = 1 / sqrt(running_var + eps): one native pass (cpp/norm); the running statistics are
    constants (params), so every derivative is of an affine map in x (and bilinear in gamma)."""
    name = "batch_norm_eval"
    layout = _BATCH

    def batch(self, info, x, *params, running_mean, running_var, eps):
        """A batched x with shared gamma and beta: the slices' rows are more rows of one call
        (the statistics are constants).  Batched gamma or beta: ``decompose``."""
        if not info.batched[0] or any(info.batched[1:]):
            return NotImplemented
        shape = x.shape
        out = apply(self, (reshape(x, (-1,) + shape[2:]),) + params,
                    {"running_mean": running_mean, "running_var": running_var, "eps": eps})
        return reshape(out, shape)

    def decompose(self, x, *params, running_mean, running_var, eps):
        shape = self.layout.param_shape(x)
        s = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
        y = (x - wrap(np.asarray(running_mean).astype(x.dtype).reshape(shape))) * \
            wrap(s.astype(x.dtype).reshape(shape))
        if params:
            y = y * reshape(params[0], shape) + reshape(params[1], shape)
        return y

    def forward(self, x, *params, running_mean, running_var, eps):
        gamma, beta = (_contiguous(p) for p in params) if params else (None, None)
        return _core.batchnorm_forward_eval(np.ascontiguousarray(x), running_mean, running_var,
                                            gamma, beta, eps)

    def _affine(self, ctx):
        """(x_hat, s) as ops: x_hat = (x - running_mean) s, s per channel (a constant)."""
        x, p = ctx.inputs[0], ctx.params
        shape = self.layout.param_shape(x)
        s = 1.0 / np.sqrt(np.asarray(p["running_var"], np.float64) + p["eps"])
        s_t = wrap(s.astype(x.dtype).reshape(shape))
        mu = wrap(np.asarray(p["running_mean"]).astype(x.dtype).reshape(shape))
        return (x - mu) * s_t, s_t

    def vjp(self, ctx, g):
        x_hat, s = self._affine(ctx)
        x, gamma = ctx.inputs[0], ctx.inputs[1:2]
        shape = self.layout.param_shape(x)
        dx = g * (reshape(gamma[0], shape) * s) if gamma else g * s
        if not gamma:
            return (dx,)
        other = self.layout.param_axes(x)
        pshape = gamma[0].shape
        return dx, reshape(sum(g * x_hat, other), pshape), reshape(sum(g, other), pshape)

    def jvp(self, ctx, tx, *tparams):
        x_hat, s = self._affine(ctx)
        x, gamma = ctx.inputs[0], ctx.inputs[1:2]
        shape = self.layout.param_shape(x)
        out = None
        if tx is not None:
            out = tx * (reshape(gamma[0], shape) * s) if gamma else tx * s
        if tparams:
            tgamma, tbeta = tparams
            for term in (x_hat * reshape(tgamma, shape) if tgamma is not None else None,
                         reshape(tbeta, shape) if tbeta is not None else None):
                if term is not None:
                    out = term if out is None else out + term
        return _shaped_like(out, x) if out is not None else None


class BatchNormForwardJvp(_NormForwardJvp):
    name = "batch_norm_jvp"
    layout = _BATCH


class BatchNormBackwardJvp(_NormBackwardJvp):
    name = "batch_norm_backward_jvp"
    layout = _BATCH


class LayerNormForwardJvp(_NormForwardJvp):
    name = "layer_norm_jvp"
    layout = _LAYER


class LayerNormBackwardJvp(_NormBackwardJvp):
    name = "layer_norm_backward_jvp"
    layout = _LAYER


_batch_norm_train = BatchNormTrain()
_batch_norm_train.backward = BatchNormBackward()
_batch_norm_train.forward_jvp = BatchNormForwardJvp()
_batch_norm_train.backward.backward_jvp = BatchNormBackwardJvp()
_batch_norm_train.backward.forward_jvp = _batch_norm_train.forward_jvp
_layer_norm = LayerNorm()
_layer_norm.backward = LayerNormBackward()
_layer_norm.forward_jvp = LayerNormForwardJvp()
_layer_norm.backward.backward_jvp = LayerNormBackwardJvp()
_layer_norm.backward.forward_jvp = _layer_norm.forward_jvp


def batch_norm_train(x, weight, bias, eps):
    """Training-mode batch norm: Tensors (y, mean, invstd), the statistics per channel (not
    followed by autodiff)."""
    inputs = (x,) if weight is None else (x, weight, bias)
    return apply(_batch_norm_train, inputs, {"eps": float(eps)})


_batch_norm_eval = BatchNormEval()


def batch_norm_eval(x, running_mean, running_var, weight, bias, eps):
    """Eval-mode batch norm on the running statistics (arrays of x's dtype, not followed by
    autodiff)."""
    inputs = (x,) if weight is None else (x, weight, bias)
    return apply(_batch_norm_eval, inputs, {"running_mean": np.ascontiguousarray(running_mean),
                                            "running_var": np.ascontiguousarray(running_var),
                                            "eps": float(eps)})


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
