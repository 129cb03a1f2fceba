"""The fused Jacobian penalty of an MLP (cpp/jacobian): for layers h_l = act_l(h_{l-1} W_l^T +
b_l) and projections v stacked as rows r = p*B + i (projection p of sample i), one native call
gives u = v^T J (u_r = d(v_r . f(x_i)) / dx_i), the penalty S = scale * sum_r ||u_r||^2 and its
gradient with respect to every weight and bias.

``JacobianPenalty`` is a primitive with inputs (x, v, W_1, [b_1,] ..., W_L, [b_L]) and output
S.  Its first-order VJP in the parameters is the kernel's gradient, computed in the same call
as S; its other rules (the gradient in x or v, any create_graph / hvp / jvp use) come from
``_penalty_composite``, the same S written with deepcalc ops (the projection chain
g_L = v, delta_l = g_l * act_l'(z_l), g_{l-1} = delta_l W_l, u = g_0), so every order works."""
from __future__ import annotations

import numpy as np

from .. import _core
from ..autodiff.composite import composite_jvp, composite_vjp
from ..autodiff.graph import STATE, Primitive, Tensor, apply, needs_graph, wrap
from ._convert import as_tensor
from .linalg import matmul
from .linear import act_derivative_times, linear_act
from .reduce import sum
from .shape import concatenate, transpose

ACTIVATIONS = ("none", "relu", "tanh", "sigmoid", "gelu")


def _contiguous(a):
    return a if a is None or a.flags.c_contiguous else np.ascontiguousarray(a)


def _split(flat, has_bias):
    """(weights, biases) from the flat parameter list W_1, [b_1,] ..., with None for no bias."""
    ws, bs, it = [], [], iter(flat)
    for hb in has_bias:
        ws.append(next(it))
        bs.append(next(it) if hb else None)
    return ws, bs


def _penalty_composite(params):
    """S(x, v, *flat) with deepcalc ops (differentiable to any order)."""
    acts, has_bias, n_proj, scale = (params[k] for k in ("activations", "has_bias", "n_proj",
                                                         "scale"))

    def penalty(x, v, *flat):
        ws, bs = _split(flat, has_bias)
        h, saved = x, []
        for w, b, act in zip(ws, bs, acts):
            y = linear_act(h, w, b, act)
            if act == "gelu":  # act' is taken at z; rebuilt by ops so second derivatives flow
                z = matmul(h, transpose(w))
                saved.append(z + b if b is not None else z)
            else:
                saved.append(y if act != "none" else None)
            h = y
        g = v
        for w, s, act in zip(reversed(ws), reversed(saved), reversed(acts)):
            s_rows = None if s is None else (s if n_proj == 1 else concatenate([s] * n_proj))
            g = matmul(act_derivative_times(act, g, s_rows), w)
        return sum(g * g) * scale
    return penalty


class JacobianPenalty(Primitive):
    """(x, v, W_1, [b_1,] ..., W_L, [b_L]) -> S = scale * sum_r ||(v^T J)_r||^2, one kernel call
    (with the parameter gradients when ``grads``)."""
    name = "jacobian_penalty"
    saves = True

    def forward(self, x, v, *flat, activations, has_bias, n_proj, scale, grads, forward=None):
        ws, bs = _split([_contiguous(a) for a in flat], has_bias)
        ys, zs = forward if forward is not None else (None, None)
        penalty, _, _, dws, dbs = _core.jacobian_penalty(
            _contiguous(x), _contiguous(v), ws, bs, list(activations), n_proj, scale, grads, ys, zs)
        return np.asarray(penalty, dtype=x.dtype), (dws, dbs)

    def vjp(self, ctx, g):
        dws, dbs = ctx.saved
        x, v = ctx.inputs[0], ctx.inputs[1]
        if dws is None or x.requires_grad or v.requires_grad or needs_graph(g, *ctx.inputs):
            return composite_vjp(_penalty_composite(ctx.params), ctx, (g,))
        one = g.data.item() == 1.0  # the usual cotangent of a penalty added to the loss
        grads = [None, None]
        for dw, db, hb in zip(dws, dbs, ctx.params["has_bias"]):
            grads.append(wrap(dw) if one else g * wrap(dw))
            if hb:
                grads.append(wrap(db) if one else g * wrap(db))
        return tuple(gr if t.requires_grad else None for gr, t in zip(grads, ctx.inputs))

    def jvp(self, ctx, *tangents):
        return composite_jvp(_penalty_composite(ctx.params), ctx, tangents)[0]

    def decompose(self, *inputs, **params):
        """Under vmap: the penalty as deepcalc ops (``_penalty_composite``), batched op by op."""
        return _penalty_composite(params)(*inputs)


