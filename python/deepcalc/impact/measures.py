"""Deviation measures between a state and a baseline state (Krakovna et al. 2019, "Penalizing
side effects using stepwise relative reachability"; Turner et al. 2020, "Conservative Agency via
Attainable Utility Preservation"):

    reachability        R(x; y) = max_pi E[gamma_r^N(x -> y)]   (native kernel, ops.reach)
    unreachability      d_UR(s; s') = 1 - R(s; s')               (gamma_r = 1: 0/1 reversibility)
    relative reach.     d_RR(s; s') = 1/|S| sum_x f(R(s'; x) - R(s; x)),  f = max(0, .) or |.|
    attainable utility  d_AU(s; s') = 1/k sum_i f(V_i(s') - V_i(s)),  V_i optimal values of aux rewards
    AUP penalty         sum_i |Q_i(s, a) - Q_i(s, noop)| / sum_i Q_i(s, noop)   (Turner et al.)

s is the agent's state, s' the baseline's.  Every function takes arrays of states and
broadcasts them.
"""
from __future__ import annotations

import numpy as np

from ..ops import reach as _reach
from .mdp import MDP

DEVIATIONS = ("truncation", "absolute")


def _check_mdp(op, mdp):
    if not isinstance(mdp, MDP):
        raise TypeError(f"{op}: expected an MDP, got {type(mdp).__name__}")


def reachability(mdp: MDP, gamma_r: float = 0.99, dtype=np.float64, tol: float = 1e-10,
                 max_iter: int = 100_000) -> np.ndarray:
    """(S, S) discounted reachabilities R[x, y] = R(x; y) of every pair of states, from the
    native kernel: BFS (R = gamma_r^distance, 0 if unreachable) on a deterministic MDP, value
    iteration to ``tol`` on a stochastic one.  gamma_r = 1 gives 1 where y is reachable
    (stochastic: the largest probability of ever reaching y)."""
    _check_mdp("reachability", mdp)
    if mdp.deterministic:
        return _reach.reach_deterministic(mdp.next_states, gamma_r, dtype)
    indptr, indices, probs = mdp.csr()
    R, iters, residual = _reach.reach_stochastic(indptr, indices, probs, mdp.n_states,
                                                 mdp.n_actions, gamma_r, tol, max_iter, dtype)
    if residual > tol:
        raise RuntimeError(f"reachability: value iteration did not reach tol {tol} in {max_iter} "
                           f"sweeps (largest last change {residual:.3g}); raise max_iter")
    return R


def _check_R(op, R):
    R = np.asarray(R)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"{op}: R must be an (S, S) reachability matrix, got shape {R.shape}")
    if np.isnan(R).any():
        raise ValueError(f"{op}: R holds NaN")
    return R


def _states(op, name, s, S):
    s = np.asarray(s)
    if not np.issubdtype(s.dtype, np.integer):
        raise TypeError(f"{op}: {name} must be integer state indices, got {s.dtype}")
    if s.size and (s.min() < 0 or s.max() >= S):
        raise ValueError(f"{op}: {name} holds states outside [0, {S}): {s[(s < 0) | (s >= S)].ravel()[:5]}")
    return s


def _f(op, deviation):
    if deviation == "truncation":
        return lambda d: np.maximum(d, 0.0)
    if deviation == "absolute":
        return np.abs
    raise ValueError(f"{op}: deviation must be one of {DEVIATIONS}, got {deviation!r}")


def unreachability(R, state, baseline_state):
    """1 - R(state; baseline_state): how unreachable the baseline is from the agent's state."""
    R = _check_R("unreachability", R)
    s = _states("unreachability", "state", state, R.shape[0])
    b = _states("unreachability", "baseline_state", baseline_state, R.shape[0])
    return 1.0 - R[s, b]


