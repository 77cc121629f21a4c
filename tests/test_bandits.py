"""Bandit envs and rules: closed-form updates, the testbed against S&B Figure 2.2."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

import rlgen.envs.registration  # noqa: F401
from rlgen.agents.bandit import UCB, EpsilonGreedy, GradientBandit, Thompson
from rlgen.bandit_testbed import run_testbed
from rlgen.distributions import np_softmax


def test_env_info_carries_optimal_action_and_regret():
    env = gym.make("rlgen/Bandit10-v0")
    _, info = env.reset(seed=0)
    q = env.unwrapped.q_star
    best = int(np.argmax(q))
    assert info["optimal_action"] == best
    _, _, terminated, truncated, info = env.step(3)
    assert info["regret"] == pytest.approx(q[best] - q[3]) and not terminated and not truncated


def test_problem_is_fixed_by_problem_seed_not_by_reset():
    a, b = gym.make("rlgen/Bandit10-v0"), gym.make("rlgen/Bandit10-v0", problem_seed=1)
    a.reset(seed=1)
    first = a.unwrapped.q_star.copy()
    a.reset(seed=2)
    np.testing.assert_array_equal(first, a.unwrapped.q_star)
    assert not np.array_equal(first, b.unwrapped.q_star)


def test_an_episode_is_a_thousand_pulls():
    env = gym.make("rlgen/Bandit10-v0")
    env.reset(seed=0)
    for t in range(1000):
        _, _, terminated, truncated, _ = env.step(0)
        assert truncated == (t == 999) and not terminated


def test_bernoulli_and_nonstationary_arms():
    env = gym.make("rlgen/BanditBernoulli-v0")
    env.reset(seed=0)
    rewards = [env.step(int(np.argmax(env.unwrapped.q_star)))[1] for _ in range(2000)]
    assert set(rewards) <= {0.0, 1.0}
    assert np.mean(rewards) == pytest.approx(env.unwrapped.q_star.max(), abs=0.04)
    walk = gym.make("rlgen/BanditNonstationary-v0")
    walk.reset(seed=0)
    assert np.all(walk.unwrapped.q_star == 0.0)
    for _ in range(10_000):
        walk.step(0)
    # after n steps each q* is N(0, n 0.01^2): standard deviation 1 at n = 10 000
    assert 0.3 < np.std(walk.unwrapped.q_star) < 2.5


def cfg(**kw):
    return SimpleNamespace(**kw)


def test_sample_average_is_the_mean_and_constant_step_is_exponential():
    rng = np.random.default_rng(0)
    avg = EpsilonGreedy(1, 3, cfg(epsilon=0.0, alpha=0.0, initial_value=0.0), rng)
    const = EpsilonGreedy(1, 3, cfg(epsilon=0.0, alpha=0.5, initial_value=4.0), rng)
    for r in (1.0, 2.0, 6.0):
        avg.update(np.array([1]), np.array([r]))
        const.update(np.array([1]), np.array([r]))
    assert avg.Q[0, 1] == pytest.approx(3.0)
    assert const.Q[0, 1] == pytest.approx(4 * 0.5**3 + 1 * 0.5**3 + 2 * 0.5**2 + 6 * 0.5)  # S&B eq. 2.6
    assert const.Q[0, 0] == 4.0  # untouched arms keep the optimistic initial value


def test_ucb_tries_every_arm_first_then_follows_the_bound():
    ucb = UCB(1, 4, cfg(c=2.0, alpha=0.0), np.random.default_rng(0))
    pulled = []
    for _ in range(4):
        a = ucb.select()
        pulled.append(int(a[0]))
        ucb.update(a, np.array([float(a[0])]))
    assert sorted(pulled) == [0, 1, 2, 3]
    bound = ucb.Q + 2.0 * np.sqrt(np.log(4) / ucb.N)
    assert int(ucb.select()[0]) == int(bound.argmax())


def test_gradient_bandit_step_is_equation_2_12():
    g = GradientBandit(1, 3, cfg(alpha=0.5, baseline=True), np.random.default_rng(0))
    g.H[:] = [[0.0, 1.0, 0.0]]
    pi = np_softmax(g.H)
    g.update(np.array([1]), np.array([2.0]))  # baseline after this reward: 2.0, so no change
    np.testing.assert_allclose(g.H, [[0.0, 1.0, 0.0]])
    g.update(np.array([0]), np.array([4.0]))  # baseline 3.0: advantage 1
    pi = np_softmax(np.array([[0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(g.H, [[0.5 * (1 - pi[0, 0]), 1.0 - 0.5 * pi[0, 1], -0.5 * pi[0, 2]]])


def test_thompson_beta_posterior():
    t = Thompson(1, 2, cfg(likelihood="beta"), np.random.default_rng(0))
    for r in (1.0, 1.0, 0.0):
        t.update(np.array([0]), np.array([r]))
    assert t.estimates()[0, 0] == pytest.approx((1 + 2) / (2 + 3))
    assert t.probs().sum() == pytest.approx(1.0)


def test_testbed_reproduces_figure_2_2():
    """S&B Figure 2.2 (2000 problems): greedy levels off near 1.0 and ~1/3 optimal; epsilon 0.1
    reaches ~1.35 and ~80% optimal by step 1000. Here 1000 problems, so within sampling error."""
    greedy = run_testbed("epsilon_greedy:epsilon=0", problems=1000, steps=1000)
    eps = run_testbed("epsilon_greedy:epsilon=0.1", problems=1000, steps=1000)
    assert greedy.reward[-200:].mean() == pytest.approx(1.0, abs=0.1)
    assert 0.28 < greedy.optimal[-200:].mean() < 0.45
    assert eps.reward[-200:].mean() == pytest.approx(1.35, abs=0.08)
    assert 0.75 < eps.optimal[-100:].mean() < 0.9
