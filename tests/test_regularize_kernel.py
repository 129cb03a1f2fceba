"""The fused Jacobian-penalty kernel (cpp/jacobian, ops/jacobian.py): against a NumPy float64
reference built from the per-sample Jacobians, against the generic (double-backprop) path to
1e-5 in float32, against torch's double backprop, gradcheck in float64, edge cases, errors,
and every CPU path.  ``OPS_ROWS`` are this primitive's rows of tests/test_ops.py's table."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.ops.jacobian import jacobian_penalty, jacobian_projection
from deepcalc.regularize import JacobianRegularizer, mlp_chain
from deepcalc.testing import gradcheck

from conftest import act_deriv_ref, act_ref, assert_file_passes_on_cpu_path


def _np_jacobians(x, ws, bs, acts):
    """Per-sample Jacobians J_i (C, IN) of the MLP, float64, by the chain rule
    J_i = diag(a_L) W_L ... diag(a_1) W_1 with a_l = act_l'(z_l)."""
    h = np.asarray(x, np.float64)
    js = np.broadcast_to(np.eye(h.shape[1]), (h.shape[0],) + (h.shape[1],) * 2)
    for w, b, act in zip(ws, bs, acts):
        w = np.asarray(w, np.float64)
        z = h @ w.T + (0 if b is None else np.asarray(b, np.float64))
        y = act_ref(z, act)
        a = act_deriv_ref(z if act == "gelu" else y, act)
        js = a[:, :, None] * np.einsum("oi,bij->boj", w, js)
        h = y
    return js


def _np_penalty(x, v, ws, bs, acts, n_proj, scale):
    js = _np_jacobians(x, ws, bs, acts)
    B = x.shape[0]
    C, IN = js.shape[1:]
    u = np.einsum("pbc,bci->pbi", np.asarray(v, np.float64).reshape(n_proj, B, C), js)
    return scale * np.sum(u * u), u.reshape(n_proj * B, IN)


def _row(acts, n_proj, B, dims, bias):
    """A test_ops row: the penalty of an MLP with activations ``acts`` and widths ``dims``."""
    def fn(x, v, *flat):
        ws, bs, it = [], [], iter(flat)
        for hb in bias:
            ws.append(next(it))
            bs.append(next(it) if hb else None)
        return jacobian_penalty(x, v, ws, bs, list(acts), n_proj, 0.7)

    def ref(x, v, *flat):
        ws, bs, it = [], [], iter(flat)
        for hb in bias:
            ws.append(next(it))
            bs.append(next(it) if hb else None)
        return _np_penalty(x, v, ws, bs, acts, n_proj, 0.7)[0]
    specs = [((B, dims[0]), "n"), ((n_proj * B, dims[-1]), "n")]
    for i, hb in enumerate(bias):
        specs.append(((dims[i + 1], dims[i]), "n"))
        if hb:
            specs.append(((dims[i + 1],), "n"))
    return (f"jacobian_penalty_{'_'.join(acts)}", fn, ref, specs)


OPS_ROWS = [_row(("tanh", "none"), 2, 3, (4, 5, 2), (True, False)),  # every input enters S
            _row(("gelu", "sigmoid"), 1, 2, (3, 4, 2), (True, True))]

ACT_CASES = [("relu", "relu", "none"), ("tanh", "none"), ("gelu", "sigmoid", "tanh"),
             ("relu", "tanh", "none")]


def _mlp_arrays(rng, dims, dtype, bias=True):
    ws = [(rng.standard_normal((dims[i + 1], dims[i])) / np.sqrt(dims[i])).astype(dtype)
          for i in range(len(dims) - 1)]
    bs = [rng.standard_normal(dims[i + 1]).astype(dtype) * 0.3 if bias else None
          for i in range(len(dims) - 1)]
    return ws, bs


