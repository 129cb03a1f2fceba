"""Tests of the native GEMM family (deepcalc._core.gemm / linear_forward / linear_backward /
activation_backward) against float64 NumPy references: odd sizes, all layouts, leading
dimensions, alpha/beta, batches with broadcast, fused epilogues, error messages, each CPU path."""
import math

import numpy as np
import pytest
from conftest import assert_file_passes_on_cpu_path

from deepcalc import _core

RNG = np.random.default_rng(1234)
LAYOUTS = [(False, False), (False, True), (True, False), (True, True)]
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-6, np.float64: 1e-13}  # per unit of sum_p |a_ip||b_pj|, scaled by sqrt(k)


def operands(m, n, k, ta, tb, dtype, batch=None):
    lead = () if batch is None else (batch,)
    a = RNG.standard_normal(lead + ((k, m) if ta else (m, k))).astype(dtype)
    b = RNG.standard_normal(lead + ((n, k) if tb else (k, n))).astype(dtype)
    return a, b


def op(x, t):
    return np.swapaxes(x, -1, -2) if t else x


def check_close(c, a, b, ta, tb, alpha=1.0, beta=0.0, c0=None):
    """c must equal alpha op(a) op(b) + beta c0 to within a k-scaled float error bound."""
    A, B = op(a, ta).astype(np.float64), op(b, tb).astype(np.float64)
    ref = alpha * (A @ B)
    bound = abs(alpha) * (np.abs(A) @ np.abs(B))
    if c0 is not None:
        ref = ref + beta * c0.astype(np.float64)
        bound = bound + abs(beta) * np.abs(c0)
    k = A.shape[-1]
    tol = TOL[c.dtype.type] * math.sqrt(max(k, 1)) * 4
    assert c.shape == ref.shape
    err = np.abs(c - ref)
    assert np.all(err <= tol * bound + 1e-30), f"max err {err.max()} vs bound {(tol * bound).max()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", LAYOUTS)
