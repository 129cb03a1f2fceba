"""Deterministic regressions of the native kernels at their edges, on every CPU path: empty
inputs (0 rows, 0 columns, 0 channels, an empty batch), NaN and +-inf through softmax, the
fused linear epilogues, the activation backward and the norm kernels, and bindings that must be
safe on their own (shapes, strides, dtypes, aliasing). The expected values are the float64
NumPy formulas, which the scalar reference kernels follow."""

import numpy as np
import pytest
from conftest import act_deriv_ref, act_ref, assert_file_passes_on_cpu_path

import deepcalc as dc
from deepcalc import _core

try:
    import torch
except ImportError:  # torch comparisons skip; the NumPy expectations still run
    torch = None

NAN, INF = np.nan, np.inf
EPS = 1e-5
ACTS = ["none", "relu", "gelu", "tanh", "sigmoid"]


def softmax_ref(x, log):
    """Row softmax in float64 as the scalar kernel defines it: a NaN or +inf in a row makes the
    row NaN; an all -inf row is NaN (0/0), as torch."""
    x = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        m = x.max(-1, keepdims=True)
        m = np.where(np.isneginf(m), 0.0, m)
        e = np.exp(x - m)
        s = e.sum(-1, keepdims=True)
        return x - m - np.log(s) if log else e / s


def assert_same(actual, expected, rtol=3e-6, atol=0.0):
    """Equal NaN pattern, equal infinities, finite values within rtol / atol."""
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


# ---- 1. empty normalization and softmax inputs -----------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(4, 0), (4, 0, 3)])
def test_batchnorm_zero_channels(dtype, shape):
    x = np.ones(shape, dtype)
    e = np.zeros(0, dtype)
    y, mean, invstd = _core.batchnorm_forward_train(x, None, None, EPS)
    assert y.shape == shape and mean.shape == (0,) and invstd.shape == (0,)
    y, mean, invstd = _core.batchnorm_forward_train(x, e, e, EPS)
    assert y.shape == shape and mean.shape == (0,) and invstd.shape == (0,)
    dx, dg, db = _core.batchnorm_backward(x, x, e, e, e)
    assert dx.shape == shape and dg.shape == (0,) and db.shape == (0,)
    assert _core.batchnorm_forward_eval(x, e, e, e, e, EPS).shape == shape
    assert dc.nn.functional.batch_norm(dc.tensor(x), training=True).shape == shape
    if torch is not None:
        assert tuple(torch.nn.functional.batch_norm(torch.from_numpy(x), None, None,
                                                    training=True).shape) == shape


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_zero_rows_and_zero_features(dtype):
    g = np.ones(5, dtype)
    x = np.ones((0, 5), dtype)
    y, mean, invstd = _core.layernorm_forward(x, g, g, EPS)
    assert y.shape == (0, 5) and mean.shape == (0,) and invstd.shape == (0,)
    dx, dg, db = _core.layernorm_backward(x, x, mean, invstd, g)
    assert dx.shape == (0, 5)
    np.testing.assert_array_equal(dg, 0)  # a sum over no rows
    np.testing.assert_array_equal(db, 0)
    x = np.ones((4, 0), dtype)
    e = np.zeros(0, dtype)
    y, mean, invstd = _core.layernorm_forward(x, e, e, EPS)
    assert y.shape == (4, 0) and mean.shape == (4,) and invstd.shape == (4,)
    np.testing.assert_array_equal(mean, 0)  # torch's values: mean 0, no variance
    assert np.all(np.isnan(invstd))
    dx, dg, db = _core.layernorm_backward(x, x, mean, invstd, e)
    assert dx.shape == (4, 0) and dg.shape == (0,) and db.shape == (0,)
    assert _core.layernorm_forward(np.ones((2, 0, 0), dtype), None, None, EPS)[1].shape == (2, 0)
    if torch is not None:
        t = torch.nn.functional.layer_norm(torch.from_numpy(x), (0,))
        assert tuple(t.shape) == (4, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0, 0), (2, 0, 5), (0,)])
def test_softmax_empty(dtype, shape):
    x = np.ones(shape, dtype)
    for log in (False, True):
        y = _core.softmax_forward(x, log)
        assert y.shape == shape and y.dtype == dtype
        assert _core.softmax_backward(y, x, log).shape == shape


# ---- 2. GEMM batches and bindings that must be safe on their own ---------------------------------

