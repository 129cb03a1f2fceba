"""dc.impact: reachability (native kernel vs the NumPy reference vs hand-computed values),
relative reachability, attainable utility, the AUP penalty, baselines, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

import deepcalc as dc
from deepcalc import _core

imp = dc.impact

# A 4-state chain 0 -> 1 -> 2 -> 3 (absorbing) with a "stay" action: R(x; y) = g^(y - x) for y >= x.
CHAIN = np.array([[1, 0], [2, 1], [3, 2], [3, 3]])


def test_chain_by_hand():
    g = 0.5
    R = imp.reachability(imp.MDP(CHAIN), g)
    want = np.array([[1, .5, .25, .125], [0, 1, .5, .25], [0, 0, 1, .5], [0, 0, 0, 1]])
    np.testing.assert_array_equal(R, want)
    np.testing.assert_array_equal(imp.reachability_reference(imp.MDP(CHAIN), g), want)


def test_gamma_one_is_reachability_and_limit():
    mdp = imp.MDP(CHAIN)
    R1 = imp.reachability(mdp, 1.0)
    np.testing.assert_array_equal(R1, np.triu(np.ones((4, 4))))
    # gamma_r -> 1: gamma^d -> 1 on reachable pairs, 0 stays 0
    for g in (0.9, 0.99, 0.999999):
        Rg = imp.reachability(mdp, g)
        assert np.all(Rg <= R1) and np.max(np.abs(Rg - R1)) <= 1 - g ** 3 + 1e-15
    np.testing.assert_array_equal(imp.reachability(mdp, 0.0), np.eye(4))


def test_symmetric_cycle():
    # a 5-cycle with left/right moves: R depends only on the cyclic distance, R = R.T
    S = 5
    nxt = np.stack([(np.arange(S) + 1) % S, (np.arange(S) - 1) % S], 1)
    R = imp.reachability(imp.MDP(nxt), 0.9)
    assert np.allclose(R, R.T)
    d = np.minimum(np.abs(np.arange(S)[:, None] - np.arange(S)), S - np.abs(np.arange(S)[:, None] - np.arange(S)))
    np.testing.assert_allclose(R, 0.9 ** d, rtol=1e-15)


def test_stochastic_by_hand():
    # 3 states. From 0: action 0 reaches 1 w.p. p, else stays in 0; action 1 goes to 2 surely.
    # 1 and 2 are absorbing.  R(0; 1) = g p / (1 - g (1 - p)), R(0; 2) = g.
    p, g = 0.4, 0.9
    P = np.zeros((3, 2, 3))
    P[0, 0, 1], P[0, 0, 0], P[0, 1, 2] = p, 1 - p, 1.0
    P[1, :, 1] = 1.0
    P[2, :, 2] = 1.0
    mdp = imp.MDP(P)
    assert not mdp.deterministic
    want = np.array([[1, g * p / (1 - g * (1 - p)), g], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_allclose(imp.reachability(mdp, g), want, atol=1e-9)
    np.testing.assert_allclose(imp.reachability_reference(mdp, g), want, atol=1e-10)
    # gamma_r = 1: the largest probability of ever reaching y (1 here: keep trying action 0)
    np.testing.assert_allclose(imp.reachability(mdp, 1.0, tol=1e-13)[0], [1, 1, 1], atol=1e-9)


@pytest.mark.parametrize("stochastic", [False, True])
def test_native_equals_reference_on_random_mdps(stochastic):
    # gamma_r = 1 on stochastic MDPs converges slowly (geometric in the chance of staying
    # away), so there it runs on small MDPs with a looser tolerance
    for seed in range(3):
        for g in (0.7, 0.95, 1.0):
            S = 12 if (stochastic and g == 1.0) else 30 + 11 * seed
            mdp = imp.random_mdp(S, 3, stochastic=stochastic, branching=2, seed=seed)
            tol = 1e-12 if g < 1 else 1e-10
            ref = imp.reachability_reference(mdp, g, tol=tol, max_iter=1_000_000)
            for dtype in (np.float64, np.float32):
                got = imp.reachability(mdp, g, dtype=dtype, tol=tol, max_iter=1_000_000)
                assert got.dtype == dtype
                # deterministic: gamma^d (pow) vs d products of gamma in the reference, a few ulps
                atol = 1e-6 if dtype == np.float32 else (1e-15 if not stochastic else
                                                          1e-9 if g < 1 else 1e-7)
                np.testing.assert_allclose(got, ref, atol=atol, rtol=0)
                assert np.array_equal(got > 0, ref > 0)


def test_reference_on_a_subset_of_targets_and_maze():
    mdp = imp.maze(12, 9, loops=0.2, seed=3)
    R = imp.reachability(mdp, 0.95)
    cols = np.array([0, 17, 107])
    np.testing.assert_allclose(imp.reachability_reference(mdp, 0.95, targets=cols), R[:, cols], rtol=1e-12)
    assert np.all(imp.reachability(mdp, 1.0) == 1.0)      # a maze connects every cell


def test_scalar_path_matches(tmp_path):
    # the reference kernels (reach_ref.cpp) against the fast ones, in a fresh process
    import os
    import subprocess
    import sys
    out = tmp_path / "scalar.npy"
    code = ("import sys, numpy as np, deepcalc as dc; from deepcalc import _core; "
            "assert _core.cpu_capability() == 'scalar'; "
            "m = dc.impact.random_mdp(50, 3, stochastic=True, seed=1); "
            "d = dc.impact.random_mdp(60, 4, seed=2); "
            "np.save(sys.argv[1], np.concatenate([dc.impact.reachability(m, 0.9, tol=1e-13).ravel(), "
            "dc.impact.reachability(d, 0.8).ravel()]))")
    env = dict(os.environ, DEEPCALC_CPU_CAPABILITY="scalar")
    subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True)
    scalar = np.load(out)
    fast = np.concatenate([imp.reachability(imp.random_mdp(50, 3, stochastic=True, seed=1), 0.9, tol=1e-13).ravel(),
                           imp.reachability(imp.random_mdp(60, 4, seed=2), 0.8).ravel()])
    np.testing.assert_allclose(fast, scalar, atol=1e-11)


def test_unreachability_and_relative_reachability_by_hand():
    R = imp.reachability(imp.MDP(CHAIN), 0.5)
    # d_UR(s; s') = 1 - R(s; s')
    assert imp.unreachability(R, 1, 2) == 0.5 and imp.unreachability(R, 2, 1) == 1.0
    # from baseline 0 every state is reachable: R[0] = (1, .5, .25, .125); from 2: (0, 0, 1, .5)
    # truncation: mean(max(0, R[0] - R[2])) = (1 + .5 + 0 + 0) / 4
    assert imp.relative_reachability(R, 2, 0) == pytest.approx(1.5 / 4)
    # from 0, states 2 and 3 are farther than from the baseline 2: (0, 0, 1 - .25, .5 - .125)
    assert imp.relative_reachability(R, 0, 2) == pytest.approx(1.125 / 4)
    assert imp.relative_reachability(R, 0, 2, "absolute") == pytest.approx((1 + .5 + .75 + .375) / 4)
    np.testing.assert_allclose(imp.relative_reachability(R, np.array([2, 0]), 0), [1.5 / 4, 0.0])
    assert imp.relative_reachability(R, 3, 3) == 0.0
    # undiscounted: the fraction of states no longer reachable
    R1 = imp.reachability(imp.MDP(CHAIN), 1.0)
    assert imp.relative_reachability(R1, 3, 0) == pytest.approx(3 / 4)


def test_attainable_utility_and_aup_by_hand():
    mdp = imp.MDP(CHAIN)
    g = 0.5
    # arrival reward 1 in state 3 only: V(3) = 1 / (1 - g) = 2 (stay), V(2) = 1 + g V(3) = 2,
    # V(1) = g V(2) = 1, V(0) = g V(1) = 0.5
    r = np.array([[0.0, 0, 0, 1]])
    V, Q = imp.attainable_utility(mdp, r, g, tol=1e-14, return_q=True)
    np.testing.assert_allclose(V, [[0.5, 1, 2, 2]], atol=1e-12)
    np.testing.assert_allclose(Q[0, 1], [1.0, 0.5], atol=1e-12)        # (advance, stay) in state 1
    # AUP: |Q(1, advance) - Q(1, stay)| / Q(1, stay) = 0.5 / 0.5
    assert imp.aup_penalty(Q, 1, 0, noop=1) == pytest.approx(1.0)
    assert imp.aup_penalty(Q, 1, 0, noop=1, scale="mean") == pytest.approx(0.5)
    assert imp.aup_penalty(Q, 1, 1, noop=1) == 0.0
    assert imp.attainable_utility_deviation(V, 0, 2) == pytest.approx(1.5)
    assert imp.attainable_utility_deviation(V, 2, 0, "truncation") == 0.0
    # state-action rewards equal to the arrival rewards give the same values
    np.testing.assert_allclose(imp.attainable_utility(mdp, mdp.expect(r), g, tol=1e-14), V, atol=1e-12)


def test_baselines_on_a_chain_with_a_noop():
    # states 0..3 on a line; actions 0 right, 1 noop.  Deviation: unreachability at gamma_r = 0.5.
    nxt = np.array([[1, 0], [2, 1], [3, 2], [3, 3]])
    mdp = imp.MDP(nxt, rewards=np.zeros((4, 2)), noop=1)
    pen = imp.Penalty("unreachability", "starting", gamma_r=0.5)
    d = imp.penalty_terms(mdp, 0, pen, 3)
    np.testing.assert_allclose(d[0], 1 - imp.reachability(mdp, 0.5)[nxt, 0])   # d(s'; s_0)
    assert d[0, 0, 0] == 1.0 and d[0, 0, 1] == 0.0
    # stepwise: the baseline is the noop from the same state, which the chain cannot reach back
    d = imp.penalty_terms(mdp, 0, imp.Penalty("unreachability", "stepwise", gamma_r=0.5), 2)
    np.testing.assert_array_equal(d[0, :, 1], 0.0)
    np.testing.assert_array_equal(d[0, :3, 0], 1.0)
    # inaction from 0 stays at 0 (noop), so it equals the starting baseline here
    np.testing.assert_array_equal(imp.penalty_terms(mdp, 0, imp.Penalty("unreachability", "inaction", gamma_r=0.5), 3),
                                  imp.penalty_terms(mdp, 0, pen, 3))
    r = imp.penalized_rewards(mdp, 0, imp.Penalty("unreachability", "starting", beta=2.0, gamma_r=0.5), 3)
    np.testing.assert_allclose(r, -2.0 * imp.penalty_terms(mdp, 0, pen, 3))


def test_inaction_baseline_follows_the_noop_dynamics():
    # a belt: the noop moves 0 -> 1 -> 2 (2 absorbing); action 0 jumps to the absorbing state 3
    nxt = np.array([[3, 1], [3, 2], [3, 2], [3, 3]])
    mdp = imp.MDP(nxt, rewards=np.zeros((4, 2)), noop=1)
    pen = imp.Penalty("unreachability", "inaction", gamma_r=1.0)
    d = imp.penalty_terms(mdp, 0, pen, 3)
    # at step t the baseline is state min(t + 1, 2); from 3 nothing else is reachable
    assert d[0, 0, 0] == 1.0 and d[0, 0, 1] == 0.0 and d[1, 1, 1] == 0.0
    # rollouts: from 1 and 2 the noop rollouts meet in 2, so the rolled deviation is small
    roll = imp.penalty_terms(mdp, 0, imp.Penalty("unreachability", "stepwise_rollouts", gamma_r=1.0,
                                                 rollout_steps=2, rollout_gamma=1.0), 1)
    assert roll[0, 0, 1] == 0.0 and roll[0, 0, 0] == 1.0


def test_stochastic_penalty_is_an_expectation():
    P = np.zeros((3, 2, 3))
    P[0, 0, 1], P[0, 0, 2] = 0.5, 0.5
    P[0, 1, 0] = 1.0
    P[1, :, 1] = 1.0
    P[2, :, 2] = 1.0
    mdp = imp.MDP(P, rewards=np.zeros((3, 2)), noop=1)
    pen = imp.Penalty("relative_reachability", "starting", gamma_r=1.0)
    d = imp.penalty_terms(mdp, 0, pen, 1)
    R = imp.reachability(mdp, 1.0)
    want = 0.5 * imp.relative_reachability(R, 1, 0) + 0.5 * imp.relative_reachability(R, 2, 0)
    # R(0; .) = (1, .5, .5): from 0, state 1 is reached w.p. 1/2 at most (else 2, absorbing);
    # from 1 and from 2 only themselves, so each relative reachability is (1 + .5) / 3
    assert d[0, 0, 0] == pytest.approx(want) and want == pytest.approx(0.5)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"next state 5.*\[0, 2\)"):
        imp.MDP(np.array([[0, 5], [1, 1]]))
    with pytest.raises(ValueError, match="sum to"):
        imp.MDP(np.full((2, 1, 2), 0.3))
    with pytest.raises(ValueError, match="NaN"):
        imp.MDP(np.array([[[np.nan, 1.0]], [[0.0, 1.0]]]))
    with pytest.raises(ValueError, match="expected \\(S, A, S\\)"):
        imp.MDP(np.ones((2, 1, 3)) / 3)
    with pytest.raises(ValueError, match="rewards have shape"):
        imp.MDP(CHAIN, rewards=np.zeros(4))
    with pytest.raises(ValueError, match="gamma must be in"):
        imp.reachability(imp.MDP(CHAIN), 1.5)
    with pytest.raises(ValueError, match="gamma must be in"):
        imp.reachability(imp.MDP(CHAIN), float("nan"))
    with pytest.raises(TypeError, match="dtype"):
        imp.reachability(imp.MDP(CHAIN), 0.5, dtype=np.int32)
    with pytest.raises(ValueError, match="deviation must be"):
        imp.relative_reachability(np.eye(3), 0, 1, "squared")
    with pytest.raises(ValueError, match="outside"):
        imp.relative_reachability(np.eye(3), 3, 1)
    with pytest.raises(ValueError, match="holds NaN"):
        imp.relative_reachability(np.full((2, 2), np.nan), 0, 1)
    with pytest.raises(ValueError, match="measure must be"):
        imp.Penalty("distance")
    with pytest.raises(ValueError, match="baseline is 'stepwise'"):
        imp.Penalty("aup", "starting")
    with pytest.raises(ValueError, match="needs the MDP's noop"):
        imp.penalty_terms(imp.MDP(CHAIN, rewards=np.zeros((4, 2))), 0, imp.Penalty("unreachability", "stepwise"), 2)
    with pytest.raises(ValueError, match="reward_fns must be"):
        imp.attainable_utility(imp.MDP(CHAIN), np.zeros((2, 3)))


def test_kernel_bad_inputs():
    f64 = np.dtype("float64")
    with pytest.raises(ValueError, match=r"reach_deterministic: next .* holds state 7"):
        _core.reach_deterministic(np.array([[7]], dtype=np.int64), 0.5, f64)
    with pytest.raises(TypeError, match="reach_deterministic: next must be int64"):
        _core.reach_deterministic(np.array([[0]], dtype=np.int32), 0.5, f64)
    with pytest.raises(ValueError, match="must be \\(S, A\\)"):
        _core.reach_deterministic(np.array([0], dtype=np.int64), 0.5, f64)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.reach_deterministic(np.zeros((3, 4), dtype=np.int64)[:, ::2], 0.5, f64)
    ip, ix, pr = np.array([0, 2]), np.array([0, 0]), np.array([0.5, 0.6])
    with pytest.raises(ValueError, match="sum to 1.1"):
        _core.reach_stochastic(ip, ix, pr, 1, 1, 0.5, 1e-9, 10, f64)
    with pytest.raises(ValueError, match="finite and >= 0"):
        _core.reach_stochastic(ip, ix, np.array([np.nan, 1.0]), 1, 1, 0.5, 1e-9, 10, f64)
    with pytest.raises(ValueError, match="indptr has shape"):
        _core.reach_stochastic(np.array([0, 1, 2]), ix, pr, 1, 1, 0.5, 1e-9, 10, f64)
    assert _core.reach_deterministic(np.zeros((0, 3), dtype=np.int64), 0.5, f64).shape == (0, 0)


def test_no_convergence_is_an_error():
    mdp = imp.random_mdp(20, 2, stochastic=True, seed=0)
    with pytest.raises(RuntimeError, match="did not reach tol"):
        imp.reachability(mdp, 1.0, tol=0.0, max_iter=3)
