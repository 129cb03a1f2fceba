"""An ``array_rule`` VJP rule runs on NumPy arrays in a pass that records nothing (a plain
backward()) and on Tensors when it records (create_graph=True): both give the same gradients,
with broadcasting, and every primitive that declares such a rule is checked here."""
import numpy as np
import pytest

import deepcalc as dc

RNG = np.random.default_rng(7)

UNARY = {
    "neg": lambda x: -x,
    "exp": dc.exp,
    "log": dc.log,
    "sqrt": dc.sqrt,
    "tanh": dc.tanh,
    "sigmoid": dc.sigmoid,
    "relu": dc.relu,
}
BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "matmul": lambda a, b: a @ b,
}


def grads_both_ways(f, arrays):
    g_out = None
    results = []
    for create_graph in (False, True):
        ts = [dc.tensor(a, requires_grad=True) for a in arrays]
        y = f(*ts)
        if g_out is None:
            g_out = RNG.standard_normal(y.shape).astype(y.dtype)
        y.backward(dc.tensor(g_out), create_graph=create_graph)
        results.append([np.asarray(t.grad.data) for t in ts])
    return results


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_plain_equals_graph(name, dtype):
    x = (RNG.uniform(0.2, 2.0, (5, 7)) * RNG.choice([-1, 1], (5, 7))).astype(dtype)
    if name in ("log", "sqrt"):
        x = np.abs(x)
    plain, graph = grads_both_ways(UNARY[name], [x])
    np.testing.assert_allclose(plain[0], graph[0], rtol=1e-6, atol=0)
    assert plain[0].dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((4, 6), (4, 6)), ((4, 6), (6,)), ((3, 1, 6), (5, 1)),
                                    ((), (4, 6))])
@pytest.mark.parametrize("name", sorted(set(BINARY) - {"matmul"}))
def test_binary_plain_equals_graph(name, shapes, dtype):
    a = RNG.uniform(0.5, 2.0, shapes[0]).astype(dtype)
    b = RNG.uniform(0.5, 2.0, shapes[1]).astype(dtype)
    plain, graph = grads_both_ways(BINARY[name], [a, b])
    for p, g, arr in zip(plain, graph, (a, b)):
        assert p.shape == arr.shape and p.dtype == dtype
        np.testing.assert_allclose(p, g, rtol=1e-6, atol=0)


def test_matmul_plain_equals_graph():
    a = RNG.standard_normal((2, 3, 5))
    b = RNG.standard_normal((5, 4))
    plain, graph = grads_both_ways(BINARY["matmul"], [a, b])
    for p, g in zip(plain, graph):
        np.testing.assert_allclose(p, g, rtol=1e-12, atol=1e-12)


def test_shared_input_accumulates_in_place_correctly():
    """A leaf used by many ops: the engine sums the contributions into one buffer it owns; a
    retained intermediate gradient must not see later contributions."""
    w = dc.tensor(RNG.standard_normal((3, 3)), requires_grad=True)
    x = dc.tensor(RNG.standard_normal((3, 3)), requires_grad=True)
    h = x * w
    h.retain_grad()
    y = (h + w) * w + h * 2.0 + w
    y.sum().backward()
    wd, xd = w.data, x.data
    # y = (x w + w) w + 2 x w + w
    np.testing.assert_allclose(w.grad.data, 2 * xd * wd + 2 * wd + 2 * xd + 1, rtol=1e-12)
    np.testing.assert_allclose(h.grad.data, wd + 2.0, rtol=1e-12)
    np.testing.assert_allclose(x.grad.data, (wd + 2.0) * wd, rtol=1e-12)


@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 2), False),
                                           (-1, True)])
def test_sum_plain_equals_graph(axis, keepdims):
    x = RNG.standard_normal((3, 4, 5))
    plain, graph = grads_both_ways(lambda t: dc.sum(t, axis=axis, keepdims=keepdims), [x])
    np.testing.assert_array_equal(plain[0], graph[0])
    assert plain[0].shape == x.shape


def test_transposed_matmul_operands_plain_equals_graph():
    """Views with transposed last axes reach the GEMM as flags; the rule's flagged products
    agree in both kinds of pass (and in float32)."""
    a = RNG.standard_normal((5, 3)).astype(np.float32)
    b = RNG.standard_normal((4, 5)).astype(np.float32)
    plain, graph = grads_both_ways(lambda x, y: x.T @ y.T, [a, b])
    for p, g in zip(plain, graph):
        np.testing.assert_allclose(p, g, rtol=1e-6, atol=1e-6)
    # the reference: d/dA sum(G * (A^T B^T)) = (B^T G^T)... checked against NumPy
    rng_g = np.random.default_rng(7)
    ta, tb = dc.tensor(a, requires_grad=True), dc.tensor(b, requires_grad=True)
    g_out = rng_g.standard_normal((3, 4)).astype(np.float32)
    (ta.T @ tb.T).backward(dc.tensor(g_out))
    np.testing.assert_allclose(ta.grad.data, (g_out @ b).T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tb.grad.data, (a @ g_out).T, rtol=1e-5, atol=1e-5)


COVERED = {"add", "sub", "mul", "div", "neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu",
           "sum", "matmul", "broadcast_to", "sum_to", "reshape", "transpose"}


def test_every_array_rule_is_covered():
    from deepcalc.autodiff.graph import REGISTRY
    declared = {cls.name for cls in REGISTRY.values() if cls.array_rule}
    assert declared == COVERED, ("primitives declaring array_rule without a test here: "
                                 f"{sorted(declared - COVERED)}; covered but not declared: "
                                 f"{sorted(COVERED - declared)}")


@pytest.mark.parametrize("name,fn,shape", [
    ("broadcast_to", lambda t: dc.broadcast_to(t, (4, 3, 5)), (3, 1)),
    ("reshape", lambda t: dc.reshape(t, (5, 6)) * 2.0, (3, 10)),
    ("transpose", lambda t: dc.permute(t, (2, 0, 1)) * 2.0, (2, 3, 4)),
    ("sum_to", lambda t: dc.broadcast_to(t, (2, 3)) * dc.tensor(np.arange(6.0).reshape(2, 3)),
     (1, 3)),
])
def test_shape_ops_plain_equals_graph(name, fn, shape):
    x = RNG.standard_normal(shape)
    plain, graph = grads_both_ways(fn, [x])
    np.testing.assert_array_equal(plain[0], graph[0])
    assert plain[0].shape == x.shape