GEMM_SHAPES = [((0, 2, 3), (3, 4)), ((0, 4096, 4096), (4096, 4)), ((0, 3, 4), (1, 4, 5)),
               ((1, 3, 4), (0, 4, 5)), ((2, 3), (0, 3, 4)), ((0, 3, 4), (0, 4, 5)),
               ((2, 0, 4), (2, 4, 5)), ((2, 3, 0), (1, 0, 5)), ((3, 2, 3), (1, 3, 1)),
               ((1, 2, 3), (4, 3, 2))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sa,sb", GEMM_SHAPES)
def test_gemm_batch_broadcast_matches_numpy(dtype, sa, sb):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(sa).astype(dtype)
    b = rng.standard_normal(sb).astype(dtype)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    c = _core.gemm(a, b)
    assert c.shape == want.shape and c.dtype == dtype
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5)
    # the same product with both operands stored transposed
    ct = _core.gemm(np.ascontiguousarray(np.swapaxes(a, -1, -2)), np.ascontiguousarray(np.swapaxes(b, -1, -2)),
                    True, True)
    assert ct.shape == want.shape
    np.testing.assert_allclose(ct, want, rtol=1e-5, atol=1e-5)
    out = np.full(want.shape, 2.0, dtype)
    _core.gemm(a, b, alpha=0.5, beta=-1.0, out=out)
    np.testing.assert_allclose(out, 0.5 * want - 2.0, rtol=1e-5, atol=1e-5)


def test_gemm_strided_operands_are_read_as_numpy_reads_them():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3, 14, 20)).astype(np.float32)
    a = base[::-1, ::2, 3:12]          # negative batch stride, every other row, offset columns
    b = rng.standard_normal((1, 9, 5)).astype(np.float32)
    np.testing.assert_allclose(_core.gemm(a, b), np.matmul(a, b), rtol=1e-5, atol=1e-5)
    bb = np.broadcast_to(b, (3, 9, 5))  # batch stride 0
    np.testing.assert_allclose(_core.gemm(a, bb), np.matmul(a, b), rtol=1e-5, atol=1e-5)


