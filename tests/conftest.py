"""Shared fixtures and helpers for the autodiff foundation tests: a seeded generator, input
makers for the domains ops need (positive, away from kinks, well-conditioned matrices), and the
JVP/VJP consistency check <J t, u> == <t, J^T u>."""
from __future__ import annotations

import math

import numpy as np
import pytest

import deepcalc as dc


CPU_PATHS = ("scalar", "avx2", "avx512")


def supported_cpu_paths():
    """The kernel paths this CPU can run, weakest first."""
    detected = dc._core.cpu_detected_capability()
    return CPU_PATHS[:CPU_PATHS.index(detected) + 1]


def cpu_path_env(path: str) -> dict:
    """Environment for a subprocess that runs deepcalc's kernels on ``path`` and imports the
    same deepcalc this process imported (installed package or development tree)."""
    import os
    env = dict(os.environ, DEEPCALC_CPU_CAPABILITY=path)
    here = os.path.dirname(os.path.dirname(dc.__file__))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    return env


def rerun_file_on_cpu_path(path: str, test_file: str, timeout: int = 300):
    """Run the pytest file ``test_file`` in a subprocess whose kernels take ``path`` (dispatch is
    fixed per process); skips when the CPU lacks the path or this process already runs it, or
    when this process is itself such a rerun. Returns the finished process."""
    import os
    import subprocess
    import sys
    if "DEEPCALC_CPU_CAPABILITY" in os.environ:
        pytest.skip("already a forced-path run")
    if path not in supported_cpu_paths():
        pytest.skip(f"CPU does not support {path}")
    if path == dc._core.cpu_capability():
        pytest.skip("this process already runs that path")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           test_file], env=cpu_path_env(path), capture_output=True, text=True,
                          timeout=timeout)


def assert_file_passes_on_cpu_path(path: str, test_file: str):
    """``test_file`` passes when rerun with kernels forced to ``path``, and that process really
    runs ``path`` (skips as ``rerun_file_on_cpu_path`` does)."""
    import subprocess
    import sys
    proc = rerun_file_on_cpu_path(path, test_file)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    check = subprocess.run([sys.executable, "-c",
                            "from deepcalc import _core; print(_core.cpu_capability())"],
                           env=cpu_path_env(path), capture_output=True, text=True)
    assert check.stdout.strip() == path


@pytest.fixture
def one_thread_seeded():
    """One kernel thread and deepcalc's generator seeded with 0, restored afterwards."""
    n = dc.get_num_threads()
    dc.set_num_threads(1)
    dc.manual_seed(0)
    yield
    dc.set_num_threads(n)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def make_array(rng, shape, kind="n", dtype=np.float64):
    """A random array of ``shape`` in the domain ``kind``:
    n: standard normal; p: positive in [0.5, 2]; s: |x| in [0.5, 1.5] (away from 0, for kinks);
    spd: square matrices 3 I + 0.3 N (well conditioned, positive determinant)."""
    if kind == "n":
        a = rng.standard_normal(shape)
    elif kind == "p":
        a = rng.uniform(0.5, 2.0, shape)
    elif kind == "s":
        a = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    elif kind == "spd":
        a = 3 * np.eye(shape[-1]) + 0.3 * rng.standard_normal(shape)
    else:
        raise ValueError(kind)
    return np.asarray(a, dtype=dtype)


def noncontiguous(a: np.ndarray) -> np.ndarray:
    """The same values as ``a`` in a non-contiguous view (transposed or strided)."""
    if a.ndim == 0:
        return a.copy()
    if a.ndim >= 2 and a.shape[-1] > 1 and a.shape[-2] > 1:
        v = np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)  # transposed
    else:
        v = np.zeros(a.shape + (2,), a.dtype)[..., 0]                       # every other element
        v[...] = a
    assert not v.flags.c_contiguous or a.size <= 1
    np.testing.assert_array_equal(v, a)
    return v


def assert_jvp_vjp_consistent(f, xs, rng, rtol=1e-10):
    """<J t, u> == <t, J^T u> for random tangents t and cotangent u (float64 inputs)."""
    ts = [dc.tensor(rng.standard_normal(x.shape)) for x in xs]
    out, t_out = dc.jvp(f, tuple(xs), tuple(ts))
    out2, vjp_fn = dc.vjp(f, *xs)
    np.testing.assert_allclose(out.data, out2.data, rtol=1e-14)
    u = dc.tensor(rng.standard_normal(out.shape))
    gs = vjp_fn(u)
    lhs = float(np.sum(t_out.data * u.data))
    rhs = float(sum(np.sum(t.data * g.data) for t, g in zip(ts, gs)))
    assert np.isfinite(lhs)
    np.testing.assert_allclose(lhs, rhs, rtol=rtol, atol=1e-12)


# float64 references of the fused activations and their derivatives (NaN propagated), shared by
# the kernel edge-case and fuzz tests
_erf = np.vectorize(math.erf, otypes=[np.float64])


def act_ref(z, act):
    """act(z) in float64 with NaN propagated (relu(NaN) = NaN as torch; gelu(-inf) = -inf * 0)."""
    z = np.asarray(z, np.float64)
    with np.errstate(all="ignore"):
        if act == "relu":
            return np.where(z < 0, 0.0, z)
        if act == "gelu":
            return 0.5 * z * (1 + _erf(z / math.sqrt(2)))
        if act == "tanh":
            return np.tanh(z)
        if act == "sigmoid":
            return 1 / (1 + np.exp(-z))
        return z


def act_deriv_ref(s, act):
    """act'(.) from what the forward saves (y, or z for gelu); NaN in gives NaN out."""
    s = np.asarray(s, np.float64)
    with np.errstate(all="ignore"):
        if act == "relu":
            return np.where(np.isnan(s), np.nan, (s > 0).astype(np.float64))
        if act == "gelu":
            return 0.5 * (1 + _erf(s / math.sqrt(2))) + s * np.exp(-0.5 * s * s) / math.sqrt(2 * math.pi)
        if act == "tanh":
            return 1 - s * s
        if act == "sigmoid":
            return s * (1 - s)
        return np.ones_like(s)
