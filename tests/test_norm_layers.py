"""BatchNorm1d and LayerNorm against torch.nn: outputs, running statistics, gradients, modes;
derivative checks (gradcheck, gradgradcheck, JVP/VJP); function transforms through a
training-mode BN network against torch.func; noisy BN; hooks; every CPU path of the kernels."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import cpu_path_env, supported_cpu_paths

import deepcalc as dc
from deepcalc import nn
from deepcalc.func import functional_call
from deepcalc.nn import functional as F


pytestmark = pytest.mark.usefixtures("one_thread_seeded")


def _torch():
    return pytest.importorskip("torch")


def _tdtype(torch, dtype):
    return torch.float32 if dtype == np.float32 else torch.float64


def _close(a, b, dtype, rtol32=1e-5, rtol64=1e-12):
    """Relative to the largest magnitude of the reference (elementwise rtol fails near 0)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    rtol = rtol32 if np.dtype(dtype) == np.float32 else rtol64
    scale = max(np.abs(b).max(), 1e-30)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def _pair_bn(torch, c, dtype, seed=0, **kw):
    """A dc and a torch BatchNorm1d with the same random affine parameters."""
    bn = nn.BatchNorm1d(c, dtype=dtype, **kw)
    tbn = torch.nn.BatchNorm1d(c, dtype=_tdtype(torch, dtype), **kw)
    if bn.affine:
        rng = np.random.default_rng(seed)
        bn.weight.data[...] = rng.uniform(0.5, 1.5, c)
        bn.bias.data[...] = rng.standard_normal(c)
        with torch.no_grad():
            tbn.weight.copy_(torch.from_numpy(bn.weight.data))
            tbn.bias.copy_(torch.from_numpy(bn.bias.data))
    return bn, tbn


def _step(torch, bn, tbn, x, g):
    """Forward + backward of <bn(x), g> in both; returns (y, dx) pairs."""
    xd = dc.tensor(x.copy(), requires_grad=True)
    y = bn(xd)
    (y * dc.tensor(g)).sum().backward()
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = tbn(xt)
    (yt * torch.from_numpy(g)).sum().backward()
    return (y.data, yt.detach().numpy()), (xd.grad.data, xt.grad.numpy())


SHAPES = [(8, 5), (7, 3), (6, 13, 3), (5, 4, 9)]  # odd C and N hit the kernels' tails


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_batchnorm_matches_torch(shape, dtype):
    torch = _torch()
    c = shape[1]
    bn, tbn = _pair_bn(torch, c, dtype, momentum=0.3)
    rng = np.random.default_rng(1)
    for _ in range(10):
        x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        bn.zero_grad(), tbn.zero_grad()
        (y, yt), (dx, dxt) = _step(torch, bn, tbn, x, g)
        _close(y, yt, dtype)
    _close(dx, dxt, dtype)
    _close(bn.weight.grad.data, tbn.weight.grad.numpy(), dtype)
    _close(bn.bias.grad.data, tbn.bias.grad.numpy(), dtype)
    _close(bn.running_mean.data, tbn.running_mean.numpy(), dtype)
    _close(bn.running_var.data, tbn.running_var.numpy(), dtype)
    assert int(bn.num_batches_tracked.data) == int(tbn.num_batches_tracked) == 10
    assert bn.running_mean.dtype == dtype and bn.running_var.dtype == dtype

    bn.eval(), tbn.eval()
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    bn.zero_grad(), tbn.zero_grad()
    (y, yt), (dx, dxt) = _step(torch, bn, tbn, x, g)
    _close(y, yt, dtype)
    _close(dx, dxt, dtype)
    _close(bn.weight.grad.data, tbn.weight.grad.numpy(), dtype)
    _close(bn.bias.grad.data, tbn.bias.grad.numpy(), dtype)
    assert int(bn.num_batches_tracked.data) == 10  # eval leaves the statistics alone


@pytest.mark.parametrize("kw", [dict(affine=False), dict(track_running_stats=False),
                                dict(affine=False, track_running_stats=False)])
