"""What rlgen's policy-gradient agents share: PPO (ppo.py), A2C (a2c.py) and REINFORCE (reinforce.py).

Each is a stochastic policy network and (separately) a state-value network trained on the on-policy
loop (rlgen/loops.py: on_policy): a rollout of n_steps x n_envs with the current policy, then the
agent's update on it. This base holds the networks, acting, the rollout's GAE advantages and
returns, the log-probabilities and entropies of an update, and checkpoints; a subclass writes only
its update (and, where it needs another, its optimiser).

Discrete actions are categorical, Box actions a diagonal Gaussian with a state-independent log standard
deviation, as in SB3's policies, or with agent.use_sde generalized state-dependent exploration (gSDE;
Raffin et al. 2022, "Smooth Exploration for Robotic Reinforcement Learning"; rlgen/distributions.py): the
noise is the actor's last hidden features times an exploration matrix per env, drawn at the start of each
rollout and every sde_sample_freq steps, as SB3's use_sde does. Image observations (SB3's is_image_space
rule) go through a NatureCNN encoder shared by the two heads (nets/cnn.py), as in SB3's CnnPolicy;
`net_arch` is then the heads' hidden layers on its 512 features. Acting during a rollout uses a NumPy
snapshot of the MLPs (nets/mlp.py: numpy_forward), behind the encoder in torch when there is one; updates
are plain torch.

Invalid-action masking (agent.action_masking, Discrete actions): acting samples (or takes the argmax of)
the logits with every invalid action's at MASKED_LOGIT (rlgen/distributions.py), and the rollout keeps
the masks, so that an update reads the log-probabilities and entropy of the same masked distribution
(as sb3-contrib's MaskablePPO does). An update that reads `batch["masks"]` sets `update_reads_masks`;
REINFORCE's whole-episode batches do not carry masks, so it ignores them (and cannot act where a
masked action is an error).

With agent.normalize_obs / agent.normalize_reward the agent keeps a Normalizer (rlgen/normalize.py,
VecNormalize's semantics): the loop feeds it the training envs' steps and hands the agent normalised
observations and scaled rewards; `act` (evaluation, every later load) normalises with the statistics
as they were saved, frozen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
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
    named,
)
from rlgen.distributions import (
    categorical_entropy,
    categorical_log_probs,
    gaussian_entropy,
    gaussian_log_prob,
    gumbel_max_sample,
    masked_logits,
    np_gaussian_log_prob,
    np_log_softmax,
    np_masked_logits,
    np_sde_log_std,
    sde_log_std,
    sde_matrices,
    sde_noise,
)
from rlgen.envs import refuse_unmasked
from rlgen.errors import UserError
from rlgen.evaluation import MaskedPolicy
from rlgen.loops import Member, Rollout, each_update, flat, on_policy, on_policy_group
from rlgen.nets.cnn import image_encoder, torch_forward
from rlgen.nets.mlp import ACTIVATIONS, flat_dim, mlp, numpy_forward
from rlgen.nets.optim import FlatAdam, FlatParameters
from rlgen.nets.stack import Stack, stacked_forward
from rlgen.normalize import NormalizeConfig, Normalizer
from rlgen.returns import explained_variance, gae, linear_schedule
from rlgen.run import Run

SCHEDULES = ("constant", "linear")


def schedule(kind: str, initial: float, progress_remaining: float) -> float:
    return linear_schedule(initial, progress_remaining) if kind == "linear" else initial


@dataclass
class PolicyGradientConfig(MaskingConfig, NormalizeConfig, AgentConfig):
    """The settings every policy-gradient agent has (defaults: PPO's; each agent sets its own)."""

    n_envs: int = 8
    """parallel environments"""
    n_steps: int = 128
    """steps per environment per rollout"""
    learning_rate: float = 3e-4
    lr_schedule: str = "constant"
    """constant | linear (decays to 0 over the budget)"""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    normalize_advantage: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    """hidden layers, for the policy and (separately) the value network ([]: linear)"""
    activation: str = "tanh"
    ortho_init: bool = True
    log_std_init: float = 0.0
    """initial log standard deviation of the Gaussian policy (Box actions; with use_sde, of each weight
    of the exploration matrices)"""
    use_sde: bool = False
    """generalized state-dependent exploration for Box actions (gSDE, SB3's use_sde): the noise is the last
    hidden features times a random matrix, a smooth function of the state between draws of the matrix"""
    sde_sample_freq: int = -1
    """steps between draws of gSDE's exploration matrices (-1: once per rollout, at its start)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.lr_schedule", self.lr_schedule, SCHEDULES)
        check_choice("agent.activation", self.activation, tuple(ACTIVATIONS))
        check_positive(**named(self, "n_envs", "n_steps", "max_grad_norm"))
        check_learning_rate(**named(self, "learning_rate"))
        check_discount(**named(self, "gamma"))
        check_probability(**named(self, "gae_lambda"))
        check_nonnegative(**named(self, "ent_coef", "vf_coef"))
        check_layers(**named(self, "net_arch"))
        if self.sde_sample_freq == 0 or self.sde_sample_freq < -1:
            raise UserError(f"agent.sde_sample_freq must be -1 (one exploration matrix per rollout) or a positive "
                            f"number of steps, got {self.sde_sample_freq}")
        self.check_normalization()

    @property
    def rollout_size(self) -> int:
        return self.n_steps * self.n_envs


def check_sde(config: Any, action_space: gym.Space) -> None:
    """gSDE (agent.use_sde) explores in a Box action space only."""
    if getattr(config, "use_sde", False) and not isinstance(action_space, gym.spaces.Box):
        raise UserError(f"agent.use_sde=true explores continuous (Box) actions; this env's are "
                        f"{type(action_space).__name__}: set agent.use_sde=false")


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _no_value(features: np.ndarray) -> np.ndarray:
    return np.zeros((len(features), 1), dtype=np.float32)


class PolicyGradient(Agent):
    Config = PolicyGradientConfig
    update_reads_masks: ClassVar[bool] = False
    """the update reads the rollout's masks (`batch["masks"]` in evaluate_actions), so acting may use them"""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PolicyGradientConfig,
                 seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.n_envs = config.n_envs
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        act_dim = int(action_space.n) if self.discrete else flat_dim(action_space.shape)
        c = config
        check_sde(c, action_space)
        self.encoder = image_encoder(observation_space, c.ortho_init)
        if self.encoder is not None and c.normalize_obs:
            raise UserError(f"{c.name} reads image observations as pixels scaled to [0, 1], which "
                            "agent.normalize_obs=true does not apply to; set agent.normalize_obs=false")
        in_dim = flat_dim(observation_space.shape) if self.encoder is None else self.encoder.features_dim
        self.actor = mlp(in_dim, c.net_arch, act_dim, c.activation, c.ortho_init, out_gain=0.01)
        self.critic = mlp(in_dim, c.net_arch, 1, c.activation, c.ortho_init, out_gain=1.0) \
            if self.learns_values() else None
        # gSDE: one log standard deviation per weight of the (latent, act_dim) exploration matrix (SB3's full_std)
        latent_dim = c.net_arch[-1] if c.net_arch else in_dim
        std_shape = (latent_dim, act_dim) if c.use_sde else (act_dim,)
        self.log_std = nn.Parameter(torch.full(std_shape, c.log_std_init), requires_grad=not self.discrete)
        self.exploration: np.ndarray | None = None
        """gSDE's exploration matrices, one per env (n_envs, latent, act_dim), for the rollout under way"""
        self.exploration_steps = 0
        encoder_params = [] if self.encoder is None else list(self.encoder.parameters())
        critic_params = [] if self.critic is None else list(self.critic.parameters())
        self.optimizer = self.make_optimizer([*encoder_params, *self.actor.parameters(), *critic_params,
                                              self.log_std])
        self.n_updates = 0
        self.masking = c.action_masking and self.discrete and self.update_reads_masks
        """acts on the env's masks of valid actions"""
        self._snapshot: tuple[Any, Any, Any, Any] | None = None
        self.normalizer = Normalizer(c, flat_dim(observation_space.shape), c.n_envs, c.gamma) \
            if c.normalizes else None

    def learns_values(self) -> bool:
        """Whether the agent has a value network (REINFORCE without a baseline has none)."""
        return True

    def make_optimizer(self, params: list[nn.Parameter]) -> FlatParameters:
        # eps=1e-5 as in SB3's and CleanRL's PPO (Engstrom et al. 2020 list it among the details), and
        # SB3's A2C with use_rms_prop=false
        return FlatAdam(params, lr=self.config.learning_rate, eps=1e-5)

    # -- acting -------------------------------------------------------------------------------------

    def _np_nets(self) -> tuple[Any, Any, Any, Any]:
        """(encode, trunk, head, critic) as functions of NumPy batches: the critic reads encode(obs), the
        policy's output is head(trunk(encode(obs))), trunk's the last hidden features (gSDE's latent)."""
        if self._snapshot is None:
            encode = _identity if self.encoder is None else torch_forward(self.encoder)
            critic = _no_value if self.critic is None else numpy_forward(self.critic)
            self._snapshot = (encode, numpy_forward(self.actor[:-1]), numpy_forward(self.actor[-1:]), critic)
        return self._snapshot

    def normalized(self, obs: np.ndarray) -> np.ndarray:
        """Flat observations as the networks see them: normalised with the frozen statistics, if any."""
        return obs if self.normalizer is None else self.normalizer.obs(obs)

    def check_env(self, env: gym.Env) -> None:
        refuse_unmasked(env, self.config.name, self.masking, "must honour its mask: "
                        + ("set agent.action_masking=true" if self.update_reads_masks else "use agent=ppo or a2c"))

    def act(self, obs: np.ndarray, deterministic: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
        """Actions for a batch of observations; `mask` (n, n_actions), the valid actions of each, is
        honoured with agent.action_masking on Discrete actions."""
        encode, trunk, head, _ = self._np_nets()
        latent = trunk(encode(self.normalized(flat(obs))))
        out = head(latent)
        if self.discrete:
            out = np_masked_logits(out, mask if self.masking else None)
            if deterministic:
                return out.argmax(axis=1)
            return self._sample(out)[0]
        # gSDE outside a rollout: a fresh exploration matrix for each observation
        action = out if deterministic else self._sample(out, latent)[0]
        return np.clip(action, self.action_space.low, self.action_space.high)

    def episode_policy(self, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
        return MaskedPolicy(self.act, deterministic) if self.masking else super().episode_policy(deterministic)

    def _sample(self, out: np.ndarray, latent: np.ndarray | None = None, exploration: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Sample actions from the policy head's output (masked logits, where masked); return (actions,
        log-probabilities). gSDE reads the last hidden features `latent` and each row's exploration
        matrix (None: a fresh one per row)."""
        if self.discrete:
            logp_all = np_log_softmax(out)
            actions = gumbel_max_sample(logp_all, self.rng)
            return actions, logp_all[np.arange(len(out)), actions]
        log_std = self.log_std.detach().numpy()
        if self.config.use_sde:
            if exploration is None:
                exploration = sde_matrices(log_std, len(out), self.rng)
            actions = out + sde_noise(latent, exploration)
            log_std = np_sde_log_std(latent, log_std)
        else:
            actions = out + np.exp(log_std) * self.rng.standard_normal(out.shape).astype(np.float32)
        return actions, np_gaussian_log_prob(out, log_std, actions)

    def begin_rollout(self) -> None:
        """A rollout starts (rlgen/loops.py: collect_rollout): gSDE draws new exploration matrices."""
        self.exploration, self.exploration_steps = None, 0

    def _exploration(self) -> np.ndarray | None:
        """gSDE's exploration matrices for this step of the rollout, one per env: drawn at its start and
        then every sde_sample_freq steps (SB3's reset_noise in collect_rollouts)."""
        c = self.config
        if not c.use_sde:
            return None
        if self.exploration is None or (c.sde_sample_freq > 0 and self.exploration_steps % c.sde_sample_freq == 0):
            self.exploration = sde_matrices(self.log_std.detach().numpy(), self.n_envs, self.rng)
        self.exploration_steps += 1
        return self.exploration

    # -- training (the rollout loop is rlgen/loops.py: on_policy) ------------------------------------

    def learn(self, total_steps: int, run: Run) -> None:
        on_policy(self, run, total_steps, self.config.n_steps)

    @classmethod
    def learns_in_groups(cls) -> bool:
        return cls.learn is PolicyGradient.learn

    @classmethod
    def learn_group(cls, members: list[Member], total_steps: int) -> None:
        on_policy_group(members, total_steps, members[0].agent.config.n_steps, cls.update_group)

    @classmethod
    def update_group(cls, agents: list[PolicyGradient], rollouts: list[Rollout], progress_remaining: float
                     ) -> list[dict[str, float]]:
        """The update of a group of seeds: each member's own."""
        return each_update(agents, rollouts, progress_remaining)

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        raise NotImplementedError

    def policy_step(self, obs: np.ndarray, mask: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sampled actions, the actions the env gets (Box: clipped to its bounds), their
        log-probabilities and V(obs), for a batch of flat (normalised) observations (and their masks
        of valid actions, honoured as in `act`)."""
        encode, trunk, head, critic = self._np_nets()
        features = encode(obs)
        latent = trunk(features)
        out = head(latent)
        actions, logp = self._sample(np_masked_logits(out, mask) if self.masking else out, latent,
                                     self._exploration())
        env_actions = actions if self.discrete else np.clip(actions, self.action_space.low, self.action_space.high)
        return actions, env_actions.reshape((len(obs), *self.action_space.shape)), logp, critic(features)[:, 0]

    def value(self, obs: np.ndarray) -> np.ndarray:
        encode, _, _, critic = self._np_nets()
        return critic(encode(obs))[:, 0]

    def rollout_batch(self, rollout: Rollout) -> dict[str, np.ndarray]:
        """The rollout's real transitions with their GAE advantages and returns."""
        advantages = gae(rollout.rewards, rollout.values, rollout.terminated, rollout.done, self.config.gamma,
                         self.config.gae_lambda)
        valid = rollout.valid
        values = rollout.values[:-1]
        masks = {} if rollout.masks is None or not self.masking else {"masks": rollout.masks[valid]}
        return {
            "obs": rollout.obs[valid],
            "actions": rollout.actions[valid].astype(np.float32),
            "logp": rollout.log_probs[valid],
            "values": values[valid],
            "advantages": advantages[valid],
            "returns": (advantages + values)[valid],
            **masks,
        }

    def evaluate_actions(self, obs: torch.Tensor, actions: torch.Tensor, stack: Stack | None = None,
                         mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Log-probability and entropy of `actions` under the current policy, and V(obs) (zeros without a
        value network); with `stack`, of each member of a group on its own rows of (S, B, ...) batches;
        with `mask` (B, n_actions), of the policy over each row's valid actions."""
        if stack is None:
            features = obs if self.encoder is None else self.encoder(obs)
            if self.config.use_sde:
                latent = self.actor[:-1](features)
                actor, log_std = self.actor[-1](latent), sde_log_std(latent, self.log_std)
            else:
                actor, log_std = self.actor(features), self.log_std
            critic = torch.zeros(len(obs), 1) if self.critic is None else self.critic(features)
        else:
            actor, critic = stacked_forward(self.actor, stack, obs), stacked_forward(self.critic, stack, obs)
            log_std = None if self.discrete else stack.of(self.log_std).unsqueeze(1)
        if self.discrete:
            actor = masked_logits(actor, mask)
            logp = categorical_log_probs(actor).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
            # without an entropy bonus the entropy is only reported: keep it out of the backward pass
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.config.ent_coef != 0):
                entropy = categorical_entropy(actor)
        else:
            logp = gaussian_log_prob(actor, log_std, actions)
            entropy = gaussian_entropy(log_std).expand(logp.shape)
        return logp, entropy, critic.squeeze(-1)

    def gradient_step(self, loss: torch.Tensor) -> None:
        """One step of the optimiser on `loss`, the gradient's norm clipped to max_grad_norm first."""
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.clip_grad_norm(self.config.max_grad_norm)
        self.optimizer.step()
        self.n_updates += 1
        self._snapshot = None  # weights changed: rebuild the acting copy

    def fit_report(self, values: np.ndarray | None, returns: np.ndarray) -> dict[str, float]:
        """How well the values fit the returns (None: no value network), and the Gaussian policy's standard
        deviation, as SB3 logs them."""
        out = {}
        ev = float("nan") if values is None else explained_variance(values, returns)
        if np.isfinite(ev):  # undefined when every return is the same
            out["train/explained_variance"] = ev
        if not self.discrete:
            out["train/std"] = float(self.log_std.detach().exp().mean())
        return out

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "actor": self.actor.state_dict(),
            **({} if self.critic is None else {"critic": self.critic.state_dict()}),
            "log_std": self.log_std.detach().clone(),
            "optimizer": self.optimizer.state_dict(),
            "n_updates": self.n_updates,
            **({} if self.encoder is None else {"encoder": self.encoder.state_dict()}),
            **({} if self.normalizer is None else {"normalizer": self.normalizer.state_dict()}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.actor.load_state_dict(state["actor"])
        if self.critic is not None:
            self.critic.load_state_dict(state["critic"])
        if self.encoder is not None:
            self.encoder.load_state_dict(state["encoder"])
        with torch.no_grad():
            self.log_std.copy_(state["log_std"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.n_updates = int(state["n_updates"])
        if self.normalizer is not None:
            self.normalizer.load_state_dict(state["normalizer"])
        self._snapshot = None
