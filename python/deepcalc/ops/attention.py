"""Scaled dot-product attention on (B, H, L, D) tensors: fused native kernels (cpp/attention) at
every order, and the reference composite.

    S = scale * Q K^T (+ additive mask, or -inf where a boolean mask is False or causal hides)
    P = softmax(S) over the keys,   O = P V,   lse_i = log sum_j exp(S_ij)

A row whose scores are all -inf (every key masked) gives O = 0 and zero gradients, as torch 2.13
does on CPU (its math backend's "safe softmax" and its flash kernel agree).

Four primitives, each a fused kernel at O(L) memory:
* ``attention``: (q, k, v) -> (O, lse); lse is a constant of the graph (not differentiable);
* ``attention_backward``: (q, k, v, dO) -> (dq, dk, dv), recomputing P tile by tile from lse;
  the forward's VJP;
* ``attention_jvp``: (q, k, v, present tangents) -> tO, the forward's JVP, with
  tS = scale (tq K^T + q tK^T), tO = P (tS V + tV) - rowsum(P tS) O;
* ``attention_backward_jvp``: the backward's tangent (second order), the JVP of
  ``attention_backward`` and, by the symmetry of the Hessian, half of its VJP and of
  ``attention_jvp``'s, so ``create_graph``, ``hvp`` and ``hessian`` run fused kernels only.
The rules left (forward over forward, and the third order) are the equations as deepcalc ops
(``_backward_rows``, ``_tangent_rows``), run one block of query rows at a time
(``_QUERY_BLOCK``), so that memory stays O(block x Lk) per head, never O(Lq Lk).  O and lse
travel as parameters: the composites recompute them from q, k, v, so every derivative goes
through them.
"""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ..autodiff.composite import composite_jvp, composite_vjp
from ..autodiff.batching import constant, values
from ..autodiff.graph import BatchedData, Primitive, Tensor, apply, needs_graph, wrap
from ._convert import as_tensor, check_float
from .elementwise import where
from .linalg import matmul
from .reduce import sum
from .reduce import logsumexp
from .shape import broadcast_to, concatenate, getitem, materialize, reshape, swapaxes
from .softmax import softmax

_OP = "scaled_dot_product_attention"


def _check_operands(q, k, v):
    q, k, v = (as_tensor(t, None, _OP) for t in (q, k, v))
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_float(_OP, t)
        if t.ndim != 4:
            raise ValueError(f"{_OP}: {name} must be 4-D (B, H, L, D), got shape {t.shape}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{_OP}: q, k, v are {q.dtype}, {k.dtype}, {v.dtype}; expected one "
                        "dtype: deepcalc never mixes dtypes silently, convert with .astype()")
    (b, h, _, d), (bk, hk, lk, dk), (bv, hv, lv, _) = q.shape, k.shape, v.shape
    if (bk, hk) != (b, h) or (bv, hv) != (b, h):
        raise ValueError(f"{_OP}: q {q.shape}, k {k.shape} and v {v.shape} must share batch and "
                         "head axes (B, H)")
    if dk != d:
        raise ValueError(f"{_OP}: q has head dim {d} (shape {q.shape}) but k has {dk} "
                         f"(shape {k.shape}); expected equal")
    if lv != lk:
        raise ValueError(f"{_OP}: k has {lk} keys (shape {k.shape}) but v has {lv} "
                         f"(shape {v.shape}); expected equal")
    return q, k, v


def _check_mask(mask, q, k):
    """The mask as an array broadcastable to (B, H, Lq, Lk): bool (True = may attend) or q's
    float dtype (added to the scores); a float Tensor that requires grad stays a Tensor."""
    if mask is None:
        return None
    target = q.shape[:3] + (k.shape[2],)
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype.kind == "b":
        pass
    elif m.dtype.kind == "f":
        if m.dtype != q.dtype:
            raise TypeError(f"{_OP}: a float mask must have q's dtype ({q.dtype}), got "
                            f"{m.dtype}; deepcalc never mixes dtypes silently")
    else:
        raise TypeError(f"{_OP}: mask must be boolean (True = may attend) or a float additive "
                        f"mask, got dtype {m.dtype}")
    try:
        if np.broadcast_shapes(m.shape, target) != target:
            raise ValueError
    except ValueError:
        raise ValueError(f"{_OP}: mask of shape {m.shape} does not broadcast to (B, H, Lq, Lk) "
                         f"= {target}") from None
    if isinstance(mask, Tensor) and mask.requires_grad:
        return mask
    return m