@pytest.mark.parametrize("shape", [(9, 5), (4, 3, 7)])
def test_batchnorm_options_match_torch(shape, kw):
    torch = _torch()
    dtype = np.float64
    bn, tbn = _pair_bn(torch, shape[1], dtype, **kw)
    rng = np.random.default_rng(2)
    for mode in ("train", "eval", "train"):
        getattr(bn, mode)(), getattr(tbn, mode)()
        x = rng.standard_normal(shape) * 2 - 1
        g = rng.standard_normal(shape)
        (y, yt), (dx, dxt) = _step(torch, bn, tbn, x, g)
        _close(y, yt, dtype)
        _close(dx, dxt, dtype)
    assert [n for n, _ in bn.named_parameters()] == [n for n, _ in tbn.named_parameters()]
    if bn.track_running_stats:
        _close(bn.running_mean.data, tbn.running_mean.numpy(), dtype)
        _close(bn.running_var.data, tbn.running_var.numpy(), dtype)
    else:
        assert list(bn.state_dict()) == list(tbn.state_dict())


def test_batchnorm_bad_inputs():
    bn = nn.BatchNorm1d(4)
    with pytest.raises(ValueError, match=r"batch_norm: expected more than 1 value per channel "
                                         r"when training, got input size \(1, 4\)"):
        bn(dc.tensor(np.ones((1, 4), np.float32)))
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        bn(dc.tensor(np.ones((1, 4, 1), np.float32)))
    assert bn(dc.tensor(np.arange(8, dtype=np.float32).reshape(1, 4, 2))).shape == (1, 4, 2)
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input \(N, 4\) or \(N, 4, L\), "
                                         r"got \(8, 5\)"):
        bn(dc.tensor(np.ones((8, 5), np.float32)))
    with pytest.raises(ValueError, match=r"got \(2, 4, 3, 3\)"):
        bn(dc.tensor(np.ones((2, 4, 3, 3), np.float32)))
    bn.eval()
    assert bn(dc.tensor(np.ones((1, 4), np.float32))).shape == (1, 4)  # fine in eval mode
    with pytest.raises(ValueError, match=r"batch_norm: x has 3 channels \(shape \(5, 3\)\), "
                                         r"weight has shape \(4,\)"):
        F.batch_norm(dc.tensor(np.ones((5, 3))), weight=dc.tensor(np.ones(4)),
                     bias=dc.tensor(np.ones(4)), training=True)


# --- derivative checks in float64 --------------------------------------------------------------
def _bn_train(x, w, b):
    return F.batch_norm(x, weight=w, bias=b, training=True)


def _ln(x, w, b):
    return F.layer_norm(x, x.shape[-1], w, b)


@pytest.mark.parametrize("fn,shape", [(_bn_train, (5, 3)), (_bn_train, (3, 2, 4)),
                                      (_ln, (4, 5)), (_ln, (2, 3, 4))])
def test_norm_gradcheck_gradgradcheck(fn, shape):
    rng = np.random.default_rng(3)
    c = shape[1] if fn is _bn_train else shape[-1]
    x = dc.tensor(rng.standard_normal(shape))
    w, b = dc.tensor(rng.uniform(0.5, 1.5, c)), dc.tensor(rng.standard_normal(c))
    assert dc.testing.gradcheck(fn, (x, w, b))
    assert dc.testing.gradgradcheck(fn, (x, w, b))
    assert dc.testing.gradcheck(lambda x: fn(x, None, None), (x,))
    assert dc.testing.gradgradcheck(lambda x: fn(x, None, None), (x,))


@pytest.mark.parametrize("fn,shape", [(_bn_train, (6, 4)), (_bn_train, (3, 4, 5)),
                                      (_ln, (6, 7)), (_ln, (2, 3, 7))])
def test_norm_jvp_vjp_consistency(fn, shape):
    """<J t, u> == <t, J^T u> over (x, weight, bias)."""
    rng = np.random.default_rng(4)
    c = shape[1] if fn is _bn_train else shape[-1]
    primals = (dc.tensor(rng.standard_normal(shape)), dc.tensor(rng.uniform(0.5, 1.5, c)),
               dc.tensor(rng.standard_normal(c)))
    tangents = tuple(dc.tensor(rng.standard_normal(p.shape)) for p in primals)
    out, jt = dc.jvp(fn, primals, tangents)
    u = dc.tensor(rng.standard_normal(out.shape))
    _, vjp_fn = dc.vjp(fn, *primals)
    jtu = vjp_fn(u)
    lhs = float((jt.data * u.data).sum())
    rhs = sum(float((t.data * g.data).sum()) for t, g in zip(tangents, jtu))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    np.testing.assert_allclose(out.data, fn(*primals).data, rtol=1e-14)


