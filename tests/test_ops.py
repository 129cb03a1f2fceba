"""Every op, one table row each: forward against a float64 NumPy reference (float32 and float64),
gradcheck and gradgradcheck in float64, JVP/VJP consistency, non-contiguous inputs.  Then the
ops with extra contracts: comparisons, astype, softmax tails and each native CPU path."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import deepcalc as dc
from deepcalc.nn import functional as F
from deepcalc.ops.rnn import rnn_sequence
from deepcalc.testing import gradcheck, gradgradcheck

from conftest import assert_jvp_vjp_consistent, cpu_path_env, make_array, noncontiguous
from test_attention_kernels import np_attention
from test_regularize_kernel import OPS_ROWS as JACOBIAN_PENALTY_ROWS

_erf = np.vectorize(math.erf, otypes=[np.float64])

MASK = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, False]])
IDX = np.array([0, 2, 0, 0, 1])            # repeated indices: gradients must accumulate
EMB_IDX = np.array([[0, 2, 2], [4, 0, 1]])   # embedding rows: 0 and 2 repeated, 3 unused
COND = np.array([[True, False, True], [False, False, True]])


def _np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _np_logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axis) if axis is not None else out.reshape(())
    return out


def _np_gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


_NP_ACT = {"none": lambda z: z, "relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
           "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
           "gelu": lambda z: z * 0.5 * (1 + _erf(z / math.sqrt(2)))}


_RM, _RV = np.array([0.3, -1.0, 2.0]), np.array([0.5, 2.0, 1.5])   # running statistics


def _running(x):
    """Eval-mode BatchNorm's running mean and variance as tensors of x's dtype."""
    return dc.tensor(_RM.astype(x.dtype)), dc.tensor(_RV.astype(x.dtype))


def _np_norm(x, axes, eps=1e-5):
    mu = x.mean(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True) + eps)


def _clip_input(rng, shape):
    """Values in +-[0.05, 1.5] that stay at least 0.05 away from the clip bounds +-0.25."""
    a = rng.uniform(0.05, 1.5, shape)
    a = np.where((a > 0.2) & (a < 0.3), a + 0.15, a)
    return a * rng.choice([-1.0, 1.0], shape)


def _rnn_ref(nonlinearity):
    """h_t = act(p_t + h_{t-1} W^T) over the leading (time) axis, stacked."""
    act = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "identity": lambda z: z}[nonlinearity]

    def ref(p, h0, w):
        h, out = h0, []
        for t in range(p.shape[0]):
            h = act(p[t] + h @ w.T)
            out.append(h)
        return np.stack(out)
    return ref


# (id, deepcalc function, float64 NumPy reference, input specs [(shape, kind)])
OPS = [
    # arithmetic and broadcasting (gradients are summed back to each input's shape)
    ("add", lambda a, b: a + b, np.add, [((2, 3), "n"), ((2, 3), "n")]),
    ("add_bcast_row", lambda a, b: a + b, np.add, [((2, 3), "n"), ((3,), "n")]),
    ("add_bcast_both", lambda a, b: a + b, np.add, [((2, 1), "n"), ((1, 3), "n")]),
    ("add_bcast_rank", lambda a, b: dc.add(a, b), np.add, [((4,), "n"), ((2, 3, 1), "n")]),
    ("add_scalar", lambda a: a + 2.5, lambda a: a + 2.5, [((2, 3), "n")]),
    ("radd_scalar", lambda a: 2.5 + a, lambda a: 2.5 + a, [((2, 3), "n")]),
    ("sub_bcast", lambda a, b: a - b, np.subtract, [((2, 3), "n"), ((3,), "n")]),
    ("rsub_scalar", lambda a: 1.5 - a, lambda a: 1.5 - a, [((2, 3), "n")]),
    ("mul_bcast", lambda a, b: a * b, np.multiply, [((2, 3), "n"), ((2, 1), "n")]),
    ("rmul_scalar", lambda a: 3 * a, lambda a: 3 * a, [((2, 3), "n")]),
    ("div_bcast", lambda a, b: a / b, np.divide, [((2, 3), "n"), ((3,), "p")]),
    ("rdiv_scalar", lambda a: 2.0 / a, lambda a: 2.0 / a, [((2, 3), "p")]),
    ("neg", lambda a: -a, np.negative, [((2, 3), "n")]),
    ("pow_int", lambda a: a ** 3, lambda a: a ** 3, [((2, 3), "n")]),
    ("pow_frac", lambda a: a ** 2.5, lambda a: a ** 2.5, [((2, 3), "p")]),
    ("pow_negative", lambda a: a ** -1.5, lambda a: a ** -1.5, [((2, 3), "p")]),
    ("pow_tensor", lambda a, b: a ** b, np.power, [((2, 3), "p"), ((2, 3), "n")]),
    ("pow_tensor_bcast", lambda a, b: dc.pow(a, b), np.power, [((2, 3), "p"), ((3,), "n")]),
    ("rpow_scalar", lambda a: 2.0 ** a, lambda a: 2.0 ** a, [((2, 3), "n")]),
    ("matmul", lambda a, b: a @ b, np.matmul, [((2, 3), "n"), ((3, 4), "n")]),
    ("matmul_batched", lambda a, b: a @ b, np.matmul, [((2, 2, 3), "n"), ((3, 4), "n")]),
    ("matmul_batch_bcast", dc.matmul, np.matmul, [((2, 1, 2, 3), "n"), ((3, 3, 2), "n")]),
    ("matmul_transposed", lambda a, b: a.T @ b.T, lambda a, b: a.T @ b.T,
     [((3, 2), "n"), ((4, 3), "n")]),
    ("matvec", lambda a, b: a @ b, np.matmul, [((2, 3), "n"), ((3,), "n")]),
    ("vecmat", lambda a, b: a @ b, np.matmul, [((3,), "n"), ((3, 4), "n")]),
    ("vecvec", lambda a, b: a @ b, np.matmul, [((3,), "n"), ((3,), "n")]),
    # indexing (the adjoint is a scatter-add)
    ("getitem_slices", lambda a: a[1:, ::2], lambda a: a[1:, ::2], [((3, 4), "n")]),
    ("getitem_int", lambda a: a[1], lambda a: a[1], [((3, 4), "n")]),
    ("getitem_neg_int_slice", lambda a: a[-1, 1:3], lambda a: a[-1, 1:3], [((3, 4), "n")]),
    ("getitem_int_array_repeated", lambda a: a[IDX], lambda a: a[IDX], [((3, 4), "n")]),
    ("getitem_int_array_axis1", lambda a: a[:, IDX[:4] + 1], lambda a: a[:, IDX[:4] + 1],
     [((3, 4), "n")]),
    ("getitem_list_repeated", lambda a: a[[1, 1, 0]], lambda a: a[[1, 1, 0]], [((3, 4), "n")]),
    ("getitem_bool_mask", lambda a: a[MASK], lambda a: a[MASK], [((3, 4), "n")]),
    ("getitem_bool_mask_tensor", lambda a: a[dc.tensor(MASK)], lambda a: a[MASK], [((3, 4), "n")]),
    ("getitem_none_ellipsis", lambda a: a[None, ..., 1], lambda a: a[None, ..., 1],
     [((2, 3, 4), "n")]),
    ("getitem_ellipsis_none", lambda a: a[..., None, :2], lambda a: a[..., None, :2],
     [((2, 3), "n")]),
    ("getitem_mixed", lambda a: a[IDX, 1:], lambda a: a[IDX, 1:], [((3, 4), "n")]),
    # shape ops
    ("reshape", lambda a: a.reshape(3, -1), lambda a: a.reshape(3, -1), [((2, 3, 2), "n")]),
    ("flatten", lambda a: dc.flatten(a, 1), lambda a: a.reshape(2, -1), [((2, 3, 2), "n")]),
    ("transpose_default", dc.transpose, np.transpose, [((2, 3, 4), "n")]),
    ("T", lambda a: a.T, lambda a: a.T, [((2, 3), "n")]),
    ("permute", lambda a: a.permute(1, 2, 0), lambda a: a.transpose(1, 2, 0), [((2, 3, 4), "n")]),
    ("swapaxes", lambda a: dc.swapaxes(a, 0, 2), lambda a: a.swapaxes(0, 2), [((2, 3, 4), "n")]),
    ("swapaxes_neg", lambda a: dc.swapaxes(a, -1, -2), lambda a: a.swapaxes(-1, -2),
     [((3, 4), "n")]),
    ("expand_squeeze", lambda a: dc.squeeze(dc.expand_dims(a, 1), 1) * dc.expand_dims(a, -1)[..., 0],
     lambda a: a * a, [((2, 3), "n")]),
    ("broadcast_to", lambda a: dc.broadcast_to(a, (2, 3)), lambda a: np.broadcast_to(a, (2, 3)),
     [((3,), "n")]),
    # reductions (axis None, int, negative, tuple; keepdims)
    ("sum_all", dc.sum, np.sum, [((2, 3, 4), "n")]),
    ("sum_axis0", lambda a: a.sum(0), lambda a: a.sum(0), [((2, 3, 4), "n")]),
    ("sum_neg_keepdims", lambda a: a.sum(-1, keepdims=True), lambda a: a.sum(-1, keepdims=True),
     [((2, 3, 4), "n")]),
    ("sum_tuple", lambda a: a.sum((0, 2)), lambda a: a.sum((0, 2)), [((2, 3, 4), "n")]),
    ("sum_tuple_neg_keepdims", lambda a: a.sum((-1, 0), keepdims=True),
     lambda a: a.sum((-1, 0), keepdims=True), [((2, 3, 4), "n")]),
    ("mean_all", dc.mean, np.mean, [((2, 3), "n")]),
    ("mean_keepdims", lambda a: a.mean(1, keepdims=True), lambda a: a.mean(1, keepdims=True),
     [((2, 3, 4), "n")]),
    ("mean_tuple", lambda a: a.mean((0, -1)), lambda a: a.mean((0, -1)), [((2, 3, 4), "n")]),
    ("max_all", dc.max, np.max, [((2, 3), "n")]),
    ("max_axis", lambda a: a.max(1), lambda a: a.max(1), [((2, 3, 4), "n")]),
    ("max_tuple_keepdims", lambda a: a.max((0, 2), keepdims=True),
     lambda a: a.max((0, 2), keepdims=True), [((2, 3, 4), "n")]),
    ("min_neg", lambda a: a.min(-1), lambda a: a.min(-1), [((2, 3, 4), "n")]),
    ("min_all", dc.min, np.min, [((2, 3), "n")]),
    ("var_all", dc.var, np.var, [((2, 3), "n")]),
    ("var_axis", lambda a: a.var(1), lambda a: a.var(1), [((2, 3, 4), "n")]),
    ("var_tuple_keepdims_ddof", lambda a: dc.var(a, (0, 2), keepdims=True, ddof=1),
     lambda a: a.var((0, 2), keepdims=True, ddof=1), [((2, 3, 4), "n")]),
    ("std_neg", lambda a: a.std(-1), lambda a: a.std(-1), [((2, 3, 4), "n")]),
    ("std_tuple_keepdims", lambda a: dc.std(a, (0, 1), keepdims=True),
     lambda a: a.std((0, 1), keepdims=True), [((2, 3, 4), "n")]),
    ("logsumexp_all", dc.logsumexp, _np_logsumexp, [((2, 3), "n")]),
    ("logsumexp_axis", lambda a: dc.logsumexp(a, 1), lambda a: _np_logsumexp(a, 1),
     [((2, 3, 4), "n")]),
    ("logsumexp_tuple_keepdims", lambda a: dc.logsumexp(a, (0, -1), keepdims=True),
     lambda a: _np_logsumexp(a, (0, 2), keepdims=True), [((2, 3, 4), "n")]),
    # element-wise
    ("exp", dc.exp, np.exp, [((2, 3), "n")]),
    ("log", dc.log, np.log, [((2, 3), "p")]),
    ("sqrt", dc.sqrt, np.sqrt, [((2, 3), "p")]),
    ("abs", dc.abs, np.abs, [((2, 3), "s")]),
    ("tanh", dc.tanh, np.tanh, [((2, 3), "n")]),
    ("sigmoid", dc.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [((2, 3), "n")]),
    ("relu", dc.relu, lambda a: np.maximum(a, 0), [((2, 3), "s")]),
    ("gelu", dc.gelu, lambda a: a * 0.5 * (1 + _erf(a / math.sqrt(2))), [((2, 3), "n")]),
    ("gelu_tanh", lambda a: dc.gelu(a, approximate="tanh"), _np_gelu_tanh, [((2, 3), "n")]),
    ("erf", dc.erf, _erf, [((2, 3), "n")]),
    ("clip", lambda a: dc.clip(a, -0.25, 0.25), lambda a: np.clip(a, -0.25, 0.25),
     [((2, 4), "clip")]),
    ("clip_min_only", lambda a: dc.clip(a, min=-0.25), lambda a: np.maximum(a, -0.25),
     [((2, 4), "clip")]),
    ("clip_max_only", lambda a: a.clip(max=0.25), lambda a: np.minimum(a, 0.25), [((2, 4), "clip")]),
    ("maximum", dc.maximum, np.maximum, [((2, 3), "n"), ((3,), "n")]),
    ("minimum", dc.minimum, np.minimum, [((2, 3), "n"), ((2, 3), "n")]),
    ("where", lambda a, b: dc.where(COND, a, b), lambda a, b: np.where(COND, a, b),
     [((2, 3), "n"), ((3,), "n")]),
    ("where_scalar", lambda a: dc.where(COND, a, 0.0), lambda a: np.where(COND, a, 0.0),
     [((2, 3), "n")]),
    # softmax family, each axis
    ("softmax_axis0", lambda a: dc.softmax(a, 0), lambda a: _np_softmax(a, 0), [((3, 4), "n")]),
    ("softmax_axis1", lambda a: dc.softmax(a, 1), lambda a: _np_softmax(a, 1), [((2, 3, 2), "n")]),
    ("softmax_last", dc.softmax, lambda a: _np_softmax(a, -1), [((3, 4), "n")]),
    ("log_softmax_axis0", lambda a: dc.log_softmax(a, 0), lambda a: np.log(_np_softmax(a, 0)),
     [((3, 4), "n")]),
    ("log_softmax_axis1", lambda a: dc.log_softmax(a, 1), lambda a: np.log(_np_softmax(a, 1)),
     [((2, 3, 2), "n")]),
    ("log_softmax_last", dc.log_softmax, lambda a: np.log(_np_softmax(a, -1)), [((3, 4), "n")]),
    # joining
    ("concatenate_axis0", lambda a, b: dc.concatenate([a, b]), lambda a, b: np.concatenate([a, b]),
     [((2, 3), "n"), ((1, 3), "n")]),
    ("concatenate_neg_axis", lambda a, b: dc.concatenate([a, b], axis=-1),
     lambda a, b: np.concatenate([a, b], axis=-1), [((2, 3), "n"), ((2, 2), "n")]),
    ("stack_axis0", lambda a, b, c: dc.stack([a, b, c]), lambda a, b, c: np.stack([a, b, c]),
     [((2, 3), "n")] * 3),
    ("stack_neg_axis", lambda a, b: dc.stack([a, b], axis=-1),
     lambda a, b: np.stack([a, b], axis=-1), [((2, 3), "n")] * 2),
    # linear algebra
    ("inv", dc.inv, np.linalg.inv, [((3, 3), "spd")]),
    ("inv_batched", dc.inv, np.linalg.inv, [((2, 3, 3), "spd")]),
    ("slogdet", lambda a: dc.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1], [((3, 3), "spd")]),
    ("slogdet_batched", lambda a: dc.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1],
     [((2, 3, 3), "spd")]),    # fused layers: forward and backward primitives (the backward runs at every order)
    *[(f"linear_{act}", lambda x, w, b, act=act: F.linear(x, w, b, activation=act),
       lambda x, w, b, act=act: _NP_ACT[act](x @ w.T + b),
       [((2, 3, 4), "n"), ((5, 4), "n"), ((5,), "n")]) for act in _NP_ACT],
    ("linear_no_bias", lambda x, w: F.linear(x, w), lambda x, w: x @ w.T,
     [((3, 4), "n"), ((2, 4), "n")]),
    ("batch_norm_train", lambda x, g, b: F.batch_norm(x, weight=g, bias=b, training=True),
     lambda x, g, b: _np_norm(x, (0,)) * g + b, [((5, 3), "n"), ((3,), "p"), ((3,), "n")]),
    ("batch_norm_train_3d", lambda x: F.batch_norm(x, training=True),
     lambda x: _np_norm(x, (0, 2)), [((4, 3, 2), "n")]),
    ("batch_norm_eval", lambda x, g, b: F.batch_norm(x, *_running(x), weight=g, bias=b),
     lambda x, g, b: (x - _RM) / np.sqrt(_RV + 1e-5) * g + b,
     [((5, 3), "n"), ((3,), "p"), ((3,), "n")]),
    ("batch_norm_eval_3d", lambda x: F.batch_norm(x, *_running(x)),
     lambda x: (x - _RM[:, None]) / np.sqrt(_RV[:, None] + 1e-5), [((4, 3, 2), "n")]),
    ("layer_norm", lambda x, g, b: F.layer_norm(x, weight=g, bias=b),
     lambda x, g, b: _np_norm(x, (-1,)) * g + b, [((2, 3, 4), "n"), ((4,), "p"), ((4,), "n")]),
    ("layer_norm_plain", F.layer_norm, lambda x: _np_norm(x, (-1,)), [((3, 5), "n")]),
    # embedding lookup (repeated indices accumulate in the sort-based scatter-add)
    ("embedding", lambda w: dc.ops.embedding(EMB_IDX, w), lambda w: w[EMB_IDX], [((5, 3), "n")]),
    # the fused MLP Jacobian penalty (rows built in test_regularize_kernel.py)
    *JACOBIAN_PENALTY_ROWS,
    # the RNN recurrence h_t = act(p_t + h_{t-1} W^T) and its BPTT primitive (ops/rnn.py)
    ("rnn_sequence_tanh", lambda p, h, w: rnn_sequence(p, h, w, "tanh"), _rnn_ref("tanh"),
     [((4, 2, 3), "n"), ((2, 3), "n"), ((3, 3), "n")]),
    ("rnn_sequence_identity", lambda p, h, w: rnn_sequence(p, h, w, "identity"),
     _rnn_ref("identity"), [((3, 2, 3), "n"), ((2, 3), "n"), ((3, 3), "n")]),
    ("rnn_sequence_relu", lambda p, h, w: rnn_sequence(p, h, w, "relu"), _rnn_ref("relu"),
     [((3, 2, 3), "p"), ((2, 3), "p"), ((3, 3), "p")]),
    # fused attention (ops/attention.py): forward, backward and tangent primitives
    ("sdpa", F.scaled_dot_product_attention, lambda q, k, v: np_attention(q, k, v, None, False,
                                                                          0.5)[0],
     [((1, 2, 3, 4), "n"), ((1, 2, 5, 4), "n"), ((1, 2, 5, 3), "n")]),
    ("sdpa_causal_padding",
     lambda q, k, v: F.scaled_dot_product_attention(q, k, v, mask=np.array([1, 1, 0, 1, 1], bool),
                                                    causal=True),
     lambda q, k, v: np_attention(q, k, v, np.array([1, 1, 0, 1, 1], bool), True, 0.5)[0],
     [((2, 1, 4, 4), "n"), ((2, 1, 5, 4), "n"), ((2, 1, 5, 2), "n")]),
]
IDS = [row[0] for row in OPS]


def _inputs(rng, specs, dtype=np.float64):
    out = []
    for shape, kind in specs:
        a = _clip_input(rng, shape) if kind == "clip" else make_array(rng, shape, kind)
        out.append(a.astype(dtype))
    return out


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_numpy(name, fn, ref, specs, dtype, rng):
    arrays = _inputs(rng, specs, dtype)
    out = fn(*[dc.tensor(a) for a in arrays])
    expected = np.asarray(ref(*[a.astype(np.float64) for a in arrays]))
    assert isinstance(out, dc.Tensor)
    assert out.dtype == dtype, f"{name}: {dtype.__name__} in, {out.dtype} out"
    assert out.shape == expected.shape
    if dtype == np.float32:
        np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
def test_gradcheck(name, fn, ref, specs, rng):
    xs = [dc.tensor(a, requires_grad=True) for a in _inputs(rng, specs)]
    assert gradcheck(fn, xs)


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
def test_gradgradcheck(name, fn, ref, specs, rng):
    xs = [dc.tensor(a, requires_grad=True) for a in _inputs(rng, specs)]
    assert gradgradcheck(fn, xs)


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
def test_jvp_vjp_consistent(name, fn, ref, specs, rng):
    xs = [dc.tensor(a) for a in _inputs(rng, specs)]
    assert_jvp_vjp_consistent(fn, xs, rng)


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
def test_noncontiguous_inputs(name, fn, ref, specs, rng):
    """Strided / transposed views as input data give the same values and gradients, in float32
    and float64, and gradcheck (which perturbs the inputs in place) works on them."""
    for dtype in (np.float32, np.float64):
        arrays = _inputs(rng, specs, dtype)
        views = [noncontiguous(a) for a in arrays]
        if any(a.ndim >= 1 and a.size > 1 for a in arrays):
            assert any(not v.flags.c_contiguous for v in views)
        xs = [dc.tensor(a, requires_grad=True) for a in arrays]
        vs = [dc.tensor(v, requires_grad=True) for v in views]
        out_c, out_v = fn(*xs), fn(*vs)
        # summation order may differ with the layout: agree to a few ulps, not bit for bit
        tight = dict(rtol=1e-6, atol=1e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(out_v.data, out_c.data, **tight)
        g = dc.tensor(rng.standard_normal(out_c.shape).astype(dtype))
        (out_c * g).sum().backward()
        (out_v * g).sum().backward()
        for x, v in zip(xs, vs):
            np.testing.assert_allclose(v.grad.data, x.grad.data, **tight)
    assert gradcheck(fn, [dc.tensor(noncontiguous(a), requires_grad=True)
                          for a in _inputs(rng, specs)])


# --- comparisons -----------------------------------------------------------------------------

COMPARISONS = [
    ("eq", lambda a, b: a == b, np.equal),
    ("ne", lambda a, b: a != b, np.not_equal),
    ("lt", lambda a, b: a < b, np.less),
    ("le", lambda a, b: a <= b, np.less_equal),
    ("gt", lambda a, b: a > b, np.greater),
    ("ge", lambda a, b: a >= b, np.greater_equal),
]


@pytest.mark.parametrize("name, fn, ref", COMPARISONS, ids=[c[0] for c in COMPARISONS])
@pytest.mark.parametrize("other", ["tensor", "scalar", "bcast"])
def test_comparison_is_bool_without_grad(name, fn, ref, other):
    a_np = np.array([[0.0, 1.0, 2.0], [3.0, 1.0, -1.0]])
    b_np = {"tensor": np.array([[0.0, 2.0, 1.0], [3.0, 0.0, -1.0]]), "scalar": 1.0,
            "bcast": np.array([0.0, 1.0, 5.0])}[other]
    a = dc.tensor(a_np, requires_grad=True)
    b = dc.tensor(b_np, requires_grad=True) if other != "scalar" else b_np
    out = fn(a, b)
    assert out.dtype == np.bool_
    assert not out.requires_grad and out.grad_fn is None
    np.testing.assert_array_equal(out.data, ref(a_np, b_np))
    # mixed values: neither all True nor all False, so a constant answer fails
    assert out.data.any() and not out.data.all()


# --- astype ------------------------------------------------------------------------------------

def test_astype_gradient_converts_back(rng):
    x = dc.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32 and y.requires_grad
    np.testing.assert_array_equal(y.data, x.data.astype(np.float32))
    w = dc.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    (y * w).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.data, w.data.astype(np.float64))


def test_astype_jvp_and_second_order(rng):
    x = dc.tensor(rng.standard_normal(4))
    t = dc.tensor(rng.standard_normal(4))
    out, t_out = dc.jvp(lambda a: a.astype(np.float32), (x,), (t,))
    assert out.dtype == np.float32 and t_out.dtype == np.float32
    np.testing.assert_array_equal(t_out.data, t.data.astype(np.float32))
    # round trip through float32 of a float64 function: d^2/dx^2 sum(x^3) = 6x (exact factors)
    f = lambda a: (a.astype(np.float32).astype(np.float64) ** 3).sum()
    h = dc.hessian(f)(x)
    np.testing.assert_allclose(np.diag(h.data), 6 * x.data.astype(np.float32), rtol=1e-6)


def test_astype_to_int_has_no_grad():
    x = dc.tensor(np.array([1.7, -2.2]), requires_grad=True)
    y = x.astype(np.int64)
    assert y.dtype == np.int64 and not y.requires_grad
    np.testing.assert_array_equal(y.data, [1, -2])


def test_slogdet_sign_is_constant(rng):
    a = make_array(rng, (3, 3), "spd")
    a[0] *= -1  # negative determinant
    sign, logdet = dc.slogdet(dc.tensor(a, requires_grad=True))
    ref_sign, ref_logdet = np.linalg.slogdet(a)
    assert sign.item() == ref_sign == -1 and not sign.requires_grad
    np.testing.assert_allclose(logdet.item(), ref_logdet, rtol=1e-13)
    assert logdet.requires_grad


# --- softmax: odd sizes (SIMD tails) and each native CPU path ---------------------------------

def _np_softmax_backward(y, g, axis, log):
    if log:
        return g - np.exp(y) * g.sum(axis=axis, keepdims=True)
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("n", [1, 3, 7, 17, 33])
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_odd_sizes(n, axis, log, dtype, rng):
    shape = (n, 5) if axis == 0 else (5, n)
    x_np = 3 * rng.standard_normal(shape)
    g_np = rng.standard_normal(shape)
    op = dc.log_softmax if log else dc.softmax
    x = dc.tensor(x_np.astype(dtype), requires_grad=True)
    y = op(x, axis=axis)
    ref = _np_softmax(x_np.astype(dtype).astype(np.float64), axis)
    ref = np.log(ref) if log else ref
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.data, ref, **tol)
    y.backward(dc.tensor(g_np.astype(dtype)))
    np.testing.assert_allclose(x.grad.data, _np_softmax_backward(ref, g_np, axis, log),
                               rtol=tol["rtol"] * 10, atol=tol["atol"] * 10)


_CAPABILITIES = ["scalar", "avx2", "avx512"]

_PATH_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import deepcalc as dc
    want = sys.argv[1]
    assert dc._core.cpu_capability() == want, (dc._core.cpu_capability(), want)
    assert dc._core.cpu_capability_error() == "", dc._core.cpu_capability_error()
    rng = np.random.default_rng(0)
    for n in list(range(1, 41)) + [63, 64, 65, 127, 129]:
        for log in (False, True):
            x64 = 4 * rng.standard_normal((3, n))
            x = x64.astype(np.float32)
            xr = x.astype(np.float64)
            e = np.exp(xr - xr.max(-1, keepdims=True))
            ref = e / e.sum(-1, keepdims=True)
            ref = np.log(ref) if log else ref
            y = dc._core.softmax_forward(x, log)
            np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6, err_msg=f"n={n} log={log}")
            g = rng.standard_normal((3, n)).astype(np.float32)
            gr = g.astype(np.float64)
            dref = (gr - np.exp(ref) * gr.sum(-1, keepdims=True)) if log else \\
                ref * (gr - (gr * ref).sum(-1, keepdims=True))
            dx = dc._core.softmax_backward(ref.astype(np.float32), g, log)
            np.testing.assert_allclose(dx, dref, rtol=1e-4, atol=1e-5, err_msg=f"n={n} log={log}")
    print("ok", want)
""")


