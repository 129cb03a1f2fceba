"""Environments by name, and generators of random MDPs and mazes for scale.

    make('box' | 'vase' | 'sushi' | 'survival' | 'dog' | 'burning_building' | 'building', slip=0.0)
    maze(width, height, loops=0.1, seed=None)       -> MDP with width * height states, 5 actions
    random_mdp(n_states, n_actions, stochastic=False, branching=3, seed=None) -> MDP
"""
from __future__ import annotations

import numpy as np

from .classic import Box, BurningBuilding, Dog, SushiBelt, Survival, VaseBelt
from .gridworld import DELTAS, NOOP, Environment
from .mdp import MDP

WORLDS = {
    "box": Box,
    "vase": VaseBelt,
    "sushi": SushiBelt,
    "survival": Survival,
    "dog": Dog,
    "burning_building": lambda: BurningBuilding(fire=True),
    "building": lambda: BurningBuilding(fire=False),
}


def names() -> list[str]:
    return list(WORLDS)


def make(name: str, slip: float = 0.0) -> Environment:
    """The named classic environment, enumerated; ``slip`` > 0 makes it stochastic (the action
    is replaced by a uniformly random one with that probability)."""
    if name not in WORLDS:
        raise ValueError(f"make: unknown environment {name!r}; available: {names()}")
    return Environment(WORLDS[name](), slip=slip)


def maze(width: int, height: int, loops: float = 0.1, seed=None) -> MDP:
    """A width x height grid maze (state r * width + c per cell; actions up, down, left, right,
    no-op) carved by a randomized depth-first search, so every cell reaches every other, then
    with a fraction ``loops`` of the remaining inner walls knocked down to make cycles."""
    if width < 1 or height < 1 or not 0.0 <= loops <= 1.0:
        raise ValueError(f"maze: need width, height >= 1 and loops in [0, 1], got {width}, {height}, {loops}")
    rng = np.random.default_rng(seed)
    S = width * height
    open_ = np.zeros((S, 4), dtype=bool)            # passage from the cell in direction 0..3
    seen = np.zeros(S, dtype=bool)
    stack, seen[0] = [0], True
    while stack:
        cell = stack[-1]
        r, c = divmod(cell, width)
        options = [(d, (r + dr) * width + c + dc) for d, (dr, dc) in enumerate(DELTAS[:4])
                   if 0 <= r + dr < height and 0 <= c + dc < width and not seen[(r + dr) * width + c + dc]]
        if not options:
            stack.pop()
            continue
        d, nxt = options[rng.integers(len(options))]
        open_[cell, d] = open_[nxt, d ^ 1] = True    # directions pair up as (0, 1) and (2, 3)
        seen[nxt] = True
        stack.append(nxt)
    # knock down walls: each inner wall once, from the cell above or to the left of it
    r, c = np.divmod(np.arange(S), width)
    for d, ok in ((1, r < height - 1), (3, c < width - 1)):
        walls = np.nonzero(ok & ~open_[:, d])[0]
        pick = walls[rng.random(walls.size) < loops]
        other = pick + (width if d == 1 else 1)
        open_[pick, d] = open_[other, d ^ 1] = True
    nxt = np.empty((S, 5), dtype=np.int64)
    for d, (dr, dc) in enumerate(DELTAS[:4]):
        nxt[:, d] = np.where(open_[:, d], np.arange(S) + dr * width + dc, np.arange(S))
    nxt[:, NOOP] = np.arange(S)
    return MDP(nxt, noop=NOOP)


def random_mdp(n_states: int, n_actions: int, stochastic: bool = False, branching: int = 3,
               seed=None) -> MDP:
    """A random MDP: next states uniform over the states (deterministic), or (stochastic)
    ``branching`` successors per state-action drawn uniformly with Dirichlet(1) probabilities.
    Action 0 is not special; no noop is declared."""
    if n_states < 1 or n_actions < 1 or branching < 1:
        raise ValueError(f"random_mdp: need n_states, n_actions, branching >= 1, got "
                         f"{n_states}, {n_actions}, {branching}")
    rng = np.random.default_rng(seed)
    if not stochastic:
        return MDP(rng.integers(n_states, size=(n_states, n_actions)))
    P = np.zeros((n_states, n_actions, n_states))
    k = min(branching, n_states)
    for x in range(n_states):
        for a in range(n_actions):
            P[x, a, rng.choice(n_states, size=k, replace=False)] = rng.dirichlet(np.ones(k))
    return MDP(P)