# --- transforms through a training-mode BatchNorm network --------------------------------------
def _bn_net(torch):
    """The same Linear-BN-tanh-Linear network in dc (tracking statistics) and torch (batch
    statistics only, which torch.func can transform; identical maths in training mode)."""
    net = nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.BatchNorm1d(6, dtype=np.float64),
                        nn.Tanh(), nn.Linear(6, 2, dtype=np.float64))
    net[1].weight.data[...] = np.linspace(0.5, 1.5, 6)
    net[1].bias.data[...] = np.linspace(-0.3, 0.3, 6)
    tnet = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6, track_running_stats=False),
                               torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()
    params = {k: torch.from_numpy(v.data.copy()) for k, v in net.named_parameters()}
    tnet.load_state_dict(params, strict=True)
    return net, tnet, params


def _bn_state(net):
    return {k: v.data.copy() for k, v in net.named_buffers()}


def _assert_state_unchanged(net, before):
    for k, v in net.named_buffers():
        assert np.array_equal(v.data, before[k]), k


def test_transforms_through_training_bn_match_torch_func():
    torch = _torch()
    from torch.func import functional_call as t_call
    net, tnet, tparams = _bn_net(torch)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((7, 4))
    v = rng.standard_normal((7, 4))
    before = _bn_state(net)

    f = lambda x: net(x)  # noqa: E731
    loss = lambda x: (net(x) ** 2).sum()  # noqa: E731
    tf = lambda x: t_call(tnet, tparams, (x,))  # noqa: E731
    tloss = lambda x: (t_call(tnet, tparams, (x,)) ** 2).sum()  # noqa: E731
    xt = torch.from_numpy(x)

    J = dc.jacrev(f)(dc.tensor(x))
    Jt = torch.func.jacrev(tf)(xt).numpy()
    assert J.shape == (7, 2, 7, 4)
    _close(J.data, Jt, np.float64, rtol64=1e-10)
    _close(dc.jacfwd(f)(dc.tensor(x)).data, Jt, np.float64, rtol64=1e-10)
    H = dc.hessian(loss)(dc.tensor(x))
    Ht = torch.func.hessian(tloss)(xt).numpy()
    _close(H.data, Ht, np.float64, rtol64=1e-9)
    _, hv = dc.hvp(loss, (dc.tensor(x),), (dc.tensor(v),))
    _close(hv.data, (Ht.reshape(28, 28) @ v.reshape(-1)).reshape(7, 4), np.float64, rtol64=1e-9)

    # gradients with respect to the parameters through functional_call
    params = {k: dc.tensor(p.data.copy()) for k, p in net.named_parameters()}
    gp = dc.grad(lambda p: (functional_call(net, p, dc.tensor(x)) ** 2).sum())(params)
    gpt = torch.func.grad(lambda p: (t_call(tnet, p, (xt,)) ** 2).sum())(tparams)
    for k in params:  # "0.bias" is exactly zero: BN removes the preceding bias
        np.testing.assert_allclose(gp[k].data, gpt[k].numpy(), rtol=1e-10, atol=1e-12)
    assert np.abs(gp["0.bias"].data).max() < 1e-12
    _assert_state_unchanged(net, before)


