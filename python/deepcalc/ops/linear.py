"""The fused linear layer y = act(x W^T + b): one GEMM with the bias and activation applied in
its epilogue (cpp/gemm), and a backward primitive that forms dz = dy * act'(z) and db in one pass
before the two GEMMs dx = dz W and dW = dz^T x.  The backward runs at every order (under
``create_graph``, ``hvp`` and ``jvp`` too); its own rules, the next order, are deepcalc ops:
with c_dx, c_dW, c_db the cotangents of (dx, dW, db) and s the activation's saved operand (y for
relu, tanh and sigmoid, z for gelu), a(s) = act'(z) and a'(s) its derivative in s,

    c_dz = c_dx W^T + x c_dW^T + c_db        c_dy = c_dz * a(s)        c_s = c_dz * dy * a'(s)
    c_x  = dz c_dW                           c_W  = dz^T c_dx

x may have any leading shape (..., in_features)."""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ..autodiff.graph import Primitive, apply, needs_graph, wrap
from .elementwise import _relu_backward, _sigmoid_backward, _tanh_backward, exp, Gelu
from .linalg import matmul
from .reduce import sum
from .shape import broadcast_to, reshape, transpose

_dgelu = Gelu()._dgelu
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def act_derivative_times(name, t, s):
    """act'(z) * t as differentiable ops, from the activation's saved operand s (y = act(z) for
    relu, tanh and sigmoid: y > 0 exactly where z > 0; z for gelu; None or y for none)."""
    if s is not None and t.shape != s.shape:  # e.g. a bias tangent (OUT,) against y (N, OUT)
        t = broadcast_to(t, s.shape)
    if name == "none":
        return t
    if name == "relu":
        return apply(_relu_backward, (t,), {"x": s.data})
    if name == "tanh":
        return apply(_tanh_backward, (t, s))
    if name == "sigmoid":
        return apply(_sigmoid_backward, (t, s))
    return t * _dgelu(s)


def act_second_derivative(name, s):
    """d act'(z) / d s as ops of the saved operand s, None where it is 0 (relu, none):
    tanh: a = 1 - y^2 -> -2y;  sigmoid: a = y (1 - y) -> 1 - 2y;  gelu: a = Phi(z) + z phi(z) ->
    phi(z) (2 - z^2)."""
    if name == "tanh":
        return -2 * s
    if name == "sigmoid":
        return 1 - 2 * s
    if name == "gelu":
        return exp(-0.5 * s * s) * _INV_SQRT_2PI * (2 - s * s)
    return None


def _activation(name, z):
    """act(z) as deepcalc ops."""
    from .elementwise import gelu, relu, sigmoid, tanh
    return {"none": lambda v: v, "relu": relu, "tanh": tanh, "sigmoid": sigmoid,
            "gelu": gelu}[name](z)


class LinearAct(Primitive):
    name = "linear"
    saves = True

    def batch(self, info, x, w, *b, activation):
        """Batched inputs against shared weights: one fused GEMM over the rows of every slice
        (the forward takes any leading shape).  Batched weights: ``decompose``."""
        if any(info.batched[1:]):
            return NotImplemented
        return apply(self, (x, w) + b, {"activation": activation})

    def decompose(self, x, w, *b, activation):
        z = matmul(x, transpose(w))
        return _activation(activation, z + b[0] if b else z)

    def forward(self, x, w, *b, activation):
        x2 = x if x.ndim == 2 and x.flags.c_contiguous else \
            np.ascontiguousarray(x.reshape(-1, x.shape[-1]))
        bias = (b[0] if b[0].flags.c_contiguous else np.ascontiguousarray(b[0])) if b else None
        y, z = _core.linear_forward(x2, w if w.flags.c_contiguous else np.ascontiguousarray(w),
                                    bias, activation, activation == "gelu")
        return (y if x.ndim == 2 else y.reshape(x.shape[:-1] + (w.shape[0],))), z

    def _z(self, ctx):
        x, w = ctx.inputs[0], ctx.inputs[1]
        z = matmul(x, transpose(w))
        return z + ctx.inputs[2] if len(ctx.inputs) == 3 else z

    def _saved_operand(self, ctx, g):
        """s for the backward: the output y, or z for gelu (the kernel's saved array when the
        backward is not differentiated further, else z rebuilt by ops so that second
        derivatives flow through it)."""
        act = ctx.params["activation"]
        if act == "none":
            return ()
        if act != "gelu":
            return (ctx.out,)
        return (self._z(ctx) if needs_graph(g, *ctx.inputs) else wrap(ctx.saved),)

    def vjp(self, ctx, g):
        x, w = ctx.inputs[0], ctx.inputs[1]
        b = ctx.inputs[2:]
        needs = (ctx.needs_grad(0), ctx.needs_grad(1), bool(b) and ctx.needs_grad(2))
        outs = iter(apply(_linear_backward, (g, x, w) + self._saved_operand(ctx, g),
                          {"activation": ctx.params["activation"], "needs": needs}))
        grads = tuple(next(outs) if need else None for need in needs)
        return grads if b else grads[:2]

    def jvp(self, ctx, tx, tw, *tb):
        x, w = ctx.inputs[0], ctx.inputs[1]
        tz = None
        if tx is not None:
            tz = matmul(tx, transpose(w))
        if tw is not None:
            term = matmul(x, transpose(tw))
            tz = term if tz is None else tz + term
        if tb and tb[0] is not None:
            tz = tb[0] if tz is None else tz + tb[0]
        act = ctx.params["activation"]
        return act_derivative_times(act, tz, self._z(ctx) if act == "gelu" else ctx.out)


