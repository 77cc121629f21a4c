"""Statistics for benchmark reports: few seeds, honest intervals.

The aggregate is the interquartile mean (IQM) and the intervals are percentile bootstrap intervals
over runs, resampled within each task ("stratified"), as recommended by Agarwal et al. 2021, "Deep
Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS), Sec. 4 and App. A.
Their library (rliable) pulls arch, scipy, pandas and seaborn; the method is a few lines of numpy,
so it is implemented here. Scores are arrays of shape (runs, tasks); a single env is one task.

Verdicts (ours better, worse or matching a baseline) come from a permutation test of the probability of
improvement with Holm's correction over a report's comparisons, not from the bootstrap interval: see the
section "verdicts" below.

The tabular metric (error to the dynamic-programming optimum) is here too, from the exact solutions
of rlgen/mdp.py.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from rlgen.mdp import TabularModel, evaluate_policy, reachable, solve_values, value_iteration

CONFIDENCE = 0.95
REPS = 10_000
Scores = ArrayLike | Sequence[ArrayLike]
"""runs' scores: 1-D for one task, 2-D as (runs, tasks), or a list of 1-D sequences, one per task"""


def iqm(scores: np.ndarray) -> float:
    """Mean of the middle 50% of all scores (runs x tasks pooled); Agarwal et al. 2021, Sec. 4.3.

    Trims floor(n/4) scores from each end, as rliable does through scipy.stats.trim_mean(x, 0.25).
    """
    flat = np.sort(np.asarray(scores, dtype=float).ravel())
    cut = int(0.25 * flat.size)
    return float(flat[cut:flat.size - cut].mean())


def _as_matrix(scores: np.ndarray) -> np.ndarray:
    m = np.asarray(scores, dtype=float)
    return m[:, None] if m.ndim == 1 else m


def _resample(m: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, runs, tasks): runs drawn with replacement independently within each task (stratified)."""
    runs, tasks = m.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return m[idx, np.arange(tasks)]


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def bootstrap_ci(scores: np.ndarray, statistic: Callable[[np.ndarray], float] = iqm, reps: int = REPS,
                 confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic` under the stratified bootstrap (Agarwal et al. 2021, App. A.1)."""
    m = _as_matrix(scores)
    rng = np.random.default_rng(seed)
    samples = np.array([statistic(s) for s in _resample(m, reps, rng)])
    return _percentiles(samples, confidence)


def _tasks(scores: Scores) -> list[np.ndarray]:
    """Per task, its runs' scores. A list or tuple of sequences holds one sequence per task (sizes may
    differ); any other input is an array: 1-D for one task, 2-D as (runs, tasks), as in bootstrap_ci."""
    if isinstance(scores, list | tuple) and len(scores) > 0 and np.ndim(scores[0]) == 1:
        return [np.asarray(s, dtype=float) for s in scores]
    return list(_as_matrix(scores).T)


def _pairs(x: Scores, y: Scores
           ) -> list[tuple[np.ndarray, np.ndarray]]:
    tx, ty = _tasks(x), _tasks(y)
    if len(tx) != len(ty) or any(a.size == 0 for a in tx + ty):
        raise ValueError(f"need the same tasks on both sides, each with runs: {len(tx)} and {len(ty)} tasks")
    return list(zip(tx, ty, strict=True))


