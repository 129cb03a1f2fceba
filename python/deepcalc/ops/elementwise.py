"""Element-wise primitives (NumPy forward; broadcasting binary ops reduce their gradients back
to each input's shape with ``sum_to``).  Derivative factors that are piecewise constant
(relu's mask, abs's sign, clip's window) are constants; every other factor is built from
differentiable ops so that any-order derivatives are exact.

Most VJP rules are ``array_rule``s: one rule, run on Tensors when the backward records and on
plain arrays when it does not (a plain ``backward()``); tests/test_plain_vjp.py checks that the
two agree."""
from __future__ import annotations

import math

import numpy as np

from .. import _core
from ..autodiff.batching import constant
from ..autodiff.graph import TENSOR_TYPES, BatchedData, Primitive, Tensor, apply, wrap
from ._convert import (DEFAULT_DTYPE, as_tensor, binary_operands, broadcast_shapes, check_float,
                       contiguous, to_array)
from ._batching import binary_rule, same_shape_rule, unary_rule
from .shape import align, align_array, broadcast_to, materialize, materialize_array, sum_to


def _const(arr) -> Tensor:
    return wrap(arr)


def _add_tangents(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _out_tangent(ctx, t):
    """``t`` broadcast to the output's shape: a binary op's tangent from one operand has that
    operand's (broadcastable) shape."""
    shape = ctx.out.data.shape
    return t if t is None or t.data.shape == shape else broadcast_to(t, shape)


# --- binary arithmetic ----------------------------------------------------------------------

class Add(Primitive):
    name = "add"
    batch = binary_rule

    def forward(self, a, b):
        return np.add(a, b)

    array_rule = True

    def vjp(self, ctx, g):
        a, b = ctx.inputs  # only their shapes
        return (sum_to(g, a.data.shape) if ctx.needs_grad(0) else None,
                sum_to(g, b.data.shape) if ctx.needs_grad(1) else None)

    def jvp(self, ctx, ta, tb):
        return _out_tangent(ctx, _add_tangents(ta, tb))


class Sub(Primitive):
    name = "sub"
    batch = binary_rule

    def forward(self, a, b):
        return np.subtract(a, b)

    array_rule = True

    def vjp(self, ctx, g):
        a, b = ctx.inputs  # only their shapes
        return (sum_to(g, a.data.shape) if ctx.needs_grad(0) else None,
                sum_to(-g, b.data.shape) if ctx.needs_grad(1) else None)

    def jvp(self, ctx, ta, tb):
        return _out_tangent(ctx, _add_tangents(ta, -tb if tb is not None else None))


class Mul(Primitive):
    name = "mul"
    batch = binary_rule

    def forward(self, a, b):
        return np.multiply(a, b)

    array_rule = True

    def vjp(self, ctx, g):
        a, b = ctx.primals
        return (sum_to(g * b, a.shape) if ctx.needs_grad(0) else None,
                sum_to(g * a, b.shape) if ctx.needs_grad(1) else None)

    def jvp(self, ctx, ta, tb):
        a, b = ctx.inputs
        return _out_tangent(ctx, _add_tangents(ta * b if ta is not None else None,
                                               a * tb if tb is not None else None))


class Div(Primitive):
    name = "div"
    batch = binary_rule

    def forward(self, a, b):
        if a.dtype.kind != "f":  # true division of integers gives the default float (torch)
            a, b = a.astype(DEFAULT_DTYPE), b.astype(DEFAULT_DTYPE)
        return np.divide(a, b)

    array_rule = True

    def vjp(self, ctx, g):
        a, b = ctx.primals
        ga = g / b
        return (sum_to(ga, a.shape) if ctx.needs_grad(0) else None,
                sum_to(-ga * ctx.result, b.shape) if ctx.needs_grad(1) else None)

    def jvp(self, ctx, ta, tb):
        b = ctx.inputs[1]
        num = _add_tangents(ta, -(ctx.out * tb) if tb is not None else None)
        return _out_tangent(ctx, num / b)


def _positive(a: Tensor) -> Tensor:
    """The constant mask a > 0 (batched where ``a`` is)."""
    return constant(lambda v: v > 0, a)


class Pow(Primitive):
    """a ** b for tensor exponents; d/db = a**b log a (defined for a > 0)."""
    name = "pow"
    batch = binary_rule

    def forward(self, a, b):
        return np.power(a, b)

    def vjp(self, ctx, g):
        a, b = ctx.inputs
        ga = sum_to(g * b * a ** (b - 1), a.shape)
        gb = sum_to(g * ctx.out * log(where(_positive(a), a, 1.0)), b.shape) \
            if b.requires_grad else None
        return ga, gb

    def jvp(self, ctx, ta, tb):
        a, b = ctx.inputs
        da = ta * b * a ** (b - 1) if ta is not None else None
        db = tb * ctx.out * log(where(_positive(a), a, 1.0)) if tb is not None else None
        return _out_tangent(ctx, _add_tangents(da, db))


class PowScalar(Primitive):
    """x ** p for a Python number p."""
    name = "pow_scalar"
    batch = unary_rule

    def forward(self, x, p):
        return np.power(x, p)

    def vjp(self, ctx, g):
        p = ctx.params["p"]
        if p == 0:  # x**0 is constant; p x**(p-1) would give 0 * inf = nan at x = 0
            return (_const(np.zeros(g.shape, g.dtype)),)
        x = ctx.inputs[0]
        return (g * p * x ** (p - 1) if p != 1 else g,)

    def jvp(self, ctx, t):
        p = ctx.params["p"]
        if p == 0:
            return _const(np.zeros(t.shape, t.dtype))
        return t * p * ctx.inputs[0] ** (p - 1) if p != 1 else t


def _binary(prim, opname):
    def op(a, b):
        # fast path: two tensors of one dtype and shape (the common case inside models)
        if type(a) in TENSOR_TYPES and type(b) in TENSOR_TYPES:
            da, db = a.data, b.data
            if da.shape == db.shape and da.dtype is db.dtype:
                return apply(prim, (a, b))
        a, b = binary_operands(opname, a, b)
        if a.shape != b.shape:
            broadcast_shapes(opname, a.shape, b.shape)
        return apply(prim, (a, b))
    op.__name__ = opname
    return op


add = _binary(Add(), "add")
sub = _binary(Sub(), "sub")
mul = _binary(Mul(), "mul")
div = _binary(Div(), "div")
_pow = _binary(Pow(), "pow")
_pow_scalar = PowScalar()


def pow(a, b):
    """a ** b; a Python-number exponent uses the cheaper scalar-exponent primitive."""
    if isinstance(a, Tensor) and isinstance(b, (int, float)) and not isinstance(b, bool):
        if b == 1:
            return a
        if type(b) is float and a.data.dtype.kind != "f":  # int ** 2.5 is float32, as torch
            a = wrap(a.data.astype(DEFAULT_DTYPE))
        return apply(_pow_scalar, (a,), {"p": b})
    return _pow(a, b)


# --- unary ----------------------------------------------------------------------------------

class Neg(Primitive):
    name = "neg"
    batch = unary_rule

    def forward(self, x):
        return np.negative(x)

    array_rule = True

    def vjp(self, ctx, g):
        return (-g,)

    def jvp(self, ctx, t):
        return -t


class Exp(Primitive):
    name = "exp"
    batch = unary_rule

    def forward(self, x):
        return np.exp(x)

    array_rule = True

    def vjp(self, ctx, g):
        return (g * ctx.result,)

    def jvp(self, ctx, t):
        return t * ctx.out


class Log(Primitive):
    name = "log"
    batch = unary_rule

    def forward(self, x):
        return np.log(x)

    array_rule = True

    def vjp(self, ctx, g):
        return (g / ctx.primals[0],)

    def jvp(self, ctx, t):
        return t / ctx.inputs[0]


class Sqrt(Primitive):
    name = "sqrt"
    batch = unary_rule

    def forward(self, x):
        return np.sqrt(x)

    array_rule = True

    def vjp(self, ctx, g):
        return (g / (2 * ctx.result),)

    def jvp(self, ctx, t):
        return t / (2 * ctx.out)


class Abs(Primitive):
    name = "abs"
    batch = unary_rule

    def forward(self, x):
        return np.abs(x)

    def vjp(self, ctx, g):
        return (g * constant(np.sign, ctx.inputs[0]),)

    def jvp(self, ctx, t):
        return t * constant(np.sign, ctx.inputs[0])


class Tanh(Primitive):
    name = "tanh"
    batch = unary_rule

    def forward(self, x):
        return np.tanh(x)

    array_rule = True

    def vjp(self, ctx, g):
        return (apply(_tanh_backward, (g, ctx.result)),)

    def jvp(self, ctx, t):
        return apply(_tanh_backward, (t, ctx.out))


class TanhBackward(Primitive):
    """g * (1 - y^2) with y = tanh(x): tanh's derivative as one primitive (one pass in backward);
    its own rules: d/dg = 1 - y^2, d/dy = -2 g y."""
    name = "tanh_backward"
    batch = same_shape_rule

    def forward(self, g, y):
        return _core.activation_backward(contiguous(g), contiguous(y), "tanh")

    def vjp(self, ctx, gg):
        g, y = ctx.inputs
        return (apply(self, (gg, y)) if g.requires_grad else None,
                -2 * gg * g * y if y.requires_grad else None)

    def jvp(self, ctx, tg, ty):
        g, y = ctx.inputs
        return _add_tangents(apply(self, (tg, y)) if tg is not None else None,
                             -2 * g * y * ty if ty is not None else None)


class Sigmoid(Primitive):
    name = "sigmoid"
    batch = unary_rule

    def forward(self, x):
        # exp of a non-positive number only: no overflow for large |x|
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    array_rule = True

    def vjp(self, ctx, g):
        return (apply(_sigmoid_backward, (g, ctx.result)),)

    def jvp(self, ctx, t):
        return apply(_sigmoid_backward, (t, ctx.out))


class SigmoidBackward(Primitive):
    """g * y (1 - y) with y = sigmoid(x); d/dg = y (1 - y), d/dy = g (1 - 2y)."""
    name = "sigmoid_backward"
    batch = same_shape_rule

    def forward(self, g, y):
        return _core.activation_backward(contiguous(g), contiguous(y),
                                         "sigmoid")

    def vjp(self, ctx, gg):
        g, y = ctx.inputs
        return (apply(self, (gg, y)) if g.requires_grad else None,
                gg * g * (1 - 2 * y) if y.requires_grad else None)

    def jvp(self, ctx, tg, ty):
        g, y = ctx.inputs
        return _add_tangents(apply(self, (tg, y)) if tg is not None else None,
                             g * (1 - 2 * y) * ty if ty is not None else None)


class Relu(Primitive):
    name = "relu"
    batch = unary_rule

    def forward(self, x):
        return np.maximum(x, 0)

    array_rule = True

    def vjp(self, ctx, g):
        return (apply(_relu_backward, (g,), {"x": ctx.inputs[0].data}),)

    def jvp(self, ctx, t):
        return apply(_relu_backward, (t,), {"x": ctx.inputs[0].data})


class ReluBackward(Primitive):
    """g where x > 0, else 0.  Linear in g with a constant mask, so it is its own VJP and JVP."""
    name = "relu_backward"

    def batch(self, info, g, x):
        """g and the mask operand x, each with the mapped axis first."""
        return apply(self, (materialize(g, info.batched[0], info.size),),
                     {"x": materialize_array(x, "x" in info.params, info.size)})

    def forward(self, g, x):
        # the kernel passes g where its second argument is > 0 (relu's x or y, the same mask)
        return _core.activation_backward(contiguous(g), contiguous(x), "relu")

    def vjp(self, ctx, gg):
        return (apply(self, (gg,), ctx.params),)

    def jvp(self, ctx, tg):
        return apply(self, (tg,), ctx.params)


def _erf_array(x):
    return _core.erf(contiguous(x))


class Erf(Primitive):
    name = "erf"
    batch = unary_rule

    def forward(self, x):
        return _erf_array(x)

    def vjp(self, ctx, g):
        x = ctx.inputs[0]
        return (g * (2 / math.sqrt(math.pi)) * exp(-x * x),)

    def jvp(self, ctx, t):
        x = ctx.inputs[0]
        return t * (2 / math.sqrt(math.pi)) * exp(-x * x)


_INV_SQRT2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


class Gelu(Primitive):
    """GELU(x) = x Phi(x) (exact, erf form); d/dx = Phi(x) + x phi(x)."""
    name = "gelu"
    batch = unary_rule

    def forward(self, x):
        return x * (0.5 * (1 + _erf_array(x * x.dtype.type(_INV_SQRT2))))

    def _dgelu(self, x):
        phi_cdf = 0.5 * (1 + erf(x * _INV_SQRT2))
        return phi_cdf + x * exp(-0.5 * x * x) * _INV_SQRT_2PI

    def vjp(self, ctx, g):
        return (g * self._dgelu(ctx.inputs[0]),)

    def jvp(self, ctx, t):
        return t * self._dgelu(ctx.inputs[0])


class Clip(Primitive):
    """clip(x, lo, hi); the gradient passes where lo <= x <= hi (as torch.clamp)."""
    name = "clip"
    batch = unary_rule

    def forward(self, x, lo, hi):
        return np.clip(x, lo, hi)

    def _mask(self, ctx, dtype):
        lo, hi = ctx.params["lo"], ctx.params["hi"]

        def mask(x):
            m = np.ones(x.shape, dtype=bool)
            if lo is not None:
                m &= x >= lo
            if hi is not None:
                m &= x <= hi
            return m.astype(dtype)
        return constant(mask, ctx.inputs[0])

    def vjp(self, ctx, g):
        return (g * self._mask(ctx, g.dtype),)

    def jvp(self, ctx, t):
        return t * self._mask(ctx, t.dtype)


class Where(Primitive):
    """where(cond, a, b) with a constant boolean ``cond``."""
    name = "where"

    def batch(self, info, a, b, cond):
        c_b = "cond" in info.params
        rank = max(info.ndim(a, 0), info.ndim(b, 1), cond.ndim - 1 if c_b else cond.ndim)
        a, b = align(info, (a, b), rank)
        return apply(self, (a, b), {"cond": align_array(cond, c_b, rank)})

    def forward(self, a, b, cond):
        return np.where(cond, a, b)

    def vjp(self, ctx, g):
        a, b = ctx.inputs
        cond = ctx.params["cond"]
        zero = _const(np.zeros((), g.dtype))
        ga = sum_to(where(cond, g, zero), a.shape) if a.requires_grad else None
        gb = sum_to(where(cond, zero, g), b.shape) if b.requires_grad else None
        return ga, gb

    def jvp(self, ctx, ta, tb):
        a, b = ctx.inputs
        ta = ta if ta is not None else _const(np.zeros(a.shape, a.dtype))
        tb = tb if tb is not None else _const(np.zeros(b.shape, b.dtype))
        return where(ctx.params["cond"], ta, tb)


def _unary(prim, opname, float_only=True):
    def op(x):
        if type(x) not in TENSOR_TYPES:
            x = as_tensor(x, None, opname)
        if float_only:
            check_float(opname, x)
        return apply(prim, (x,))
    op.__name__ = opname
    return op


_tanh_backward = TanhBackward()
_sigmoid_backward = SigmoidBackward()
_relu_backward = ReluBackward()
neg = _unary(Neg(), "neg", float_only=False)
exp = _unary(Exp(), "exp")
log = _unary(Log(), "log")
sqrt = _unary(Sqrt(), "sqrt")
abs = _unary(Abs(), "abs", float_only=False)
tanh = _unary(Tanh(), "tanh")
sigmoid = _unary(Sigmoid(), "sigmoid")
relu = _unary(Relu(), "relu")
erf = _unary(Erf(), "erf")
_gelu_exact = _unary(Gelu(), "gelu")
_clip = Clip()
_where = Where()


def gelu(x, approximate: str = "none"):
    """GELU; ``approximate='tanh'`` gives 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate == "none":
        return _gelu_exact(x)
    if approximate == "tanh":
        x = as_tensor(x, None, "gelu")
        check_float("gelu", x)
        return 0.5 * x * (1 + tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def clip(x, min=None, max=None):
    """Clamp to [min, max] (either may be None); like ``np.clip`` / ``torch.clamp``."""
    x = as_tensor(x, None, "clip")
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    lo, hi = _clip_bound("min", min), _clip_bound("max", max)
    if x.data.dtype.kind != "f":
        if all(v is None or isinstance(v, (int, np.integer)) for v in (min, max)):
            return wrap(np.clip(x.data, min, max))  # integer bounds keep an integer tensor
        x = wrap(x.data.astype(DEFAULT_DTYPE))
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"clip: min {lo} is greater than max {hi}")
    return apply(_clip, (x,), {"lo": lo, "hi": hi})


def _clip_bound(name, v):
    if v is None:
        return None
    if isinstance(v, Tensor) and v.ndim == 0:
        v = v.item()
    if not isinstance(v, (int, float, np.integer, np.floating)) or isinstance(v, bool):
        shape = f" of shape {v.shape}" if isinstance(v, Tensor) else ""
        raise TypeError(f"clip: {name} must be a number, got {type(v).__name__}{shape}")
    return float(v)


def where(cond, a, b):
    """Pick ``a`` where ``cond`` holds, else ``b`` (broadcasting); ``cond`` is not differentiated."""
    cond = cond.data if isinstance(cond, Tensor) else cond
    if type(cond) is BatchedData:  # a batched mask under vmap: the rule takes its values
        if cond.dtype != bool:
            cond = constant(lambda c: c.astype(bool), wrap(cond)).data
    else:
        cond = (cond if isinstance(cond, np.ndarray) else to_array("where", cond)).astype(
            bool, copy=False)
    a, b = binary_operands("where", a, b)
    broadcast_shapes("where", cond.shape, a.shape, b.shape)
    return apply(_where, (a, b), {"cond": cond})


def sign(x) -> Tensor:
    """Sign of each element (no gradient: a piecewise-constant function)."""
    return constant(np.sign, as_tensor(x, None, "sign"))


# --- comparisons (results are bool tensors and carry no gradient) ---------------------------

def _compare(fn, opname):
    def op(a, b):
        a, b = binary_operands(opname, a, b)
        return constant(fn, a, b)
    op.__name__ = opname
    return op


equal = _compare(np.equal, "equal")
not_equal = _compare(np.not_equal, "not_equal")
less = _compare(np.less, "less")
less_equal = _compare(np.less_equal, "less_equal")
greater = _compare(np.greater, "greater")
greater_equal = _compare(np.greater_equal, "greater_equal")


class MaximumMinimum(Primitive):
    """Element-wise maximum / minimum, NaN from either side (as np.maximum and torch).  The
    gradient follows torch: all of it to the winner, half to each input at a tie, and all of it
    to both inputs where a NaN makes neither win (their weights are piecewise constant)."""

    def __init__(self, name, fn, loses):
        self.name, self.fn, self.loses = name, fn, loses  # loses(a, b): a does not win

    batch = binary_rule

    def forward(self, a, b):
        return self.fn(a, b)

    def _weight(self, x, other, dtype):
        def weight(x, other):
            return (1 - 0.5 * (x == other).astype(dtype)) * ~self.loses(x, other)
        return constant(weight, x, other)

    def vjp(self, ctx, g):
        a, b = ctx.inputs
        return (sum_to(g * self._weight(a, b, g.dtype), a.shape)
                if a.requires_grad else None,
                sum_to(g * self._weight(b, a, g.dtype), b.shape)
                if b.requires_grad else None)

    def jvp(self, ctx, ta, tb):
        a, b = ctx.inputs
        return _add_tangents(ta * self._weight(a, b, ta.dtype) if ta is not None else None,
                             tb * self._weight(b, a, tb.dtype) if tb is not None else None)


maximum = _binary(MaximumMinimum("maximum", np.maximum, np.less), "maximum")
minimum = _binary(MaximumMinimum("minimum", np.minimum, np.greater), "minimum")
