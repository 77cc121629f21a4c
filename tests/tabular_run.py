"""A stand-in for rlgen.run.Run with the calls tabular agents make, for fast learning tests
without a run directory (the CLI smoke tests cover the real Run)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np

import rlgen.envs.registration  # noqa: F401
from rlgen.agents import agent_class
from rlgen.config import EnvConfig
from rlgen.envs import EpisodeStats, make_vec_env
from rlgen.envs.model import require_model


class LocalRun:
    def __init__(self, env_id: str, seed: int = 0, **kwargs: Any):
        self.env_id, self.kwargs, self.seed = env_id, kwargs, seed
        self.cfg = SimpleNamespace(env=SimpleNamespace(id=env_id, name=env_id))
        self.returns: list[float] = []
        self.logged: dict[str, list[float]] = {}

    def make_env(self) -> gym.Env:
        return gym.make(self.env_id, **self.kwargs)

    def make_envs(self, n: int) -> tuple[EpisodeStats, Any]:
        envs = EpisodeStats(make_vec_env(EnvConfig(name=self.env_id, id=self.env_id, kwargs=self.kwargs), n,
                                         one_hot=False), self.episodes)
        obs, _ = envs.reset(seed=self.seed)
        envs.action_space.seed(self.seed)
        return envs, obs

    def tabular_model(self):
        return require_model(self.make_env())

    def log(self, step: int, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.logged.setdefault(key, []).append(float(value))

    def episodes(self, step: int, returns: Any, lengths: Any) -> None:
        self.returns.extend(float(r) for r in np.atleast_1d(returns))

    def tick(self, step: int, evaluation: Any = None) -> bool:
        return True


def train(agent_name: str, env_id: str, total_steps: int, seed: int = 0, env_kwargs: dict | None = None,
          **config: Any):
    """Build the registered agent with `config`, train it for `total_steps`; return (agent, run)."""
    run = LocalRun(env_id, seed, **(env_kwargs or {}))
    env = run.make_env()
    cls = agent_class(agent_name)
    agent = cls(env.observation_space, env.action_space, cls.Config(name=agent_name, **config), seed)
    agent.learn(total_steps, run)
    return agent, run