def test_create_graph_through_training_bn():
    torch = _torch()
    net, tnet, _ = _bn_net(torch)
    rng = np.random.default_rng(6)
    x, v = rng.standard_normal((7, 4)), rng.standard_normal((7, 4))
    xd = dc.tensor(x.copy(), requires_grad=True)
    loss = (net(xd) ** 2).sum()
    after_forward = _bn_state(net)
    assert int(after_forward["1.num_batches_tracked"]) == 1  # the forward itself counts once
    (gx,) = dc.autograd_grad(loss, [xd], create_graph=True)
    (gx * dc.tensor(v)).sum().backward()
    _assert_state_unchanged(net, after_forward)  # backward passes leave the statistics alone

    xt = torch.from_numpy(x.copy()).requires_grad_()
    (gxt,) = torch.autograd.grad((tnet(xt) ** 2).sum(), xt, create_graph=True)
    (gxt * torch.from_numpy(v)).sum().backward()
    _close(gx.data, gxt.detach().numpy(), np.float64, rtol64=1e-10)
    _close(xd.grad.data, xt.grad.numpy(), np.float64, rtol64=1e-9)


def test_hessian_through_training_bn_matches_finite_differences():
    """The Hessian of a training-mode BN network against central differences of dc.grad."""
    net = nn.Sequential(nn.Linear(3, 5, dtype=np.float64, activation="tanh"),
                        nn.BatchNorm1d(5, dtype=np.float64), nn.Linear(5, 1, dtype=np.float64))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 3))
    before = _bn_state(net)
    loss = lambda x: (net(x) ** 3).sum()  # noqa: E731
    g = dc.grad(loss)
    H = dc.hessian(loss)(dc.tensor(x)).data.reshape(18, 18)
    eps = 1e-5
    fd = np.zeros((18, 18))
    for j in range(18):
        e = np.zeros(18)
        e[j] = eps
        fd[:, j] = (g(dc.tensor(x + e.reshape(6, 3))).data -
                    g(dc.tensor(x - e.reshape(6, 3))).data).reshape(-1) / (2 * eps)
    np.testing.assert_allclose(H, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)
    _assert_state_unchanged(net, before)


# --- noisy BatchNorm -------------------------------------------------------------------------------
def test_noisy_batchnorm():
    c, n = 4, 6000
    x = dc.tensor(np.random.default_rng(8).standard_normal((n, c)) * 2 + 1)
    noisy = nn.BatchNorm1d(c, dtype=np.float64, noise=True, noise_mean=0.5, noise_std_min=1.0,
                           noise_std_max=2.0)
    clean = nn.BatchNorm1d(c, dtype=np.float64)
    base = clean(x).data
    y1 = noisy(x).data
    m1, s1 = noisy.last_noise
    y2 = noisy(x).data
    m2, s2 = noisy.last_noise
    assert m1.shape == s1.shape == (c,)
    assert not np.allclose(m1, m2) and not np.allclose(s1, s2)  # redrawn every step
    assert len(np.unique(m1)) == c and len(np.unique(s1)) == c  # per feature
    for m, s in ((m1, s1), (m2, s2)):
        assert np.all(np.abs(m) <= 0.5) and np.all((s >= 1.0) & (s <= 2.0))
    for y, m, s in ((y1, m1, s1), (y2, m2, s2)):
        r = y - base
        np.testing.assert_allclose(r.mean(0), m, atol=5 * 2 / np.sqrt(n))
        np.testing.assert_allclose(r.std(0), s, rtol=0.06)
    # running statistics are those of the clean layer: the noise is added after normalization
    clean(x)
    np.testing.assert_array_equal(noisy.running_mean.data, clean.running_mean.data)
    np.testing.assert_array_equal(noisy.running_var.data, clean.running_var.data)
    # the noise is an additive constant: gradients equal the clean layer's
    xg = dc.tensor(x.data.copy(), requires_grad=True)
    u = np.random.default_rng(9).standard_normal((n, c))
    (noisy(xg) * dc.tensor(u)).sum().backward()
    xc = dc.tensor(x.data.copy(), requires_grad=True)
    (clean(xc) * dc.tensor(u)).sum().backward()
    np.testing.assert_allclose(xg.grad.data, xc.grad.data, rtol=1e-10, atol=1e-14)
    # absent in eval mode
    noisy.eval(), clean.eval()
    last = noisy.last_noise
    np.testing.assert_array_equal(noisy(x).data, clean(x).data)
    assert noisy.last_noise is last


