"""dc.nn.RNN against torch.nn.RNN with copied weights (outputs, h_n and every gradient), the
recurrence primitives (ops/rnn.py) by finite differences to second order in both modes, and the
errors bad input gets."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.ops.rnn import rnn_sequence

NONLIN = ["tanh", "relu", "identity"]


def _copy_to_torch(m, torch, **kw):
    ref = torch.nn.RNN(m.input_size, m.hidden_size, num_layers=m.num_layers,
                       nonlinearity="tanh" if m.nonlinearity == "identity" else m.nonlinearity,
                       batch_first=m.batch_first, dtype=torch.float64, **kw)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.tensor(getattr(m, name).data))
    return ref


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("num_layers, batch_first, with_h0",
                         [(1, False, False), (2, False, True), (2, True, True), (3, True, False)])
def test_rnn_matches_torch(nonlinearity, num_layers, batch_first, with_h0, rng):
    torch = pytest.importorskip("torch")
    T, N, I, H = 7, 3, 4, 5
    m = dc.nn.RNN(I, H, num_layers=num_layers, nonlinearity=nonlinearity,
                  batch_first=batch_first, dtype=np.float64)
    ref = _copy_to_torch(m, torch)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I))
    h0 = rng.standard_normal((num_layers, N, H)) if with_h0 else None
    w_out = rng.standard_normal((N, T, H) if batch_first else (T, N, H))
    w_h = rng.standard_normal((num_layers, N, H))

    xd = dc.tensor(x, requires_grad=True)
    h0d = dc.tensor(h0, requires_grad=True) if with_h0 else None
    out, hn = m(xd, h0d)
    ((out * dc.tensor(w_out)).sum() + (hn * dc.tensor(w_h)).sum()).backward()

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True) if with_h0 else None
    out_t, hn_t = ref(xt, h0t)
    ((out_t * torch.tensor(w_out)).sum() + (hn_t * torch.tensor(w_h)).sum()).backward()

    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hn.data, hn_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xd.grad.data, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    if with_h0:
        np.testing.assert_allclose(h0d.grad.data, h0t.grad.numpy(), rtol=1e-9, atol=1e-12)
    for name, p in ref.named_parameters():
        np.testing.assert_allclose(getattr(m, name).grad.data, p.grad.numpy(), rtol=1e-9,
                                   atol=1e-12, err_msg=name)


def test_rnn_float32_matches_torch_and_unbatched(rng):
    torch = pytest.importorskip("torch")
    m = dc.nn.RNN(6, 8)
    ref = torch.nn.RNN(6, 8)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.tensor(getattr(m, name).data))
    x = rng.standard_normal((20, 4, 6)).astype(np.float32)
    out, hn = m(dc.tensor(x))
    out_t, hn_t = ref(torch.tensor(x))
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), atol=1e-5)
    # unbatched (T, input_size) input, as torch accepts
    out1, hn1 = m(dc.tensor(x[:, 0]))
    assert out1.shape == (20, 8) and hn1.shape == (1, 8)
    np.testing.assert_allclose(out1.data, out.data[:, 0], atol=1e-6)


def test_identity_rnn_is_the_linear_recurrence(rng):
    T, N, I, H = 6, 2, 3, 4
    m = dc.nn.RNN(I, H, nonlinearity="identity", dtype=np.float64)
    x = rng.standard_normal((T, N, I))
    out, _ = m(dc.tensor(x))
    Wi, Wh = m.weight_ih_l0.data, m.weight_hh_l0.data
    b = m.bias_ih_l0.data + m.bias_hh_l0.data
    h = np.zeros((N, H))
    for t in range(T):
        h = x[t] @ Wi.T + b + h @ Wh.T
        np.testing.assert_allclose(out.data[t], h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_rnn_sequence_derivatives_to_second_order(nonlinearity, rng):
    T, N, H = 4, 2, 3
    proj = dc.tensor(rng.standard_normal((T, N, H)) * 0.7)
    h0 = dc.tensor(rng.standard_normal((N, H)) * 0.5)
    w = dc.tensor(rng.standard_normal((H, H)) * 0.6)
    if nonlinearity == "relu":   # keep pre-activations away from the kink for finite differences
        proj = dc.tensor(np.abs(proj.data) + 0.5)
        h0 = dc.tensor(np.abs(h0.data))
        w = dc.tensor(np.abs(w.data) * 0.3)
    f = lambda p, h, W: rnn_sequence(p, h, W, nonlinearity)
    assert dc.testing.gradcheck(f, (proj, h0, w))
    assert dc.testing.gradgradcheck(f, (proj, h0, w))


@pytest.mark.parametrize("nonlinearity", NONLIN)
def test_rnn_hvp_forward_over_reverse_equals_reverse_over_reverse(nonlinearity, rng):
    m = dc.nn.RNN(3, 4, num_layers=2, nonlinearity=nonlinearity, dtype=np.float64)
    x = dc.tensor(rng.standard_normal((5, 2, 3)))
    params = dict(m.named_parameters())
    wts = dc.tensor(rng.standard_normal((5, 2, 4)))

    def loss(p):
        out, hn = dc.func.functional_call(m, p, x)
        return (out * wts).sum() + (hn ** 2).sum()
    tangent = {k: dc.tensor(rng.standard_normal(v.shape)) for k, v in params.items()}
    _, fwd = dc.hvp(loss, (params,), (tangent,))
    # reverse over reverse: d/dp <grad L(p), v>
    rev = dc.grad(lambda p: sum((dc.grad(loss)(p)[k] * tangent[k]).sum() for k in p))(params)
    for k in params:
        np.testing.assert_allclose(fwd[k].data, rev[k].data, rtol=1e-8, atol=1e-10, err_msg=k)


def test_rnn_jvp_matches_jacrev(rng):
    m = dc.nn.RNN(2, 3, nonlinearity="tanh", dtype=np.float64)
    x = dc.tensor(rng.standard_normal((4, 1, 2)))
    f = lambda z: m(z)[0]
    J = dc.jacrev(f)(x).data.reshape(12, 8)
    v = rng.standard_normal((4, 1, 2))
    _, t = dc.jvp(f, (x,), (dc.tensor(v),))
    np.testing.assert_allclose(t.data.ravel(), J @ v.ravel(), rtol=1e-10, atol=1e-12)


def test_rnn_errors():
    with pytest.raises(ValueError, match="RNN: nonlinearity must be one of"):
        dc.nn.RNN(2, 3, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="RNN: hidden_size must be an integer"):
        dc.nn.RNN(2, 3.0)
    m = dc.nn.RNN(2, 3, num_layers=2)
    with pytest.raises(ValueError, match=r"RNN: expected input \(T, N, input_size\).*got shape "
                                         r"\(4, 1, 5\)"):
        m(dc.tensor(np.zeros((4, 1, 5), np.float32)))
    with pytest.raises(ValueError, match=r"RNN: h0 must have shape \(2, 1, 3\)"):
        m(dc.tensor(np.zeros((4, 1, 2), np.float32)), dc.tensor(np.zeros((1, 1, 3), np.float32)))
    with pytest.raises(TypeError, match="RNN: input is float64 but weight_ih_l0 is float32"):
        m(dc.tensor(np.zeros((4, 1, 2))))
    with pytest.raises(ValueError, match=r"RNN: the sequence is empty"):
        m(dc.tensor(np.zeros((0, 1, 2), np.float32)))
    with pytest.raises(ValueError, match=r"rnn_sequence: expected proj \(T >= 1, N, H\)"):
        rnn_sequence(dc.tensor(np.zeros((2, 1, 3))), dc.tensor(np.zeros((1, 4))),
                     dc.tensor(np.zeros((3, 3))), "tanh")


def test_rnn_nan_propagates():
    m = dc.nn.RNN(2, 3)
    x = np.zeros((3, 1, 2), np.float32)
    x[1, 0, 0] = np.nan
    out, _ = m(dc.tensor(x))
    assert np.isfinite(out.data[0]).all() and np.isnan(out.data[1:]).all()
