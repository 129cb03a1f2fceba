"""Nothing swallowed: a NaN put into the input, into any parameter, or into the gradient at any
layer of an MLP with every fused activation, BatchNorm and LayerNorm reaches the loss (or the
gradients of every parameter below it), and ``fit`` stops naming the step."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.nn import functional as F

ACTIVATIONS = ("relu", "tanh", "sigmoid", "gelu", None)


def _model(act, dtype=np.float32):
    dc.manual_seed(0)
    nn = dc.nn
    return nn.Sequential(nn.Linear(6, 8, activation=act, dtype=dtype), nn.BatchNorm1d(8, dtype=dtype),
                         nn.Linear(8, 8, activation=act, dtype=dtype), nn.LayerNorm(8, dtype=dtype),
                         nn.Linear(8, 3, dtype=dtype))


def _batch(dtype=np.float32):
    rng = np.random.default_rng(0)
    return (dc.tensor(rng.standard_normal((5, 6)).astype(dtype)),
            dc.tensor(rng.integers(0, 3, 5)))


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_nan_in_the_input_reaches_the_loss(act):
    model, (x, y) = _model(act), _batch()
    x.data[2, 1] = np.nan
    assert np.isnan(F.cross_entropy(model(x), y).item())


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_nan_in_any_parameter_reaches_the_loss(act):
    x, y = _batch()
    names = [n for n, _ in _model(act).named_parameters()]
    assert len(names) == 10
    for name in names:
        model = _model(act)
        p = dict(model.named_parameters())[name]
        p.data.reshape(-1)[0] = np.nan
        loss = F.cross_entropy(model(x), y)
        assert np.isnan(loss.item()), f"NaN in {name} (activation {act}) did not reach the loss"
        loss.backward()
        assert np.isnan(np.asarray(p.grad)).any(), f"{name}: NaN missing from its own gradient"


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_nan_in_a_gradient_reaches_every_parameter_below(act, cut):
    """Backpropagate a cotangent with one NaN from the output of layer ``cut``: every parameter
    of the layers below gets a NaN in its gradient (fused activation backward, BatchNorm and
    LayerNorm backward, the linear backward GEMMs)."""
    model, (x, _) = _model(act), _batch()
    layers = list(model.children())
    h = x
    for layer in layers[:cut]:
        h = layer(h)
    g = np.ones(h.shape, dtype=h.dtype)
    g[1, 2] = np.nan
    h.backward(dc.tensor(g))
    for i, layer in enumerate(layers[:cut]):
        for name, p in layer.named_parameters():
            assert p.grad is not None and np.isnan(np.asarray(p.grad)).any(), \
                f"layer {i} {name}: the NaN gradient from layer {cut} was swallowed ({act})"


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_fit_stops_naming_the_step_when_a_weight_turns_nan(act):
    model = _model(act)
    rng = np.random.default_rng(1)
    data = dc.data.TensorDataset(rng.standard_normal((40, 6)).astype(np.float32),
                                 rng.integers(0, 3, 40))
    loader = dc.data.DataLoader(data, batch_size=8)
    dict(model.named_parameters())["0.weight"].data[0, 0] = np.nan
    opt = dc.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match=r"nan at epoch 0, step 0"):
        dc.train.fit(model, F.cross_entropy, opt, loader, epochs=1, progress=False)
