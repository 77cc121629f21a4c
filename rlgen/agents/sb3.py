"""Stable-Baselines3's PPO, DQN and A2C, and sb3-contrib's MaskablePPO, behind rlgen's agent contract.

The trainer, evaluator, logger, seeds and run directory are rlgen's; only the algorithm is SB3's.
`sb3_ppo` and `sb3_dqn` take the same config (and tuned values) as rlgen's `ppo` and `dqn`, so a
comparison changes nothing but the code that learns; `sb3_maskable_ppo` takes sb3_ppo's, and reads the
env's masks of valid actions (its action_masks() method, else info["action_mask"]) as MaskablePPO does,
through an action_masks() method on each training env. sb3_ppo, sb3_a2c and sb3_dqn cannot honour masks:
they ignore agent.action_masking, and refuse an env where a masked action is an error.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from rlgen.agents.a2c import A2CConfig
from rlgen.agents.base import Agent
from rlgen.agents.dqn import DQNConfig
from rlgen.agents.policy_gradient import check_sde
from rlgen.agents.ppo import PPOConfig
from rlgen.envs import MASK_METHOD, checked_masks, offers_mask_method, refuse_unmasked
from rlgen.envs.snapshot import env_state, set_env_state
from rlgen.errors import UserError
from rlgen.evaluation import MaskedPolicy
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


class MaskOfLastObservation(gym.Wrapper):
    """The env's mask of valid actions as an `action_masks()` method, which MaskablePPO asks before each
    action (sb3-contrib's ActionMasker convention): the env's own method where it has one, else the last
    info["action_mask"], else every action valid; checked as rlgen.envs.checked_masks checks it."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.n = int(env.action_space.n)
        self.from_method = offers_mask_method(env)
        self.mask = np.ones(self.n, dtype=bool)

    def _keep(self, info: dict[str, Any]) -> None:
        if not self.from_method and "action_mask" in info:
            self.mask = self._checked(info["action_mask"])

    def _checked(self, raw: Any) -> np.ndarray:
        name = self.env.spec.id if self.env.spec is not None else type(self.env.unwrapped).__name__
        return checked_masks(raw, 1, self.n, f"env '{name}'")[0]

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._keep(info)
        return obs, info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._keep(info)
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        if self.from_method:
            return self._checked(self.env.get_wrapper_attr(MASK_METHOD)())
        return self.mask.copy()


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
    """Hands the run SB3's episodes and lets it evaluate and checkpoint (Run.tick) where rlgen's own loops
    do: an off-policy algorithm after any vector step, as rlgen's DQN; an on-policy one after the update
    that ends a rollout (SB3 calls on_rollout_start after train()), as rlgen's on-policy loop does, so both
    sides of a comparison evaluate a policy trained on every step before its evaluation's step (SB3's
    EvalCallback would evaluate mid-rollout, a policy up to a rollout older). A run stops (Ctrl-C, a
    pruner) between two collection phases, after train(): `_StopBetweenRollouts`. There the model holds all
    it goes on from (an off-policy step's transition is stored after the callback's on_step, and its
    phase's gradient steps are due at the phase's end), so the checkpoint written at the stop resumes
    exactly; an off-policy run takes at most train_freq - 1 steps more."""

    def __init__(self, agent: SB3Agent, run: Run):
        super().__init__()
        self.agent, self.run = agent, run
        self.on_policy = isinstance(agent.model, OnPolicyAlgorithm)

    def _on_step(self) -> bool:
        step = self.model.num_timesteps
        self.agent.num_steps = step
        self.agent.at_step(self.locals["new_obs"], self.locals["dones"])
        finished = [info["episode"] for info in self.locals["infos"] if "episode" in info]
        if finished:
            self.run.episodes(step, np.array([e["r"] for e in finished]), np.array([e["l"] for e in finished]))
        if not self.on_policy:
            self.run.tick(step)  # a stop waits for the collection phase's end (below)
        return True

    def _on_rollout_start(self) -> None:
        going_on = self.run.tick(self.model.num_timesteps) if self.on_policy else not self.run.stop_requested
        if not going_on:
            raise _StopBetweenRollouts


class _StopBetweenRollouts(Exception):
    """The run asked to stop: raised before the next collection phase's first step (SB3's callbacks can
    stop it only after a step, before its transition is stored), caught in SB3Agent.learn."""


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
        check_sde(config, action_space)
        self.n_envs = config.n_envs
        venv = DummyVecEnv([partial(_Spaces, observation_space, action_space)] * self.n_envs)
        policy = "CnnPolicy" if is_image_space(observation_space) else "MlpPolicy"  # as agent=ppo/dqn choose
        self.model = self.algo(policy, venv, seed=seed, device="cpu", verbose=0, **self.sb3_kwargs())
        # VecNormalize with rlgen's normalisation settings (the `normalize` of RL Zoo's configs); this one
        # keeps the statistics between trainings and normalises observations for act()
        self.normalize = self._vec_normalize(venv) if getattr(config, "normalizes", False) else None
        self.envs: VecEnv | None = None
        self.latest: tuple[np.ndarray, np.ndarray] | None = None
        self.saved_envs: dict[str, Any] | None = None

    def sb3_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def honours_masks(self) -> bool:
        """Whether the algorithm acts on the env's masks of valid actions (MaskablePPO's does)."""
        return False

    def check_env(self, env: gym.Env) -> None:
        refuse_unmasked(env, self.config.name, self.honours_masks(), "cannot honour its mask: use "
                        "agent=sb3_maskable_ppo (agent.action_masking=true) or an rlgen agent")

    def training_env(self, run: Run) -> gym.Env:
        """One training env, as SB3 sees it (Monitor below: it records the episodes)."""
        return Monitor(run.make_env())

    def _vec_normalize(self, venv: VecEnv) -> VecNormalize:
        c = self.config
        return VecNormalize(venv, training=True, norm_obs=c.normalize_obs, norm_reward=c.normalize_reward,
                            clip_obs=c.clip_obs, clip_reward=c.clip_reward, gamma=c.gamma, epsilon=c.norm_epsilon)

    def learn(self, total_steps: int, run: Run) -> None:
        venv: VecEnv = DummyVecEnv([lambda: self.training_env(run) for _ in range(self.n_envs)])
        if self.normalize is not None:
            kept, venv = self.normalize, self._vec_normalize(venv)
            venv.obs_rms, venv.ret_rms, venv.returns = kept.obs_rms, kept.ret_rms, kept.returns
            self.normalize = venv
        self.envs = venv
        restored = self._restore_envs(venv)
        if not restored:
            venv.seed(run.seed)
        self.model.set_env(venv, force_reset=not restored)
        self.model.set_logger(Logger(folder=None, output_formats=[_ToRun(run)]))
        try:
            self.model.learn(total_steps - self.num_steps, callback=_RunCallback(self, run), reset_num_timesteps=False,
                             **self.learn_kwargs())
        except _StopBetweenRollouts:
            pass
        finally:
            self.num_steps = self.model.num_timesteps
            venv.close()

    def at_step(self, new_obs: np.ndarray, dones: np.ndarray) -> None:
        """Called after each vector step, before SB3 takes in its observations: what a checkpoint then
        records as the observations to go on from (as the env gave them, before normalisation)."""
        raw = self.normalize.get_original_obs() if self.normalize is not None else new_obs
        self.latest = (np.array(raw), np.array(dones, dtype=bool))

    def _envs_state(self) -> dict[str, Any] | None:
        """The training envs' state at the last step (rlgen/envs/snapshot.py), with the observations and
        episode starts SB3 goes on from; None when an env's state cannot be recorded (Box2D)."""
        if self.envs is None or self.latest is None:
            return None
        parts = [env_state(env) for env in self.envs.unwrapped.envs]
        if any(p is None for p in parts):
            return None
        return {"parts": parts, "obs": self.latest[0], "episode_starts": self.latest[1]}

    def _restore_envs(self, venv: VecEnv) -> bool:
        """A resumed run's envs as they were at its checkpoint, so its episodes continue from the same env
        seeds as an uninterrupted run's (as rlgen's own runs do); False when there is nothing to restore
        (the caller then seeds new episodes, shifted by the run's resumes: Run.seed)."""
        saved, self.saved_envs = self.saved_envs, None
        if saved is None:
            return False
        inner = venv.unwrapped  # reset below VecNormalize, which would count the observations
        inner.reset()  # a reset creates the attributes (generators, counters) the saved state fills in
        if not all(set_env_state(env, part) for env, part in zip(inner.envs, saved["parts"], strict=True)):
            return False
        raw = np.asarray(saved["obs"])
        m = self.model
        m._last_obs = self.normalize.normalize_obs(raw) if self.normalize is not None else raw
        m._last_episode_starts = np.asarray(saved["episode_starts"], dtype=bool)
        if hasattr(m, "_last_original_obs"):  # off-policy algorithms keep the unnormalised observations too
            m._last_original_obs = raw
        if self.normalize is not None:
            self.normalize.old_obs = raw
        return True

    def learn_kwargs(self) -> dict[str, Any]:
        """What the algorithm's learn() takes beyond SB3's common arguments."""
        return {}

    def act(self, obs: np.ndarray, deterministic: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
        """SB3's predict; `mask`, the valid actions of each observation, only where the algorithm honours it."""
        if self.normalize is not None:
            obs = self.normalize.normalize_obs(np.asarray(obs))
        masks = {"action_masks": mask} if self.honours_masks() and mask is not None else {}
        return self.model.predict(obs, deterministic=deterministic, **masks)[0]

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """What SB3 needs to continue with learn(reset_num_timesteps=False), as data (SB3's own save
        pickles objects into its zip, and its replay buffer is a pickle): the policy's and its
        optimiser's state_dicts, SB3's counters, DQN's replay buffer, and the random states SB3
        draws from (torch's, kept by the base, numpy's global one, the action space's).

        The model is rebuilt from rlgen's config in __init__ and these are loaded into it, with the
        normalisation statistics (VecNormalize's) and, where they can be recorded, the training envs'
        states and the observations SB3 goes on from, so a resumed run continues its episodes. What SB3's
        own load would restore and this does not: SB3's episode-info buffers (rlgen records episodes
        itself), the transitions of a rollout cut by the checkpoint (SB3 checkpoints between env steps),
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
        if self.normalize is not None:
            n = self.normalize
            state["normalize"] = {"obs_mean": n.obs_rms.mean, "obs_var": n.obs_rms.var, "obs_count": n.obs_rms.count,
                                  "ret_mean": n.ret_rms.mean, "ret_var": n.ret_rms.var, "ret_count": n.ret_rms.count,
                                  "returns": n.returns}
        envs = self._envs_state() or copy.deepcopy(self.saved_envs)  # a loaded agent keeps what it resumes from
        if envs is not None:
            state["envs"] = envs
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
        if self.normalize is not None:
            saved, n = state["normalize"], self.normalize
            n.obs_rms.mean, n.obs_rms.var, n.obs_rms.count = (np.array(saved["obs_mean"]), np.array(saved["obs_var"]),
                                                              float(saved["obs_count"]))
            n.ret_rms.mean, n.ret_rms.var, n.ret_rms.count = (np.array(saved["ret_mean"]), np.array(saved["ret_var"]),
                                                              float(saved["ret_count"]))
            n.returns = np.array(saved["returns"], dtype=np.float64)
        self.saved_envs = copy.deepcopy(state.get("envs"))

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
            max_grad_norm=c.max_grad_norm, target_kl=c.target_kl, use_sde=c.use_sde, sde_sample_freq=c.sde_sample_freq,
            policy_kwargs=dict(net_arch=dict(pi=list(c.net_arch), vf=list(c.net_arch)),
                               activation_fn=ACTIVATIONS[c.activation], ortho_init=c.ortho_init,
                               log_std_init=c.log_std_init),
        )


class SB3MaskablePPO(SB3PPO):
    """sb3-contrib's MaskablePPO with sb3_ppo's config: masked logits (-1e8) when acting and in the update,
    as rlgen's ppo does with agent.action_masking."""

    algo = MaskablePPO
    action_spaces = (gym.spaces.Discrete,)  # rlgen reads masks of Discrete actions (rlgen.envs.action_masks)

    def honours_masks(self) -> bool:
        return self.config.action_masking

    def training_env(self, run: Run) -> gym.Env:
        return Monitor(MaskOfLastObservation(run.make_env()))

    def learn_kwargs(self) -> dict[str, Any]:
        return {"use_masking": self.config.action_masking}

    def sb3_kwargs(self) -> dict[str, Any]:
        kwargs = super().sb3_kwargs()
        # Discrete actions only: MaskableActorCriticPolicy has no Gaussian, MaskablePPO no gSDE
        kwargs["policy_kwargs"].pop("log_std_init")
        del kwargs["use_sde"], kwargs["sde_sample_freq"]
        return kwargs

    def episode_policy(self, deterministic: bool = True):
        return MaskedPolicy(self.act, deterministic) if self.honours_masks() else super().episode_policy(deterministic)


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
            use_sde=c.use_sde, sde_sample_freq=c.sde_sample_freq,
            policy_kwargs=dict(net_arch=dict(pi=list(c.net_arch), vf=list(c.net_arch)),
                               activation_fn=ACTIVATIONS[c.activation], ortho_init=c.ortho_init,
                               log_std_init=c.log_std_init),
        )


