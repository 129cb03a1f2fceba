"""Trace of a symmetric operator from matvecs: Hutchinson's estimator (Rademacher probes,
E[z^T A z] = tr A) and Hutch++ (Meyer, Musco, Musco & Woodruff 2021: the trace of a
sketched top subspace exactly, Hutchinson on the rest), each with a confidence interval and
probing until the interval is narrow enough; and, for chains of Linear layers, the exact trace
layer by layer (curvature/exact.py)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .lanczos import _combine, _dot, _project, _rng, as_operator

METHODS = ("hutch++", "hutchinson", "exact")


@dataclass
class TraceEstimate:
    """A trace estimate: ``value``, a ``confidence``-level interval ``ci`` (normal
    approximation over the probes), the matvecs spent and the per-probe samples."""
    value: float
    ci: tuple
    confidence: float
    matvecs: int
    method: str
    exact_part: float = 0.0
    samples: np.ndarray = field(default=None, repr=False)

    @property
    def half_width(self) -> float:
        return (self.ci[1] - self.ci[0]) / 2

    def __float__(self):
        return float(self.value)


def _rademacher(rng, n):
    return rng.integers(0, 2, n).astype(np.float64) * 2.0 - 1.0


def _z(confidence):
    """The two-sided normal quantile (0.95 -> 1.96) by bisection on erf."""
    if not 0 < confidence < 1:
        raise ValueError(f"trace: confidence must be in (0, 1), got {confidence}")
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _probe_until(sample, exact, tol, min_probes, max_probes, z):
    """Draw samples until z * stderr <= tol * |exact + mean| (and at least min_probes), or
    max_probes; returns the samples."""
    xs = []
    while len(xs) < max_probes:
        xs.append(sample())
        m = len(xs)
        if m >= min_probes:
            mean, sd = float(np.mean(xs)), float(np.std(xs, ddof=1))
            if z * sd / math.sqrt(m) <= tol * abs(exact + mean):
                break
    return np.asarray(xs)


def trace(op, tol=1e-2, method="hutch++", max_probes=1000, min_probes=10, sketch=None,
          confidence=0.95, generator=None):
    """Estimate tr(op) to relative precision ``tol`` (half-width of the ``confidence``
    interval over |estimate|), spending at most ``max_probes`` matvecs in total.

    * 'hutchinson': mean of z^T A z over Rademacher z;
    * 'hutch++': Q = orth(A S) for ``sketch`` Rademacher columns S (default
      min(n, max_probes // 10 clipped to [10, 40])), tr(Q^T A Q) exactly, plus Hutchinson on
      (I - QQ^T) A (I - QQ^T); the interval covers the random part only.  It gains over
      Hutchinson when a few eigenvalues dominate ||A||_F (the variance of Hutchinson is
      2 ||A||_F^2 minus the diagonal's share; Hutch++'s is that of the deflated residual).
    * 'exact': for a ``HessianOperator`` of a chain of Linear layers (MLP / Sequential) whose
      samples do not interact, the trace layer by layer (``exact.layerwise_trace``), one HVP
      per output unit of each Linear (``matvecs`` counts them; each runs only the layers
      above it).
    Returns a ``TraceEstimate``."""
    matvec, n = as_operator(op, "trace")
    if method not in METHODS:
        raise ValueError(f"trace: method must be one of {METHODS}, got {method!r}")
    if not tol > 0:
        raise ValueError(f"trace: tol must be > 0, got {tol}")
    if not isinstance(max_probes, (int, np.integer)) or max_probes < 2:
        raise ValueError(f"trace: max_probes must be an integer >= 2, got {max_probes!r}")
    if method == "exact":
        from .exact import layerwise_trace
        before = getattr(op, "n_matvecs", 0)
        value = layerwise_trace(op)
        return TraceEstimate(value, (value, value), confidence, op.n_matvecs - before, method,
                             value, np.zeros(0))
    z = _z(confidence)
    rng = _rng(generator)
    min_probes = max(2, min(min_probes, max_probes))
    if method == "hutchinson":
        def sample():
            g = _rademacher(rng, n)
            return _dot(g, matvec(g))
        xs = _probe_until(sample, 0.0, tol, min_probes, max_probes, z)
        mean, half = float(xs.mean()), z * float(xs.std(ddof=1)) / math.sqrt(len(xs))
        return TraceEstimate(mean, (mean - half, mean + half), confidence, len(xs), method,
                             0.0, xs)
    k = sketch if sketch is not None else min(n, max(10, min(40, max_probes // 10)))
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"trace: sketch must be an integer in [1, {n}], got {k!r}")
    if 2 * k + min_probes > max_probes and k < n:
        raise ValueError(f"trace: hutch++ with sketch {k} needs 2 * {k} + {min_probes} "
                         f"matvecs, more than max_probes {max_probes}")
    S = np.stack([_rademacher(rng, n) for _ in range(k)])
    Y = np.stack([matvec(s) for s in S])
    Q = np.linalg.qr(Y.T)[0].T                      # (k, n), orthonormal rows
    AQ = np.stack([matvec(q) for q in Q])
    exact = float(np.einsum("ij,ij->", Q, AQ))
    used = 2 * k
    if k == n:
        return TraceEstimate(exact, (exact, exact), confidence, used, method, exact,
                             np.zeros(0))

    def sample():
        g = _rademacher(rng, n)
        g = g - _combine(Q, _project(Q, g))
        return _dot(g, matvec(g))
    xs = _probe_until(sample, exact, tol, min_probes, max_probes - used, z)
    mean, half = float(xs.mean()), z * float(xs.std(ddof=1)) / math.sqrt(len(xs))
    value = exact + mean
    return TraceEstimate(value, (value - half, value + half), confidence, used + len(xs),
                         method, exact, xs)