def relative_reachability(R, state, baseline_state, deviation: str = "truncation",
                          chunk: int = 1 << 22):
    """1/|S| sum_x f(R(baseline; x) - R(state; x)) with f = max(0, .) ('truncation': only
    reductions in reachability count) or |.| ('absolute'); state and baseline broadcast.
    Pairs are processed ``chunk`` entries at a time to bound the temporary memory."""
    op = "relative_reachability"
    R = _check_R(op, R)
    f = _f(op, deviation)
    s, b = np.broadcast_arrays(_states(op, "state", state, R.shape[0]),
                               _states(op, "baseline_state", baseline_state, R.shape[0]))
    flat_s, flat_b = s.ravel(), b.ravel()
    out = np.empty(flat_s.size)
    step = max(1, chunk // max(R.shape[0], 1))
    for i in range(0, flat_s.size, step):
        j = slice(i, i + step)
        out[j] = f(R[flat_b[j]] - R[flat_s[j]]).mean(-1)
    return out.reshape(s.shape)


def random_reward_functions(n_states: int, k: int, seed=None) -> np.ndarray:
    """k auxiliary state rewards drawn uniformly from [0, 1), (k, S) (Turner et al.'s random
    auxiliary reward functions)."""
    if k < 1 or n_states < 0:
        raise ValueError(f"random_reward_functions: need k >= 1 and n_states >= 0, got k={k}, n_states={n_states}")
    return np.random.default_rng(seed).random((k, n_states))


def attainable_utility(mdp: MDP, reward_fns, gamma: float = 0.95, tol: float = 1e-10,
                       max_iter: int = 100_000, return_q: bool = False):
    """(k, S) optimal values V_i of the auxiliary rewards ``reward_fns``: (k, S) rewards for
    arriving in a state, or (k, S, A) rewards of state-action pairs.  Value iteration on
    Q_i(x, a) = r_i(x, a) + gamma E[V_i(z)], V_i = max_a Q_i, with gamma < 1.  return_q=True
    also returns Q (k, S, A)."""
    op = "attainable_utility"
    _check_mdp(op, mdp)
    if not 0.0 <= float(gamma) < 1.0:
        raise ValueError(f"{op}: gamma must be in [0, 1), got {gamma!r}")
    r = np.asarray(reward_fns, dtype=np.float64)
    S, A = mdp.n_states, mdp.n_actions
    if r.ndim == 2 and r.shape[1] == S:
        r = mdp.expect(r)          # arrival rewards: E[r_i(z)] over the successor
    elif not (r.ndim == 3 and r.shape[1:] == (S, A)):
        raise ValueError(f"{op}: reward_fns must be (k, S) or (k, S, A) with S = {S}, A = {A}, got shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{op}: reward_fns must be finite (found NaN or inf)")
    V = np.zeros((r.shape[0], S))
    for _ in range(max_iter):
        Q = r + gamma * mdp.expect(V)
        new = Q.max(-1) if A else V
        change = np.max(np.abs(new - V)) if V.size else 0.0
        V = new
        if change <= tol:
            return (V, r + gamma * mdp.expect(V)) if return_q else V
    raise RuntimeError(f"{op}: value iteration did not reach tol {tol} in {max_iter} sweeps")


def attainable_utility_deviation(V, state, baseline_state, deviation: str = "absolute"):
    """1/k sum_i f(V_i(baseline) - V_i(state)) for values V (k, S); Krakovna et al.'s
    attainable-utility measure (absolute value, as in Turner et al., by default).  Pass values
    scaled to the reward range (V * (1 - gamma) for rewards in [0, 1]) to compare it with
    relative reachability, whose terms lie in [0, 1]."""
    op = "attainable_utility_deviation"
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2:
        raise ValueError(f"{op}: V must be (k, S), got shape {V.shape}")
    f = _f(op, deviation)
    s = _states(op, "state", state, V.shape[1])
    b = _states(op, "baseline_state", baseline_state, V.shape[1])
    return f(V[:, b] - V[:, s]).mean(0)


def aup_penalty(q_values, state, action, noop: int, scale: str = "noop"):
    """Turner et al.'s AUP penalty sum_i |Q_i(s, a) - Q_i(s, noop)|, divided by
    sum_i Q_i(s, noop) (scale='noop', their SCALE term) or by k (scale='mean').  q_values is
    (k, S, A); state and action broadcast.  A zero scale (every Q_i(s, noop) = 0) gives a
    zero penalty where the difference is zero and raises otherwise."""
    op = "aup_penalty"
    Q = np.asarray(q_values, dtype=np.float64)
    if Q.ndim != 3:
        raise ValueError(f"{op}: q_values must be (k, S, A), got shape {Q.shape}")
    k, S, A = Q.shape
    s = _states(op, "state", state, S)
    a = _states(op, "action", action, A)
    if not 0 <= int(noop) < A:
        raise ValueError(f"{op}: noop {noop} is not an action in [0, {A})")
    diff = np.abs(Q[:, s, a] - Q[:, s, int(noop)]).sum(0)
    if scale == "mean":
        return diff / k
    if scale != "noop":
        raise ValueError(f"{op}: scale must be 'noop' or 'mean', got {scale!r}")
    denom = Q[:, s, int(noop)].sum(0)
    if np.any((denom == 0) & (diff != 0)):
        raise ValueError(f"{op}: sum_i Q_i(s, noop) is 0 at a state where the penalty is not; use scale='mean'")
    return np.divide(diff, denom, out=np.zeros_like(diff), where=denom != 0)
