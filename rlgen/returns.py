"""Returns, TD targets, advantages and schedules as pure functions, tested against closed forms
(tests/test_returns.py, tests/test_math_properties.py)."""

from __future__ import annotations

import numpy as np


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = sum_k gamma^k r_{t+k} for one finished episode (Sutton & Barto eq. 3.8)."""
    out = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def episode_returns(rewards: list[float], gamma: float, bootstrap: float = 0.0) -> np.ndarray:
    """G_t for each step of an episode, plus gamma^(T-t) * bootstrap for an episode cut short (the
    value of the state where a time limit stopped it: truncation is not termination)."""
    T = len(rewards)
    return discounted_returns(np.asarray(rewards, dtype=float), gamma) + gamma ** np.arange(T, 0, -1) * bootstrap


def n_step_target(rewards: list[float], gamma: float, bootstrap: float) -> float:
    """G_{t:t+n} = r_{t+1} + gamma r_{t+2} + ... + gamma^{n-1} r_{t+n} + gamma^n V(s_{t+n}) (S&B eq. 7.1)."""
    g = bootstrap
    for r in reversed(rewards):
        g = r + gamma * g
    return g


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    done: np.ndarray,
    gamma: float,
    lam: float,
) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016, eq. 16), time-major (T, N) arrays.

    `values` has T+1 rows: values[t+1] is V of the observation that step t returned. On a step that
    ended its episode that is the true final observation (NEXT_STEP autoreset), so a time-limit
    truncation is bootstrapped from it and only a real termination zeroes the bootstrap:
        delta_t = r_t + gamma * (1 - terminated_t) * V(s_{t+1}) - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1},   done = terminated | truncated.
    lam = 0 gives the TD(0) error, lam = 1 the Monte Carlo return minus V(s_t).
    """
    T = len(rewards)
    advantages = np.zeros_like(rewards, dtype=np.float32)
    not_term = 1.0 - terminated.astype(np.float32)
    not_done = 1.0 - done.astype(np.float32)
    deltas = rewards + gamma * not_term * values[1:] - values[:-1]
    running = np.zeros_like(rewards[0], dtype=np.float32)
    for t in range(T - 1, -1, -1):
        running = deltas[t] + gamma * lam * not_done[t] * running
        advantages[t] = running
    return advantages


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - Var[target - predicted] / Var[target]: 1 is perfect, 0 no better than a constant."""
    var = np.var(target)
    return float("nan") if var == 0 else float(1.0 - np.var(target - predicted) / var)


def linear_schedule(initial: float, progress_remaining: float) -> float:
    """SB3's linear schedule: `initial` at the start of training, 0 at the end."""
    return initial * progress_remaining


def linear_decay(start: float, end: float, steps: int, t: int) -> float:
    """start -> end linearly over `steps` (then end); steps <= 0 keeps `start`."""
    if steps <= 0:
        return start
    return start + min(1.0, t / steps) * (end - start)


def group_advantages(rewards: np.ndarray, scale: bool = True, eps: float = 1e-4) -> np.ndarray:
    """GRPO's advantage of each of G samples of a prompt: its reward minus the group's mean, divided
    by the group's standard deviation when `scale` (Shao et al. 2024, "DeepSeekMath", sec. 4.1.2,
    outcome supervision; the sample standard deviation and eps = 1e-4 as TRL's GRPOTrainer). Without
    `scale` (Liu et al. 2025, "Understanding R1-Zero-Like Training", Dr. GRPO) the division is left out:
    a group whose rewards barely differ is not blown up. rewards (P, G) -> (P, G)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    centred = rewards - rewards.mean(axis=-1, keepdims=True)
    if not scale:
        return centred
    return centred / (rewards.std(axis=-1, ddof=1, keepdims=True) + eps)


def leave_one_out_advantages(rewards: np.ndarray) -> np.ndarray:
    """RLOO's advantage of each of k samples of a prompt: its reward minus the mean reward of the
    other k - 1 (Ahmadian et al. 2024, "Back to Basics", eq. 9; Kool et al. 2019): a baseline that
    does not depend on the sample, so the gradient stays unbiased. rewards (P, k) -> (P, k), k >= 2."""
    rewards = np.asarray(rewards, dtype=np.float64)
    k = rewards.shape[-1]
    others = (rewards.sum(axis=-1, keepdims=True) - rewards) / (k - 1)
    return rewards - others
