"""dc.curvature against dense answers: on float64 networks small enough for dc.hessian and
np.linalg.eigvalsh, every operator's matvec equals the dense product, Lanczos finds the extreme
eigenvalues to 1e-6, the trace estimators are unbiased, SLQ reproduces the spectrum's moments,
and the basin measures and loss slices equal their formulas."""
from __future__ import annotations

import math

import numpy as np
import pytest

import deepcalc as dc
import deepcalc.curvature as cv
from deepcalc.nn import functional as F


def _net(sizes=(4, 5, 3), seed=0, activation="tanh"):
    dc.manual_seed(seed)
    return dc.nn.MLP(list(sizes), activation=activation, dtype=np.float64)


def _data(n=12, d=4, c=3, seed=1):
    rng = np.random.default_rng(seed)
    return dc.tensor(rng.standard_normal((n, d))), rng.integers(0, c, n)


def _dense_hessian(model, loss_of_params, space):
    """dc.hessian of the loss as a function of the flat parameter vector."""
    def f(w):
        p = {k: dc.reshape(w[a:b], s) for k, s, a, b in
             zip(space.names, space.shapes, space.offsets[:-1], space.offsets[1:])}
        return loss_of_params(p)
    w0 = dc.tensor(space.flatten(dict(model.named_parameters()), "test"))
    return dc.hessian(f)(w0).data


@pytest.fixture(scope="module")
def case():
    model = _net()
    x, y = _data()
    H = cv.HessianOperator(model, F.cross_entropy, (x, y))
    dense = _dense_hessian(model, lambda p: F.cross_entropy(
        dc.func.functional_call(model, p, x), y), H.space)
    return model, x, y, H, dense


