"""dc.impact environments step by step, the agents (Q-learning reaches value iteration's
policy), rendering, and the --quick experiment's results.json on a reduced size."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest

import deepcalc as dc

imp = dc.impact
UP, DOWN, LEFT, RIGHT, NOOP = range(5)


def walk(env, actions):
    s, states, rewards = env.start, [env.states[env.start]], []
    for a in actions:
        rewards.append(env.mdp.rewards[s, a])
        s = int(env.mdp.next_states[s, a])
        states.append(env.states[s])
    return s, states, rewards


def test_box_push_and_corner():
    env = imp.make("box")
    assert env.states[env.start] == (1, 2, 2, 2)
    s, states, r = walk(env, [DOWN])
    assert states[-1] == (2, 2, 3, 2)                 # the box pushed down into the corner
    assert walk(env, [UP])[1][-1] == (1, 2, 2, 2)     # wall: nothing moves
    s, states, r = walk(env, [LEFT, DOWN, RIGHT])
    assert states[-1] == (2, 2, 2, 3)                 # pushed right, along the top wall
    s, states, r = walk(env, [DOWN, RIGHT, RIGHT, DOWN, DOWN])
    assert env.terminal[s] and r[-1] == 1.0 and sum(r) == 1.0
    ep = imp.Episode([env.index[x] for x in states], [DOWN, RIGHT, RIGHT, DOWN, DOWN], r)
    m = env.evaluate(ep)
    assert m["goal_reached"] and m["side_effect"] and m["performance"] == 0.0
    long = [LEFT, DOWN, RIGHT, DOWN, RIGHT, RIGHT, DOWN]
    s, states, r = walk(env, long)
    m = env.evaluate(imp.Episode([env.index[x] for x in states], long, r))
    assert m["goal_reached"] and not m["side_effect"]


def test_vase_belt_moves_breaks_and_rewards_once():
    env = imp.make("vase")
    s, states, r = walk(env, [NOOP] * 5)
    assert [x[2:4] for x in states] == [(2, 1), (2, 2), (2, 3), (2, 4), (-1, -1), (-1, -1)]
    assert sum(r) == 0
    s, states, r = walk(env, [NOOP, DOWN])            # vase at (2, 2) under the agent: pushed off
    assert states[-1][2:] == (3, 2, 1) and r == [0.0, 1.0]
    # put it back on the belt from below: it rides to the end and breaks; no second reward
    back = [NOOP, DOWN, RIGHT, DOWN, DOWN, LEFT, UP, NOOP, NOOP, NOOP]
    s, states, r = walk(env, back)
    assert states[-1][2:4] == (-1, -1) and sum(r) == 1.0
    m = env.evaluate(imp.Episode([env.index[x] for x in states], back, r))
    assert m["goal_reached"] and m["side_effect"] and m["offsetting"]
    # the physical world leaves out the reward's flag
    assert env.physical_mdp.n_states < env.n_states


def test_sushi_is_eaten_unless_taken_off():
    env = imp.make("sushi")
    s, states, r = walk(env, [NOOP] * 3)
    assert [x[2:] for x in states] == [(2, 1), (2, 2), (2, 3), (-1, -1)]
    s, states, r = walk(env, [RIGHT, DOWN])
    assert states[-1][2:] == (3, 2)
    m = env.evaluate(imp.Episode([env.index[x] for x in states], [RIGHT, DOWN], r))
    assert m["interference"] and not m["goal_reached"]


def test_survival_switch_off_and_button():
    env = imp.make("survival")
    s, states, r = walk(env, [RIGHT, RIGHT, RIGHT])
    assert states[2][4] == 1 and env.terminal[env.index[states[2]]]    # off after two steps
    assert states[3] == states[2]                                       # and frozen
    s, states, r = walk(env, [DOWN, DOWN])
    assert states[-1][3] == 1 and states[-1][4] == 0                    # button: switch disabled


def test_dog_paces_and_can_be_injured():
    env = imp.make("dog")
    s, states, r = walk(env, [NOOP, NOOP, NOOP, NOOP])
    assert [x[2:5] for x in states] == [(2, 1, 1), (2, 2, 1), (2, 3, 1), (2, 3, -1), (2, 2, -1)]
    s, states, r = walk(env, [DOWN])
    assert states[-1][5] == 1                                           # walked into the dog
    s, states, r = walk(env, [NOOP, DOWN, DOWN])
    assert states[-1][5] == 0 and r[-1] == 1.0


def test_burning_building_reward_needs_the_short_path():
    env = imp.make("burning_building")
    s, states, r = walk(env, [RIGHT] * 4)
    assert states[2][2] == 1 and r[-1] == 5.0
    long = [DOWN, DOWN, RIGHT, RIGHT, RIGHT, RIGHT, UP, UP]
    s, states, r = walk(env, long)
    assert env.terminal[s] and sum(r) == 0.0 and states[-1][2] == 0


def test_slip_makes_a_stochastic_environment():
    env = imp.make("box", slip=0.2)
    P = env.mdp.probabilities()
    det = imp.make("box")
    assert not env.mdp.deterministic and np.allclose(P.sum(-1), 1)
    s = det.start
    # from the start only 'down' pushes the box; up, right (walls) and noop stay put
    assert P[s, DOWN, det.mdp.next_states[s, DOWN]] == pytest.approx(0.8 + 0.2 / 5)
    assert P[s, DOWN, s] == pytest.approx(0.2 * 3 / 5)
    R = imp.reachability(env.mdp, 0.9)
    assert R.shape == (env.n_states, env.n_states) and np.all(np.diag(R) == 1)


@pytest.mark.parametrize("baseline", imp.BASELINES)
def test_physical_world_penalty_equals_the_full_state_one(baseline):
    # the vase's reward flag is not physical: computing the penalty on the physical MDP and
    # spreading it back equals computing it on the full MDP with the spread deviation matrix
    env = imp.make("vase")
    pen = imp.Penalty("relative_reachability", baseline, beta=1.0)
    full = imp.penalty_terms(env.mdp, env.start, pen, env.horizon, D=env.deviation_matrix(pen))
    np.testing.assert_allclose(env.penalty_terms(pen), full, atol=1e-12)


def test_penalized_agent_on_a_stochastic_environment():
    env = imp.make("box", slip=0.1)
    pen = imp.Penalty("relative_reachability", "stepwise", beta=1.0)
    r = env.penalized_rewards(pen)
    Q = imp.value_iteration(env.mdp, r, env.horizon, 0.95, env.terminal)
    # the first action: around the box (left), not the push down into the corner
    assert np.argmax(Q[0, env.start]) == LEFT
    plain = imp.value_iteration(env.mdp, env.mdp.rewards, env.horizon, 0.95, env.terminal)
    assert np.argmax(plain[0, env.start]) == DOWN


@pytest.mark.parametrize("name", ["box", "dog"])
def test_q_learning_reaches_value_iteration_policy(name):
    env = imp.make(name)
    pen = imp.Penalty("relative_reachability", "stepwise", beta=1.0)
    r = env.penalized_rewards(pen)
    Qv = imp.value_iteration(env.mdp, r, env.horizon, 0.95, env.terminal)
    Ql = imp.q_learning(env.mdp, r, env.start, env.horizon, 0.95, env.terminal, episodes=3000,
                        alpha=1.0, seed=0)     # deterministic world: alpha = 1 is exact
    opt = imp.rollout(env.mdp, Qv, env.start, env.horizon, env.terminal)
    got = imp.rollout(env.mdp, Ql, env.start, env.horizon, env.terminal)
    assert got.states == opt.states
    # the learnt value of the start equals the optimum
    assert Ql[0, env.start].max() == pytest.approx(Qv[0, env.start].max(), abs=1e-9)


def test_value_iteration_by_hand():
    # two states; action 0 moves 0 -> 1 with reward 1, 1 is terminal; action 1 stays, reward 0.1
    mdp = imp.MDP(np.array([[1, 0], [1, 1]]), rewards=np.array([[1.0, 0.1], [0.0, 0.0]]))
    Q = imp.value_iteration(mdp, mdp.rewards, 3, 0.5, terminal=np.array([False, True]))
    # last step: Q = r; earlier: Q(0, stay) = 0.1 + 0.5 * V(0) with V(0) = max(1, .) = 1
    np.testing.assert_allclose(Q[:, 0], [[1.0, 0.6], [1.0, 0.6], [1.0, 0.1]])


def test_q_learning_on_a_stochastic_chain():
    P = np.zeros((2, 2, 2))
    P[0, 0] = [0.5, 0.5]                 # try: reach 1 w.p. 1/2
    P[0, 1] = [1.0, 0.0]
    P[1, :, 1] = 1.0
    mdp = imp.MDP(P, rewards=np.array([[0.0, 0.0], [0.0, 0.0]]))
    r = np.zeros((3, 2, 2))
    r[:, 0, 0] = 0.5                      # expected reward 0.5 for trying
    Qv = imp.value_iteration(mdp, r, 3, 0.9, terminal=np.array([False, True]))
    Ql = imp.q_learning(mdp, r, 0, 3, 0.9, terminal=np.array([False, True]), episodes=3000,
                        alpha=0.05, seed=1)
    assert np.argmax(Ql[0, 0]) == np.argmax(Qv[0, 0]) == 0
    assert Ql[0, 0, 0] == pytest.approx(Qv[0, 0, 0], abs=0.05)


def test_render_ascii_and_png(tmp_path):
    env = imp.make("vase")
    ep = imp.rollout(env.mdp, imp.value_iteration(env.mdp, env.mdp.rewards, env.horizon, 0.95, env.terminal),
                     env.start, 4, env.terminal)
    text = imp.render.render_ascii(env, ep)
    assert "t=0 start" in text and "#o>>>#".replace("o", "V") in text and text.count("A") >= 5
    pytest.importorskip("matplotlib")
    path = imp.render.render_png(env, ep, str(tmp_path / "ep.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"


def test_maze_and_random_generators():
    m = imp.maze(30, 20, loops=0.0, seed=0)
    assert m.n_states == 600 and m.n_actions == 5 and m.deterministic
    # a perfect maze is a tree: 599 passages, each counted from both ends
    moves = (m.next_states[:, :4] != np.arange(600)[:, None]).sum()
    assert moves == 2 * 599
    assert np.all(imp.reachability(m, 1.0) == 1)
    with pytest.raises(ValueError, match="loops"):
        imp.maze(3, 3, loops=2.0)
    with pytest.raises(ValueError, match="unknown environment"):
        imp.make("lava")


def test_quick_experiment_results(tmp_path):
    from deepcalc.experiments import impact as exp
    res = exp.run(quick=True, seeds=1, episodes=300, envs=["box", "sushi", "vase"])
    assert {"config", "runs", "summary", "claims", "seconds"} <= set(res)
    assert all({"env", "measure", "baseline", "exact", "q_learning"} <= set(r) for r in res["runs"])
    by = {(c["env"], c["measure"], tuple(c["baselines"])): c for c in res["claims"] if c["env"] in ("box", "sushi", "vase")}
    # the exact policies reproduce the papers' baseline effects on these three worlds
    assert by[("sushi", "relative_reachability", ("starting",))]["agree"]["exact"]
    assert by[("vase", "relative_reachability", ("inaction",))]["agree"]["exact"]
    assert by[("vase", "relative_reachability", ("stepwise", "stepwise_rollouts"))]["agree"]["exact"]
    args = types.SimpleNamespace(out=str(tmp_path), quick=True, seed=0, seeds=1, episodes=200, envs="box")
    assert exp.main(args) == 0
    data = json.load(open(tmp_path / "results.json"))
    assert data["config"]["seeds"] == 1 and len(data["runs"]) == 14
    assert (tmp_path / "results.md").read_text().startswith("# Side-effect penalties")
