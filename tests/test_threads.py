"""Autodiff state is per thread: Python threads training their own models, running no_grad
blocks or function transforms side by side get exactly what one thread gets alone."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.nn import functional as F


def _run_threads(fn, n):
    """Run fn(i) in n threads started together; re-raise the first exception."""
    results, errors = [None] * n, []
    start = threading.Barrier(n)

    def body(i):
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported to the test below
            errors.append(e)
    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def _train(seed, steps=15):
    """A small MLP trained by hand for ``steps`` SGD steps; returns every step's gradients."""
    rng = np.random.default_rng(seed)
    x = dc.tensor(rng.standard_normal((32, 20)).astype(np.float32))
    y = dc.tensor(rng.integers(0, 5, 32))
    model = dc.nn.MLP([20, 16, 5], activation="tanh")
    with dc.no_grad():
        for i, p in enumerate(model.parameters()):
            p.data[...] = np.random.default_rng(seed * 10 + i).standard_normal(p.shape) * 0.3
    opt = dc.optim.SGD(model.parameters(), lr=0.1)
    grads = []
    for _ in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        grads.append([np.array(p.grad) for p in model.parameters()])
        with dc.no_grad():      # each thread flips its own grad mode
            model(x)
        opt.step()
    return grads


def test_threads_training_their_own_models_match_one_thread():
    n = 4
    alone = [_train(i) for i in range(n)]
    together = _run_threads(_train, n)
    for a, b in zip(alone, together):
        for ga, gb in zip(a, b):
            for x, y in zip(ga, gb):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_no_grad_in_one_thread_does_not_reach_another():
    inside, outside = threading.Event(), threading.Event()
    seen = {}

    def holder():
        with dc.no_grad():
            inside.set()
            outside.wait(5)
            seen["holder"] = dc.is_grad_enabled()

    t = threading.Thread(target=holder)
    t.start()
    inside.wait(5)
    x = dc.tensor(np.ones(3, np.float32), requires_grad=True)
    y = (x * 2).sum()
    assert dc.is_grad_enabled() and y.requires_grad
    outside.set()
    t.join()
    assert seen["holder"] is False
    y.backward()
    np.testing.assert_array_equal(x.grad, 2)


def test_transforms_in_threads_keep_their_levels():
    def work(i):
        c = float(i + 1)
        x = dc.tensor(np.linspace(-1, 1, 5) * c)
        f = lambda x: (dc.tanh(x) * x).sum()
        h = dc.hessian(f)(x)
        _, jt = dc.jvp(lambda x: dc.tanh(x) * c, (x,), (dc.ones_like(x),))
        return h.data, jt.data

    results = _run_threads(work, 4)
    for i, (h, jt) in enumerate(results):
        c = float(i + 1)
        x = np.linspace(-1, 1, 5) * c
        t = np.tanh(x)
        s2 = 1 - t ** 2
        np.testing.assert_allclose(np.diag(h), 2 * s2 - 2 * x * t * s2, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(jt, c * s2, rtol=1e-12)


def test_new_thread_starts_with_grad_mode_on():
    with dc.no_grad():
        state = _run_threads(lambda i: dc.is_grad_enabled(), 1)
    assert state == [True]


@pytest.mark.parametrize("n", [2])
def test_threads_share_kernel_threads(n):
    """The kernels' thread budget is shared, not multiplied, and results stay exact."""
    a = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
    ref = dc.matmul(dc.tensor(a), dc.tensor(a)).data
    out = _run_threads(lambda i: dc.matmul(dc.tensor(a), dc.tensor(a)).data, n)
    for o in out:
        np.testing.assert_array_equal(o, ref)
