"""Generative Adversarial Imitation Learning (`gail`; Ho & Ermon 2016, "Generative Adversarial
Imitation Learning"): a discriminator D(s, a), a classifier of expert pairs against the policy's, is
the policy's reward model, and the policy is trained by rlgen's PPO on that reward alone.

Each iteration (Ho & Ermon 2016, Algorithm 1, with PPO in place of TRPO): a rollout of the current
policy; `disc_updates` Adam steps on D (binary cross-entropy, expert pairs labelled 1, optionally a
gradient penalty); the rollout's rewards replaced by the learned reward of each (s, a) under the
updated D; PPO's update on them. The env's reward never reaches the learner: it is only recorded
(rollout/ep_rew_mean, and every evaluation), to show how well the imitation does.

The expert's demonstrations come from a trained run (expert=<run dir>: its deterministic policy plays
`n_trajectories` episodes from `demo_seed`), from a demonstrations file (expert=<file>.npz), or from
an expert trained first with the env's tuned config; they are kept in the run's checkpoint and
written to its directory (demonstrations.npz).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlgen.agents.base import Agent
from rlgen.agents.ppo import PPO, PPOConfig
from rlgen.config import check_choice, check_layers, check_learning_rate, check_nonnegative, check_positive, named
from rlgen.demos import DEMONSTRATIONS_FILE, Demonstrations, DemonstrationsConfig, demonstrations_of, demos_summary
from rlgen.errors import UserError
from rlgen.loops import Rollout, flat
from rlgen.losses import adversarial_reward, discriminator_loss, lipschitz_penalty
from rlgen.nets.mlp import ACTIVATIONS, flat_dim, mlp
from rlgen.nets.optim import FlatAdam
from rlgen.run import Run

REWARDS = ("gail", "airl")


@dataclass
class GAILConfig(PPOConfig, DemonstrationsConfig):
    name: str = "gail"
    n_trajectories: int = 10
    """expert episodes in the demonstrations"""
    reward: str = "gail"
    """gail: -log(1 - D(s, a)), always positive (Ho & Ermon 2016) | airl: log D - log(1 - D), the
    discriminator's logit (Fu et al. 2018), negative where the pair looks like the policy's"""
    disc_net_arch: list[int] = field(default_factory=lambda: [100, 100])
    """the discriminator's hidden layers (Ho & Ermon 2016, sec. 6: two of 100 tanh units)"""
    disc_activation: str = "tanh"
    disc_learning_rate: float = 3e-4
    disc_updates: int = 5
    """Adam steps on the discriminator per rollout (Ho & Ermon 2016: one per iteration of TRPO; with
    PPO's larger policy steps one let the policy outrun it on Acrobot: -500 against -80 with five)"""
    disc_batch_size: int = 1024
    """the policy's pairs per discriminator step, with as many expert pairs (at most the rollout)"""
    absorbing: bool = False
    """episodes the env ends lead to an absorbing state that the discriminator also judges, its value
    r(absorbing) / (1 - gamma) added to the last step's reward (Kostrikov et al. 2019, "Discriminator-
    Actor-Critic", sec. 4.2). Without it, gail's positive reward pays the policy to make episodes last:
    on Acrobot, whose expert ends episodes by swinging up, -500 (never) against -80 with it (tuned config).
    Where the env also ends episodes on failure it can pay for failing fast instead (LunarLander, gamma
    0.999: -590 with it, 240 without), so it is off by default, as in Ho & Ermon's GAIL"""
    grad_penalty: float = 0.0
    """weight of the gradient penalty on the discriminator's logit between expert and policy pairs
    (Gulrajani et al. 2017; DAC, Kostrikov et al. 2019, uses 10); 0: none"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.reward", self.reward, REWARDS)
        check_choice("agent.disc_activation", self.disc_activation, tuple(ACTIVATIONS))
        check_layers(**named(self, "disc_net_arch"))
        check_learning_rate(**named(self, "disc_learning_rate"))
        check_positive(**named(self, "disc_updates", "disc_batch_size"))
        check_nonnegative(**named(self, "grad_penalty"))
        if self.normalizes:  # the discriminator reads observations as the demonstrations hold them
            raise UserError("gail learns from its discriminator's reward, on observations as the expert's "
                            "demonstrations hold them: set agent.normalize_obs=false and agent.normalize_reward=false")


class GAIL(PPO):
    """PPO on the reward of a discriminator trained against the expert's demonstrations."""

    Config = GAILConfig
    builds_on = ("expert", "ppo")
    observation_spaces = (gym.spaces.Box,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: GAILConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.obs_dim = flat_dim(observation_space.shape)
        self.n_actions = int(action_space.n) if self.discrete else flat_dim(action_space.shape)
        self.pair_dim = self.obs_dim + self.n_actions + int(config.absorbing)
        self.discriminator = mlp(self.pair_dim, config.disc_net_arch, 1, config.disc_activation)
        self.disc_optimizer = FlatAdam(self.discriminator.parameters(), lr=config.disc_learning_rate)
        self.demos: Demonstrations | None = None
        self.obs_mean = torch.zeros(self.obs_dim)
        self.obs_std = torch.ones(self.obs_dim)
        self.expert_pairs = torch.zeros(0, self.pair_dim)
        """the demonstrations as the discriminator sees them"""

    # -- the expert ---------------------------------------------------------------------------------

    def start_from(self, source: Agent | Demonstrations) -> None:
        """The expert's demonstrations: a file's, or n_trajectories episodes of a trained run's policy."""
        self.use_demonstrations(demonstrations_of(source, self.config, self.one_hot))

    def use_demonstrations(self, demos: Demonstrations) -> None:
        """Keep the demonstrations; the discriminator reads observations normalised by their mean and
        spread (a constant feature is left as it is)."""
        self.demos = demos
        self.obs_mean, self.obs_std = map(torch.as_tensor, demos.obs_normalisation())
        self.expert_pairs = self.with_absorbing(self.pairs(demos.obs, demos.actions), int(demos.terminated.sum()))

    def pairs(self, obs: np.ndarray, actions: np.ndarray) -> torch.Tensor:
        """(s, a) as the discriminator reads them: the normalised observation beside the action
        (one-hot for discrete actions; Box actions clipped into the env's bounds, as the env gets them)."""
        o = (torch.as_tensor(flat(obs)) - self.obs_mean) / self.obs_std
        if self.discrete:
            a = F.one_hot(torch.as_tensor(np.asarray(actions).reshape(-1).astype(np.int64)), self.n_actions).float()
        else:
            clipped = np.clip(np.asarray(actions).reshape(len(o), -1), self.action_space.low.reshape(-1),
                              self.action_space.high.reshape(-1))
            a = torch.as_tensor(clipped, dtype=torch.float32)
        flag = torch.zeros(len(o), int(self.config.absorbing))  # 0: a real state (DAC's indicator)
        return torch.cat([o, a, flag], dim=1)

    def with_absorbing(self, pairs: torch.Tensor, n: int) -> torch.Tensor:
        """`pairs` and n absorbing-state pairs, one per episode the env ended: state and action zero,
        the indicator 1 (Kostrikov et al. 2019, sec. 4.2)."""
        if not self.config.absorbing or n == 0:
            return pairs
        absorbing = torch.zeros(n, self.pair_dim)
        absorbing[:, -1] = 1.0
        return torch.cat([pairs, absorbing])

    # -- training -----------------------------------------------------------------------------------

    def learn(self, total_steps: int, run: Run) -> None:
        if self.demos is None:
            raise UserError("gail has no demonstrations to imitate: give it expert=<run dir or .npz>")
        super().learn(total_steps, run)

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        """Train the discriminator on this rollout's real transitions, then PPO on its learned reward."""
        c, valid = self.config, rollout.valid
        ended = rollout.terminated & valid
        policy_pairs = self.with_absorbing(self.pairs(rollout.obs[valid], rollout.actions[valid]), int(ended.sum()))
        stats = self.train_discriminator(policy_pairs)
        T, N = rollout.rewards.shape
        with torch.no_grad():
            steps = self.pairs(rollout.obs.reshape(T * N, -1), rollout.actions.reshape(T * N, -1))
            every = self.with_absorbing(steps, 1)  # the absorbing state's reward last
            reward = adversarial_reward(self.discriminator(every).squeeze(1), c.reward).numpy()
        learned = np.where(valid, reward[: T * N].reshape(T, N), 0.0)
        if c.absorbing and c.gamma < 1:  # the episode goes on in the absorbing state: bootstrap from its value
            absorbing_value = float(reward[-1]) / (1 - c.gamma)
            learned = learned + np.where(ended, c.gamma * absorbing_value, 0.0)
            stats["gail/absorbing_reward"] = float(reward[-1])
        learned = learned.astype(np.float32)
        out = super().update(replace(rollout, rewards=learned), progress_remaining)
        return {**out, **stats, "gail/reward": float(learned[valid].mean())}

    def train_discriminator(self, policy_pairs: torch.Tensor) -> dict[str, float]:
        """disc_updates Adam steps, each on up to disc_batch_size of the policy's pairs and as many
        expert pairs drawn with replacement; returns the last step's loss and accuracies."""
        c = self.config
        n = min(c.disc_batch_size, len(policy_pairs))
        for _ in range(c.disc_updates):
            policy = policy_pairs[torch.as_tensor(self.rng.choice(len(policy_pairs), n, replace=False))]
            expert = self.expert_pairs[torch.as_tensor(self.rng.integers(0, len(self.expert_pairs), n))]
            expert_logits, policy_logits = self.discriminator(torch.cat([expert, policy])).squeeze(1).split(n)
            loss = discriminator_loss(expert_logits, policy_logits)
            stats = {"gail/discriminator_loss": float(loss.detach())}
            if c.grad_penalty > 0:
                eps = torch.rand(n, 1)
                between = (eps * expert + (1 - eps) * policy).requires_grad_(True)
                (grad,) = torch.autograd.grad(self.discriminator(between).sum(), between, create_graph=True)
                penalty = lipschitz_penalty(grad)
                loss = loss + c.grad_penalty * penalty
                stats["gail/grad_penalty"] = float(penalty.detach())
            self.disc_optimizer.zero_grad()
            loss.backward()
            self.disc_optimizer.step()
        stats["gail/expert_accuracy"] = float((expert_logits > 0).float().mean())
        stats["gail/policy_accuracy"] = float((policy_logits < 0).float().mean())
        return stats

    # -- reports and checkpoints --------------------------------------------------------------------

    def summary_fields(self) -> dict[str, Any]:
        return {} if self.demos is None else demos_summary(self.demos)

    def write_artifacts(self, run: Run) -> None:
        if self.demos is not None:
            self.demos.save(run.dir / DEMONSTRATIONS_FILE)

    def state_dict(self) -> dict[str, Any]:
        demos = {} if self.demos is None else {"demonstrations": self.demos.arrays()}
        return {**super().state_dict(), "discriminator": self.discriminator.state_dict(),
                "disc_optimizer": self.disc_optimizer.state_dict(), **demos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.discriminator.load_state_dict(state["discriminator"])
        self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.use_demonstrations(Demonstrations.copy_of(state["demonstrations"]))
