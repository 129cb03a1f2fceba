"""Linear algebra primitives: matmul (the native GEMM), inverse, and log|det|.

matmul follows NumPy: 1-D operands are promoted to matrices and the added axis removed after;
leading (batch) axes broadcast.  d(A B) = dA B + A dB, so the VJP is (G B^T, A^T G), each
summed back over broadcast batch axes."""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ..autodiff.batching import bdim_shape, constant
from ..autodiff.graph import TENSOR_TYPES, Primitive, Tensor, apply
from ._convert import as_tensor, binary_operands, check_float
from ._batching import unary_rule
from .shape import _reshape_to, reshape, sum_to, swapaxes, transpose


_DIRECT_K = 16  # cpp/gemm/gemm_direct_simd.h: B not transposed and k <= 16 runs unpacked
_COPY_BT_MIN_N = 64  # copy a transposed B of short k when it has at least this many columns


def _gemm_operand(x: np.ndarray, trans: bool):
    """(array, trans) in the layout the native GEMM takes: unit stride in the last axis.  A
    transposed view becomes its row-major base with the flag flipped; anything else is copied."""
    item = x.itemsize
    if x.strides[-1] == item and x.strides[-2] > 0:
        return x, trans
    if x.strides[-2] == item and x.strides[-1] > 0:
        return np.swapaxes(x, -1, -2), not trans
    return np.ascontiguousarray(x), trans


def gemm(a: np.ndarray, b: np.ndarray, trans_a: bool = False, trans_b: bool = False) -> np.ndarray:
    """op(a) @ op(b) on the native GEMM (cpp/gemm) for arrays with ndim >= 2 and broadcast
    batch axes, op(x) = x^T over the last two axes when flagged; transposes are passed to the
    kernel as flags, never materialized."""
    # Arguments go positionally: pybind11 parses keywords about 0.8 us slower per call.
    if a.ndim == 2 and b.ndim == 2 and a.size and b.size:  # the common case
        if not a.flags.c_contiguous:
            a, trans_a = (a.T, not trans_a) if a.flags.f_contiguous else \
                (np.ascontiguousarray(a), trans_a)
        if not b.flags.c_contiguous:
            b, trans_b = (b.T, not trans_b) if b.flags.f_contiguous else \
                (np.ascontiguousarray(b), trans_b)
        if trans_b and b.shape[1] <= _DIRECT_K and b.shape[0] >= _COPY_BT_MIN_N:
            # a short k with B transposed: copying B^T (k x n, small) lets the unpacked direct
            # path run, which beats packing B for the NT kernel ((128,10) @ (10,256): ~11 ->
            # ~8 us); for a narrow B the copy costs more than it saves
            b, trans_b = np.ascontiguousarray(b.T), False
        return _core.gemm(a, b, trans_a, trans_b)
    if a.size == 0 or b.size == 0:
        a = np.swapaxes(a, -1, -2) if trans_a else a
        return np.matmul(a, np.swapaxes(b, -1, -2) if trans_b else b)
    if a.ndim > 3 or b.ndim > 3:
        # fold the broadcast batch axes into one
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        a3 = np.broadcast_to(a, batch + a.shape[-2:]).reshape((-1,) + a.shape[-2:])
        b3 = np.broadcast_to(b, batch + b.shape[-2:]).reshape((-1,) + b.shape[-2:])
        out = gemm(a3, b3, trans_a, trans_b)
        return out.reshape(batch + out.shape[-2:])
    a, trans_a = _gemm_operand(a, trans_a)
    b, trans_b = _gemm_operand(b, trans_b)
    if trans_b and b.shape[-1] <= _DIRECT_K and b.shape[-2] >= _COPY_BT_MIN_N:  # as above
        b, trans_b = np.ascontiguousarray(np.swapaxes(b, -1, -2)), False
    return _core.gemm(a, b, trans_a, trans_b)


_FLAGS = {(ta, tb): {"trans_a": ta, "trans_b": tb} for ta in (False, True) for tb in (False, True)}


