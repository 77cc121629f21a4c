"""Benchmark statistics against hand-computed values; the tabular metric against textbook DP."""

from __future__ import annotations

import functools
import importlib.util
import itertools
from math import comb
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_probability_of_improvement_takes_tasks_of_different_sizes():
    # task 0: 2 of ours against 3 (x=1 beats one y, x=5 beats all: 4/6); task 1: 1 against 1, a tie (1/2)
    x, y = [np.array([1.0, 5.0]), np.array([7.0])], [np.array([0.0, 2.0, 3.0]), np.array([7.0])]
    assert bs.probability_of_improvement(x, y) == pytest.approx((4 / 6 + 0.5) / 2)
    lo, hi = bs.probability_of_improvement_ci(x, y)
    assert 0.25 <= lo < bs.probability_of_improvement(x, y) < hi <= 0.75  # task 1 is always 1/2
    with pytest.raises(ValueError, match="same tasks"):
        bs.probability_of_improvement(x, [np.array([0.0])])


def test_bootstrap_interval_of_the_probability_of_improvement():
    hi, lo = np.array([10.0, 11, 12, 13, 14]), np.array([1.0, 2, 3, 4, 5])
    assert bs.probability_of_improvement_ci(hi, lo) == (1.0, 1.0)
    assert bs.probability_of_improvement_ci(lo, hi) == (0.0, 0.0)
    assert bs.probability_of_improvement_ci(np.full(5, 500.0), np.full(5, 500.0)) == (0.5, 0.5)
    mixed = bs.probability_of_improvement_ci([1.0, 3, 5, 7, 9], [2.0, 4, 6, 8, 10])
    assert mixed[0] < 0.5 < mixed[1]


# -- the permutation test, Holm's correction, verdicts ---------------------------------------------


def test_permutation_pvalue_of_complete_separation_is_two_over_the_number_of_splits():
    # all of x above all of y: only that split and its mirror are as far from 1/2
    assert bs.permutation_pvalue(np.arange(10.0, 15), np.arange(5.0)) == pytest.approx(2 / comb(10, 5))
    assert bs.permutation_pvalue(np.arange(10.0, 20), np.arange(10.0)) == pytest.approx(2 / comb(20, 10))
    assert bs.permutation_pvalue(np.arange(3.0), np.arange(5.0, 12)) == pytest.approx(2 / comb(10, 3))
    # two envs of 3 against 3, both separated the same way: splits are permuted within each env
    x, y = np.array([[5.0, 50], [6, 60], [7, 70]]), np.array([[1.0, 10], [2, 20], [3, 30]])
    assert bs.permutation_pvalue(x, y) == pytest.approx(2 / comb(6, 3) ** 2)
    assert bs.permutation_pvalue(np.full(5, 500.0), np.full(5, 500.0)) == 1.0  # all tied: nothing differs