@pytest.mark.parametrize("acts", ACT_CASES, ids=["-".join(a) for a in ACT_CASES])
@pytest.mark.parametrize("n_proj", [1, 3])
def test_kernel_matches_numpy_jacobians_float64(acts, n_proj, rng):
    dims = [6, 7, 5, 3][:len(acts) + 1]
    ws, bs = _mlp_arrays(rng, dims, np.float64)
    x = rng.standard_normal((4, dims[0]))
    v = rng.standard_normal((n_proj * 4, dims[-1]))
    u, sq = jacobian_projection(x, v, ws, bs, list(acts), n_proj)
    S_ref, u_ref = _np_penalty(x, v, ws, bs, acts, n_proj, 1.0)
    np.testing.assert_allclose(u, u_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(sq, (u_ref ** 2).reshape(n_proj, 4, -1).sum(axis=(0, 2)),
                               rtol=1e-12)
    S = jacobian_penalty(x, v, ws, bs, list(acts), n_proj, 1.0)
    np.testing.assert_allclose(S.item(), S_ref, rtol=1e-12)


@pytest.mark.parametrize("acts", ACT_CASES, ids=["-".join(a) for a in ACT_CASES])
def test_kernel_gradient_equals_generic_path_float32(acts, rng):
    """The fused gradient equals double backprop through the ops (the generic path) to 1e-5
    relative, in float32, on an MLP with Dropout in eval mode inside a Sequential."""
    dims = [12, 10, 9, 4][:len(acts) + 1]
    dc.manual_seed(3)
    layers = []
    for i, act in enumerate(acts):
        layers.append(dc.nn.Linear(dims[i], dims[i + 1], activation=None if act == "none" else act))
        layers.append(dc.nn.Dropout(0.5))
    model = dc.nn.Sequential(*layers)
    model.eval()
    assert mlp_chain(model) is not None
    x = dc.tensor(rng.standard_normal((16, dims[0])).astype(np.float32))
    grads, values = [], []
    for fused in (True, False):
        reg = JacobianRegularizer(0.3, n_proj=2, generator=np.random.default_rng(7), fused=fused)
        for p in model.parameters():
            p.grad = None
        pen = reg(model, x)
        pen.backward()
        assert reg.last_path == ("fused" if fused else "generic")
        values.append(pen.item())
        grads.append([np.zeros_like(p.data) if p.grad is None else p.grad.data.copy()
                      for p in model.parameters()])
    np.testing.assert_allclose(values[0], values[1], rtol=1e-5)
    for gf, gg in zip(*grads):
        scale = max(np.abs(gg).max(), 1e-30)
        np.testing.assert_allclose(gf / scale, gg / scale, rtol=0, atol=1e-5)


def test_kernel_matches_torch_double_backprop(rng):
    torch = pytest.importorskip("torch")
    dims, acts = [8, 6, 6, 3], ["tanh", "gelu", "none"]
    ws, bs = _mlp_arrays(rng, dims, np.float64)
    x = rng.standard_normal((5, 8))
    v = rng.standard_normal((2 * 5, 3))
    wt = [dc.tensor(w, requires_grad=True) for w in ws]
    bt = [dc.tensor(b, requires_grad=True) for b in bs]
    S = jacobian_penalty(x, v, wt, bt, acts, 2, 0.5)
    S.backward()
    tw = [torch.tensor(w, requires_grad=True) for w in ws]
    tb = [torch.tensor(b, requires_grad=True) for b in bs]
    fns = {"tanh": torch.tanh, "gelu": torch.nn.functional.gelu, "none": lambda z: z}
    xr = torch.tensor(np.concatenate([x, x]), requires_grad=True)
    h = xr
    for w, b, a in zip(tw, tb, acts):
        h = fns[a](h @ w.T + b)
    (u,) = torch.autograd.grad(h, xr, torch.tensor(v), create_graph=True)
    ts = 0.5 * (u * u).sum()
    ts.backward()
    np.testing.assert_allclose(S.item(), ts.item(), rtol=1e-12)
    for ours, theirs in zip(wt + bt, tw + tb):  # the last bias does not enter J: None in torch
        ref = np.zeros(theirs.shape) if theirs.grad is None else theirs.grad.numpy()
        np.testing.assert_allclose(ours.grad.data, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("acts", [("relu", "tanh", "none"), ("sigmoid", "gelu")])
def test_kernel_gradcheck_float64(acts, rng):
    """Finite differences of the penalty in every weight and bias against the kernel's own
    gradient (the fused first-order VJP: x and v do not require grad)."""
    dims = [5, 4, 3, 2][:len(acts) + 1]
    ws, bs = _mlp_arrays(rng, dims, np.float64)
    x = dc.tensor(rng.standard_normal((3, dims[0])))
    v = dc.tensor(rng.standard_normal((2 * 3, dims[-1])))
    flat = [dc.tensor(t, requires_grad=True) for w, b in zip(ws, bs) for t in (w, b)]

    def f(*params):
        return jacobian_penalty(x, v, list(params[0::2]), list(params[1::2]), list(acts), 2, 0.9)
    assert gradcheck(f, flat)


def test_fused_vjp_is_the_kernels_gradient(rng, monkeypatch):
    """A plain backward takes the kernel's gradient (no composite re-run); create_graph takes
    the composite, and both agree."""
    import deepcalc.ops.jacobian as jac
    calls = []
    orig = jac._penalty_composite
    monkeypatch.setattr(jac, "_penalty_composite", lambda p: calls.append(1) or orig(p))
    ws, bs = _mlp_arrays(rng, [4, 5, 2], np.float64)
    wt = [dc.tensor(w, requires_grad=True) for w in ws]
    x, v = rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    S = jacobian_penalty(x, v, wt, bs, ["tanh", "none"], 1, 1.0)
    S.backward()
    assert calls == []
    g1 = [w.grad.data.copy() for w in wt]
    S = jacobian_penalty(x, v, wt, bs, ["tanh", "none"], 1, 1.0)
    gs = dc.autograd_grad(S, wt, create_graph=True)
    assert calls
    for a, b in zip(g1, gs):
        np.testing.assert_allclose(a, b.data, rtol=1e-12)


def test_empty_batch_and_nan(rng):
    ws, bs = _mlp_arrays(rng, [3, 4, 2], np.float32)
    wt = [dc.tensor(w, requires_grad=True) for w in ws]
    S = jacobian_penalty(np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32), wt, bs,
                         ["relu", "none"], 1, 1.0)
    S.backward()
    assert S.item() == 0 and all(np.all(w.grad.data == 0) for w in wt)
    x = rng.standard_normal((2, 3)).astype(np.float32)
    x[0, 1] = np.nan
    u, sq = jacobian_projection(x, rng.standard_normal((2, 2)).astype(np.float32), ws, bs,
                                ["tanh", "none"], 1)
    assert np.isnan(sq[0]) and np.isfinite(sq[1])


@pytest.mark.parametrize("bad, match", [
    (dict(v_shape=(5, 2)), r"v has shape \(5, 2\), expected \(n_proj \* B, C\) = \(4, 2\)"),
    (dict(w0_shape=(4, 5)), r"weight 0 has shape \(4, 5\), expected \(out, 3\)"),
    (dict(act="swish"), r"unknown activation 'swish' of layer 0"),
    (dict(n_proj=0), r"n_proj must be an integer >= 1"),
    (dict(dtype64_v=True), r"v is float64 but x is float32"),
])
def test_errors_name_the_op_and_shapes(bad, match, rng):
    ws, bs = _mlp_arrays(rng, [3, 4, 2], np.float32)
    if "w0_shape" in bad:
        ws[0] = np.zeros(bad["w0_shape"], np.float32)
    x = np.zeros((2, 3), np.float32)
    v = np.zeros(bad.get("v_shape", (4, 2)), np.float64 if bad.get("dtype64_v") else np.float32)
    with pytest.raises((ValueError, TypeError), match="jacobian_penalty: " + match):
        jacobian_penalty(x, v, ws, bs, [bad.get("act", "relu"), "none"], bad.get("n_proj", 2), 1.0)


def test_binding_rejects_a_broken_chain(rng):
    with pytest.raises(ValueError, match=r"jacobian_penalty: weights\[1\] has shape \(2, 5\), "
                                         r"expected \(OUT, 4\)"):
        dc._core.jacobian_penalty(np.zeros((2, 3)), np.zeros((2, 2)),
                                  [np.zeros((4, 3)), np.zeros((2, 5))], [None, None],
                                  ["relu", "none"], 1, 1.0, True)


@pytest.mark.parametrize("path", ["scalar", "avx2"])
def test_this_file_passes_on_each_cpu_path(path):
    assert_file_passes_on_cpu_path(path, __file__)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_kernel_fuzz_against_numpy(data):
    """Random chains (1-3 layers, widths 1-9, batch 0-5, 1-3 projections, any activations,
    biases or not, float32 / float64, NaN or Inf in x now and then): u and sq equal the NumPy
    per-sample Jacobians', the gradient equals the composite's, NaN/Inf propagate."""
    seed = data.draw(st.integers(0, 2 ** 16))
    r = np.random.default_rng(seed)
    L = data.draw(st.integers(1, 3))
    dims = [data.draw(st.integers(1, 9)) for _ in range(L + 1)]
    acts = [data.draw(st.sampled_from(["none", "relu", "tanh", "sigmoid", "gelu"]))
            for _ in range(L)]
    B, P = data.draw(st.integers(0, 5)), data.draw(st.integers(1, 3))
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    ws = [(r.standard_normal((dims[i + 1], dims[i])) / np.sqrt(dims[i])).astype(dtype)
          for i in range(L)]
    bs = [r.standard_normal(dims[i + 1]).astype(dtype) if data.draw(st.booleans()) else None
          for i in range(L)]
    x = r.standard_normal((B, dims[0])).astype(dtype)
    bad = B > 0 and data.draw(st.booleans())
    if bad:
        x[0, 0] = data.draw(st.sampled_from([np.nan, np.inf]))
    v = r.standard_normal((P * B, dims[-1])).astype(dtype)
    u, sq = jacobian_projection(x, v, ws, bs, acts, P)
    with np.errstate(all="ignore"):
        _, u_ref = _np_penalty(x, v, ws, bs, acts, P, 1.0)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    # NaN / Inf in x give what the formulas give (NaN where J depends on x, e.g. not through a
    # single linear layer; Inf may saturate to a finite J), exactly as the NumPy reference
    np.testing.assert_allclose(u, u_ref, equal_nan=True, **tol)
    sq_ref = (u_ref.reshape(P, B, dims[0]) ** 2).sum(axis=(0, 2))
    np.testing.assert_allclose(sq, sq_ref, equal_nan=True, **tol)
    wt = [dc.tensor(w, requires_grad=True) for w in ws]
    bt = [None if b is None else dc.tensor(b, requires_grad=True) for b in bs]
    if bad:
        return
    S = jacobian_penalty(x, v, wt, bt, acts, P, 0.5)
    flat = [t for w, b in zip(wt, bt) for t in ((w,) if b is None else (w, b))]
    fused = dc.autograd_grad(S, flat, allow_unused=True)
    import deepcalc.ops.jacobian as jac
    params = {"activations": tuple(acts), "has_bias": tuple(b is not None for b in bs),
              "n_proj": P, "scale": 0.5}
    Sc = jac._penalty_composite(params)(dc.tensor(x), dc.tensor(v), *flat)
    generic = dc.autograd_grad(Sc, flat, allow_unused=True)
    np.testing.assert_allclose(S.item(), Sc.item(), **tol)
    for a, b in zip(fused, generic):
        ref = np.zeros_like(a.data) if b is None else b.data
        scale = max(np.abs(ref).max(), 1.0)
        np.testing.assert_allclose(a.data / scale, ref / scale, **tol)
