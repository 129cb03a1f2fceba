"""The fused linear layer y = act(x W^T + b): one GEMM with the bias and activation applied in
its epilogue (cpp/gemm), and a first-order backward that forms dz = dy * act'(z) and db in one
pass before the two GEMMs dx = dz W and dW = dz^T x.  Higher orders and forward mode use the
same equations as deepcalc ops.  x may have any leading shape (..., in_features)."""
from __future__ import annotations

import numpy as np

from .. import _core
from ..autodiff.graph import Primitive, apply, needs_graph, wrap
from .elementwise import (_relu_backward, _sigmoid_backward, _tanh_backward, Gelu, gelu, relu,
                          sigmoid, tanh)
from .linalg import matmul
from .reduce import sum
from .shape import broadcast_to, reshape, transpose

_ACT = {"none": None, "relu": relu, "tanh": tanh, "sigmoid": sigmoid, "gelu": gelu}
_dgelu = Gelu()._dgelu


def act_derivative_times(name, t, z_fn, y):
    """act'(z) * t as differentiable ops; y = act(z); z_fn() builds z when it is needed."""
    if t.shape != y.shape:  # e.g. a bias tangent (OUT,) against y (N, OUT)
        t = broadcast_to(t, y.shape)
    if name == "none":
        return t
    if name == "relu":
        return apply(_relu_backward, (t,), {"x": y.data})  # y > 0 exactly where z > 0
    if name == "tanh":
        return apply(_tanh_backward, (t, y))
    if name == "sigmoid":
        return apply(_sigmoid_backward, (t, y))
    return t * _dgelu(z_fn())


class LinearAct(Primitive):
    name = "linear"
    saves = True

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

    def vjp(self, ctx, g):
        x, w = ctx.inputs[0], ctx.inputs[1]
        act = ctx.params["activation"]
        has_b = len(ctx.inputs) == 3
        if not needs_graph(g, *ctx.inputs):
            saved = ctx.saved if act == "gelu" else (ctx.out_data.reshape(-1, w.shape[0])
                                                     if act != "none" else None)
            dx, dw, db = _core.linear_backward(
                np.ascontiguousarray(g.data.reshape(-1, w.shape[0])),
                np.ascontiguousarray(x.data.reshape(-1, w.shape[1])), np.ascontiguousarray(w.data),
                saved, act, x.requires_grad, w.requires_grad, has_b and ctx.inputs[2].requires_grad)
            return (wrap(dx.reshape(x.shape)) if dx is not None else None,
                    wrap(dw) if dw is not None else None) + \
                ((wrap(db) if db is not None else None,) if has_b else ())
        dz = act_derivative_times(act, g, lambda: self._z(ctx), ctx.out)
        dz2 = reshape(dz, (-1, w.shape[0]))
        dx = matmul(dz, w) if x.requires_grad else None
        dw = matmul(transpose(dz2), reshape(x, (-1, w.shape[1]))) if w.requires_grad else None
        db = sum(dz2, axis=0) if has_b and ctx.inputs[2].requires_grad else None
        return (dx, dw) + ((db,) if has_b else ())

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
        return act_derivative_times(ctx.params["activation"], tz, lambda: self._z(ctx), ctx.out)


_linear = LinearAct()


def linear_act(x, w, b, activation: str):
    """act(x @ w.T + b) as one fused primitive (shapes checked by the caller)."""
    return apply(_linear, (x, w) if b is None else (x, w, b), {"activation": activation})