@pytest.mark.parametrize("capability", _CAPABILITIES)
def test_softmax_kernel_on_each_cpu_path(capability):
    detected = dc._core.cpu_detected_capability()
    if _CAPABILITIES.index(capability) > _CAPABILITIES.index(detected):
        pytest.skip(f"this CPU supports only {detected}")
    env = cpu_path_env(capability)
    proc = subprocess.run([sys.executable, "-c", _PATH_SCRIPT, capability], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == f"ok {capability}"


def test_forced_unsupported_capability_is_reported():
    env = cpu_path_env("sse9")
    code = "import deepcalc as dc; print(repr(dc._core.cpu_capability_error()))"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sse9" in proc.stdout and "scalar, avx2, avx512" in proc.stdout


# --- broadcasting, property-based ---------------------------------------------------------------

BINARY = {"add": (dc.add, lambda a, b, g: (g, g)),
          "sub": (dc.sub, lambda a, b, g: (g, -g)),
          "mul": (dc.mul, lambda a, b, g: (g * b, g * a)),
          "div": (dc.div, lambda a, b, g: (g / b, -g * a / b ** 2))}


@settings(max_examples=40, deadline=None)
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2 ** 16))
def test_broadcast_gradients_reduce_to_input_shapes(shapes, op, seed):
    """For any broadcastable pair, each gradient is the broadcast gradient summed back to its
    input's shape."""
    r = np.random.default_rng(seed)
    (sa, sb), out_shape = shapes.input_shapes, shapes.result_shape
    a_np, b_np = r.standard_normal(sa), r.uniform(0.5, 2.0, sb)
    g_np = r.standard_normal(out_shape)
    fn, rule = BINARY[op]
    a, b = dc.tensor(a_np, requires_grad=True), dc.tensor(b_np, requires_grad=True)
    out = fn(a, b)
    assert out.shape == out_shape
    out.backward(dc.tensor(g_np))
    for x, x_np, full in zip((a, b), (a_np, b_np), rule(a_np, b_np, g_np)):
        full = np.broadcast_to(full, out_shape)
        lead = full.ndim - x_np.ndim
        ref = full.sum(axis=tuple(range(lead)))
        ref = ref.sum(axis=tuple(i for i, n in enumerate(x_np.shape) if n == 1), keepdims=True)
        assert x.grad.shape == x_np.shape
        np.testing.assert_allclose(x.grad.data, ref.reshape(x_np.shape), rtol=1e-12, atol=1e-12)
