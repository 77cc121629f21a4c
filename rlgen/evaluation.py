"""Deterministic evaluation: n episodes at once, from a fixed sequence of start seeds."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rlgen.config import EnvConfig
from rlgen.envs import make_vec_env

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation envs are seeded apart from training envs, the same way at every evaluation, so
successive points of a learning curve differ only by the policy."""


def evaluate(
    act: Callable[[np.ndarray], np.ndarray],
    env_cfg: EnvConfig,
    episodes: int,
    seed: int,
    one_hot: bool = True,
    max_steps: int = 100_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Run one episode in each of `episodes` parallel envs; return (returns, lengths)."""
    envs = make_vec_env(env_cfg, episodes, one_hot=one_hot)
    try:
        obs, _ = envs.reset(seed=seed + EVAL_SEED_OFFSET)
        returns = np.zeros(episodes)
        lengths = np.zeros(episodes, dtype=np.int64)
        running = np.ones(episodes, dtype=bool)
        for _ in range(max_steps):
            obs, reward, terminated, truncated, _ = envs.step(act(obs))
            returns += np.where(running, reward, 0.0)
            lengths += running
            running &= ~(terminated | truncated)
            if not running.any():
                break
    finally:
        envs.close()
    return returns, lengths
