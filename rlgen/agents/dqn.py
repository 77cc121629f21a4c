"""Deep Q-Network (Mnih et al. 2015, "Human-level control through deep reinforcement learning"),
with the Double DQN target as an option (van Hasselt et al. 2016).

Replay buffer, target network (hard copy or Polyak averaging), linearly decayed epsilon-greedy
exploration, Huber loss, gradient clipping, and SB3's schedule knobs: `train_freq` env steps
between training phases of `gradient_steps` updates each, after `learning_starts` steps. Semantics
follow Stable-Baselines3's DQN so that `agent=sb3_dqn` with the same config is a like-for-like check.

Image observations (SB3's is_image_space rule) get a NatureCNN encoder in front of the Q head
(nets/cnn.py), as in SB3's CnnPolicy; `net_arch` is then the head's hidden layers on its 512 features
(`agent.net_arch=[]` is CnnPolicy's default), and the replay buffer keeps the pixels as uint8.

Invalid-action masking (agent.action_masking, where the env offers masks): epsilon-greedy's random
action is drawn among the valid actions and its greedy one is the argmax over them, and the bootstrap's
max over a' runs over the next observation's valid actions (the replay buffer stores those masks), as
Huang & Ontanon 2022 (sec. 2) restrict the policy; soft Q-learning's Boltzmann policy and soft value
likewise.

This module is also the off-policy training loop: agents that differ only in their target and
their behaviour policy (soft Q-learning) subclass DQN and override `td_target` / `greedy_or_explore`
(and `after_gradient_step` for per-step work such as a temperature update).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.agents.base import Agent
from rlgen.config import (
    AgentConfig,
    MaskingConfig,
    check_choice,
    check_discount,
    check_layers,
    check_learning_rate,
    check_nonnegative,
    check_positive,
    check_probability,
    check_range,
    named,
)
from rlgen.distributions import epsilon_greedy, masked_values, random_actions, torch_masked_values
from rlgen.envs import refuse_unmasked
from rlgen.errors import UserError
from rlgen.evaluation import MaskedPolicy
from rlgen.loops import Member, Transition, each_observe, per_step, per_step_group
from rlgen.nets.cnn import image_encoder, is_image_space, torch_forward
from rlgen.nets.mlp import ACTIVATIONS, copy_params, flat_dim, mlp, numpy_forward
from rlgen.nets.optim import FlatAdam
from rlgen.run import Run


@dataclass
class DQNConfig(MaskingConfig, AgentConfig):
    name: str = "dqn"
    n_envs: int = 1
    learning_rate: float = 1e-4
    buffer_size: int = 1_000_000
    learning_starts: int = 100
    """env steps of uniformly random actions before training starts"""
    batch_size: int = 32
    tau: float = 1.0
    """target update: 1 copies the online network, < 1 is Polyak averaging"""
    gamma: float = 0.99
    train_freq: int = 4
    """env steps (per env) between training phases"""
    gradient_steps: int = 1
    """updates per training phase (-1: as many as env steps collected since the last phase)"""
    target_update_interval: int = 10_000
    """env steps between target updates"""
    exploration_fraction: float = 0.1
    """fraction of the budget over which epsilon decays linearly"""
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    max_grad_norm: float = 10.0
    double_q: bool = False
    """Double DQN target: the online network picks the next action, the target network values it"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden layers of the Q-network ([]: linear in the observation)"""
    activation: str = "relu"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.activation", self.activation, tuple(ACTIVATIONS))
        check_positive(**named(self, "n_envs", "batch_size", "buffer_size", "train_freq", "target_update_interval",
                               "max_grad_norm"))
        if self.gradient_steps == 0 or self.gradient_steps < -1:
            raise UserError(f"agent.gradient_steps must be positive or -1, got {self.gradient_steps}")
        check_nonnegative(**named(self, "learning_starts"))
        check_learning_rate(**named(self, "learning_rate"))
        check_discount(**named(self, "gamma"))
        check_range(0, 1, open_low=True, why=" (1 copies the online network, less is Polyak averaging)",
                    **named(self, "tau"))
        check_probability(**named(self, "exploration_fraction", "exploration_initial_eps", "exploration_final_eps"))
        check_layers(**named(self, "net_arch"))