def test_gemm_rejects_what_it_cannot_read():
    f = np.ones((4, 6), np.float32)
    with pytest.raises(ValueError, match=r"gemm: a with shape \(4, 3\) and strides \(24, 8\) must be "
                       "row-major with unit stride in its last axis"):
        _core.gemm(f[:, ::2], np.ones((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"gemm: a must be 2-D or 3-D \(batched\), got shape \(6,\)"):
        _core.gemm(f[0], f)
    with pytest.raises(TypeError, match=r"gemm: a must be float32 or float64, got int64"):
        _core.gemm(np.ones((2, 2), np.int64), np.ones((2, 2), np.int64))
    with pytest.raises(TypeError, match="gemm: b is float64 but a is float32"):
        _core.gemm(f, np.ones((6, 2)))
    with pytest.raises(ValueError, match=r"gemm: out with shape \(4, 6\) overlaps a with shape \(4, 6\)"):
        _core.gemm(f, np.ones((6, 6), np.float32), beta=1.0, out=f)
    ro = np.zeros((4, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="gemm: out with shape \\(4, 2\\) must be writeable"):
        _core.gemm(f, np.ones((6, 2), np.float32), out=ro)
    with pytest.raises(ValueError, match=r"gemm: out has shape \(0, 2\), expected the result shape \(0, 4, 2\)"):
        _core.gemm(np.ones((0, 4, 6), np.float32), np.ones((6, 2), np.float32), out=np.zeros((0, 2), np.float32))


def test_optimizer_states_must_not_alias():
    p = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"adam_step: param with shape \(8,\) overlaps exp_avg"):
        _core.adam_step(p, np.ones(8, np.float32), p, np.zeros(8, np.float32), 0.1, 0.9, 0.999, 1e-8,
                        0.0, 1, False)
    with pytest.raises(ValueError, match=r"sgd_step: param with shape \(8,\) overlaps momentum_buffer"):
        _core.sgd_step(p, np.ones(8, np.float32), p, 0.1, 0.9, 0.0, 0.0, False, False)
    with pytest.raises(ValueError, match=r"batchnorm_update_running: running_mean .* overlaps running_var"):
        _core.batchnorm_update_running(p, p, p[:8].copy(), p.copy(), 4, 0.1, EPS)


def test_softmax_backward_rejects_a_scalar():
    with pytest.raises(ValueError, match="softmax_backward: y must have at least 1 dimension"):
        _core.softmax_backward(np.ones((), np.float32), np.ones((), np.float32))


# ---- 3. softmax with NaN and infinities; finite rows of every length --------------------------------

SPECIAL_ROWS = [[-INF, -INF], [NAN, 1.0], [1.0, NAN], [-INF] * 5, [-INF] * 17, [INF, 1.0],
                [-INF, 1.0, 2.0], [-INF] * 16 + [3.0], [NAN] * 3, [0.0, -100.0], [-100.0, -200.0, -101.0],
                [1e30, -1e30, 0.0], [5.0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("row", SPECIAL_ROWS, ids=str)
def test_softmax_special_rows(dtype, log, row):
    x = np.array([row], dtype)
    y = _core.softmax_forward(x, log)
    assert_same(y, softmax_ref(x, log), rtol=4e-6, atol=1e-44)  # atol: one subnormal ulp
    if torch is not None:
        fn = torch.log_softmax if log else torch.softmax
        assert_same(y, fn(torch.from_numpy(x.astype(np.float64)), 1).numpy(), rtol=4e-6, atol=1e-44)


def test_softmax_nan_and_masked_rows_match_torch_rule():
    y = _core.softmax_forward(np.array([[-INF, -INF], [NAN, 1.0]], np.float32))
    assert np.all(np.isnan(y))
    assert np.isnan(_core.softmax_forward(np.full((1, 5), -INF, np.float32)).sum())
    loss = dc.nn.functional.cross_entropy(dc.tensor(np.array([[NAN, 1.0]], np.float32)), np.array([1]))
    assert np.isnan(float(loss.data))


@pytest.mark.parametrize("log", [False, True])
def test_softmax_rows_of_every_length(log):
    rng = np.random.default_rng(2)
    for n in range(1, 71):
        x = (rng.standard_normal((5, n)) * 4).astype(np.float32)
        x[1] += 1e3  # a large offset: only x - max matters
        x[2, : n // 2] = -INF  # masked columns
        y = _core.softmax_forward(x, log)
        ref = softmax_ref(x, log)
        if log:  # y = x - lse: lse rounded to float32 costs up to half an ulp of max |x|
            fin = np.isfinite(ref)
            scale = 1 + np.abs(np.where(np.isfinite(x), x, 0)).max(-1, keepdims=True)
            assert np.array_equal(y[~fin], ref[~fin])
            assert np.all(np.abs(y[fin] - ref[fin]) <= 2e-6 * np.broadcast_to(scale, y.shape)[fin]), n
        else:
            assert np.all(np.abs(y - ref) <= 2e-6 * ref + 1e-44), n
            np.testing.assert_allclose(y.sum(-1, dtype=np.float64), 1.0, rtol=1e-5)
        dy = rng.standard_normal(x.shape).astype(np.float32)
        dx = _core.softmax_backward(y, dy, log)
        y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
        with np.errstate(all="ignore"):
            ref_dx = dy64 - np.exp(y64) * dy64.sum(-1, keepdims=True) if log else \
                y64 * (dy64 - (dy64 * y64).sum(-1, keepdims=True))
        np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-5)


# ---- 4, 5. fused linear epilogues and the activation backward with NaN / inf --------------------------

SPECIALS = np.array([NAN, INF, -INF, 0.0, -0.0, 1.0, -1.0, 1e-30, 20.0, -20.0, 100.0, -100.0, 3e38, -3e38],
                    np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("N,IN,OUT", [(14, 1, 1), (14, 1, 40), (14, 20, 5), (14, 20, 70), (1, 3, 14)])
def test_linear_epilogue_special_values(dtype, act, N, IN, OUT):
    """Each special value in turn as the preactivation of whole rows (or, for N = 1, of one output
    column via the bias), through the gemv, direct and packed paths."""
    rng = np.random.default_rng(3)
    if N == 1:  # matrix-vector: specials ride on the bias, x @ w.T is finite
        x = rng.standard_normal((1, IN)).astype(dtype)
        w = np.zeros((OUT, IN), dtype)
        bias = SPECIALS.astype(dtype)
        z_ref = np.zeros((1, OUT)) + bias.astype(np.float64)
    else:  # z = x[:, 0]: w picks column 0; the other columns multiply zeros (all finite)
        x = rng.standard_normal((N, IN)).astype(dtype)
        x[:, 0] = SPECIALS
        w = np.zeros((OUT, IN), dtype)
        w[:, 0] = 1
        bias = np.zeros(OUT, dtype)
        z_ref = np.repeat(x[:, :1].astype(np.float64), OUT, 1)
    y, z = _core.linear_forward(x, w, bias, act, True)
    want = act_ref(z_ref, act).astype(dtype)
    assert_same(z, z_ref.astype(dtype), rtol=0)
    assert_same(y, want, rtol=3e-6, atol=2e-7)
    y2 = dc.nn.functional.linear(dc.tensor(x), dc.tensor(w), dc.tensor(bias),
                                 activation=None if act == "none" else act)
    assert_same(y2.data, want, rtol=3e-6, atol=2e-7)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid", "gelu"])
def test_linear_layer_propagates_nan(act):
    dc.manual_seed(0)
    layer = dc.nn.Linear(3, 4, activation=act)
    x = np.ones((5, 3), np.float32)
    x[2, 1] = NAN
    y = layer(dc.tensor(x)).data
    assert np.all(np.isnan(y[2])) and np.all(np.isfinite(np.delete(y, 2, 0)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", [(14, 14), (3, 5, 7), (1, 1)])
def test_activation_backward_special_values(dtype, act, shape):
    rng = np.random.default_rng(4)
    n = int(np.prod(shape))
    saved = rng.choice(SPECIALS, n).reshape(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dy.flat[:: 3] = rng.choice(SPECIALS, dy.flat[:: 3].size)
    with np.errstate(all="ignore"):  # act' rounded to dtype first: 1 - s^2 at s = 3e38 is -inf
        want = (dy * act_deriv_ref(saved, act).astype(dtype)).astype(np.float64)  # in float32, 0 * -inf = NaN
    dz = _core.activation_backward(dy, saved, act)
    assert_same(dz, want, rtol=3e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["relu", "gelu", "tanh", "sigmoid"])
def test_linear_backward_special_values(dtype, act):
    """NaN / inf in the saved tensor reach dz, then db, dx = dz w and dw = dz^T x: an IEEE sum is
    NaN with a NaN or both infinities in it, else +-inf with one, whatever the order, so the
    float64 reference fixes the pattern (dy and x moderate: no float32 overflow)."""
    rng = np.random.default_rng(7)
    N, IN, OUT = 13, 20, 14
    saved = rng.choice(SPECIALS[np.abs(np.nan_to_num(SPECIALS)) < 50], (N, OUT)).astype(dtype)
    saved[rng.random((N, OUT)) < 0.7] = rng.uniform(0.1, 0.9)
    dy = rng.standard_normal((N, OUT)).astype(dtype)
    x = rng.standard_normal((N, IN)).astype(dtype)
    w = rng.standard_normal((OUT, IN)).astype(dtype)
    with np.errstate(all="ignore"):
        dz = dy.astype(np.float64) * act_deriv_ref(saved, act)
        want = (dz @ w.astype(np.float64), dz.T @ x.astype(np.float64), dz.sum(0))
    got = _core.linear_backward(dy, x, w, saved, act)
    for g, r in zip(got, want):
        assert_same(g, r, rtol=1e-4, atol=1e-5)


def test_relu_nan_through_every_path():
    x = np.array([[NAN, 1.0, -1.0], [2.0, 0.5, -0.5]], np.float32)
    bias = np.array([0.0, NAN, 0.0], np.float32)
    for act in ("relu", "tanh", "sigmoid", "gelu"):
        y, _ = _core.linear_forward(x, np.eye(3, dtype=np.float32), bias, act)
        assert np.isnan(y[0]).all() and np.isnan(y[:, 1]).all(), act  # NaN * 0 = NaN in x @ w.T
        assert np.isfinite(y[1, [0, 2]]).all(), act
    dz = _core.activation_backward(np.ones(3, np.float32), np.array([NAN, -1.0, 1.0], np.float32), "relu")
    assert np.isnan(dz[0]) and dz[1] == 0 and dz[2] == 1
    dz = _core.activation_backward(np.array([NAN, NAN], np.float32), np.array([-1.0, 1.0], np.float32), "relu")
    assert np.all(np.isnan(dz))  # dz = dy * relu'(y): NaN * 0 is NaN


# ---- 6. norm kernels and running statistics with NaN ------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 5), (6, 40), (4, 3, 9)])
def test_batchnorm_nan_propagates(dtype, shape):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    x[3, 1] = NAN  # channel 1
    if len(shape) == 2:
        x[2, 2] = INF  # channel 2
    g = rng.uniform(0.5, 2, shape[1]).astype(dtype)
    y, mean, invstd = _core.batchnorm_forward_train(x, g, g, EPS)
    bad = [1, 2] if len(shape) == 2 else [1]
    good = [c for c in range(shape[1]) if c not in bad]
    assert np.all(np.isnan(np.take(y, bad, 1))) and np.all(np.isfinite(np.take(y, good, 1)))
    assert np.isnan(mean[1]) and np.isnan(invstd[bad]).all() and np.isfinite(invstd[good]).all()
    rm, rv = np.zeros(shape[1], dtype), np.ones(shape[1], dtype)
    m = shape[0] * (shape[2] if len(shape) == 3 else 1)
    _core.batchnorm_update_running(rm, rv, mean, invstd, m, 0.1, EPS)
    assert np.isnan(rv[bad]).all() and np.isfinite(rv[good]).all() and np.isnan(rm[1])
    # NaN in dy: dx, dgamma, dbeta of that channel NaN; finite x elsewhere
    x = rng.standard_normal(shape).astype(dtype)
    _, mean, invstd = _core.batchnorm_forward_train(x, g, g, EPS)
    dy = rng.standard_normal(shape).astype(dtype)
    c = shape[1] - 1
    dy[0, c] = NAN
    dx, dg, db = _core.batchnorm_backward(dy, x, mean, invstd, g)
    assert np.all(np.isnan(dx[:, c])) and np.isnan(dg[c]) and np.isnan(db[c])
    others = [k for k in range(shape[1]) if k != c]
    assert np.isfinite(np.take(dx, others, 1)).all() and np.isfinite(dg[others]).all()


def test_batchnorm_layer_running_var_nan():
    bn = dc.nn.BatchNorm1d(3)
    bn.train()
    x = np.ones((4, 3), np.float32)
    x[:, 0] = [1, 2, 3, 4]
    x[1, 2] = NAN
    bn(dc.tensor(x))
    rv = np.asarray(bn.running_var.data)
    assert np.isfinite(rv[:2]).all() and np.isnan(rv[2])
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    _core.batchnorm_update_running(rm, rv, np.zeros(2, np.float32), np.array([NAN, 1.0], np.float32), 4, 0.1, EPS)
    assert np.isnan(rv[0]) and np.isfinite(rv[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("C", [1, 5, 16, 37])
def test_layernorm_nan_propagates(dtype, C):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, C)).astype(dtype)
    x[1, C // 2] = NAN
    x[2, 0] = -INF
    g = rng.uniform(0.5, 2, C).astype(dtype)
    y, mean, invstd = _core.layernorm_forward(x, g, g, EPS)
    assert np.all(np.isnan(y[1:3])) and np.all(np.isfinite(y[[0, 3]]))
    assert np.isnan(mean[1]) and np.isnan(invstd[1:3]).all() and np.isfinite(invstd[[0, 3]]).all()
    x[1:3] = 0.5
    _, mean, invstd = _core.layernorm_forward(x, g, g, EPS)
    dy = rng.standard_normal((4, C)).astype(dtype)
    dy[3, C - 1] = NAN
    dx, dg, db = _core.layernorm_backward(dy, x, mean, invstd, g)
    assert np.all(np.isnan(dx[3])) and np.all(np.isfinite(dx[:3]))
    assert np.isnan(dg[C - 1]) and np.isnan(db[C - 1])
    assert np.isfinite(dg[: C - 1]).all() and np.isfinite(db[: C - 1]).all()


def test_amsgrad_max_propagates_nan():
    p = np.ones(20, np.float32)
    vmax = np.zeros(20, np.float32)
    vmax[3] = NAN
    _core.adam_step(p, np.ones(20, np.float32), np.zeros(20, np.float32), np.zeros(20, np.float32),
                    0.1, 0.9, 0.999, 1e-8, 0.0, 1, False, vmax)
    assert np.isnan(vmax[3]) and np.isnan(p[3])
    assert np.isfinite(np.delete(p, 3)).all()


# ---- every CPU path ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_each_cpu_path(path):
    """Dispatch is fixed per process, so each other path reruns this file in a subprocess."""
    assert_file_passes_on_cpu_path(path, __file__)
