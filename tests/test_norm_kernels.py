"""deepcalc._core BatchNorm / LayerNorm kernels against a float64 NumPy reference and torch:
values, gradients, odd sizes, gamma None, large-mean stability, every CPU path (in subprocesses,
since dispatch is fixed per process), and error messages."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import cpu_path_env

from deepcalc import _core

try:
    import torch
except ImportError:  # torch comparisons skip; NumPy references still run
    torch = None

EPS = 1e-5


# ---- float64 NumPy references (straight from the definitions) -----------------------------------
def bn_axes(x):
    return (0,) if x.ndim == 2 else (0, 2)


def bcast(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def bn_forward_ref(x, gamma, beta, eps=EPS):
    x = x.astype(np.float64)
    mean = x.mean(bn_axes(x))
    var = ((x - bcast(mean, x)) ** 2).mean(bn_axes(x))
    invstd = 1.0 / np.sqrt(var + eps)
    y = (x - bcast(mean, x)) * bcast(invstd, x)
    if gamma is not None:
        y = y * bcast(gamma.astype(np.float64), x)
    if beta is not None:
        y = y + bcast(beta.astype(np.float64), x)
    return y, mean, invstd


def bn_backward_ref(dy, x, mean, invstd, gamma):
    dy, x = dy.astype(np.float64), x.astype(np.float64)
    ax = bn_axes(x)
    xhat = (x - bcast(mean.astype(np.float64), x)) * bcast(invstd.astype(np.float64), x)
    g = np.ones(x.shape[1]) if gamma is None else gamma.astype(np.float64)
    dx = bcast(g * invstd, x) * (dy - dy.mean(ax, keepdims=True) - xhat * (dy * xhat).mean(ax, keepdims=True))
    return dx, (dy * xhat).sum(ax), dy.sum(ax)


def ln_forward_ref(x, gamma, beta, eps=EPS):
    x = x.astype(np.float64)
    mean = x.mean(-1)
    invstd = 1.0 / np.sqrt(((x - mean[..., None]) ** 2).mean(-1) + eps)
    y = (x - mean[..., None]) * invstd[..., None]
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    return y, mean, invstd


def ln_backward_ref(dy, x, mean, invstd, gamma):
    dy, x = dy.astype(np.float64), x.astype(np.float64)
    xhat = (x - mean.astype(np.float64)[..., None]) * invstd.astype(np.float64)[..., None]
    g = dy * (1.0 if gamma is None else gamma.astype(np.float64))
    dx = invstd[..., None] * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    rows = tuple(range(x.ndim - 1))
    return dx, (dy * xhat).sum(rows), dy.sum(rows)


def close(actual, expected, rtol, what, scale=0.0):
    """Max error relative to max |expected|, or to `scale` when the result cancels (e.g. dx = 0
    for N = 2), where the size of the terms, not of the result, sets the rounding error."""
    actual = np.asarray(actual, np.float64)
    scale = max(np.abs(expected).max(), scale, 1e-30)
    err = np.abs(actual - expected).max() / scale
    assert err <= rtol, f"{what}: max error {err:.3g} relative to max |ref| exceeds {rtol:.1g}"


def tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


def make(rng, shape, dtype, mean=0.0, std=1.0):
    return (rng.standard_normal(shape) * std + mean).astype(dtype)


BN_SHAPES = [(2, 1), (3, 17), (17, 3), (1023, 5), (64, 1023), (256, 1024), (2, 3, 1), (5, 3, 17),
             (4, 7, 33), (1, 4, 2), (3, 1, 100)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_train_forward_backward(shape, dtype, affine):
    rng = np.random.default_rng(hash(shape) % 2**32)
    x, dy = make(rng, shape, dtype, 0.5, 2.0), make(rng, shape, dtype)
    C = shape[1]
    gamma = make(rng, C, dtype) if affine else None
    beta = make(rng, C, dtype) if affine else None
    y, mean, invstd = _core.batchnorm_forward_train(x, gamma, beta, EPS)
    assert y.dtype == mean.dtype == invstd.dtype == dtype and mean.shape == invstd.shape == (C,)
    y_ref, mean_ref, invstd_ref = bn_forward_ref(x, gamma, beta)
    close(y, y_ref, tol(dtype), "y")
    close(mean, mean_ref, tol(dtype), "mean")
    close(invstd, invstd_ref, tol(dtype), "invstd")
    dx, dgamma, dbeta = _core.batchnorm_backward(dy, x, mean, invstd, gamma)
    dx_ref, dgamma_ref, dbeta_ref = bn_backward_ref(dy, x, mean, invstd, gamma)
    terms = np.abs(bcast((1.0 if gamma is None else gamma) * invstd, x) * dy).max()
    close(dx, dx_ref, tol(dtype), "dx", terms)
    if affine:
        close(dgamma, dgamma_ref, tol(dtype), "dgamma")
        close(dbeta, dbeta_ref, tol(dtype), "dbeta")
    else:
        assert dgamma is None and dbeta is None



def fwd_bwd_two_threads(fwd, bwd, x, dy, gamma, beta):
    old = _core.get_num_threads()
    try:
        _core.set_num_threads(2)
        y, mean, invstd = fwd(x, gamma, beta, EPS)
        return (y, mean, invstd) + tuple(bwd(dy, x, mean, invstd, gamma))
    finally:
        _core.set_num_threads(old)


@pytest.mark.parametrize("kind,C", [("batchnorm", 1001), ("batchnorm", 1024), ("layernorm", 513),
                                    ("layernorm", 512)])
def test_forward_backward_streamed(kind, C):
    # outputs larger than 2 threads' L2s are written with non-temporal stores (BatchNorm from a
    # flat walk of each thread's rows, LayerNorm on vector-aligned rows): odd C puts row starts at
    # every alignment, vectors across rows and a cache line across the threads' boundary rows
    rng = np.random.default_rng(C)
    n = 1100 if kind == "batchnorm" else 2100
    x, dy = make(rng, (n, C), np.float32, 0.5, 2.0), make(rng, (n, C), np.float32)
    gamma, beta = make(rng, C, np.float32), make(rng, C, np.float32)
    if kind == "batchnorm":
        kernels = (_core.batchnorm_forward_train, _core.batchnorm_backward)
        refs = (bn_forward_ref, bn_backward_ref)
    else:
        kernels = (_core.layernorm_forward, _core.layernorm_backward)
        refs = (ln_forward_ref, ln_backward_ref)
    y, mean, invstd, dx, dgamma, dbeta = fwd_bwd_two_threads(*kernels, x, dy, gamma, beta)
    for got, want, name in zip((y, mean, invstd), refs[0](x, gamma, beta), ("y", "mean", "invstd")):
        close(got, want, tol(np.float32), name)
    dx_ref, dgamma_ref, dbeta_ref = refs[1](dy, x, mean, invstd, gamma)
    scale = bcast(gamma * invstd, x) if kind == "batchnorm" else invstd[:, None] * gamma
    close(dx, dx_ref, tol(np.float32), "dx", np.abs(scale * dy).max())
    close(dgamma, dgamma_ref, tol(np.float32), "dgamma")
    close(dbeta, dbeta_ref, tol(np.float32), "dbeta")


@pytest.mark.parametrize("shape", [(2, 5), (9, 1023, 1), (64, 17, 3)])
def test_batchnorm_eval(shape):
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        x = make(rng, shape, dtype, 3.0)
        C = shape[1]
        rm, rv = make(rng, C, dtype, 3.0), np.abs(make(rng, C, dtype)) + 0.1
        gamma, beta = make(rng, C, dtype), make(rng, C, dtype)
        y = _core.batchnorm_forward_eval(x, rm, rv, gamma, beta, EPS)
        s = bcast(1 / np.sqrt(rv.astype(np.float64) + EPS), x)
        ref = (x.astype(np.float64) - bcast(rm.astype(np.float64), x)) * s * bcast(gamma, x) + bcast(beta, x)
        close(y, ref, tol(dtype), "y")
        y = _core.batchnorm_forward_eval(x, rm, rv, None, None, EPS)
        close(y, (x.astype(np.float64) - bcast(rm.astype(np.float64), x)) * s, tol(dtype), "y (affine=False)")


@pytest.mark.parametrize("shape", [(4096, 8), (64, 4, 64)])
def test_batchnorm_large_mean_stays_accurate(shape):
    # mean 1e4, std 1: a naive E[x^2] - E[x]^2 in float32 loses every digit of the variance.
    rng = np.random.default_rng(5)
    x = make(rng, shape, np.float32, 1e4, 1.0)
    dy = make(rng, shape, np.float32)
    y, mean, invstd = _core.batchnorm_forward_train(x, None, None, EPS)
    y_ref, mean_ref, invstd_ref = bn_forward_ref(x, None, None)
    close(invstd, invstd_ref, 1e-5, "invstd")
    close(mean, mean_ref, 1e-7, "mean")
    close(y, y_ref, 1e-5, "y")
    dx, _, _ = _core.batchnorm_backward(dy, x, mean, invstd, None)
    close(dx, bn_backward_ref(dy, x, mean, invstd, None)[0], 1e-5, "dx")


def test_layernorm_large_mean_stays_accurate():
    rng = np.random.default_rng(6)
    x = make(rng, (32, 4099), np.float32, 1e4, 1.0)
    y, mean, invstd = _core.layernorm_forward(x, None, None, EPS)
    y_ref, mean_ref, invstd_ref = ln_forward_ref(x, None, None)
    close(invstd, invstd_ref, 1e-5, "invstd")
    close(y, y_ref, 1e-5, "y")


LN_SHAPES = [(1,), (3,), (5, 1), (4, 17), (7, 3, 33), (3, 1023), (300, 64), (2, 2, 512)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layernorm_forward_backward(shape, dtype, affine):
    rng = np.random.default_rng(len(shape) * 1000 + shape[-1])
    x, dy = make(rng, shape, dtype, -1.0, 3.0), make(rng, shape, dtype)
    C = shape[-1]
    gamma = make(rng, C, dtype) if affine else None
    beta = make(rng, C, dtype) if affine else None
    y, mean, invstd = _core.layernorm_forward(x, gamma, beta, EPS)
    assert mean.shape == invstd.shape == shape[:-1] and y.shape == shape
    y_ref, mean_ref, invstd_ref = ln_forward_ref(x, gamma, beta)
    close(y, y_ref, tol(dtype), "y")
    close(mean, mean_ref, tol(dtype), "mean")
    close(invstd, invstd_ref, tol(dtype), "invstd")
    dx, dgamma, dbeta = _core.layernorm_backward(dy, x, mean, invstd, gamma)
    dx_ref, dgamma_ref, dbeta_ref = ln_backward_ref(dy, x, mean, invstd, gamma)
    terms = np.abs(invstd[..., None] * dy * (1.0 if gamma is None else gamma)).max()
    close(dx, dx_ref, tol(dtype), "dx", terms)
    if affine:
        close(dgamma, dgamma_ref, tol(dtype), "dgamma")
        close(dbeta, dbeta_ref, tol(dtype), "dbeta")
    else:
        assert dgamma is None and dbeta is None


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("shape", [(64, 1023), (16, 5, 7), (2, 3)])
def test_batchnorm_matches_torch(shape):
    rng = np.random.default_rng(11)
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        x, dy = make(rng, shape, dtype, 2.0), make(rng, shape, dtype)
        C = shape[1]
        gamma, beta = make(rng, C, dtype), make(rng, C, dtype)
        y, mean, invstd = _core.batchnorm_forward_train(x, gamma, beta, EPS)
        dx, dgamma, dbeta = _core.batchnorm_backward(dy, x, mean, invstd, gamma)
        xt = torch.tensor(x, requires_grad=True)
        gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
        yt = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
        yt.backward(torch.tensor(dy))
        for ours, theirs, what in ((y, yt, "y"), (dx, xt.grad, "dx"), (dgamma, gt.grad, "dgamma"),
                                   (dbeta, bt.grad, "dbeta")):
            # dx cancels to ~0 for 2 values per channel / 1 feature: scale by its terms gamma*invstd*dy
            close(ours, theirs.detach().numpy().astype(np.float64), rtol, what, np.abs(dy).max() * np.abs(invstd).max() * np.abs(gamma).max())


@pytest.mark.skipif(torch is None, reason="torch not installed")
@pytest.mark.parametrize("shape", [(8, 512), (3, 5, 33), (1, 1)])
def test_layernorm_matches_torch(shape):
    rng = np.random.default_rng(12)
    for dtype, rtol in ((np.float32, 1e-5), (np.float64, 1e-12)):
        x, dy = make(rng, shape, dtype, 1.0), make(rng, shape, dtype)
        C = shape[-1]
        gamma, beta = make(rng, C, dtype), make(rng, C, dtype)
        y, mean, invstd = _core.layernorm_forward(x, gamma, beta, EPS)
        dx, dgamma, dbeta = _core.layernorm_backward(dy, x, mean, invstd, gamma)
        xt = torch.tensor(x, requires_grad=True)
        gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
        yt = torch.nn.functional.layer_norm(xt, (C,), gt, bt, eps=EPS)
        yt.backward(torch.tensor(dy))
        for ours, theirs, what in ((y, yt, "y"), (dx, xt.grad, "dx"), (dgamma, gt.grad, "dgamma"),
                                   (dbeta, bt.grad, "dbeta")):
            # dx cancels to ~0 for 2 values per channel / 1 feature: scale by its terms gamma*invstd*dy
            close(ours, theirs.detach().numpy().astype(np.float64), rtol, what, np.abs(dy).max() * np.abs(invstd).max() * np.abs(gamma).max())


def test_thread_counts_agree():
    rng = np.random.default_rng(13)
    x, dy = make(rng, (333, 70), np.float32), make(rng, (333, 70), np.float32)
    old = _core.get_num_threads()
    try:
        outs = []
        for n in (1, 2, 3):
            _core.set_num_threads(n)
            y, m, s = _core.batchnorm_forward_train(x, None, None, EPS)
            outs.append((y, m, s) + _core.batchnorm_backward(dy, x, m, s, None)[:1])
    finally:
        _core.set_num_threads(old)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- every CPU path, in subprocesses ------------------------------------------------------------
ORDER = ["scalar", "avx2", "avx512"]


def supported_paths():
    best = _core.cpu_detected_capability()
    return ORDER[: ORDER.index(best) + 1]


@pytest.mark.parametrize("path", ORDER)
def test_every_cpu_path(path):
    if path not in supported_paths():
        pytest.skip(f"{path} not supported on this CPU")
    env = cpu_path_env(path)
    code = (
        "from deepcalc import _core; import sys; "
        f"assert _core.cpu_capability() == {path!r}, _core.cpu_capability(); "
        "import pytest; sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', "
        f"{__file__!r}, '-k', 'train_forward_backward or layernorm_forward_backward or streamed or large_mean or eval']))"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


# ---- errors ----------------------------------------------------------------------------------------
def test_batchnorm_errors():
    x = np.zeros((32, 1000), np.float32)
    with pytest.raises(ValueError, match=r"batchnorm: x has 1000 channels \(shape \(32, 1000\)\), gamma has 1024"):
        _core.batchnorm_forward_train(x, np.ones(1024, np.float32), None, EPS)
    with pytest.raises(TypeError, match=r"batchnorm: gamma is float64 but x is float32"):
        _core.batchnorm_forward_train(x, np.ones(1000), None, EPS)
    with pytest.raises(TypeError, match=r"batchnorm: x must be float32 or float64, got int64"):
        _core.batchnorm_forward_train(np.zeros((4, 3), np.int64), None, None, EPS)
    with pytest.raises(ValueError, match=r"batchnorm: x with shape \(1000, 32\) must be C-contiguous"):
        _core.batchnorm_forward_train(x.T, None, None, EPS)
    with pytest.raises(ValueError, match=r"Expected more than 1 value per channel when training, got input size \(1, 10\)"):
        _core.batchnorm_forward_train(np.zeros((1, 10), np.float32), None, None, EPS)
    with pytest.raises(ValueError, match=r"batchnorm: x must be \(N, C\) or \(N, C, L\), got shape \(4,\)"):
        _core.batchnorm_forward_train(np.zeros(4, np.float32), None, None, EPS)
    m = np.zeros(1000, np.float32)
    with pytest.raises(ValueError, match=r"batchnorm_backward: dy has shape \(32, 999\), expected the shape of x \(32, 1000\)"):
        _core.batchnorm_backward(np.zeros((32, 999), np.float32), x, m, m, None)
    with pytest.raises(ValueError, match=r"batchnorm_backward: x has 1000 channels \(shape \(32, 1000\)\), invstd has 3"):
        _core.batchnorm_backward(x, x, m, m[:3], None)
    with pytest.raises(ValueError, match=r"batchnorm_eval: x has 1000 channels .*running_var has 999"):
        _core.batchnorm_forward_eval(x, m, m[:999], None, None, EPS)


def test_layernorm_errors():
    x = np.zeros((8, 511), np.float32)
    with pytest.raises(ValueError, match=r"layernorm: x has 511 features in its last axis \(shape \(8, 511\)\), gamma has 512"):
        _core.layernorm_forward(x, np.ones(512, np.float32), None, EPS)
    with pytest.raises(ValueError, match=r"layernorm: x must have a non-empty last axis, got shape \(\)"):
        _core.layernorm_forward(np.zeros((), np.float32), None, None, EPS)
    with pytest.raises(ValueError, match=r"layernorm: x with shape \(511, 8\) must be C-contiguous"):
        _core.layernorm_forward(x.T, None, None, EPS)
    with pytest.raises(TypeError, match=r"layernorm_backward: dy is float64 but x is float32"):
        _core.layernorm_backward(x.astype(np.float64), x, np.zeros(8, np.float32), np.zeros(8, np.float32), None)
    with pytest.raises(ValueError, match=r"layernorm_backward: mean has shape \(7,\), expected x.shape\[:-1\] of x \(8, 511\)"):
        _core.layernorm_backward(x, x, np.zeros(7, np.float32), np.zeros(8, np.float32), None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_update_running_matches_torch_rule(dtype):
    rng = np.random.default_rng(3)
    c, m, momentum, eps = 37, 9, 0.1, 1e-5
    rm = rng.standard_normal(c).astype(dtype)
    rv = rng.uniform(0.5, 2.0, c).astype(dtype)
    mean = rng.standard_normal(c).astype(dtype)
    var = rng.uniform(0.1, 3.0, c)
    invstd = (1 / np.sqrt(var + eps)).astype(dtype)
    want_m = (1 - momentum) * rm.astype(np.float64) + momentum * mean
    want_v = (1 - momentum) * rv.astype(np.float64) + momentum * var * m / (m - 1)
    _core.batchnorm_update_running(rm, rv, mean, invstd, m, momentum, eps)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(rm, want_m, rtol=tol)
    np.testing.assert_allclose(rv, want_v, rtol=tol)


def test_update_running_rejects_bad_input():
    v = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match="running_var"):
        _core.batchnorm_update_running(v.copy(), np.zeros(4), v, v, 8, 0.1, 1e-5)
    with pytest.raises(ValueError, match="running_mean has shape"):
        _core.batchnorm_update_running(np.zeros(5, np.float32), v.copy(), v, v, 8, 0.1, 1e-5)
    with pytest.raises(ValueError, match="count"):
        _core.batchnorm_update_running(v.copy(), v.copy(), v, v, 1, 0.1, 1e-5)
    ro = v.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _core.batchnorm_update_running(ro, v.copy(), v, v, 8, 0.1, 1e-5)
