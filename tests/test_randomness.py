"""Random layers under transforms that evaluate f several times: jacfwd (and hessian through it)
take randomness='same' (default: one set of draws per call), 'different' or 'error'."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.nn import functional as F


def _f(x):
    return F.dropout(x, 0.5, training=True) * x


def test_same_gives_the_jacobian_of_one_masked_function():
    dc.manual_seed(0)
    x = dc.tensor(np.linspace(1, 2, 8))
    jf = dc.jacfwd(_f)(x).data
    dc.manual_seed(0)
    jr = dc.jacrev(_f)(x).data        # one evaluation, one mask
    np.testing.assert_allclose(jf, jr)
    d = np.diag(jf)
    assert np.allclose(jf, np.diag(d)) and (d == 0).any() and (d != 0).any()


def test_different_draws_a_mask_per_evaluation():
    dc.manual_seed(0)
    x = dc.tensor(np.linspace(1, 2, 16))
    jf = dc.jacfwd(_f, randomness="different")(x).data
    dc.manual_seed(0)
    jr = dc.jacrev(_f)(x).data
    assert not np.allclose(jf, jr)


def test_error_refuses_random_draws():
    with pytest.raises(RuntimeError, match="randomness='error'"):
        dc.jacfwd(_f, randomness="error")(dc.tensor(np.ones(3)))
    dc.jacfwd(lambda x: x * 2, randomness="error")(dc.tensor(np.ones(3)))  # no draws: fine


def test_hessian_of_noisy_batchnorm_is_symmetric_with_same():
    dc.manual_seed(0)
    bn = dc.nn.BatchNorm1d(3, noise=True, dtype=np.float64)
    x = dc.tensor(np.random.default_rng(0).standard_normal((4, 3)))
    loss = lambda x: (dc.tanh(bn(x)) ** 2).sum()
    h = dc.hessian(loss)(x).data.reshape(12, 12)
    np.testing.assert_allclose(h, h.T, atol=1e-10)
    hd = dc.hessian(loss, randomness="different")(x).data.reshape(12, 12)
    assert not np.allclose(hd, hd.T, atol=1e-6)


def test_bad_policy():
    with pytest.raises(ValueError, match="randomness must be one of"):
        dc.jacfwd(_f, randomness="sometimes")
    with pytest.raises(ValueError, match="hessian: randomness"):
        dc.hessian(_f, randomness=None)
