"""Learning agents against exact answers: the DP optimum, RandomWalk's true values, CliffWalking's paths."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from tabular_run import train

from rlgen.agents.mc import first_visits
from rlgen.distributions import epsilon_greedy_probs, epsilon_greedy_value, greedy_probs
from rlgen.mdp import value_iteration
from rlgen.returns import episode_returns, linear_decay, n_step_target

# a small MDP where every free cell is a start, so every state keeps being visited
SMALL = {"layout": ["SSSS", "S#SS", "SSSG"], "step_reward": -1.0}
GAMMA = 0.9


def test_pure_pieces():
    np.testing.assert_allclose(episode_returns([1.0, 0.0, 2.0], 0.5), [1.5, 1.0, 2.0])
    np.testing.assert_allclose(episode_returns([1.0, 1.0], 0.5, bootstrap=4.0), [1 + 0.5 + 1.0, 1 + 2.0])
    assert first_visits([3, 4, 3, 5]).tolist() == [True, True, False, True]
    assert n_step_target([1.0, 1.0], 0.5, bootstrap=8.0) == 1 + 0.5 + 0.25 * 8
    q = np.array([[1.0, 3.0, 3.0, 0.0]])
    np.testing.assert_allclose(greedy_probs(q), [[0, 0.5, 0.5, 0]])
    np.testing.assert_allclose(epsilon_greedy_probs(q, 0.2), [[0.05, 0.45, 0.45, 0.05]])
    assert epsilon_greedy_value(q[0], 0.2) == pytest.approx(0.05 + 0.45 * 3 * 2)
    assert linear_decay(1.0, 0.0, 10, 5) == 0.5 and linear_decay(1.0, 0.0, 10, 50) == 0.0


def dp_optimum():
    model = gym.make("rlgen/GridWorld4x4-v0", **SMALL).unwrapped.model
    v, _ = value_iteration(model, GAMMA)
    return v, greedy_probs(model.q_from_v(v, GAMMA))


DECAY = {"epsilon": 0.5, "epsilon_final": 0.0, "epsilon_decay_steps": 15_000}
CONTROL = {
    "q_learning": dict(alpha=0.5, epsilon=0.3),
    "double_q_learning": dict(alpha=0.5, epsilon=0.3),
    "sarsa": dict(alpha=0.5, **DECAY),
    "expected_sarsa": dict(alpha=0.5, **DECAY),
    "mc_control": dict(alpha=0.1, **DECAY),
    "mc_exploring_starts": dict(alpha=0.1),
    "mc_off_policy": dict(epsilon=0.3, initial_value=-10.0),
}


@pytest.mark.parametrize("agent", sorted(CONTROL))
def test_control_agents_converge_to_the_dp_optimum(agent):
    v_star, pi_star = dp_optimum()
    ag, _ = train(agent, "rlgen/GridWorld4x4-v0", 20_000, env_kwargs=SMALL, gamma=GAMMA, **CONTROL[agent])
    free = np.flatnonzero(np.isin(np.array(SMALL["layout"]).view("<U1").ravel(), list("S.")))
    learned = ag.Q.max(axis=1)
    np.testing.assert_allclose(learned[free], v_star[free], atol=0.05)
    chosen = ag.act(free)
    assert np.all(pi_star[free, chosen] > 0), "greedy policy differs from the DP optimum"


@pytest.mark.parametrize("agent, config", [
    ("mc_prediction", dict(first_visit=True)),
    ("mc_prediction", dict(first_visit=False)),
    ("td_prediction", dict(alpha=0.01, n=1)),
])
def test_prediction_converges_to_random_walk_values(agent, config):
    """S&B Example 6.2: V(A..E) = 1/6 .. 5/6 under the random policy."""
    ag, _ = train(agent, "rlgen/RandomWalk5-v0", 30_000, gamma=1.0, **config)
    rms = np.sqrt(np.mean((ag.V[1:6] - np.arange(1, 6) / 6) ** 2))
    assert rms < 0.03, f"RMS error {rms:.3f}"


def test_n_step_td_on_random_walk_19():
    """S&B Example 7.1: n-step TD on the 19-state walk, true values -0.9 .. 0.9."""
    ag, _ = train("td_prediction", "rlgen/RandomWalk19-v0", 60_000, gamma=1.0, alpha=0.01, n=4)
    rms = np.sqrt(np.mean((ag.V[1:20] - np.arange(-9, 10) / 10) ** 2))
    assert rms < 0.06, f"RMS error {rms:.3f}"


def greedy_path(ag, model, start: int = 36, limit: int = 100) -> list[int]:
    path, s = [start], start
    for _ in range(limit):
        a = int(ag.act(np.array([s]))[0])
        s2 = int(model.next_states[s, a, 0])
        if model.terminated[s, a, 0]:
            return path + [s2]
        path.append(s2)
        s = s2
    return path


@pytest.mark.slow
def test_sarsa_takes_the_safe_path_and_q_learning_the_cliff_edge():
    """S&B Example 6.6 / Figure 6.4 (epsilon 0.1, alpha 0.5)."""
    model = gym.make("rlgen/CliffWalking-v0").unwrapped.model
    edge = set(range(25, 35))  # row 2, columns 1..10: the cells along the cliff
    sarsa, sarsa_run = train("sarsa", "rlgen/CliffWalking-v0", 30_000, epsilon=0.1, alpha=0.5)
    qlearn, q_run = train("q_learning", "rlgen/CliffWalking-v0", 30_000, epsilon=0.1, alpha=0.5)
    safe, risky = greedy_path(sarsa, model), greedy_path(qlearn, model)
    assert risky[-1] == 47 and len(risky) - 1 == 13 and edge <= set(risky)
    assert safe[-1] == 47 and len(safe) - 1 > 13 and not edge & set(safe)
    # online, SARSA earns more: Q-learning's exploration keeps falling off the cliff
    assert np.mean(sarsa_run.returns[-100:]) > np.mean(q_run.returns[-100:])


def test_bandit_agent_finds_the_best_arm():
    env = gym.make("rlgen/Bandit10-v0").unwrapped
    best = int(np.argmax(env.q_star))
    for agent, config in (("ucb", {}), ("epsilon_greedy", {"epsilon": 0.1}), ("thompson_sampling", {}),
                          ("gradient_bandit", {"alpha": 0.1})):
        ag, run = train(agent, "rlgen/Bandit10-v0", 3000, **config)
        assert int(ag.act(np.zeros(1, dtype=np.int64))[0]) == best, agent
        assert np.mean(run.logged["bandit/optimal_action"][-1000:]) > 0.8, agent
        assert ag.policy.shape == (1, 10) and ag.policy.sum() == pytest.approx(1.0)


def test_tuple_observations_are_indexed_into_one_state():
    ag, _ = train("q_learning", "Blackjack-v1", 10)
    obs = (np.array([21, 4]), np.array([10, 1]), np.array([1, 0]))
    assert ag.states(obs).tolist() == [np.ravel_multi_index((21, 10, 1), (32, 11, 2)),
                                       np.ravel_multi_index((4, 1, 0), (32, 11, 2))]
    assert ag.n_states == 32 * 11 * 2