def _brute_force_pvalue(tasks: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Every split of every task's runs, written out (no ranks, no recursion)."""
    per_task = []
    for x, y in tasks:
        z = np.concatenate([x, y])
        stats = []
        for pick in itertools.combinations(range(z.size), x.size):
            mask = np.zeros(z.size, dtype=bool)
            mask[list(pick)] = True
            stats.append(bs.probability_of_improvement(z[mask], z[~mask]))
        per_task.append(np.array(stats))
    total = functools.reduce(lambda a, b: (a[:, None] + b[None, :]).ravel(), per_task) / len(tasks)
    observed = bs.probability_of_improvement([x for x, _ in tasks], [y for _, y in tasks])
    return float(np.mean(np.abs(total - 0.5) >= abs(observed - 0.5) - 1e-12))


def test_permutation_pvalue_matches_every_split_written_out():
    rng = np.random.default_rng(3)
    for _ in range(8):  # small integers: many ties; unequal sizes, one task and two
        a, b = rng.integers(0, 4, rng.integers(1, 6)).astype(float), rng.integers(0, 4, rng.integers(1, 6)) * 1.0
        c, d = rng.integers(0, 3, 3).astype(float), rng.integers(0, 3, 4).astype(float)
        assert bs.permutation_pvalue(a, b) == pytest.approx(_brute_force_pvalue([(a, b)]))
        assert bs.permutation_pvalue([a, c], [b, d]) == pytest.approx(_brute_force_pvalue([(a, b), (c, d)]))


def test_monte_carlo_pvalue_is_valid_deterministic_and_near_the_exact_one():
    rng = np.random.default_rng(4)
    x, y = rng.normal(0.5, 1, (8, 3)).round(1), rng.normal(0, 1, (6, 3)).round(1)  # ties from the rounding
    exact = bs.permutation_pvalue(x, y)
    mc = bs.permutation_pvalue(x, y, exact_work=0)
    assert mc == bs.permutation_pvalue(x, y, exact_work=0) != bs.permutation_pvalue(x, y, exact_work=0, seed=1)
    assert abs(mc - exact) < 4 * np.sqrt(exact * (1 - exact) / bs.PERMUTATIONS) + 1e-3
    # never zero (Phipson & Smyth 2010): no random split as extreme as complete separation
    assert bs.permutation_pvalue(np.arange(40.0, 80), np.arange(40.0), permutations=99, exact_work=0) == 1 / 100


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 3), min_size=1, max_size=7), st.lists(st.integers(-3, 3), min_size=1, max_size=7))
def test_permutation_pvalue_is_symmetric_and_depends_on_ranks_only(xs, ys):
    x, y = np.array(xs, dtype=float), np.array(ys, dtype=float)
    p = bs.permutation_pvalue(x, y)
    assert 0.0 < p <= 1.0
    assert bs.permutation_pvalue(y, x) == pytest.approx(p)  # two-sided
    assert bs.permutation_pvalue(np.exp(x), np.exp(y)) == pytest.approx(p)  # any increasing map


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.06 for the last
    np.testing.assert_allclose(bs.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(bs.holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    assert bs.holm([0.02]).tolist() == [0.02]  # one comparison: nothing to correct


def test_verdicts_need_the_holm_adjusted_p_below_alpha_and_follow_the_direction():
    assert bs.verdicts([0.9, 0.1, 0.8], [0.001, 0.01, 0.2]) == ["better", "worse", "matches"]
    # 0.02 alone is a verdict; in a family of three it is not (0.02 x 3 = 0.06)
    assert bs.verdicts([0.9], [0.02]) == ["better"]
    assert bs.verdicts([0.9, 0.5, 0.5], [0.02, 1.0, 1.0]) == ["matches"] * 3


def test_smallest_pvalue_is_the_one_of_fully_separated_runs():
    for sizes in ([(5, 5)], [(3, 4)], [(3, 3), (2, 3)]):
        x = [np.arange(nx, dtype=float) + 100 for nx, _ in sizes]  # every run of x above every run of y
        y = [np.arange(ny, dtype=float) for _, ny in sizes]
        assert bs.smallest_pvalue(sizes) == pytest.approx(bs.permutation_pvalue(x, y))
    assert bs.smallest_pvalue([(5, 5)]) == pytest.approx(2 / 252)
    assert bs.smallest_pvalue([(1, 1)]) == 1.0  # one run a side: never below 1
    assert bs.smallest_pvalue([(10, 10)] * 6) == pytest.approx(1 / (bs.PERMUTATIONS + 1))  # counted splits' floor


def test_a_comparison_no_outcome_could_call_reads_too_few_runs():
    # 5 against 5 can reach p = 2 / 252 = 0.0079 at best: below 0.05 / 4, not below 0.05 / 7 (none called)
    floor = bs.smallest_pvalue([(5, 5)])
    assert bs.verdicts([0.9] + [0.5] * 3, [0.0079, 1, 1, 1], smallest=[floor] * 4) == ["better"] + ["matches"] * 3
    assert bs.verdicts([0.5] * 7, [1.0] * 7, smallest=[floor] * 7) == ["too few runs"] * 7
    # the threshold Holm could give it grows as others are called: 6 called leave 0.05 / 1 for the seventh
    calls = bs.verdicts([0.9] * 6 + [0.5], [1e-6] * 6 + [1.0], smallest=[1e-6] * 6 + [floor])
    assert calls == ["better"] * 6 + ["matches"]


def test_normalised_auc_is_the_mean_of_the_curve_over_its_span():
    assert bs.normalised_auc([0, 100], [0.0, 10.0]) == pytest.approx(5.0)  # a line: its midpoint
    # uneven steps: (0..10 at 5 over 10 steps) + (10..30 at 20 over 20 steps) -> (50 + 400) / 30
    assert bs.normalised_auc([0, 10, 30], [0.0, 10.0, 30.0]) == pytest.approx(15.0)
    assert bs.normalised_auc([1000, 2000, 3000], [500.0] * 3) == 500.0
    assert bs.normalised_auc([5000], [42.0]) == 42.0  # one evaluation: that evaluation


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


# -- A/A calibration: both agents' runs from one distribution, so every verdict but matches is false ----


def _calibration():
    """benchmarks/calibration.py: its distributions, seed counts and simulation, the ones RESULTS.md used."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration.py"
    spec = importlib.util.spec_from_file_location("calibration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cal = _calibration()
DRAWS = 4000


def _bound(n: int, rate: float = bs.ALPHA) -> float:
    """The nominal rate plus three binomial standard errors of a rate measured from n draws."""
    return rate + 3 * np.sqrt(rate * (1 - rate) / n)


@pytest.mark.parametrize("design", ["5 v 5", "10 v 10", "5 v 10", "4 envs, 10 v 10"])
@pytest.mark.parametrize("dist", list(cal.DISTRIBUTIONS))
def test_a_lone_comparison_is_wrong_at_most_at_the_nominal_rate(dist, design):
    rng = np.random.default_rng([list(cal.DISTRIBUTIONS).index(dist), list(cal.DESIGNS).index(design)])
    x, y = cal.draw(cal.DISTRIBUTIONS[dist][1], cal.DESIGNS[design], DRAWS, rng)
    pois, p = cal.new_pvalues(x, y)
    wrong = np.mean([v != "matches" for poi, pv in zip(pois, p, strict=True) for v in bs.verdicts([poi], [pv])])
    assert wrong <= _bound(DRAWS), f"{dist}, {design}: false verdicts in {wrong:.4f} of {DRAWS} A/A draws"


def test_monte_carlo_pvalues_hold_the_rate_with_few_permutations():
    rng = np.random.default_rng(11)
    x, y = cal.draw(cal.DISTRIBUTIONS["ties"][1], cal.DESIGNS["10 v 10"], 1000, rng)
    p = np.array([bs.permutation_pvalue(a, b, permutations=99, exact_work=0, seed=i)
                  for i, (a, b) in enumerate(zip(x, y, strict=True))])
    assert np.mean(p < bs.ALPHA) <= _bound(1000), f"Monte Carlo p < 0.05 in {np.mean(p < bs.ALPHA):.4f} of 1000"


@pytest.mark.parametrize("dist", list(cal.DISTRIBUTIONS))
def test_a_report_of_twelve_comparisons_is_wrong_at_most_at_the_nominal_rate(dist):
    reports, designs = 1000, ["5 v 5", "10 v 10", "4 envs, 10 v 10"]  # four comparisons of each
    rng = np.random.default_rng(list(cal.DISTRIBUTIONS).index(dist))
    pois, p = np.zeros((reports, 12)), np.zeros((reports, 12))
    for j, design in enumerate(designs):
        x, y = cal.draw(cal.DISTRIBUTIONS[dist][1], cal.DESIGNS[design], reports * 4, rng)
        pois[:, 4 * j:4 * j + 4], p[:, 4 * j:4 * j + 4] = (a.reshape(reports, 4) for a in cal.new_pvalues(x, y))
    wrong = cal.any_holm_verdict(pois, p).mean()
    assert wrong <= _bound(reports), f"{dist}: a false verdict in {wrong:.4f} of {reports} reports of 12"


def test_a_real_difference_is_found():
    """A shift of 1.5 standard deviations at 10 runs a side (the probability of improvement is then
    about 0.86) is called better in most draws, and never worse."""
    rng = np.random.default_rng(5)
    x, y = cal.draw(cal.DISTRIBUTIONS["normal"][1], cal.DESIGNS["10 v 10"], 500, rng, shift=1.5)
    pois, p = cal.new_pvalues(x, y)
    calls = [bs.verdicts([poi], [pv])[0] for poi, pv in zip(pois, p, strict=True)]
    assert calls.count("better") >= 0.8 * len(calls) and "worse" not in calls, calls.count("better")
