"""deepcalc._core.norm_forward_jvp / norm_backward_jvp (BatchNorm and LayerNorm tangents) against a
float64 NumPy implementation of the formulas, and against central differences of the real forward
and backward kernels; every tangent None or given, gamma None, odd sizes, NaN, empty inputs,
errors, and every CPU path (in subprocesses, since dispatch is fixed per process)."""
import itertools

import numpy as np
import pytest
from conftest import CPU_PATHS, assert_file_passes_on_cpu_path

from deepcalc import _core

EPS = 1e-5
RTOL = {np.float32: 1e-4, np.float64: 1e-10}


# ---- float64 NumPy reference, straight from the formulas ----------------------------------------
# Values are laid out as (G, M): one row per statistic group (BatchNorm: channel c over N and L;
# LayerNorm: one row of x). gamma is per group for BatchNorm, per column for LayerNorm.
def to_groups(a, batch):
    a = np.asarray(a, np.float64)
    if not batch:
        return a
    a = a if a.ndim == 3 else a[:, :, None]
    return a.transpose(1, 0, 2).reshape(a.shape[1], -1)


def from_groups(g, shape, batch):
    if not batch:
        return g
    N, C, L = shape if len(shape) == 3 else shape + (1,)
    return g.reshape(C, N, L).transpose(1, 0, 2).reshape(shape)


def param(v, batch, default):
    if v is None:
        return default
    v = np.asarray(v, np.float64)
    return v[:, None] if batch else v[None, :]


def sum_p(a, batch):
    return a.sum(1) if batch else a.sum(0)


def avg(a):
    return a.mean(1, keepdims=True)


def common_ref(x, mean, invstd, t_x, batch):
    X = to_groups(x, batch)
    inv = np.asarray(invstd, np.float64)[:, None]
    xh = (X - np.asarray(mean, np.float64)[:, None]) * inv
    T = np.zeros_like(X) if t_x is None else to_groups(t_x, batch)
    r = avg(xh * T)
    t_xh = inv * (T - avg(T) - xh * r)
    return X, inv, xh, r, t_xh


def forward_jvp_ref(x, mean, invstd, gamma, t_x, t_gamma, t_beta, batch):
    _, _, xh, _, t_xh = common_ref(x, mean, invstd, t_x, batch)
    t_y = param(gamma, batch, 1.0) * t_xh + xh * param(t_gamma, batch, 0.0) + param(t_beta, batch, 0.0)
    return from_groups(t_y, x.shape, batch)


def backward_jvp_ref(dy, x, mean, invstd, gamma, t_dy, t_x, t_gamma, batch):
    X, inv, xh, r, t_xh = common_ref(x, mean, invstd, t_x, batch)
    D = to_groups(dy, batch)
    TD = np.zeros_like(X) if t_dy is None else to_groups(t_dy, batch)
    g, tg = param(gamma, batch, 1.0), param(t_gamma, batch, 0.0)
    h, th = D * g, TD * g + D * tg
    m1 = avg(h * xh)
    dx = inv * (h - avg(h) - xh * m1)
    t_dx = -inv * r * dx + inv * (th - avg(th) - t_xh * m1 - xh * (avg(th * xh) + avg(h * t_xh)))
    t_dx = from_groups(t_dx, x.shape, batch)
    if gamma is None:
        return t_dx, None, None
    return t_dx, sum_p(TD * xh + D * t_xh, batch), sum_p(TD, batch)


# ---- helpers ----------------------------------------------------------------------------------------
def stats(x, batch):
    """mean, invstd of x from the forward kernel, in x's dtype."""
    fwd = _core.batchnorm_forward_train if batch else _core.layernorm_forward
    return fwd(x, None, None, EPS)[1:]


def close(got, ref, dtype, name):
    assert got.dtype == dtype and got.shape == ref.shape, (name, got.dtype, got.shape, ref.shape)
    rtol = RTOL[dtype]
    scale = np.nanmax(np.abs(ref)) if np.isfinite(ref).any() else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale, err_msg=name)


