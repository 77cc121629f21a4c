"""Advantage Actor-Critic (`a2c`; Mnih et al. 2016, "Asynchronous Methods for Deep Reinforcement
Learning", Algorithm S3), synchronous, as Stable-Baselines3's A2C implements it.

Each rollout of n_steps x n_envs (5 x 8 by default) is one gradient step on the whole rollout:

    loss = -mean(A_t log pi(a_t | s_t)) + ent_coef * (-mean(H[pi(. | s_t)])) + vf_coef * mean((R_t - V(s_t))^2)

with GAE(lambda) advantages A_t and returns R_t = A_t + V(s_t) (lambda = 1, the default: the n-step
returns of Mnih et al., bootstrapped from V of the rollout's last observation and, at a time-limit
truncation, of the episode's final one), RMSprop (alpha 0.99, eps rms_prop_eps, as torch computes it)
or Adam, and the gradient's norm clipped to max_grad_norm. From the same weights and the same rollout
its update equals SB3's A2C's (tests/test_a2c.py). Everything but the update is the policy-gradient
agents' (rlgen/agents/policy_gradient.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlgen.agents.policy_gradient import PolicyGradient, PolicyGradientConfig, schedule
from rlgen.config import check_positive, named
from rlgen.errors import UserError
from rlgen.loops import Rollout
from rlgen.losses import normalize_advantages, value_loss
from rlgen.nets.optim import FlatParameters, FlatRMSprop

RMSPROP_ALPHA = 0.99
"""RMSprop's decay of its mean of squared gradients (SB3's A2C; Mnih et al. 2016, sec. 8, use 0.99 too)"""


@dataclass
class A2CConfig(PolicyGradientConfig):
    """SB3's A2C defaults."""

    name: str = "a2c"
    n_steps: int = 5
    learning_rate: float = 7e-4
    gae_lambda: float = 1.0
    """1: n-step returns (Mnih et al. 2016); below 1: GAE(lambda) (Schulman et al. 2016)"""
    normalize_advantage: bool = False
    """standardise the advantages of each rollout"""
    rms_prop_eps: float = 1e-5
    """RMSprop's epsilon, added to the root of the mean squared gradient"""
    use_rms_prop: bool = True
    """RMSprop (alpha 0.99); false: Adam (eps 1e-5)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "rms_prop_eps"))
        if self.normalize_advantage and self.rollout_size < 2:
            raise UserError(f"agent.normalize_advantage needs rollouts of 2 or more steps (the standard deviation "
                            f"of one advantage is undefined): n_steps x n_envs={self.rollout_size}; raise them or "
                            "set agent.normalize_advantage=false")


class A2C(PolicyGradient):
    Config = A2CConfig
    update_reads_masks = True

    def make_optimizer(self, params: list[nn.Parameter]) -> FlatParameters:
        c = self.config
        if c.use_rms_prop:
            return FlatRMSprop(params, lr=c.learning_rate, alpha=RMSPROP_ALPHA, eps=c.rms_prop_eps)
        return super().make_optimizer(params)

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        """GAE on the rollout, then one gradient step on all its real transitions."""
        c = self.config
        return self.train(self.rollout_batch(rollout), schedule(c.lr_schedule, c.learning_rate, progress_remaining))

    def train(self, batch: dict[str, np.ndarray], lr: float) -> dict[str, float]:
        """One gradient step on a batch (rollout_batch's arrays) at learning rate `lr`; SB3's A2C.train."""
        c = self.config
        data = {k: torch.as_tensor(v) for k, v in batch.items()}
        logp, entropy, value = self.evaluate_actions(data["obs"], data["actions"], mask=data.get("masks"))
        adv = data["advantages"]
        if c.normalize_advantage and len(adv) > 1:
            adv = normalize_advantages(adv)
        pg_loss = -(adv * logp).mean()
        vf_loss = value_loss(value, data["returns"])
        ent_loss = -entropy.mean()
        self.optimizer.lr = lr
        self.gradient_step(pg_loss + c.ent_coef * ent_loss + c.vf_coef * vf_loss)
        out = {
            "train/policy_loss": pg_loss.item(),
            "train/value_loss": vf_loss.item(),
            "train/entropy_loss": ent_loss.item(),
            "train/learning_rate": lr,
            "train/n_updates": self.n_updates,
            **self.fit_report(batch["values"], batch["returns"]),
        }
        return {k: float(v) for k, v in out.items()}
