"""k-armed bandits as Gymnasium envs (Sutton & Barto Chapter 2).

A bandit has one state, so the observation is always 0 (Discrete(1)) and every tabular agent can
run on it. An "episode" is a fixed number of pulls (the registration's time limit, 1000 by default),
so returns, episodes.csv and evaluation mean what they mean elsewhere: the reward collected in
1000 pulls. The problem itself (the arms' true values q*) is fixed by `problem_seed`, not by
`reset(seed=...)`: the training env and every evaluation env are the same bandit, and a reset
only re-seeds the reward noise (and restarts the random walk of a non-stationary bandit).
The many-problems testbed of S&B Section 2.3 is `rlgen.bandit_testbed`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class BanditEnv(gym.Env):
    """k arms with Gaussian rewards N(q*(a), 1), q*(a) ~ N(0, 1): the 10-armed testbed (S&B Section 2.3).

    ## Action Space
    `Discrete(k)`: the arm to pull.
    ## Observation Space
    `Discrete(1)`: always 0.
    ## Rewards
    A sample from the pulled arm. `info` has `optimal_action` (argmax q*) and `regret`
    (max q* - q*(pulled arm), the expected loss of this pull).
    ## Episode End
    Never terminates; truncated after the registration's number of pulls.
    ## Arguments
    `k`, `problem_seed`, `render_mode`.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, k: int = 10, problem_seed: int = 0, render_mode: str | None = None):
        if k < 2:
            raise ValueError(f"a bandit needs at least 2 arms, got k={k}")
        self.k = int(k)
        self.problem_seed = problem_seed
        self.initial_values = self.draw_values(np.random.default_rng(problem_seed))
        self.q_star = self.initial_values.copy()
        self.observation_space = gym.spaces.Discrete(1)
        self.action_space = gym.spaces.Discrete(self.k)
        self.render_mode = render_mode
        self.counts = np.zeros(self.k, dtype=np.int64)

    def draw_values(self, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(0.0, 1.0, self.k)

    def sample_reward(self, a: int) -> float:
        return float(self.np_random.normal(self.q_star[a], 1.0))

    def drift(self) -> None:
        """Stationary arms do not move."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.q_star = self.initial_values.copy()
        self.counts[:] = 0
        return 0, {"optimal_action": int(np.argmax(self.q_star))}

    def step(self, action: Any):
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(f"invalid action {action!r}: pull an arm in [0, {self.k - 1}]")
        a = int(action)
        reward = self.sample_reward(a)
        best = int(np.argmax(self.q_star))
        info = {"optimal_action": best, "regret": float(self.q_star[best] - self.q_star[a])}
        self.counts[a] += 1
        self.drift()
        return 0, reward, False, False, info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            rows = enumerate(zip(self.q_star, self.counts, strict=True))
            lines = [f"arm {a}: q*={q:+.3f} pulls={n}" for a, (q, n) in rows]
            return "\n".join(lines) + "\n"
        if self.render_mode == "rgb_array":
            return self._bars()
        return None

    def _bars(self, height: int = 100, width: int = 20) -> np.ndarray:
        """One bar per arm: its true value (green, from the middle line), pulls so far (blue, bottom)."""
        img = np.full((height, self.k * width, 3), 255, dtype=np.uint8)
        mid = height // 2
        scale = (height // 2 - 2) / max(1e-9, float(np.abs(self.q_star).max()))
        share = self.counts / max(1, self.counts.sum())
        for a, q in enumerate(self.q_star):
            x = slice(a * width + 2, (a + 1) * width - 2)
            top, bottom = sorted((mid, int(mid - q * scale)))
            img[top:bottom + 1, x] = (90, 200, 110)
            img[height - 1 - int(share[a] * (height // 4)):, x] = (80, 120, 230)
        img[mid, :] = 0
        return img


class BernoulliBanditEnv(BanditEnv):
    """Arms paying 1 with probability q*(a) ~ U(0, 1), else 0."""

    def draw_values(self, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(0.0, 1.0, self.k)

    def sample_reward(self, a: int) -> float:
        return float(self.np_random.random() < self.q_star[a])


class NonstationaryBanditEnv(BanditEnv):
    """All q*(a) start equal (0) and take independent random walks, N(0, 0.01^2) per pull
    (S&B Exercise 2.5)."""

    def __init__(self, k: int = 10, walk_std: float = 0.01, problem_seed: int = 0, render_mode: str | None = None):
        self.walk_std = walk_std
        super().__init__(k, problem_seed, render_mode)

    def draw_values(self, rng: np.random.Generator) -> np.ndarray:
        return np.zeros(self.k)

    def drift(self) -> None:
        self.q_star += self.np_random.normal(0.0, self.walk_std, self.k)
