"""Reverse mode and the Tensor contract: backward, accumulation, retain_graph / create_graph,
no_grad, requires_grad rules, retain_grad, autograd_grad, shared and diamond graphs, zero-copy
NumPy interop, the dtype rule, NaN and empty tensors, error messages, thread settings."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc


def _leaf(rng, *shape):
    return dc.tensor(rng.standard_normal(shape), requires_grad=True)


# --- backward ----------------------------------------------------------------------------------

def test_backward_accumulates_over_two_calls(rng):
    x = _leaf(rng, 2, 3)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data)
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 3)


def test_second_backward_needs_retain_graph(rng):
    x = _leaf(rng, 3)
    y = (dc.exp(x) * x).sum()
    y.backward(retain_graph=True)
    g1 = x.grad.data.copy()
    y.backward()                                # allowed: the graph was retained
    np.testing.assert_allclose(x.grad.data, 2 * g1)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()                            # the second call freed it


def test_backward_without_retain_graph_then_again_raises(rng):
    x = _leaf(rng, 3)
    y = (x * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph"):
        y.backward()


def test_create_graph_to_third_order(rng):
    x = _leaf(rng, 4)
    y = (x ** 4).sum()
    (g1,) = dc.autograd_grad(y, [x], create_graph=True)
    np.testing.assert_allclose(g1.data, 4 * x.data ** 3)
    (g2,) = dc.autograd_grad(g1.sum(), [x], create_graph=True)
    np.testing.assert_allclose(g2.data, 12 * x.data ** 2)
    g2.sum().backward()
    np.testing.assert_allclose(x.grad.data, 24 * x.data)


def test_backward_create_graph_grad_is_differentiable(rng):
    x = _leaf(rng, 3)
    (dc.tanh(x).sum()).backward(create_graph=True)
    gx = x.grad
    assert gx.requires_grad
    (gs,) = dc.autograd_grad(gx.sum(), [x])
    t = np.tanh(x.data)
    np.testing.assert_allclose(gs.data, -2 * t * (1 - t ** 2))


def test_backward_with_explicit_grad_and_inputs(rng):
    x, w = _leaf(rng, 2, 3), _leaf(rng, 2, 3)
    y = x * w
    g = dc.tensor(rng.standard_normal((2, 3)))
    y.backward(g, inputs=[x])
    np.testing.assert_allclose(x.grad.data, g.data * w.data)
    assert w.grad is None


def test_backward_errors(rng):
    x = _leaf(rng, 2, 3)
    with pytest.raises(RuntimeError, match=r"single-element.*\(2, 3\)"):
        (x * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        dc.tensor(np.ones(3)).sum().backward()
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        (x * 2).backward(dc.tensor(np.ones(3)))


# --- grad mode and requires_grad ------------------------------------------------------------

def test_no_grad_records_nothing(rng):
    x = _leaf(rng, 3)
    with dc.no_grad():
        y = dc.exp(x) * 2
        assert not dc.is_grad_enabled()
        with dc.enable_grad():
            z = x * 2
    assert dc.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None

    @dc.no_grad()
    def f(a):
        return a * a
    assert not f(x).requires_grad
    assert (x * x).requires_grad


def test_requires_grad_rules(rng):
    with pytest.raises(TypeError, match="floating-point"):
        dc.tensor(np.arange(3), requires_grad=False).requires_grad_()
    with pytest.raises(TypeError, match="int64"):
        dc.Tensor(np.arange(3), requires_grad=True)
    # Python ints with requires_grad become float (the default dtype)
    t = dc.tensor([1, 2, 3], requires_grad=True)
    assert t.dtype == np.float32 and t.requires_grad
    x = _leaf(rng, 3)
    assert x.is_leaf and x.grad_fn is None
    y = x * 2
    assert not y.is_leaf and y.requires_grad and y.grad_fn is not None
    assert not (dc.tensor(np.ones(3)) * 2).requires_grad
    d = y.detach()
    assert not d.requires_grad and np.shares_memory(d.data, y.data)


def test_retain_grad_on_non_leaf(rng):
    x = _leaf(rng, 3)
    y = x * 2
    y.retain_grad()
    h = dc.exp(y)                   # not retained
    z = (y * h).sum()
    z.backward()
    np.testing.assert_allclose(y.grad.data, np.exp(y.data) * (1 + y.data))
    assert h.grad is None
    np.testing.assert_allclose(x.grad.data, 2 * y.grad.data)


def test_autograd_grad_allow_unused(rng):
    x, unused = _leaf(rng, 3), _leaf(rng, 2)
    y = (x * x).sum()
    gx, gu = dc.autograd_grad(y, [x, unused], retain_graph=True)
    np.testing.assert_allclose(gx.data, 2 * x.data)
    assert gu is None
    assert x.grad is None, "autograd_grad must not touch .grad"
    with pytest.raises(RuntimeError, match=r"input 1 \(shape \(2,\)\).*allow_unused"):
        dc.autograd_grad(y, [x, unused], allow_unused=False)


def test_same_tensor_used_twice(rng):
    x = _leaf(rng, 2, 3)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data)
    x.grad = None
    (x + x).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * np.ones((2, 3)))
    x.grad = None
    (x @ x.T).sum().backward()      # one matrix in both GEMM operands
    s = x.data.sum(axis=0)
    np.testing.assert_allclose(x.grad.data, 2 * np.broadcast_to(s, (2, 3)))


def test_diamond_graph(rng):
    x = _leaf(rng, 4)
    a = x * 2
    b = a * 3
    c = dc.tanh(a)
    (b * c).sum().backward()
    t = np.tanh(2 * x.data)
    np.testing.assert_allclose(x.grad.data, 6 * t + 6 * x.data * 2 * (1 - t ** 2), rtol=1e-12)


# --- NumPy interop ---------------------------------------------------------------------------

def test_zero_copy_interop():
    a32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = dc.tensor(a32)
    assert t.data is a32 and t.dtype == np.float32
    a64 = np.ones(3)
    assert dc.tensor(a64).data is a64                   # float64 arrays keep their dtype too
    assert np.asarray(t) is t.data
    a32[0, 0] = 42                                      # shared memory, both ways
    assert t.data[0, 0] == 42
    np.asarray(t)[1, 2] = -1
    assert a32[1, 2] == -1
    assert np.shares_memory(np.asarray(t, dtype=np.float32), a32)
    # a different dtype or copy=True copies
    c = np.array(t, copy=True)
    assert not np.shares_memory(c, a32)
    np.testing.assert_array_equal(c, a32)
    d = np.asarray(t, dtype=np.float64)
    assert d.dtype == np.float64 and not np.shares_memory(d, a32)
    with pytest.raises(ValueError, match="copy=False"):
        t.__array__(dtype=np.float64, copy=False)
    assert not np.shares_memory(dc.tensor(a32, dtype=np.float64).data, a32)


# --- the dtype rule ------------------------------------------------------------------------------

@pytest.mark.parametrize("op, name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"),
                                      (lambda a, b: a - b, "sub"), (lambda a, b: a / b, "div"),
                                      (lambda a, b: a @ b, "matmul"),
                                      (lambda a, b: dc.maximum(a, b), "maximum"),
                                      (lambda a, b: dc.where(np.ones(3, bool), a, b), "where")])
def test_mixed_float_dtypes_raise(op, name):
    a = dc.ones(3, 3)
    b = dc.ones(3, dtype=np.float64)
    with pytest.raises(TypeError, match=rf"{name}: .*float32 \(3, 3\).*float64 \(3,\)"):
        op(a, b)
    with pytest.raises(TypeError, match=name):
        op(a, np.ones(3))           # a float64 ndarray meets a float32 tensor
    with pytest.raises(TypeError, match="concatenate"):
        dc.concatenate([dc.ones(2), dc.ones(2, dtype=np.float64)])


def test_python_scalars_take_tensor_dtype():
    x64 = dc.ones(3, dtype=np.float64)
    x32 = dc.ones(3)
    assert dc.tensor([1.0, 2.0]).dtype == np.float32        # the default dtype
    assert dc.tensor(1.5).dtype == np.float32
    assert dc.zeros(2).dtype == dc.randn(2).dtype == np.float32
    for s in (2, 2.5, 1e-300):
        assert (x64 * s).dtype == np.float64 and (s - x64).dtype == np.float64
        assert (x32 * s).dtype == np.float32 and (s / x32).dtype == np.float32
    assert (x32 ** 2).dtype == np.float32
    # integer tensors meeting a float tensor give the float dtype
    assert (dc.tensor(np.arange(3)) + x64).dtype == np.float64


# --- NaN and empty tensors ---------------------------------------------------------------------

def test_nan_passes_through(rng):
    """NaN in gives NaN out and NaN gradients where the NaN flows, finite values elsewhere."""
    xs = rng.standard_normal((2, 3))
    xs[0, 1] = np.nan
    x = dc.tensor(xs, requires_grad=True)
    y = dc.exp(dc.tanh(x)) * x
    assert np.isnan(y.data[0, 1]) and np.isfinite(np.delete(y.data.ravel(), 1)).all()
    y.sum().backward()
    assert np.isnan(x.grad.data[0, 1])
    assert np.isfinite(np.delete(x.grad.data.ravel(), 1)).all()
    # through a softmax row and a matmul the NaN spreads over what depends on it
    x.grad = None
    s = dc.softmax(x, axis=1)
    assert np.isnan(s.data[0]).all() and np.isfinite(s.data[1]).all()
    (s @ dc.tensor(np.ones((3, 2)))).sum().backward()
    assert np.isnan(x.grad.data[0]).all() and np.isfinite(x.grad.data[1]).all()


def test_empty_tensors():
    x = dc.tensor(np.zeros((0, 3)), requires_grad=True)
    s = x.sum()
    assert s.shape == () and s.item() == 0.0
    s.backward()
    assert x.grad.shape == (0, 3)
    y = dc.tensor(np.zeros((0, 3)), requires_grad=True)
    col = (y * 2).sum(axis=0)
    np.testing.assert_array_equal(col.data, np.zeros(3))
    col.sum().backward()
    assert y.grad.shape == (0, 3)
    with pytest.raises(ValueError, match=r"max: .*empty.*\(0, 3\)"):
        dc.max(y)


# --- shape errors name the op and the shapes ------------------------------------------------------

@pytest.mark.parametrize("fn, pattern", [
    (lambda: dc.ones(2, 3) @ dc.ones(4, 5), r"matmul: .*\(2, 3\).*\(4, 5\)"),
    (lambda: dc.ones(2, 3) + dc.ones(4, 3), r"add: .*\(2, 3\).*\(4, 3\).*broadcast"),
    (lambda: dc.ones(2, 3) * dc.ones(2), r"mul: .*\(2, 3\).*\(2,\)"),
    (lambda: dc.ones(2, 3).reshape(4, 2), r"reshape: .*\(2, 3\).*\(4, 2\)"),
    (lambda: dc.concatenate([dc.ones(2, 3), dc.ones(2, 4)]), r"concatenate: .*\(2, 3\).*\(2, 4\)"),
    (lambda: dc.stack([dc.ones(2, 3), dc.ones(3, 2)]), r"stack: .*\(2, 3\).*\(3, 2\)"),
    (lambda: dc.sum(dc.ones(2, 3), axis=2), r"sum: axis 2 .*2 dimensions"),
    (lambda: dc.inv(dc.ones(2, 3)), r"inv: .*square.*\(2, 3\)"),
    (lambda: dc.ones(2, 3)[5], r"getitem: .*\(2, 3\)"),
])
def test_shape_errors_name_op_and_shapes(fn, pattern):
    with pytest.raises((ValueError, IndexError), match=pattern):
        fn()


# --- threads ---------------------------------------------------------------------------------

def test_num_threads_round_trip():
    old = dc.get_num_threads()
    try:
        dc.set_num_threads(1)
        assert dc.get_num_threads() == 1
        dc.set_num_threads(3)
        assert dc.get_num_threads() == 3
        for bad in (0, -2):
            with pytest.raises(ValueError, match="set_num_threads"):
                dc.set_num_threads(bad)
        assert dc.get_num_threads() == 3
    finally:
        dc.set_num_threads(old)
    assert dc.get_num_threads() == old


# --- edge cases of individual rules -------------------------------------------------------------

def test_pow_zero_exponent_has_zero_derivative_at_zero():
    """x**0 is the constant 1: its derivatives are 0 everywhere, x = 0 included (not 0 * inf)."""
    x = dc.tensor(np.array([0.0, 1.5, -2.0]), requires_grad=True)
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.zeros(3))
    _, t = dc.jvp(lambda a: a ** 0, (x,), (dc.ones_like(x),))
    np.testing.assert_array_equal(t.data, np.zeros(3))
    np.testing.assert_array_equal(dc.hessian(lambda a: (a ** 0).sum())(x).data, np.zeros((3, 3)))


def test_max_min_ties_share_the_gradient():
    x = dc.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, -1.0]]), requires_grad=True)
    dc.max(x, axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 0.5, 0.5], [0.5, 0.5, 0]])
    x.grad = None
    dc.min(x).backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 0, 0], [0, 0, 1]])


def test_softmax_with_minus_inf_masks():
    """Masked positions (-inf, as in causal attention) get probability 0 and gradient 0."""
    x = dc.tensor(np.array([[1.0, -np.inf, 2.0], [0.5, 0.5, -np.inf]]), requires_grad=True)
    y = dc.softmax(x, axis=1)
    np.testing.assert_allclose(y.data[0], [1 / (1 + np.e), 0, np.e / (1 + np.e)], rtol=1e-14)
    np.testing.assert_allclose(y.data[1], [0.5, 0.5, 0], rtol=1e-14)
    (y * dc.tensor(np.array([[1.0, 2, 3], [4, 5, 6]]))).sum().backward()
    assert np.isfinite(x.grad.data).all()
    assert x.grad.data[0, 1] == 0 and x.grad.data[1, 2] == 0


def test_leaf_grads_are_owned_writeable_arrays():
    """.grad never aliases the caller's grad=, another .grad, or a read-only broadcast."""
    x = dc.tensor(np.ones((2, 3)), requires_grad=True)
    w = dc.tensor(np.ones((2, 3)), requires_grad=True)
    g = dc.tensor(np.full((2, 3), 3.0))
    (x + w).backward(g)
    for t in (x, w):
        assert t.grad.data.flags.writeable and t.grad.data.flags.c_contiguous
        assert not np.shares_memory(t.grad.data, g.data)
    assert not np.shares_memory(x.grad.data, w.grad.data)
    x.grad.data[0, 0] = 7.0
    assert g.data[0, 0] == 3.0 and w.grad.data[0, 0] == 3.0

    p = dc.tensor(np.ones((3, 4)), requires_grad=True)
    p.sum().backward()
    assert p.grad.data.flags.writeable and p.grad.data.strides != (0, 0)
    p.grad.data[0, 0] = 2.0
    assert p.grad.data.sum() == 13.0

    # a reshape view and a pass-through of one gradient to two leaves
    a = dc.tensor(np.ones(6), requires_grad=True)
    b = dc.tensor(np.ones((2, 3)), requires_grad=True)
    (dc.reshape(a, (2, 3)) + b).backward(g)
    assert not np.shares_memory(a.grad.data, b.grad.data)
    np.testing.assert_array_equal(a.grad.data, np.full(6, 3.0))

    # backward(inputs=...) too
    c = dc.tensor(np.ones((2, 3)), requires_grad=True)
    (c * 1.0 + 0.0).backward(g, inputs=[c])
    assert not np.shares_memory(c.grad.data, g.data)


