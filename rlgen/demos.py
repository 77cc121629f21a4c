"""Expert demonstrations: episodes of an env's scripted expert, generated locally from a seed.

An env with a scripted expert has an `expert_action(obs)` method (rlgen/envs/imitation_tasks.py);
`expert_demonstrations` plays it for n episodes and keeps every (observation, action) pair, with
each episode's return, success and mode. The same env, kwargs and seed give the same arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.checkpoint import one_line, write_atomic
from rlgen.config import AgentConfig, EnvConfig, check_positive, check_seed, named
from rlgen.envs import make_env, vector_view
from rlgen.envs.imitation_tasks import EXPERT_TASKS
from rlgen.errors import UserError

DEMONSTRATIONS_FILE = "demonstrations.npz"
"""where a run keeps the demonstrations it learned from, when they came from another run or a file"""
OPTIONAL_FIELDS = ("terminated",)
"""fields a file written before they were recorded lacks"""
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
    terminated: np.ndarray | None = None
    """(n_episodes,) bool: the env ended the episode (False: a time limit cut it); None: not recorded"""

    def __post_init__(self) -> None:
        if self.terminated is None:
            self.terminated = np.zeros(self.n_episodes, dtype=bool)

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
                np.savez(f, **self.arrays())

        write_atomic(Path(path), write)

    def obs_normalisation(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the observations, float32, for a learner to normalise by; a constant feature's
        std is 1, so it stays as it is."""
        std = self.obs.std(axis=0)
        return self.obs.mean(axis=0).astype(np.float32), np.where(std > 1e-6, std, 1.0).astype(np.float32)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def copy_of(cls, arrays: dict[str, np.ndarray]) -> Demonstrations:
        """From `arrays` (a checkpoint's), sharing no memory with them."""
        return cls(**{name: np.array(arrays[name]) for name in cls.__dataclass_fields__ if name in arrays})

    @classmethod
    def load(cls, path: Path) -> Demonstrations:
        """A file Demonstrations.save wrote; a UserError for anything else (never unpickled)."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                return cls(**{name: data[name] for name in cls.__dataclass_fields__
                              if name in data or name not in OPTIONAL_FIELDS})
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"{path} is not a demonstrations file rlgen wrote ({one_line(err)})") from None


@dataclass
class DemonstrationsConfig(AgentConfig):
    """The settings of every agent that learns from demonstrations."""

    demo_env: str = ""
    """the env the demonstrations are played on (conf/agent/*.yaml sets the run's env)"""
    demo_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """its keyword arguments (conf: the run's env.kwargs)"""
    n_trajectories: int = 200
    """expert episodes in the demonstrations"""
    demo_seed: int = 0
    """seeds the demonstrations, not the run's seed: every policy and every seed sees the same ones"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "n_trajectories"))
        check_seed(**named(self, "demo_seed"))


def expert_of(env: gym.Env, env_id: str) -> Callable[[np.ndarray], np.ndarray]:
    """The env's scripted expert, or a UserError naming the envs that have one."""
    expert = getattr(env.unwrapped, "expert_action", None)
    if expert is None:
        raise UserError(f"env {env_id} has no scripted expert to learn from (no expert_action method); "
                        f"envs with one: {', '.join(EXPERT_TASKS)}")
    return expert


def scripted_expert(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[gym.Space, gym.Space] | None:
    """The (observation, action) spaces of `env_id` with these kwargs if it has a scripted expert, else
    None; a UserError if it cannot be made."""
    env = make_env(EnvConfig(name=env_id, id=env_id, kwargs=dict(env_kwargs or {})), one_hot=False)
    try:
        if getattr(env.unwrapped, "expert_action", None) is None:
            return None
        return env.observation_space, env.action_space
    finally:
        env.close()


def demonstrations_of(source: Any, config: Any, one_hot: bool = False) -> Demonstrations:
    """The demonstrations an agent learns from, given `source`: Demonstrations (a file's), or a trained
    agent whose deterministic policy plays config.n_trajectories episodes of config.demo_env (with
    config.demo_env_kwargs) from config.demo_seed. A UserError if a file's do not fit the env."""
    if not isinstance(source, Demonstrations):
        return policy_demonstrations(source.episode_policy(True), config.demo_env, config.n_trajectories,
                                     config.demo_seed, source.one_hot, **config.demo_env_kwargs)
    env = make_env(EnvConfig(name=config.demo_env, id=config.demo_env, kwargs=dict(config.demo_env_kwargs)),
                   one_hot=one_hot)
    obs_space, action_space = env.observation_space, env.action_space
    env.close()
    obs_dim = int(np.prod(obs_space.shape))
    act_dim = 1 if isinstance(action_space, gym.spaces.Discrete) else int(np.prod(action_space.shape))
    if source.obs.shape[1:] != (obs_dim,) or source.actions.shape[1:] != (act_dim,):
        raise UserError(f"the demonstrations have observations of size {source.obs.shape[1:]} and actions of size "
                        f"{source.actions.shape[1:]}; {config.demo_env} has {obs_dim} and {act_dim}")
    if isinstance(action_space, gym.spaces.Discrete) and not all(action_space.contains(int(a)) for a in
                                                                 np.unique(source.actions)):
        raise UserError(f"the demonstrations' actions are not all actions of {config.demo_env} ({action_space})")
    return source


def demos_summary(demos: Demonstrations) -> dict[str, Any]:
    """What summary.json says of the demonstrations a run learned from."""
    success = {"expert_success_rate": demos.success_rate} if demos.success.any() else {}
    return {**success, "expert_mean_return": float(demos.returns.mean()), "demo_episodes": demos.n_episodes,
            "demo_steps": len(demos.obs)}


def expert_demonstrations(env_id: str, n_episodes: int, seed: int, **env_kwargs: Any) -> Demonstrations:
    """n_episodes of the env's scripted expert, a function of (env_id, env_kwargs, seed) (see `play`)."""
    env = make_env(EnvConfig(name=env_id, id=env_id, kwargs=dict(env_kwargs)), one_hot=False)
    try:
        expert = expert_of(env, env_id)
        return play(env, expert, n_episodes, seed)
    finally:
        env.close()


def policy_demonstrations(policy: Callable[[np.ndarray], np.ndarray], env_id: str, n_episodes: int, seed: int,
                          policy_one_hot: bool = True, **env_kwargs: Any) -> Demonstrations:
    """n_episodes of a trained agent's policy (`policy` acts on a batch, as Agent.episode_policy
    returns it), a function of the policy, (env_id, env_kwargs) and seed (see `play`). The policy sees
    observations as its agent does (policy_one_hot: as a deep agent, Agent.one_hot); they are kept as
    deep agents see them, the agents that learn from demonstrations (a tabular expert's too)."""
    env = make_env(EnvConfig(name=env_id, id=env_id, kwargs=dict(env_kwargs)), one_hot=False)
    as_vector = vector_view(env, env_id)
    seen = as_vector if policy_one_hot else np.asarray
    if hasattr(policy, "reset"):  # a policy that remembers the episode: plays episodes one after another
        policy.reset()
    try:
        return play(env, lambda obs: np.asarray(policy(np.asarray(seen(obs))[None]))[0], n_episodes, seed,
                    on_reset=getattr(policy, "reset", None), record=as_vector)
    finally:
        env.close()


def play(env: gym.Env, act: Callable[[np.ndarray], Any], n_episodes: int, seed: int,
         on_reset: Callable[[], None] | None = None, record: Callable[[Any], np.ndarray] = np.asarray
         ) -> Demonstrations:
    """n_episodes of `act` on `env`, every (observation, action) pair kept (the observation as `record`
    shows it): the first reset is seeded with `seed`, the next ones continue the env's own random stream."""
    if n_episodes <= 0:
        raise UserError(f"the number of demonstration episodes must be positive, got {n_episodes}")
    obs_rows, actions, episode = [], [], []
    returns, success, mode = np.zeros(n_episodes), np.zeros(n_episodes, dtype=bool), np.full(n_episodes, NO_MODE)
    ended = np.zeros(n_episodes, dtype=bool)
    obs, _ = env.reset(seed=seed)
    for i in range(n_episodes):
        if i:
            obs, _ = env.reset()
            if on_reset is not None:
                on_reset()
        while True:
            action = act(obs)
            obs_rows.append(np.asarray(record(obs), dtype=np.float32).ravel())
            actions.append(np.asarray(action, dtype=np.float32).ravel())
            episode.append(i)
            obs, reward, terminated, truncated, info = env.step(action)
            returns[i] += float(reward)
            if terminated or truncated:
                break
        success[i], ended[i] = bool(info.get("success", False)), bool(terminated)
        mode[i] = int(info.get("mode", NO_MODE))
    return Demonstrations(np.array(obs_rows), np.array(actions), np.array(episode, dtype=np.int64), returns,
                          success, mode.astype(np.int64), ended)
