"""The primitive registry against the test table (tests/test_ops.py OPS): every registered
primitive must be exercised, to second order, by some row, so a primitive cannot be added
without its tests.  Also: forward-over-reverse and reverse-over-reverse Hessian-vector products
agree on every row (the JVP and VJP rules of the backward primitives), and the fused backward
kernels run inside ``create_graph``, ``hvp`` and ``jvp``."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.autodiff.graph import REGISTRY, Primitive
from deepcalc.nn import functional as F

from test_ops import IDS, OPS, _inputs

# Registered classes that are not primitives of their own: shared bases of real ones.
ABSTRACT = {"deepcalc.ops.norm._NormForward", "deepcalc.ops.norm._NormBackward"}
# Primitives whose values and derivatives are checked by tests of their own, because a table row
# (float64 gradcheck) cannot hold them: (function, input specs, where the checks are).
EXTRA_ROWS = {
    "deepcalc.ops.convert_dtype.Cast": (lambda a: a.astype(np.float32).astype(np.float64) * a,
                                        [((2, 3), "n")], "test_ops.py::test_astype_*"),
    # the identity a transform differentiates at, made when an outer transform watches x
    "deepcalc.autodiff.graph.Alias": (lambda a: dc.grad(lambda z: (z ** 3).sum())(a),
                                      [((2, 3), "n")], "test_transforms.py (nested transforms)"),
}


def _second_order(fn, arrays, rng):
    """Forward, a create_graph gradient and its gradient, and an hvp: every rule of every
    primitive the row uses (and of their backward primitives) runs."""
    xs = [dc.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*xs)
    w = dc.tensor(rng.standard_normal(out.shape))
    gs = dc.autograd_grad((out * w).sum(), xs, create_graph=True)
    total = sum((g * dc.tensor(rng.standard_normal(g.shape))).sum() for g in gs if g is not None)
    if isinstance(total, dc.Tensor) and total.requires_grad:  # else the gradient is constant
        total.backward()
    ts = tuple(dc.tensor(rng.standard_normal(a.shape)) for a in arrays)
    dc.hvp(lambda *z: (fn(*z) * w).sum(), tuple(dc.tensor(a) for a in arrays), ts)


def test_every_registered_primitive_has_a_row(monkeypatch, rng):
    seen = set()
    for key, cls in REGISTRY.items():
        if "forward" in cls.__dict__:
            orig = cls.__dict__["forward"]

            def counted(self, *a, _orig=orig, **k):
                seen.update(f"{c.__module__}.{c.__qualname__}" for c in type(self).__mro__)
                return _orig(self, *a, **k)
            monkeypatch.setattr(cls, "forward", counted)
    for name, fn, _, specs in OPS:
        _second_order(fn, _inputs(rng, specs), rng)
    for fn, specs, _ in EXTRA_ROWS.values():
        _second_order(fn, _inputs(rng, specs), rng)
    registered = {k for k, c in REGISTRY.items() if c.__module__.startswith("deepcalc.")}
    assert len(registered) > 40
    missing = sorted(registered - seen - ABSTRACT)
    assert not missing, f"registered primitives no row of tests/test_ops.py OPS exercises: {missing}"


def test_every_primitive_subclass_is_registered():
    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)
    names = {f"{c.__module__}.{c.__qualname__}" for c in subclasses(Primitive)}
    assert names <= set(REGISTRY)


@pytest.mark.parametrize("name, fn, ref, specs", OPS, ids=IDS)
def test_hvp_forward_over_reverse_matches_reverse_over_reverse(name, fn, ref, specs, rng):
    arrays = _inputs(rng, specs)
    xs = tuple(dc.tensor(a) for a in arrays)
    w = dc.tensor(rng.standard_normal(fn(*xs).shape))
    ts = tuple(dc.tensor(rng.standard_normal(a.shape)) for a in arrays)
    f = lambda *z: (fn(*z) * w).sum()
    _, fwd = dc.hvp(f, xs, ts)
    fwd = fwd if isinstance(fwd, tuple) else (fwd,)
    leaves = [dc.tensor(a, requires_grad=True) for a in arrays]
    gs = dc.autograd_grad(f(*leaves), leaves, create_graph=True)
    dot = sum((g * t).sum() for g, t in zip(gs, ts))
    rev = dc.autograd_grad(dot, leaves, allow_unused=True)
    for a, b, x in zip(fwd, rev, arrays):
        b = np.zeros_like(x) if b is None else b.data
        np.testing.assert_allclose(a.data, b, rtol=1e-9, atol=1e-11, err_msg=name)


def _count_kernels(monkeypatch):
    import sys
    linear, norm, softmax = (sys.modules[f"deepcalc.ops.{m}"] for m in ("linear", "norm", "softmax"))
    calls = {}
    for cls in (linear.LinearBackward, norm.BatchNormBackward, norm.LayerNormBackward,
                softmax.SoftmaxBackward):
        orig = cls.forward

        def counted(self, *a, _orig=orig, **k):
            calls[self.name] = calls.get(self.name, 0) + 1
            return _orig(self, *a, **k)
        monkeypatch.setattr(cls, "forward", counted)
    return calls


def _mlp(x, p):
    h = F.linear(x, p["w1"], p["b1"], activation="tanh")
    h = F.batch_norm(h, training=True)
    h = F.linear(h, p["w2"], p["b2"], activation="relu")
    h = F.layer_norm(h, weight=p["g"], bias=p["beta"])
    return F.log_softmax(F.linear(h, p["w3"], p["b3"]), -1)


@pytest.mark.parametrize("transform", ["create_graph", "hvp", "jvp_of_grad"])
def test_fused_backward_kernels_run_at_second_order(transform, monkeypatch, rng):
    shapes = {"w1": (6, 5), "b1": (6,), "w2": (6, 6), "b2": (6,), "g": (6,), "beta": (6,),
              "w3": (3, 6), "b3": (3,)}
    p = {k: dc.tensor(rng.standard_normal(s)) for k, s in shapes.items()}
    x = dc.tensor(rng.standard_normal((4, 5)))
    loss = lambda p: (_mlp(x, p) ** 2).sum()
    calls = _count_kernels(monkeypatch)
    if transform == "create_graph":
        leaves = {k: dc.tensor(v.data, requires_grad=True) for k, v in p.items()}
        gs = dc.autograd_grad(loss(leaves), list(leaves.values()), create_graph=True)
        sum((g * g).sum() for g in gs).backward()
    elif transform == "hvp":
        dc.hvp(loss, (p,), ({k: dc.ones_like(v) for k, v in p.items()},))
    else:
        dc.jvp(dc.grad(loss), (p,), ({k: dc.ones_like(v) for k, v in p.items()},))
    for name in ("linear_backward", "batch_norm_backward", "layer_norm_backward",
                 "log_softmax_backward"):
        assert calls.get(name, 0) >= 1, f"{transform}: {name} did not run ({calls})"


THIRD_ORDER = [row for row in OPS if row[0].startswith(("linear", "batch_norm", "layer_norm",
                                                        "softmax", "log_softmax"))]


@pytest.mark.parametrize("name, fn, ref, specs", THIRD_ORDER, ids=[r[0] for r in THIRD_ORDER])
def test_third_order_through_the_fused_kernels(name, fn, ref, specs, rng):
    """gradcheck (reverse and forward mode against central differences) of an HVP: the rules of
    the backward primitives and of their forward-mode (JVP) primitives."""
    arrays = _inputs(rng, specs)
    w = dc.tensor(rng.standard_normal(fn(*[dc.tensor(a) for a in arrays]).shape))
    ts = tuple(dc.tensor(rng.standard_normal(a.shape)) for a in arrays)
    f = lambda *z: (dc.tanh(fn(*z)) * w).sum()

    def hv(*xs):
        h = dc.hvp(f, xs, ts)[1]
        return tuple(h) if isinstance(h, tuple) else h
    assert dc.testing.gradcheck(hv, tuple(dc.tensor(a, requires_grad=True) for a in arrays))
