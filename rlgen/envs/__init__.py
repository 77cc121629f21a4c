"""Building environments for a run: one code path for training, evaluation and video.

Training uses Gymnasium's vector API with the NEXT_STEP autoreset mode, set explicitly: when a
sub-env ends at step t, step t returns its true final observation (so a truncated episode can be
bootstrapped from it) and step t+1 resets it, ignoring that step's action. The training loops
(rlgen/loops.py) leave that reset step out of every update (`EpisodeStats.valid`). It is Gymnasium
1.x's default and the only mode that natively vectorised envs (CartPole, ...) implement.

Importing this package registers rlgen's own envs (`rlgen/<Name>-v0`) with Gymnasium.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from rlgen.config import EnvConfig
from rlgen.errors import UserError


class OneHot(gym.ObservationWrapper):
    """Discrete (or Tuple of Discrete) observations as one-hot float vectors, for deep agents."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self.sizes = [s.n for s in space] if isinstance(space, gym.spaces.Tuple) else [space.n]
        self.observation_space = gym.spaces.Box(0.0, 1.0, (int(np.prod(self.sizes)),), np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        index = np.ravel_multi_index(tuple(np.atleast_1d(observation)), self.sizes)
        out = np.zeros(self.observation_space.shape, dtype=np.float32)
        out[index] = 1.0
        return out


def _needs_one_hot(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Discrete) or (
        isinstance(space, gym.spaces.Tuple) and all(isinstance(s, gym.spaces.Discrete) for s in space)
    )


def make_env(cfg: EnvConfig, render_mode: str | None = None, one_hot: bool = True) -> gym.Env:
    """gymnasium.make with the wrappers deep agents need (one-hot for discrete observations)."""
    try:
        env = gym.make(cfg.id, render_mode=render_mode, **cfg.kwargs)
    except gym.error.Error as err:
        raise UserError(f"cannot make env '{cfg.id}': {err}") from None
    except (TypeError, ValueError, KeyError) as err:  # an env's own check of its arguments
        if not cfg.kwargs or isinstance(err, UserError):  # a bug, or rlgen's one-line message already
            raise
        raise UserError(f"env '{cfg.id}' rejected its kwargs {dict(cfg.kwargs)}: {type(err).__name__}: {err}") from None
    if one_hot and _needs_one_hot(env.observation_space):
        env = OneHot(env)
    return env


NATIVE_VECTOR_MIN_ENVS = 4


def make_vec_env(cfg: EnvConfig, num_envs: int, one_hot: bool = True) -> gym.vector.VectorEnv:
    """`num_envs` copies behind the vector API, autoreset mode NEXT_STEP."""
    spec = gym.spec(cfg.id)
    mode = cfg.vectorization
    if mode not in ("auto", "sync", "async"):
        raise UserError(f"env.vectorization must be auto, sync or async, got '{mode}'")
    # A native vector env pays a fixed cost per call that only pays off with several copies: on
    # CartPole-v1 it took 47 us a step for 1 copy and 39 us for 4 or 8, a sync vector env 16, 35 and
    # 63 us (measured on a 2-core x86 machine, gymnasium 1.4).
    if mode == "auto" and spec.vector_entry_point is not None and num_envs >= NATIVE_VECTOR_MIN_ENVS:
        envs = gym.make_vec(cfg.id, num_envs=num_envs, vectorization_mode="vector_entry_point", **cfg.kwargs)
        assert envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) == AutoresetMode.NEXT_STEP
        return envs
    fns: list[Callable[[], gym.Env]] = [lambda: make_env(cfg, one_hot=one_hot) for _ in range(num_envs)]
    cls = gym.vector.AsyncVectorEnv if mode == "async" else gym.vector.SyncVectorEnv
    return cls(fns, autoreset_mode=AutoresetMode.NEXT_STEP)


class EpisodeStats(gym.vector.VectorWrapper):
    """Sums rewards and counts steps per sub-env and reports each finished episode, once, to
    `on_episodes(step, returns, lengths)` (step = env steps taken so far, reset steps included, as
    the x-axis of every curve). In the spirit of Gymnasium's RecordEpisodeStatistics, for NEXT_STEP
    autoreset: a step right after an episode ended only resets its sub-env and is not counted."""

    def __init__(self, envs: gym.vector.VectorEnv, on_episodes: Callable[[int, np.ndarray, np.ndarray], None],
                 step: int = 0):
        super().__init__(envs)
        self.on_episodes = on_episodes
        self.step_count = step
        n = envs.num_envs
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.prev_done = np.zeros(n, dtype=bool)
        self.valid = np.ones(n, dtype=bool)
        """which sub-envs' last step was a real transition (False: it only reset that sub-env)"""
        self.last_obs: Any = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.returns[:], self.lengths[:], self.prev_done[:] = 0.0, 0, False
        self.last_obs = obs
        return obs, info

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.valid = ~self.prev_done
        self.returns += np.where(self.valid, reward, 0.0)
        self.lengths += self.valid
        self.step_count += self.num_envs
        done = terminated | truncated
        if done.any():
            self.on_episodes(self.step_count, self.returns[done], self.lengths[done])
            self.returns[done], self.lengths[done] = 0.0, 0
        self.prev_done = done
        self.last_obs = obs
        return obs, reward, terminated, truncated, info


def reward_threshold(cfg: EnvConfig) -> float | None:
    return gym.spec(cfg.id).reward_threshold


# rlgen's own environments register their ids (rlgen/<Name>-v0) when this package is imported
from rlgen.envs import registration as _registration  # noqa: E402, F401
from rlgen.envs import text_preference as _text_preference  # noqa: E402, F401
