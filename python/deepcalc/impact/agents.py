"""Agents for episodes of at most ``horizon`` steps on a tabular MDP, maximizing the discounted
sum of a (possibly time-dependent) reward r[t, s, a] (the penalized reward of penalty.py).
Entering a terminal state ends the episode.  Both agents index their values by the step t, since
the inaction baseline makes the penalized reward depend on it.

    value_iteration:  exact backward induction  Q_t(s, a) = r[t, s, a] + gamma E[V_{t+1}(z)],
                      V_{t+1}(z) = 0 if z is terminal or t + 1 = horizon, else max_a Q_{t+1}(z, a)
    q_learning:       tabular Q-learning on sampled episodes, epsilon-greedy with epsilon annealed
                      linearly from eps_start to eps_end over the episodes
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mdp import MDP


def _time_rewards(op, mdp, rewards, horizon):
    r = np.asarray(rewards, dtype=np.float64)
    S, A = mdp.n_states, mdp.n_actions
    if r.shape == (S, A):
        r = np.broadcast_to(r, (horizon, S, A))
    if r.shape != (horizon, S, A):
        raise ValueError(f"{op}: rewards must be (S, A) or (horizon, S, A) = {(horizon, S, A)}, got {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError(f"{op}: rewards must be finite (found NaN or inf)")
    return r


def _terminal(op, mdp, terminal):
    if terminal is None:
        return np.zeros(mdp.n_states, dtype=bool)
    t = np.asarray(terminal, dtype=bool)
    if t.shape != (mdp.n_states,):
        raise ValueError(f"{op}: terminal must be (S,) = ({mdp.n_states},), got {t.shape}")
    return t


def value_iteration(mdp: MDP, rewards, horizon: int, gamma: float = 0.95, terminal=None) -> np.ndarray:
    """(horizon, S, A) optimal finite-horizon Q-values; the optimal policy at step t in state s
    is argmax_a Q[t, s, a] (ties: the lowest action index)."""
    op = "value_iteration"
    if horizon < 1 or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"{op}: need horizon >= 1 and gamma in [0, 1], got {horizon}, {gamma}")
    r = _time_rewards(op, mdp, rewards, horizon)
    alive = ~_terminal(op, mdp, terminal)
    Q = np.empty_like(r)
    V = np.zeros(mdp.n_states)
    for t in range(horizon - 1, -1, -1):
        Q[t] = r[t] + gamma * mdp.expect(V * alive)
        V = Q[t].max(-1)
    return Q


@dataclass
class Episode:
    """One episode: states[0..n] (states[0] the start), actions[0..n-1], rewards[0..n-1]."""
    states: list
    actions: list
    rewards: list

    @property
    def length(self) -> int:
        return len(self.actions)


def rollout(mdp: MDP, Q, start: int, horizon: int, terminal=None, rewards=None, seed=None,
            epsilon: float = 0.0) -> Episode:
    """Run the greedy (epsilon=0) or epsilon-greedy policy of Q (horizon, S, A) from ``start``;
    ``rewards`` (S, A), default the MDP's, are recorded."""
    term = _terminal("rollout", mdp, terminal)
    r = mdp.rewards if rewards is None else np.asarray(rewards)
    rng = np.random.default_rng(seed)
    s, states, actions, rs = int(start), [int(start)], [], []
    for t in range(horizon):
        if term[s]:
            break
        a = int(rng.integers(mdp.n_actions)) if epsilon and rng.random() < epsilon else int(np.argmax(Q[t, s]))
        z = mdp.sample(s, a, rng)
        actions.append(a)
        rs.append(float(r[s, a]) if r is not None else 0.0)
        states.append(z)
        s = z
    return Episode(states, actions, rs)


def q_learning(mdp: MDP, rewards, start: int, horizon: int, gamma: float = 0.95, terminal=None,
               episodes: int = 2000, alpha: float = 0.5, eps_start: float = 1.0,
               eps_end: float = 0.05, q_init: float = 0.0, seed=None) -> np.ndarray:
    """(horizon, S, A) Q-values learnt from ``episodes`` episodes from ``start``:
    Q[t, s, a] += alpha (r[t, s, a] + gamma max_a' Q[t+1, z, a'] - Q[t, s, a]), the bootstrap
    0 at a terminal z or at the last step (a time-independent reward: one stationary table, see
    below).  Q starts at ``q_init`` (an optimistic start, above
    every return, makes the agent try what it has not tried); epsilon anneals linearly."""
    op = "q_learning"
    if horizon < 1 or episodes < 1 or not 0 < alpha <= 1:
        raise ValueError(f"{op}: need horizon >= 1, episodes >= 1, alpha in (0, 1]; "
                         f"got {horizon}, {episodes}, {alpha}")
    r = _time_rewards(op, mdp, rewards, horizon)
    term = _terminal(op, mdp, terminal)
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    # A reward that does not change with t (every baseline but inaction) is learnt by one
    # stationary table shared by all steps, bootstrapping from itself (the infinite-horizon
    # Q-function; experience at every step trains it): far fewer entries to explore.
    stationary = bool(np.all(r == r[:1]))
    T = 1 if stationary else horizon
    Q = np.full((T + 1, S, A), float(q_init))
    Q[T] = 0.0                               # after the last step the episode is over
    eps = np.linspace(eps_start, eps_end, episodes)
    cum = None if mdp.deterministic else np.cumsum(mdp.probs, -1)
    # Random numbers drawn per episode in bulk: one uniform for exploring, one action, one for
    # the transition of each step.
    for e in range(episodes):
        u, rand_a, u_next = rng.random(horizon), rng.integers(A, size=horizon), rng.random(horizon)
        s = int(start)
        for t in range(horizon):
            i, j = (0, 0) if stationary else (t, t + 1)
            q = Q[i, s]
            a = int(rand_a[t]) if u[t] < eps[e] else int(q.argmax())
            if cum is None:
                z = int(mdp.next_states[s, a])
            else:
                z = min(int(np.searchsorted(cum[s, a], u_next[t], side="right")), S - 1)
            target = r[t, s, a] + (0.0 if term[z] else gamma * Q[j, z].max())
            q[a] += alpha * (target - q[a])
            if term[z]:
                break
            s = z
    if stationary:
        return np.broadcast_to(Q[0], (horizon, S, A)).copy()
    return Q[:horizon]
