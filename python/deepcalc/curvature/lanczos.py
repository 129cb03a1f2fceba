"""Extreme eigenvalues of a symmetric operator by Lanczos with full reorthogonalization and
thick restarts (Wu & Simon 2000; the symmetric Krylov-Schur method), and per-layer (block
diagonal) spectra.  Only matvecs are needed; the basis is kept in float64."""
from __future__ import annotations

import numpy as np

from ..creation import default_generator


def as_operator(op, name: str):
    """(matvec, n) for a curvature operator, anything with ``.matvec`` and ``.shape``, or a
    dense square array."""
    if isinstance(op, np.ndarray):
        if op.ndim != 2 or op.shape[0] != op.shape[1]:
            raise ValueError(f"{name}: a dense operator must be a square matrix, got shape "
                             f"{op.shape}")
        a = np.asarray(op, np.float64)
        return (lambda v: a @ v), a.shape[0]
    if not (hasattr(op, "matvec") and hasattr(op, "shape")):
        raise TypeError(f"{name}: expected a curvature operator (HessianOperator, ...), an "
                        f"object with .matvec and .shape, or a square array; got "
                        f"{type(op).__name__}")
    n, m = op.shape
    if n != m:
        raise ValueError(f"{name}: the operator must be square, got shape {op.shape}")
    return (lambda v: np.asarray(op.matvec(v), np.float64)), int(n)


def basis_dtype(op):
    """float32 for an operator over float32 variables (its products carry float32 precision,
    and the basis's memory traffic, which dominates a Lanczos step for large n, halves);
    float64 otherwise."""
    space = getattr(op, "space", None)
    return np.float32 if space is not None and space.dtype == np.float32 else np.float64


def _rng(generator):
    if generator is None:
        return default_generator()
    if isinstance(generator, (int, np.integer)):
        return np.random.default_rng(int(generator))
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be None, an int seed or a numpy Generator, got "
                        f"{type(generator).__name__}")
    return generator


def _orthogonalize(V, j, w):
    """w minus its projection on the orthonormal rows V[:j]; a second pass only when the
    first removed nearly all of w (||w'|| < ||w|| / 20): one classical Gram-Schmidt pass leaves
    components along V of order eps ||w|| / ||w'||, at most 20 eps otherwise, far below the
    sqrt(eps) that keeps the Ritz values exact (Simon 1984).  (The Daniel-Gragg-Kaufman-
    Stewart threshold 1 / sqrt 2 made every other step pay a second pass over the basis.)
    Returns (w, the coefficients removed)."""
    norm0 = _norm(w)
    h = _project(V[:j], w)
    w = w - _combine(V[:j], h)
    if _norm(w) < 0.05 * norm0:
        h2 = _project(V[:j], w)
        w = w - _combine(V[:j], h2)
        h = h + h2
    return w, h


# V w and V^T h by einsum, not BLAS: these products are bound by memory bandwidth, and
# OpenBLAS's worker threads, spinning after each call, take the cores from the OpenMP threads
# of the next HVP (measured: 90 ms per Lanczos step instead of 9 on two cores).
def _dot(a, b):
    return float(np.einsum("i,i->", a, b))


def _norm(a):
    return float(np.sqrt(np.einsum("i,i->", a, a)))


def _project(V, w):
    return np.einsum("ij,j->i", V, w)


def _combine(V, h):
    return np.einsum("ij,i->j", V, h)


def lanczos(matvec, n, n_iter, v0):
    """``n_iter`` steps of Lanczos from ``v0`` with full reorthogonalization.

    Returns (alpha, beta, V): the tridiagonal T = V^T A V has diagonal alpha (n_iter,) and
    off-diagonal beta (n_iter - 1,); V is (n_iter, n), orthonormal rows.  Stops early (fewer
    steps) when the Krylov space is invariant (beta ~ 0)."""
    m = min(int(n_iter), n)
    V = np.zeros((m, n))
    alpha, beta = np.zeros(m), np.zeros(max(m - 1, 0))
    V[0] = v0 / _norm(v0)
    for j in range(m):
        w = matvec(V[j])
        alpha[j] = _dot(V[j], w)
        w, _ = _orthogonalize(V, j + 1, w)
        if j + 1 == m:
            break
        b = _norm(w)
        if b <= 1e-12 * max(1.0, abs(alpha[: j + 1]).max()):
            return alpha[: j + 1], beta[:j], V[: j + 1]
        beta[j] = b
        V[j + 1] = w / b
    return alpha, beta, V


def _error_bound(theta, res, kk):
    """Error bounds of the kk first Ritz values: min(r, r^2 / gap) (Kato-Temple / Parlett's
    gap theorem), the gap taken to the nearest other Ritz value."""
    if len(theta) == 1:
        return res[:1]
    gaps = np.array([np.min(np.abs(np.delete(theta, i) - theta[i])) for i in range(kk)])
    return np.minimum(res[:kk], res[:kk] ** 2 / np.maximum(gaps, 1e-300))