def _as_rows(act, dy, x, w, s):
    """dy, x and s (None for none) as 2-D (rows, features) ops, and dz = dy * act'(s)."""
    out_f, in_f = w.shape
    dy2, x2 = reshape(dy, (-1, out_f)), reshape(x, (-1, in_f))
    s2 = reshape(s, (-1, out_f)) if s is not None else None
    return dy2, x2, s2, act_derivative_times(act, dy2, s2)


class LinearBackward(Primitive):
    """(dy, x, W[, s]) -> the gradients named by ``needs`` among (dx, dW, db)."""
    name = "linear_backward"
    multiple_results = True

    def decompose(self, dy, x, w, *s, activation, needs):
        """Under vmap: the backward as deepcalc ops (dz = dy * act'(s); dx = dz W, dW = dz^T x,
        db = sum(dz)), each batched by its own rule, so every slice gets its own dW and db
        (per-sample gradients: a product of a one-row dz and x is an outer product)."""
        _, x2, _, dz = _as_rows(activation, dy, x, w, s[0] if s else None)
        out = []
        if needs[0]:
            out.append(reshape(matmul(dz, w), x.shape))
        if needs[1]:
            out.append(matmul(transpose(dz), x2))
        if needs[2]:
            out.append(sum(dz, axis=0))
        return tuple(out)

    def forward(self, dy, x, w, *s, activation, needs):
        out_f, in_f = w.shape
        saved = np.ascontiguousarray(s[0].reshape(-1, out_f)) if s else None
        dx, dw, db = _core.linear_backward(
            np.ascontiguousarray(dy.reshape(-1, out_f)), np.ascontiguousarray(x.reshape(-1, in_f)),
            np.ascontiguousarray(w), saved, activation, *needs)
        if dx is not None:
            dx = dx.reshape(x.shape)
        return tuple(a for a, need in zip((dx, dw, db), needs) if need)

    def _parts(self, ctx):
        """(dy, x, W, s) with dy, x and s as 2-D (rows, features) ops, and dz = dy * a(s)."""
        dy, x, w = ctx.inputs[:3]
        act = ctx.params["activation"]
        s = ctx.inputs[3] if len(ctx.inputs) == 4 else None
        dy2, x2, s2, dz = _as_rows(act, dy, x, w, s)
        return act, dy2, x2, w, s2, dz

    def _by_output(self, ctx, values):
        """(v_dx, v_dW, v_db) from one value per present output (None for absent ones)."""
        it = iter(values)
        return tuple(next(it) if need else None for need in ctx.params["needs"])

    def vjp(self, ctx, *cotangents):
        act, dy2, x2, w, s2, dz = self._parts(ctx)
        c_dx, c_dw, c_db = self._by_output(ctx, cotangents)
        if c_dx is not None:
            c_dx = reshape(c_dx, (-1, w.shape[1]))
        c_dz = None
        for term in (matmul(c_dx, w.T) if c_dx is not None else None,
                     matmul(x2, c_dw.T) if c_dw is not None else None,
                     broadcast_to(c_db, dz.shape) if c_db is not None else None):
            if term is not None:
                c_dz = term if c_dz is None else c_dz + term
        dy, x, s = ctx.inputs[0], ctx.inputs[1], ctx.inputs[3:]
        c_dy = reshape(act_derivative_times(act, c_dz, s2), dy.shape) if dy.requires_grad else None
        c_x = reshape(matmul(dz, c_dw), x.shape) if c_dw is not None and x.requires_grad else None
        c_w = matmul(transpose(dz), c_dx) if c_dx is not None and w.requires_grad else None
        out = (c_dy, c_x, c_w)
        if s:
            d2 = act_second_derivative(act, s2)
            c_s = None if d2 is None or not s[0].requires_grad else \
                reshape(c_dz * dy2 * d2, s[0].shape)
            out += (c_s,)
        return out

    def jvp(self, ctx, t_dy, t_x, t_w, *t_s):
        act, dy2, x2, w, s2, dz = self._parts(ctx)
        out_f, in_f = w.shape
        t_dz = act_derivative_times(act, reshape(t_dy, (-1, out_f)), s2) \
            if t_dy is not None else None
        d2 = act_second_derivative(act, s2) if t_s and t_s[0] is not None else None
        if d2 is not None:
            term = dy2 * d2 * reshape(t_s[0], (-1, out_f))
            t_dz = term if t_dz is None else t_dz + term
        need_dx, need_dw, need_db = ctx.params["needs"]
        t_dx = t_dw = t_db = None
        if need_dx:
            t_dx = _add(matmul(t_dz, w) if t_dz is not None else None,
                        matmul(dz, t_w) if t_w is not None else None)
            t_dx = reshape(t_dx, ctx.inputs[1].shape) if t_dx is not None else None
        if need_dw:
            t_dw = _add(matmul(transpose(t_dz), x2) if t_dz is not None else None,
                        matmul(transpose(dz), reshape(t_x, (-1, in_f))) if t_x is not None
                        else None)
        if need_db and t_dz is not None:
            t_db = sum(t_dz, axis=0)
        return tuple(t for t, need in zip((t_dx, t_dw, t_db), ctx.params["needs"]) if need)


def _add(a, b):
    if a is None:
        return b
    return a if b is None else a + b


_linear = LinearAct()
_linear_backward = LinearBackward()


def linear_act(x, w, b, activation: str):
    """act(x @ w.T + b) as one fused primitive (shapes checked by the caller)."""
    return apply(_linear, (x, w) if b is None else (x, w, b), {"activation": activation})
