"""dc.attacks: FGSM and PGD on cases with a known answer (a linear classifier, whose input
gradient W^T (softmax(Wx + b) - e_y) is written by hand), the ball and box constraints, random
starts, NaN propagation and the errors."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.attacks import fgsm, pgd


def _linear(rng, n_in=6, n_out=3):
    m = dc.nn.Linear(n_in, n_out, dtype=np.float64)
    m.weight.data[...] = rng.standard_normal((n_out, n_in))
    m.bias.data[...] = rng.standard_normal(n_out)
    return m


def _input_grad(m, x, y):
    z = x @ m.weight.data.T + m.bias.data
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return p @ m.weight.data


def test_fgsm_is_eps_times_the_sign_of_the_hand_gradient(rng):
    m = _linear(rng)
    x, y = rng.uniform(0.2, 0.8, (5, 6)), rng.integers(0, 3, 5)
    adv = fgsm(m, x, y, 0.1)
    np.testing.assert_allclose(adv.data, x + 0.1 * np.sign(_input_grad(m, x, y)), rtol=1e-12)
    boxed = fgsm(m, x, y, 0.5, clip=(0.0, 1.0))
    np.testing.assert_allclose(boxed.data, np.clip(x + 0.5 * np.sign(_input_grad(m, x, y)), 0, 1))
    assert not adv.requires_grad


def test_pgd_linf_one_full_step_is_fgsm_and_iterates_stay_in_the_ball(rng):
    m = _linear(rng)
    x, y = rng.uniform(0.2, 0.8, (5, 6)), rng.integers(0, 3, 5)
    one = pgd(m, x, y, eps=0.1, alpha=0.1, steps=1, random_start=False)
    np.testing.assert_allclose(one.data, fgsm(m, x, y, 0.1).data, rtol=1e-12)
    many = pgd(m, x, y, eps=0.1, alpha=0.03, steps=20, generator=np.random.default_rng(0),
               clip=(0.25, 0.75))
    assert np.all(np.abs(many.data - x) <= 0.1 + 1e-12)
    assert np.all((many.data >= 0.25) & (many.data <= 0.75))


def test_pgd_on_two_classes_reaches_the_ball_boundary_along_w1_minus_w0(rng):
    """With two classes the input gradient of the loss is a positive multiple of
    +-(w_1 - w_0), a fixed direction: L2 PGD ends at x + eps d / ||d||, L-inf PGD at
    x + eps sign(d), with d = (w_{1-y} - w_y)."""
    m = _linear(rng, n_in=4, n_out=2)
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 2, 6)
    w = m.weight.data
    d = w[1 - y] - w[y]
    l2 = pgd(m, x, y, eps=0.5, alpha=0.2, steps=10, norm="l2", random_start=False)
    np.testing.assert_allclose(l2.data, x + 0.5 * d / np.linalg.norm(d, axis=1, keepdims=True),
                               rtol=1e-10)
    linf = pgd(m, x, y, eps=0.3, alpha=0.1, steps=7, random_start=True,
               generator=np.random.default_rng(1))
    np.testing.assert_allclose(linf.data, x + 0.3 * np.sign(d), rtol=1e-10)


def test_pgd_lowers_accuracy_and_l2_random_start_stays_in_the_ball(rng):
    m = _linear(rng, n_in=8, n_out=3)
    x = rng.standard_normal((64, 8))
    y = np.argmax(x @ m.weight.data.T + m.bias.data, 1)  # the model is right on every sample
    adv = pgd(m, x, y, eps=1.0, alpha=0.25, steps=10, norm="l2",
              generator=np.random.default_rng(2))
    acc = np.mean(np.argmax(adv.data @ m.weight.data.T + m.bias.data, 1) == y)
    assert acc < 0.9
    assert np.all(np.linalg.norm(adv.data - x, axis=1) <= 1.0 + 1e-9)
    start = pgd(m, x, y, eps=1.0, alpha=0.25, steps=0, norm="l2",
                generator=np.random.default_rng(3))
    r = np.linalg.norm(start.data - x, axis=1)
    assert np.all(r <= 1.0 + 1e-12) and r.mean() > 0.7   # uniform in the 8-ball: E r = 8/9


def test_random_start_is_reproducible_from_the_generator(rng):
    m = _linear(rng)
    x, y = rng.uniform(0, 1, (4, 6)), rng.integers(0, 3, 4)
    a = pgd(m, x, y, 0.1, 0.01, 2, generator=np.random.default_rng(5)).data
    b = pgd(m, x, y, 0.1, 0.01, 2, generator=np.random.default_rng(5)).data
    c = pgd(m, x, y, 0.1, 0.01, 2, generator=np.random.default_rng(6)).data
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_nan_input_is_not_swallowed(rng):
    m = _linear(rng)
    x, y = rng.uniform(0, 1, (3, 6)), rng.integers(0, 3, 3)
    x[1, 2] = np.nan
    for adv in (fgsm(m, x, y, 0.1), pgd(m, x, y, 0.1, 0.05, 2, norm="l2"),
                pgd(m, x, y, 0.1, 0.05, 2)):
        assert np.isnan(adv.data[1]).any()
        assert np.isfinite(adv.data[0]).all()


@pytest.mark.parametrize("call, match", [
    (lambda m, x, y: fgsm(m, x, y, -0.1), r"fgsm: eps must be a finite number >= 0"),
    (lambda m, x, y: pgd(m, x, y, 0.1, 0.0, 3), r"pgd: alpha must be a finite number > 0"),
    (lambda m, x, y: pgd(m, x, y, 0.1, 0.1, -1), r"pgd: steps must be an integer >= 0"),
    (lambda m, x, y: pgd(m, x, y, 0.1, 0.1, 1, norm="l1"), r"pgd: unknown norm 'l1'"),
    (lambda m, x, y: fgsm(m, x, y[:2], 0.1), r"fgsm: y must be integer labels of shape \(3,\)"),
    (lambda m, x, y: fgsm(m, x, y, 0.1, clip=(1, 0)), r"fgsm: clip = \(1.0, 0.0\) needs lo <= hi"),
    (lambda m, x, y: pgd(m, x, y, 0.1, 0.1, 1, generator=3), r"pgd: generator must be a numpy"),
])
def test_errors(call, match, rng):
    m = _linear(rng)
    with pytest.raises((ValueError, TypeError), match=match):
        call(m, rng.uniform(0, 1, (3, 6)), rng.integers(0, 3, 3))
