"""Soft Q-learning for discrete actions (Haarnoja et al. 2017, "Reinforcement Learning with Deep
Energy-Based Policies"), on DQN's machinery: replay buffer, target network, the same schedules.

Two things change. The target backs up the soft value of the next state instead of its maximum
(the soft Bellman equation, sec. 2),

    y = r + gamma * (1 - terminated) * ent_coef * log sum_a' exp(Q_target(s', a') / ent_coef),

and the agent acts by sampling the Boltzmann policy pi(a|s) = exp((Q(s, a) - V(s)) / ent_coef), the
energy-based policy whose energy is -Q / ent_coef (sec. 2). With discrete actions the partition
function is an exact sum, so the paper's sampling network and importance-sampled soft value are not
needed. Deterministic acting (evaluation) is argmax Q, the ent_coef -> 0 limit of the same policy.

The temperature ent_coef is either fixed or tuned toward a target entropy by dual
gradient descent, as SAC does (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications", sec. 5) in its discrete form (Christodoulou 2019, "Soft Actor-Critic for
Discrete Action Settings", eq. 11: the expectation over actions is computed exactly). The tuned
configs (conf/tuned/sql_<env>.yaml) tune it: what matters is ent_coef against the gaps between actions'
Q-values, not against Q itself, and the gaps change by orders of magnitude across envs and during
training (MountainCar, median gap: 0.04 at the end of a run that never reached the flag, 0.3-0.8 in runs that
did; benchmarks/results/sql_temperature).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.agents.dqn import DQN, DQNConfig
from rlgen.config import check_learning_rate, check_probability, check_range, named
from rlgen.distributions import categorical_entropy, gumbel_max_sample, masked_values, random_actions
from rlgen.soft import torch_soft_value


@dataclass
class SQLConfig(DQNConfig):
    name: str = "sql"
    ent_coef: float = 0.05
    """temperature of the entropy bonus (the initial value when auto_ent_coef)"""
    auto_ent_coef: bool = False
    """tune ent_coef so that the policy's entropy tracks target_entropy_ratio * log |A|"""
    target_entropy_ratio: float = 0.2
    """target entropy as a fraction of the maximum, log |A|. Christodoulou 2019 uses 0.98, a nearly
    uniform policy: for a Boltzmann policy over Q that target is out of reach once Q separates the
    actions, and ent_coef then grows without bound (x840 in 50k CartPole steps); 0.2 is met and held"""
    ent_coef_learning_rate: float = 3e-4
    """Adam step size for log ent_coef (SAC's default learning rate)"""
    exploration_initial_eps: float = 0.0
    """the Boltzmann policy explores by itself; epsilon > 0 mixes in uniform actions on top"""
    exploration_final_eps: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(0, open_low=True, why=" (the temperature divides Q; its -> 0 limit is agent=dqn)",
                    **named(self, "ent_coef"))
        check_probability(**named(self, "target_entropy_ratio"))
        check_learning_rate(**named(self, "ent_coef_learning_rate"))


class SQL(DQN):
    Config = SQLConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: SQLConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.target_entropy = config.target_entropy_ratio * math.log(self.n_actions)
        self.log_ent_coef = torch.tensor(math.log(config.ent_coef), requires_grad=True)
        self.ent_optimizer = torch.optim.Adam([self.log_ent_coef], lr=config.ent_coef_learning_rate)
        self.ent_coef = config.ent_coef
        self._entropies: list[float] = []
        self._ent_losses: list[float] = []

    def greedy_or_explore(self, obs: np.ndarray, epsilon: float, mask: np.ndarray | None = None) -> np.ndarray:
        """The behaviour policy: a sample of the Boltzmann policy over the valid actions of `mask`
        (epsilon-mixed with uniform valid actions if > 0)."""
        # Gumbel-max: no exponentials, so no overflow for large Q / ent_coef; a masked action's -inf never wins
        actions = gumbel_max_sample(masked_values(self.q_values(obs), mask) / self.ent_coef, self.rng)
        if epsilon > 0:
            explore = self.rng.random(len(obs)) < epsilon
            actions[explore] = random_actions(int(explore.sum()), self.n_actions, self.rng,
                                              None if mask is None else mask[explore])
        return actions

    @torch.no_grad()
    def td_target(self, rewards: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor,
                  next_masks: torch.Tensor | None = None) -> torch.Tensor:
        """r + gamma * (1 - terminated) * ent_coef * logsumexp(Q_target(s', .) / ent_coef), the sum over
        the valid actions of `next_masks`.

        Batches may carry leading dimensions (a whole training phase at once, see `frozen_targets`).
        """
        next_v = torch_soft_value(self.q_target(next_obs), self.ent_coef, next_masks)
        return rewards + self.config.gamma * (1.0 - terminated) * next_v

    def after_gradient_step(self, batches: dict[str, torch.Tensor], i: int) -> None:
        """A tuned temperature takes one step per gradient step, on that step's replay states; a
        fixed one only has the policy's entropy measured, once per phase on all of its states."""
        if self.config.auto_ent_coef:
            self._temperature_step(batches["next_obs"][i])
        elif i == len(batches["next_obs"]) - 1:
            self._temperature_step(batches["next_obs"])

    @property
    def frozen_targets(self) -> bool:
        """A tuned temperature changes at every gradient step, and the soft target with it, so then
        targets are computed step by step; a fixed one leaves them to the target network alone."""
        return super().frozen_targets and not self.config.auto_ent_coef

    @torch.no_grad()
    def _temperature_step(self, states: torch.Tensor) -> None:
        """Record the online policy's entropy on `states`; with auto_ent_coef, one dual step on ent_coef.

        Loss (Christodoulou 2019, eq. 11, whose alpha is ent_coef, with log ent_coef as the variable as
        in SB3's SAC): J = -log(ent_coef) * (target_entropy - H(pi(.|s))); it raises ent_coef while H
        is below target.
        """
        ent = categorical_entropy(self.q_net(states) / self.ent_coef).mean()
        self._entropies.append(ent.item())
        if not self.config.auto_ent_coef:
            return
        with torch.enable_grad():
            loss = -self.log_ent_coef * (self.target_entropy - ent)
            self.ent_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.ent_optimizer.step()
        self.ent_coef = float(self.log_ent_coef.detach().exp())
        self._ent_losses.append(loss.item())

    def train(self, gradient_steps: int) -> dict[str, float]:
        stats = super().train(gradient_steps)
        stats["train/entropy"] = float(np.mean(self._entropies)) if self._entropies else math.nan
        stats["train/ent_coef"] = self.ent_coef
        if self._ent_losses:
            stats["train/ent_coef_loss"] = float(np.mean(self._ent_losses))
        self._entropies.clear()
        self._ent_losses.clear()
        return stats

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "log_ent_coef": self.log_ent_coef.detach().clone(),
                "ent_optimizer": self.ent_optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_ent_coef.copy_(state["log_ent_coef"])
        self.ent_optimizer.load_state_dict(copy.deepcopy(state["ent_optimizer"]))  # else torch keeps the caller's
        self.ent_coef = float(self.log_ent_coef.detach().exp())