def test_noisy_batchnorm_seeded():
    x = dc.tensor(np.random.default_rng(10).standard_normal((16, 3)).astype(np.float32))
    a = nn.BatchNorm1d(3, noise=True, generator=np.random.default_rng(11))
    b = nn.BatchNorm1d(3, noise=True, generator=np.random.default_rng(11))
    for _ in range(3):
        np.testing.assert_array_equal(a(x).data, b(x).data)
    dc.manual_seed(4)
    c1 = nn.BatchNorm1d(3, noise=True)(x).data
    dc.manual_seed(4)
    np.testing.assert_array_equal(nn.BatchNorm1d(3, noise=True)(x).data, c1)
    assert not np.array_equal(nn.BatchNorm1d(3, noise=True)(x).data, c1)


def test_forward_hooks_on_norm_layers():
    for layer, shape in ((nn.BatchNorm1d(3), (5, 3)), (nn.LayerNorm(3), (2, 4, 3))):
        seen = []
        h = layer.register_forward_hook(lambda m, inp, out: seen.append((inp[0], out)))
        hp = layer.register_forward_pre_hook(lambda m, inp: (inp[0] + 1.0,))
        x = dc.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        y = layer(x)
        assert len(seen) == 1 and seen[0][1] is y
        np.testing.assert_array_equal(seen[0][0].data, x.data + 1.0)
        h.remove(), hp.remove()
        layer(x)
        assert len(seen) == 1


# --- LayerNorm ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6, 10), (2, 5, 7), (3, 33)])
def test_layernorm_matches_torch(shape, dtype, affine):
    torch = _torch()
    c = shape[-1]
    ln = nn.LayerNorm(c, elementwise_affine=affine, dtype=dtype)
    tln = torch.nn.LayerNorm(c, elementwise_affine=affine, dtype=_tdtype(torch, dtype))
    rng = np.random.default_rng(12)
    if affine:
        ln.weight.data[...] = rng.uniform(0.5, 1.5, c)
        ln.bias.data[...] = rng.standard_normal(c)
        with torch.no_grad():
            tln.weight.copy_(torch.from_numpy(ln.weight.data))
            tln.bias.copy_(torch.from_numpy(ln.bias.data))
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    (y, yt), (dx, dxt) = _step(torch, ln, tln, x, g)
    _close(y, yt, dtype)
    _close(dx, dxt, dtype)
    if affine:
        _close(ln.weight.grad.data, tln.weight.grad.numpy(), dtype)
        _close(ln.bias.grad.data, tln.bias.grad.numpy(), dtype)
    else:
        assert list(ln.parameters()) == []


def test_layernorm_bad_inputs():
    with pytest.raises(ValueError, match=r"layer_norm: normalized_shape \(4,\) must equal the last "
                                         r"axis of x \(shape \(2, 5\)\)"):
        nn.LayerNorm(4)(dc.tensor(np.ones((2, 5), np.float32)))
    with pytest.raises(ValueError, match="LayerNorm: deepcalc normalizes over the last axis only"):
        nn.LayerNorm((3, 4))


