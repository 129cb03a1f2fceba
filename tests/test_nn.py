"""dc.nn: the Module API (parameters, state_dict, modes, hooks, Sequential, functional_call),
Linear against torch.nn.Linear for every fused activation, Dropout, the MLP initializations and
its hand-written delta recursion against autodiff, and the losses against torch."""
import math

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import nn
from deepcalc.func import functional_call
from deepcalc.nn import functional as F

ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "gelu"]


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def _torch():
    return pytest.importorskip("torch")


def _torch_act(torch, name):
    return {None: lambda z: z, "relu": torch.relu, "tanh": torch.tanh,
            "sigmoid": torch.sigmoid, "gelu": torch.nn.functional.gelu}[name]


def _close(a, b, dtype, rtol32=1e-5, rtol64=1e-12):
    """Relative to the largest magnitude of the reference (elementwise rtol fails near 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rtol = rtol32 if np.dtype(dtype) == np.float32 else rtol64
    scale = max(np.abs(b).max(), 1e-30)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# --- the Module API ------------------------------------------------------------------------
class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.fc(x)))


def make_net():
    return nn.Sequential(Block(), nn.Linear(3, 2, activation="relu"))


PARAM_NAMES = ["0.fc.weight", "0.fc.bias", "0.bn.weight", "0.bn.bias", "1.weight", "1.bias"]
BUFFER_NAMES = ["0.bn.running_mean", "0.bn.running_var", "0.bn.num_batches_tracked"]


def test_parameters_buffers_children():
    net = make_net()
    assert [n for n, _ in net.named_parameters()] == PARAM_NAMES
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_buffers()] == BUFFER_NAMES
    assert not any(b.requires_grad for b in net.buffers())
    assert [n for n, _ in net[0].named_children()] == ["fc", "bn", "drop"]
    assert list(net.children()) == [net[0], net[1]]
    assert [n for n, _ in net.named_modules()] == ["", "0", "0.fc", "0.bn", "0.drop", "1"]
    assert net.num_parameters() == 4 * 3 + 3 + 3 + 3 + 3 * 2 + 2
    assert [n for n, _ in net[0].named_parameters(recurse=False)] == []
    # a module used twice contributes its parameters once
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.Tanh(), shared)
    assert [n for n, _ in tied.named_parameters()] == ["0.weight", "0.bias"]
    # Linear without bias registers None and lists nothing for it
    assert [n for n, _ in nn.Linear(3, 2, bias=False).named_parameters()] == ["weight"]


def test_state_dict_shares_memory_and_round_trips():
    net = make_net()
    sd = net.state_dict()
    assert list(sd) == ["0.fc.weight", "0.fc.bias", "0.bn.weight", "0.bn.bias",
                        "0.bn.running_mean", "0.bn.running_var", "0.bn.num_batches_tracked",
                        "1.weight", "1.bias"]
    sd["1.bias"].data[...] = 7.0
    assert np.all(net[1].bias.data == 7.0)

    dc.manual_seed(1)
    other = make_net()
    w_before = other[1].weight
    x = dc.tensor(np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32))
    net.eval(), other.eval()
    assert not np.allclose(net(x).data, other(x).data)
    assert other.load_state_dict(net.state_dict()) == ([], [])
    assert other[1].weight is w_before  # values copied in place: optimizers keep references
    np.testing.assert_array_equal(other(x).data, net(x).data)


def test_load_state_dict_strict_keys():
    net, target = make_net(), make_net()
    sd = dict(net.state_dict())
    del sd["1.bias"]
    sd["extra.weight"] = dc.tensor(np.zeros(2, np.float32))
    with pytest.raises(KeyError) as e:
        target.load_state_dict(sd)
    msg = str(e.value)
    assert "missing keys ['1.bias']" in msg and "unexpected keys ['extra.weight']" in msg
    before = target[1].weight.data.copy()
    missing, unexpected = target.load_state_dict(sd, strict=False)
    assert (missing, unexpected) == (["1.bias"], ["extra.weight"])
    np.testing.assert_array_equal(target[1].weight.data, net[1].weight.data)
    assert not np.array_equal(before, target[1].weight.data)


def test_load_state_dict_from_another_architecture():
    mlp = nn.MLP([4, 3, 2])
    with pytest.raises(KeyError, match=r"load_state_dict for Sequential: missing keys \['0.fc.weight'"
                                       r".*unexpected keys \['layer0.weight'"):
        make_net().load_state_dict(mlp.state_dict())


def test_load_state_dict_shape_mismatch_leaves_model_untouched():
    net = make_net()
    wide = nn.Sequential(Block(), nn.Linear(3, 5, activation="relu"))
    before = {k: v.data.copy() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"shape mismatch: 1.weight: checkpoint has shape \(5, 3\), "
                                         r"model has \(2, 3\); 1.bias"):
        net.load_state_dict(wide.state_dict())
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.data, before[k])


def test_assigning_to_registered_names():
    bn = nn.BatchNorm1d(3)
    bn.running_mean = dc.tensor(np.full(3, 5.0, np.float32))  # replaces the buffer
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var",
                                                  "num_batches_tracked"]
    np.testing.assert_array_equal(bn.state_dict()["running_mean"].data, 5.0)
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="Linear: cannot assign Tensor as parameter 'weight' "
                                        r"\(a Parameter or None expected\)"):
        layer.weight = dc.tensor(np.zeros((2, 3), np.float32))
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    new = nn.Parameter(np.ones((2, 3), np.float32))
    layer.weight = new
    assert layer.weight is new and next(layer.parameters()) is new
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"] and layer.bias is None
    nobias = nn.Linear(3, 2, bias=False)
    nobias.bias = nn.Parameter(np.ones(2, np.float32))
    assert nobias.bias is nobias._parameters["bias"]
    np.testing.assert_array_equal(nobias(dc.tensor(np.zeros((1, 3), np.float32))).data, [[1, 1]])
    layer.scale = 2.0  # ordinary attributes are untouched
    assert layer.scale == 2.0 and "scale" not in layer.state_dict()


def test_train_eval_propagate():
    net = make_net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net[0].eval()
    assert net.training and not net[0].bn.training and net[1].training


def test_forward_hooks_capture_replace_remove():
    net = nn.Sequential(nn.Linear(4, 5, activation="tanh"), nn.Linear(5, 2))
    x = dc.tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    ref = net(x).data.copy()
    seen = []
    h1 = net[0].register_forward_hook(lambda m, inp, out: seen.append((m, inp, out)))
    y = net(x)
    assert len(seen) == 1 and seen[0][0] is net[0] and seen[0][1][0] is x
    np.testing.assert_allclose(y.data, net[1](seen[0][2]).data, rtol=1e-6)
    # a returned value replaces the output; the next layer sees it
    h2 = net[0].register_forward_hook(lambda m, inp, out: out * 0.0)
    np.testing.assert_allclose(net(x).data, np.broadcast_to(net[1].bias.data, (3, 2)), rtol=1e-6)
    assert len(seen) == 2
    h2.remove()
    np.testing.assert_array_equal(net(x).data, ref)
    h1.remove()
    net(x)
    assert len(seen) == 3
    h1.remove()  # removing twice is harmless


def test_forward_pre_hook_replaces_inputs():
    net = nn.Sequential(nn.Linear(4, 5, activation="tanh"), nn.Linear(5, 2))
    x = dc.tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    order = []
    h = net.register_forward_pre_hook(lambda m, inp: (order.append("pre"), inp[0] * 2.0)[1])
    h2 = net.register_forward_hook(lambda m, inp, out: order.append("post"))
    y = net(x)
    h.remove(), h2.remove()
    assert order == ["pre", "post"]
    np.testing.assert_array_equal(y.data, net(x * 2.0).data)
    assert not np.allclose(y.data, net(x).data)


def test_sequential_indexing():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and s[0] is a and s[-1] is c and list(s) == [a, b, c]
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub) == [b, c]
    x = dc.tensor(np.ones((4, 2), np.float32))
    np.testing.assert_array_equal(s(x).data, sub(a(x)).data)
    named = nn.Sequential({"enc": nn.Linear(2, 3), "dec": nn.Linear(3, 1)})
    assert list(named.state_dict()) == ["enc.weight", "enc.bias", "dec.weight", "dec.bias"]
    with pytest.raises(IndexError):
        s[3]


def test_functional_call_grad_matches_backward():
    model = nn.MLP([5, 7, 3], activation="tanh", dtype=np.float64)
    rng = np.random.default_rng(0)
    x, y = dc.tensor(rng.standard_normal((6, 5))), dc.tensor(rng.standard_normal((6, 3)))
    own = dict(model.named_parameters())
    params = {k: dc.tensor(v.data.copy() * 1.5) for k, v in own.items()}

    def loss(p):
        return F.mse_loss(functional_call(model, p, x), y)

    grads = dc.grad(loss)(params)
    assert set(grads) == set(params)
    assert dict(model.named_parameters()) == own  # the module's own tensors are restored
    # the same gradients by .backward on a model holding those values
    model.load_state_dict(params)
    F.mse_loss(model(x), y).backward()
    for k, p in model.named_parameters():
        np.testing.assert_allclose(grads[k].data, p.grad.data, rtol=1e-12, atol=1e-14)
    with pytest.raises(KeyError, match="functional_call: MLP has no parameter or buffer named "
                                       "'layer0.scale'"):
        functional_call(model, {"layer0.scale": dc.tensor(1.0)}, x)


# --- Linear against torch ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("lead", [(13,), (2, 3)])
def test_linear_matches_torch(activation, dtype, lead):
    torch = _torch()
    rng = np.random.default_rng(1)
    in_f, out_f = 37, 19  # odd sizes hit the kernels' tail loops
    layer = nn.Linear(in_f, out_f, activation=activation, dtype=dtype)
    x = rng.standard_normal(lead + (in_f,)).astype(dtype)
    g = rng.standard_normal(lead + (out_f,)).astype(dtype)
    xt = dc.tensor(x.copy(), requires_grad=True)
    y = layer(xt)
    (y * dc.tensor(g)).sum().backward()

    tl = torch.nn.Linear(in_f, out_f, dtype=torch.float32 if dtype == np.float32 else torch.float64)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(layer.weight.data))
        tl.bias.copy_(torch.from_numpy(layer.bias.data))
    xr = torch.from_numpy(x.copy()).requires_grad_()
    yr = _torch_act(torch, activation)(tl(xr))
    (yr * torch.from_numpy(g)).sum().backward()

    assert y.shape == lead + (out_f,) and y.dtype == dtype
    _close(y.data, yr.detach().numpy(), dtype)
    _close(xt.grad.data, xr.grad.numpy(), dtype)
    _close(layer.weight.grad.data, tl.weight.grad.numpy(), dtype)
    _close(layer.bias.grad.data, tl.bias.grad.numpy(), dtype)


def test_linear_without_bias_and_multipliers():
    layer = nn.Linear(6, 4, bias=False, activation="tanh", dtype=np.float64,
                      weight_multiplier=0.5)
    x = np.random.default_rng(0).standard_normal((3, 6))
    np.testing.assert_allclose(layer(dc.tensor(x)).data, np.tanh(x @ (0.5 * layer.weight.data).T),
                               rtol=1e-12)


def test_linear_bad_inputs():
    layer = nn.Linear(784, 10)
    with pytest.raises(ValueError, match=r"linear: x has 785 features .*weight expects 784"):
        layer(dc.tensor(np.zeros((2, 785), np.float32)))
    with pytest.raises(TypeError, match="linear: x is float64, weight is float32"):
        layer(dc.tensor(np.zeros((2, 784))))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        nn.Linear(3, 2, activation="swish")
    with pytest.raises(ValueError, match=r"linear: bias has shape \(3,\), expected \(2,\)"):
        F.linear(dc.tensor(np.zeros((1, 4), np.float32)), dc.tensor(np.zeros((2, 4), np.float32)),
                 dc.tensor(np.zeros(3, np.float32)))


@pytest.mark.parametrize("activation", ["none", "relu", "tanh", "sigmoid", "gelu"])
def test_linear_gradcheck_gradgradcheck(activation):
    rng = np.random.default_rng(2)
    x = dc.tensor(rng.standard_normal((3, 5)))
    w = dc.tensor(rng.standard_normal((4, 5)) * 0.5)
    b = dc.tensor(rng.standard_normal(4) * 0.5)
    f = lambda x, w, b: F.linear(x, w, b, activation)  # noqa: E731
    assert dc.testing.gradcheck(f, (x, w, b))
    assert dc.testing.gradgradcheck(f, (x, w, b))


# --- Dropout -------------------------------------------------------------------------------
def test_dropout_train_eval_and_seed():
    d = nn.Dropout(0.3)
    x = dc.tensor(np.ones((200, 100), np.float32), requires_grad=True)
    y = d(x)
    kept = y.data != 0
    assert abs(1 - kept.mean() - 0.3) < 0.02
    np.testing.assert_allclose(y.data[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.data, y.data)  # the same mask scales the gradient
    assert not np.array_equal(d(x).data, y.data)  # a new mask each call
    dc.manual_seed(5)
    a = d(x).data
    dc.manual_seed(5)
    np.testing.assert_array_equal(d(x).data, a)
    g1 = nn.Dropout(0.5, generator=np.random.default_rng(9))
    g2 = nn.Dropout(0.5, generator=np.random.default_rng(9))
    np.testing.assert_array_equal(g1(x).data, g2(x).data)
    d.eval()
    np.testing.assert_array_equal(d(x).data, x.data)
    with pytest.raises(ValueError, match="Dropout: p must be in"):
        nn.Dropout(1.5)


# --- MLP initializations ---------------------------------------------------------------------
SIZES = [256, 512, 128]


def _weights(init, **kw):
    dc.manual_seed(0)
    m = nn.MLP(SIZES, activation="relu", init=init, **kw)
    return m, [layer.weight.data.astype(np.float64) for layer in m.layers], \
        [layer.bias.data.astype(np.float64) for layer in m.layers]


def _var_close(w, expected, rel=0.03):
    assert abs(w.mean()) < 4 * math.sqrt(expected / w.size)
    assert abs(w.var() / expected - 1) < rel, (w.var(), expected)


def test_init_he():
    _, ws, bs = _weights("he")
    for w, fan_in in zip(ws, SIZES[:-1]):
        _var_close(w, 2 / fan_in)
    assert all(np.all(b == 0) for b in bs)


def test_init_xavier():
    _, ws, bs = _weights("xavier")
    for w, fan_in, fan_out in zip(ws, SIZES[:-1], SIZES[1:]):
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.99 * bound
        _var_close(w, 2 / (fan_in + fan_out))
    assert all(np.all(b == 0) for b in bs)


def test_init_standard_normal():
    _, ws, bs = _weights("standard_normal")
    for w in ws:
        _var_close(w, 1.0)
    b = np.concatenate(bs)
    assert abs(b.var() - 1) < 0.15 and abs(b.mean()) < 0.15


def test_init_torch_default():
    _, ws, bs = _weights("torch")
    for w, b, fan_in in zip(ws, bs, SIZES[:-1]):
        bound = 1 / math.sqrt(fan_in)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
        assert np.abs(b).max() <= bound
        _var_close(w, bound ** 2 / 3)


def test_init_mup():
    _, ws, bs = _weights("mup")
    _var_close(ws[0], 1 / SIZES[0])
    _var_close(ws[1], 1 / SIZES[1] ** 2)  # the output layer: 1/fan_in^2
    assert all(np.all(b == 0) for b in bs)


def test_init_ntk_multipliers():
    m, ws, bs = _weights("ntk", ntk_beta=0.2)
    for w, layer, fan_in in zip(ws, m.layers, SIZES[:-1]):
        _var_close(w, 1.0)
        assert layer.weight_multiplier == pytest.approx(1 / math.sqrt(fan_in))
        assert layer.bias_multiplier == 0.2
    x = np.random.default_rng(0).standard_normal((4, SIZES[0])).astype(np.float32)
    h = np.maximum(x @ ws[0].T / math.sqrt(SIZES[0]) + 0.2 * bs[0], 0)
    ref = h @ ws[1].T / math.sqrt(SIZES[1]) + 0.2 * bs[1]
    np.testing.assert_allclose(m(dc.tensor(x)).data, ref, rtol=1e-4, atol=1e-4)


def test_init_seeded_and_validated():
    _, a, _ = _weights("he")
    _, b, _ = _weights("he")
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    g = [nn.MLP([8, 8, 2], init="xavier", generator=np.random.default_rng(3)) for _ in range(2)]
    np.testing.assert_array_equal(g[0].layer0.weight.data, g[1].layer0.weight.data)
    with pytest.raises(ValueError, match="MLP: unknown init 'lecun'"):
        nn.MLP([3, 2], init="lecun")
    with pytest.raises(ValueError, match="MLP: sizes must list"):
        nn.MLP([3])


# --- MLP.backprop against autodiff --------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("init", ["torch", "standard_normal", "xavier", "he", "ntk", "mup"])
@pytest.mark.parametrize("activation", ["none", "relu", "tanh", "sigmoid", "gelu"])
def test_backprop_matches_autodiff(activation, init, loss):
    model = nn.MLP([6, 9, 8, 4], activation=activation, init=init, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((11, 6))
    if loss == "mse":
        y = rng.standard_normal((11, 4))
        out = model(dc.tensor(x))
        c = F.mse_loss(out, dc.tensor(y), reduction="sum") / (2 * len(x))
    else:
        y = rng.integers(0, 4, 11)
        c = F.cross_entropy(model(dc.tensor(x)), y)
    c.backward()
    w_grads, b_grads = model.backprop(x, y, loss=loss)
    for layer, gw, gb in zip(model.layers, w_grads, b_grads):
        scale = max(np.abs(layer.weight.grad.data).max(), 1e-300)
        np.testing.assert_allclose(gw, layer.weight.grad.data, rtol=0, atol=1e-11 * scale)
        np.testing.assert_allclose(gb, layer.bias.grad.data, rtol=0, atol=1e-11 * scale)


def test_backprop_with_output_activation():
    model = nn.MLP([5, 6, 3], activation="tanh", output_activation="sigmoid", dtype=np.float64)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, 5)), rng.random((7, 3))
    (F.mse_loss(model(dc.tensor(x)), dc.tensor(y), reduction="sum") / 14).backward()
    w_grads, b_grads = model.backprop(x, y)
    for layer, gw, gb in zip(model.layers, w_grads, b_grads):
        np.testing.assert_allclose(gw, layer.weight.grad.data, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(gb, layer.bias.grad.data, rtol=1e-10, atol=1e-14)
    with pytest.raises(ValueError, match="backprop: cross_entropy expects logits"):
        model.backprop(x, np.zeros(7, np.int64), loss="cross_entropy")


# --- losses against torch ------------------------------------------------------------------
def _logits_targets(n=9, c=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * 2, rng.integers(0, c, n)


def _dc_loss_and_grad(fn, logits, *args, **kw):
    x = dc.tensor(logits.copy(), requires_grad=True)
    out = fn(x, *args, **kw)
    out.sum().backward()
    return out.data, x.grad.data


def _torch_loss_and_grad(torch, fn, logits, *args, **kw):
    x = torch.from_numpy(logits.copy()).requires_grad_()
    out = fn(x, *args, **kw)
    out.sum().backward()
    return out.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(weighted, ignore, label_smoothing, reduction):
    torch = _torch()
    logits, t = _logits_targets()
    weight = np.random.default_rng(3).random(5) + 0.5 if weighted else None
    kw = dict(reduction=reduction, label_smoothing=label_smoothing)
    if ignore:
        t[[1, 4]] = -1
        kw["ignore_index"] = -1
    v, g = _dc_loss_and_grad(F.cross_entropy, logits, t, weight=weight, **kw)
    tv, tg = _torch_loss_and_grad(torch, torch.nn.functional.cross_entropy, logits,
                                  torch.from_numpy(t),
                                  weight=None if weight is None else torch.from_numpy(weight), **kw)
    np.testing.assert_allclose(v, tv, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_torch(weighted, reduction):
    torch = _torch()
    logits, t = _logits_targets(seed=1)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    t[2] = -100
    weight = np.random.default_rng(4).random(5) + 0.5 if weighted else None
    v, g = _dc_loss_and_grad(F.nll_loss, logp, t, weight=weight, reduction=reduction)
    tv, tg = _torch_loss_and_grad(torch, torch.nn.functional.nll_loss, logp, torch.from_numpy(t),
                                  weight=None if weight is None else torch.from_numpy(weight),
                                  reduction=reduction)
    np.testing.assert_allclose(v, tv, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-14)


def test_cross_entropy_float32_matches_torch():
    torch = _torch()
    logits, t = _logits_targets(n=33, c=7, seed=5)
    logits = logits.astype(np.float32) * 10
    v, g = _dc_loss_and_grad(F.cross_entropy, logits, t, label_smoothing=0.1)
    tv, tg = _torch_loss_and_grad(torch, torch.nn.functional.cross_entropy, logits,
                                  torch.from_numpy(t), label_smoothing=0.1)
    _close(v, tv, np.float32)
    _close(g, tg, np.float32)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("pos_weight", [False, True])
def test_bce_with_logits_matches_torch(pos_weight, reduction):
    torch = _torch()
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((6, 4)) * 3
    logits[0, :2] = [100.0, -100.0]  # extreme logits: the stable form stays finite
    logits[1, :2] = [-100.0, 100.0]
    y = rng.random((6, 4))
    y[0, :2], y[1, :2] = [0.0, 1.0], [0.0, 1.0]
    pw = rng.random(4) + 0.5 if pos_weight else None
    v, g = _dc_loss_and_grad(F.binary_cross_entropy_with_logits, logits, dc.tensor(y),
                             pos_weight=None if pw is None else dc.tensor(pw), reduction=reduction)
    tv, tg = _torch_loss_and_grad(torch, torch.nn.functional.binary_cross_entropy_with_logits,
                                  logits, torch.from_numpy(y),
                                  pos_weight=None if pw is None else torch.from_numpy(pw),
                                  reduction=reduction)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))
    np.testing.assert_allclose(v, tv, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss_matches_torch(reduction):
    torch = _torch()
    rng = np.random.default_rng(7)
    p, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    v, g = _dc_loss_and_grad(F.mse_loss, p, dc.tensor(y), reduction=reduction)
    tv, tg = _torch_loss_and_grad(torch, torch.nn.functional.mse_loss, p, torch.from_numpy(y),
                                  reduction=reduction)
    np.testing.assert_allclose(v, tv, rtol=1e-12)
    np.testing.assert_allclose(g, tg, rtol=1e-12)
    with pytest.raises(ValueError, match=r"mse_loss: prediction shape \(5, 3\) != target shape"):
        F.mse_loss(dc.tensor(p), dc.tensor(y[:4]))


def test_loss_bad_targets():
    logits, t = _logits_targets()
    t[3] = 5
    with pytest.raises(IndexError, match="nll_loss: target 5 at position 3 is out of range for "
                                         "5 classes"):
        F.cross_entropy(dc.tensor(logits), t)
    t[3] = -2
    with pytest.raises(IndexError, match="target -2 at position 3 is out of range"):
        F.cross_entropy(dc.tensor(logits), t, label_smoothing=0.1)
    with pytest.raises(TypeError, match="(cross_entropy|nll_loss): target must hold integer class indices"):
        F.cross_entropy(dc.tensor(logits), t.astype(np.float64))
    with pytest.raises(ValueError, match=r"expected input \(N, C\) and target \(N,\)"):
        F.cross_entropy(dc.tensor(logits), t[:4])
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none'"):
        F.mse_loss(dc.tensor(logits), dc.tensor(logits), reduction="avg")


@pytest.mark.parametrize("name", ["cross_entropy", "bce", "mse"])
def test_loss_gradcheck_gradgradcheck(name):
    rng = np.random.default_rng(8)
    logits = dc.tensor(rng.standard_normal((4, 3)))
    t = np.array([0, 2, 1, 2])
    y = dc.tensor(rng.random((4, 3)))
    w = rng.random(3) + 0.5
    f = {"cross_entropy": lambda x: F.cross_entropy(x, t, weight=w, label_smoothing=0.1),
         "bce": lambda x: F.binary_cross_entropy_with_logits(x, y, pos_weight=dc.tensor(w)),
         "mse": lambda x: F.mse_loss(x, y, reduction="sum")}[name]
    assert dc.testing.gradcheck(f, (logits,))
    assert dc.testing.gradgradcheck(f, (logits,))
