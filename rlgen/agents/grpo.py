"""Critic-free policy gradients for a language model: several completions of each prompt, each judged
against its siblings, so no value function is learnt.

- grpo (Shao et al. 2024, "DeepSeekMath", sec. 4.1): G completions per prompt; a completion's advantage
  is its reward-model score normalised within its group (rlgen.returns.group_advantages), the same for
  each of its tokens; the token-level clipped surrogate of PPO plus beta times the k3 estimate of
  KL(pi || pi_ref) on every token (their eq. 3 and 4; beta = 0 leaves it out). `agent.loss` picks how
  the token losses are averaged, as TRL's GRPOTrainer names it (rlgen.losses.token_loss_mean):
  grpo (per completion, then over completions), dapo (over every token of the batch) or dr_grpo
  (a constant: no length normalisation, and the advantages are not divided by the group's std).
- rloo (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
  from Human Feedback"): k completions per prompt; the reward is the score minus beta times the
  completion's KL estimate (sum over its tokens of log pi - log pi_ref: the KL folded into the reward,
  their eq. 1); the baseline of each completion is the mean reward of the other k - 1
  (rlgen.returns.leave_one_out_advantages); REINFORCE on the completion's log-probability. With
  n_epochs = 1 and the whole batch as one minibatch that is exactly their estimator; more passes use
  the completion-level ratio, clipped as PPO clips it (TRL's RLOOTrainer does the same).

`total_steps` counts generated tokens, as for rlhf (PPO).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rlgen.agents.lm import LanguageModelAgent, LanguageModelConfig
from rlgen.config import (
    check_choice,
    check_learning_rate,
    check_nonnegative,
    check_positive,
    check_range,
    named,
)
from rlgen.distributions import kl_k1, kl_k3
from rlgen.errors import UserError
from rlgen.losses import LOSS_REDUCTIONS, clip_fraction, clipped_surrogate, token_loss_mean
from rlgen.nets.optim import clipped_step
from rlgen.returns import group_advantages, leave_one_out_advantages
from rlgen.rlhf.corpus import PROMPT_LEN
from rlgen.rlhf.ppo_lm import minibatch_epochs
from rlgen.rlhf.sft import token_logprobs


@dataclass
class GroupConfig(LanguageModelConfig):
    group_size: int = 8
    """completions per prompt (GRPO's G, RLOO's k)"""
    batch_size: int = 64
    """completions per iteration (batch_size / group_size prompts)"""
    minibatch_size: int = 16
    """completions per gradient step"""
    n_epochs: int = 2
    """passes over each iteration's completions (GRPO's mu)"""
    learning_rate: float = 3e-4
    clip_range: float = 0.2
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "batch_size", "minibatch_size", "n_epochs", "max_grad_norm"))
        check_learning_rate(**named(self, "learning_rate"))
        check_range(0, 1, open_low=True, why=" (the ratio is clipped to 1 +- clip_range)",
                    **named(self, "clip_range"))
        if self.group_size < 2:
            raise UserError(f"agent.group_size={self.group_size} must be at least 2: a completion is judged "
                            "against the others of its prompt")
        if self.batch_size % self.group_size:
            raise UserError(f"agent.batch_size={self.batch_size} must be a multiple of agent.group_size="
                            f"{self.group_size} (whole groups of completions per prompt)")


@dataclass
class GRPOConfig(GroupConfig):
    name: str = "grpo"
    loss: str = "grpo"
    """grpo | dapo | dr_grpo: how token losses are averaged (and dr_grpo: no std normalisation)"""
    beta: float = 0.04
    """coefficient of the per-token k3 KL to the reference (DeepSeekMath's 0.04; 0: none)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.loss", self.loss, LOSS_REDUCTIONS)
        check_nonnegative(**named(self, "beta"))


@dataclass
class RLOOConfig(GroupConfig):
    name: str = "rloo"
    group_size: int = 4
    """completions per prompt, k (Ahmadian et al. 2024 use 2 to 4)"""
    n_epochs: int = 1
    minibatch_size: int = 64
    """the whole batch in one step: their REINFORCE estimator exactly"""
    learning_rate: float = 1e-3
    """one step per batch, so larger than grpo's (at 3e-4 gold rose a third as fast over 60,000 tokens)"""
    beta: float = 0.05
    """KL coefficient in the reward, score - beta * KL (TRL's RLOOTrainer default 0.05; 0: none)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nonnegative(**named(self, "beta"))


class GroupPolicyGradient(LanguageModelAgent):
    """Sample groups, judge each completion against its group, then clipped policy-gradient steps."""

    Config = GroupConfig

    def __init__(self, observation_space, action_space, config: GroupConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.lm = self.make_lm()
        self.opt = torch.optim.Adam(self.lm.parameters(), lr=config.learning_rate)

    @property
    def policy_lm(self) -> nn.Module:
        return self.lm

    def advantages(self, score: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        """(B,) advantage of each completion from its score and KL estimate, groups consecutive."""
        raise NotImplementedError

    def loss(self, logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, adv: torch.Tensor,
             mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def iteration(self) -> dict[str, float]:
        c = self.config
        assert self.ref is not None
        self.lm.eval()
        ids = self.prompts(c.batch_size // c.group_size, self.prompt_rng).repeat_interleave(c.group_size, 0)
        seq = self.sample(self.lm, ids)
        mask = self.response_mask(seq)
        with torch.no_grad():
            old_logp = token_logprobs(self.lm.logits(self.lm.hidden(seq)), seq)
            ref_logp = token_logprobs(self.ref.logits(self.ref.hidden(seq)), seq)
            kl = (kl_k1(old_logp, ref_logp) * mask).sum(1)
            score = self.proxy(seq)
        adv = self.advantages(score, kl)

        def step(i: torch.Tensor) -> dict[str, float]:
            logp = token_logprobs(self.lm.logits(self.lm.hidden(seq[i])), seq[i])
            loss, stats = self.loss(logp, old_logp[i], ref_logp[i], adv[i], mask[i])
            clipped_step(self.opt, loss, self.lm.parameters(), c.max_grad_norm)
            return {"train/loss": loss.item(), **stats}

        self.lm.train()
        stats = minibatch_epochs(len(seq), c.n_epochs, c.minibatch_size, self.gen, step)
        self.num_steps += int(mask.sum().item())
        groups = score.reshape(-1, c.group_size)
        return stats | self.monitor(seq, kl, score) | {
            "train/reward_std_in_group": groups.std(1).mean().item(),
            "train/advantage_abs": adv.abs().mean().item(),
        }

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"lm": self.lm.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lm.load_state_dict(state["lm"])
        self.opt.load_state_dict(copy.deepcopy(state["opt"]))


class GRPO(GroupPolicyGradient):
    Config = GRPOConfig

    def advantages(self, score: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        groups = score.reshape(-1, self.config.group_size).numpy()
        adv = group_advantages(groups, scale=self.config.loss != "dr_grpo")
        return torch.as_tensor(adv.reshape(-1), dtype=torch.float32)

    def loss(self, logp, old_logp, ref_logp, adv, mask):
        c = self.config
        ratio = torch.exp(logp - old_logp)
        per_token = -clipped_surrogate(adv[:, None], ratio, c.clip_range)
        token_kl = kl_k3(logp, ref_logp)
        if c.beta:
            per_token = per_token + c.beta * token_kl
        loss = token_loss_mean(per_token, mask, c.loss, self.block_size - PROMPT_LEN)
        return loss, {"train/clip_fraction": clip_fraction(ratio, c.clip_range, mask).item(),
                      "train/kl_k3": token_loss_mean(token_kl.detach(), mask, "dapo").item()}


class RLOO(GroupPolicyGradient):
    Config = RLOOConfig

    def advantages(self, score: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
        reward = (score - self.config.beta * kl).reshape(-1, self.config.group_size).numpy()
        return torch.as_tensor(leave_one_out_advantages(reward).reshape(-1), dtype=torch.float32)

    def loss(self, logp, old_logp, ref_logp, adv, mask):
        c = self.config
        ratio = torch.exp(((logp - old_logp) * mask).sum(1))  # of the whole completion
        loss = -clipped_surrogate(adv, ratio, c.clip_range).mean()
        return loss, {"train/clip_fraction": clip_fraction(ratio, c.clip_range).item()}