def test_hessian_matvec_equals_dense_product(case):
    model, x, y, H, dense = case
    rng = np.random.default_rng(0)
    v = rng.standard_normal(H.shape[0])
    np.testing.assert_allclose(H.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    as_dict = H.matvec(H.space.unflatten(v, np.float64))
    np.testing.assert_allclose(H.space.flatten(as_dict, "t"), dense @ v, rtol=1e-10, atol=1e-12)
    assert H.shape == dense.shape and np.allclose(dense, dense.T)


def test_loader_average_weights_batches_by_size(case):
    model, x, y, H, dense = case
    xs, ys = x.data, y
    batches = [(dc.tensor(xs[:8]), ys[:8]), (dc.tensor(xs[8:]), ys[8:])]
    Hl = cv.HessianOperator(model, F.cross_entropy, batches)
    parts = [cv.HessianOperator(model, F.cross_entropy, b).to_dense() for b in batches]
    np.testing.assert_allclose(Hl.to_dense(), (8 * parts[0] + 4 * parts[1]) / 12, atol=1e-12)
    np.testing.assert_allclose(Hl.to_dense(), dense, atol=1e-12)   # mean loss = whole batch


def test_top_and_bottom_eigenvalues_to_1e6(case):
    *_, H, dense = case
    ev = np.linalg.eigvalsh(dense)
    for k in (1, 3):
        vals, vecs = cv.top_eigenvalues(H, k=k, tol=1e-10, generator=0)
        np.testing.assert_allclose(vals, ev[::-1][:k], rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(vecs @ dense @ vecs.T, np.diag(vals), atol=1e-6)
        vals, _ = cv.bottom_eigenvalues(H, k=k, tol=1e-10, generator=0)
        np.testing.assert_allclose(vals, ev[:k], rtol=1e-6, atol=1e-9)


def test_lanczos_restarts_on_a_large_matrix():
    """A 400 x 400 matrix with a small basis: the answer needs several thick restarts."""
    rng = np.random.default_rng(3)
    q = np.linalg.qr(rng.standard_normal((400, 400)))[0]
    lam = np.concatenate([[10.0, 9.9, 9.8, 9.5], rng.uniform(-1, 5, 396)])
    A = (q * lam) @ q.T
    vals, _, info = cv.top_eigenvalues(A, k=4, tol=1e-9, basis=12, generator=0,
                                       return_info=True)
    np.testing.assert_allclose(vals, [10.0, 9.9, 9.8, 9.5], rtol=1e-6)
    assert info["converged"] and info["matvecs"] > 12


def test_block_spectra_are_the_diagonal_blocks(case):
    *_, H, dense = case
    spectra = cv.block_spectra(H, k=2, tol=1e-10, generator=0)
    assert list(spectra) == ["layer0", "layer1"]
    o = H.space.offsets
    for label, (a, b) in {"layer0": (o[0], o[2]), "layer1": (o[2], o[4])}.items():
        ev = np.linalg.eigvalsh(dense[a:b, a:b])[::-1][:2]
        np.testing.assert_allclose(spectra[label], ev, rtol=1e-6)


def test_ggn_is_jt_hout_j_and_equals_hessian_for_linear_mse():
    model = _net((4, 3))          # one Linear: the output is linear in the parameters
    x, _ = _data()
    t = dc.tensor(np.random.default_rng(2).standard_normal((12, 3)))
    G = cv.GGNOperator(model, F.mse_loss, (x, t)).to_dense()
    Hs = cv.HessianOperator(model, F.mse_loss, (x, t)).to_dense()
    np.testing.assert_allclose(G, Hs, atol=1e-12)
    net = _net()
    J = cv.output_jacobian(net, x)                       # mse 'mean': H_out = 2 / (N C) I
    G2 = cv.GGNOperator(net, F.mse_loss, (x, t)).to_dense()
    np.testing.assert_allclose(G2, 2.0 / 36 * J.T @ J, atol=1e-12)
    # its nonzero eigenvalues are the empirical NTK Gram's, scaled
    lam_g = np.linalg.eigvalsh(G2)[::-1][:36]
    lam_k = np.linalg.eigvalsh(cv.ntk_gram(net, x))[::-1] * 2.0 / 36
    np.testing.assert_allclose(lam_g[:20], lam_k[:20], rtol=1e-8, atol=1e-12)


def test_ggn_cross_entropy_is_psd_and_differs_from_hessian(case):
    model, x, y, H, dense = case
    G = cv.GGNOperator(model, F.cross_entropy, (x, y)).to_dense()
    assert np.linalg.eigvalsh(G).min() > -1e-12
    assert np.abs(G - dense).max() > 1e-4


def test_fisher_is_mean_outer_product_of_per_sample_gradients(case):
    model, x, y, H, _ = case
    Fd = cv.FisherOperator(model, F.cross_entropy, (x, y)).to_dense()
    params = dict(model.named_parameters())
    gs = []
    for i in range(12):
        xi = dc.tensor(x.data[i:i + 1])
        g = dc.grad(lambda p: F.cross_entropy(dc.func.functional_call(model, p, xi),
                                              y[i:i + 1]))(params)
        gs.append(H.space.flatten(g, "t"))
    gs = np.stack(gs)
    np.testing.assert_allclose(Fd, gs.T @ gs / 12, atol=1e-12)


def test_input_hessian(case):
    model, x, y, _, _ = case
    x1 = dc.tensor(x.data[:3])
    Hx = cv.HessianOperator(model, F.cross_entropy, (x1, y[:3]), wrt="inputs").to_dense()
    ref = dc.hessian(lambda z: F.cross_entropy(model(z), y[:3]))(x1).data.reshape(12, 12)
    np.testing.assert_allclose(Hx, ref, atol=1e-12)


def test_batch_norm_modes():
    dc.manual_seed(0)
    model = dc.nn.Sequential(dc.nn.Linear(4, 5, dtype=np.float64),
                             dc.nn.BatchNorm1d(5, dtype=np.float64), dc.nn.Tanh(),
                             dc.nn.Linear(5, 3, dtype=np.float64))
    model[1].running_mean.data[:] = 0.3
    model[1].running_var.data[:] = 2.0
    x, y = _data()
    names = [n for n, _ in model.named_parameters()]
    model.eval()
    dense = {}
    for mode in ("train", "eval"):
        op = cv.HessianOperator(model, F.cross_entropy, (x, y), batch_norm=mode)
        dense[mode] = op.to_dense()
        model.train(mode == "train")
        ref = _dense_hessian(model, lambda p: F.cross_entropy(
            dc.func.functional_call(model, p, x), y), op.space)
        model.eval()
        np.testing.assert_allclose(dense[mode], ref, atol=1e-10)
        assert not model.training                       # restored after every matvec
    assert np.abs(dense["train"] - dense["eval"]).max() > 1e-3
    assert float(model[1].running_mean.data[0]) == 0.3   # statistics untouched
    assert names == op.names


def test_params_subset_is_the_diagonal_block(case):
    model, x, y, H, dense = case
    sub = cv.HessianOperator(model, F.cross_entropy, (x, y), params=["layer1.weight"])
    a, b = H.space.offsets[2], H.space.offsets[3]
    np.testing.assert_allclose(sub.to_dense(), dense[a:b, a:b], atol=1e-12)


def test_trace_estimators_are_unbiased(case):
    *_, H, dense = case
    exact = np.trace(dense)
    hutch = cv.trace(dense, tol=1e-9, method="hutchinson", max_probes=4000, generator=0)
    assert hutch.matvecs == 4000
    se = np.std(hutch.samples, ddof=1) / math.sqrt(4000)
    assert abs(hutch.value - exact) < 4 * se
    assert hutch.ci[0] < exact < hutch.ci[1]
    # every sample is z^T A z for a Rademacher z: their mean over many seeds has no bias
    means = [cv.trace(dense, tol=1e-9, method="hutch++", sketch=10, max_probes=60,
                      generator=s).value for s in range(200)]
    assert abs(np.mean(means) - exact) < 4 * np.std(means) / math.sqrt(200)
    full = cv.trace(dense, method="hutch++", sketch=H.shape[0], max_probes=1000, generator=0)
    assert full.value == pytest.approx(exact, rel=1e-10)


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum():
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((300, 300)))[0]
    lam = 1.0 / np.arange(1, 301) ** 2
    A = (q * lam) @ q.T
    errs = {"hutchinson": [], "hutch++": []}
    for s in range(20):
        for m in errs:
            est = cv.trace(A, tol=1e-12, method=m, max_probes=60, sketch=20, min_probes=10,
                           generator=s)
            errs[m].append(abs(est.value - lam.sum()))
    assert np.mean(errs["hutch++"]) < 0.2 * np.mean(errs["hutchinson"])


def test_slq_moments_and_exact_quadrature(case):
    *_, H, dense = case
    n = dense.shape[0]
    ev = np.linalg.eigvalsh(dense)
    d = cv.density(dense, n_iter=10, n_vec=3, generator=5)
    # the quadrature is exact for v^T A^k v, k < 2 * n_iter, with the same start vectors
    rng = np.random.default_rng(5)
    for i in range(3):
        v = rng.standard_normal(n)
        v /= np.linalg.norm(v)
        for k in (1, 2, 3, 7):
            got = np.sum(d.weights[i] * d.nodes[i] ** k)
            want = v @ np.linalg.matrix_power(dense, k) @ v
            assert got == pytest.approx(want, rel=1e-8, abs=1e-12)
    # averaged over many vectors: tr(A^k) / n
    d = cv.density(dense, n_iter=20, n_vec=400, generator=0)
    for k in (1, 2, 3):
        per_vec = [np.sum(w * t ** k) for t, w in zip(d.nodes, d.weights)]
        se = np.std(per_vec, ddof=1) / math.sqrt(len(per_vec))
        assert d.moment(k) == pytest.approx(np.mean(per_vec))
        assert abs(d.moment(k) - np.mean(ev ** k)) < 4 * se
    assert d.moment(0) == pytest.approx(1.0)
    # full Lanczos: the nodes are the eigenvalues
    d = cv.density(dense, n_iter=n, n_vec=1, generator=0)
    np.testing.assert_allclose(np.sort(d.nodes[0])[-5:], ev[-5:], rtol=1e-6)
    area = np.trapezoid(d.values, d.grid)
    assert area == pytest.approx(1.0, rel=1e-3)


def test_basin_measures_known_answers():
    lam = np.array([4.0, 1.0, 0.0, -0.5])
    assert cv.effective_dimension(lam, z=1.0) == pytest.approx(4 / 5 + 1 / 2)
    assert cv.log_volume(lam, z=1.0) == pytest.approx(-0.5 * (math.log(5) + math.log(2)))
    rng = np.random.default_rng(1)
    q = np.linalg.qr(rng.standard_normal((60, 60)))[0]
    ev = np.concatenate([[5.0, 3.0, 2.0], rng.uniform(0, 0.01, 57)])
    A = (q * ev) @ q.T
    est = cv.effective_dimension(A, z=0.1, n_iter=30, n_vec=50, generator=0)
    assert est == pytest.approx(cv.effective_dimension(ev, z=0.1), rel=0.1)
    assert cv.sharpness(A, tol=1e-10, generator=0) == pytest.approx(5.0, rel=1e-8)
    m = cv.basin_measures(A, z=0.1, k=3, n_vec=20, generator=0)
    np.testing.assert_allclose(m["top_eigenvalues"], [5, 3, 2], rtol=1e-6)
    assert m["trace"] == pytest.approx(ev.sum(), rel=0.02)
    with pytest.raises(ValueError, match="z must be > 0"):
        cv.effective_dimension(lam, z=0)


def test_loss_slice_is_the_quadratic_of_a_linear_model():
    model = _net((4, 3))
    x, _ = _data()
    t = dc.tensor(np.random.default_rng(2).standard_normal((12, 3)))
    params = dict(model.named_parameters())
    d = cv.filter_normalized_direction(model, generator=0, ignore_1d=False)
    w = params["layer0.weight"].data
    np.testing.assert_allclose(np.linalg.norm(d["layer0.weight"], axis=1),
                               np.linalg.norm(w, axis=1), rtol=1e-12)
    assert np.linalg.norm(d["layer0.bias"]) == pytest.approx(
        np.linalg.norm(params["layer0.bias"].data))
    alphas = np.linspace(-2, 2, 9)
    s = cv.loss_slice(model, F.mse_loss, (x, t), directions=d, alphas=alphas)
    H = cv.HessianOperator(model, F.mse_loss, (x, t))
    loss = lambda p: F.mse_loss(dc.func.functional_call(model, p, x), t)
    g = H.space.flatten(dc.grad(loss)(params), "t")
    dv = H.space.flatten(d, "t")
    quad = lambda a: loss(params).item() + a * (g @ dv) + a ** 2 / 2 * (dv @ H.matvec(dv))
    np.testing.assert_allclose(s.losses, quad(alphas), rtol=1e-10)
    s2 = cv.loss_slice(model, F.mse_loss, (x, t), directions=[d, d], alphas=alphas[:3],
                       betas=alphas[:2])
    assert s2.losses.shape == (3, 2)
    np.testing.assert_allclose(s2.losses, quad(alphas[:3, None] + alphas[None, :2]), rtol=1e-10)
    zero_bias = cv.filter_normalized_direction(model, generator=0)
    assert not zero_bias["layer0.bias"].any()


def test_plots_write_pngs(tmp_path, case):
    pytest.importorskip("matplotlib")
    *_, dense = case
    p = cv.density(dense, n_iter=20, generator=0).plot(str(tmp_path / "d.png"))
    model, x, y, *_ = case
    s = cv.loss_slice(model, F.cross_entropy, (x, y), directions=2, alphas=np.linspace(-1, 1, 4),
                      betas=np.linspace(-1, 1, 3), generator=0)
    q = s.plot(str(tmp_path / "s.png"))
    for f in (p, q):
        assert open(f, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_are_named(case):
    model, x, y, H, _ = case
    with pytest.raises(ValueError, match="batch_norm must be"):
        cv.HessianOperator(model, F.cross_entropy, (x, y), batch_norm="both")
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        cv.GGNOperator(model, F.cross_entropy, (x, y), params=["nope"])
    with pytest.raises(ValueError, match=r"vector of shape \(3,\), expected \(43,\)"):
        H.matvec(np.ones(3))
    with pytest.raises(FloatingPointError, match="non-finite"):
        H.matvec(np.full(H.shape[0], np.nan))
    with pytest.raises(ValueError, match="k must be an integer"):
        cv.top_eigenvalues(H, k=0)
    with pytest.raises(ValueError, match="method must be one of"):
        cv.trace(H, method="diagonal")
    with pytest.raises(TypeError, match="reduction='none'"):
        cv.FisherOperator(model, lambda o, t: F.cross_entropy(o, t), (x, y)).matvec(
            np.ones(H.shape[0]))
    with pytest.raises(ValueError, match="one \\(x, y\\) batch"):
        cv.HessianOperator(model, F.cross_entropy, [(x, y), (x, y)], wrt="inputs")


def test_reused_graph_follows_the_model(case):
    model, x, y, H, dense = case
    fresh = cv.HessianOperator(model, F.cross_entropy, (x, y), reuse_graph=False)
    v = np.random.default_rng(4).standard_normal(H.shape[0])
    assert H.reuse_graph and not fresh.reuse_graph
    np.testing.assert_allclose(H.matvec(v), fresh.matvec(v), atol=1e-12)
    w = model.layers[0].weight
    old = w.data.copy()
    try:
        w.data[0, 0] += 0.5                     # an in-place update, as an optimizer step
        np.testing.assert_allclose(H.matvec(v), fresh.matvec(v), atol=1e-12)
        assert np.abs(H.matvec(v) - dense @ v).max() > 1e-6
    finally:
        w.data[:] = old
    np.testing.assert_allclose(H.matvec(v), dense @ v, atol=1e-12)


def test_exact_layerwise_trace():
    model = _net((4, 6, 5, 3))
    x, y = _data()
    H = cv.HessianOperator(model, F.cross_entropy, [(dc.tensor(x.data[:7]), y[:7]),
                                                   (dc.tensor(x.data[7:]), y[7:])])
    dense = H.to_dense()
    est = cv.trace(H, method="exact")
    assert est.value == pytest.approx(np.trace(dense), rel=1e-10)
    assert est.matvecs == 2 * (6 + 5 + 3) and est.ci == (est.value, est.value)
    sub = H.restrict(["layer1.weight"])
    a, b = H.space.offsets[2], H.space.offsets[3]
    assert cv.trace(sub, method="exact").value == pytest.approx(np.trace(dense[a:b, a:b]),
                                                                rel=1e-10)
    # a Sequential with separate activation modules, eval-mode BatchNorm and muP multipliers
    dc.manual_seed(1)
    seq = dc.nn.Sequential(dc.nn.Linear(4, 5, dtype=np.float64, weight_multiplier=0.5,
                                        bias_multiplier=2.0),
                           dc.nn.BatchNorm1d(5, affine=False, dtype=np.float64), dc.nn.ReLU(),
                           dc.nn.Linear(5, 3, dtype=np.float64))
    Hs = cv.HessianOperator(seq, F.cross_entropy, (x, y), batch_norm="eval")
    assert cv.trace(Hs, method="exact").value == pytest.approx(np.trace(Hs.to_dense()),
                                                               rel=1e-10)
    with pytest.raises(ValueError, match="training mode couples"):
        cv.trace(cv.HessianOperator(seq, F.cross_entropy, (x, y), batch_norm="train"),
                 method="exact")
    with pytest.raises(TypeError, match="needs a HessianOperator"):
        cv.trace(cv.GGNOperator(model, F.cross_entropy, (x, y)), method="exact")
