"""Tabular MDPs: deterministic ones as an (S, A) array of next states, stochastic ones as an
(S, A, S) array of probabilities.  Every measure and agent of ``dc.impact`` works on either
through the few operations here (expectations over the next state, pushing a distribution
through an action), so that the deterministic case is a gather and never a dense product."""
from __future__ import annotations

import numpy as np


class MDP:
    """A finite MDP.

    ``transitions``: an (S, A) integer array of next states (deterministic) or an (S, A, S)
    array of probabilities P(z | x, a) (each [x, a] row non-negative, summing to 1; rows that
    are all one-hot make the MDP deterministic).  ``rewards``: optional (S, A) rewards r(x, a).
    ``noop``: the index of the no-op action, which the inaction baselines take (optional).
    """

    def __init__(self, transitions, rewards=None, noop: int | None = None):
        t = np.asarray(transitions)
        if t.ndim == 2 and np.issubdtype(t.dtype, np.integer):
            S, A = t.shape
            if S and A == 0:
                raise ValueError(f"MDP: transitions has shape {t.shape}; every state needs at least one action")
            if t.size and (t.min() < 0 or t.max() >= S):
                bad = t[(t < 0) | (t >= S)][0]
                raise ValueError(f"MDP: transitions (S, A) = {t.shape} holds next state {bad}; "
                                 f"states must be in [0, {S})")
            self.next_states = np.ascontiguousarray(t, dtype=np.int64)
            self.probs = None
        elif t.ndim == 3:
            if not np.issubdtype(t.dtype, np.floating):
                raise TypeError(f"MDP: probabilities (S, A, S) must be floating point, got {t.dtype}")
            S, A, S2 = t.shape
            if S2 != S:
                raise ValueError(f"MDP: probabilities have shape {t.shape}, expected (S, A, S)")
            if S and A == 0:
                raise ValueError(f"MDP: transitions has shape {t.shape}; every state needs at least one action")
            t = t.astype(np.float64)
            if not np.all(np.isfinite(t)) or np.any(t < 0):
                raise ValueError("MDP: probabilities must be finite and >= 0 (found NaN, inf or a negative entry)")
            sums = t.sum(-1)
            if t.size and np.max(np.abs(sums - 1.0)) > 1e-9:
                x, a = np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape)
                raise ValueError(f"MDP: the probabilities of state {x}, action {a} sum to {sums[x, a]}, expected 1")
            if np.all(t.max(-1) == 1.0):
                self.next_states = np.ascontiguousarray(t.argmax(-1), dtype=np.int64)
                self.probs = None
            else:
                self.next_states = None
                self.probs = t
        else:
            raise ValueError(f"MDP: transitions must be (S, A) integer next states or (S, A, S) "
                             f"probabilities, got shape {t.shape} and dtype {t.dtype}")
        self.n_states, self.n_actions = S, A
        if rewards is not None:
            r = np.asarray(rewards, dtype=np.float64)
            if r.shape != (S, A):
                raise ValueError(f"MDP: rewards have shape {r.shape}, expected (S, A) = {(S, A)}")
            if not np.all(np.isfinite(r)):
                raise ValueError("MDP: rewards must be finite (found NaN or inf)")
            rewards = r
        self.rewards = rewards
        if noop is not None and not 0 <= int(noop) < A:
            raise ValueError(f"MDP: noop action {noop} is not in [0, {A})")
        self.noop = None if noop is None else int(noop)

    @property
    def deterministic(self) -> bool:
        return self.probs is None

    def __repr__(self):
        kind = "deterministic" if self.deterministic else "stochastic"
        return f"MDP({self.n_states} states, {self.n_actions} actions, {kind})"

    def probabilities(self) -> np.ndarray:
        """The dense (S, A, S) transition probabilities."""
        if self.probs is not None:
            return self.probs
        P = np.zeros((self.n_states, self.n_actions, self.n_states))
        s, a = np.indices(self.next_states.shape)
        P[s, a, self.next_states] = 1.0
        return P

    def csr(self):
        """(indptr, indices, probs): the successors of row x * A + a with P > 0."""
        P = self.probabilities().reshape(self.n_states * self.n_actions, self.n_states)
        rows, cols = np.nonzero(P)
        indptr = np.zeros(P.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=P.shape[0]), out=indptr[1:])
        return indptr, cols.astype(np.int64), P[rows, cols]

    def expect(self, values: np.ndarray) -> np.ndarray:
        """E[values(z)] over z ~ P(. | x, a): values (..., S) -> (..., S, A)."""
        v = np.asarray(values)
        if self.deterministic:
            return v[..., self.next_states]
        return np.einsum("xaz,...z->...xa", self.probs, v, optimize=True)

    def pull(self, values: np.ndarray, action: int) -> np.ndarray:
        """E[values(z)] over z ~ P(. | x, action) for every x: values (..., S) -> (..., S)."""
        v = np.asarray(values)
        if self.deterministic:
            return v[..., self.next_states[:, action]]
        return v @ self.probs[:, action, :].T

    def push(self, dist: np.ndarray, action: int) -> np.ndarray:
        """The distribution over states (S,) after taking ``action`` from distribution ``dist`` (S,)."""
        d = np.asarray(dist, dtype=np.float64)
        if self.deterministic:
            return np.bincount(self.next_states[:, action], weights=d, minlength=self.n_states)
        return d @ self.probs[:, action, :]

    def expect_diag(self, M: np.ndarray) -> np.ndarray:
        """(S, A) array E[M(z, x)] over z ~ P(. | x, a), for M (S, S) indexed [next state, x]."""
        if self.deterministic:
            return M[self.next_states, np.arange(self.n_states)[:, None]]
        return np.einsum("xaz,zx->xa", self.probs, M, optimize=True)

    def sample(self, state: int, action: int, rng: np.random.Generator) -> int:
        """A next state drawn from P(. | state, action)."""
        if self.deterministic:
            return int(self.next_states[state, action])
        p = self.probs[state, action]
        return int(min(np.searchsorted(np.cumsum(p), rng.random(), side="right"), self.n_states - 1))
