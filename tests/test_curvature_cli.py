"""The curvature experiment's quick-size measures on a tiny configuration, and the
``deepcalc diagnose hessian`` command on a freshly trained checkpoint."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deepcalc import cli
from deepcalc.experiments import curvature as exp


def test_run_one_measures_agree_with_their_definitions():
    r, a = exp.run_one("teacher", 8, 12, 0.0, steps=300, seed=0)
    assert r["params"] == 8 * 8 + 8 + 8 + 1
    # MSE: G = (2 / N) J^T J, so G's and the Gram's counts coincide, both <= N
    assert r["count_G"] == r["count_K"] <= 12
    np.testing.assert_allclose(a["lam_g"][:12], a["lam_k_scaled"][:12], rtol=1e-6, atol=1e-12)
    assert r["lanczos_top5_rel_err"] < 1e-6
    assert r["feature_rank"] <= 8
    assert 0 <= r["effective_dim_H"] <= r["params"]


def test_quick_experiment_writes_results(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(exp, "_configs", lambda quick: (
        [("teacher", 8, 12, 0.0), ("teacher", 8, 12, 1e-3), ("digits", 4, 10, 0.0)], 150))
    args = type("A", (), {"out": str(tmp_path), "quick": True, "seed": 0, "threads": 1,
                          "steps": None})()
    assert exp.main(args) == 0
    res = json.load(open(tmp_path / "results.json"))
    assert len(res["runs"]) == 3 and res["rel_threshold"] == exp.REL
    for r in res["runs"]:
        for k in ("count_H", "count_G", "count_K", "feature_rank", "lambda_max_H",
                  "effective_dim_H", "lanczos_top5_rel_err", "slq_trace_rel_err"):
            assert k in r
        assert r["count_H"] <= r["params"] and r["lanczos_top5_rel_err"] < 1e-5
    assert sorted(res["figures"]) == ["counts.png", "density.png", "slices.png", "spectra.png"]
    assert "| task |" in open(tmp_path / "results.md").read()


def test_diagnose_hessian_on_a_checkpoint(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert cli.main(["train", "mlp", "--dataset", "digits", "--hidden", "8", "--epochs", "1",
                     "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    capsys.readouterr()
    assert cli.main(["diagnose", "hessian", "--checkpoint", str(out / "last.safetensors"),
                     "--dataset", "digits", "--samples", "200", "--k", "3", "--slq-steps",
                     "30", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "top eigenvalues:" in text and "trace:" in text and "effective dimension" in text
    res = json.load(open(out / "hessian.json"))
    assert res["parameters"] == 64 * 8 + 8 + 8 * 10 + 10 and len(res["top_eigenvalues"]) == 3
    assert res["top_eigenvalues"][0] >= res["top_eigenvalues"][2] > 0
    assert res["trace_ci"][0] <= res["trace"] <= res["trace_ci"][1]
    assert open(out / "hessian_density.png", "rb").read(4) == b"\x89PNG"
    with pytest.raises(SystemExit):
        cli.main(["diagnose", "hessian", "--dataset", "digits"])   # --checkpoint is required
