"""The fused attention kernels (cpp/attention) through deepcalc._core against a float64 NumPy
reference: forward (O, lse), backward (dq, dk, dv), the forward-mode tangent and the backward's
tangent (against central differences of the reference backward), for odd
lengths, L = 1, Lq != Lk, Dv != D, head dims 16-128, causal, boolean / additive / key-padding
masks, fully masked rows, NaN, empty arrays, bad arguments; the whole file again under each CPU
path (DEEPCALC_CPU_CAPABILITY)."""
from __future__ import annotations

import numpy as np
import pytest

from deepcalc import _core

from conftest import assert_file_passes_on_cpu_path


def np_attention(q, k, v, mask=None, causal=False, scale=1.0):
    """(O, P, lse) in float64; rows with every score -inf give P = 0, O = 0, lse = -inf."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) * scale
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    if causal:
        lq, lk = s.shape[-2:]
        s = np.where(np.arange(lk)[None, :] <= np.arange(lq)[:, None], s, -np.inf)
    m = s.max(-1, keepdims=True)
    dead = m == -np.inf
    e = np.exp(s - np.where(dead, 0.0, m))
    l = e.sum(-1, keepdims=True)
    p = e / np.where(dead, 1.0, l)
    with np.errstate(divide="ignore"):
        lse = np.where(dead, -np.inf, m + np.log(np.where(dead, 1.0, l)))[..., 0]
    return p @ v, p, lse


def np_backward(q, k, v, p, o, do, scale):
    dv = np.swapaxes(p, -1, -2) @ do
    ds = p * (do @ np.swapaxes(v, -1, -2) - (do * o).sum(-1, keepdims=True)) * scale
    return ds @ k, np.swapaxes(ds, -1, -2) @ q, dv


def np_tangent(q, k, v, p, o, tq, tk, tv, scale):
    ts = (tq @ np.swapaxes(k, -1, -2) + q @ np.swapaxes(tk, -1, -2)) * scale
    pts = p * ts
    return pts @ v - pts.sum(-1, keepdims=True) * o + p @ tv


def np_backward_tangent(q, k, v, do, ts, mask, causal, scale, eps=1e-6):
    """Tangent of (dq, dk, dv) along ts = (tq, tk, tv, tdo) by central differences in float64
    (an independent check of the fused second-order kernel: error ~1e-9)."""
    def bwd(sign):
        x = [a + sign * eps * t for a, t in zip((q, k, v, do), ts)]
        o, p, _ = np_attention(x[0], x[1], x[2], mask, causal, scale)
        return np_backward(x[0], x[1], x[2], p, o, x[3], scale)
    return [(a - b) / (2 * eps) for a, b in zip(bwd(1), bwd(-1))]


def _mask(kind, rng, b, h, lq, lk, dtype):
    if kind is None:
        return None
    if kind == "bool":
        m = rng.random((b, 1, lq, lk)) > 0.3
        m[0, 0, 0, :] = False                     # a fully masked row
        return m
    if kind == "padding":                          # key padding (B, 1, 1, Lk) as a 4-D mask
        m = np.ones((b, 1, 1, lk), bool)
        m[-1, ..., lk // 2 + 1:] = False
        return m
    m = rng.standard_normal((1, h, lq, lk))        # additive, with -inf entries
    m[rng.random(m.shape) < 0.2] = -np.inf
    return m.astype(dtype)


CASES = [  # (B, H, Lq, Lk, D, Dv), mask kind
    ((1, 1, 1, 1, 16, 16), None),
    ((1, 1, 1, 1, 16, 16), "bool"),
    ((2, 3, 70, 45, 24, 40), "add"),
    ((2, 3, 70, 45, 24, 40), "padding"),
    ((1, 2, 130, 130, 64, 64), None),
    ((1, 2, 130, 130, 64, 64), "bool"),
    ((2, 1, 33, 100, 128, 96), "padding"),
    ((1, 1, 5, 7, 3, 5), "add"),
    ((1, 2, 33, 17, 32, 16), "bool"),
    ((1, 1, 70, 200, 32, 32), "bool"),     # one head, several key tiles: the backward splits
    ((3, 1, 40, 150, 16, 16), None),       # heads into chunks with dQ partials (2+ threads)
]


def _run(dtype, shape, causal, mask_kind, rng):
    b, h, lq, lk, d, dv = shape
    q, k = rng.standard_normal((b, h, lq, d)), rng.standard_normal((b, h, lk, d))
    v, do = rng.standard_normal((b, h, lk, dv)), rng.standard_normal((b, h, lq, dv))
    tq, tk, tv = (rng.standard_normal(a.shape) for a in (q, k, v))
    mask = _mask(mask_kind, rng, b, h, lq, lk, dtype)
    scale = 1 / np.sqrt(d)
    c = [np.ascontiguousarray(a, dtype) for a in (q, k, v, do, tq, tk, tv)]
    o, lse = _core.attention_forward(c[0], c[1], c[2], mask, causal, scale)
    dq, dk, dvv = _core.attention_backward(c[0], c[1], c[2], o, lse, c[3], mask, causal, scale)
    t, u = _core.attention_jvp(c[0], c[1], c[2], o, lse, c[4], c[5], c[6], mask, causal, scale,
                               True)
    tdo = np.ascontiguousarray(rng.standard_normal(do.shape), dtype)
    tgrads = _core.attention_backward_jvp(c[0], c[1], c[2], o, lse, c[3], t, u, c[4], c[5], c[6],
                                          tdo, mask, causal, scale)
    r = [a.astype(np.float64) for a in c]
    mref = mask if mask is None or mask.dtype == bool else mask.astype(np.float64)
    o_ref, p, lse_ref = np_attention(r[0], r[1], r[2], mref, causal, scale)
    grads = np_backward(r[0], r[1], r[2], p, o_ref, r[3], scale)
    t_ref = np_tangent(r[0], r[1], r[2], p, o_ref, r[4], r[5], r[6], scale)
    tg_ref = np_backward_tangent(r[0], r[1], r[2], r[3], (r[4], r[5], r[6], tdo.astype(np.float64)),
                                 mref, causal, scale)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    checks = [("o", o, o_ref, tol), ("lse", lse, lse_ref, tol), ("dq", dq, grads[0], tol),
              ("dk", dk, grads[1], tol), ("dv", dvv, grads[2], tol), ("tangent", t, t_ref, tol)]
    checks += [(name, got, want, max(tol, 1e-7))  # the finite-difference reference's own error
               for name, got, want in zip(("tdq", "tdk", "tdv"), tgrads, tg_ref)]
    for name, got, want, tol in checks:
        assert got.dtype == dtype and got.shape == want.shape, name
        fin = np.isfinite(want)
        assert np.array_equal(np.isfinite(got), fin), f"{name}: non-finite entries differ"
        assert np.array_equal(got[~fin], want[~fin]), f"{name}: -inf entries differ"
        err = np.max(np.abs(got[fin] - want[fin]), initial=0) / max(1.0, np.abs(want[fin]).max(initial=0))
        assert err <= tol, f"{name}: error {err:.2g} > {tol:.0g} ({shape}, causal={causal}, {mask_kind})"


@pytest.mark.parametrize("shape, mask_kind", CASES, ids=[f"{c}-{m}" for c, m in CASES])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference(shape, causal, mask_kind, dtype, rng):
    _run(dtype, shape, causal, mask_kind, rng)


def test_fully_masked_rows_give_zero_output_and_zero_gradients(rng):
    q, k, v = (rng.standard_normal((1, 2, 4, 16)).astype(np.float32) for _ in range(3))
    mask = np.ones((1, 1, 4, 4), bool)
    mask[..., 2, :] = False
    o, lse = _core.attention_forward(q, k, v, mask, False, 0.25)
    assert np.all(o[:, :, 2] == 0) and np.all(lse[:, :, 2] == -np.inf)
    do = np.ones_like(o)
    dq, dk, dv = _core.attention_backward(q, k, v, o, lse, do, mask, False, 0.25)
    assert np.all(dq[:, :, 2] == 0) and np.all(np.isfinite(dk)) and np.all(np.isfinite(dv))
    t, u = _core.attention_jvp(q, k, v, o, lse, q, k, v, mask, False, 0.25, True)
    assert np.all(t[:, :, 2] == 0) and np.all(u[:, :, 2] == 0)
    tdq, tdk, tdv = _core.attention_backward_jvp(q, k, v, o, lse, do, t, u, q, k, v, do, mask,
                                                 False, 0.25)
    assert np.all(tdq[:, :, 2] == 0) and all(np.all(np.isfinite(a)) for a in (tdk, tdv))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_in_one_query_row_stays_in_that_row(dtype, rng):
    q, k, v = (rng.standard_normal((1, 1, 70, 16)).astype(dtype) for _ in range(3))
    q[0, 0, 5, 3] = np.nan
    o, lse = _core.attention_forward(q, k, v, None, False, 0.25)
    assert np.all(np.isnan(o[0, 0, 5])) and np.isnan(lse[0, 0, 5])
    assert np.all(np.isfinite(np.delete(o, 5, axis=2)))
    k[0, 0, 9, 0] = np.inf   # an infinite key: every row sees +-inf or NaN scores
    o, _ = _core.attention_forward(q, k, v, None, False, 0.25)
    o_ref, _, _ = np_attention(q, k, v, None, False, 0.25)
    assert np.array_equal(np.isnan(o), np.isnan(o_ref))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_shapes(dtype):
    z = lambda *s: np.zeros(s, dtype)  # noqa: E731
    o, lse = _core.attention_forward(z(0, 2, 3, 8), z(0, 2, 4, 8), z(0, 2, 4, 8))
    assert o.shape == (0, 2, 3, 8) and lse.shape == (0, 2, 3)
    o, lse = _core.attention_forward(z(1, 1, 3, 8), z(1, 1, 0, 8), z(1, 1, 0, 8))
    assert np.all(o == 0) and np.all(lse == -np.inf)   # no keys: every row fully masked
    q, k, v = z(1, 1, 0, 8), np.ones((1, 1, 4, 8), dtype), np.ones((1, 1, 4, 8), dtype)
    o, lse = _core.attention_forward(q, k, v)
    dq, dk, dv = _core.attention_backward(q, k, v, o, lse, o)
    assert dq.shape == (1, 1, 0, 8) and np.all(dk == 0) and np.all(dv == 0)


def test_bad_arguments_are_refused():
    f = np.zeros((1, 2, 3, 8), np.float32)
    with pytest.raises(TypeError, match="attention_forward: k is float64 but q is float32"):
        _core.attention_forward(f, f.astype(np.float64), f)
    with pytest.raises(TypeError, match="must be float32 or float64, got int64"):
        _core.attention_forward(f.astype(np.int64), f, f)
    with pytest.raises(ValueError, match=r"q must be 4-D \(B, H, L, D\), got shape \(2, 3, 8\)"):
        _core.attention_forward(f[0], f, f)
    with pytest.raises(ValueError, match=r"k has shape \(1, 2, 3, 4\), expected \(1, 2, 3, 8\)"):
        _core.attention_forward(f, f[..., :4].copy(), f)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        _core.attention_forward(f[:, :, ::-1], f, f)
    with pytest.raises(ValueError, match="does not broadcast to"):
        _core.attention_forward(f, f, f, np.ones((1, 3, 3, 3), bool))
    with pytest.raises(TypeError, match="mask must be bool or float32"):
        _core.attention_forward(f, f, f, np.ones((1, 1, 3, 3), np.int32))
    with pytest.raises(ValueError, match="scale must be finite"):
        _core.attention_forward(f, f, f, None, False, float("nan"))
    o, lse = _core.attention_forward(f, f, f)
    with pytest.raises(ValueError, match=r"attention_backward: lse has shape \(1, 2, 3, 8\)"):
        _core.attention_backward(f, f, f, o, o, o)
    with pytest.raises(ValueError, match=r"attention_jvp: tk has shape"):
        _core.attention_jvp(f, f, f, o, lse, None, f[:, :1].copy())
    with pytest.raises(ValueError, match=r"attention_backward_jvp: u has shape \(1, 2, 3, 8\)"):
        _core.attention_backward_jvp(f, f, f, o, lse, o, o, o)
    with pytest.raises(TypeError, match="attention_backward_jvp: tdout is float64 but dout is"):
        _core.attention_backward_jvp(f, f, f, o, lse, o, o, lse, None, None, None,
                                     o.astype(np.float64))


@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_each_cpu_path(path):
    assert_file_passes_on_cpu_path(path, __file__)
