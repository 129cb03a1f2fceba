"""All-pairs discounted reachability (cpp/impact): thin array functions over the native kernels,
used by ``dc.impact``.  They are not primitives: nothing differentiates through reachability.

    R(x; y) = max over policies of E[gamma^N(x -> y)]      (N: first step at which y is reached)
    R(y; y) = 1,   R(x; y) = gamma * max_a sum_z P(z | x, a) R(z; y)

Deterministic transitions (an (S, A) array of next states) take one breadth-first search per
source, R(x; y) = gamma^d(x, y); stochastic ones (CSR rows over the S * A state-action pairs)
take value iteration over blocks of target columns.
"""
from __future__ import annotations

import numpy as np

from .. import _core


def _dtype(op: str, dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dt}")
    return dt


def _gamma(op: str, gamma) -> float:
    g = float(gamma)
    if not 0.0 <= g <= 1.0:  # also rejects NaN
        raise ValueError(f"{op}: gamma must be in [0, 1], got {gamma!r}")
    return g


def reach_deterministic(next_states, gamma: float, dtype=np.float64) -> np.ndarray:
    """(S, S) reachabilities gamma^d(x, y) of the deterministic MDP ``next_states`` (S, A), whose
    entries are next-state indices in [0, S); 0 where y cannot be reached from x."""
    op = "reach_deterministic"
    nxt = np.asarray(next_states)
    if nxt.ndim != 2:
        raise ValueError(f"{op}: next_states must be (S, A), got shape {nxt.shape}")
    if not np.issubdtype(nxt.dtype, np.integer):
        raise TypeError(f"{op}: next_states must hold integer state indices, got {nxt.dtype}")
    nxt = np.ascontiguousarray(nxt, dtype=np.int64)
    return _core.reach_deterministic(nxt, _gamma(op, gamma), _dtype(op, dtype))


def reach_stochastic(indptr, indices, probs, n_states: int, n_actions: int, gamma: float,
                     tol: float = 1e-10, max_iter: int = 100_000, dtype=np.float64):
    """(R, iterations, residual) for the stochastic MDP in CSR form: row x * A + a holds the
    successors ``indices[indptr[r]:indptr[r + 1]]`` with probabilities ``probs[...]``.
    Value iteration stops once a sweep changes no entry by more than ``tol`` (residual is that
    largest change, iterations the most sweeps any target block took) or after ``max_iter``."""
    op = "reach_stochastic"
    return _core.reach_stochastic(np.ascontiguousarray(indptr, dtype=np.int64),
                                  np.ascontiguousarray(indices, dtype=np.int64),
                                  np.ascontiguousarray(probs, dtype=np.float64),
                                  int(n_states), int(n_actions), _gamma(op, gamma), float(tol),
                                  int(max_iter), _dtype(op, dtype))
