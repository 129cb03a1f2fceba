"""dc.nn.functional.scaled_dot_product_attention and its primitives (ops/attention.py): values
and every gradient against a float64 NumPy reference and torch's SDPA; masks (causal, boolean,
key padding, additive), odd L, L = 1, Lq != Lk, fully masked rows as torch gives them; the
fused tangent against the composite's; second order (grad of grad, hvp, hessian, grad of jvp,
jvp of jvp) through the fused primitives against the reference composite, over several query
blocks; memory of the fused path; bad inputs."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.nn import functional as F
from deepcalc.ops import attention as A
from deepcalc.testing import gradcheck, gradgradcheck

from conftest import assert_jvp_vjp_consistent
from test_attention_kernels import np_attention, np_backward, np_tangent

SDPA = F.scaled_dot_product_attention


def _arrays(rng, b, h, lq, lk, d, dv, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype)
            for s in ((b, h, lq, d), (b, h, lk, d), (b, h, lk, dv))]


def _mask(kind, rng, b, lq, lk):
    if kind == "bool":
        m = rng.random((b, 1, lq, lk)) > 0.4
        m[0, 0, 0] = False            # a fully masked row
        return m
    if kind == "padding":             # key padding as torch users pass it: (B, 1, 1, Lk)
        m = np.ones((b, 1, 1, lk), bool)
        m[-1, ..., (lk + 1) // 2:] = False
        return m
    if kind == "add":
        m = rng.standard_normal((lq, lk))
        m[rng.random(m.shape) < 0.3] = -np.inf
        return m
    return None


CASES = [  # (B, H, Lq, Lk, D, Dv), causal, mask
    ((2, 2, 7, 7, 16, 16), False, None),
    ((2, 2, 7, 7, 16, 16), True, None),
    ((1, 2, 1, 1, 16, 8), False, None),
    ((2, 1, 9, 13, 32, 24), True, "padding"),
    ((2, 2, 13, 6, 24, 16), True, "bool"),
    ((1, 3, 70, 70, 64, 64), True, None),
    ((1, 1, 5, 11, 16, 16), False, "add"),
]


@pytest.mark.parametrize("shape, causal, mask_kind", CASES,
                         ids=[f"{s}-{'causal' if c else 'full'}-{m}" for s, c, m in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_and_gradients_match_reference(shape, causal, mask_kind, dtype, rng):
    q, k, v = _arrays(rng, *shape, dtype=dtype)
    mask = _mask(mask_kind, rng, shape[0], shape[2], shape[3])
    if mask is not None and mask.dtype != bool:
        mask = mask.astype(dtype)
    scale = 1 / np.sqrt(shape[4])
    xs = [dc.tensor(a, requires_grad=True) for a in (q, k, v)]
    out = SDPA(*xs, mask=mask, causal=causal)
    assert out.dtype == dtype and out.shape == shape[:3] + (shape[5],)
    g = rng.standard_normal(out.shape).astype(dtype)
    out.backward(dc.tensor(g))
    r = [a.astype(np.float64) for a in (q, k, v)]
    mref = None if mask is None else (mask if mask.dtype == bool else mask.astype(np.float64))
    o_ref, p, _ = np_attention(*r, mref, causal, scale)
    grads = np_backward(*r, p, o_ref, g.astype(np.float64), scale)
    tol = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out.data, o_ref, **tol)
    for x, want, name in zip(xs, grads, ("dq", "dk", "dv")):
        np.testing.assert_allclose(x.grad.data, want, err_msg=name, **tol)


def test_matches_torch_sdpa(rng):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    for shape, causal, mask_kind in CASES + [((1, 2, 4, 9, 16, 16), True, None)]:
        q, k, v = _arrays(rng, *shape)
        mask = _mask(mask_kind, rng, shape[0], shape[2], shape[3])
        xs = [dc.tensor(a, requires_grad=True) for a in (q, k, v)]
        ts = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        out = SDPA(*xs, mask=mask, causal=causal)
        if mask is not None and causal:  # torch takes one or the other: combine them here
            tril = A.causal_mask(shape[2], shape[3])
            mask = mask & tril if mask.dtype == bool else np.where(tril, mask, -np.inf)
            causal = False
        t_out = tF.scaled_dot_product_attention(
            *ts, attn_mask=None if mask is None else torch.tensor(mask), is_causal=causal)
        np.testing.assert_allclose(out.data, t_out.detach().numpy(), rtol=1e-10, atol=1e-12)
        g = rng.standard_normal(out.shape)
        out.backward(dc.tensor(g))
        t_out.backward(torch.tensor(g))
        for x, t in zip(xs, ts):
            np.testing.assert_allclose(x.grad.data, t.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_fully_masked_rows_as_torch(rng):
    """torch 2.13 on CPU gives zeros (and zero gradients) for a query row with no key left,
    for a boolean mask and for an additive -inf mask."""
    q, k, v = _arrays(rng, 1, 1, 3, 5, 8, 8)
    mask = np.ones((3, 5), bool)
    mask[1] = False
    for m in (mask, np.where(mask, 0.0, -np.inf)):
        xs = [dc.tensor(a, requires_grad=True) for a in (q, k, v)]
        out = SDPA(*xs, mask=m)
        assert np.all(out.data[0, 0, 1] == 0) and np.all(np.isfinite(out.data))
        out.sum().backward()
        assert np.all(xs[0].grad.data[0, 0, 1] == 0)
        assert all(np.all(np.isfinite(x.grad.data)) for x in xs)
        o, w = SDPA(*xs, mask=m, return_weights=True)
        assert np.all(w.data[0, 0, 1] == 0) and np.all(o.data[0, 0, 1] == 0)


def test_return_weights_gives_the_attention_table(rng):
    q, k, v = _arrays(rng, 2, 2, 6, 9, 16, 8)
    out, w = SDPA(dc.tensor(q), dc.tensor(k), dc.tensor(v), causal=True, return_weights=True)
    o_ref, p, _ = np_attention(q, k, v, None, True, 0.25)
    np.testing.assert_allclose(w.data, p, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.data, o_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(w.data.sum(-1), 1.0, rtol=1e-12)


def test_fused_jvp_equals_the_composite(rng):
    q, k, v = _arrays(rng, 2, 2, 7, 10, 16, 12)
    ts = [dc.tensor(a) for a in _arrays(rng, 2, 2, 7, 10, 16, 12)]
    mask = _mask("bool", rng, 2, 7, 10)
    xs = tuple(dc.tensor(a) for a in (q, k, v))
    fused = dc.jvp(lambda a, b, c: SDPA(a, b, c, mask=mask, causal=True), xs, tuple(ts))[1]
    comp = dc.jvp(lambda a, b, c: A.attention_reference(a, b, c, mask, True, 0.25)[0], xs,
                  tuple(ts))[1]
    o_ref, p, _ = np_attention(q, k, v, mask, True, 0.25)
    np.testing.assert_allclose(fused.data, comp.data, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(fused.data, np_tangent(q, k, v, p, o_ref, *(t.data for t in ts),
                                                      0.25), rtol=1e-11, atol=1e-13)
    # some tangents absent: only v, then only q
    t_v = dc.jvp(lambda c: SDPA(xs[0], xs[1], c), (xs[2],), (ts[2],))[1]
    np.testing.assert_allclose(t_v.data, np_attention(q, k, ts[2].data, None, False, 0.25)[0],
                               rtol=1e-11, atol=1e-13)
    t_q = dc.jvp(lambda a: SDPA(a, xs[1], xs[2]), (xs[0],), (ts[0],))[1]
    zero_k, zero_v = np.zeros_like(k), np.zeros_like(v)
    o0, p0, _ = np_attention(q, k, v, None, False, 0.25)
    np.testing.assert_allclose(t_q.data, np_tangent(q, k, v, p0, o0, ts[0].data, zero_k, zero_v,
                                                    0.25), rtol=1e-11, atol=1e-13)


def test_jvp_vjp_consistent(rng):
    xs = [dc.tensor(a) for a in _arrays(rng, 1, 2, 6, 8, 16, 8)]
    assert_jvp_vjp_consistent(lambda a, b, c: SDPA(a, b, c, causal=True), xs, rng)


def _second_order_pair(fused_f, ref_f, xs, rng):
    """grad of grad, hvp, grad of jvp and jvp of jvp of fused_f equal those of ref_f."""
    ws = [dc.tensor(rng.standard_normal(x.shape)) for x in xs]
    ts = tuple(dc.tensor(rng.standard_normal(x.shape)) for x in xs)

    def loss(f):
        return lambda *a: (f(*a) ** 2).sum()

    def gg(f):  # d/dx <grad loss(x), w>: reverse over reverse (the backward primitive's VJP)
        def inner(*a):
            gs = dc.grad(loss(f), argnums=(0, 1, 2))(*a)
            return sum((g * w).sum() for g, w in zip(gs, ws))
        return dc.grad(inner, argnums=(0, 1, 2))(*xs)

    def hv(f):  # forward over reverse (the backward primitive's JVP)
        return dc.hvp(loss(f), tuple(xs), ts)[1]

    def gj(f):  # d/dx <J(x) t, w0>: reverse over forward (the tangent primitive's VJP)
        w0 = ws[0] if xs[0].shape == f(*xs).shape else dc.tensor(
            rng.standard_normal(f(*xs).shape))

        def inner(*a):
            return (dc.jvp(f, a, ts)[1] * w0).sum()
        return dc.grad(inner, argnums=(0, 1, 2))(*xs)

    def jj(f):  # forward over forward (the tangent primitive's JVP)
        return dc.jvp(lambda *a: dc.jvp(f, a, ts)[1], tuple(xs), ts)[1]

    for name, op in (("grad of grad", gg), ("hvp", hv), ("jvp of jvp", jj)):
        got, want = op(fused_f), op(ref_f)
        got, want = (got if isinstance(got, tuple) else (got,)), \
            (want if isinstance(want, tuple) else (want,))
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-9, atol=1e-11, err_msg=name)
    rng_state = rng.bit_generator.state
    got = gj(fused_f)
    rng.bit_generator.state = rng_state
    want = gj(ref_f)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.data, b.data, rtol=1e-9, atol=1e-11, err_msg="grad of jvp")


@pytest.mark.parametrize("block", [128, 3], ids=["one-block", "blocks-of-3"])
@pytest.mark.parametrize("causal, mask_kind", [(True, None), (False, "bool"), (False, "add")])
def test_second_order_through_the_fused_primitives(block, causal, mask_kind, rng, monkeypatch):
    monkeypatch.setattr(A, "_QUERY_BLOCK", block)
    xs = [dc.tensor(a) for a in _arrays(rng, 1, 2, 7, 9, 8, 6)]
    mask = _mask(mask_kind, rng, 1, 7, 9)
    _second_order_pair(lambda a, b, c: SDPA(a, b, c, mask=mask, causal=causal),
                       lambda a, b, c: A.attention_reference(a, b, c, mask, causal,
                                                             1 / np.sqrt(8))[0], xs, rng)


@pytest.mark.parametrize("block", [128, 3], ids=["one-block", "blocks-of-3"])
def test_third_order_through_the_fused_primitives(block, rng, monkeypatch):
    """grad of an hvp (reverse over forward over reverse) and jvp of an hvp: the rules of the
    backward's tangent kernel, against the reference composite."""
    monkeypatch.setattr(A, "_QUERY_BLOCK", block)
    xs = tuple(dc.tensor(a) for a in _arrays(rng, 1, 2, 5, 6, 4, 3))
    ts = tuple(dc.tensor(rng.standard_normal(x.shape)) for x in xs)
    w = dc.tensor(rng.standard_normal(xs[0].shape))
    fused = lambda a, b, c: (SDPA(a, b, c, causal=True) ** 2).sum()  # noqa: E731
    ref = lambda a, b, c: (A.attention_reference(a, b, c, None, True, 0.5)[0] ** 2).sum()  # noqa: E731,E501

    def third(f):
        def inner(a, b, c):
            return (dc.hvp(f, (a, b, c), ts)[1][0] * w).sum()
        return dc.grad(inner, argnums=(0, 1, 2))(*xs)

    def jvp_of_hvp(f):
        return dc.jvp(lambda a, b, c: dc.hvp(f, (a, b, c), ts)[1], xs, ts)[1]

    for got, want in ((third(fused), third(ref)), (jvp_of_hvp(fused), jvp_of_hvp(ref))):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a.data, b.data, rtol=1e-9, atol=1e-11)


