"""Stable-Baselines3's PPO, DQN and A2C behind rlgen's agent contract.

The trainer, evaluator, logger, seeds and run directory are rlgen's; only the algorithm is SB3's.
`sb3_ppo` and `sb3_dqn` take the same config (and tuned values) as rlgen's `ppo` and `dqn`, so a
comparison changes nothing but the code that learns.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from rlgen.agents.a2c import A2CConfig
from rlgen.agents.base import Agent
from rlgen.agents.dqn import DQNConfig
from rlgen.agents.ppo import PPOConfig
from rlgen.errors import UserError
from rlgen.nets.cnn import is_image_space
from rlgen.nets.mlp import ACTIVATIONS
from rlgen.returns import linear_schedule
from rlgen.run import Run


@dataclass
class SB3PPOConfig(PPOConfig):
    name: str = "sb3_ppo"


@dataclass
class SB3DQNConfig(DQNConfig):
    name: str = "sb3_dqn"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.double_q:
            raise UserError("sb3_dqn has no Double DQN option; use agent=dqn agent.double_q=true")


@dataclass
class SB3A2CConfig(A2CConfig):
    name: str = "sb3_a2c"


def _schedule(kind: str, value: float) -> float | Any:
    return partial(linear_schedule, value) if kind == "linear" else value


class _Spaces(gym.Env):
    """An env that only carries spaces: lets an SB3 model be built (or loaded) before training."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space, self.action_space = observation_space, action_space


class _ToRun(KVWriter):
    """Forwards SB3's training scalars (train/*) to the run; rollout and time stats are the run's own."""

    def __init__(self, run: Run):
        self.run = run

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        stats = {k: float(v) for k, v in key_values.items() if k.startswith("train/") and np.isscalar(v)}
        if stats:
            self.run.log(step, stats)

    def close(self) -> None:
        pass


class _RunCallback(BaseCallback):
    def __init__(self, agent: SB3Agent, run: Run):
        super().__init__()
        self.agent, self.run = agent, run

    def _on_step(self) -> bool:
        step = self.model.num_timesteps
        self.agent.num_steps = step
        finished = [info["episode"] for info in self.locals["infos"] if "episode" in info]
        if finished:
            self.run.episodes(step, np.array([e["r"] for e in finished]), np.array([e["l"] for e in finished]))
        return self.run.tick(step)


REPLAY_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
"""SB3 ReplayBuffer's arrays, each (buffer_size, n_envs, ...); next_observations is absent when
optimize_memory_usage is set"""


def replay_buffer_state(buffer: ReplayBuffer) -> dict[str, Any]:
    """The filled rows of an SB3 replay buffer's arrays, with its write position and full flag."""
    n = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name)[:n] for name in REPLAY_ARRAYS if hasattr(buffer, name)}
    return {**arrays, "pos": buffer.pos, "full": buffer.full}


def load_replay_buffer(buffer: ReplayBuffer, state: dict[str, Any]) -> None:
    """Copy replay_buffer_state's rows back into a buffer built with the same sizes."""
    pos, full = int(state["pos"]), bool(state["full"])
    if not 0 <= pos < buffer.buffer_size:
        raise ValueError(f"replay buffer position {pos} is outside its {buffer.buffer_size} rows")
    n = buffer.buffer_size if full else pos
    for name in REPLAY_ARRAYS:
        if hasattr(buffer, name):
            target = getattr(buffer, name)
            if np.shape(state[name]) != (n, *target.shape[1:]):
                raise ValueError(f"replay buffer {name} has shape {np.shape(state[name])}, this one {target.shape}")
            target[:n] = state[name]
    buffer.pos, buffer.full = pos, full


