"""How broad a basin is, from the Hessian at the optimum: sharpness (the top eigenvalue),
the trace, the effective dimension sum_i lambda_i / (lambda_i + z) (MacKay 1992; Maddox,
Benton & Wilson 2020) and the log-volume of the quadratic basin relative to a flat one.

Each measure takes either eigenvalues (an array: the exact spectrum, or a top part of it,
then the sum runs over those only) or an operator (then estimated by stochastic Lanczos
quadrature over the whole spectrum)."""
from __future__ import annotations

import numpy as np

from .density import SpectralDensity, density
from .lanczos import top_eigenvalues
from .trace import trace


def _check_z(name, z):
    if not z > 0:
        raise ValueError(f"{name}: z must be > 0, got {z}")


def _spectral_sum(name, source, f, n_iter, n_vec, generator):
    """sum_i f(lambda_i) over eigenvalues, a SpectralDensity, or an operator (by SLQ)."""
    if isinstance(source, SpectralDensity):
        return source.spectral_sum(f)
    if isinstance(source, (list, tuple)) or (isinstance(source, np.ndarray) and source.ndim == 1):
        lam = np.asarray(source, np.float64)
        if not np.all(np.isfinite(lam)):
            raise ValueError(f"{name}: the eigenvalues contain NaN or Inf")
        return float(np.sum(f(lam)))
    return density(source, n_iter=n_iter, n_vec=n_vec, generator=generator).spectral_sum(f)


def effective_dimension(source, z, n_iter=100, n_vec=1, generator=None) -> float:
    """N_eff(z) = sum_i max(lambda_i, 0) / (max(lambda_i, 0) + z): the number of directions
    whose curvature exceeds the scale z (negative curvature counts as flat)."""
    _check_z("effective_dimension", z)

    def f(lam):
        lam = np.maximum(lam, 0.0)
        return lam / (lam + z)
    return _spectral_sum("effective_dimension", source, f, n_iter, n_vec, generator)


def log_volume(source, z, n_iter=100, n_vec=1, generator=None) -> float:
    """log( vol{d : d^T (H + zI) d <= c} / vol{d : d^T (zI) d <= c} )
    = -1/2 sum_i log(1 + max(lambda_i, 0) / z): the log-volume of the quadratic basin at
    level c relative to a ball of curvature z (0 for a flat basin, more negative for a
    sharper one; negative curvature counts as flat)."""
    _check_z("log_volume", z)

    def f(lam):
        return -0.5 * np.log1p(np.maximum(lam, 0.0) / z)
    return _spectral_sum("log_volume", source, f, n_iter, n_vec, generator)


def sharpness(op, tol=1e-3, generator=None) -> float:
    """The top eigenvalue of the Hessian (Keskar et al. 2017's sharpness, in its eigenvalue
    form)."""
    return float(top_eigenvalues(op, k=1, tol=tol, generator=generator)[0][0])


def basin_measures(op, z, k=5, n_iter=100, n_vec=1, trace_tol=1e-2, generator=None) -> dict:
    """Every measure at once: top-k eigenvalues (sharpness first), trace (Hutch++, with its
    interval), effective dimension and log-volume (both by SLQ over the whole spectrum, from
    one density)."""
    vals, _ = top_eigenvalues(op, k=k, generator=generator)
    tr = trace(op, tol=trace_tol, generator=generator)
    dens = density(op, n_iter=n_iter, n_vec=n_vec, generator=generator)
    return {"top_eigenvalues": [float(v) for v in vals], "sharpness": float(vals[0]),
            "trace": tr.value, "trace_ci": list(tr.ci),
            "effective_dimension": effective_dimension(dens, z),
            "log_volume": log_volume(dens, z), "z": float(z), "density": dens}
