"""Side-effect penalties: a deviation measure, a baseline, and the penalized reward
r'(s_t, a_t) = r(s_t, a_t) - beta * d(s_{t+1}; s'_{t+1})   (Krakovna et al. 2019, eq. 1).

Baselines s'_{t+1} (Krakovna et al. 2019, section 2):
    starting             s_0
    inaction             the state after t + 1 no-ops from s_0
    stepwise             one no-op from the previous state: s'_{t+1} ~ P(. | s_t, noop)
    stepwise_rollouts    as stepwise, and both s_{t+1} and s'_{t+1} are rolled forward with
                         no-ops: d_roll(s; s') = sum_{j=0}^{K} w_j E d(noop^j s; noop^j s'),
                         w_j proportional to rollout_gamma^j and summing to 1.
Measures: 'unreachability', 'relative_reachability', 'attainable_utility' (measures.py),
'none', and 'aup': Turner et al.'s own penalty sum_i |Q_i(s, a) - Q_i(s, noop)| / sum_i
Q_i(s, noop) (its baseline is built in: the no-op from the same state, so only 'stepwise').

On a stochastic MDP every expectation is taken over s_{t+1} and s'_{t+1} (independently).
Everything is computed for all states and actions at once as a (horizon, S, A) array, from the
(S, S) deviation matrix D[s, s'] = d(s; s'); the inaction baseline is the only one that depends
on t.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mdp import MDP
from .measures import (attainable_utility, attainable_utility_deviation, aup_penalty,
                       random_reward_functions, reachability, relative_reachability)

MEASURES = ("none", "unreachability", "relative_reachability", "attainable_utility", "aup")
BASELINES = ("starting", "inaction", "stepwise", "stepwise_rollouts")


@dataclass
class Penalty:
    """One side-effect penalty: which measure against which baseline, and its parameters.

    gamma_r: reachability discount (1 = undiscounted); deviation: 'truncation' or 'absolute'
    (default: truncation for relative reachability, absolute for attainable utility);
    reward_fns: the auxiliary rewards of attainable utility / AUP ((k, S) or (k, S, A)),
    drawn as n_aux uniform random state rewards from ``seed`` when None; aux_gamma: their
    discount; rollout_steps / rollout_gamma: the stepwise_rollouts horizon K and weights.
    """
    measure: str = "relative_reachability"
    baseline: str = "stepwise_rollouts"
    beta: float = 1.0
    gamma_r: float = 0.99
    deviation: str | None = None
    reward_fns: np.ndarray | None = None
    n_aux: int = 20
    aux_gamma: float = 0.95
    seed: int | None = 0
    rollout_steps: int = 20
    rollout_gamma: float = 0.95

    def __post_init__(self):
        if self.measure not in MEASURES:
            raise ValueError(f"Penalty: measure must be one of {MEASURES}, got {self.measure!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"Penalty: baseline must be one of {BASELINES}, got {self.baseline!r}")
        if self.measure == "aup" and self.baseline != "stepwise":
            raise ValueError(f"Penalty: 'aup' compares with the no-op from the same state; its baseline "
                             f"is 'stepwise', got {self.baseline!r}")
        if not np.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"Penalty: beta must be finite and >= 0, got {self.beta!r}")
        if self.rollout_steps < 0:
            raise ValueError(f"Penalty: rollout_steps must be >= 0, got {self.rollout_steps}")
        if self.deviation is None:
            self.deviation = "truncation" if self.measure == "relative_reachability" else "absolute"

    def aux_rewards(self, n_states: int) -> np.ndarray:
        if self.reward_fns is not None:
            return np.asarray(self.reward_fns, dtype=np.float64)
        return random_reward_functions(n_states, self.n_aux, self.seed)


def deviation_matrix(mdp: MDP, penalty: Penalty, R=None) -> np.ndarray:
    """(S, S) D[s, s'] = d(s; s') of the penalty's measure for every pair (current, baseline);
    R, the reachability matrix at penalty.gamma_r, is computed when not given."""
    S = mdp.n_states
    if penalty.measure in ("none", "aup"):
        raise ValueError(f"deviation_matrix: measure {penalty.measure!r} has no state deviation")
    if penalty.measure == "attainable_utility":
        # values times (1 - gamma): in [0, 1] for rewards in [0, 1], like reachabilities
        V = (1.0 - penalty.aux_gamma) * attainable_utility(mdp, penalty.aux_rewards(S), penalty.aux_gamma)
        cur, base = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
        return attainable_utility_deviation(V, cur, base, penalty.deviation)
    R = reachability(mdp, penalty.gamma_r) if R is None else np.asarray(R)
    if penalty.measure == "unreachability":
        return 1.0 - R
    cur, base = np.meshgrid(np.arange(S), np.arange(S), indexing="ij")
    return relative_reachability(R, cur, base, penalty.deviation)


def _rolled(mdp: MDP, D: np.ndarray, steps: int, gamma: float) -> np.ndarray:
    """sum_j w_j N^j D N^jT: D with both states rolled forward j no-ops, weights w_j ~ gamma^j."""
    w = gamma ** np.arange(steps + 1)
    w /= w.sum()
    X, out = D, w[0] * D
    for j in range(1, steps + 1):
        X = mdp.pull(mdp.pull(X, mdp.noop).T, mdp.noop).T
        out = out + w[j] * X
    return out


def penalty_terms(mdp: MDP, start: int, penalty: Penalty, horizon: int, D=None) -> np.ndarray:
    """(horizon, S, A) expected deviation d(s_{t+1}; s'_{t+1}) for taking action a in state s
    at step t (0-based) of an episode from ``start``; D (deviation_matrix) when precomputed."""
    S, A = mdp.n_states, mdp.n_actions
    if horizon < 1:
        raise ValueError(f"penalty_terms: horizon must be >= 1, got {horizon}")
    if not 0 <= int(start) < S:
        raise ValueError(f"penalty_terms: start state {start} is not in [0, {S})")
    if penalty.measure == "none":
        return np.zeros((horizon, S, A))
    if mdp.noop is None and penalty.baseline != "starting":
        raise ValueError(f"penalty_terms: baseline {penalty.baseline!r} needs the MDP's noop action")
    if penalty.measure == "aup":
        _, Q = attainable_utility(mdp, penalty.aux_rewards(S), penalty.aux_gamma, return_q=True)
        s, a = np.meshgrid(np.arange(S), np.arange(A), indexing="ij")
        return np.broadcast_to(aup_penalty(Q, s, a, mdp.noop, scale="noop"), (horizon, S, A)).copy()
    D = deviation_matrix(mdp, penalty) if D is None else np.asarray(D)
    if penalty.baseline == "starting":
        return np.broadcast_to(mdp.expect(D[:, start]), (horizon, S, A)).copy()
    if penalty.baseline == "inaction":
        out = np.empty((horizon, S, A))
        p = np.zeros(S)
        p[start] = 1.0
        for t in range(horizon):
            p = mdp.push(p, mdp.noop)            # baseline distribution at step t + 1
            out[t] = mdp.expect(D @ p)
        return out
    if penalty.baseline == "stepwise_rollouts":
        D = _rolled(mdp, D, penalty.rollout_steps, penalty.rollout_gamma)
    # M[z, x] = E over the baseline b ~ P(. | x, noop) of D[z, b]
    M = mdp.pull(D, mdp.noop)
    return np.broadcast_to(mdp.expect_diag(M), (horizon, S, A)).copy()


def penalized_rewards(mdp: MDP, start: int, penalty: Penalty, horizon: int, rewards=None,
                      D=None) -> np.ndarray:
    """(horizon, S, A) r(s, a) - beta * penalty_terms: the reward the agent maximizes
    (``rewards`` (S, A) default the MDP's own)."""
    r = mdp.rewards if rewards is None else np.asarray(rewards, dtype=np.float64)
    if r is None:
        raise ValueError("penalized_rewards: the MDP has no rewards and none were given")
    return r[None] - penalty.beta * penalty_terms(mdp, start, penalty, horizon, D)