def test_every_size_1_to_70(dtype, ta, tb):
    for i in range(1, 71):
        m, n, k = i, (i * 7) % 70 + 1, (i * 13) % 70 + 1
        a, b = operands(m, n, k, ta, tb, dtype)
        check_close(_core.gemm(a, b, ta, tb), a, b, ta, tb)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_sizes_up_to_600(dtype):
    for ta, tb in LAYOUTS:
        for _ in range(2):
            m, n, k = RNG.integers(1, 601, size=3)
            a, b = operands(m, n, k, ta, tb, dtype)
            check_close(_core.gemm(a, b, ta, tb), a, b, ta, tb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", LAYOUTS)
def test_matrix_vector_shapes(dtype, ta, tb):
    """m == 1 or n == 1 take the unpacked matrix-vector path: sizes around the vector widths,
    large enough to be split across threads, with alpha/beta and batches."""
    for m, n, k in [(1, 1, 1), (1, 37, 5), (1, 700, 300), (1, 4099, 17), (650, 1, 333), (9, 1, 1000), (1, 1, 999)]:
        a, b = operands(m, n, k, ta, tb, dtype)
        check_close(_core.gemm(a, b, ta, tb), a, b, ta, tb)
        c0 = RNG.standard_normal((m, n)).astype(dtype)
        out = c0.copy()
        _core.gemm(a, b, ta, tb, alpha=0.5, beta=-2.0, out=out)
        check_close(out, a, b, ta, tb, alpha=0.5, beta=-2.0, c0=c0)
    a3, b2 = operands(1, 300, 70, ta, tb, dtype, batch=3)[0], operands(1, 300, 70, ta, tb, dtype)[1]
    check_close(_core.gemm(a3, b2, ta, tb), a3, b2[None], ta, tb)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", LAYOUTS)
def test_leading_dims_alpha_beta(dtype, ta, tb):
    m, n, k = 37, 45, 83
    big_a, big_b = operands(m + 9, n + 11, k + 7, ta, tb, dtype)
    a = big_a[3 : 3 + (k if ta else m), 5 : 5 + (m if ta else k)]  # a slice: ld > cols
    b = big_b[2 : 2 + (n if tb else k), 4 : 4 + (k if tb else n)]
    assert not a.flags.c_contiguous and not b.flags.c_contiguous
    c0 = RNG.standard_normal((m, n)).astype(dtype)
    out = c0.copy()
    res = _core.gemm(a, b, ta, tb, alpha=-0.75, beta=1.5, out=out)
    assert res is out or np.shares_memory(res, out)
    check_close(out, a, b, ta, tb, alpha=-0.75, beta=1.5, c0=c0)


def test_beta_zero_ignores_nan_in_out():
    a, b = operands(20, 30, 40, False, False, np.float32)
    out = np.full((20, 30), np.nan, np.float32)
    _core.gemm(a, b, out=out)
    check_close(out, a, b, False, False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", LAYOUTS)
def test_batched_with_broadcast(dtype, ta, tb):
    m, n, k, nb = 19, 40, 33, 5
    a3, b3 = operands(m, n, k, ta, tb, dtype, batch=nb)
    a2, b2 = operands(m, n, k, ta, tb, dtype)
    check_close(_core.gemm(a3, b3, ta, tb), a3, b3, ta, tb)
    check_close(_core.gemm(a3, b2, ta, tb), a3, b2[None], ta, tb)  # 2-D operand broadcast
    check_close(_core.gemm(a2, b3, ta, tb), a2[None], b3, ta, tb)
    check_close(_core.gemm(a3, b3[:1], ta, tb), a3, b3[:1], ta, tb)  # batch size 1 broadcast
    a_strided = np.concatenate([a3, a3], axis=0)[::2]  # batch stride twice the matrix size
    check_close(_core.gemm(a_strided, b3, ta, tb), a_strided, b3, ta, tb)
    big, _ = operands(200, 200, 200, False, False, dtype, batch=3)  # large enough to split each GEMM
    check_close(_core.gemm(big, big, ta, tb), big, big, ta, tb)


@pytest.mark.parametrize("dtype,n", [(np.float32, 2048), (np.float64, 1024)])
def test_random_vector_check_large(dtype, n):
    """O(mn) check of a large product: C t must equal A (B t) for a random vector t."""
    if _core.cpu_capability() == "scalar":
        n //= 4  # the reference loops are slow; the shape still spans many cache blocks
    a = RNG.standard_normal((n, n + 3)).astype(dtype)
    b = RNG.standard_normal((n + 3, n - 5)).astype(dtype)
    c = _core.gemm(a, b)
    t = RNG.standard_normal(n - 5)
    lhs = c.astype(np.float64) @ t
    rhs = a.astype(np.float64) @ (b.astype(np.float64) @ t)
    scale = np.abs(a).astype(np.float64) @ (np.abs(b).astype(np.float64) @ np.abs(t))
    assert np.all(np.abs(lhs - rhs) <= TOL[dtype] * math.sqrt(n) * 4 * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_dimensions(dtype):
    a, b = np.zeros((0, 5), dtype), np.zeros((5, 7), dtype)
    assert _core.gemm(a, b).shape == (0, 7)
    assert _core.gemm(np.zeros((4, 5), dtype), np.zeros((5, 0), dtype)).shape == (4, 0)
    c = _core.gemm(np.zeros((4, 0), dtype), np.zeros((0, 6), dtype))
    assert c.shape == (4, 6) and np.all(c == 0)
    out = np.ones((4, 6), dtype)
    _core.gemm(np.zeros((4, 0), dtype), np.zeros((0, 6), dtype), beta=2.5, out=out)
    assert np.all(out == 2.5)


# ---- fused epilogues -------------------------------------------------------------------------

ERF = np.vectorize(math.erf)
ACTS = {
    "none": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "gelu": lambda z: 0.5 * z * (1 + ERF(z / math.sqrt(2))),
    "tanh": np.tanh,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
}
DERIVS = {  # act' from what the forward saves (y, or z for gelu)
    "none": lambda s: np.ones_like(s),
    "relu": lambda y: (y > 0).astype(np.float64),
    "gelu": lambda z: 0.5 * (1 + ERF(z / math.sqrt(2))) + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi),
    "tanh": lambda y: 1 - y * y,
    "sigmoid": lambda y: y * (1 - y),
}
ACT_TOL = {np.float32: 3e-6, np.float64: 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("shape", [(128, 784, 256), (33, 70, 45), (5, 1, 3), (1, 300, 70), (40, 50, 1)])
def test_linear_forward_fused(dtype, act, shape):
    N, IN, OUT = shape
    x = RNG.standard_normal((N, IN)).astype(dtype) / math.sqrt(IN) * 2
    w = RNG.standard_normal((OUT, IN)).astype(dtype)
    bias = RNG.standard_normal(OUT).astype(dtype)
    y, z = _core.linear_forward(x, w, bias, activation=act, save_preactivation=True)
    z_ref = x.astype(np.float64) @ w.T.astype(np.float64) + bias
    bound = np.abs(x) @ np.abs(w.T) + np.abs(bias)
    assert np.all(np.abs(z - z_ref) <= TOL[dtype] * math.sqrt(IN) * 4 * bound)
    # y against the activation of the kernel's own z isolates the epilogue's accuracy
    y_ref = ACTS[act](z.astype(np.float64))
    assert np.all(np.abs(y - y_ref) <= ACT_TOL[dtype] * (1 + np.abs(y_ref)))
    y2, none = _core.linear_forward(x, w, None, activation=act)
    assert none is None
    assert np.all(np.abs(y2 - ACTS[act](z_ref - bias)) <= 1e-4 * (1 + np.abs(y2)))


@pytest.mark.parametrize("act", ["gelu", "tanh", "sigmoid"])
def test_epilogue_accuracy_wide_range(act):
    """Vector erf/tanh/sigmoid: abs error <= 2e-7 max(1, |x|) (A&S 7.1.26 erf is 1.5e-7), and at
    most twice torch's own float32 error where torch is installed."""
    x = np.linspace(-10, 10, 20001, dtype=np.float32)[:, None]
    y, _ = _core.linear_forward(x, np.ones((1, 1), np.float32), activation=act)
    ref = ACTS[act](x.astype(np.float64))
    err = np.abs(y - ref)
    assert np.all(err <= 2e-7 * np.maximum(1, np.abs(x))), err.max()
    torch = pytest.importorskip("torch")
    fn = {"gelu": torch.nn.functional.gelu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[act]
    torch_err = np.abs(fn(torch.from_numpy(x)).numpy() - ref).max()
    assert err.max() <= 2 * max(torch_err, 6e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", list(ACTS))
def test_linear_backward(dtype, act):
    N, IN, OUT = 57, 83, 41
    x = RNG.standard_normal((N, IN)).astype(dtype)
    w = RNG.standard_normal((OUT, IN)).astype(dtype) / math.sqrt(IN)
    bias = RNG.standard_normal(OUT).astype(dtype)
    y, z = _core.linear_forward(x, w, bias, activation=act, save_preactivation=True)
    saved = None if act == "none" else (z if act == "gelu" else y)
    dy = RNG.standard_normal((N, OUT)).astype(dtype)
    dx, dw, db = _core.linear_backward(dy, x, w, saved, activation=act)
    dz = dy.astype(np.float64) * DERIVS[act](saved.astype(np.float64) if saved is not None else dy)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(db, dz.sum(0), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dz @ w, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, dz.T @ x, rtol=tol, atol=tol)
    only_dw = _core.linear_backward(dy, x, w, saved, activation=act, need_dx=False, need_db=False)
    assert only_dw[0] is None and only_dw[2] is None
    np.testing.assert_allclose(only_dw[1], dw, rtol=1e-6, atol=1e-6)
    dz_alone = _core.activation_backward(dy, saved, act)
    np.testing.assert_allclose(dz_alone, dz, rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ["relu", "gelu", "tanh", "sigmoid"])
def test_activation_backward_any_shape(act):
    saved = RNG.standard_normal((3, 5, 7, 11)).astype(np.float32)
    dy = RNG.standard_normal(saved.shape).astype(np.float32)
    dz = _core.activation_backward(dy, saved, act)
    np.testing.assert_allclose(dz, dy * DERIVS[act](saved.astype(np.float64)), rtol=2e-6, atol=2e-6)


# ---- errors ------------------------------------------------------------------------------------


def test_error_messages():
    f32 = np.ones((128, 785), np.float32)
    with pytest.raises(TypeError, match="float64.*float32|float32.*float64"):
        _core.gemm(f32, np.ones((785, 4), np.float64))
    with pytest.raises(ValueError, match=r"gemm: a is \(128, 785\) and b is \(784, 256\) \(trans_a=False, "
                       r"trans_b=False\): inner dimensions 785 and 784 differ"):
        _core.gemm(f32, np.ones((784, 256), np.float32))
    with pytest.raises(ValueError, match=r"gemm: a with shape \(785, 128\) and strides \(4, 3140\) must be "
                       "row-major with unit stride in its last axis"):
        _core.gemm(f32.T, np.ones((128, 3), np.float32))
    with pytest.raises(ValueError, match="out has shape"):
        _core.gemm(f32, np.ones((785, 4), np.float32), out=np.zeros((128, 5), np.float32))
    with pytest.raises(ValueError, match="batch sizes 2 and 3"):
        _core.gemm(np.ones((2, 4, 4), np.float32), np.ones((3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="linear: x has 785 features, weight expects 784"):
        _core.linear_forward(f32, np.ones((10, 784), np.float32))
    with pytest.raises(ValueError, match="unknown activation 'swish'; expected one of none, relu"):
        _core.linear_forward(f32, np.ones((10, 785), np.float32), activation="swish")
    with pytest.raises(ValueError, match=r"linear: bias has shape \(9,\), expected \(10,\)"):
        _core.linear_forward(f32, np.ones((10, 785), np.float32), np.ones(9, np.float32))


# ---- every CPU path ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_each_cpu_path(path):
    """Dispatch is fixed per process, so each other path reruns this file in a subprocess."""
    assert_file_passes_on_cpu_path(path, __file__)