def test_hessian_through_attention(rng):
    q, k, v = (dc.tensor(a) for a in _arrays(rng, 1, 1, 4, 5, 3, 2))
    f = lambda a: (SDPA(a, k, v, causal=True) ** 2).sum()  # noqa: E731
    ref = lambda a: (A.attention_reference(a, k, v, None, True, 1 / np.sqrt(3))[0] ** 2).sum()  # noqa: E731,E501
    h = dc.hessian(f)(q)   # vmap over the basis: the attention primitives' batching rules
    np.testing.assert_allclose(h.data, dc.hessian(ref)(q).data, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("causal, mask_kind", [(False, None), (True, "padding"), (False, "bool")])
def test_gradcheck_and_gradgradcheck(causal, mask_kind, rng):
    xs = [dc.tensor(a, requires_grad=True) for a in _arrays(rng, 2, 1, 3, 4, 3, 2)]
    mask = _mask(mask_kind, rng, 2, 3, 4)
    f = lambda a, b, c: SDPA(a, b, c, mask=mask, causal=causal)  # noqa: E731
    assert gradcheck(f, xs)
    assert gradgradcheck(f, xs)


def test_float_mask_that_requires_grad_is_differentiated(rng):
    q, k, v = _arrays(rng, 1, 1, 3, 4, 8, 8)
    bias = dc.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    out = SDPA(dc.tensor(q), dc.tensor(k), dc.tensor(v), mask=bias)
    out.sum().backward()
    _, p, _ = np_attention(q, k, v, bias.data, False, 1 / np.sqrt(8))
    dp = np.ones((1, 1, 3, 8)) @ np.swapaxes(v, -1, -2)
    np.testing.assert_allclose(bias.grad.data,
                               (p * (dp - (p * dp).sum(-1, keepdims=True)))[0, 0], rtol=1e-10)


def test_fused_path_memory_stays_linear_in_length(rng):
    """Forward and backward at L = 2048 allocate nothing of L x L size from Python's view: no
    (Lq, Lk) array exists (the reference would allocate 16 MiB per table)."""
    q, k, v = (dc.tensor(a, requires_grad=True) for a in _arrays(rng, 1, 1, 2048, 32, 32, 32,
                                                                  np.float32))
    tracemalloc.start()
    try:
        out = SDPA(q, k, v, causal=True)
        out.backward(dc.tensor(np.ones(out.shape, np.float32)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2048 * 2048 * 4 / 8, f"peak {peak / 2**20:.1f} MiB"


def test_bad_inputs():
    f = dc.tensor(np.zeros((1, 2, 3, 8), np.float32))
    with pytest.raises(ValueError, match=r"scaled_dot_product_attention: q must be 4-D \(B, H, "
                                         r"L, D\), got shape \(2, 3, 8\)"):
        SDPA(f[0], f, f)
    with pytest.raises(ValueError, match="q has head dim 8 .* but k has 4"):
        SDPA(f, dc.tensor(np.zeros((1, 2, 3, 4), np.float32)), f)
    with pytest.raises(ValueError, match="k has 3 keys .* but v has 5"):
        SDPA(f, f, dc.tensor(np.zeros((1, 2, 5, 8), np.float32)))
    with pytest.raises(ValueError, match="must share batch and head axes"):
        SDPA(f, dc.tensor(np.zeros((1, 3, 3, 8), np.float32)), f)
    with pytest.raises(TypeError, match="q, k, v are float32, float64, float32"):
        SDPA(f, f.astype(np.float64), f)
    with pytest.raises(TypeError, match="expected a float32 or float64 tensor, got int64"):
        SDPA(dc.tensor(np.zeros((1, 2, 3, 8), np.int64)), f, f)
    with pytest.raises(ValueError, match=r"mask of shape \(4, 3\) does not broadcast to "
                                         r"\(B, H, Lq, Lk\) = \(1, 2, 3, 3\)"):
        SDPA(f, f, f, mask=np.ones((4, 3), bool))
    with pytest.raises(TypeError, match="mask must be boolean .* got dtype int64"):
        SDPA(f, f, f, mask=np.ones((3, 3), np.int64))
    with pytest.raises(TypeError, match=r"a float mask must have q's dtype \(float32\)"):
        SDPA(f, f, f, mask=np.zeros((3, 3)))
    with pytest.raises(TypeError, match="causal must be a bool"):
        SDPA(f, f, f, causal="yes")
    with pytest.raises(TypeError, match="scale must be a number or None, got str"):
        SDPA(f, f, f, scale="1")
    with pytest.raises(ValueError, match="scale must be finite"):
        SDPA(f, f, f, scale=float("inf"))