_jacobian_penalty = JacobianPenalty()


def _check_chain(op, x, v, weights, biases, activations, n_proj):
    """Shapes, dtypes and names of an MLP chain; raises naming ``op`` and what was expected."""
    if not (len(weights) == len(biases) == len(activations)) or not weights:
        raise ValueError(f"{op}: need one weight, bias (or None) and activation per layer, got "
                         f"{len(weights)} weights, {len(biases)} biases, {len(activations)} "
                         "activations")
    if x.ndim != 2:
        raise ValueError(f"{op}: x must be (B, in_features), got shape {x.shape}")
    if isinstance(n_proj, bool) or not isinstance(n_proj, (int, np.integer)) or n_proj < 1:
        raise ValueError(f"{op}: n_proj must be an integer >= 1, got {n_proj!r}")
    width = x.shape[1]
    for i, (w, b, act) in enumerate(zip(weights, biases, activations)):
        if act not in ACTIVATIONS:
            raise ValueError(f"{op}: unknown activation {act!r} of layer {i}; expected one of "
                             f"{ACTIVATIONS}")
        if w.ndim != 2 or w.shape[1] != width:
            raise ValueError(f"{op}: weight {i} has shape {w.shape}, expected (out, {width}) "
                             "(the previous layer's width)")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"{op}: bias {i} has shape {b.shape}, expected ({w.shape[0]},)")
        for t in (w, b):
            if t is not None and t.dtype != x.dtype:
                raise TypeError(f"{op}: layer {i} is {t.dtype} but x is {x.dtype}; deepcalc "
                                "never mixes dtypes silently")
        width = w.shape[0]
    expected = (n_proj * x.shape[0], width)
    if v.shape != expected:
        raise ValueError(f"{op}: v has shape {v.shape}, expected (n_proj * B, C) = {expected} "
                         f"for x {x.shape} and n_proj {n_proj}")
    if v.dtype != x.dtype:
        raise TypeError(f"{op}: v is {v.dtype} but x is {x.dtype}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: x must be float32 or float64, got {x.dtype}")


def jacobian_penalty(x, v, weights, biases, activations, n_proj: int, scale: float,
                     forward=None):
    """S = scale * sum_r ||(v^T J)_r||^2 for the MLP (weights, biases, activations) at x
    (B, in), projections v (n_proj * B, C) with row p*B + i for sample i, as a differentiable
    scalar Tensor; the parameter gradient comes from the same kernel call.  ``forward`` =
    (outputs, preactivations), arrays of this MLP's forward at x (layer l's output (B, d_l); z
    for gelu layers, else None), lets the kernel skip its own forward."""
    op = "jacobian_penalty"
    x = as_tensor(x, op=op)
    v = v if isinstance(v, Tensor) else as_tensor(v, x, op)
    weights = [w if isinstance(w, Tensor) else as_tensor(w, x, op) for w in weights]
    biases = [b if b is None or isinstance(b, Tensor) else as_tensor(b, x, op) for b in biases]
    _check_chain(op, x, v, weights, biases, activations, n_proj)
    flat = [t for w, b in zip(weights, biases) for t in ((w,) if b is None else (w, b))]
    grads = STATE.grad_enabled and any(t.requires_grad for t in flat)
    params = {"activations": tuple(activations), "has_bias": tuple(b is not None for b in biases),
              "n_proj": int(n_proj), "scale": float(scale), "grads": grads}
    if forward is not None:
        params["forward"] = (list(forward[0]), list(forward[1]))
    return apply(_jacobian_penalty, (x, v, *flat), params)


def jacobian_projection(x, v, weights, biases, activations, n_proj: int):
    """(u, sq) as arrays, no autodiff: u = v^T J (n_proj * B, in) and sq_i = sum_p ||u_{p*B+i}||^2
    (B,) from the same kernel (Tensors or arrays in)."""
    data = lambda t: None if t is None else np.asarray(getattr(t, "data", t))
    x, v = data(x), data(v)
    weights, biases = [data(w) for w in weights], [data(b) for b in biases]
    _check_chain("jacobian_projection", x, v, weights, biases, activations, n_proj)
    _, sq, u, _, _ = _core.jacobian_penalty(_contiguous(x), _contiguous(v),
                                            [_contiguous(w) for w in weights],
                                            [_contiguous(b) for b in biases], list(activations),
                                            int(n_proj), 1.0, False)
    return u, sq