def _check_scale(scale, d):
    if scale is None:
        return 1.0 / math.sqrt(d) if d else 1.0
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.floating, np.integer)):
        raise TypeError(f"{_OP}: scale must be a number or None, got {type(scale).__name__}")
    scale = float(scale)
    if not math.isfinite(scale):
        raise ValueError(f"{_OP}: scale must be finite, got {scale}")
    return scale


def causal_mask(lq: int, lk: int, row0: int = 0) -> np.ndarray:
    """(Lq, Lk) boolean, True where query row0 + i may see key j: j <= row0 + i (top-left
    aligned, torch's is_causal)."""
    return np.arange(lk)[None, :] <= np.arange(row0, row0 + lq)[:, None]


def _mask_rows(mask, i0: int, i1: int):
    """Query rows [i0, i1) of a mask broadcastable to (B, H, Lq, Lk) (a broadcast query axis
    stays as it is)."""
    if mask is None:
        return None
    m = mask.data if isinstance(mask, Tensor) else mask
    if m.ndim < 2 or m.shape[-2] == 1:
        return mask
    return mask[..., i0:i1, :]


def _scores(q, k, mask, causal, scale, row0=0):
    """S = scale q k^T with the mask and the causal rule applied (-inf where hidden)."""
    s = matmul(q, swapaxes(k, -1, -2)) * scale
    neg_inf = wrap(np.asarray(-np.inf, q.dtype))
    if mask is not None:
        m = mask.data if isinstance(mask, Tensor) else mask
        if m.dtype.kind == "b":
            s = where(m, s, neg_inf)
        else:
            s = s + (mask if isinstance(mask, Tensor) else wrap(m))
    if causal:
        s = where(causal_mask(q.shape[2], k.shape[2], row0), s, neg_inf)
    return s


def _attention_rows(q, k, v, mask, causal, scale, row0=0):
    """(O, P) for query rows row0 .. row0 + q.shape[2] as deepcalc ops, ``mask`` holding those
    rows.  Rows whose scores are all -inf get P = 0 (so O = 0), as torch's safe softmax."""
    s = _scores(q, k, mask, causal, scale, row0)
    dead = constant(lambda a: np.all(a == -np.inf, axis=-1, keepdims=True), s)
    if values(dead).any():
        zero = wrap(np.zeros((), q.dtype))
        p = where(dead, zero, softmax(where(dead, zero, s), axis=-1))
    else:
        p = softmax(s, axis=-1)
    return matmul(p, v), p


def attention_reference(q, k, v, mask=None, causal=False, scale=1.0):
    """(O, P): the composite of deepcalc ops, O(Lq Lk) memory; every argument checked already."""
    return _attention_rows(q, k, v, mask, causal, scale)


# --- the next order: composites over blocks of query rows -------------------------------------

_QUERY_BLOCK = 128  # query rows per block of the composites: P of a block is (B, H, 128, Lk)


def _backward_rows(q, k, v, g, mask, causal, scale, row0):
    """(dq rows, dk part, dv part) of query rows row0 .. as deepcalc ops: with O, P of the rows,
    dS = scale P (g V^T - rowsum(g O)), dq = dS K, dk = dS^T q, dv = P^T g."""
    o, p = _attention_rows(q, k, v, mask, causal, scale, row0)
    ds = p * (matmul(g, swapaxes(v, -1, -2)) - sum(g * o, -1, keepdims=True)) * scale
    return matmul(ds, k), matmul(swapaxes(ds, -1, -2), q), matmul(swapaxes(p, -1, -2), g)