def _extreme(matvec, n, k, which, tol, max_iter, basis, generator, name, dtype=np.float64):
    """Thick-restart Lanczos for the k eigenvalues at one end ('LA' largest, 'SA' smallest).

    The basis V (m rows) and the projected matrix H = V^T A V are kept; after a sweep the
    Ritz pairs are formed, and the basis restarts from the ``keep`` best Ritz vectors plus the
    last residual direction, so the projected matrix stays an arrowhead plus tridiagonal
    (with full reorthogonalization it is simply the computed projections)."""
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(f"{name}: k must be an integer in [1, {n}], got {k!r}")
    if not tol > 0:
        raise ValueError(f"{name}: tol must be > 0, got {tol}")
    sign = 1.0 if which == "LA" else -1.0
    m = min(n, basis or max(2 * k + 10, 20))
    keep = min(m - 1, max(k + (m - k) // 2, k))
    max_iter = max_iter or max(20 * m, 300)
    rng = _rng(generator)
    V = np.zeros((m + 1, n), dtype=dtype)
    H = np.zeros((m + 1, m + 1))
    v = rng.standard_normal(n)
    V[0] = v / _norm(v)
    start, used = 0, 0
    while True:
        j = start
        while True:
            w = (sign * matvec(V[j])).astype(dtype, copy=False)
            used += 1
            w, h = _orthogonalize(V, j + 1, w)
            H[: j + 1, j] = h
            H[j, : j + 1] = h
            residual = _norm(w)
            size = j + 1
            T = H[:size, :size]
            theta, S = np.linalg.eigh((T + T.T) / 2)
            order = np.argsort(theta)[::-1]
            theta, S = theta[order], S[:, order]
            invariant = residual <= 1e-12 * max(1.0, np.abs(theta).max())
            # residual of Ritz pair i: ||A y_i - theta_i y_i|| = residual * |S[last, i]|
            res = residual * np.abs(S[size - 1])
            kk = min(k, size)
            bound = _error_bound(theta, res, kk)
            scale = np.maximum(np.abs(theta[:kk]), 1e-300)
            converged = invariant or size == n or (
                size >= min(n, k + 4) and (bound <= tol * scale).all())
            if converged or used >= max_iter:
                vals = sign * theta[:kk]
                vecs = np.einsum("ji,jk->ik", S[:, :kk], V[:size])
                return vals, vecs, {"matvecs": used, "converged": bool(converged),
                                    "residuals": res[:kk], "error_bounds": bound}
            V[j + 1] = w / residual
            j += 1
            if j == m:
                break
        # thick restart: keep the best `keep` Ritz vectors and the residual direction
        Y = np.einsum("ji,jk->ik", S[:, :keep], V[:size])
        V[:keep] = Y
        V[keep] = V[size]
        H[:] = 0.0
        H[np.arange(keep), np.arange(keep)] = theta[:keep]
        b = residual * S[size - 1, :keep]
        H[keep, :keep] = b
        H[:keep, keep] = b
        # the next sweep starts from V[keep]; with full reorthogonalization its column of H
        # is recomputed as V^T A V[keep], which equals the coupling b in exact arithmetic
        start = keep


def top_eigenvalues(op, k=1, tol=1e-3, max_iter=None, generator=None, basis=None,
                    return_info=False):
    """The k largest eigenvalues (descending) and unit eigenvectors (k, n) of a symmetric
    operator, by thick-restart Lanczos with full reorthogonalization.

    Converged when every Ritz value's error bound min(r, r^2 / gap) <= tol * |theta|, r the
    Ritz residual ||A y - theta y|| (for a symmetric operator some eigenvalue lies within r,
    and within r^2 / gap when the others are at least gap away; the gap is estimated by the
    distance to the nearest other Ritz value).
    ``max_iter`` caps the matvecs, ``basis`` the Krylov basis size (default max(2k + 10, 20)).
    ``generator``: None (deepcalc's seeded generator), an int seed or a numpy Generator, for
    the start vector.  With ``return_info`` a dict (matvecs, converged, residuals) follows."""
    return _public(op, k, "LA", tol, max_iter, basis, generator, return_info, "top_eigenvalues")


def bottom_eigenvalues(op, k=1, tol=1e-3, max_iter=None, generator=None, basis=None,
                       return_info=False):
    """The k smallest (most negative) eigenvalues, ascending, and eigenvectors: Lanczos on -A
    (see ``top_eigenvalues``)."""
    return _public(op, k, "SA", tol, max_iter, basis, generator, return_info,
                   "bottom_eigenvalues")


def _public(op, k, which, tol, max_iter, basis, generator, return_info, name):
    matvec, n = as_operator(op, name)
    vals, vecs, info = _extreme(matvec, n, k, which, tol, max_iter, basis, generator, name,
                                basis_dtype(op))
    vecs = vecs.astype(np.float64)
    if not info["converged"]:
        import warnings
        warnings.warn(f"{name}: not converged after {info['matvecs']} matvecs (largest "
                      f"relative error bound {np.max(info['error_bounds'] / np.abs(vals)):.2e}"
                      f", tol {tol})", RuntimeWarning, stacklevel=3)
    return (vals, vecs, info) if return_info else (vals, vecs)


def layer_groups(names) -> dict:
    """Parameter names grouped by the module that owns them ('layer0.weight', 'layer0.bias'
    -> 'layer0')."""
    groups = {}
    for n in names:
        groups.setdefault(n.rsplit(".", 1)[0] if "." in n else n, []).append(n)
    return groups


def block_spectra(op, k=1, groups=None, which="top", tol=1e-3, generator=None):
    """Extreme eigenvalues of each diagonal block of ``op`` (a curvature operator over
    parameters): by default one block per layer (``layer_groups``), or ``groups`` given as
    {label: [parameter names]}.  Returns {label: eigenvalues}."""
    if not hasattr(op, "restrict"):
        raise TypeError(f"block_spectra: needs a curvature operator over parameters, got "
                        f"{type(op).__name__}")
    groups = layer_groups(op.names) if groups is None else dict(groups)
    fn = top_eigenvalues if which == "top" else bottom_eigenvalues
    if which not in ("top", "bottom"):
        raise ValueError(f"block_spectra: which must be 'top' or 'bottom', got {which!r}")
    out = {}
    for label, names in groups.items():
        sub = op.restrict(names)
        out[label] = fn(sub, k=min(k, sub.shape[0]), tol=tol, generator=generator)[0]
    return out
