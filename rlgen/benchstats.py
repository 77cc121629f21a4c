"""Statistics for benchmark reports: few seeds, honest intervals.

The aggregate is the interquartile mean (IQM) and the intervals are percentile bootstrap intervals
over runs, resampled within each task ("stratified"), as recommended by Agarwal et al. 2021, "Deep
Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS), Sec. 4 and App. A.
Their library (rliable) pulls arch, scipy, pandas and seaborn; the method is a few lines of numpy,
so it is implemented here. Scores are arrays of shape (runs, tasks); a single env is one task.

The tabular metric (error to the dynamic-programming optimum) is here too, from the exact solutions
of rlgen/mdp.py.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlgen.mdp import TabularModel, evaluate_policy, reachable, solve_values, value_iteration

CONFIDENCE = 0.95
REPS = 10_000


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


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per task the Mann-Whitney U statistic over all pairs of runs, ties counting one half,
    divided by n_x * n_y; then averaged over tasks (Agarwal et al. 2021, Sec. 4.3, "Probability of
    improvement")."""
    mx, my = _as_matrix(x), _as_matrix(y)
    diff = mx[:, None, :] - my[None, :, :]  # (n_x, n_y, tasks)
    wins = (diff > 0).mean(axis=(0, 1)) + 0.5 * (diff == 0).mean(axis=(0, 1))
    return float(wins.mean())


def probability_of_improvement_ci(x: np.ndarray, y: np.ndarray, reps: int = REPS,
                                  confidence: float = CONFIDENCE, seed: int = 0) -> tuple[float, float]:
    """Interval for P(X > Y): X's and Y's runs resampled independently within each task (rliable's
    StratifiedIndependentBootstrap)."""
    mx, my = _as_matrix(x), _as_matrix(y)
    rng = np.random.default_rng(seed)
    bx, by = _resample(mx, reps, rng), _resample(my, reps, rng)
    diff = bx[:, :, None, :] - by[:, None, :, :]  # (reps, n_x, n_y, tasks)
    wins = (diff > 0).mean(axis=(1, 2)) + 0.5 * (diff == 0).mean(axis=(1, 2))
    return _percentiles(wins.mean(axis=1), confidence)


def verdict(poi_ci: tuple[float, float]) -> str:
    """better / worse when the whole interval of P(ours > baseline) lies above / below 1/2."""
    lo, hi = poi_ci
    if lo > 0.5:
        return "better"
    if hi < 0.5:
        return "worse"
    return "matches"


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