def _tangent_rows(q, k, v, tq, tk, tv, mask, causal, scale, row0):
    """tO of query rows row0 .. as deepcalc ops: tP = P (tS - rowsum(P tS)),
    tO = tP V + P tV, tS = scale (tq K^T + q tK^T); None tangents are zero."""
    o, p = _attention_rows(q, k, v, mask, causal, scale, row0)
    ts = None
    if tq is not None:
        ts = matmul(tq, swapaxes(k, -1, -2))
    if tk is not None:
        term = matmul(q, swapaxes(tk, -1, -2))
        ts = term if ts is None else ts + term
    out = None
    if ts is not None:
        pts = p * (ts * scale)
        out = matmul(pts - p * sum(pts, -1, keepdims=True), v)
    if tv is not None:
        term = matmul(p, tv)
        out = term if out is None else out + term
    return out if out is not None else wrap(np.zeros(o.shape, o.dtype))


def _rows(x, i0, i1):
    """Query rows [i0, i1) of a (B, H, L, D) input of a composite: recorded (a getitem) when
    ops on x are recorded, else a plain slice; it requires grad when x does, so composite_vjp
    differentiates with respect to it."""
    if x is None:
        return None
    if needs_graph(x):
        t = getitem(x, (slice(None), slice(None), slice(i0, i1)))
    else:
        t = wrap(x.data[:, :, i0:i1])
    if x.requires_grad and not t.requires_grad:
        t.requires_grad = True
    return t


class _Inputs:
    """The ``ctx`` composite_vjp / composite_jvp read: the inputs of one block."""
    __slots__ = ("inputs",)

    def __init__(self, inputs):
        self.inputs = inputs


def _blockwise(rule, fn, inputs, row_in, row_out, extras, shapes, lq):
    """``rule`` (composite_vjp or composite_jvp) of ``fn`` one block of query rows at a time.
    ``row_in[i]`` says input i has a query axis (sliced per block), ``row_out[o]`` that output o
    has one (blocks concatenated) rather than being a sum over the rows (blocks added);
    ``extras`` are the cotangents (vjp: one per output) or tangents (jvp: one per input),
    sliced like what they pair with.  Returns one value per input (vjp) or output (jvp), whose
    full shapes are ``shapes``; None where nothing flowed."""
    vjp = rule is composite_vjp
    rows_of_result = row_in if vjp else row_out
    flags = row_out if vjp else row_in
    bounds = [(i0, min(lq, i0 + _QUERY_BLOCK)) for i0 in range(0, lq, _QUERY_BLOCK)]
    parts = [[] for _ in shapes]
    for i0, i1 in bounds:
        sub = [(_rows(x, i0, i1) if r else x) for x, r in zip(inputs, row_in)]
        ext = [(_rows(e, i0, i1) if f else e) for e, f in zip(extras, flags)]
        res = rule(lambda *xs, r0=i0: fn(*xs, row0=r0), _Inputs(sub), ext)
        for w in range(len(shapes)):
            parts[w].append(res[w])
    dtype = inputs[0].dtype
    out = []
    for w, (shape, row) in enumerate(zip(shapes, rows_of_result)):
        ps = parts[w]
        if all(p is None for p in ps):
            out.append(None)
        elif row:
            ps = [p if p is not None else
                  wrap(np.zeros(shape[:2] + (i1 - i0,) + shape[3:], dtype))
                  for p, (i0, i1) in zip(ps, bounds)]
            out.append(ps[0] if len(ps) == 1 else concatenate(ps, axis=2))
        else:
            total = None
            for p in ps:
                if p is not None:
                    total = p if total is None else total + p
            out.append(total)
    return tuple(out)


# --- the primitives ---------------------------------------------------------------------------

def _contig(a):
    return a if a is None or a.flags.c_contiguous else np.ascontiguousarray(a)


def _fold_batch(self, info, *xs, **params):
    """``batch`` of the attention primitives: the mapped axis folds into the batch axis B, so
    the kernel runs once over (N * B, H, L, D); O, lse and the mask (parameters) are folded the
    same way (broadcast first where a slice shares them).  Parameters batched by an enclosing
    vmap: ``decompose``."""
    if any(type(params.get(key)) is BatchedData for key in ("mask", "o", "lse")):
        return NotImplemented
    n = info.size
    b = next(x.shape[1] if f else x.shape[0] for x, f in zip(xs, info.batched))
    args = tuple(reshape(materialize(x, f, n), (n * b,) + x.shape[2 if f else 1:])
                 for x, f in zip(xs, info.batched))
    new = dict(params)
    for key in ("o", "lse"):
        if key in params:
            a = params[key]
            a = a if key in info.params else np.broadcast_to(a, (n,) + a.shape)
            new[key] = np.ascontiguousarray(a).reshape((n * b,) + a.shape[2:])
    m = params.get("mask")
    if m is not None:
        if "mask" in info.params:
            m = np.broadcast_to(m, (n, b) + m.shape[2:]).reshape((n * b,) + m.shape[2:])
        elif m.shape[0] != 1:
            m = np.broadcast_to(m, (n,) + m.shape).reshape((n * b,) + m.shape[1:])
        new["mask"] = np.ascontiguousarray(m)
    out = apply(self, args, new)
    if type(out) is tuple:
        return tuple(reshape(o, (n, b) + o.shape[1:]) for o in out)
    return reshape(out, (n, b) + out.shape[1:])