class MatMul(Primitive):
    """C = op_a(A) @ op_b(B) over the last two axes (batch axes broadcast), op(X) = X^T where
    the flag says so.  The rules use the flags too, so no transpose is ever materialized:
    dA = g op_b(B)^T, or op_b(B) g^T when A was transposed; dB = op_a(A)^T g, or g^T op_a(A)."""
    name = "matmul"
    array_rule = True

    def batch(self, info, a, b, trans_a=False, trans_b=False):
        """One GEMM for the whole batch where the shapes allow: the rows of every slice of a
        batched A against a shared B, or a shared A against the columns of every slice of B;
        otherwise NumPy-style broadcast batch axes, the slices' axes aligned."""
        ba, bb = info.batched
        flags = _FLAGS[trans_a, trans_b]
        if ba and not bb and b.ndim == 2 and not trans_a:
            out = apply(self, (_reshape_to(a, (math.prod(a.shape[:-1]), a.shape[-1])), b), flags)
            return _reshape_to(out, a.shape[:-1] + out.shape[-1:])
        if bb and not ba and a.ndim == 2 and b.ndim == 3:
            size, n = b.shape[0], b.shape[1 if trans_b else 2]
            b2 = transpose(b, (2, 0, 1) if trans_b else (1, 0, 2))  # (k, B, n)
            out = apply(self, (a, _reshape_to(b2, (b2.shape[0], size * n))), _FLAGS[trans_a, False])
            return transpose(_reshape_to(out, (out.shape[0], size, n)), (1, 0, 2))
        rank = max(info.ndim(a, 0), info.ndim(b, 1))
        if ba:
            a = _reshape_to(a, bdim_shape(a, rank))
        if bb:
            b = _reshape_to(b, bdim_shape(b, rank))
        return apply(self, (a, b), flags)

    def forward(self, a, b, trans_a=False, trans_b=False):
        return gemm(a, b, trans_a, trans_b)

    def vjp(self, ctx, g):
        a, b = ctx.primals
        ta, tb = ctx.params.get("trans_a", False), ctx.params.get("trans_b", False)
        ga = gb = None
        if ctx.needs_grad(0):
            ga = apply(self, (b, g), _FLAGS[tb, True]) if ta else \
                apply(self, (g, b), _FLAGS[False, not tb])
            ga = sum_to(ga, a.shape)
        if ctx.needs_grad(1):
            gb = apply(self, (g, a), _FLAGS[True, ta]) if tb else \
                apply(self, (a, g), _FLAGS[not ta, False])
            gb = sum_to(gb, b.shape)
        return ga, gb

    def jvp(self, ctx, ta, tb):
        a, b = ctx.inputs
        out = None
        if ta is not None:
            out = apply(self, (ta, b), ctx.params)
        if tb is not None:
            t = apply(self, (a, tb), ctx.params)
            out = t if out is None else out + t
        return out


_matmul = MatMul()


def matmul(a, b) -> Tensor:
    if type(a) in TENSOR_TYPES and type(b) in TENSOR_TYPES:
        da, db = a.data, b.data
        if (da.ndim == 2 and db.ndim == 2 and da.shape[1] == db.shape[0]
                and da.dtype is db.dtype and da.dtype.kind == "f"):
            return apply(_matmul, (a, b))
    a, b = binary_operands("matmul", a, b)
    check_float("matmul", a)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    squeeze_a, squeeze_b = a.ndim == 1, b.ndim == 1
    if squeeze_a:
        a = reshape(a, (1, a.shape[0]))
    if squeeze_b:
        b = reshape(b, (b.shape[0], 1))
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align: "
                         f"{a.shape[-1]} (last axis of the first) != {b.shape[-2]} "
                         "(second-to-last axis of the second)")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch axes of {a.shape} and {b.shape} cannot be broadcast") from None
    out = apply(_matmul, (a, b))
    if squeeze_a or squeeze_b:
        shape = out.shape[:-2] + ((out.shape[-2],) if not squeeze_a else ()) + \
            ((out.shape[-1],) if not squeeze_b else ())
        out = reshape(out, shape)
    return out


def _check_square(op, x: Tensor):
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ValueError(f"{op}: expected square matrices in the last two axes, got shape {x.shape}")


class Inv(Primitive):
    """Matrix inverse; d(A^-1) = -A^-1 dA A^-1."""
    name = "inv"
    batch = unary_rule  # NumPy inverts a stack of matrices

    def forward(self, a):
        try:
            return np.linalg.inv(a)
        except np.linalg.LinAlgError:
            raise np.linalg.LinAlgError(f"inv: a matrix of the {a.shape} input is singular") \
                from None

    def vjp(self, ctx, g):
        yt = swapaxes(ctx.out, -1, -2)
        return (-matmul(yt, matmul(g, yt)),)

    def jvp(self, ctx, t):
        y = ctx.out
        return -matmul(y, matmul(t, y))


class LogAbsDet(Primitive):
    """log|det A|; d log|det A| = tr(A^-1 dA), so the gradient is A^-T."""
    name = "logabsdet"
    batch = unary_rule

    def forward(self, a):
        return np.asarray(np.linalg.slogdet(a)[1], dtype=a.dtype)

    def vjp(self, ctx, g):
        a = ctx.inputs[0]
        ainv_t = swapaxes(inv(a), -1, -2)
        return (reshape(g, g.shape + (1, 1)) * ainv_t,)

    def jvp(self, ctx, t):
        from .reduce import sum
        a = ctx.inputs[0]
        return sum(swapaxes(inv(a), -1, -2) * t, axis=(-2, -1))


_inv = Inv()
_logabsdet = LogAbsDet()


def inv(a) -> Tensor:
    a = as_tensor(a, None, "inv")
    check_float("inv", a)
    _check_square("inv", a)
    return apply(_inv, (a,))


def slogdet(a):
    """(sign, log|det a|): sign is a constant Tensor, log|det| is differentiable."""
    a = as_tensor(a, None, "slogdet")
    check_float("slogdet", a)
    _check_square("slogdet", a)
    logdet = apply(_logabsdet, (a,))
    sign = constant(lambda v: np.linalg.slogdet(v)[0].astype(v.dtype), a)
    return sign, logdet
