"""Expert demonstrations: episodes of an env's scripted expert, generated locally from a seed.

An env with a scripted expert has an `expert_action(obs)` method (rlgen/envs/imitation_tasks.py);
`expert_demonstrations` plays it for n episodes and keeps every (observation, action) pair, with
each episode's return, success and mode. The same env, kwargs and seed give the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.checkpoint import write_atomic
from rlgen.config import EnvConfig
from rlgen.envs import make_env
from rlgen.envs.imitation_tasks import EXPERT_TASKS
from rlgen.errors import UserError

NO_MODE = -1
"""the mode of an episode whose env reports none"""


@dataclass
class Demonstrations:
    """Steps of n expert episodes, in order; per-step arrays first, then per-episode ones."""

    obs: np.ndarray
    """(N, obs_dim) float32: the observation each action was taken in"""
    actions: np.ndarray
    """(N, act_dim) float32"""
    episode: np.ndarray
    """(N,) int64: the episode each step belongs to, 0 .. n_episodes - 1"""
    returns: np.ndarray
    """(n_episodes,) float64"""
    success: np.ndarray
    """(n_episodes,) bool: info["success"] at the episode's end"""
    mode: np.ndarray
    """(n_episodes,) int64: info["mode"] at the episode's end, NO_MODE if the env reports none"""

    @property
    def n_episodes(self) -> int:
        return len(self.returns)

    @property
    def success_rate(self) -> float:
        """The expert's success rate over these episodes."""
        return float(self.success.mean())

    def save(self, path: Path) -> None:
        """An .npz of plain arrays (readable with allow_pickle=False), written atomically."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a path
                np.savez(f, **{name: getattr(self, name) for name in self.__dataclass_fields__})

        write_atomic(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> Demonstrations:
        with np.load(Path(path), allow_pickle=False) as data:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def expert_of(env: gym.Env, env_id: str) -> Callable[[np.ndarray], np.ndarray]:
    """The env's scripted expert, or a UserError naming the envs that have one."""
    expert = getattr(env.unwrapped, "expert_action", None)
    if expert is None:
        raise UserError(f"env {env_id} has no scripted expert to learn from (no expert_action method); "
                        f"envs with one: {', '.join(EXPERT_TASKS)}")
    return expert


def require_expert(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[gym.Space, gym.Space]:
    """The (observation, action) spaces of `env_id` with these kwargs; a UserError unless it can be
    made and has a scripted expert."""
    env = make_env(EnvConfig(name=env_id, id=env_id, kwargs=dict(env_kwargs or {})), one_hot=False)
    try:
        expert_of(env, env_id)
        return env.observation_space, env.action_space
    finally:
        env.close()


def expert_demonstrations(env_id: str, n_episodes: int, seed: int, **env_kwargs: Any) -> Demonstrations:
    """n_episodes of the env's expert: the first reset is seeded with `seed`, the next ones continue
    the env's own random stream, so the arrays are a function of (env_id, env_kwargs, seed)."""
    if n_episodes <= 0:
        raise UserError(f"the number of demonstration episodes must be positive, got {n_episodes}")
    env = make_env(EnvConfig(name=env_id, id=env_id, kwargs=dict(env_kwargs)), one_hot=False)
    expert = expert_of(env, env_id)
    obs_rows, actions, episode = [], [], []
    returns, success, mode = np.zeros(n_episodes), np.zeros(n_episodes, dtype=bool), np.full(n_episodes, NO_MODE)
    try:
        obs, _ = env.reset(seed=seed)
        for i in range(n_episodes):
            if i:
                obs, _ = env.reset()
            while True:
                action = expert(obs)
                obs_rows.append(np.asarray(obs, dtype=np.float32).ravel())
                actions.append(np.asarray(action, dtype=np.float32).ravel())
                episode.append(i)
                obs, reward, terminated, truncated, info = env.step(action)
                returns[i] += float(reward)
                if terminated or truncated:
                    break
            success[i] = bool(info.get("success", False))
            mode[i] = int(info.get("mode", NO_MODE))
    finally:
        env.close()
    return Demonstrations(np.array(obs_rows), np.array(actions), np.array(episode, dtype=np.int64), returns,
                          success, mode.astype(np.int64))