class SB3Agent(Agent):
    algo: ClassVar[type[BaseAlgorithm]]
    counters: ClassVar[tuple[str, ...]] = ("num_timesteps", "_n_updates", "_episode_num", "_current_progress_remaining")
    """SB3's counters behind its schedules and logs (BaseAlgorithm)"""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.n_envs = config.n_envs
        venv = DummyVecEnv([partial(_Spaces, observation_space, action_space)] * self.n_envs)
        policy = "CnnPolicy" if is_image_space(observation_space) else "MlpPolicy"  # as agent=ppo/dqn choose
        self.model = self.algo(policy, venv, seed=seed, device="cpu", verbose=0, **self.sb3_kwargs())

    def sb3_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def learn(self, total_steps: int, run: Run) -> None:
        venv = DummyVecEnv([lambda: Monitor(run.make_env()) for _ in range(self.n_envs)])
        venv.seed(run.seed)
        self.model.set_env(venv)
        self.model.set_logger(Logger(folder=None, output_formats=[_ToRun(run)]))
        self.model.learn(total_steps - self.num_steps, callback=_RunCallback(self, run), reset_num_timesteps=False)
        self.num_steps = self.model.num_timesteps
        venv.close()

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return self.model.predict(obs, deterministic=deterministic)[0]

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What SB3 needs to continue with learn(reset_num_timesteps=False), as data (SB3's own save
        pickles objects into its zip, and its replay buffer is a pickle): the policy's and its
        optimiser's state_dicts, SB3's counters, DQN's replay buffer, and the random states SB3
        draws from (torch's, kept by the base, numpy's global one, the action space's).

        The model is rebuilt from rlgen's config in __init__ and these are loaded into it. What SB3's
        own load would restore and this does not: the last observations (a resumed run resets its
        envs, as `set_env` does anyway), SB3's episode-info buffers (rlgen records episodes itself),
        and attributes changed on the model after construction (rlgen's config is their source).
        Unlike SB3's load, this also restores numpy's global random state and the action space's."""
        m = self.model
        state = {**super().state_dict(), "policy": m.policy.state_dict(),
                 "optimizer": m.policy.optimizer.state_dict(),
                 "counters": {name: getattr(m, name) for name in self.counters},
                 "numpy_global_rng": np.random.get_state(),
                 "action_space_rng": m.action_space.np_random.bit_generator.state}
        if self.replay_buffer is not None:
            state["replay_buffer"] = replay_buffer_state(self.replay_buffer)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        m = self.model
        m.policy.load_state_dict(state["policy"])
        m.policy.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))  # else torch keeps the caller's
        for name in self.counters:  # as the type SB3 keeps them in (int steps, float rates)
            setattr(m, name, type(getattr(m, name))(state["counters"][name]))
        np.random.set_state(state["numpy_global_rng"])
        m.action_space.np_random.bit_generator.state = state["action_space_rng"]
        if self.replay_buffer is not None:
            load_replay_buffer(self.replay_buffer, state["replay_buffer"])

    @property
    def replay_buffer(self) -> ReplayBuffer | None:
        return getattr(self.model, "replay_buffer", None)


ON_POLICY_ACTIONS = (gym.spaces.Discrete, gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
"""what SB3's PPO and A2C take (their supported_action_spaces)"""


class SB3PPO(SB3Agent):
    Config = SB3PPOConfig
    algo = PPO
    action_spaces = ON_POLICY_ACTIONS

    def sb3_kwargs(self) -> dict[str, Any]:
        c = self.config
        return dict(
            n_steps=c.n_steps, batch_size=c.batch_size, n_epochs=c.n_epochs,
            learning_rate=_schedule(c.lr_schedule, c.learning_rate), gamma=c.gamma, gae_lambda=c.gae_lambda,
            clip_range=_schedule(c.clip_range_schedule, c.clip_range), clip_range_vf=c.clip_range_vf,
            normalize_advantage=c.normalize_advantage, ent_coef=c.ent_coef, vf_coef=c.vf_coef,
            max_grad_norm=c.max_grad_norm, target_kl=c.target_kl,
            policy_kwargs=dict(net_arch=dict(pi=list(c.net_arch), vf=list(c.net_arch)),
                               activation_fn=ACTIVATIONS[c.activation], ortho_init=c.ortho_init,
                               log_std_init=c.log_std_init),
        )


class SB3DQN(SB3Agent):
    Config = SB3DQNConfig
    algo = DQN
    action_spaces = (gym.spaces.Discrete,)
    counters = (*SB3Agent.counters, "exploration_rate", "_n_calls")  # _n_calls times the target updates

    def sb3_kwargs(self) -> dict[str, Any]:
        c = self.config
        return dict(
            learning_rate=c.learning_rate, buffer_size=c.buffer_size, learning_starts=c.learning_starts,
            batch_size=c.batch_size, tau=c.tau, gamma=c.gamma, train_freq=c.train_freq,
            gradient_steps=c.gradient_steps, target_update_interval=c.target_update_interval,
            exploration_fraction=c.exploration_fraction, exploration_initial_eps=c.exploration_initial_eps,
            exploration_final_eps=c.exploration_final_eps, max_grad_norm=c.max_grad_norm,
            policy_kwargs=dict(net_arch=list(c.net_arch), activation_fn=ACTIVATIONS[c.activation]),
        )


class SB3A2C(SB3Agent):
    Config = SB3A2CConfig
    algo = A2C
    action_spaces = ON_POLICY_ACTIONS

    def sb3_kwargs(self) -> dict[str, Any]:
        c = self.config
        return dict(
            n_steps=c.n_steps, learning_rate=_schedule(c.lr_schedule, c.learning_rate), gamma=c.gamma,
            gae_lambda=c.gae_lambda, ent_coef=c.ent_coef, vf_coef=c.vf_coef, max_grad_norm=c.max_grad_norm,
            rms_prop_eps=c.rms_prop_eps, use_rms_prop=c.use_rms_prop, normalize_advantage=c.normalize_advantage,
            policy_kwargs=dict(net_arch=dict(pi=list(c.net_arch), vf=list(c.net_arch)),
                               activation_fn=ACTIVATIONS[c.activation], ortho_init=c.ortho_init),
        )