def _wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n_x, n_y): 1 where x's run beats y's, 1/2 for a tie, else 0 (the Mann-Whitney kernel)."""
    diff = x[:, None] - y[None, :]
    return (diff > 0) + 0.5 * (diff == 0)


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """P(X > Y): per task the Mann-Whitney U statistic over all pairs of runs, ties counting one half,
    divided by n_x * n_y; then averaged over tasks (Agarwal et al. 2021, Sec. 4.3, "Probability of
    improvement"). x, y: see _tasks (tasks may hold different numbers of runs)."""
    return float(np.mean([_wins(a, b).mean() for a, b in _pairs(x, y)]))


def probability_of_improvement_ci(x: Scores, y: Scores,
                                  reps: int = REPS, confidence: float = CONFIDENCE,
                                  seed: int = 0) -> tuple[float, float]:
    """Interval for P(X > Y): X's and Y's runs resampled independently within each task (rliable's
    StratifiedIndependentBootstrap). A resample is a count per run, so its U is
    counts_x' W counts_y with W the pairwise wins: no (reps, n_x, n_y) array is built."""
    rng = np.random.default_rng(seed)
    pairs = _pairs(x, y)
    total = np.zeros(reps)
    for a, b in pairs:
        cx, cy = _resample_counts(a.size, reps, rng), _resample_counts(b.size, reps, rng)
        total += ((cx @ _wins(a, b)) * cy).sum(axis=1) / (a.size * b.size)
    return _percentiles(total / len(pairs), confidence)


def _resample_counts(n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, n) float: how often each of n runs is drawn in each of reps resamples with replacement."""
    drawn = rng.integers(0, n, size=(reps, n)) + n * np.arange(reps)[:, None]  # (reps, n), one block per rep
    return np.bincount(drawn.ravel(), minlength=reps * n).reshape(reps, n).astype(float)


# -- verdicts: a permutation test of P(X > Y) = 1/2 and Holm's correction ------------------------------
#
# Deciding by whether the bootstrap interval of P(X > Y) excludes 1/2 is not a test at a known level: with
# 5 runs a side and both samples from one distribution it says better or worse in up to 9% of draws (9.3%
# for normal returns), not 5%, and a report of 12 such comparisons holds a false verdict in 39-68% of
# reports (benchmarks/results/calibration/RESULTS.md). The permutation test below holds its level: under
# "ours and the baseline's runs come from one distribution" every split of a task's pooled runs into
# n_x and n_y is equally likely, so the observed statistic's rank among all splits is a valid p-value
# (Good 2005, "Permutation, Parametric and Bootstrap Tests of Hypotheses", 3rd ed.). The statistic is
# the probability of improvement itself: per task U / (n_x n_y) (Wilcoxon-Mann-Whitney, ties one half),
# averaged over tasks, with labels permuted only within each task: a stratified test, as van Elteren
# 1960 ("On the combination of independent two-sample tests of Wilcoxon") combines per-stratum
# Wilcoxon statistics, here with the weights that make the sum the probability of improvement. One
# p-value per comparison; Holm's step-down correction (Holm 1979, "A simple sequentially rejective
# multiple test procedure", Scand. J. Statist. 6) over a report's comparisons keeps the chance of any
# false verdict in the report at alpha, whatever the dependence between them.

ALPHA = 0.05
PERMUTATIONS = 20_000
"""Monte Carlo permutations when the exact null distribution is too costly"""
EXACT_WORK = 5 * 10**7
"""array-element operations the exact null distribution may cost; above it, Monte Carlo"""


def _doubled_midranks(z: np.ndarray) -> np.ndarray:
    """2 x the rank of each value in z (1-based), tied values sharing the mean of their ranks: integers."""
    order = np.argsort(z, kind="stable")
    s = z[order]
    first = np.r_[True, s[1:] != s[:-1]]
    starts = np.flatnonzero(first) + 1  # 1-based first rank of each block of ties
    ends = np.r_[starts[1:] - 1, z.size]
    out = np.empty(z.size, dtype=np.int64)
    out[order] = (starts + ends)[np.cumsum(first) - 1]
    return out


def _task_split(x: np.ndarray, y: np.ndarray) -> tuple[tuple[int, ...], int, int]:
    """(sorted doubled midranks of the pooled runs, n_x, observed 2U): the null distribution of 2U
    depends on the first two only. 2U = 2 R_x - n_x (n_x + 1), R_x the sum of x's midranks (Mann &
    Whitney 1947; with midranks U counts ties as one half)."""
    w = _doubled_midranks(np.concatenate([x, y]))
    u2 = int(w[:x.size].sum()) - x.size * (x.size + 1)
    return tuple(sorted(w.tolist())), x.size, u2


@functools.lru_cache(maxsize=4096)
def _u2_null(weights: tuple[int, ...], n_x: int) -> np.ndarray:
    """P(2U = k), k = 0 .. 2 n_x n_y, over all equally likely ways to pick x's n_x runs from the pooled
    runs with these doubled midranks: counting subsets by size and rank sum, one run at a time (the
    0/1-knapsack recursion behind exact Wilcoxon tables, here with ties: Streitberg & Roehmel 1986,
    "Exact distributions for permutation and rank tests", their shift algorithm)."""
    total = sum(weights)
    ways = np.zeros((n_x + 1, total + 1))
    ways[0, 0] = 1.0
    for w in weights:
        ways[1:, w:] = ways[1:, w:] + ways[:-1, :-w]  # take this run (right side read before writing)
    low = n_x * (n_x + 1)  # smallest 2 R_x: x holds the lowest ranks
    counts = ways[n_x, low:low + 2 * n_x * (len(weights) - n_x) + 1]
    return counts / counts.sum()


@functools.lru_cache(maxsize=1024)
def _stratified_null(tasks: tuple[tuple[tuple[int, ...], int], ...], denominator: int) -> np.ndarray:
    """P(V = v) for V = sum over tasks of 2U_t (denominator / (2 n_xt n_yt)), labels permuted
    independently within each task: the convolution of the tasks' distributions on one integer grid."""
    dist = np.ones(1)
    for weights, n_x in tasks:
        p = _u2_null(weights, n_x)
        stride = denominator // (p.size - 1)
        out = np.zeros(dist.size + stride * (p.size - 1))
        for k in np.flatnonzero(p):
            out[k * stride:k * stride + dist.size] += p[k] * dist
        dist = out
    return dist