class Attention(Primitive):
    """(q, k, v) -> (O, lse) in one fused pass; only O is differentiable."""
    name = "attention"
    multiple_results = True
    differentiable_outputs = (0,)
    batch = _fold_batch

    def decompose(self, q, k, v, mask, causal, scale):
        """(O, lse) as deepcalc ops (the reference, O(Lq Lk) memory): under vmap when a
        parameter is batched by an enclosing vmap."""
        o, _ = _attention_rows(q, k, v, mask, causal, scale)
        return o, logsumexp(_scores(q, k, mask, causal, scale), axis=-1).detach()

    def forward(self, q, k, v, mask, causal, scale):
        return _core.attention_forward(_contig(q), _contig(k), _contig(v), mask, causal, scale)

    def vjp(self, ctx, g, g_lse):
        if g is None:
            return None, None, None
        o, lse = ctx.out_data
        return apply(_attention_backward, tuple(ctx.inputs) + (g,), dict(ctx.params, o=o, lse=lse))

    def jvp(self, ctx, tq, tk, tv):
        if tq is None and tk is None and tv is None:
            return None, None
        o, lse = (t.data for t in ctx.outs)
        present = (tq is not None, tk is not None, tv is not None)
        inputs = tuple(ctx.inputs) + tuple(t for t in (tq, tk, tv) if t is not None)
        return apply(_attention_jvp, inputs, dict(ctx.params, o=o, lse=lse, present=present)), None


def _composite_params(params):
    return params["mask"], params["causal"], params["scale"]


def _present(tangents):
    """(the tangents that are there, which those are)."""
    return tuple(t for t in tangents if t is not None), tuple(t is not None for t in tangents)


def _pick(values, present):
    """Tangents by position from the packed ones (absent as None)."""
    it = iter(values)
    return tuple(next(it) if p else None for p in present)


def _stats(params):
    return {key: params[key] for key in ("mask", "causal", "scale", "o", "lse")}


class AttentionBackward(Primitive):
    """(q, k, v, dO) -> (dq, dk, dv): the fused backward kernel, from the forward's O and lse
    (parameters).  It is J^T dO for the attention map f, the gradient of L = <dO, f(q, k, v)>,
    linear in dO, so its rules are fused kernels too: the dO part of its VJP is J c (the tangent
    kernel along the cotangents), the (q, k, v) part the Hessian of L applied to them (H c,
    symmetric), which is its own tangent with t_dO = 0 (the backward's tangent kernel)."""
    name = "attention_backward"
    multiple_results = True
    batch = _fold_batch

    def decompose(self, q, k, v, g, mask, causal, scale, o, lse):
        return _backward_rows(q, k, v, g, mask, causal, scale, 0)

    def forward(self, q, k, v, g, mask, causal, scale, o, lse):
        return _core.attention_backward(_contig(q), _contig(k), _contig(v), o, lse, _contig(g),
                                        mask, causal, scale)

    def vjp(self, ctx, cq, ck, cv):
        q, k, v, g = ctx.inputs
        stats = _stats(ctx.params)
        cs, present = _present((cq, ck, cv))
        if not cs:
            return None, None, None, None
        c_g = None
        if g.requires_grad:
            c_g = apply(_attention_jvp, (q, k, v) + cs, dict(stats, present=present))
        c_x = (None, None, None)
        if q.requires_grad or k.requires_grad or v.requires_grad:
            c_x = apply(_attention_backward_jvp, (q, k, v, g) + cs,
                        dict(stats, present=present + (False,)))
        return tuple(c_x) + (c_g,)

    def jvp(self, ctx, tq, tk, tv, tg):
        ts, present = _present((tq, tk, tv, tg))
        if not ts:
            return None, None, None
        return apply(_attention_backward_jvp, tuple(ctx.inputs) + ts,
                     dict(_stats(ctx.params), present=present))


