"""The three experiments of dc.experiments (gradients, rnn, batchnorm) run end to end at a tiny
size through their ``run`` functions; their results.json fields, figures and findings are
checked, and the CLI finds them.  Their measures are tested on known answers in
tests/test_diagnose.py; here a few known answers of the experiments' own code."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import deepcalc as dc

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")


def _read(out):
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    for name in res["figures"]:
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert os.path.getsize(os.path.join(out, "results.md")) > 200
    return res


def test_gradients_experiment_tiny(tmp_path):
    from deepcalc.experiments import gradients
    gradients.run(str(tmp_path), quick=True, depths=(2, 4), widths=(8,), steps=5,
                  activations=("tanh", "relu"), inits=("xavier", "standard_normal"),
                  linear_depths=(1, 3), linear_width=8, linear_draws=3)
    res = _read(tmp_path)
    assert len(res["configs"]) == 2 * 2 * 2 * 2
    row = res["configs"][0]
    for key in ("grad_norms_init", "jacobian_singular_values", "train_accuracy", "trains",
                "grad_norms_training", "isometry_gap"):
        assert key in row
    assert len(row["grad_norms_init"]) == row["depth"]
    lin = res["deep_linear"]["1"]
    assert lin["theory"] == [1.0, 1.0]          # sigma = 1: sigma^(L-1) = 1
    assert res["deep_linear"]["1.2"]["theory"][1] == pytest.approx(1.2 ** 2)
    assert any("deep linear" in f for f in res["findings"])


def test_deep_linear_theory_at_depth_one_is_exact():
    """One layer: dL/dW = c x^T, ||.|| = ||c|| ||x|| = 1 for unit c and x, on every draw."""
    from deepcalc.experiments.gradients import deep_linear_theory
    r = deep_linear_theory([1], 6, [0.7], draws=2, seed=0)
    assert r["0.7"]["measured_rms"][0] == pytest.approx(1.0, rel=1e-12)


def test_make_mlp_with_batchnorm_orders_linear_bn_activation():
    from deepcalc.experiments.gradients import make_mlp
    m = make_mlp(3, 5, "tanh", "he", True, 4, 2)
    kinds = [type(c).__name__ for c in m.children()]
    assert kinds == ["Linear", "BatchNorm1d", "Tanh", "Linear", "BatchNorm1d", "Tanh", "Linear"]
    assert m(dc.tensor(np.zeros((3, 4), np.float32))).shape == (3, 2)


def test_rnn_experiment_tiny(tmp_path):
    from deepcalc.experiments import rnn
    rnn.run(str(tmp_path), quick=True, hidden=6, seeds=2, steps=6, Ts_adding=(8,),
            part1_Ts=(1, 5, 30), part1_hidden=5)
    res = _read(tmp_path)
    e = res["eigenvalue_prediction"]["0.9"]
    # the linear RNN's measured norms are V diag(lam^T) V^-1's (float64)
    assert e["max_rel_error_vs_exact"] < 1e-8
    assert e["identity"]["spectral"][0] == pytest.approx(e["exact_spectral"][0], rel=1e-8)
    # rho^T x alignment predicts the long-T norms within 10%
    assert e["rel_error_vs_prediction_along_u"][-1] < 0.10
    s = res["adding_summary"]["T8_norm"]
    assert s["runs"] == 2 and 0 <= s["diverged"] <= 2
    assert set(res["adding"]["T8"]) == {"none", "norm", "value"}


def test_adding_batch_targets_are_the_marked_sums():
    from deepcalc.experiments.rnn import adding_batch
    x, y = adding_batch(np.random.default_rng(0), 10, 4)
    assert x.shape == (10, 4, 2) and y.shape == (4, 1)
    np.testing.assert_array_equal(x[:, :, 1].sum(0), 2)
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(0), rtol=1e-6)


def test_batchnorm_experiment_tiny(tmp_path):
    from deepcalc.experiments import batchnorm
    batchnorm.run(str(tmp_path), quick=True, depth=3, width=8, steps=6, measure_every=3,
                  lrs=(0.01, 0.1), datasets=("checkerboard",))
    res = _read(tmp_path)
    runs = res["runs"]["checkerboard"]
    assert set(runs) == {"0.01", "0.1"}
    assert set(runs["0.1"]) == set(batchnorm.VARIANTS)
    pt = runs["0.01"]["batchnorm"]["points"][0]
    assert len(pt["ics_l2"]) == 3 and len(pt["ics_cosine"]) == 3
    assert pt["ics_l2"][0] == 0.0                 # the first layer has nothing below it
    for key in ("loss_range", "gradient_change", "beta_smoothness"):
        assert key in pt
    verdicts = {c["verdict"] for c in res["claims"]}
    assert verdicts <= {"reproduced", "partly reproduced", "not reproduced"}
    assert len(res["claims"]) == 8
    # ICS: G, then G' for the 2 layers with something below; along: g, then one per eta
    assert res["cost"]["gradient_evaluations_per_measurement"] == 1 + 2 + 1 + 5


def test_tent_checkerboard_is_balanced_and_flips_2_to_the_k_times():
    """g^k(t) > 1/2 holds on 2^k intervals separated at t = (2j + 1) / 2^(k+1): along x_1, with
    x_2 where its own bit is 0, the label changes 2^k times."""
    from deepcalc.experiments.batchnorm import tent_checkerboard
    x, y = tent_checkerboard(8000, k=2, seed=0)
    assert abs(y.mean() - 0.5) < 0.05
    u, v = x[:, 0] / np.sqrt(12) + 0.5, x[:, 1] / np.sqrt(12) + 0.5
    line = v < 1 / 16                               # g^2(v) < 1/2 there
    labels = y[line][np.argsort(u[line])]
    assert int(np.abs(np.diff(labels)).sum()) == 4


def test_the_cli_lists_the_experiments():
    from deepcalc import experiments
    assert {"gradients", "rnn", "batchnorm"} <= set(experiments.names())
    for name in ("gradients", "rnn", "batchnorm"):
        mod = experiments.load(name)
        assert mod.DESCRIPTION and callable(mod.main) and callable(mod.add_arguments)
