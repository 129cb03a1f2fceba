"""Tests of the unpacked ("direct") GEMM path (cpp/gemm/gemm_direct_simd.h), which takes the
products with B not transposed and either k <= 16 or few rows (m <= 12 on AVX-512, 6 on AVX2):
its row tiles of every height, masked column tails, alpha/beta, leading dimensions, batches,
one and two threads, and each CPU path, against float64 NumPy references."""

import numpy as np
import pytest
from conftest import rerun_file_on_cpu_path
from test_gemm_kernels import check_close

import deepcalc as dc
from deepcalc import _core

DTYPES = [np.float32, np.float64]
ODD_N = [2, 7, 17, 33, 47, 65]  # one masked vector, a full tile plus a tail, several tiles


def rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    n = dc.get_num_threads()
    dc.set_num_threads(request.param)
    yield request.param
    dc.set_num_threads(n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
def test_short_k_every_m(dtype, ta, threads):
    """k = 1..16 (the short-k rule) with m = 1..20: every row-tile height, one tile and two."""
    rng = np.random.default_rng(1)
    for k in range(1, 17):
        for m in range(1, 21):
            for n in ODD_N:
                a = rand(rng, (k, m) if ta else (m, k), dtype)
                b = rand(rng, (k, n), dtype)
                check_close(_core.gemm(a, b, trans_a=ta), a, b, ta, False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
def test_few_rows_long_k(dtype, ta, threads):
    """m = 1..20 with long k: m <= the direct tile's rows goes direct, larger m is packed."""
    rng = np.random.default_rng(2)
    for m in range(1, 21):
        for k in (17, 128, 301):
            for n in (33, 256, 300):
                a = rand(rng, (k, m) if ta else (m, k), dtype)
                b = rand(rng, (k, n), dtype)
                check_close(_core.gemm(a, b, trans_a=ta), a, b, ta, False)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("m,n,k", [(128, 256, 10), (10, 256, 128), (5, 47, 3), (37, 65, 16), (13, 17, 1)])
def test_leading_dims_alpha_beta(dtype, ta, m, n, k, threads):
    """Sliced operands (ld > cols), alpha and beta, and beta = 0 ignoring NaN in out."""
    rng = np.random.default_rng(3)
    big_a = rand(rng, ((k, m) if ta else (m, k)), dtype)
    big_a = np.pad(big_a, ((2, 3), (4, 5)))
    a = big_a[2:-3, 4:-5]
    b = np.pad(rand(rng, (k, n), dtype), ((1, 1), (3, 6)))[1:-1, 3:-6]
    for v in (a, b):  # leading dimension larger than the row (a single row has none)
        assert v.shape[0] == 1 or v.strides[0] > v.shape[1] * v.itemsize
    c0 = rand(rng, (m, n), dtype)
    out = c0.copy()
    _core.gemm(a, b, trans_a=ta, alpha=-0.75, beta=1.5, out=out)
    check_close(out, a, b, ta, False, alpha=-0.75, beta=1.5, c0=c0)
    out = np.full((m, n), np.nan, dtype)
    _core.gemm(a, b, trans_a=ta, alpha=2.0, out=out)
    check_close(out, a, b, ta, False, alpha=2.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
def test_batched(dtype, ta, threads):
    rng = np.random.default_rng(4)
    for m, n, k in [(9, 33, 5), (128, 40, 10), (7, 70, 90)]:
        a3 = rand(rng, (4,) + ((k, m) if ta else (m, k)), dtype)
        b3 = rand(rng, (4, k, n), dtype)
        b2 = rand(rng, (k, n), dtype)
        check_close(_core.gemm(a3, b3, trans_a=ta), a3, b3, ta, False)
        check_close(_core.gemm(a3, b2, trans_a=ta), a3, b2[None], ta, False)  # broadcast B
        check_close(_core.gemm(a3[:1], b3, trans_a=ta), a3[:1], b3, ta, False)  # broadcast A


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_features", [1, 3, 10, 16])
def test_linear_backward_small_layer(dtype, out_features, threads):
    """linear_backward of a narrow layer: dx = dz @ W has k = OUT, dW = dz^T @ x has m = OUT."""
    rng = np.random.default_rng(5)
    N, IN = 37, 70
    x, w = rand(rng, (N, IN), dtype), rand(rng, (out_features, IN), dtype)
    dy = rand(rng, (N, out_features), dtype)
    dx, dw, db = _core.linear_backward(dy, x, w)
    check_close(dx, dy, w, False, False)
    check_close(dw, dy, x, True, False)
    err = np.abs(db - dy.astype(np.float64).sum(0))
    assert np.all(err <= (1e-5 if dtype == np.float32 else 1e-12) * np.abs(dy).sum(0))


@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_each_cpu_path(path):
    """Dispatch is fixed per process, so each other path reruns this file in a subprocess."""
    proc = rerun_file_on_cpu_path(path, __file__)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