class AttentionJvp(Primitive):
    """(q, k, v, present tangents of q, k, v) -> tO = J t: the fused tangent kernel, from the
    forward's O and lse (parameters).  Its VJP is fused too: J^T c (the backward kernel) for
    the tangents, and for (q, k, v) the Hessian of <c, f> applied to t (the backward's tangent
    kernel at dO = c); its JVP (forward over forward) is ``_tangent_rows`` over blocks of query
    rows."""
    name = "attention_jvp"
    batch = _fold_batch

    def decompose(self, *arrays, mask, causal, scale, o, lse, present):
        return self._fn(dict(mask=mask, causal=causal, scale=scale, present=present))(
            *arrays, row0=0)

    def forward(self, *arrays, mask, causal, scale, o, lse, present):
        tq, tk, tv = (_contig(t) if t is not None else None for t in _pick(arrays[3:], present))
        q, k, v = (_contig(a) for a in arrays[:3])
        return _core.attention_jvp(q, k, v, o, lse, tq, tk, tv, mask, causal, scale)

    def _fn(self, params):
        mask, causal, scale = _composite_params(params)
        present = params["present"]

        def fn(q, k, v, *ts, row0):
            tq, tk, tv = _pick(ts, present)
            return _tangent_rows(q, k, v, tq, tk, tv, _mask_rows(mask, row0, row0 + q.shape[2]),
                                 causal, scale, row0)
        return fn

    def _row_in(self, params):
        return (True, False, False) + tuple(r for r, p in zip((True, False, False),
                                                              params["present"]) if p)

    def vjp(self, ctx, c):
        q, k, v = ctx.inputs[:3]
        ts = tuple(ctx.inputs[3:])
        present = ctx.params["present"]
        stats = _stats(ctx.params)
        c_x = (None, None, None)
        if q.requires_grad or k.requires_grad or v.requires_grad:
            c_x = apply(_attention_backward_jvp, (q, k, v, c) + ts,
                        dict(stats, present=tuple(present) + (False,)))
        c_t = ()
        if any(t.requires_grad for t in ts):
            grads = apply(_attention_backward, (q, k, v, c), stats)
            c_t = tuple(gr for gr, p in zip(grads, present) if p)
        else:
            c_t = (None,) * len(ts)
        return tuple(c_x) + c_t

    def jvp(self, ctx, *tangents):
        q, v = ctx.inputs[0], ctx.inputs[2]
        shape = q.shape[:3] + v.shape[3:]
        return _blockwise(composite_jvp, self._fn(ctx.params), ctx.inputs,
                          self._row_in(ctx.params), (True,), tangents, [shape],
                          q.shape[2])[0]


