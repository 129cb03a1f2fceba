"""Impact measures on tabular MDPs: reachability, relative reachability, attainable utility and
the AUP penalty, the baselines they compare with, the classic side-effect gridworlds, and the
agents that learn under the penalties.

    mdp = dc.impact.MDP(next_states)                   # (S, A) ints, or (S, A, S) probabilities
    R = dc.impact.reachability(mdp, gamma_r=0.99)      # (S, S), native kernel
    d = dc.impact.relative_reachability(R, state, baseline_state)
    env = dc.impact.environments.make("box")
    pen = dc.impact.Penalty("relative_reachability", "stepwise_rollouts", beta=1.0)
    r = env.penalized_rewards(pen)                     # (horizon, S, A): r - beta * d
    Q = dc.impact.agents.value_iteration(env.mdp, r, env.horizon, 0.95, env.terminal)

Papers: Krakovna et al. 2019, "Penalizing side effects using stepwise relative reachability";
Turner et al. 2020, "Conservative Agency via Attainable Utility Preservation".
"""
from __future__ import annotations

from . import agents, environments, render
from .agents import Episode, q_learning, rollout, value_iteration
from .environments import make, maze, random_mdp
from .gridworld import ACTIONS, NOOP, Environment, GridWorld
from .mdp import MDP
from .measures import (attainable_utility, attainable_utility_deviation, aup_penalty,
                       random_reward_functions, reachability, relative_reachability,
                       unreachability)
from .penalty import (BASELINES, MEASURES, Penalty, deviation_matrix, penalized_rewards,
                      penalty_terms)
from .reference import reachability_reference

__all__ = ["MDP", "reachability", "reachability_reference", "unreachability",
           "relative_reachability", "attainable_utility", "attainable_utility_deviation",
           "aup_penalty", "random_reward_functions", "Penalty", "MEASURES", "BASELINES",
           "deviation_matrix", "penalty_terms", "penalized_rewards", "value_iteration",
           "q_learning", "rollout", "Episode", "make", "maze", "random_mdp", "Environment",
           "GridWorld", "ACTIONS", "NOOP", "agents", "environments", "render"]
