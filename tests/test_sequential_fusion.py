"""Sequential(Linear(...), ReLU(), ...) — torch's idiom — runs each Linear and the activation
module after it as one fused kernel (forward and backward), with the values and gradients of the
unfused modules; a hook on either module keeps them apart."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.testing import gradcheck, gradgradcheck

nn = dc.nn
ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


def _seq(act, dtype=np.float32):
    dc.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4, dtype=dtype), ACTS[act](), nn.Linear(4, 3, dtype=dtype))


def _unfused(seq, x):
    for m in seq.children():
        x = m(x)
    return x


@pytest.mark.parametrize("act", ACTS)
def test_fused_values_and_gradients_equal_the_unfused_modules(act):
    seq = _seq(act)
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    out = {}
    for name, run in (("fused", seq), ("unfused", lambda t: _unfused(seq, t))):
        xt = dc.tensor(x, requires_grad=True)
        y = run(xt)
        (y * y).sum().backward()
        out[name] = [y.data, np.asarray(xt.grad)] + [np.array(p.grad) for p in seq.parameters()]
        seq.zero_grad()
    for a, b in zip(out["fused"], out["unfused"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_the_activation_runs_in_the_linear_epilogue(act, monkeypatch):
    seq = _seq(act)
    called = []
    monkeypatch.setattr(type(seq[1]), "forward", lambda self, x: called.append(1) or x)
    x = dc.tensor(np.ones((2, 5), np.float32), requires_grad=True)
    assert seq(x).grad_fn.prim.name == "linear"
    assert not called, "the activation module ran on its own"
    with dc.no_grad():
        seq(x)
    assert not called


def test_a_hook_keeps_the_modules_apart():
    seq = _seq("relu")
    seen = []
    seq[1].register_forward_hook(lambda m, inp, out: seen.append(out.shape))
    seq(dc.tensor(np.ones((2, 5), np.float32)))
    assert seen == [(2, 4)]


def test_no_fusion_over_a_linear_with_its_own_activation_or_tanh_gelu():
    dc.manual_seed(0)
    seq = nn.Sequential(nn.Linear(3, 3, activation="tanh"), nn.ReLU(), nn.Linear(3, 3),
                        nn.GELU(approximate="tanh"))
    x = dc.tensor(np.random.default_rng(1).standard_normal((2, 3)).astype(np.float32))
    np.testing.assert_allclose(seq(x).data, _unfused(seq, x).data, rtol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_fused_sequential_second_order(act):
    seq = _seq(act, np.float64)
    x = dc.tensor(np.random.default_rng(2).standard_normal((3, 5)), requires_grad=True)
    f = lambda x: (seq(x) ** 2).sum()
    assert gradcheck(f, (x,)) and gradgradcheck(f, (x,))
