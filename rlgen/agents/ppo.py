"""Proximal Policy Optimization (Schulman et al. 2017, "Proximal Policy Optimization Algorithms").

Clipped surrogate objective, GAE(lambda) advantages, entropy bonus, per-minibatch advantage
normalisation, several epochs of minibatch SGD per rollout, global gradient-norm clipping, linear
schedules, optional value clipping, Discrete (categorical) and Box (diagonal Gaussian) actions.
Defaults and semantics follow Stable-Baselines3's PPO so that `agent=sb3_ppo` with the same config
is a like-for-like check.

Image observations (SB3's is_image_space rule) go through a NatureCNN encoder shared by the two
heads (nets/cnn.py), as in SB3's CnnPolicy; `net_arch` is then the heads' hidden layers on its 512
features (`agent.net_arch=[]` is CnnPolicy's default). Acting during a rollout uses a NumPy snapshot
of the MLPs (nets/mlp.py: numpy_forward), behind the encoder in torch when there is one; the update
is plain torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlgen.agents.base import Agent
from rlgen.agents.ppo_stacked import STATS, train_stacked
from rlgen.config import (
    AgentConfig,
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
from rlgen.distributions import (
    categorical_entropy,
    categorical_log_probs,
    gaussian_entropy,
    gaussian_log_prob,
    gumbel_max_sample,
    kl_k3,
    np_gaussian_log_prob,
    np_log_softmax,
)
from rlgen.errors import UserError
from rlgen.loops import Member, Rollout, each_update, flat, on_policy, on_policy_group
from rlgen.losses import (
    clip_fraction,
    clipped_surrogate_loss,
    masked_mean,
    normalize_advantage_rows,
    normalize_advantages,
    value_loss,
)
from rlgen.nets.cnn import image_encoder, torch_forward
from rlgen.nets.mlp import ACTIVATIONS, flat_dim, mlp, numpy_forward
from rlgen.nets.optim import FlatAdam
from rlgen.nets.stack import Stack, stacked_forward
from rlgen.returns import explained_variance, gae, linear_schedule
from rlgen.run import Run


@dataclass
class PPOConfig(AgentConfig):
    name: str = "ppo"
    n_envs: int = 8
    """parallel environments"""
    n_steps: int = 128
    """steps per environment per rollout"""
    batch_size: int = 64
    """minibatch size"""
    n_epochs: int = 10
    """passes over each rollout"""
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"
    """constant | linear (decays to 0 over the budget)"""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    clip_range_schedule: str = "constant"
    """constant | linear"""
    clip_range_vf: float | None = None
    """clip the value update around the old values (None: off)"""
    normalize_advantage: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = None
    """stop the epochs of an update early when approx KL exceeds 1.5 x this (None: off)"""
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden layers, for the policy and (separately) the value network ([]: linear)"""
    activation: str = "tanh"
    ortho_init: bool = True
    log_std_init: float = 0.0
    """initial log standard deviation of the Gaussian policy (Box actions)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("agent.clip_range_schedule", self.clip_range_schedule, SCHEDULES)
        check_choice("agent.activation", self.activation, tuple(ACTIVATIONS))
        check_positive(**named(self, "n_envs", "n_steps", "batch_size", "n_epochs", "max_grad_norm", "clip_range_vf",
                               "target_kl"))
        check_learning_rate(**named(self, "learning_rate"))
        check_discount(**named(self, "gamma"))
        check_probability(**named(self, "gae_lambda"))
        # the ratio is clipped to [1 - clip_range, 1 + clip_range] (Schulman et al. 2017, eq. 7)
        check_range(0, 1, open_low=True, why=" (the ratio is clipped to 1 +- clip_range)", **named(self, "clip_range"))
        check_nonnegative(**named(self, "ent_coef", "vf_coef"))
        check_layers(**named(self, "net_arch"))
        if self.normalize_advantage and min(self.batch_size, self.rollout_size) < 2:
            raise UserError(f"agent.normalize_advantage needs minibatches of 2 or more (the standard deviation of "
                            f"one advantage is undefined): batch_size={self.batch_size}, n_steps x n_envs="
                            f"{self.rollout_size}; raise them or set agent.normalize_advantage=false")

    @property
    def rollout_size(self) -> int:
        return self.n_steps * self.n_envs


SCHEDULES = ("constant", "linear")


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def schedule(kind: str, initial: float, progress_remaining: float) -> float:
    return linear_schedule(initial, progress_remaining) if kind == "linear" else initial


class PPO(Agent):
    Config = PPOConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PPOConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.n_envs = config.n_envs
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        act_dim = int(action_space.n) if self.discrete else flat_dim(action_space.shape)
        c = config
        self.encoder = image_encoder(observation_space, c.ortho_init)
        in_dim = flat_dim(observation_space.shape) if self.encoder is None else self.encoder.features_dim
        self.actor = mlp(in_dim, c.net_arch, act_dim, c.activation, c.ortho_init, out_gain=0.01)
        self.critic = mlp(in_dim, c.net_arch, 1, c.activation, c.ortho_init, out_gain=1.0)
        self.log_std = nn.Parameter(torch.full((act_dim,), c.log_std_init), requires_grad=not self.discrete)
        encoder_params = [] if self.encoder is None else list(self.encoder.parameters())
        params = [*encoder_params, *self.actor.parameters(), *self.critic.parameters(), self.log_std]
        # eps=1e-5 as in SB3's and CleanRL's PPO (Engstrom et al. 2020 list it among the details)
        self.optimizer = FlatAdam(params, lr=c.learning_rate, eps=1e-5)
        self.n_updates = 0
        self._snapshot: tuple[Any, Any, Any] | None = None

    # -- acting -------------------------------------------------------------------------------------

    def _np_nets(self) -> tuple[Any, Any, Any]:
        """(encode, actor, critic) as functions of NumPy batches: the heads read encode(obs)."""
        if self._snapshot is None:
            encode = _identity if self.encoder is None else torch_forward(self.encoder)
            self._snapshot = (encode, numpy_forward(self.actor), numpy_forward(self.critic))
        return self._snapshot

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        encode, actor, _ = self._np_nets()
        out = actor(encode(flat(obs)))
        if self.discrete:
            if deterministic:
                return out.argmax(axis=1)
            return self._sample(out)[0]
        action = out if deterministic else self._sample(out)[0]
        return np.clip(action, self.action_space.low, self.action_space.high)

    def _sample(self, out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sample actions from the policy head's output; return (actions, log-probabilities)."""
        if self.discrete:
            logp_all = np_log_softmax(out)
            actions = gumbel_max_sample(logp_all, self.rng)
            return actions, logp_all[np.arange(len(out)), actions]
        log_std = self.log_std.detach().numpy()
        actions = out + np.exp(log_std) * self.rng.standard_normal(out.shape).astype(np.float32)
        return actions, np_gaussian_log_prob(out, log_std, actions)

    # -- training (the rollout loop is rlgen/loops.py: on_policy) ------------------------------------

    def learn(self, total_steps: int, run: Run) -> None:
        on_policy(self, run, total_steps, self.config.n_steps)

    @classmethod
    def learns_in_groups(cls) -> bool:
        return cls.learn is PPO.learn

    @classmethod
    def learn_group(cls, members: list[Member], total_steps: int) -> None:
        on_policy_group(members, total_steps, members[0].agent.config.n_steps, cls.update_group)

    def policy_step(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sampled actions, the actions the env gets (Box: clipped to its bounds), their
        log-probabilities and V(obs), for a batch of flat observations."""
        encode, actor, critic = self._np_nets()
        features = encode(obs)
        actions, logp = self._sample(actor(features))
        env_actions = actions if self.discrete else np.clip(actions, self.action_space.low, self.action_space.high)
        return actions, env_actions.reshape((len(obs), *self.action_space.shape)), logp, critic(features)[:, 0]

    def value(self, obs: np.ndarray) -> np.ndarray:
        encode, _, critic = self._np_nets()
        return critic(encode(obs))[:, 0]

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        """GAE on the rollout, then PPO's epochs of minibatch updates on its real transitions."""
        return self.train(self.rollout_batch(rollout), progress_remaining)

    @classmethod
    def update_group(cls, agents: list[PPO], rollouts: list[Rollout], progress_remaining: float
                     ) -> list[dict[str, float]]:
        """The update of a group of seeds (python -m rlgen.train seeds=S): one stacked update
        (`train_stacked`) where every member is a plain PPO on flat observations, each member's own
        update otherwise (GAIL's rewards, image encoders)."""
        if not all(stackable(a) for a in agents):
            return each_update(agents, rollouts, progress_remaining)
        c = agents[0].config
        return train_stacked(agents, [a.rollout_batch(r) for a, r in zip(agents, rollouts, strict=True)],
                             schedule(c.lr_schedule, c.learning_rate, progress_remaining),
                             schedule(c.clip_range_schedule, c.clip_range, progress_remaining))

    def rollout_batch(self, rollout: Rollout) -> dict[str, np.ndarray]:
        """The rollout's real transitions with their GAE advantages and returns."""
        advantages = gae(rollout.rewards, rollout.values, rollout.terminated, rollout.done, self.config.gamma,
                         self.config.gae_lambda)
        valid = rollout.valid
        values = rollout.values[:-1]
        return {
            "obs": rollout.obs[valid],
            "actions": rollout.actions[valid].astype(np.float32),
            "logp": rollout.log_probs[valid],
            "values": values[valid],
            "advantages": advantages[valid],
            "returns": (advantages + values)[valid],
        }

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, stack: Stack | None = None
                         ) -> tuple[torch.Tensor, ...]:
        """Log-probability and entropy of `actions` under the current policy, and V(obs); with `stack`,
        of each member of a group on its own rows of (S, B, ...) batches."""
        if stack is None:
            features = obs if self.encoder is None else self.encoder(obs)
            actor, critic, log_std = self.actor(features), self.critic(features), self.log_std
        else:
            actor, critic = stacked_forward(self.actor, stack, obs), stacked_forward(self.critic, stack, obs)
            log_std = None if self.discrete else stack.of(self.log_std).unsqueeze(1)
        if self.discrete:
            logp = categorical_log_probs(actor).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            # without an entropy bonus the entropy is only reported: keep it out of the backward pass
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.ent_coef != 0):
                entropy = categorical_entropy(actor)
        else:
            logp = gaussian_log_prob(actor, log_std, actions)
            entropy = gaussian_entropy(log_std).expand(logp.shape)
        return logp, entropy, critic.squeeze(-1)

    def minibatch_loss(self, mb: dict[str, torch.Tensor], logp: torch.Tensor, entropy: torch.Tensor,
                       value: torch.Tensor, clip: float, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """PPO's loss on a minibatch and its statistics; with `mask`, one of each per row of a group's
        padded (S, B) minibatches, over the entries the mask keeps."""
        c = self.config
        dim = None if mask is None else 1
        adv = mb["advantages"]
        if c.normalize_advantage:
            if mask is not None:
                adv = normalize_advantage_rows(adv, mask)
            elif len(adv) > 1:
                adv = normalize_advantages(adv)
        ratio = (logp - mb["logp"]).exp()
        pg_loss = clipped_surrogate_loss(adv, ratio, clip, mask, dim)
        vf_loss = value_loss(value, mb["returns"], mb["values"], c.clip_range_vf, mask=mask, dim=dim)  # SB3's form
        ent_loss = -masked_mean(entropy, mask, dim)
        with torch.no_grad():
            # KL(old || new) from samples of the old policy, as SB3 estimates it
            kl = masked_mean(kl_k3(mb["logp"], logp), mask, dim)
            clipfrac = clip_fraction(ratio, clip, mask, dim)
        return {"loss": pg_loss + c.ent_coef * ent_loss + c.vf_coef * vf_loss, "pg": pg_loss, "vf": vf_loss,
                "ent": ent_loss, "kl": kl, "clipfrac": clipfrac}

    def _minibatches(self, data: dict[str, torch.Tensor], n: int, size: int):
        perm = torch.as_tensor(self.rng.permutation(n))
        for start in range(0, n, size):
            idx = perm[start : start + size]
            yield {k: v[idx] for k, v in data.items()}

    def train(self, batch: dict[str, np.ndarray], progress_remaining: float) -> dict[str, float]:
        """n_epochs of minibatch updates on one rollout; returns the mean statistics."""
        c = self.config
        lr = schedule(c.lr_schedule, c.learning_rate, progress_remaining)
        clip = schedule(c.clip_range_schedule, c.clip_range, progress_remaining)
        self.optimizer.lr = lr
        data = {k: torch.as_tensor(v) for k, v in batch.items()}
        n = len(data["obs"])
        stats: dict[str, list[float]] = {k: [] for k in STATS}
        stop = False
        for _ in range(c.n_epochs):
            # one minibatch holding the whole rollout needs no shuffle: every statistic is a mean over it
            minibatches = [data] if n <= c.batch_size else self._minibatches(data, n, c.batch_size)
            for mb in minibatches:
                logp, entropy, value = self.evaluate_actions(mb["obs"], mb["actions"])
                terms = self.minibatch_loss(mb, logp, entropy, value, clip)
                approx_kl = terms["kl"].item()
                if c.target_kl is not None and approx_kl > 1.5 * c.target_kl:
                    stop = True  # as SB3: skip this step and end the update
                    break
                self.optimizer.zero_grad()
                terms["loss"].backward()
                self.optimizer.clip_grad_norm(c.max_grad_norm)
                self.optimizer.step()
                self.n_updates += 1
                for key in STATS:
                    stats[key].append(approx_kl if key == "kl" else terms[key].item())
            if stop:
                break
        self._snapshot = None  # weights changed: rebuild the acting copy
        means = {k: float(np.mean(v)) for k, v in stats.items()} if stats["loss"] else None
        return self.report(means, approx_kl, lr, clip, batch)

    def report(self, means: dict[str, float] | None, approx_kl: float, lr: float, clip: float,
               batch: dict[str, np.ndarray]) -> dict[str, float]:
        """The update's statistics as SB3 logs them: `means` over its minibatch steps (None if target_kl
        stopped it before the first, whose `approx_kl` is then reported)."""
        if means is None:
            return {"train/approx_kl": float(approx_kl), "train/learning_rate": lr, "train/clip_range": clip}
        out = {
            "train/policy_gradient_loss": means["pg"],
            "train/value_loss": means["vf"],
            "train/entropy_loss": means["ent"],
            "train/loss": means["loss"],
            "train/approx_kl": means["kl"],
            "train/clip_fraction": means["clipfrac"],
            "train/learning_rate": lr,
            "train/clip_range": clip,
            "train/n_updates": self.n_updates,
        }
        ev = explained_variance(batch["values"], batch["returns"])
        if np.isfinite(ev):  # undefined when every return is the same
            out["train/explained_variance"] = ev
        if not self.discrete:
            out["train/std"] = float(self.log_std.detach().exp().mean())
        return {k: float(v) for k, v in out.items()}

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "log_std": self.log_std.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "n_updates": self.n_updates,
            **({} if self.encoder is None else {"encoder": self.encoder.state_dict()}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
        with torch.no_grad():
            self.log_std.copy_(state["log_std"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.n_updates = int(state["n_updates"])
        self._snapshot = None


def stackable(agent: PPO) -> bool:
    """A plain PPO on flat observations: its update is `train_stacked`'s for a member."""
    plain = all(getattr(type(agent), name) is getattr(PPO, name)
                for name in ("update", "rollout_batch", "train", "evaluate_actions", "minibatch_loss"))
    return plain and agent.encoder is None
