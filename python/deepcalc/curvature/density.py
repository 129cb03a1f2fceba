"""Spectral density by stochastic Lanczos quadrature (Golub & Meurant; Ghorbani, Krishnan &
Xiao 2019): m Lanczos steps from a random unit vector v give the m-node Gauss quadrature of
v^T f(A) v = sum_j w_j f(theta_j) (theta_j the eigenvalues of the tridiagonal T, w_j the
squared first components of its eigenvectors), exact for polynomials f of degree < 2m, and
E_v[v^T f(A) v] = tr f(A) / n.  Averaged over n_vec vectors and smoothed with a Gaussian."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lanczos import _rng, as_operator, lanczos


@dataclass
class SpectralDensity:
    """The quadrature (``nodes[i]``, ``weights[i]`` for start vector i; each weight row sums
    to 1), the dimension ``n``, and a Gaussian-smoothed density ``values`` on ``grid``
    (integrating to 1) with width ``sigma``."""
    nodes: list
    weights: list
    n: int
    grid: np.ndarray
    values: np.ndarray
    sigma: float
    matvecs: int

    def moment(self, k: int) -> float:
        """Estimate of tr(A^k) / n."""
        return float(np.mean([np.sum(w * t ** k) for t, w in zip(self.nodes, self.weights)]))

    def spectral_sum(self, f) -> float:
        """Estimate of tr f(A) = sum_i f(lambda_i)."""
        return self.n * float(np.mean([np.sum(w * f(t))
                                       for t, w in zip(self.nodes, self.weights)]))

    def plot(self, path=None, ax=None, log=True, title=None):
        """Plot the smoothed density (log scale by default, as the bulk and the outliers
        differ by orders of magnitude); written atomically to ``path`` when given."""
        return plot_density(self, path=path, ax=ax, log=log, title=title)


def density(op, n_iter=100, n_vec=1, sigma=None, grid=None, n_grid=1000, generator=None):
    """Spectral density of a symmetric operator by stochastic Lanczos quadrature.

    ``n_iter`` Lanczos steps (full reorthogonalization) from each of ``n_vec`` Gaussian unit
    vectors; ``sigma`` the Gaussian's width (default 1% of the spectrum's span); ``grid``
    the points to evaluate at (default ``n_grid`` points over the span widened by 5 sigma).
    Returns a ``SpectralDensity``."""
    matvec, n = as_operator(op, "density")
    if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"density: n_iter must be a positive integer, got {n_iter!r}")
    if not isinstance(n_vec, (int, np.integer)) or n_vec < 1:
        raise ValueError(f"density: n_vec must be a positive integer, got {n_vec!r}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"density: sigma must be > 0, got {sigma}")
    rng = _rng(generator)
    nodes, weights, used = [], [], 0
    for _ in range(n_vec):
        alpha, beta, _ = lanczos(matvec, n, n_iter, rng.standard_normal(n))
        used += len(alpha)
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, S = np.linalg.eigh(T)
        nodes.append(theta)
        weights.append(S[0] ** 2)
    lo = min(t.min() for t in nodes)
    hi = max(t.max() for t in nodes)
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    sigma = float(sigma) if sigma is not None else 0.01 * span
    if grid is None:
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, n_grid)
    grid = np.asarray(grid, np.float64)
    values = np.zeros_like(grid)
    for t, w in zip(nodes, weights):
        values += (w[None, :] * np.exp(-0.5 * ((grid[:, None] - t[None, :]) / sigma) ** 2)
                   ).sum(axis=1)
    values /= n_vec * sigma * np.sqrt(2 * np.pi)
    return SpectralDensity(nodes, weights, n, grid, values, sigma, used)


def plot_density(d: SpectralDensity, path=None, ax=None, log=True, title=None):
    """Figure of a ``SpectralDensity``; returns the path written or the axes."""
    import matplotlib
    if path is not None and ax is None:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6, 4))
    vals = np.maximum(d.values, 1e-12) if log else d.values
    ax.plot(d.grid, vals)
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=max(1e-8, vals.max() * 1e-10))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title or f"spectral density (SLQ, {len(d.nodes)} vector(s), "
                 f"{len(d.nodes[0])} steps, sigma {d.sigma:.2g})")
    if path is None:
        return ax
    from ..results import save_figure
    return save_figure(ax.figure, path, close=own)
