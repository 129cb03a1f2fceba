"""dc.diagnose on cases with known answers: deep linear networks (closed-form gradient norms and
Jacobian singular values), a linear RNN with a diagonalizable W (norms of powers of W), a
quadratic loss (landscape range, gradient change and beta-smoothness from its Hessian), the
internal covariate shift of a one-layer network (zero) and of a two-layer linear one (by hand),
GradientMonitor against norms computed by hand, and the errors bad input gets."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import diagnose as dg
from deepcalc.nn import functional as F


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def _deep_linear(weights):
    """An MLP without activations whose weights are ``weights`` (biases 0), float64."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    net = dc.nn.MLP(sizes, activation=None, dtype=np.float64)
    for layer, w in zip(net.layers, weights):
        layer.weight.data[...] = w
        layer.bias.data[...] = 0
    return net


def _linear_loss(c):
    c = dc.tensor(c)
    return lambda out, y: (out * c).sum()


# --- gradient norms and the monitor ----------------------------------------------------------

def test_deep_linear_closed_form_gradient_norms(rng):
    """W_l = sigma Q_l (Q_l orthogonal), L = <c, f(x)>: dL/dW_l = (prod_{k>l} W_k)^T c
    (prod_{k<l} W_k x)^T has norm sigma^(L-1) ||c|| ||x|| for every layer exactly."""
    n, L, sigma = 6, 5, 1.3
    weights = [sigma * _orthogonal(rng, n) for _ in range(L)]
    net = _deep_linear(weights)
    x, c = rng.standard_normal((1, n)), rng.standard_normal((1, n))
    loss_fn = _linear_loss(c)
    opt = dc.optim.SGD(net.parameters(), lr=0.01)
    mon = dg.GradientMonitor(net)
    with mon:
        loss = loss_fn(net(dc.tensor(x)), None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    want = sigma ** (L - 1) * np.linalg.norm(c) * np.linalg.norm(x)
    for l in range(L):
        np.testing.assert_allclose(mon[f"grad_norm/layer{l}.weight"], [want], rtol=1e-12)
        # SGD's update is lr * g: the update ratio is lr ||g|| / ||W||, ||W|| = sigma sqrt(n)
        np.testing.assert_allclose(mon[f"update_ratio/layer{l}.weight"],
                                   [0.01 * want / (sigma * np.sqrt(n))], rtol=1e-10)
        np.testing.assert_allclose(mon[f"weight_norm/layer{l}.weight"], [sigma * np.sqrt(n)],
                                   rtol=1e-12)


def test_monitor_matches_hand_computed_products(rng):
    """Random (non-orthogonal) weights and an MSE loss: the monitor's norms equal the norms of
    the gradients of the delta recursion written out in NumPy."""
    Ws = [rng.standard_normal((5, 4)) * 0.5, rng.standard_normal((3, 5)) * 0.5,
          rng.standard_normal((2, 3)) * 0.5]
    net = _deep_linear(Ws)
    x, y = rng.standard_normal((7, 4)), rng.standard_normal((7, 2))
    acts = [x]
    for W in Ws:
        acts.append(acts[-1] @ W.T)
    delta = (acts[-1] - y) * 2 / y.size            # d mean((f - y)^2) / d f
    grads = [None] * 3
    for l in range(2, -1, -1):
        grads[l] = delta.T @ acts[l]
        delta = delta @ Ws[l]
    mon = dg.GradientMonitor(net)
    data = dc.data.DataLoader(dc.data.TensorDataset(x, y), batch_size=7)
    hist = dc.train.fit(net, F.mse_loss, dc.optim.SGD(net.parameters(), lr=0.1), data, epochs=1,
                        callbacks=[mon], progress=False)
    for l in range(3):
        g = np.linalg.norm(grads[l])
        np.testing.assert_allclose(mon[f"grad_norm/layer{l}.weight"], [g], rtol=1e-10)
        np.testing.assert_allclose(mon[f"update_ratio/layer{l}.weight"],
                                   [0.1 * g / np.linalg.norm(Ws[l])], rtol=1e-10)
        # the epoch's mean lands in the History
        np.testing.assert_allclose(hist[f"grad_norm/layer{l}.weight"], [g], rtol=1e-10)
        np.testing.assert_allclose(mon[f"act_mean/layer{l}"], [acts[l + 1].mean()], rtol=1e-10)
        np.testing.assert_allclose(mon[f"act_std/layer{l}"], [acts[l + 1].std()], rtol=1e-10)
    assert mon.steps == [0]


def test_monitor_dead_relus_every_and_context_manager(rng):
    net = dc.nn.Sequential(dc.nn.Linear(3, 4, dtype=np.float64), dc.nn.ReLU(),
                           dc.nn.Linear(4, 1, dtype=np.float64))
    lin = net[0]
    lin.weight.data[...] = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, 0, 0]], float)
    lin.bias.data[...] = np.array([0, 0, 0, -1.0])
    x = np.abs(rng.standard_normal((6, 3))) + 0.1   # unit 1 (-x0) and unit 3 (-1) never fire
    opt = dc.optim.SGD(net.parameters(), lr=0.05)
    mon = dg.GradientMonitor(net, every=2)
    with mon:
        for _ in range(5):
            loss = (net(dc.tensor(x)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert mon.steps == [0, 2, 4]
    assert mon["dead_fraction/1"][0] == 0.5
    assert "dead_fraction/0" not in mon.keys()     # a Linear without relu has no dead units
    # a no_grad evaluation between steps does not replace the step's activations
    with dg.GradientMonitor(net) as mon2:
        out = net(dc.tensor(x))
        loss = (out ** 2).mean()
        opt.zero_grad()
        loss.backward()
        with dc.no_grad():
            net(dc.tensor(np.zeros((2, 3))))
        opt.step()
    np.testing.assert_allclose(mon2["act_mean/2"], [out.data.mean()], rtol=1e-12)
    np.testing.assert_allclose(mon2["grad_norm/2.bias"], [abs(2 * out.data.mean())], rtol=1e-10)


# --- Jacobian spectra -------------------------------------------------------------------------

def test_jacobian_spectrum_of_scaled_orthogonal_network(rng):
    n, L, sigma = 5, 4, 0.8
    net = _deep_linear([sigma * _orthogonal(rng, n) for _ in range(L)])
    s = dg.jacobian_spectrum(net, rng.standard_normal((3, n)), examples=2)
    np.testing.assert_allclose(s["singular_values"], np.full((2, n), sigma ** L), rtol=1e-10)
    for name, sl in s["layers"].items():
        np.testing.assert_allclose(sl, np.full((2, n), sigma), rtol=1e-10, err_msg=name)
    np.testing.assert_allclose(s["isometry_gap"], abs(L * np.log(sigma)), rtol=1e-10)


def test_jacobian_spectrum_layers_multiply_to_the_full_jacobian(rng):
    dc.manual_seed(3)
    net = dc.nn.Sequential(dc.nn.Linear(4, 6, dtype=np.float64), dc.nn.BatchNorm1d(
        6, dtype=np.float64), dc.nn.Tanh(), dc.nn.Linear(6, 3, dtype=np.float64))
    x = rng.standard_normal((8, 4))
    before = {k: v.data.copy() for k, v in net.state_dict().items()}
    s = dg.jacobian_spectrum(net, x, examples=1)
    for k, v in net.state_dict().items():      # running statistics untouched
        np.testing.assert_array_equal(v.data, before[k], err_msg=k)
    J = dc.jacrev(lambda z: net(z)[0])(dc.tensor(x)).data[:, 0, :]
    np.testing.assert_allclose(s["singular_values"][0], np.linalg.svd(J, compute_uv=False),
                               rtol=1e-8)
    assert [sl.shape for sl in s["layers"].values()] == [(1, 4), (1, 6), (1, 6), (1, 3)]
    # a product's singular values are bounded by the products of its factors'
    top = np.prod([sl[0, 0] for sl in s["layers"].values()])
    assert s["singular_values"][0, 0] <= top * (1 + 1e-9)


# --- RNN gradient norms -----------------------------------------------------------------------

def test_rnn_gradient_norms_of_linear_rnn_equal_powers_of_w(rng):
    """h_t = W h_{t-1} + U x_t: d h_T / d h_t = W^(T-t) with W = V diag(lam) V^-1."""
    H, T = 4, 7
    V = rng.standard_normal((H, H))
    lam = np.array([1.1, -0.7, 0.5, 0.2])
    W = V @ np.diag(lam) @ np.linalg.inv(V)
    m = dc.nn.RNN(2, H, nonlinearity="identity", dtype=np.float64)
    m.weight_hh_l0.data[...] = W
    x = rng.standard_normal((T, 3, 2))
    got = dg.rnn_gradient_norms(m, x)
    want = [np.linalg.norm(V @ np.diag(lam ** (T - t)) @ np.linalg.inv(V), 2)
            for t in range(T + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    u = rng.standard_normal(H)
    got_u = dg.rnn_gradient_norms(m, x, cotangent=u, reduction="none")
    want_u = [np.linalg.norm(u @ V @ np.diag(lam ** (T - t)) @ np.linalg.inv(V))
              for t in range(T + 1)]
    np.testing.assert_allclose(got_u, np.repeat(np.array(want_u)[:, None], 3, axis=1),
                               rtol=1e-10)


def test_rnn_gradient_norms_tanh_matches_the_jacobian_product(rng):
    m = dc.nn.RNN(2, 3, nonlinearity="tanh", dtype=np.float64, batch_first=True)
    x = rng.standard_normal((1, 5, 2))
    out, _ = m(dc.tensor(x))
    hs = out.data[0]                                # (T, H)
    W = m.weight_hh_l0.data
    J, want = np.eye(3), [1.0]
    for t in range(4, -1, -1):                      # d h_5 / d h_t, h_0 the initial state
        J = J @ np.diag(1 - hs[t] ** 2) @ W
        want.append(np.linalg.norm(J, 2))
    np.testing.assert_allclose(dg.rnn_gradient_norms(m, x), want[::-1], rtol=1e-10)


# --- Santurkar et al.'s measures --------------------------------------------------------------

class _Quadratic(dc.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = dc.nn.Parameter(w)

    def forward(self, x):
        return self.w


def _quadratic_loss(A, b):
    A, b = dc.tensor(A), dc.tensor(b)
    return lambda w, _: 0.5 * (w * dc.ops.matmul(A, w)).sum() - (b * w).sum()


def test_landscape_predictiveness_and_beta_on_a_quadratic(rng):
    n = 5
    Q = _orthogonal(rng, n)
    A = Q @ np.diag([3.0, 2.0, 1.0, 0.5, 0.1]) @ Q.T
    b, w = rng.standard_normal(n), rng.standard_normal(n)
    model, loss_fn = _Quadratic(w.copy()), _quadratic_loss(A, b)
    g = A @ w - b
    L = 0.5 * w @ A @ w - b @ w
    etas = np.array([0.05, 0.2, 0.5, 1.0])
    losses = L - etas * (g @ g) + etas ** 2 / 2 * (g @ A @ g)
    r = dg.loss_landscape(model, loss_fn, None, None, etas)
    np.testing.assert_allclose(r["losses"], losses, rtol=1e-12)
    np.testing.assert_allclose(r["range"], losses.max() - losses.min(), rtol=1e-10)
    p = dg.gradient_predictiveness(model, loss_fn, None, None, etas)
    np.testing.assert_allclose(p["gradient_change"], etas * np.linalg.norm(A @ g), rtol=1e-10)
    beta = dg.effective_beta_smoothness(model, loss_fn, None, None, etas)
    np.testing.assert_allclose(beta, np.linalg.norm(A @ g) / np.linalg.norm(g), rtol=1e-10)
    np.testing.assert_array_equal(model.w.data, w)   # the model is left as it was
    # along the top eigenvector the beta-smoothness is A's largest eigenvalue
    top = _Quadratic(np.linalg.solve(A, b) + Q[:, 0])
    np.testing.assert_allclose(dg.effective_beta_smoothness(top, loss_fn, None, None, etas), 3.0,
                               rtol=1e-10)


def test_ics_of_a_one_layer_network_is_zero(rng):
    net = dc.nn.Linear(4, 3, dtype=np.float64)
    x, y = dc.tensor(rng.standard_normal((10, 4))), rng.integers(0, 3, 10)
    r = dg.internal_covariate_shift(net, F.cross_entropy, x, y, step=0.5)
    assert list(r) == ["<root>"]
    assert r["<root>"]["l2"] == 0.0 and r["<root>"]["cosine"] == pytest.approx(1.0, abs=1e-12)


def test_ics_of_a_two_layer_linear_network_by_hand(rng):
    """f = W2 (W1 x + b1), L = <c, f> summed over the batch: G2 = sum_i c (W1 x_i + b1)^T;
    after layer 0 takes the SGD step (W1' = W1 - lr G1, b1' = b1 - lr N W2^T c),
    G2' = sum_i c (W1' x_i + b1')^T; G1 is unchanged (nothing below it)."""
    W1, W2 = rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    net = _deep_linear([W1, W2])
    X, c = rng.standard_normal((5, 4)), rng.standard_normal(2)
    loss_fn = lambda out, y: (out * dc.tensor(c)).sum()
    lr = 0.1
    G1 = np.outer(W2.T @ c, X.sum(0))
    G2 = np.outer(c, W1 @ X.sum(0))
    b1p = -lr * len(X) * (W2.T @ c)       # layer 0's bias (0) is below W2 and steps too
    G2p = np.outer(c, (W1 - lr * G1) @ X.sum(0) + len(X) * b1p)
    r = dg.internal_covariate_shift(net, loss_fn, dc.tensor(X), None, step=lr,
                                    layers={"W1": ["layer0.weight"], "W2": ["layer1.weight"]})
    assert r["W1"]["l2"] == 0.0
    np.testing.assert_allclose(r["W2"]["l2"], np.linalg.norm(G2 - G2p), rtol=1e-10)
    np.testing.assert_allclose(r["W2"]["cosine"], (G2 * G2p).sum() / np.linalg.norm(G2)
                               / np.linalg.norm(G2p), rtol=1e-10)
    # plain SGD as an Optimizer gives the same step; the optimizer and weights are restored
    opt = dc.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    r2 = dg.internal_covariate_shift(net, loss_fn, dc.tensor(X), None, step=opt,
                                     layers={"W2": ["layer1.weight"]})
    np.testing.assert_allclose(r2["W2"]["l2"], r["W2"]["l2"], rtol=1e-10)
    assert opt.state == {} and np.array_equal(net.layers[0].weight.data, W1)


def test_measures_leave_batchnorm_and_noise_as_they_were(rng):
    dc.manual_seed(0)
    net = dc.nn.Sequential(dc.nn.Linear(4, 6), dc.nn.BatchNorm1d(6, noise=True), dc.nn.ReLU(),
                           dc.nn.Linear(6, 3))
    x, y = dc.tensor(rng.standard_normal((16, 4)).astype(np.float32)), rng.integers(0, 3, 16)
    before = {k: v.data.copy() for k, v in net.state_dict().items()}
    state = dc.creation.default_generator().bit_generator.state
    r = dg.along_gradient(net, F.cross_entropy, x, y, [1e-4, 0.1])
    dg.internal_covariate_shift(net, F.cross_entropy, x, y, 0.1)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.data, before[k], err_msg=k)
    assert dc.creation.default_generator().bit_generator.state == state
    # the same noise at every evaluation: a tiny step changes the loss by about eta ||g||^2
    assert abs(r["losses"][0] - r["loss"]) < 1e-3 * max(1.0, r["grad_norm"] ** 2)


# --- bad input ----------------------------------------------------------------------------------

def test_errors(rng):
    net = dc.nn.MLP([3, 4, 2])
    x, y = dc.tensor(rng.standard_normal((4, 3)).astype(np.float32)), rng.integers(0, 2, 4)
    with pytest.raises(TypeError, match="internal_covariate_shift: model must be a dc.nn.Module"):
        dg.internal_covariate_shift(lambda z: z, F.cross_entropy, x, y, 0.1)
    with pytest.raises(ValueError, match="learning rate must be a finite number > 0"):
        dg.internal_covariate_shift(net, F.cross_entropy, x, y, -1.0)
    with pytest.raises(ValueError, match=r"along_gradient: etas must be a non-empty list"):
        dg.loss_landscape(net, F.cross_entropy, x, y, [])
    with pytest.raises(ValueError, match=r"along_gradient: etas .* got \[0.1, nan\]"):
        dg.gradient_predictiveness(net, F.cross_entropy, x, y, [0.1, float("nan")])
    with pytest.raises(ValueError, match="loss_fn must return a scalar loss"):
        dg.loss_landscape(net, lambda o, t: o, x, y, [0.1])
    with pytest.raises(ValueError, match="layer 'nope' owns no parameters"):
        dg.internal_covariate_shift(net, F.cross_entropy, x, y, 0.1, layers=["nope"])
    with pytest.raises(ValueError, match=r"jacobian_spectrum: x must be one example"):
        dg.jacobian_spectrum(net, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(TypeError, match="jacobian_spectrum: cannot split a RNN into layers"):
        dg.jacobian_spectrum(dc.nn.RNN(3, 3), np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="does not give the model's output"):
        dg.jacobian_spectrum(net, x, layers=[net.layers[0]])
    with pytest.raises(ValueError, match=r"rnn_gradient_norms: x must be a batch of sequences"):
        dg.rnn_gradient_norms(dc.nn.RNN(3, 3), np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"rnn_gradient_norms: cotangent must have the state's"):
        dg.rnn_gradient_norms(dc.nn.RNN(3, 3), np.zeros((4, 2, 3), np.float32),
                              cotangent=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="GradientMonitor: every must be an integer >= 1"):
        dg.GradientMonitor(net, every=0)
    with pytest.raises(ValueError, match=r"GradientMonitor: no modules named \['x'\]"):
        dg.GradientMonitor(net, modules=["x"])
    mon = dg.GradientMonitor(net)
    with mon:
        with pytest.raises(RuntimeError, match="already recording"):
            mon.__enter__()
    with pytest.raises(KeyError, match="no series 'grad_norm/zzz'"):
        mon["grad_norm/zzz"]


def test_nan_gradients_are_recorded_not_swallowed():
    net = dc.nn.Linear(2, 1)
    with dg.GradientMonitor(net) as mon:
        loss = (net(dc.tensor(np.array([[np.nan, 1.0]], np.float32)))).sum()
        loss.backward()
    assert np.isnan(mon["grad_norm/weight"][0])


def test_plot_helpers_write_pngs(tmp_path, rng):
    pytest.importorskip("matplotlib")
    net = dc.nn.MLP([3, 4, 2], activation="relu")
    opt = dc.optim.SGD(net.parameters(), lr=0.1)
    with dg.GradientMonitor(net) as mon:
        for _ in range(3):
            loss = (net(dc.tensor(rng.standard_normal((4, 3)).astype(np.float32))) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    p = dg.plot.plot_monitor(mon, tmp_path / "m.png")
    s = dg.jacobian_spectrum(net, rng.standard_normal((2, 3)).astype(np.float32))
    q = dg.plot.plot_singular_values({"mlp": s}, tmp_path / "s.png")
    for f in (p, q):
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
