"""Returns, GAE and explained variance against closed forms (rlgen/returns.py)."""

from __future__ import annotations

import numpy as np
import pytest

from rlgen.returns import discounted_returns, explained_variance, gae, linear_schedule

GAMMA = 0.9


def _column(x) -> np.ndarray:
    """A single env as a (T, 1) time-major array."""
    return np.asarray(x, dtype=np.float32).reshape(-1, 1)


def _episode(T: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _column(rng.normal(size=T)), _column(rng.normal(size=T + 1))


def test_discounted_returns_of_constant_rewards_is_a_geometric_sum():
    T = 6
    got = discounted_returns(np.ones(T), GAMMA)
    expected = [(1 - GAMMA ** (T - t)) / (1 - GAMMA) for t in range(T)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_discounted_returns_of_a_single_final_reward():
    got = discounted_returns(np.array([0.0, 0.0, 0.0, 5.0]), 0.5)
    np.testing.assert_allclose(got, [5 * 0.125, 5 * 0.25, 5 * 0.5, 5.0])


def test_gae_lambda_zero_is_the_td_error():
    rewards, values = _episode()
    T = len(rewards)
    terminated = np.zeros((T, 1), dtype=bool)
    terminated[-1] = True
    adv = gae(rewards, values, terminated, terminated.copy(), GAMMA, 0.0)
    expected = [
        rewards[t, 0] + GAMMA * (0.0 if terminated[t, 0] else values[t + 1, 0]) - values[t, 0] for t in range(T)
    ]
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_gae_lambda_one_is_the_monte_carlo_return_minus_v():
    rewards, values = _episode()
    T = len(rewards)
    terminated = np.zeros((T, 1), dtype=bool)
    terminated[-1] = True
    adv = gae(rewards, values, terminated, terminated.copy(), GAMMA, 1.0)
    expected = discounted_returns(rewards[:, 0].astype(np.float64), GAMMA) - values[:-1, 0]
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_from_the_final_observation_and_termination_does_not():
    rewards, values = _episode()
    T = len(rewards)
    done = np.zeros((T, 1), dtype=bool)
    done[-1] = True
    truncated_adv = gae(rewards, values, np.zeros_like(done), done, GAMMA, 1.0)
    terminated_adv = gae(rewards, values, done, done, GAMMA, 1.0)
    mc = discounted_returns(rewards[:, 0].astype(np.float64), GAMMA)
    tail = np.array([GAMMA ** (T - t) for t in range(T)]) * values[T, 0]
    np.testing.assert_allclose(truncated_adv[:, 0], mc + tail - values[:-1, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terminated_adv[:, 0], mc - values[:-1, 0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("terminated_end", [True, False])
def test_the_reset_step_after_a_done_does_not_leak_into_the_finished_episode(terminated_end):
    """Episode ends at t=1 (NEXT_STEP autoreset: t=2 only resets, t>=3 is the next episode)."""
    T, end = 6, 1
    rewards, values = _episode(T)
    done = np.zeros((T, 1), dtype=bool)
    done[end] = True
    terminated = done if terminated_end else np.zeros_like(done)
    before = gae(rewards, values, terminated, done, GAMMA, 0.95)
    # everything after the end may change, except V(final observation) = values[end + 1], which a
    # truncated episode bootstraps from
    rewards2, values2 = rewards.copy(), values.copy()
    rewards2[end + 1 :] += 100.0
    values2[end + 2 :] -= 50.0
    after = gae(rewards2, values2, terminated, done, GAMMA, 0.95)
    np.testing.assert_array_equal(before[: end + 1], after[: end + 1])
    if terminated_end:  # a terminal step's value does not matter either
        values2[end + 1] += 7.0
        again = gae(rewards2, values2, terminated, done, GAMMA, 0.95)
        np.testing.assert_array_equal(before[: end + 1], again[: end + 1])


def test_gae_treats_each_env_column_independently():
    rng = np.random.default_rng(3)
    T, N = 7, 3
    rewards = rng.normal(size=(T, N)).astype(np.float32)
    values = rng.normal(size=(T + 1, N)).astype(np.float32)
    terminated = rng.random((T, N)) < 0.2
    done = terminated | (rng.random((T, N)) < 0.2)
    together = gae(rewards, values, terminated, done, GAMMA, 0.95)
    for n in range(N):
        alone = gae(rewards[:, n : n + 1], values[:, n : n + 1], terminated[:, n : n + 1], done[:, n : n + 1],
                    GAMMA, 0.95)
        np.testing.assert_allclose(together[:, n], alone[:, 0], rtol=1e-6)


def test_explained_variance_closed_forms():
    rng = np.random.default_rng(0)
    target = rng.normal(size=1000)
    assert explained_variance(target, target) == pytest.approx(1.0)
    assert explained_variance(np.full_like(target, target.mean()), target) == pytest.approx(0.0, abs=1e-12)
    noise = rng.normal(size=1000)
    expected = 1 - np.var(noise) / np.var(target)
    assert explained_variance(target + noise, target) == pytest.approx(expected)
    assert explained_variance(-target, target) == pytest.approx(1 - 4.0)  # worse than a constant: negative
    assert np.isnan(explained_variance(rng.normal(size=5), np.ones(5)))  # undefined for constant targets


def test_linear_schedule_goes_from_initial_to_zero():
    assert linear_schedule(3e-4, 1.0) == pytest.approx(3e-4)
    assert linear_schedule(3e-4, 0.25) == pytest.approx(7.5e-5)
    assert linear_schedule(3e-4, 0.0) == 0.0
