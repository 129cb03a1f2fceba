"""Property-based tests (hypothesis) of every native kernel against a float64 NumPy reference, on
every CPU path: random shapes with 0 and 1 included, strided and transposed storage (the binding
either reads it as NumPy does or refuses it with a message naming the op, the argument and its
shape; it never refuses a C-contiguous array), NaN / +inf / -inf elements and rows, constant
rows and large offsets (1e4 + small noise). Non-finite values must land where the IEEE
reference puts them; finite values within a float error bound. Runs are derandomized."""
import math
import re

import numpy as np
import pytest
from conftest import act_deriv_ref, act_ref, assert_file_passes_on_cpu_path

from deepcalc import _core

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

NAN, INF = np.nan, np.inf
EPS = 1e-5
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))
DTYPES = st.sampled_from([np.float32, np.float64])
ACTS = ["none", "relu", "gelu", "tanh", "sigmoid"]
_erf = np.vectorize(math.erf, otypes=[np.float64])


def dim(hi):
    """A size, 0 and 1 drawn often."""
    return st.one_of(st.sampled_from([0, 1, 2]), st.integers(0, hi))


# ---- inputs: values, special values, storage -------------------------------------------------------

def values(data, shape, dtype, kinds=("normal", "offset", "constant", "wide"), specials=True):
    """Random values of one kind, then maybe NaN / +inf / -inf in one element or one last-axis row."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    kind = data.draw(st.sampled_from(kinds), label="kind")
    if kind == "normal":
        a = rng.standard_normal(shape)
    elif kind == "offset":  # large mean, small spread: the norms' cancellation hazard
        a = 1e4 + 1e-2 * rng.standard_normal(shape)
    elif kind == "constant":
        a = np.full(shape, rng.standard_normal())
    else:  # magnitudes over 1e-8 .. 1e8
        a = rng.standard_normal(shape) * np.exp(rng.uniform(-18, 18, shape))
    a = a.astype(dtype)
    if specials and a.size and data.draw(st.booleans(), label="special"):
        v = data.draw(st.sampled_from([NAN, INF, -INF]), label="value")
        idx = tuple(int(rng.integers(s)) for s in shape)
        if data.draw(st.booleans(), label="whole row"):
            a[idx[:-1]] = v
        else:
            a[idx] = v
    return a


LAYOUTS = ["c", "rows", "cols", "fortran", "neg", "padded"]


def stored(data, a, label):
    """The values of a in a drawn storage: C order, every other row, every other element,
    Fortran order, first axis reversed, or rows padded (row stride > row length)."""
    how = data.draw(st.sampled_from(LAYOUTS), label=label)
    if a.ndim == 0 or how == "c":
        return a
    if how == "rows":
        v = np.zeros((2 * a.shape[0],) + a.shape[1:], a.dtype)[::2]
    elif how == "cols":
        v = np.zeros(a.shape + (2,), a.dtype)[..., 0]
    elif how == "fortran":
        return np.asfortranarray(a)
    elif how == "neg":
        return np.ascontiguousarray(a[::-1])[::-1]
    else:
        v = np.zeros(a.shape[:-1] + (a.shape[-1] + 3,), a.dtype)[..., 1:1 + a.shape[-1]]
    v[...] = a
    return v


REFUSAL = re.compile(r"^(?P<op>\w+): (?P<arg>\w+) with shape \([0-9, ]*\)( and strides \([-0-9, ]*\))? "
                     r"must be (C-contiguous|row-major with unit stride in its last axis)$")


REFUSED = object()


def attempt(op, arrays, fn):
    """fn()'s result, or REFUSED when the binding refused a layout it cannot read, in which case
    the message must name op and one of the arrays, and that array must not be C-contiguous."""
    try:
        result = fn()
        event(f"{op}: computed")
        return result
    except ValueError as e:
        event(f"{op}: layout refused")
        m = REFUSAL.match(str(e))
        assert m and m["op"] == op, f"unexpected error: {e}"
        assert not arrays[m["arg"]].flags.c_contiguous, f"refused a C-contiguous {m['arg']}: {e}"
        return REFUSED


def assert_matches(actual, ref, bound, what):
    """NaN exactly where ref is NaN, the same infinities, finite values within bound (arrays)."""
    actual = np.asarray(actual, np.float64)
    assert actual.shape == ref.shape, f"{what}: shape {actual.shape} != {ref.shape}"
    nan, inf = np.isnan(ref), np.isinf(ref)
    assert np.array_equal(np.isnan(actual), nan), f"{what}: NaN at {np.argwhere(np.isnan(actual) != nan)[:4]}"
    assert np.array_equal(actual[inf], ref[inf]), f"{what}: infinities differ"
    fin = ~(nan | inf)
    err = np.abs(actual[fin] - ref[fin])
    bad = err > np.broadcast_to(bound, ref.shape)[fin] + 1e-300
    assert not bad.any(), f"{what}: error {err[bad][:3]} over bound {np.broadcast_to(bound, ref.shape)[fin][bad][:3]}"


def finite(a):
    return np.nan_to_num(np.asarray(a, np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def f64(a):
    return np.asarray(a, np.float64)


def products_sum(A, B):
    """A @ B with NumPy broadcasting as explicit products summed: IEEE special values exactly
    (a BLAS may skip zero entries and so drop an inf * 0 = NaN)."""
    with np.errstate(all="ignore"):
        return (f64(A)[..., :, :, None] * f64(B)[..., None, :, :]).sum(-2)


def gemm_tol(dtype, k):
    return (2e-6 if dtype == np.float32 else 1e-13) * 4 * math.sqrt(max(k, 1))


# ---- GEMM ---------------------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_gemm(data):
    dtype = data.draw(DTYPES, label="dtype")
    m, n, k = data.draw(dim(40), label="m"), data.draw(dim(40), label="n"), data.draw(dim(40), label="k")
    ta, tb = data.draw(st.booleans(), label="trans_a"), data.draw(st.booleans(), label="trans_b")
    ba, bb = data.draw(st.sampled_from([None, 0, 1, 3]), label="batch a"), \
        data.draw(st.sampled_from([None, 0, 1, 3]), label="batch b")
    if ba is not None and bb is not None and ba != bb and 1 not in (ba, bb):
        bb = ba
    lead = lambda b: () if b is None else (b,)  # noqa: E731
    kinds = ("normal", "constant", "wide")
    A = values(data, lead(ba) + ((k, m) if ta else (m, k)), dtype, kinds)
    B = values(data, lead(bb) + ((n, k) if tb else (k, n)), dtype, kinds)
    a, b = stored(data, A, "layout a"), stored(data, B, "layout b")
    opA, opB = (np.swapaxes(A, -1, -2) if ta else A), (np.swapaxes(B, -1, -2) if tb else B)
    P = products_sum(opA, opB)
    alpha = data.draw(st.sampled_from([1.0, 0.5, -2.0, 0.0]), label="alpha")
    beta = data.draw(st.sampled_from([0.0, 1.0, -0.5]), label="beta")
    use_out = data.draw(st.booleans(), label="out")
    C0 = values(data, P.shape, dtype, ("normal",), specials=False)
    if beta == 0:
        C0[...] = NAN  # beta == 0: C is not read
    out = C0.copy() if use_out else None
    c = attempt("gemm", {"a": a, "b": b}, lambda: _core.gemm(a, b, ta, tb, alpha, beta, out))
    if c is REFUSED:
        return
    with np.errstate(all="ignore"):
        ref = alpha * P + (beta * f64(C0) if use_out and beta != 0 else 0)
    bound = gemm_tol(dtype, k) * (abs(alpha) * products_sum(np.abs(finite(opA)), np.abs(finite(opB)))
                                  + (abs(beta) * np.abs(finite(C0)) if use_out else 0))
    assert c.dtype == dtype
    assert_matches(c, ref, bound, "gemm")
    if use_out:
        assert c is out or np.shares_memory(c, out)


# ---- fused linear layer ------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_linear_forward(data):
    dtype = data.draw(DTYPES, label="dtype")
    N, IN, OUT = data.draw(dim(40), label="N"), data.draw(dim(30), label="IN"), data.draw(dim(40), label="OUT")
    act = data.draw(st.sampled_from(ACTS), label="act")
    X = values(data, (N, IN), dtype, ("normal", "constant", "wide"))
    W = values(data, (OUT, IN), dtype, ("normal",), specials=False)
    bias = values(data, (OUT,), dtype, ("normal",)) if data.draw(st.booleans(), label="bias") else None
    x, w = stored(data, X, "layout x"), stored(data, W, "layout w")
    got = attempt("linear", {"x": x, "weight": w}, lambda: _core.linear_forward(x, w, bias, act, True))
    if got is REFUSED:
        return
    y, z = got
    with np.errstate(all="ignore"):
        z_ref = products_sum(X, W.T) + (f64(bias) if bias is not None else 0)
    bound = gemm_tol(dtype, IN) * (products_sum(np.abs(finite(X)), np.abs(W.T)) +
                                   (np.abs(finite(bias)) if bias is not None else 0))
    assert_matches(z, z_ref, bound, "linear z")
    # y against the activation of the kernel's own z isolates the epilogue
    y_ref = act_ref(f64(z), act)
    assert_matches(y, y_ref, (3e-6 if dtype == np.float32 else 1e-12) * (1 + np.abs(finite(y_ref))), "linear y")
    if act == "none":
        assert z is y
    y2, none = _core.linear_forward(x, w, bias, act, False)
    assert none is None
    np.testing.assert_array_equal(y2, y)


@FUZZ
@given(st.data())
def test_linear_and_activation_backward(data):
    dtype = data.draw(DTYPES, label="dtype")
    N, IN, OUT = data.draw(dim(30), label="N"), data.draw(dim(30), label="IN"), data.draw(dim(30), label="OUT")
    act = data.draw(st.sampled_from(ACTS), label="act")
    # moderate values (no float32 overflow), NaN / inf injected into dy and the saved tensor
    S = values(data, (N, OUT), dtype, ("normal", "constant"))
    DY = values(data, (N, OUT), dtype, ("normal", "constant"))
    X = values(data, (N, IN), dtype, ("normal",), specials=False)
    W = values(data, (OUT, IN), dtype, ("normal",), specials=False)
    saved = None if act == "none" else S
    x, w = stored(data, X, "layout x"), stored(data, W, "layout w")
    s64 = f64(S)
    with np.errstate(all="ignore"):
        d = act_deriv_ref(s64, act)
        dz = f64(DY) * d
    tol = 2e-6 if dtype == np.float32 else 1e-12
    dz_bound = tol * np.abs(finite(DY)) * (1 + np.abs(finite(d)) + np.abs(finite(s64)))
    assert_matches(_core.activation_backward(DY, saved, act), dz, dz_bound, "activation_backward")
    need = [data.draw(st.booleans(), label=f"need {g}") for g in ("dx", "dw", "db")]
    got = attempt("linear_backward", {"x": x, "weight": w},
                  lambda: _core.linear_backward(DY, x, w, saved, act, *need))
    if got is REFUSED:
        return
    dx, dw, db = got
    big = np.abs(finite(DY)) * (1 + np.abs(finite(d)) + np.abs(finite(s64)))  # |dz| with its error
    rt = 5 * gemm_tol(dtype, max(N, OUT))
    with np.errstate(all="ignore"):
        want = (products_sum(dz, W), products_sum(dz.T, X), dz.sum(0))
    bounds = (rt * products_sum(big, np.abs(W)), rt * products_sum(big.T, np.abs(X)), rt * big.sum(0))
    for g, r, bd, flag, name in zip((dx, dw, db), want, bounds, need, ("dx", "dw", "db")):
        if not flag:
            assert g is None
        else:
            assert_matches(g, r, bd, f"linear_backward {name}")


# ---- softmax / log_softmax -----------------------------------------------------------------------------

def softmax_ref(x, log):
    with np.errstate(all="ignore"):
        m = x.max(-1, keepdims=True, initial=-INF)
        m = np.where(np.isneginf(m), 0.0, m)
        e = np.exp(x - m)
        s = e.sum(-1, keepdims=True)
        return x - m - np.log(s) if log else e / s


@FUZZ
@given(st.data())
def test_softmax_forward_backward(data):
    dtype = data.draw(DTYPES, label="dtype")
    log = data.draw(st.booleans(), label="log")
    lead = data.draw(st.sampled_from([(), (0,), (1,), (3,), (2, 3)]), label="leading")
    C = data.draw(dim(70), label="C")
    X = values(data, lead + (C,), dtype)
    if X.size and data.draw(st.booleans(), label="masked"):  # a row partly or fully -inf
        rng = np.random.default_rng(C)
        X.reshape(-1, C)[int(rng.integers(X.size // C)), : int(rng.integers(1, C + 1))] = -INF
    x = stored(data, X, "layout x")
    y = attempt("log_softmax" if log else "softmax", {"x": x}, lambda: _core.softmax_forward(x, log))
    if y is REFUSED:
        return
    x64 = f64(X)
    ref = softmax_ref(x64, log)
    tol = 4e-6 if dtype == np.float32 else 1e-12
    if log:  # y = x - lse: the rounding of lse costs an ulp of the row's largest |x|
        bound = tol * (1 + np.abs(finite(x64)).max(-1, keepdims=True, initial=0))
    else:  # x - max is rounded to dtype first: exp's relative error grows with |x - max|
        with np.errstate(all="ignore"):
            shift = np.abs(finite(x64 - x64.max(-1, keepdims=True, initial=-INF)))
        ulp = np.finfo(dtype).eps
        bound = np.abs(finite(ref)) * (tol + ulp * shift) + (1e-44 if dtype == np.float32 else 1e-300)
    assert_matches(y, ref, bound, "softmax forward")
    DY = values(data, X.shape, dtype, ("normal",))
    dx = _core.softmax_backward(y, DY, log)
    y64, g = f64(y), f64(DY)
    with np.errstate(all="ignore"):
        if log:
            ref = g - np.exp(y64) * g.sum(-1, keepdims=True)
            scale = np.abs(finite(g)) + np.exp(finite(y64)) * np.abs(finite(g)).sum(-1, keepdims=True)
        else:
            ref = y64 * (g - (g * y64).sum(-1, keepdims=True))
            scale = np.abs(finite(y64)) * (np.abs(finite(g)) + np.abs(finite(g * y64)).sum(-1, keepdims=True))
    assert_matches(dx, ref, 5 * tol * max(C, 1) ** 0.5 * scale + 1e-30, "softmax backward")


# ---- BatchNorm ------------------------------------------------------------------------------------------

def bn_axes(x):
    return (0,) if x.ndim == 2 else (0, 2)


def per_channel(v, x):
    return f64(v).reshape((1, -1) + (1,) * (x.ndim - 2))


def norm_tol(dtype):
    return 1e-5 if dtype == np.float32 else 1e-12


@FUZZ
@given(st.data())
def test_batchnorm(data):
    dtype = data.draw(DTYPES, label="dtype")
    N = data.draw(st.one_of(st.integers(2, 40), st.integers(2, 40), st.sampled_from([0, 1])), label="N")
    C = data.draw(dim(40), label="C")
    L = data.draw(st.sampled_from([None, 1, 2, 5]), label="L")
    shape = (N, C) if L is None else (N, C, L)
    X = values(data, shape, dtype)
    affine = data.draw(st.booleans(), label="affine")
    gamma = values(data, (C,), dtype, ("normal",), specials=False) if affine else None
    beta = values(data, (C,), dtype, ("normal",), specials=False) if affine else None
    x = stored(data, X, "layout x")
    M = N * (L or 1)
    if M <= 1:
        with pytest.raises(ValueError, match=r"^batchnorm: Expected more than 1 value per channel"):
            _core.batchnorm_forward_train(np.ascontiguousarray(X), gamma, beta, EPS)
        return
    got = attempt("batchnorm", {"x": x}, lambda: _core.batchnorm_forward_train(x, gamma, beta, EPS))
    if got is REFUSED:
        return
    y, mean, invstd = got
    assert y.shape == shape and mean.shape == invstd.shape == (C,)
    x64, ax = f64(X), bn_axes(X)
    bad = ~np.isfinite(x64).all(ax)  # channels holding NaN or inf
    with np.errstate(all="ignore"):
        mu = x64.mean(ax)
        var = ((x64 - per_channel(mu, X)) ** 2).mean(ax)
        is_ref = 1 / np.sqrt(var + EPS)
        xhat = (x64 - per_channel(mu, X)) * per_channel(is_ref, X)
    g64 = f64(gamma) if affine else np.ones(C)
    b64 = f64(beta) if affine else np.zeros(C)
    tol = norm_tol(dtype)
    yb = np.take(f64(y), np.flatnonzero(bad), 1)
    assert np.isnan(yb).all() and np.isnan(invstd[bad]).all() and not np.isfinite(mean[bad]).any()
    good = np.flatnonzero(~bad)
    sel = lambda a: np.take(a, good, 1)  # noqa: E731
    y_ref = xhat * per_channel(g64, X) + per_channel(b64, X)
    xmax = np.abs(finite(xhat)).max(ax, initial=0)
    # + the double rounding of the mean, scaled by invstd: x - mean at mean 1e4 and std 1e-2
    # costs float64 (kernel and reference alike) 1e-10 of y
    cond = 8 * np.finfo(np.float64).eps * np.abs(finite(mu)) * finite(is_ref)
    bound = tol * (per_channel(np.abs(g64) * (1 + xmax), X) + per_channel(np.abs(b64), X)) + \
        per_channel(np.abs(g64) * cond, X)
    assert_matches(sel(y), sel(y_ref), sel(np.broadcast_to(bound, shape)), "batchnorm y")
    std = np.sqrt(var[good])
    assert_matches(mean[good], mu[good], tol * (np.abs(mu[good]) + std) + 1e-30, "batchnorm mean")
    assert_matches(invstd[good], is_ref[good], tol * is_ref[good], "batchnorm invstd")

    # running statistics: torch's rule in float64
    rm = values(data, (C,), dtype, ("normal",), specials=False)
    rv = np.abs(values(data, (C,), dtype, ("normal",), specials=False)) + 0.1
    momentum = data.draw(st.sampled_from([0.1, 0.0, 1.0, 0.01]), label="momentum")
    with np.errstate(all="ignore"):
        var_b = (1 / f64(invstd) ** 2 - EPS) * M / (M - 1)
        want_m = (1 - momentum) * f64(rm) + momentum * f64(mean)
        want_v = (1 - momentum) * f64(rv) + momentum * var_b
    _core.batchnorm_update_running(rm, rv, mean, invstd, M, momentum, EPS)
    rt = 1e-6 if dtype == np.float32 else 1e-12
    assert_matches(rm, want_m, rt * (1 + np.abs(finite(want_m))), "running_mean")
    assert_matches(rv, want_v, rt * (1 + np.abs(finite(want_v))), "running_var")

    # eval with those statistics
    with np.errstate(all="ignore"):
        s = per_channel(g64 / np.sqrt(f64(rv) + EPS), X)
        ref = (x64 - per_channel(rm, X)) * s + per_channel(b64, X)
    ye = _core.batchnorm_forward_eval(np.ascontiguousarray(X), rm, rv, gamma, beta, EPS)
    assert_matches(ye, ref, tol * (np.abs(finite(x64 - per_channel(rm, X)) * s) + 1 + per_channel(np.abs(b64), X)),
                   "batchnorm eval")

    # backward from finite x: NaN / inf in dy spoil exactly their channel
    Xf = np.where(np.isfinite(X), X, 0).astype(dtype)
    _, mean, invstd = _core.batchnorm_forward_train(Xf, gamma, beta, EPS)
    DY = values(data, shape, dtype, ("normal", "constant"))
    dx, dg, db = _core.batchnorm_backward(DY, Xf, mean, invstd, gamma)
    dy64, xf = f64(DY), f64(Xf)
    bad = ~np.isfinite(dy64).all(ax)
    assert not np.isfinite(np.take(dx, np.flatnonzero(bad), 1)).any()
    good = np.flatnonzero(~bad)
    xh = (xf - per_channel(mean, Xf)) * per_channel(invstd, Xf)
    k = per_channel(g64 * f64(invstd), Xf)
    with np.errstate(all="ignore"):
        dx_ref = k * (dy64 - dy64.mean(ax, keepdims=True) - xh * (dy64 * xh).mean(ax, keepdims=True))
    terms = np.abs(finite(k * dy64)).max(ax, initial=0) + np.abs(finite(dx_ref)).max(ax, initial=0)
    assert_matches(sel(dx), sel(dx_ref), tol * per_channel(terms, Xf)[:, good], "batchnorm dx")
    if affine:
        assert not np.isfinite(dg[bad]).any() and not np.isfinite(db[bad]).any()
        dg_ref, db_ref = (dy64 * xh).sum(ax), dy64.sum(ax)
        scale = np.abs(finite(dy64)).sum(ax) * (1 + np.abs(xh).max(ax, initial=0))
        assert_matches(dg[good], dg_ref[good], tol * scale[good] + 1e-30, "batchnorm dgamma")
        assert_matches(db[good], db_ref[good], tol * scale[good] + 1e-30, "batchnorm dbeta")
    else:
        assert dg is None and db is None


# ---- LayerNorm ------------------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_layernorm(data):
    dtype = data.draw(DTYPES, label="dtype")
    lead = data.draw(st.sampled_from([(), (0,), (1,), (5,), (2, 3), (40,)]), label="leading")
    C = data.draw(dim(70), label="C")
    shape = lead + (C,)
    X = values(data, shape, dtype)
    affine = data.draw(st.booleans(), label="affine")
    gamma = values(data, (C,), dtype, ("normal",), specials=False) if affine else None
    beta = values(data, (C,), dtype, ("normal",), specials=False) if affine else None
    x = stored(data, X, "layout x")
    got = attempt("layernorm", {"x": x}, lambda: _core.layernorm_forward(x, gamma, beta, EPS))
    if got is REFUSED:
        return
    y, mean, invstd = got
    assert y.shape == shape and mean.shape == invstd.shape == lead
    tol = norm_tol(dtype)
    if C == 0:
        assert (mean == 0).all() and np.isnan(invstd).all()
        return
    x64 = f64(X)
    bad = ~np.isfinite(x64).all(-1)
    with np.errstate(all="ignore"):
        mu = x64.mean(-1)
        var = ((x64 - mu[..., None]) ** 2).mean(-1)
        is_ref = 1 / np.sqrt(var + EPS)
        xhat = (x64 - mu[..., None]) * is_ref[..., None]
    g64 = f64(gamma) if affine else np.ones(C)
    b64 = f64(beta) if affine else np.zeros(C)
    assert np.isnan(y[bad]).all() and np.isnan(invstd[bad]).all() and not np.isfinite(mean[bad]).any()
    good = ~bad
    y_ref = xhat * g64 + b64
    cond = 8 * np.finfo(np.float64).eps * np.abs(finite(mu)) * finite(is_ref)  # as in test_batchnorm
    bound = tol * (np.abs(g64) * (1 + np.abs(finite(xhat)).max(-1, keepdims=True, initial=0)) + np.abs(b64)) + \
        np.abs(g64) * cond[..., None]
    assert_matches(y[good], y_ref[good], np.broadcast_to(bound, shape)[good], "layernorm y")
    assert_matches(mean[good], mu[good], tol * (np.abs(mu[good]) + np.sqrt(var[good])) + 1e-30, "layernorm mean")
    assert_matches(invstd[good], is_ref[good], tol * is_ref[good], "layernorm invstd")

    Xf = np.where(np.isfinite(X), X, 0).astype(dtype)
    _, mean, invstd = _core.layernorm_forward(Xf, gamma, beta, EPS)
    DY = values(data, shape, dtype, ("normal", "constant"))
    dx, dg, db = _core.layernorm_backward(DY, Xf, mean, invstd, gamma)
    dy64 = f64(DY)
    bad = ~np.isfinite(dy64).all(-1)
    assert not np.isfinite(dx[bad]).any()
    good = ~bad
    xh = (f64(Xf) - f64(mean)[..., None]) * f64(invstd)[..., None]
    g = dy64 * g64
    with np.errstate(all="ignore"):
        dx_ref = f64(invstd)[..., None] * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))
    terms = np.abs(finite(f64(invstd)[..., None] * g)).max(-1, keepdims=True, initial=0)
    assert_matches(dx[good], dx_ref[good], np.broadcast_to(tol * (terms + np.abs(finite(dx_ref))
                                                                     .max(-1, keepdims=True, initial=0)), shape)[good],
                   "layernorm dx")
    if affine:
        rows = tuple(range(len(shape) - 1))
        cols_bad = ~np.isfinite(dy64).reshape(-1, C).all(0)
        assert not np.isfinite(dg[cols_bad]).any() and not np.isfinite(db[cols_bad]).any()
        scale = np.abs(finite(dy64)).sum(rows) * (1 + np.abs(xh).max(initial=0))
        ok = ~cols_bad
        assert_matches(dg[ok], (dy64 * xh).sum(rows)[ok], tol * scale[ok] + 1e-30, "layernorm dgamma")
        assert_matches(db[ok], dy64.sum(rows)[ok], tol * scale[ok] + 1e-30, "layernorm dbeta")
    else:
        assert dg is None and db is None


# ---- optimizer steps -------------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_adam_step(data):
    dtype = data.draw(DTYPES, label="dtype")
    n = data.draw(dim(70), label="n")
    decoupled, amsgrad = data.draw(st.booleans(), label="adamw"), data.draw(st.booleans(), label="amsgrad")
    lr = data.draw(st.sampled_from([1e-3, 0.1, 1.0]), label="lr")
    beta1, beta2 = data.draw(st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)]), label="betas")
    eps = data.draw(st.sampled_from([1e-8, 1e-3]), label="eps")
    wd = data.draw(st.sampled_from([0.0, 0.01]), label="weight_decay")
    step = data.draw(st.integers(1, 1000), label="step")
    P = values(data, (n,), dtype, ("normal",), specials=False)
    G = values(data, (n,), dtype, ("normal", "wide"))
    M = values(data, (n,), dtype, ("normal",), specials=False) * dtype(0.1)
    V = np.abs(values(data, (n,), dtype, ("normal",), specials=False)) * dtype(0.01)
    VM = np.abs(values(data, (n,), dtype, ("normal",))) * dtype(0.01) if amsgrad else None
    p64, g, m, v = f64(P), f64(G), f64(M), f64(V)
    with np.errstate(all="ignore"):
        if decoupled:
            p64 = p64 * (1 - lr * wd)
        elif wd:
            g = g + wd * p64
        w = 1 - beta1  # torch's lerp_, whose two branches differ at infinities
        m = m + w * (g - m) if w < 0.5 else g - (g - m) * (1 - w)
        v = v * beta2 + (1 - beta2) * g * g
        vhat = v
        if amsgrad:
            vm = f64(VM)
            vhat = np.where(np.isnan(vm) | np.isnan(v), NAN, np.maximum(vm, v))
        denom = np.sqrt(vhat) / math.sqrt(1 - beta2 ** step) + eps
        want = p64 - lr / (1 - beta1 ** step) * m / denom
    param = stored(data, P, "layout param")
    got = attempt("adamw_step" if decoupled else "adam_step", {"param": param},
                  lambda: _core.adam_step(param, G, M, V, lr, beta1, beta2, eps, wd, step, decoupled, VM))
    if got is REFUSED:
        return
    tol = 2e-6 if dtype == np.float32 else 1e-12
    step_size = lr / (1 - beta1 ** step)
    with np.errstate(all="ignore"):
        ratio = finite(np.abs(m) / denom)
    assert_matches(param, want, tol * (np.abs(finite(p64)) + step_size * (1 + ratio)) * 4, "adam param")
    assert_matches(M, m, tol * (np.abs(finite(m)) + np.abs(finite(g))) * 4, "adam exp_avg")
    assert_matches(V, v, tol * (np.abs(finite(v)) + finite(g) ** 2) * 4, "adam exp_avg_sq")
    if amsgrad:
        assert_matches(VM, vhat, tol * np.abs(finite(vhat)) * 4, "adam max_exp_avg_sq")


@FUZZ
@given(st.data())
def test_sgd_step(data):
    dtype = data.draw(DTYPES, label="dtype")
    n = data.draw(dim(70), label="n")
    lr = data.draw(st.sampled_from([1e-3, 0.1, 1.0]), label="lr")
    momentum = data.draw(st.sampled_from([0.0, 0.9]), label="momentum")
    nesterov = momentum > 0 and data.draw(st.booleans(), label="nesterov")
    dampening = 0.0 if nesterov else data.draw(st.sampled_from([0.0, 0.5]), label="dampening")
    wd = data.draw(st.sampled_from([0.0, 0.01]), label="weight_decay")
    first = data.draw(st.booleans(), label="first_step")
    P = values(data, (n,), dtype, ("normal",), specials=False)
    G = values(data, (n,), dtype, ("normal", "wide"))
    Bf = values(data, (n,), dtype, ("normal",), specials=False) if momentum else None
    p64, g = f64(P), f64(G)
    with np.errstate(all="ignore"):
        if wd:
            g = g + wd * p64
        if momentum:
            b = g if first else f64(Bf) * momentum + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        want = p64 - lr * g
    param = stored(data, P, "layout param")
    got = attempt("sgd_step", {"param": param},
                  lambda: _core.sgd_step(param, G, Bf, lr, momentum, dampening, wd, nesterov, first))
    if got is REFUSED:
        return
    tol = 2e-6 if dtype == np.float32 else 1e-12
    assert_matches(param, want, tol * 4 * (np.abs(finite(p64)) + lr * (np.abs(finite(g)) + 1)), "sgd param")
    if momentum:
        assert_matches(Bf, b, tol * 4 * (np.abs(finite(b)) + np.abs(finite(f64(G))) + 1), "sgd momentum_buffer")


# ---- erf -----------------------------------------------------------------------------------------------

@FUZZ
@given(st.data())
def test_erf(data):
    dtype = data.draw(DTYPES, label="dtype")
    shape = data.draw(st.sampled_from([(0,), (1,), (7,), (3, 5), (2, 0, 3)]), label="shape")
    X = values(data, shape, dtype, ("normal", "wide"))
    x = stored(data, X, "layout x")
    y = attempt("erf", {"x": x}, lambda: _core.erf(x))
    if y is REFUSED:
        return
    ref = _erf(f64(X))
    assert_matches(y, ref, (3e-7 if dtype == np.float32 else 1e-15) * np.abs(finite(ref)) + 3e-45, "erf")


# ---- bindings refuse mismatched arguments --------------------------------------------------------------

def calls(N, C, dtype):
    """(op, function, arguments, free) with all arguments valid; free lists the (argument, axis)
    pairs whose size may change legally (the others are checked against each other)."""
    f = lambda *s: np.ones(s, dtype)  # noqa: E731
    v = f(C)
    return [
        ("gemm", lambda a, b: _core.gemm(a, b), dict(a=f(N, C), b=f(C, 3)), {("a", 0), ("b", 1)}),
        ("linear", lambda x, w, b: _core.linear_forward(x, w, b, "relu"), dict(x=f(N, C), w=f(3, C), b=f(3)),
         {("x", 0)}),
        ("linear_backward", lambda dy, x, w, s: _core.linear_backward(dy, x, w, s, "tanh"),
         dict(dy=f(N, 3), x=f(N, C), w=f(3, C), s=f(N, 3)), set()),
        ("activation_backward", lambda dy, s: _core.activation_backward(dy, s, "sigmoid"),
         dict(dy=f(N, C), s=f(N, C)), set()),
        ("softmax_backward", lambda y, dy: _core.softmax_backward(y, dy), dict(y=f(N, C), dy=f(N, C)), set()),
        ("batchnorm", lambda x, g, b: _core.batchnorm_forward_train(x, g, b, EPS), dict(x=f(N, C), g=v, b=v),
         {("x", 0)}),
        ("batchnorm_backward", lambda dy, x, m, s, g: _core.batchnorm_backward(dy, x, m, s, g),
         dict(dy=f(N, C), x=f(N, C), m=v, s=v, g=v), set()),
        ("batchnorm_eval", lambda x, m, s, g, b: _core.batchnorm_forward_eval(x, m, s, g, b, EPS),
         dict(x=f(N, C), m=v, s=v, g=v, b=v), {("x", 0)}),
        ("layernorm", lambda x, g, b: _core.layernorm_forward(x, g, b, EPS), dict(x=f(N, C), g=v, b=v), {("x", 0)}),
        ("layernorm_backward", lambda dy, x, m, s, g: _core.layernorm_backward(dy, x, m, s, g),
         dict(dy=f(N, C), x=f(N, C), m=f(N), s=f(N), g=v), set()),
        ("adam_step", lambda p, g, m, s: _core.adam_step(p, g, m, s, 0.1, 0.9, 0.99, 1e-8, 0, 1, False),
         dict(p=f(C), g=f(C), m=f(C), s=f(C)), set()),
        ("sgd_step", lambda p, g, b: _core.sgd_step(p, g, b, 0.1, 0.9, 0, 0, False, False),
         dict(p=f(C), g=f(C), b=f(C)), set()),
        ("batchnorm_update_running", lambda rm, rv, m, s: _core.batchnorm_update_running(rm, rv, m, s, 4, 0.1, EPS),
         dict(rm=f(C), rv=f(C), m=v.copy(), s=v.copy()), set()),
    ]


@FUZZ
@given(st.data())
def test_bindings_refuse_a_wrong_dtype_or_shape(data):
    """Each binding called with one array of another dtype, or one axis of it one longer where
    that size is checked against another argument, raises TypeError / ValueError naming the op."""
    dtype = data.draw(DTYPES, label="dtype")
    N, C = data.draw(st.integers(2, 6), label="N"), data.draw(st.integers(1, 6), label="C")
    op, fn, args, free = data.draw(st.sampled_from(calls(N, C, dtype)), label="call")
    fn(**args)  # valid as built
    name = data.draw(st.sampled_from(sorted(args)), label="argument")
    a = args[name]
    if data.draw(st.booleans(), label="dtype, else shape"):
        other = data.draw(st.sampled_from([np.float32, np.float64, np.int64, np.float16]), label="new dtype")
        if other == dtype:
            return
        args[name], err = a.astype(other), TypeError
    else:
        axis = data.draw(st.integers(0, a.ndim - 1), label="axis")
        if (name, axis) in free:
            return
        grown = list(a.shape)
        grown[axis] += 1
        args[name], err = np.ones(grown, dtype), ValueError
    with pytest.raises(err) as e:
        fn(**args)
    assert str(e.value).startswith(op + ":"), str(e.value)


# ---- every CPU path ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_each_cpu_path(path):
    """Dispatch is fixed per process, so each other path reruns this file in a subprocess."""
    assert_file_passes_on_cpu_path(path, __file__)