# --- every CPU path of the norm kernels --------------------------------------------------------------
_CPU_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import deepcalc as dc
    from deepcalc import nn
    want = sys.argv[1]
    assert dc.cpu_capability() == want, (dc.cpu_capability(), want)
    dc.set_num_threads(1)
    rng = np.random.default_rng(0)

    def ref(x, axes, w, b, g, eps=1e-5):
        mu = x.mean(axes, keepdims=True)
        inv = 1 / np.sqrt(((x - mu) ** 2).mean(axes, keepdims=True) + eps)
        xh = (x - mu) * inv
        y = xh * w + b
        gx = g * w
        dx = inv * (gx - gx.mean(axes, keepdims=True) - xh * (gx * xh).mean(axes, keepdims=True))
        return y, dx, xh

    for dtype, tol in ((np.float32, 2e-5), (np.float64, 1e-12)):
        for shape in ((37, 19), (5, 23, 7), (3, 1, 65)):
            c = shape[1]
            bn = nn.BatchNorm1d(c, dtype=dtype)
            bn.weight.data[...] = rng.uniform(0.5, 1.5, c)
            bn.bias.data[...] = rng.standard_normal(c)
            x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
            g = rng.standard_normal(shape).astype(dtype)
            xt = dc.tensor(x.copy(), requires_grad=True)
            (bn(xt) * dc.tensor(g)).sum().backward()
            axes = (0,) if len(shape) == 2 else (0, 2)
            pshape = (c,) if len(shape) == 2 else (1, c, 1)
            x64, g64 = x.astype(np.float64), g.astype(np.float64)
            w, b = bn.weight.data.astype(np.float64).reshape(pshape), bn.bias.data.astype(np.float64).reshape(pshape)
            y, dx, xh = ref(x64, axes, w, b, g64)
            s = lambda a: max(np.abs(a).max(), 1e-30)
            assert np.abs(bn(dc.tensor(x)).data - y).max() <= tol * s(y), ("bn y", dtype, shape)
            assert np.abs(xt.grad.data - dx).max() <= tol * s(dx), ("bn dx", dtype, shape)
            dw = (g64 * xh).sum(axes).reshape(-1)
            assert np.abs(bn.weight.grad.data - dw).max() <= tol * s(dw), ("bn dw", dtype, shape)
            assert np.abs(bn.bias.grad.data - g64.sum(axes)).max() <= tol * s(g64.sum(axes))

            ln = nn.LayerNorm(shape[-1], dtype=dtype)
            ln.weight.data[...] = rng.uniform(0.5, 1.5, shape[-1])
            ln.bias.data[...] = rng.standard_normal(shape[-1])
            xt = dc.tensor(x.copy(), requires_grad=True)
            (ln(xt) * dc.tensor(g)).sum().backward()
            axes = (x.ndim - 1,)
            w, b = ln.weight.data.astype(np.float64), ln.bias.data.astype(np.float64)
            y, dx, xh = ref(x64, axes, w, b, g64)
            assert np.abs(ln(dc.tensor(x)).data - y).max() <= tol * s(y), ("ln y", dtype, shape)
            assert np.abs(xt.grad.data - dx).max() <= tol * s(dx), ("ln dx", dtype, shape)
            dw = (g64 * xh).reshape(-1, shape[-1]).sum(0)
            assert np.abs(ln.weight.grad.data - dw).max() <= tol * s(dw), ("ln dw", dtype, shape)
    print("OK", want)
""")


@pytest.mark.parametrize("path", ["scalar", "avx2", "avx512"])
def test_norm_kernels_on_every_cpu_path(path):
    if path not in supported_cpu_paths():
        pytest.skip(f"this CPU does not support {path}")
    env = dict(cpu_path_env(path), OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, "-c", _CPU_SCRIPT, path], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == f"OK {path}"


def test_non_contiguous_inputs_match_contiguous():
    rng = np.random.default_rng(13)
    base, b3 = rng.standard_normal((10, 12)), rng.standard_normal((3, 6, 8))
    cases = [(nn.Linear(5, 3, dtype=np.float64, activation="gelu"), base[:, ::2][:, :5]),
             (nn.BatchNorm1d(5, dtype=np.float64), base[::2, 1::2][:, :5]),
             (nn.BatchNorm1d(4, dtype=np.float64), b3[:, :4, ::2]),
             (nn.LayerNorm(5, dtype=np.float64), base.T[:7, :5]),
             (nn.LayerNorm(3, dtype=np.float64), b3.transpose(2, 0, 1)[..., :3])]
    for mod, x in cases:
        assert not x.flags["C_CONTIGUOUS"]
        results = []
        for arr in (x, np.ascontiguousarray(x)):
            mod.zero_grad()
            xt = dc.tensor(arr, requires_grad=True)
            y = mod(xt)
            (y * dc.tensor(np.cos(np.arange(y.size)).reshape(y.shape))).sum().backward()
            results.append([y.data, xt.grad.data] + [p.grad.data for p in mod.parameters()])
        for a, b in zip(*results):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_batch_norm_running_stats_of_another_dtype_raise():
    x = dc.tensor(np.random.default_rng(0).standard_normal((8, 3)))  # float64
    rm, rv = dc.tensor(np.zeros(3, np.float32)), dc.tensor(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="batch_norm: x is float64 but running_mean is float32"):
        dc.nn.functional.batch_norm(x, rm, rv, training=True)
