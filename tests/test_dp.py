"""Dynamic programming against hand-derived values, and the DP agents through their loop."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from tabular_run import train

from rlgen.distributions import greedy_probs
from rlgen.envs.gridworld import GridWorldEnv
from rlgen.envs.model import model_of
from rlgen.mdp import Backup, evaluate_policy, evaluation_sweep, solve_values, value_iteration

# Sutton & Barto Figure 4.1 (k = infinity): V of the equiprobable random policy on Example 4.1
FIG_4_1 = np.array([[0, -14, -20, -22], [-14, -18, -20, -20], [-20, -20, -18, -14], [-22, -20, -14, 0]], float)


def test_policy_evaluation_reproduces_figure_4_1():
    model = gym.make("rlgen/GridWorld4x4-v0").unwrapped.model
    v = evaluate_policy(model, np.full((16, 4), 0.25), gamma=1.0, tol=1e-12)
    np.testing.assert_allclose(v.reshape(4, 4), FIG_4_1, atol=1e-8)


def test_first_sweeps_match_figure_4_1():
    """k = 1 and k = 2 of Figure 4.1: -1 everywhere, then -1.7 / -2.0 (rounded in the book)."""
    backup = Backup(gym.make("rlgen/GridWorld4x4-v0").unwrapped.model, 1.0)
    pi = np.full((16, 4), 0.25)
    v1 = evaluation_sweep(backup, pi, np.zeros(16))
    v2 = evaluation_sweep(backup, pi, v1)
    assert np.all(v1[1:15] == -1.0)
    assert v2[1] == pytest.approx(-1.75) and v2[5] == pytest.approx(-2.0)


def test_value_iteration_is_minus_the_distance_to_the_nearest_corner():
    model = gym.make("rlgen/GridWorld4x4-v0").unwrapped.model
    v, _ = value_iteration(model, gamma=1.0)
    r, c = np.divmod(np.arange(16), 4)
    np.testing.assert_allclose(v, -np.minimum(r + c, 6 - r - c))


def test_slippery_corridor_closed_form():
    """S . G with two moves and slip p: always moving right, by hand
    V0 = -1 + g[(1 - p/2) V1 + p/2 V0],  V1 = -1 + g (p/2) V0."""
    p, g = 0.4, 0.9
    model = GridWorldEnv(["S.G"], slip=p, moves=2).model
    v, _ = value_iteration(model, gamma=g)
    a = np.array([[1 - g * p / 2, -g * (1 - p / 2)], [-g * p / 2, 1.0]])
    np.testing.assert_allclose(v[:2], np.linalg.solve(a, [-1.0, -1.0]), atol=1e-9)


@pytest.mark.parametrize("agent", ["value_iteration", "policy_iteration"])
def test_dp_agents_solve_cliff_walking(agent):
    ag, run = train(agent, "rlgen/CliffWalking-v0", 10_000, gamma=0.9)
    assert ag.V[36] == pytest.approx(-(1 - 0.9**13) / (1 - 0.9))  # 13 steps along the cliff edge
    assert ag.num_steps < 10_000  # stopped early: at the tolerance, or with a stable policy
    assert ag.stable if agent == "policy_iteration" else run.logged["dp/delta"][-1] < 1e-8


def test_policy_and_value_iteration_agree_on_gymnasium_frozen_lake():
    model = model_of(gym.make("FrozenLake-v1"))
    vi, _ = train("value_iteration", "FrozenLake-v1", 100_000, gamma=0.99, tol=1e-12)
    pi, _ = train("policy_iteration", "FrozenLake-v1", 100_000, gamma=0.99, tol=1e-12)
    np.testing.assert_allclose(vi.V, pi.V, atol=1e-8)
    # the same greedy choices up to exact ties (FrozenLake has several)
    assert np.all(pi.Q[np.arange(16), pi.policy.argmax(axis=1)] >= vi.Q.max(axis=1) - 1e-6)
    v_check = evaluate_policy(model, greedy_probs(vi.Q), 0.99, tol=1e-12)  # the greedy policy earns V*
    np.testing.assert_allclose(v_check, vi.V, atol=1e-6)


def test_exact_solve_of_the_random_policy_is_figure_4_1():
    model = gym.make("rlgen/GridWorld4x4-v0").unwrapped.model
    np.testing.assert_allclose(solve_values(model, np.full((16, 4), 0.25), 1.0).reshape(4, 4), FIG_4_1, atol=1e-9)
    always_left = np.zeros((16, 4))
    always_left[:, 3] = 1.0
    assert solve_values(model, always_left, 1.0) is None  # the right column bumps into the wall forever


def test_policy_iteration_solves_cliff_walking_undiscounted_in_a_few_improvements():
    """Under gamma = 1 the random walk's values take millions of sweeps to settle; solved exactly,
    policy iteration needs a handful of improvements (Howard 1960)."""
    model = gym.make("rlgen/CliffWalking-v0").unwrapped.model
    ag, run = train("policy_iteration", "rlgen/CliffWalking-v0", 100, gamma=1.0)
    v_star, _ = value_iteration(model, gamma=1.0)
    np.testing.assert_allclose(ag.V, v_star, atol=1e-8)
    assert ag.V[36] == -13.0 and ag.num_steps <= 10
    sweeps, _ = train("policy_iteration", "rlgen/CliffWalking-v0", 200, gamma=1.0, evaluation="sweeps")
    assert sweeps.num_steps == 200 and not sweeps.stable  # still evaluating the random walk


def test_exact_policy_iteration_on_a_large_model_is_a_clear_error():
    from rlgen.errors import UserError

    with pytest.raises(UserError, match="evaluation=sweeps"):
        train("policy_iteration", "rlgen/Maze-v0", 5, env_kwargs={"size": 101})


def test_budget_counts_sweeps():
    ag, run = train("value_iteration", "rlgen/Maze-v0", 5, env_kwargs={"size": 31}, gamma=1.0)
    assert ag.num_steps == 5 and len(run.logged["dp/delta"]) == 5


def test_policy_evaluation_of_a_saved_policy(tmp_path):
    path = tmp_path / "policy.npy"
    policy = np.zeros((16, 4))
    policy[:, 3] = 1.0  # always left: from row r, column c it takes c steps only on row 0
    np.save(path, policy)
    ag, _ = train("policy_evaluation", "rlgen/GridWorld4x4-v0", 1000, gamma=0.5, policy=str(path))
    assert ag.V[3] == pytest.approx(-(1 + 0.5 + 0.25))
    assert ag.V[4] == pytest.approx(-2.0)  # loops against the wall forever: -1 / (1 - 0.5)


def test_dp_on_env_without_model_is_a_clear_error():
    from rlgen.errors import UserError

    with pytest.raises(UserError, match="no tabular model"):
        train("value_iteration", "Blackjack-v1", 10)