class AttentionBackwardJvp(Primitive):
    """(q, k, v, dO, present tangents of q, k, v, dO) -> (tdq, tdk, tdv): the backward's tangent
    in one fused pass (after the tangent kernel's pass for tO and u), O(L) memory; its own rules
    (third order) are those of the tangent of ``_backward_rows`` over blocks of query rows."""
    name = "attention_backward_jvp"
    multiple_results = True
    batch = _fold_batch

    def decompose(self, *arrays, mask, causal, scale, o, lse, present):
        return tuple(self._fn(dict(mask=mask, causal=causal, scale=scale, present=present))(
            *arrays, row0=0))

    def forward(self, *arrays, mask, causal, scale, o, lse, present):
        q, k, v, g = (_contig(a) for a in arrays[:4])
        tq, tk, tv, tg = (_contig(t) if t is not None else None
                          for t in _pick(arrays[4:], present))
        if tq is None and tk is None and tv is None:
            t_o, u = np.zeros_like(o), np.zeros_like(lse)
        else:
            t_o, u = _core.attention_jvp(q, k, v, o, lse, tq, tk, tv, mask, causal, scale, True)
        return _core.attention_backward_jvp(q, k, v, o, lse, g, t_o, u, tq, tk, tv, tg, mask,
                                            causal, scale)

    def _fn(self, params):
        mask, causal, scale = _composite_params(params)
        present = params["present"]

        def fn(q, k, v, g, *ts, row0):
            rows_mask = _mask_rows(mask, row0, row0 + q.shape[2])
            out = composite_jvp(
                lambda *x: _backward_rows(*x, rows_mask, causal, scale, row0),
                _Inputs((q, k, v, g)), _pick(ts, present))
            return tuple(t if t is not None else wrap(np.zeros(x.shape, x.dtype))
                         for t, x in zip(out, (q, k, v)))
        return fn

    def _row_in(self, params):
        return (True, False, False, True) + tuple(
            r for r, p in zip((True, False, False, True), params["present"]) if p)

    def vjp(self, ctx, *cotangents):
        shapes = [x.shape for x in ctx.inputs]
        return _blockwise(composite_vjp, self._fn(ctx.params), ctx.inputs,
                          self._row_in(ctx.params), (True, False, False), cotangents, shapes,
                          ctx.inputs[0].shape[2])

    def jvp(self, ctx, *tangents):
        shapes = [x.shape for x in ctx.inputs[:3]]
        return _blockwise(composite_jvp, self._fn(ctx.params), ctx.inputs,
                          self._row_in(ctx.params), (True, False, False), tangents, shapes,
                          ctx.inputs[0].shape[2])


_attention = Attention()
_attention_backward = AttentionBackward()
_attention_jvp = AttentionJvp()
_attention_backward_jvp = AttentionBackwardJvp()


def _kernel_mask(mask, q, k):
    """A checked mask as the kernels take it: 4-D, axes of size 1 or full, Lk contiguous
    values in the last axis (a mask broadcast along the keys is expanded along them)."""
    if mask is None:
        return None
    m = mask.data if isinstance(mask, Tensor) else mask
    lk = k.shape[2]
    if type(m) is BatchedData:  # a mask per slice under vmap (key padding): shaped by ops
        t = reshape(wrap(m), (1,) * (4 - m.ndim) + m.shape)
        return broadcast_to(t, t.shape[:3] + (lk,)).data if t.shape[3] != lk else t.data
    m = m.reshape((1,) * (4 - m.ndim) + m.shape)
    if m.shape[3] != lk or (lk > 1 and m.strides[3] != m.itemsize):
        m = np.ascontiguousarray(np.broadcast_to(m, m.shape[:3] + (lk,)))
    return m


def attention(q, k, v, mask=None, causal=False, scale=1.0):
    """(O, lse) of the fused kernels for checked Tensors q, k, v and a checked constant mask."""
    return apply(_attention, (q, k, v), {"mask": _kernel_mask(mask, q, k),
                                         "causal": bool(causal), "scale": float(scale)})


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, scale=None,
                                 return_weights=False):
    """softmax(scale * q k^T + mask) v on q (B, H, Lq, D), k (B, H, Lk, D), v (B, H, Lk, Dv).

    ``mask`` is torch's ``attn_mask``: boolean (True where a query may attend) or a float mask
    added to the scores, broadcast to (B, H, Lq, Lk).  ``causal`` is torch's ``is_causal``:
    query i sees keys j <= i (top-left aligned, also when Lq != Lk); it combines with ``mask``.
    ``scale`` defaults to 1 / sqrt(D).  A query row with every key masked gives zeros and zero
    gradients (torch 2.13 on CPU does the same).  Differentiable in q, k, v at every order.

    Runs the fused kernels (O(L) memory, see the module docstring).  ``return_weights=True``
    also returns the attention table P (B, H, Lq, Lk) and, like a float mask that requires
    grad (then differentiated too), runs the reference composite (O(Lq Lk) memory)."""
    q, k, v = _check_operands(q, k, v)
    mask = _check_mask(mask, q, k)
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"{_OP}: causal must be a bool, got {type(causal).__name__}")
    scale = _check_scale(scale, q.shape[3])
    if return_weights or isinstance(mask, Tensor):  # weights, or a mask that requires grad
        out, p = attention_reference(q, k, v, mask, bool(causal), scale)
        return (out, p) if return_weights else out
    return attention(q, k, v, mask, bool(causal), scale)[0]