def make(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def subsets(*names):
    """Every choice of which of ``names`` are given (True) or None (False)."""
    return [dict(zip(names, bits)) for bits in itertools.product([False, True], repeat=len(names))]


CASES = ([("batch", s) for s in [(2, 1), (5, 3), (64, 17), (5, 33), (2, 3, 5), (5, 17, 3), (2, 1, 7),
                                 (64, 3, 2)]]
         + [("layer", s) for s in [(2, 1), (5, 3), (64, 17), (5, 33), (2, 33), (64, 1)]])


# ---- values against the NumPy formulas ------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("kind,shape", CASES)
def test_forward_jvp_matches_formula(kind, shape, affine, dtype):
    batch = kind == "batch"
    rng = np.random.default_rng(sum(shape) + 7 * len(shape) + batch)
    C = shape[1] if batch else shape[-1]
    x = make(rng, shape, dtype) * 2 + 1
    mean, invstd = stats(x, batch)
    gamma = make(rng, C, dtype) if affine else None
    full = dict(t_x=make(rng, shape, dtype), t_gamma=make(rng, C, dtype) if affine else None,
                t_beta=make(rng, C, dtype))
    for given in subsets("t_x", "t_gamma", "t_beta"):
        t = {k: (v if given[k] else None) for k, v in full.items()}
        t_y = _core.norm_forward_jvp(x, mean, invstd, gamma, t["t_x"], t["t_gamma"], t["t_beta"], batch)
        ref = forward_jvp_ref(x, mean, invstd, gamma, t["t_x"], t["t_gamma"], t["t_beta"], batch)
        close(t_y, ref, dtype, f"t_y {given}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("kind,shape", CASES)
def test_backward_jvp_matches_formula(kind, shape, affine, dtype):
    batch = kind == "batch"
    rng = np.random.default_rng(sum(shape) + 7 * len(shape) + batch + 100)
    C = shape[1] if batch else shape[-1]
    x, dy = make(rng, shape, dtype) * 2 + 1, make(rng, shape, dtype)
    mean, invstd = stats(x, batch)
    gamma = make(rng, C, dtype) if affine else None
    full = dict(t_dy=make(rng, shape, dtype), t_x=make(rng, shape, dtype),
                t_gamma=make(rng, C, dtype) if affine else None)
    for given in subsets("t_dy", "t_x", "t_gamma"):
        t = {k: (v if given[k] else None) for k, v in full.items()}
        out = _core.norm_backward_jvp(dy, x, mean, invstd, gamma, t["t_dy"], t["t_x"], t["t_gamma"], batch)
        ref = backward_jvp_ref(dy, x, mean, invstd, gamma, t["t_dy"], t["t_x"], t["t_gamma"], batch)
        close(out[0], ref[0], dtype, f"t_dx {given}")
        if affine:
            close(out[1], ref[1], dtype, f"t_dgamma {given}")
            close(out[2], ref[2], dtype, f"t_dbeta {given}")
        else:
            assert out[1] is None and out[2] is None


def test_all_tangents_none_give_zero():
    rng = np.random.default_rng(3)
    x, dy = make(rng, (5, 3, 4), np.float64), make(rng, (5, 3, 4), np.float64)
    mean, invstd = stats(x, True)
    assert np.all(_core.norm_forward_jvp(x, mean, invstd, np.ones(3), None, None, None, True) == 0)
    t_dx, t_dg, t_db = _core.norm_backward_jvp(dy, x, mean, invstd, np.ones(3), None, None, None, True)
    assert np.all(t_dx == 0) and np.all(t_dg == 0) and np.all(t_db == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layernorm_two_threads_partials(dtype):
    # 512 x 129 values are enough work for two threads: t_dgamma/t_dbeta sum per-thread partials
    rng = np.random.default_rng(5)
    shape, C = (512, 129), 129
    x, dy, t_dy, t_x = (make(rng, shape, dtype) for _ in range(4))
    gamma, t_gamma = make(rng, C, dtype), make(rng, C, dtype)
    mean, invstd = stats(x, False)
    ref = backward_jvp_ref(dy, x, mean, invstd, gamma, t_dy, t_x, t_gamma, False)
    old = _core.get_num_threads()
    try:
        for n in (1, 2):
            _core.set_num_threads(n)
            out = _core.norm_backward_jvp(dy, x, mean, invstd, gamma, t_dy, t_x, t_gamma, False)
            for got, want, name in zip(out, ref, ("t_dx", "t_dgamma", "t_dbeta")):
                close(got, want, dtype, f"{name} threads={n}")
    finally:
        _core.set_num_threads(old)


# ---- central differences of the real forward / backward kernels (float64) ---------------------------
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("kind,shape", [("batch", (5, 3)), ("batch", (4, 17, 3)), ("batch", (64, 1)),
                                        ("layer", (5, 33)), ("layer", (2, 17)), ("layer", (7, 1))])
def test_matches_central_differences(kind, shape, affine):
    batch, e = kind == "batch", 1e-6
    rng = np.random.default_rng(11 + sum(shape))
    C = shape[1] if batch else shape[-1]
    x, dy, t_x, t_dy = (make(rng, shape, np.float64) for _ in range(4))
    gamma, beta = (make(rng, C, np.float64), make(rng, C, np.float64)) if affine else (None, None)
    t_gamma, t_beta = (make(rng, C, np.float64), make(rng, C, np.float64)) if affine else (None, None)
    fwd = _core.batchnorm_forward_train if batch else _core.layernorm_forward
    bwd = _core.batchnorm_backward if batch else _core.layernorm_backward

    def at(s):  # primal inputs moved by s times their tangents
        g = None if gamma is None else gamma + s * t_gamma
        b = None if beta is None else beta + s * t_beta
        return x + s * t_x, dy + s * t_dy, g, b

    def forward(s):
        xs, _, g, b = at(s)
        return fwd(xs, g, b, EPS)[0]

    def backward(s):
        xs, dys, g, _ = at(s)
        mean, invstd = fwd(xs, None, None, EPS)[1:]
        return bwd(dys, xs, mean, invstd, g)

    mean, invstd = stats(x, batch)
    t_y = _core.norm_forward_jvp(x, mean, invstd, gamma, t_x, t_gamma, t_beta, batch)
    fd = (forward(e) - forward(-e)) / (2 * e)
    np.testing.assert_allclose(t_y, fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max(), err_msg="t_y")

    out = _core.norm_backward_jvp(dy, x, mean, invstd, gamma, t_dy, t_x, t_gamma, batch)
    plus, minus = backward(e), backward(-e)
    names = ("t_dx", "t_dgamma", "t_dbeta") if affine else ("t_dx",)
    for i, name in enumerate(names):
        fd = (plus[i] - minus[i]) / (2 * e)
        np.testing.assert_allclose(out[i], fd, rtol=1e-6, atol=1e-7 * np.abs(fd).max() + 1e-9, err_msg=name)
    if not affine:
        assert out[1] is None and out[2] is None


# ---- NaN and empty inputs -------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("where", ["x", "t_x", "dy", "t_dy"])
def test_nan_propagates(batch, where, dtype):
    rng = np.random.default_rng(17)
    shape, C = (6, 5), 5
    a = {k: make(rng, shape, dtype) for k in ("x", "t_x", "dy", "t_dy")}
    gamma, t_gamma, t_beta = (make(rng, C, dtype) for _ in range(3))
    mean, invstd = stats(a["x"], batch)  # finite statistics: the NaN enters through `where` only
    a[where][2, 1] = np.nan
    t_y = _core.norm_forward_jvp(a["x"], mean, invstd, gamma, a["t_x"], t_gamma, t_beta, batch)
    out = _core.norm_backward_jvp(a["dy"], a["x"], mean, invstd, gamma, a["t_dy"], a["t_x"], t_gamma, batch)
    ref_y = forward_jvp_ref(a["x"], mean, invstd, gamma, a["t_x"], t_gamma, t_beta, batch)
    ref = backward_jvp_ref(a["dy"], a["x"], mean, invstd, gamma, a["t_dy"], a["t_x"], t_gamma, batch)
    if where in ("x", "t_x"):
        assert np.isnan(t_y).any() and np.isfinite(t_y).any()
    close(t_y, ref_y, dtype, "t_y")  # NaN exactly where the reference has NaN
    assert np.isnan(out[0]).any() and np.isfinite(out[0]).any()
    for got, want, name in zip(out, ref, ("t_dx", "t_dgamma", "t_dbeta")):
        close(got, want, dtype, name)
    # the NaN's group is NaN, the other groups are not
    group = (lambda v: v[:, 1]) if batch else (lambda v: v[2])
    other = (lambda v: v[:, 0]) if batch else (lambda v: v[0])
    assert np.isnan(group(out[0])).all() and np.isfinite(other(out[0])).all()


@pytest.mark.parametrize("batch,shape", [(True, (0, 3)), (True, (4, 0)), (True, (0, 3, 2)),
                                         (True, (2, 3, 0)), (False, (0, 5)), (False, (3, 0))])
def test_empty_inputs_give_empty_results(batch, shape):
    x = np.zeros(shape)
    C = shape[1] if batch else shape[-1]
    G = C if batch else shape[0]
    mean, invstd = np.zeros(G), np.ones(G)
    g = np.ones(C)
    t_y = _core.norm_forward_jvp(x, mean, invstd, g, x, g, g, batch)
    assert t_y.shape == shape
    t_dx, t_dg, t_db = _core.norm_backward_jvp(x, x, mean, invstd, g, x, x, g, batch)
    assert t_dx.shape == shape
    np.testing.assert_array_equal(t_dg, np.zeros(C))
    np.testing.assert_array_equal(t_db, np.zeros(C))


# ---- errors -----------------------------------------------------------------------------------------
def test_errors():
    x = np.zeros((8, 5), np.float32)
    v5, v8 = np.ones(5, np.float32), np.ones(8, np.float32)
    with pytest.raises(TypeError, match=r"batchnorm_forward_jvp: t_x is float64 but x is float32"):
        _core.norm_forward_jvp(x, v5, v5, None, x.astype(np.float64), None, None, True)
    with pytest.raises(ValueError, match=r"batchnorm_forward_jvp: x has 5 channels \(shape \(8, 5\)\), t_beta has 4"):
        _core.norm_forward_jvp(x, v5, v5, None, None, None, v5[:4], True)
    with pytest.raises(ValueError, match=r"batchnorm_forward_jvp: t_gamma has shape \(5,\) but gamma is None"):
        _core.norm_forward_jvp(x, v5, v5, None, None, v5, None, True)
    with pytest.raises(ValueError, match=r"batchnorm_forward_jvp: x has 5 channels \(shape \(8, 5\)\), invstd has 8"):
        _core.norm_forward_jvp(x, v5, v8, None, None, None, None, True)
    with pytest.raises(ValueError, match=r"layernorm_forward_jvp: mean has shape \(5,\), expected x.shape\[:-1\] of x \(8, 5\)"):
        _core.norm_forward_jvp(x, v5, v8, None, None, None, None, False)
    with pytest.raises(ValueError, match=r"layernorm_forward_jvp: x with shape \(5, 8\) must be C-contiguous"):
        _core.norm_forward_jvp(x.T, v5, v5, None, None, None, None, False)
    with pytest.raises(ValueError, match=r"layernorm_backward_jvp: t_x with shape \(8, 5\) must be C-contiguous"):
        _core.norm_backward_jvp(x, x, v8, v8, None, None, np.asfortranarray(x), None, False)
    with pytest.raises(ValueError, match=r"layernorm_backward_jvp: t_dy has shape \(8, 4\), expected the shape of x \(8, 5\)"):
        _core.norm_backward_jvp(x, x, v8, v8, None, x[:, :4].copy(), None, None, False)
    with pytest.raises(ValueError, match=r"layernorm_backward_jvp: x has 5 features in its last axis \(shape \(8, 5\)\), gamma has 8"):
        _core.norm_backward_jvp(x, x, v8, v8, v8, None, None, None, False)
    with pytest.raises(TypeError, match=r"batchnorm_backward_jvp: dy is float64 but x is float32"):
        _core.norm_backward_jvp(x.astype(np.float64), x, v5, v5, None, None, None, None, True)
    with pytest.raises(ValueError, match=r"batchnorm_backward_jvp: x must be \(N, C\) or \(N, C, L\), got shape \(8,\)"):
        _core.norm_backward_jvp(v8, v8, v5, v5, None, None, None, None, True)


# ---- every CPU path, in subprocesses --------------------------------------------------------------
@pytest.mark.parametrize("path", CPU_PATHS)
def test_each_cpu_path(path):
    """Dispatch is fixed per process, so each other path reruns this file in a subprocess."""
    assert_file_passes_on_cpu_path(path, __file__)
