"""The tabular MDP and its exact solutions against hand-derived values (rlgen/mdp.py)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rlgen.envs.registration  # noqa: F401
from rlgen.mdp import (
    Backup,
    TabularModel,
    evaluate_policy,
    evaluation_sweep,
    iterate,
    optimality_sweep,
    policy_dynamics,
    reachable,
    solve_values,
    value_iteration,
)


def two_state_model() -> TabularModel:
    """State 0: action 0 stays (reward 1), action 1 goes to state 1 with probability 0.5 (reward 0)
    or ends the episode (reward 10). State 1: both actions end the episode with reward -1."""
    next_states = np.array([[[0, 0], [1, 0]], [[1, 1], [1, 1]]])
    probs = np.array([[[1.0, 0.0], [0.5, 0.5]], [[1.0, 0.0], [1.0, 0.0]]])
    rewards = np.array([[[1.0, 0.0], [0.0, 10.0]], [[-1.0, 0.0], [-1.0, 0.0]]])
    terminated = np.array([[[False, False], [False, True]], [[True, True], [True, True]]])
    return TabularModel(next_states, probs, rewards, terminated, np.array([1.0, 0.0]))


def test_one_backup_by_hand():
    m, gamma, v = two_state_model(), 0.9, np.array([2.0, 3.0])
    expected = np.array([[1 + 0.9 * 2.0, 0.5 * 0.9 * 3.0 + 0.5 * 10.0], [-1.0, -1.0]])
    np.testing.assert_allclose(Backup(m, gamma).q(v), expected)
    np.testing.assert_allclose(m.q_from_v(v, gamma), expected)
    policy = np.array([[0.25, 0.75], [1.0, 0.0]])
    np.testing.assert_allclose(evaluation_sweep(Backup(m, gamma), policy, v), (policy * expected).sum(axis=1))
    np.testing.assert_allclose(optimality_sweep(Backup(m, gamma), v), expected.max(axis=1))


def test_value_iteration_and_exact_evaluation_by_hand():
    """V(1) = -1; staying forever is worth 1 / (1 - gamma) = 10 at gamma 0.9, leaving 0.45 V(1) + 5."""
    m, gamma = two_state_model(), 0.9
    v, sweeps = value_iteration(m, gamma, tol=1e-12)
    np.testing.assert_allclose(v, [10.0, -1.0], atol=1e-9)
    assert 200 < sweeps < 400  # the error shrinks by gamma per sweep: log(1e-12 / 10) / log(0.9) ~ 284
    leave = np.array([[0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(solve_values(m, leave, gamma), [0.45 * -1.0 + 5.0, -1.0])
    np.testing.assert_allclose(evaluate_policy(m, leave, gamma, tol=1e-12), [4.55, -1.0], atol=1e-9)
    r_pi, p_pi = policy_dynamics(m, leave)
    np.testing.assert_allclose(r_pi, [5.0, -1.0])
    np.testing.assert_allclose(p_pi, [[0.0, 0.5], [0.0, 0.0]])  # half of state 0's mass ends the episode


def test_solve_values_is_none_for_an_endless_undiscounted_policy():
    stay = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert solve_values(two_state_model(), stay, 1.0) is None
    assert solve_values(two_state_model(), stay, 0.5)[0] == pytest.approx(2.0)


def test_random_walk_values_are_sutton_and_barto_example_6_2():
    model = gym.make("rlgen/RandomWalk5-v0").unwrapped.model
    uniform = np.full((model.n_states, model.n_actions), 0.5)
    np.testing.assert_allclose(solve_values(model, uniform, 1.0)[1:6], np.arange(1, 6) / 6, atol=1e-12)
    np.testing.assert_allclose(evaluate_policy(model, uniform, 1.0, tol=1e-13)[1:6], np.arange(1, 6) / 6, atol=1e-10)


def test_iterate_stops_at_the_tolerance_or_the_budget():
    halve = lambda v: v / 2  # noqa: E731
    v, n, delta = iterate(halve, np.array([8.0]), tol=1.0, max_sweeps=100)  # changes 4, 2, 1, 0.5
    assert (v[0], n, delta) == (0.5, 4, 0.5)
    v, n, delta = iterate(halve, np.array([8.0]), tol=0.0, max_sweeps=5)
    assert (v[0], n, delta) == (0.25, 5, 0.25)


def test_reachable_with_and_without_the_states_where_episodes_end():
    m = two_state_model()
    assert reachable(m).tolist() == [True, True]
    grid = gym.make("rlgen/GridWorld4x4-v0", layout=["S.G", "#.."]).unwrapped.model
    acting = reachable(grid)
    entered = reachable(grid, include_terminal=True)
    assert acting.tolist() == [True, True, False, False, True, True]  # the goal (2) ends episodes, 3 is a wall
    assert entered.tolist() == [True, True, True, False, True, True]


def test_p_view_round_trip():
    m = two_state_model()
    back = TabularModel.from_P(m.to_P(), 2, 2, m.initial)
    v = np.array([0.3, -2.0])
    np.testing.assert_allclose(back.q_from_v(v, 0.7), m.q_from_v(v, 0.7))
    assert m.to_P()[0][1] == [(0.5, 1, 0.0, False), (0.5, 0, 10.0, True)]
