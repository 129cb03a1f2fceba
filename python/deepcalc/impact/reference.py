"""The NumPy reference for reachability: the Bellman recursion itself, iterated.  It defines
what the native kernel (``reachability``) must return, and is tested against hand-computed
values.  It is simple rather than fast: one vectorized sweep per step of the longest shortest
path.

    R_0 = I (on the target columns),
    R_{k+1}(x; y) = 1 if x = y else gamma_r * max_a E_{z ~ P(.|x,a)} R_k(z; y),

stopped after the first sweep that changes no entry by more than ``tol``.  From R_0 = I the
iterates rise monotonically to the least fixed point, which is max over policies of
E[gamma_r^N(x -> y)]; on a deterministic MDP the k-th iterate is exact for every pair at
distance < k, so the loop ends with exact values after (longest distance + 1) sweeps.
"""
from __future__ import annotations

import numpy as np

from .mdp import MDP


def reachability_reference(mdp: MDP, gamma_r: float = 0.99, targets=None, tol: float = 1e-12,
                           max_iter: int | None = None) -> np.ndarray:
    """(S, len(targets)) float64 reachabilities R(x; y) for y in ``targets`` (default: all
    states, giving the (S, S) matrix), by Jacobi value iteration over the target columns."""
    if not isinstance(mdp, MDP):
        raise TypeError(f"reachability_reference: expected an MDP, got {type(mdp).__name__}")
    if not 0.0 <= float(gamma_r) <= 1.0:
        raise ValueError(f"reachability_reference: gamma_r must be in [0, 1], got {gamma_r!r}")
    S = mdp.n_states
    y = np.arange(S) if targets is None else np.asarray(targets, dtype=np.int64).reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= S):
        raise ValueError(f"reachability_reference: targets must be states in [0, {S}), got {y}")
    cols = np.arange(y.size)
    R = np.zeros((S, y.size))
    R[y, cols] = 1.0
    max_iter = 10 * S + 100 if max_iter is None else max_iter
    for _ in range(max_iter):
        # R.T is (targets, S); expect gives (targets, S, A): E over the successor z of R(z; y)
        new = gamma_r * mdp.expect(R.T).max(-1).T
        new[y, cols] = 1.0
        change = np.max(np.abs(new - R)) if R.size else 0.0
        R = new
        if change <= tol:
            return R
    raise RuntimeError(f"reachability_reference: no convergence to tol {tol} in {max_iter} sweeps "
                       f"(last change {change:.3g})")