def _exact_work(splits: list[tuple[tuple[int, ...], int, int]], denominator: int) -> int:
    dp = sum(len(w) * (n_x + 1) * (sum(w) + 1) for w, n_x, _ in splits)
    grid = len(splits) * denominator + 1
    return dp + grid * sum(2 * n_x * (len(w) - n_x) + 1 for w, n_x, _ in splits)


def permutation_pvalue(x: Scores, y: Scores,
                       permutations: int = PERMUTATIONS, seed: int = 0, exact_work: int = EXACT_WORK) -> float:
    """Two-sided p-value of P(X > Y) = 1/2 by permuting runs between x and y within each task.

    The statistic is probability_of_improvement(x, y); under the null its mean is exactly 1/2, and the
    p-value is the share of splits at least as far from 1/2 as the observed one. Exact (every split
    counted) when that costs at most `exact_work`; otherwise `permutations` random splits per task
    and p = (b + 1) / (m + 1), b of m as extreme: counting the observed split keeps the test valid
    and the p-value above zero (Phipson & Smyth 2010, "Permutation p-values should never be zero").
    Deterministic given `seed`. x, y: see _tasks.
    """
    pairs = _pairs(x, y)
    splits = [_task_split(a, b) for a, b in pairs]
    # one integer grid for the statistic: 2U_t / (2 n_x n_y) = 2U_t stride_t / denominator
    denominator = math.lcm(*(2 * a.size * b.size for a, b in pairs))
    if _exact_work(splits, denominator) <= exact_work:
        v = sum(u2 * (denominator // (2 * n_x * (len(w) - n_x))) for w, n_x, u2 in splits)
        null = _stratified_null(tuple((w, n_x) for w, n_x, _ in splits), denominator)
        centre = len(pairs) * denominator  # 2 x the null mean of V
        far = np.abs(2 * np.arange(null.size) - centre) >= abs(2 * v - centre)
        return float(min(1.0, null[far].sum()))
    rng = np.random.default_rng(seed)
    stat = np.zeros(permutations)
    for weights, n_x, _ in splits:
        w = np.asarray(weights)
        drawn = rng.permuted(np.broadcast_to(w, (permutations, w.size)), axis=1)[:, :n_x]
        stat += (drawn.sum(axis=1) - n_x * (n_x + 1)) / (2 * n_x * (w.size - n_x))
    observed = abs(probability_of_improvement(x, y) - 0.5)
    extreme = np.abs(stat / len(splits) - 0.5) >= observed - 1e-12  # float sums of equal splits may differ
    return float((extreme.sum() + 1) / (permutations + 1))


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm-adjusted p-values: the i-th smallest times (m - i + 1), made non-decreasing, capped at 1
    (Holm 1979; adjusted p-values as in Wright 1992, "Adjusted P-values for simultaneous inference").
    Rejecting where the adjusted p < alpha keeps the family-wise error rate at alpha."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]))
    out = np.empty(p.size)
    out[order] = adjusted
    return out


def smallest_pvalue(sizes: list[tuple[int, int]], permutations: int = PERMUTATIONS) -> float:
    """The smallest p-value permutation_pvalue can return for tasks of (n_x, n_y) runs whatever the runs
    are: every run of one side above every run of the other in each task, 2 / prod C(n_x + n_y, n_x), or,
    where it counts random splits, 1 / (permutations + 1) (the floor is taken whichever way it counts)."""
    splits = math.prod(math.comb(n_x + n_y, n_x) for n_x, n_y in sizes)
    return min(1.0, max(2 / splits, 1 / (permutations + 1)))


def verdicts(pois: ArrayLike, pvalues: ArrayLike, alpha: float = ALPHA,
             smallest: ArrayLike | None = None) -> list[str]:
    """better / worse (the direction of P(ours > baseline)) where the Holm-adjusted p-value over all the
    given comparisons is below alpha. Of the others, with `smallest` (each comparison's smallest possible
    p-value, smallest_pvalue), "too few runs" where no outcome of its runs could have been called: its
    smallest p is not below the best threshold Holm could have given it, alpha / (m - r) with r the
    comparisons called; else matches."""
    adjusted = holm(pvalues)
    called = adjusted < alpha
    floor = np.zeros(called.size) if smallest is None else np.asarray(smallest, dtype=float)
    threshold = alpha / (called.size - called.sum()) if not called.all() else alpha
    return [("better" if poi > 0.5 else "worse") if c else "too few runs" if f >= threshold else "matches"
            for poi, c, f in zip(np.asarray(pois, dtype=float), called, floor, strict=True)]


def normalised_auc(steps: ArrayLike, returns: ArrayLike) -> float:
    """Area under an evaluation curve divided by its span of steps (trapezoid rule from the first to the
    last evaluation): the mean evaluation return over training, a measure of sample efficiency. A curve of
    one point (or of no span) is its mean."""
    s, r = np.asarray(steps, dtype=float), np.asarray(returns, dtype=float)
    if s[-1] == s[0]:
        return float(r.mean())
    return float(np.trapezoid(r, s) / (s[-1] - s[0]))


def curve_band(curves: np.ndarray, reps: int = 2000, confidence: float = CONFIDENCE,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs of (runs, points) curves and a percentile bootstrap band for that mean."""
    c = np.asarray(curves, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, c.shape[0], size=(reps, c.shape[0]))
    means = c[idx].mean(axis=1)  # (reps, points)
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=0)
    return c.mean(axis=0), lo, hi


# -- tabular: error to the dynamic-programming optimum ---------------------------------------------


def policy_values(model: TabularModel, policy: np.ndarray, gamma: float, horizon: int = 10_000) -> np.ndarray:
    """V^pi of a deterministic policy, exactly (rlgen.mdp.solve_values).

    A policy that never terminates under gamma = 1 makes the system singular (its return diverges);
    it is then scored by its return within `horizon` steps (the env's episode limit), what an
    evaluation of that policy would see: `horizon` sweeps from V = 0, with no early stop (tol 0).
    """
    probs = np.eye(model.n_actions)[policy]
    values = solve_values(model, probs, gamma)
    if values is not None:
        return values
    return evaluate_policy(model, probs, gamma, tol=0.0, max_sweeps=horizon)


def dp_errors(model: TabularModel, gamma: float, q_values: np.ndarray | None = None,
              values: np.ndarray | None = None, horizon: int = 10_000) -> dict[str, float]:
    """How far learned values are from the DP optimum.

    value_error: max_s |V(s) - V*(s)| over the states reachable from the start (others are never
    visited, so never learned), with V(s) = max_a Q(s, a) when Q is given (the sup norm in which value
    iteration converges). policy_gap: E_{s0}[V*(s0) - V^pi(s0)] for pi greedy in Q (or
    in the one-step lookahead of V): how much return the learned policy leaves on the table.
    """
    if q_values is None and values is None:
        raise ValueError("dp_errors needs q_values or values")
    v_star, _ = value_iteration(model, gamma)
    if q_values is not None:
        q = np.asarray(q_values, dtype=float)
    else:
        q = model.q_from_v(np.asarray(values, dtype=float), gamma)
    v = q.max(axis=1) if values is None else np.asarray(values, dtype=float)
    greedy = q.argmax(axis=1)
    v_pi = policy_values(model, greedy, gamma, horizon)
    return {
        "value_error": float(np.max(np.abs(v - v_star)[reachable(model)])),
        # V* >= V^pi; a negative gap is V*'s own convergence error (value iteration stops at a tolerance)
        "policy_gap": max(0.0, float(model.initial @ (v_star - v_pi))),
    }