def test_create_graph_grads_stay_differentiable():
    x = dc.tensor(np.array([1.0, 2.0]), requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    g = x.grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.data, 6 * np.array([1.0, 2.0]))


def test_grad_wrt_some_inputs_skips_the_others_and_leaves_the_graph_whole():
    """grad(outputs, [x]) lets rules skip gradients no target needs (ctx.needs_grad), and a
    later backward over the retained graph still gets every gradient."""
    import deepcalc.ops.linear as linear_mod
    rng = np.random.default_rng(0)
    x = dc.tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = dc.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    b = dc.tensor(rng.standard_normal(2), requires_grad=True)
    loss = (dc.nn.functional.linear(x, w, b, activation="tanh") ** 2).sum()
    seen = []
    orig = linear_mod.LinearBackward.forward

    def spy(self, *a, needs, **k):
        seen.append(needs)
        return orig(self, *a, needs=needs, **k)
    linear_mod.LinearBackward.forward = spy
    try:
        (gx,) = dc.autograd_grad(loss, [x], retain_graph=True)
        loss.backward()
    finally:
        linear_mod.LinearBackward.forward = orig
    assert seen == [(True, False, False), (True, True, True)]
    np.testing.assert_allclose(gx.data, np.asarray(x.grad))
    assert w.grad is not None and b.grad is not None


def test_post_accumulate_grad_hook_sees_each_accumulated_grad():
    w = dc.tensor(np.ones(3), requires_grad=True)
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.data.copy()))
    (w * 2).sum().backward()
    (w * 3).sum().backward()
    assert [s.tolist() for s in seen] == [[2, 2, 2], [5, 5, 5]]
    x = dc.tensor(np.ones(3), requires_grad=True)
    (w * x).sum().backward(inputs=[w])          # the inputs= path runs the hook too
    assert len(seen) == 3 and seen[-1].tolist() == [6, 6, 6]
    handle.remove()
    (w * 3).sum().backward()
    assert len(seen) == 3


def test_post_accumulate_grad_hook_refuses_non_leaves():
    w = dc.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match="not a leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        dc.tensor(np.ones(3)).register_post_accumulate_grad_hook(lambda t: None)
