"""dc.regularize: the three estimators of ||J(x)||_F^2 against Jacobians by hand, the
unbiasedness of the random projections (seeded), second-order correctness of the generic
path (gradcheck), JacobianRegularizer on fused and generic models, fit(regularizer=), the CLI
flag, errors, and the quick experiment."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import deepcalc as dc
from deepcalc.nn import functional as F
from deepcalc.ops.jacobian import jacobian_projection
from deepcalc.regularize import JacobianRegularizer, jacobian_norm_sq, mlp_chain
from deepcalc.regularize.jacobian import sphere_projections
from deepcalc.testing import gradcheck

from test_regularize_kernel import _np_jacobians


def _tanh_mlp(sizes=(6, 8, 8, 3), dtype=np.float64, seed=0):
    dc.manual_seed(seed)
    return dc.nn.MLP(list(sizes), activation="tanh", dtype=dtype)


def _exact_np(model, x):
    ws, bs, acts = mlp_chain(model)
    js = _np_jacobians(x, [w.data for w in ws], [b.data for b in bs], acts)
    return np.sum(js ** 2, axis=(1, 2))


def test_exact_mode_is_the_frobenius_norm_of_the_jacobian(rng):
    model = _tanh_mlp()
    x = rng.standard_normal((5, 6))
    np.testing.assert_allclose(jacobian_norm_sq(model, x, mode="exact").data, _exact_np(model, x),
                               rtol=1e-12)


def test_exact_mode_takes_jvps_when_the_input_is_smaller(rng, monkeypatch):
    """3 inputs, 7 outputs: 'exact' sums ||J e_i||^2 over 3 JVPs; value by hand, gradient in
    the weights by finite differences."""
    import deepcalc.regularize.jacobian as jr
    calls = []
    orig = jr._exact_forward
    monkeypatch.setattr(jr, "_exact_forward", lambda *a: calls.append(1) or orig(*a))
    model = _tanh_mlp((3, 8, 7))
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(JacobianRegularizer(2.0, mode="exact")(model, x).item(),
                               _exact_np(model, x).mean(), rtol=1e-12)
    assert calls

    def f(w1, w2):
        return jacobian_norm_sq(lambda z: dc.tanh(z @ w1.T) @ w2.T, dc.tensor(x),
                                mode="exact").sum()
    assert gradcheck(f, [dc.tensor(rng.standard_normal(s), requires_grad=True)
                         for s in ((5, 3), (7, 5))])


def test_reverse_estimate_is_unbiased_10000_single_projections(rng):
    """The mean of 10,000 single-projection estimates C ||v^T J||^2 (v on the sphere) lies
    within 1% of the exact ||J||_F^2 (seeded; every sample of a random tanh MLP)."""
    model = _tanh_mlp((20, 32, 32, 10))
    x = rng.standard_normal((4, 20))
    exact = _exact_np(model, x)
    n = 10_000
    ws, bs, acts = mlp_chain(model)
    v = sphere_projections(np.random.default_rng(3), n, 4, 10, np.float64).reshape(-1, 10)
    _, sq = jacobian_projection(x, v, ws, bs, acts, n)
    ratio = sq * 10 / n / exact
    assert np.all(np.abs(ratio - 1) < 0.01), ratio


@pytest.mark.parametrize("mode, n, tol", [("reverse", 1000, 0.04), ("forward", 1000, 0.08)])
def test_generic_estimators_converge_to_exact(mode, n, tol, rng):
    """Generic reverse (VJPs) and forward (JVPs) estimates with n projections, seeded: within
    a few standard deviations of the exact value (rel. sd <= sqrt(2 / n) = 4.5% for forward)."""
    model = _tanh_mlp((6, 8, 8, 3))
    x = dc.tensor(rng.standard_normal((3, 6)))
    est = jacobian_norm_sq(model, x, n_proj=n, mode=mode, generator=np.random.default_rng(4))
    np.testing.assert_allclose(est.data, _exact_np(model, x.data), rtol=tol)


def test_one_projection_reverse_is_c_times_a_squared_vjp(rng):
    model = _tanh_mlp()
    x = rng.standard_normal((4, 6))
    est = jacobian_norm_sq(model, x, generator=np.random.default_rng(9)).data
    v = sphere_projections(np.random.default_rng(9), 1, 4, 3, np.float64)[0]
    js = _np_jacobians(x, *[[t.data for t in col] for col in mlp_chain(model)[:2]],
                       mlp_chain(model)[2])
    np.testing.assert_allclose(est, 3 * np.sum(np.einsum("bc,bci->bi", v, js) ** 2, 1),
                               rtol=1e-12)


@pytest.mark.parametrize("mode", ["exact", "reverse", "forward"])
def test_generic_path_gradients_pass_gradcheck(mode, rng):
    """The penalty's gradient in the weights (a second-order quantity) by finite differences,
    through a model the kernel does not cover (LayerNorm between the layers)."""
    x = dc.tensor(rng.standard_normal((3, 4)))

    def f(w1, w2, g, b):
        def net(z):
            h = F.layer_norm(dc.tanh(z @ w1.T), weight=g, bias=b)
            return F.linear(h, w2, activation="sigmoid")
        return jacobian_norm_sq(net, x, n_proj=2, mode=mode,
                                generator=np.random.default_rng(1)).sum()
    params = [dc.tensor(rng.standard_normal(s), requires_grad=True)
              for s in ((5, 4), (2, 5), (5,), (5,))]
    assert gradcheck(f, params)


def test_regularizer_value_and_paths(rng):
    fused_model = dc.nn.Sequential(dc.nn.Linear(6, 5, dtype=np.float64), dc.nn.ReLU(),
                                   dc.nn.Linear(5, 3, dtype=np.float64))
    generic_model = dc.nn.Sequential(dc.nn.Linear(6, 5, dtype=np.float64),
                                     dc.nn.LayerNorm(5, dtype=np.float64),
                                     dc.nn.Linear(5, 3, dtype=np.float64))
    x = rng.standard_normal((4, 6))
    for model, path in ((fused_model, "fused"), (generic_model, "generic")):
        reg = JacobianRegularizer(0.2, n_proj=3, generator=np.random.default_rng(2))
        pen = reg(model, x)
        assert reg.last_path == path and pen.shape == ()
        est = jacobian_norm_sq(model, x, n_proj=3, generator=np.random.default_rng(2))
        np.testing.assert_allclose(pen.item(), 0.1 * est.data.mean(), rtol=1e-12)
    assert JacobianRegularizer(0.2, mode="exact")(fused_model, x).item() == pytest.approx(
        0.1 * _exact_np(fused_model, x).mean(), rel=1e-12)
    # x that requires grad, dropout in training mode: the generic path
    reg = JacobianRegularizer(0.2)
    reg(fused_model, dc.tensor(x, requires_grad=True))
    assert reg.last_path == "generic"
    drop = dc.nn.Sequential(dc.nn.Linear(6, 3, dtype=np.float64), dc.nn.Dropout(0.5))
    assert mlp_chain(drop) is None and mlp_chain(drop.eval()) is not None


def test_batchnorm_in_training_mode_couples_samples(rng):
    """In training mode BatchNorm's statistics make each output depend on every input: the
    estimate includes those cross-sample terms and is still differentiable; in eval mode it is
    the per-sample norm."""
    dc.manual_seed(0)
    model = dc.nn.Sequential(dc.nn.Linear(4, 6, dtype=np.float64),
                             dc.nn.BatchNorm1d(6, dtype=np.float64), dc.nn.Tanh(),
                             dc.nn.Linear(6, 2, dtype=np.float64))
    x = rng.standard_normal((8, 4))
    pen = JacobianRegularizer(1.0, mode="exact")(model, x)
    pen.backward()
    assert all(p.grad is not None and np.isfinite(p.grad.data).all()
               for p in model.parameters() if p.grad is not None)
    train_val = jacobian_norm_sq(model, x, mode="exact").data
    model.eval()
    eval_val = jacobian_norm_sq(model, x, mode="exact").data
    assert not np.allclose(train_val, eval_val)
    for i in range(2):  # eval mode: sample i alone gives the same value
        np.testing.assert_allclose(jacobian_norm_sq(model, x[i:i + 1], mode="exact").data,
                                   eval_val[i:i + 1], rtol=1e-12)


def test_fit_with_regularizer_shrinks_the_jacobian():
    from deepcalc.data import DataLoader, TensorDataset
    from deepcalc.train import fit
    r = np.random.default_rng(0)
    x = r.standard_normal((256, 8)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    norms = {}
    for lam in (0.0, 1.0):
        model = _tanh_mlp((8, 32, 2), np.float32, seed=1)
        opt = dc.optim.Adam(model.parameters(), lr=1e-2)
        reg = JacobianRegularizer(lam) if lam else None
        hist = fit(model, F.cross_entropy, opt, DataLoader(TensorDataset(x, y), batch_size=64,
                                                           shuffle=True, seed=0),
                   epochs=8, progress=False, regularizer=reg)
        assert ("penalty" in hist.keys()) == bool(lam)
        norms[lam] = float(np.sqrt(jacobian_norm_sq(model, x, mode="exact").data).mean())
    assert norms[1.0] < 0.5 * norms[0.0], norms
    with pytest.raises(TypeError, match="fit: regularizer must be callable"):
        fit(model, F.cross_entropy, opt, DataLoader(TensorDataset(x, y), batch_size=64),
            progress=False, regularizer=0.1)


def test_cli_jacobian_reg(tmp_path):
    from deepcalc.cli import main
    out = tmp_path / "run"
    assert main(["train", "mlp", "--epochs", "1", "--hidden", "16", "--jacobian-reg", "0.01",
                 "--out", str(out), "--no-progress", "--distributed", "off"]) == 0
    metrics = json.load(open(out / "metrics.json"))
    assert metrics["config"]["jacobian_reg"] == 0.01 and 0 <= metrics["final_test"]["accuracy"] <= 1


@pytest.mark.parametrize("call, match", [
    (lambda m, x: jacobian_norm_sq(m, x, mode="sideways"), r"jacobian_norm_sq: unknown mode"),
    (lambda m, x: jacobian_norm_sq(m, x, n_proj=0), r"jacobian_norm_sq: n_proj must be"),
    (lambda m, x: jacobian_norm_sq(lambda z: z.sum(), x),
     r"jacobian_norm_sq: the model must map x \(2, 6\) to a \(B, C\) output"),
    (lambda m, x: jacobian_norm_sq(m, x, generator=1), r"generator must be a numpy"),
    (lambda m, x: JacobianRegularizer(-1.0), r"JacobianRegularizer: lam must be a finite"),
    (lambda m, x: JacobianRegularizer(float("nan")), r"lam must be a finite number >= 0"),
])
def test_errors(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(_tanh_mlp(), np.zeros((2, 6)))


def test_quick_experiment_writes_its_measures(tmp_path):
    from deepcalc.experiments import jacobian
    res = jacobian.run(str(tmp_path), quick=True, epochs=2, sizes=[64, 16, 10], n_test=60)
    saved = json.load(open(tmp_path / "results.json"))
    assert set(saved["models"]) == set(jacobian.VARIANTS)
    for name, r in saved["models"].items():
        assert 0 <= r["clean_accuracy"] <= 1 and r["jacobian_norm"] > 0
        assert set(r["pgd_accuracy"]) == set(r["fgsm_accuracy"]) == {"0.02", "0.05", "0.1", "0.2"}
        # the attacks only hurt: every attacked accuracy at most the clean one (+1 sample)
        assert max(r["pgd_accuracy"].values()) <= r["clean_accuracy"] + 1 / 60
    assert saved["checks"]["norm_ratio_none_over_jacobian"] == pytest.approx(
        saved["models"]["none"]["jacobian_norm"] / saved["models"]["jacobian"]["jacobian_norm"])
    assert os.path.exists(tmp_path / "results.md")
    assert res["figure"] is None or os.path.exists(res["figure"])


@pytest.mark.parametrize("kind", ["mlp_relu", "standardize_gelu", "sequential_tanh"])
def test_regularizer_reuses_the_forward_of_out(kind, rng):
    """Given the step's output, the kernel reads the forward's activations from its graph (and
    gives what its own forward gives); an output of another model is not reused."""
    from deepcalc.nn import MLP, Sequential, Standardize
    dc.manual_seed(2)
    xs = rng.random((10, 6))
    if kind == "mlp_relu":
        model = MLP([6, 7, 3], activation="relu", dtype=np.float64)
    elif kind == "standardize_gelu":
        model = Sequential(Standardize.fit(xs, dtype=np.float64),
                           MLP([6, 7, 5, 3], activation="gelu", dtype=np.float64))
    else:
        model = Sequential(dc.nn.Linear(6, 7, dtype=np.float64), dc.nn.Tanh(),
                           dc.nn.Linear(7, 3, dtype=np.float64))
    x = dc.tensor(xs)
    results = []
    for give_out in (True, False):
        for p in model.parameters():
            p.grad = None
        reg = JacobianRegularizer(0.5, n_proj=2, generator=np.random.default_rng(1))
        pen = reg(model, x, out=model(x) if give_out else None)
        assert reg.last_path == "fused" and reg.reused_forward == give_out
        pen.backward()
        results.append((pen.item(), [p.grad.data.copy() for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    other = MLP([6, 7, 3], activation="relu", dtype=np.float64)
    reg = JacobianRegularizer(0.5)
    reg(model, x, out=other(x))
    assert not reg.reused_forward


def test_fused_penalty_under_distributed_data_parallel_of_one():
    """DistributedDataParallel (a world of one, in process) around an MLP: the fused path
    applies to the wrapped chain, reuses the wrapper's forward, and trains exactly as the
    plain model does."""
    from deepcalc import distributed as D
    r = np.random.default_rng(0)
    x, y = r.standard_normal((32, 6)), r.integers(0, 3, 32)

    def train(wrap):
        model = _tanh_mlp((6, 12, 3), seed=4)
        net = D.DistributedDataParallel(model, bucket_mb=1e-4) if wrap else model
        opt = dc.optim.SGD(model.parameters(), lr=0.1)
        reg = JacobianRegularizer(0.5, generator=np.random.default_rng(1))
        for _ in range(3):
            out = net(dc.tensor(x))
            loss = F.cross_entropy(out, y) + reg(net, dc.tensor(x), out=out)
            opt.zero_grad()
            loss.backward()
            if wrap:
                net.synchronize()
            opt.step()
            assert reg.last_path == "fused" and reg.reused_forward
        return np.concatenate([p.data.ravel() for p in model.parameters()])
    np.testing.assert_allclose(train(True), train(False), rtol=0, atol=1e-12)
