"""Benchmark statistics against hand-computed values; the tabular metric against textbook DP."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlgen import benchstats as bs
from rlgen.envs.model import model_of
from rlgen.mdp import reachable, value_iteration


def test_iqm_trims_a_quarter_from_each_end():
    assert bs.iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert bs.iqm([1, 2, 3, 100]) == pytest.approx(2.5)  # mean of 2, 3: the outlier is gone
    assert bs.iqm([1000, 2, 4, 3, 1]) == pytest.approx(3.0)  # n=5: floor(5/4)=1 cut each end
    assert bs.iqm([7, 1, 4]) == pytest.approx(4.0)  # n=3: nothing cut, the mean
    assert bs.iqm(np.array([[1, 10], [2, 20], [3, 30], [4, 40]])) == pytest.approx((3 + 4 + 10 + 20) / 4)


def test_bootstrap_ci_of_a_mean_matches_the_binomial_percentiles():
    # Resampled mean of five 0s and five 1s is k/10 with k ~ Binomial(10, 1/2):
    # P(k <= 1) = 11/1024 < 0.025 < P(k <= 2) = 56/1024, so the 2.5th percentile is 0.2; by symmetry 0.8.
    scores = np.array([0.0] * 5 + [1.0] * 5)
    assert bs.bootstrap_ci(scores, statistic=np.mean, reps=20_000) == (pytest.approx(0.2), pytest.approx(0.8))
    assert bs.bootstrap_ci(np.full(5, 3.0)) == (3.0, 3.0)


def test_bootstrap_is_stratified_by_task():
    # Task 0 scores 0, task 1 scores 10: resampling within each task always keeps one of each half,
    # so the pooled mean is exactly 5; resampling the pooled runs (no strata) would not.
    scores = np.stack([np.zeros(4), np.full(4, 10.0)], axis=1)  # (runs, tasks)
    assert bs.bootstrap_ci(scores, statistic=np.mean) == (5.0, 5.0)
    lo, hi = bs.bootstrap_ci(scores.ravel(), statistic=np.mean)
    assert lo < 5.0 < hi


def test_probability_of_improvement_by_hand():
    # x=1 beats only 0 (1 of 3); x=2 ties twice and beats 0 (0.5+0.5+1); x=3 beats all: 6 of 9.
    assert bs.probability_of_improvement([1, 2, 3], [2, 2, 0]) == pytest.approx(6 / 9)
    assert bs.probability_of_improvement([5, 5], [5, 5]) == 0.5
    # averaged over tasks: task 0 always better (1), task 1 always worse (0)
    x, y = np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [0.0, 1.0]])
    assert bs.probability_of_improvement(x, y) == 0.5


def test_verdicts_follow_the_interval_of_the_probability_of_improvement():
    hi, lo = np.array([10.0, 11, 12, 13, 14]), np.array([1.0, 2, 3, 4, 5])
    assert bs.probability_of_improvement_ci(hi, lo) == (1.0, 1.0)
    assert bs.verdict(bs.probability_of_improvement_ci(hi, lo)) == "better"
    assert bs.verdict(bs.probability_of_improvement_ci(lo, hi)) == "worse"
    assert bs.verdict(bs.probability_of_improvement_ci(np.full(5, 500.0), np.full(5, 500.0))) == "matches"
    mixed = bs.probability_of_improvement_ci([1.0, 3, 5, 7, 9], [2.0, 4, 6, 8, 10])
    assert mixed[0] < 0.5 < mixed[1] and bs.verdict(mixed) == "matches"


def test_curve_band_brackets_the_mean():
    curves = np.array([[0.0, 1.0, 2.0], [0.0, 3.0, 4.0], [0.0, 2.0, 9.0]])
    mean, lo, hi = bs.curve_band(curves)
    np.testing.assert_allclose(mean, [0.0, 2.0, 5.0])
    assert lo[0] == hi[0] == 0.0  # no spread, no band
    assert np.all(lo[1:] < mean[1:]) and np.all(mean[1:] < hi[1:])
    assert np.all(lo >= curves.min(axis=0)) and np.all(hi <= curves.max(axis=0))


# -- the tabular metric on Gymnasium's FrozenLake --------------------------------------------------


def _textbook_value_iteration(P: dict, n_states: int, n_actions: int, gamma: float) -> np.ndarray:
    """Sutton & Barto, Sec. 4.4, written over the toy-text P dict, independently of benchstats."""
    v = np.zeros(n_states)
    while True:
        new = np.array([max(sum(p * (r + gamma * (0.0 if done else v[s2])) for p, s2, r, done in P[s][a])
                            for a in range(n_actions)) for s in range(n_states)])
        if np.max(np.abs(new - v)) < 1e-12:
            return new
        v = new


def _textbook_policy_evaluation(P: dict, policy: np.ndarray, gamma: float) -> np.ndarray:
    v = np.zeros(len(policy))
    for _ in range(5000):
        v = np.array([sum(p * (r + gamma * (0.0 if done else v[s2])) for p, s2, r, done in P[s][policy[s]])
                      for s in range(len(policy))])
    return v


@pytest.fixture(scope="module")
def frozen_lake():
    env = gym.make("FrozenLake-v1")
    yield env.unwrapped.P, model_of(env)
    env.close()


def test_optimal_values_match_textbook_value_iteration(frozen_lake):
    P, model = frozen_lake
    for gamma in (0.9, 0.99):
        np.testing.assert_allclose(value_iteration(model, gamma)[0], _textbook_value_iteration(P, 16, 4, gamma),
                                   atol=1e-8)
    # undiscounted, the optimal success probability of slippery 4x4 FrozenLake from the start is 14/17
    assert value_iteration(model, 1.0)[0][0] == pytest.approx(14 / 17, abs=1e-6)


def test_dp_errors_are_zero_at_the_optimum_and_measure_a_bad_policy(frozen_lake):
    P, model = frozen_lake
    gamma = 0.95
    q_star = model.q_from_v(value_iteration(model, gamma)[0], gamma)
    exact = bs.dp_errors(model, gamma, q_values=q_star)
    assert exact["value_error"] < 1e-8 and abs(exact["policy_gap"]) < 1e-8
    noisy = q_star + 1e-4 * np.random.default_rng(0).uniform(-1, 1, q_star.shape)
    same_policy = bs.dp_errors(model, gamma, q_values=noisy)
    assert same_policy["value_error"] == pytest.approx(np.max(np.abs(noisy.max(1) - q_star.max(1))), abs=1e-8)
    # Q that prefers "down" (action 1) everywhere: its gap is V*(0) - V^down(0), evaluated by hand
    down = np.zeros((16, 4))
    down[:, 1] = 1.0
    v_star = _textbook_value_iteration(P, 16, 4, gamma)
    v_down = _textbook_policy_evaluation(P, np.ones(16, dtype=int), gamma)
    bad = bs.dp_errors(model, gamma, q_values=down)
    assert bad["policy_gap"] == pytest.approx(v_star[0] - v_down[0], abs=1e-8)
    assert bad["policy_gap"] > 0.1
    # holes and the goal end the episode: never a state to act in, so not scored
    live = np.setdiff1d(np.arange(16), [5, 7, 11, 12, 15])
    np.testing.assert_array_equal(np.flatnonzero(reachable(model)), live)
    assert bad["value_error"] == pytest.approx(np.max(np.abs(1.0 - v_star[live])), abs=1e-8)
    from_v = bs.dp_errors(model, gamma, values=v_star)
    assert from_v["value_error"] < 1e-8 and abs(from_v["policy_gap"]) < 1e-8


def test_value_error_skips_cells_no_episode_visits():
    """CliffWalking's cliff cells send the agent back to the start: no episode is ever in one, so an
    agent never learns them and they do not count; the policy gap is never negative."""
    model = gym.make("rlgen/CliffWalking-v0").unwrapped.model
    reach = reachable(model)
    assert reach.sum() == 48 - 10 - 1 and not reach[37:47].any() and reach[36]  # 10 cliff cells, the goal
    q = model.q_from_v(value_iteration(model, 1.0)[0], 1.0)
    q[37:47] = 0.0  # what a learner leaves in the cells it never visits
    got = bs.dp_errors(model, 1.0, q_values=q)
    assert got["value_error"] < 1e-9 and got["policy_gap"] == 0.0


def test_tabular_metrics_read_a_run_directory(tmp_path, frozen_lake):
    from rlgen.benchreport import tabular_metrics
    from rlgen.checkpoint import write_text_atomic
    from rlgen.compose import load_config, to_yaml

    _, model = frozen_lake
    cfg = load_config(["agent=ppo", "env=FrozenLake-v1", "agent.gamma=0.9"])
    write_text_atomic(tmp_path / "config.yaml", to_yaml(cfg))
    q_star = model.q_from_v(value_iteration(model, 0.9)[0], 0.9)
    np.save(tmp_path / "q_values.npy", q_star)
    got = tabular_metrics(tmp_path, default_gamma=0.5)  # the run's own gamma (0.9) is the one used
    assert got["value_error"] < 1e-8 and abs(got["policy_gap"]) < 1e-8
    np.save(tmp_path / "q_values.npy", np.zeros_like(q_star))
    assert tabular_metrics(tmp_path, default_gamma=0.5)["policy_gap"] > 0.01