class ReplayBuffer:
    """A circular buffer of transitions (s, a, r, s', terminated), sampled uniformly, and the valid
    actions in s' where the env offers masks (`next_masks`, made at the first transition that has them).

    `terminated` (not `done`) masks the bootstrap: a time-limit truncation stores its true final
    observation as s' and is bootstrapped like any other step (SB3's handle_timeout_termination).
    """

    def __init__(self, capacity: int, obs_dim: int, obs_dtype: type = np.float32):
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=obs_dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.next_masks: np.ndarray | None = None
        self.pos = 0
        self.size = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, term: np.ndarray,
            next_masks: np.ndarray | None = None):
        """Add a batch of transitions (one per env)."""
        idx = (self.pos + np.arange(len(obs))) % self.capacity
        self.obs[idx], self.next_obs[idx] = obs, next_obs
        self.actions[idx], self.rewards[idx], self.terminated[idx] = actions, rewards, term
        if next_masks is not None:
            if self.next_masks is None:  # the rows before (none, in a run on one env) had every action valid
                self.next_masks = np.ones((self.capacity, next_masks.shape[1]), dtype=bool)
            self.next_masks[idx] = next_masks
        self.pos = int((self.pos + len(obs)) % self.capacity)
        self.size = min(self.size + len(obs), self.capacity)

    def sample(self, shape: int | tuple[int, ...], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Uniformly sampled transitions; shape (G, B) draws G minibatches of B at once."""
        idx = rng.integers(0, self.size, size=shape)
        masks = {} if self.next_masks is None else {"next_masks": torch.from_numpy(self.next_masks[idx])}
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
            "terminated": torch.from_numpy(self.terminated[idx]),
            **masks,
        }

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        masks = {} if self.next_masks is None else {"next_masks": self.next_masks[:n]}
        return {"obs": self.obs[:n], "next_obs": self.next_obs[:n], "actions": self.actions[:n],
                "rewards": self.rewards[:n], "terminated": self.terminated[:n], "pos": self.pos, "size": n, **masks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = state["size"]
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
            getattr(self, key)[:n] = state[key]
        if "next_masks" in state:
            self.next_masks = np.ones((self.capacity, np.shape(state["next_masks"])[1]), dtype=bool)
            self.next_masks[:n] = state["next_masks"]
        self.pos, self.size = int(state["pos"]), int(n)


def linear_epsilon(step: int, total: int, initial: float, final: float, fraction: float) -> float:
    """Epsilon decays linearly from `initial` to `final` over the first `fraction` of the budget."""
    progress = step / max(total, 1)
    return final if progress >= fraction else initial + (final - initial) * progress / fraction


class DQN(Agent):
    Config = DQNConfig
    action_spaces = (gym.spaces.Discrete,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: DQNConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.n_envs = config.n_envs
        self.n_actions = int(action_space.n)
        self.obs_dim = obs_dim = flat_dim(observation_space.shape)
        self.images = is_image_space(observation_space)
        self.q_net = self.q_network(observation_space)
        self.q_target = self.q_network(observation_space)
        self.q_target.load_state_dict(self.q_net.state_dict())
        self.q_target.requires_grad_(False)
        self.optimizer = FlatAdam(self.q_net.parameters(), lr=config.learning_rate)
        # pixels are uint8: kept as they are, the buffer is 4 times smaller (SB3 stores the obs dtype too)
        try:
            self.buffer = ReplayBuffer(config.buffer_size, obs_dim, np.uint8 if self.images else np.float32)
        except MemoryError:
            raise UserError(f"agent.buffer_size={config.buffer_size}: a replay buffer of that many "
                            f"{obs_dim}-dimensional observations does not fit in memory") from None
        self.epsilon = config.exploration_initial_eps
        self.n_updates = 0
        self._q_numpy: Any = None

    def q_network(self, observation_space: gym.Space) -> nn.Sequential:
        """An MLP on flat observations, or NatureCNN then the MLP on images (SB3's QNetwork: the
        online and target networks each have their own encoder)."""
        c = self.config
        encoder = image_encoder(observation_space)
        if encoder is None:
            return mlp(self.obs_dim, c.net_arch, self.n_actions, c.activation)
        return nn.Sequential(encoder, mlp(encoder.features_dim, c.net_arch, self.n_actions, c.activation))

    # -- acting -------------------------------------------------------------------------------------

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        if self._q_numpy is None:
            self._q_numpy = torch_forward(self.q_net) if self.images else numpy_forward(self.q_net)
        return self._q_numpy(np.asarray(obs, dtype=np.float32).reshape(len(obs), -1))

    def check_env(self, env: gym.Env) -> None:
        refuse_unmasked(env, self.config.name, self.config.action_masking,
                        "must honour its mask: set agent.action_masking=true")

    def act(self, obs: np.ndarray, deterministic: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
        """Greedy in Q (over each row's valid actions of `mask`, with agent.action_masking); not
        deterministic: the behaviour policy at the current epsilon."""
        mask = mask if self.config.action_masking else None
        if deterministic:
            return masked_values(self.q_values(obs), mask).argmax(axis=1)
        return self.greedy_or_explore(obs, self.epsilon, mask)

    def episode_policy(self, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
        return MaskedPolicy(self.act, deterministic) if self.config.action_masking else super().episode_policy(
            deterministic)

    def greedy_or_explore(self, obs: np.ndarray, epsilon: float, mask: np.ndarray | None = None) -> np.ndarray:
        """The behaviour policy: epsilon-greedy in Q, over the valid actions of `mask`."""
        return epsilon_greedy(self.q_values(obs), epsilon, self.rng, mask)

    # -- training -----------------------------------------------------------------------------------

    def learn(self, total_steps: int, run: Run) -> None:
        per_step(self, run, total_steps)

    @classmethod
    def learns_in_groups(cls) -> bool:
        return cls.learn is DQN.learn

    @classmethod
    def learn_group(cls, members: list[Member], total_steps: int) -> None:
        """Each seed of a group takes its own training phases, in lockstep with the others: its run is
        its single run's exactly. A stacked phase (one batched product per layer for all seeds, as PPO's
        update) measured 0.92-1.09x the speed of separate ones here: DQN's 256-wide layers already keep
        the matrix unit busy, where batched products run no faster (benchmarks/results/speed/)."""
        per_step_group(members, total_steps, each_observe)

    def explore(self, obs: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Uniformly random (valid) actions until `learning_starts`, then the behaviour policy."""
        if self.num_steps < self.config.learning_starts:
            return random_actions(self.n_envs, self.n_actions, self.rng, mask)
        return self.greedy_or_explore(obs, self.epsilon, mask)

    def observe(self, t: Transition, total_steps: int) -> dict[str, float] | None:
        """Store the step's transitions; update the target network, epsilon, and train when due
        (SB3's order: the target update counts vector steps, training every train_freq of them)."""
        c, n = self.config, self.n_envs
        v = t.valid  # NEXT_STEP autoreset: a step that only reset its env is no transition
        self.buffer.add(t.obs[v].reshape(-1, self.obs_dim), t.actions[v], t.rewards[v],
                        t.next_obs[v].reshape(-1, self.obs_dim), t.terminated[v],
                        None if t.next_masks is None else t.next_masks[v])
        calls = self.num_steps // n
        if calls % max(c.target_update_interval // n, 1) == 0:
            copy_params(self.q_net, self.q_target, c.tau)
        self.epsilon = linear_epsilon(self.num_steps, total_steps, c.exploration_initial_eps,
                                      c.exploration_final_eps, c.exploration_fraction)
        if calls % c.train_freq != 0 or self.num_steps <= c.learning_starts or not self.buffer.size:
            return None
        # gradient_steps=-1: as many as env steps collected in the phase, train_freq per env (SB3's
        # rollout.episode_timesteps); the steps before learning_starts are not a phase's
        steps = c.train_freq * n if c.gradient_steps < 0 else c.gradient_steps
        return self.train(steps) | {"rollout/exploration_rate": self.epsilon}

    @torch.no_grad()
    def td_target(self, rewards: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor,
                  next_masks: torch.Tensor | None = None) -> torch.Tensor:
        """r + gamma * (1 - terminated) * max_a' Q_target(s', a') (Double DQN: Q_target(s', argmax Q)), a'
        over the valid actions of `next_masks`."""
        next_q = torch_masked_values(self.q_target(next_obs), next_masks)
        if self.config.double_q:
            best = torch_masked_values(self.q_net(next_obs), next_masks).argmax(dim=-1, keepdim=True)
            next_v = next_q.gather(-1, best).squeeze(-1)
        else:
            next_v = next_q.max(dim=-1).values
        return rewards + self.config.gamma * (1.0 - terminated) * next_v

    @property
    def frozen_targets(self) -> bool:
        """True when td_target depends on the target network alone, which no gradient step changes
        (it is updated between training phases, as in SB3): a whole phase's targets can then be
        computed in one forward pass. Double DQN's targets also read the online network."""
        return not self.config.double_q

    def after_gradient_step(self, batches: dict[str, torch.Tensor], i: int) -> None:
        """Called after gradient step i of a phase, with the phase's batches (leading axis: step).
        DQN has nothing to do here; soft Q-learning takes its temperature step."""

    def train(self, gradient_steps: int) -> dict[str, float]:
        batches = self.buffer.sample((gradient_steps, self.config.batch_size), self.rng)
        next_masks = batches.get("next_masks")
        if self.frozen_targets:
            all_targets = self.td_target(batches["rewards"], batches["next_obs"], batches["terminated"], next_masks)
        losses = torch.zeros(gradient_steps)
        q_means = torch.zeros(gradient_steps)
        for i in range(gradient_steps):
            if self.frozen_targets:
                target = all_targets[i]
            else:
                target = self.td_target(batches["rewards"][i], batches["next_obs"][i], batches["terminated"][i],
                                        None if next_masks is None else next_masks[i])
            q = self.q_net(batches["obs"][i]).gather(-1, batches["actions"][i].unsqueeze(-1)).squeeze(-1)
            loss = F.smooth_l1_loss(q, target)  # Huber loss, as in Mnih et al. 2015 (error clipping)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.clip_grad_norm(self.config.max_grad_norm)
            self.optimizer.step()
            self.after_gradient_step(batches, i)
            losses[i] = loss.detach()
            q_means[i] = q.detach().mean()
        self.n_updates += gradient_steps
        self._q_numpy = None  # weights changed: rebuild the acting copy
        return {"train/loss": float(losses.mean()), "train/q_mean": float(q_means.mean()),
                "train/learning_rate": self.config.learning_rate, "train/n_updates": self.n_updates}

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "q_net": self.q_net.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "epsilon": self.epsilon,
            "n_updates": self.n_updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.q_net.load_state_dict(state["q_net"])
        self.q_target.load_state_dict(state["q_target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.epsilon = float(state["epsilon"])
        self.n_updates = int(state["n_updates"])
        self._q_numpy = None
