"""deepcalc._core fused optimizer steps against torch.optim (Adam, AdamW, amsgrad, SGD variants)
over several steps, against a float64 NumPy transcription, on every CPU path, and their errors."""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import cpu_path_env

from deepcalc import _core

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch not installed")
SIZES = [1, 15, 17, 1023, 70000]  # tails of both vector widths; 70000 takes the threaded path


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


@needs_torch
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("variant", ["adam", "adam_wd", "adamw", "amsgrad", "adamw_amsgrad"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_matches_torch(n, variant, dtype):
    rng = np.random.default_rng(n)
    decoupled = variant.startswith("adamw")
    amsgrad = "amsgrad" in variant
    wd = 0.0 if variant == "adam" else 0.1
    hp = dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd, amsgrad=amsgrad)
    p = rng.standard_normal(n).astype(dtype)
    tp = torch.tensor(p.copy(), requires_grad=True)
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)([tp], **hp)
    m, v = np.zeros_like(p), np.zeros_like(p)
    vmax = np.zeros_like(p) if amsgrad else None
    for step in range(1, 11):
        g = rng.standard_normal(n).astype(dtype)
        tp.grad = torch.tensor(g)
        opt.step()
        _core.adam_step(p, g, m, v, hp["lr"], 0.9, 0.99, 1e-8, wd, step, decoupled, vmax)
    st = opt.state[tp]
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert rel_err(p, tp.detach().numpy()) <= rtol
    assert rel_err(m, st["exp_avg"].numpy()) <= rtol
    assert rel_err(v, st["exp_avg_sq"].numpy()) <= rtol
    if amsgrad:
        assert rel_err(vmax, st["max_exp_avg_sq"].numpy()) <= rtol


@needs_torch
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("cfg", [dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
                                 dict(momentum=0.9, dampening=0.0, weight_decay=1e-2, nesterov=False),
                                 dict(momentum=0.9, dampening=0.1, weight_decay=0.0, nesterov=False),
                                 dict(momentum=0.8, dampening=0.0, weight_decay=1e-2, nesterov=True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_matches_torch(n, cfg, dtype):
    rng = np.random.default_rng(n + 1)
    p = rng.standard_normal(n).astype(dtype)
    tp = torch.tensor(p.copy(), requires_grad=True)
    opt = torch.optim.SGD([tp], lr=0.05, **cfg)
    buf = np.zeros_like(p) if cfg["momentum"] else None
    for step in range(10):
        g = rng.standard_normal(n).astype(dtype)
        g_before = g.copy()
        tp.grad = torch.tensor(g)
        opt.step()
        _core.sgd_step(p, g, buf, 0.05, cfg["momentum"], cfg["dampening"], cfg["weight_decay"],
                       cfg["nesterov"], step == 0)
        np.testing.assert_array_equal(g, g_before)  # grad is read-only
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert rel_err(p, tp.detach().numpy()) <= rtol
    if buf is not None:
        assert rel_err(buf, opt.state[tp]["momentum_buffer"].numpy()) <= rtol


def test_adam_against_numpy_formula():
    # float64 transcription of the Adam update (bias-corrected moments), independent of torch
    rng = np.random.default_rng(7)
    p = rng.standard_normal(33)
    m, v = np.zeros(33), np.zeros(33)
    pr, mr, vr = p.copy(), m.copy(), v.copy()
    lr, b1, b2, eps, wd = 1e-3, 0.8, 0.95, 1e-6, 0.05
    for t in range(1, 6):
        g = rng.standard_normal(33)
        _core.adam_step(p, g, m, v, lr, b1, b2, eps, wd, t, False)
        gr = g + wd * pr
        mr = b1 * mr + (1 - b1) * gr
        vr = b2 * vr + (1 - b2) * gr * gr
        pr = pr - lr * (mr / (1 - b1**t)) / (np.sqrt(vr / (1 - b2**t)) + eps)
    assert rel_err(p, pr) <= 1e-12 and rel_err(m, mr) <= 1e-12 and rel_err(v, vr) <= 1e-12


ORDER = ["scalar", "avx2", "avx512"]


@pytest.mark.parametrize("path", ORDER)
def test_every_cpu_path(path):
    if path not in ORDER[: ORDER.index(_core.cpu_detected_capability()) + 1]:
        pytest.skip(f"{path} not supported on this CPU")
    env = cpu_path_env(path)
    code = (
        "from deepcalc import _core; import sys, pytest; "
        f"assert _core.cpu_capability() == {path!r}; "
        f"sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', {__file__!r}, '-k', 'float32 and not 70000']))"
    )
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_optim_errors():
    p = np.zeros(10, np.float32)
    z = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match=r"adam_step: exp_avg_sq has shape \(9,\), expected the shape of param \(10,\)"):
        _core.adam_step(p, z, z.copy(), np.zeros(9, np.float32), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
    with pytest.raises(TypeError, match=r"adamw_step: grad is float64 but param is float32"):
        _core.adam_step(p, np.zeros(10), z.copy(), z.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, True)
    ro = z.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"adam_step: exp_avg with shape \(10,\) must be writeable"):
        _core.adam_step(p, z, ro, z.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
    with pytest.raises(ValueError, match=r"adam_step: step is the 1-based count after increment, got 0"):
        _core.adam_step(p, z, z.copy(), z.copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 0, False)
    with pytest.raises(ValueError, match=r"adam_step: beta2 must be in \[0.000000, 1.000000\), got 1.000000"):
        _core.adam_step(p, z, z.copy(), z.copy(), 1e-3, 0.9, 1.0, 1e-8, 0.0, 1, False)
    with pytest.raises(ValueError, match=r"adam_step: param with shape \(5,\) must be C-contiguous"):
        _core.adam_step(np.zeros(10, np.float32)[::2], z[:5], z[:5].copy(), z[:5].copy(), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False)
    with pytest.raises(ValueError, match=r"sgd_step: momentum 0.900000 needs a momentum_buffer shaped like param \(10,\), got None"):
        _core.sgd_step(p, z, None, 0.1, 0.9, 0.0, 0.0, False, True)
    with pytest.raises(ValueError, match=r"sgd_step: Nesterov momentum requires a momentum and zero dampening"):
        _core.sgd_step(p, z, z.copy(), 0.1, 0.9, 0.5, 0.0, True, True)
