"""The first-order branches of the VJP rules (taken when nothing records: a plain backward())
agree with the differentiable branches (taken under create_graph=True), with broadcasting."""
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
