"""Token-level PPO for a language model with a per-token KL penalty to a frozen reference.

Each generated token is one action. Its reward is the KL penalty -beta (log pi(a|s) - log ref(a|s)),
and the last token of a sequence also receives the reward model's score (Ziegler et al. 2019,
"Fine-Tuning Language Models from Human Preferences", sec. 2.2 and eq. 2; Stiennon et al. 2020,
eq. 1). Advantages are GAE (rlgen.returns.gae) over the tokens of each response, whitened over
the batch; the value head shares the policy's trunk. beta is fixed or follows the adaptive
controller of Ziegler et al. (sec. 2.2; lm-human-preferences' AdaptiveKLController).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlgen.config import (
    check_discount,
    check_learning_rate,
    check_nonnegative,
    check_positive,
    check_probability,
    check_range,
    named,
)
from rlgen.distributions import categorical_entropy, kl_k1, kl_k3
from rlgen.errors import UserError
from rlgen.losses import clip_fraction, clipped_surrogate_loss, masked_mean, normalize_advantages, value_loss
from rlgen.nets.gpt import PolicyWithValue
from rlgen.nets.optim import clipped_step
from rlgen.returns import gae
from rlgen.rlhf.sft import token_logprobs


@dataclass
class KLControllerConfig:
    kl_coef: float = 0.2
    """initial KL coefficient beta (Ziegler et al. 2019: 0.2 in their code's defaults)"""
    adaptive: bool = True
    """adapt beta towards kl_target (False: keep kl_coef fixed)"""
    kl_target: float = 6.0
    """target KL in nats per sequence"""
    kl_horizon: int = 10_000
    """episodes over which beta may change by a factor of about e^0.2"""

    def check(self, prefix: str) -> None:
        check_nonnegative(**named(self, "kl_coef", prefix=prefix))
        check_positive(**named(self, "kl_target", "kl_horizon", prefix=prefix))
        if self.adaptive and self.kl_coef == 0:
            raise UserError(f"{prefix}.kl_coef=0 stays 0 under the adaptive controller (it multiplies beta): "
                            f"start above 0, or set {prefix}.adaptive=false for no KL penalty")


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """beta <- beta (1 + e n_steps / horizon), e = clip(KL / target - 1, -0.2, 0.2)
    (Ziegler et al. 2019, sec. 2.2: a proportional controller in log-space)."""

    def __init__(self, kl_coef: float, target: float, horizon: int):
        self.value = kl_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon


def kl_controller(cfg: KLControllerConfig) -> FixedKLController | AdaptiveKLController:
    if cfg.adaptive:
        return AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon)
    return FixedKLController(cfg.kl_coef)


# -- the update ---------------------------------------------------------------------------------------


@dataclass
class LMPPOConfig:
    batch_size: int = 64
    """prompts (episodes) per rollout"""
    minibatch_size: int = 16
    """sequences per gradient step"""
    n_epochs: int = 4
    learning_rate: float = 3e-4
    gamma: float = 1.0
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    clip_range_vf: float = 0.2
    vf_coef: float = 0.1
    max_grad_norm: float = 1.0

    def check(self, prefix: str) -> None:
        check_positive(**named(self, "batch_size", "minibatch_size", "n_epochs", "clip_range_vf", "max_grad_norm",
                               prefix=prefix))
        check_learning_rate(**named(self, "learning_rate", prefix=prefix))
        check_discount(**named(self, "gamma", prefix=prefix))
        check_probability(**named(self, "gae_lambda", prefix=prefix))
        check_range(0, 1, open_low=True, why=" (the ratio is clipped to 1 +- clip_range)",
                    **named(self, "clip_range", prefix=prefix))
        check_nonnegative(**named(self, "vf_coef", prefix=prefix))


def token_rewards(score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor,
                  kl_coef: float) -> torch.Tensor:
    """(B, T) rewards: -beta * KL estimate on every response token, plus the score on the last."""
    rewards = -kl_coef * kl_k1(logp, logp_ref) * mask
    last = (mask * torch.arange(mask.shape[1])).argmax(dim=1)  # index of each response's last token
    rewards[torch.arange(len(score)), last] += score
    return rewards


def advantages_and_returns(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                           lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over each response (batch-major (B, T) in, out); the episode ends after its last token."""
    r = (rewards * mask).T.numpy()  # (T, B): time-major, as rlgen.returns.gae wants
    v = (values * mask).T.numpy()
    v_next = np.concatenate([v, np.zeros((1, v.shape[1]), dtype=v.dtype)])
    m = mask.T.numpy()
    ends = (m > 0) & (np.concatenate([m[1:], np.zeros((1, m.shape[1]))]) == 0)
    adv = torch.as_tensor(gae(r, v_next, ends, ends, gamma, lam)).T * mask
    return adv, adv + values * mask


@dataclass
class Rollout:
    seq: torch.Tensor
    """(B, L) prompt + response tokens"""
    mask: torch.Tensor
    """(B, L-1) 1 on positions whose next token was generated"""
    logp: torch.Tensor
    """(B, L-1) log-prob of each next token under the policy that sampled it"""
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def ppo_step(policy: PolicyWithValue, opt: torch.optim.Optimizer, b: Rollout,
             cfg: LMPPOConfig) -> dict[str, float]:
    """One clipped-surrogate gradient step on a minibatch (Schulman et al. 2017, eq. 7), with the
    pessimistic value clipping of Ziegler et al.'s code (rlgen.losses.value_loss says why)."""
    logits, values = policy(b.seq)
    values = values[:, :-1]
    logp = token_logprobs(logits, b.seq)
    ratio = torch.exp(logp - b.logp)
    pg_loss = clipped_surrogate_loss(b.advantages, ratio, cfg.clip_range, b.mask)
    # the 1/2 of lm-human-preferences' value loss, so that vf_coef means what it means there
    vf_loss = 0.5 * value_loss(values, b.returns, b.values, cfg.clip_range_vf, b.mask, pessimistic=True)
    loss = pg_loss + cfg.vf_coef * vf_loss
    clipped_step(opt, loss, policy.parameters(), cfg.max_grad_norm)
    with torch.no_grad():
        entropy = masked_mean(categorical_entropy(logits[:, :-1]), b.mask)
        approx_kl = masked_mean(kl_k3(b.logp, logp), b.mask)
    return {
        "train/policy_gradient_loss": pg_loss.item(),
        "train/value_loss": vf_loss.item(),
        "train/loss": loss.item(),
        "train/entropy_loss": -entropy.item(),
        "train/approx_kl": approx_kl.item(),
        "train/clip_fraction": clip_fraction(ratio, cfg.clip_range, b.mask).item(),
    }


def minibatch_epochs(n: int, n_epochs: int, minibatch_size: int, gen: torch.Generator,
                     step: Callable[[torch.Tensor], dict[str, float]]) -> dict[str, float]:
    """n_epochs passes over n samples, each in a new random order from `gen`, calling step(indices) on
    every minibatch; the steps' statistics averaged."""
    stats: dict[str, list[float]] = {}
    for _ in range(n_epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, minibatch_size):
            for key, value in step(order[start : start + minibatch_size]).items():
                stats.setdefault(key, []).append(value)
    return {k: float(np.mean(v)) for k, v in stats.items()}


def ppo_update(policy: PolicyWithValue, opt: torch.optim.Optimizer, rollout: Rollout, cfg: LMPPOConfig,
               gen: torch.Generator) -> dict[str, float]:
    """n_epochs passes of minibatch steps over the rollout's sequences; averaged statistics."""
    def step(idx: torch.Tensor) -> dict[str, float]:
        return ppo_step(policy, opt, Rollout(*(getattr(rollout, f)[idx] for f in Rollout.__dataclass_fields__)), cfg)

    return minibatch_epochs(len(rollout.seq), cfg.n_epochs, cfg.minibatch_size, gen, step)


@torch.no_grad()
def make_rollout(policy: PolicyWithValue, ref: nn.Module, seq: torch.Tensor, mask: torch.Tensor,
                 score: torch.Tensor, kl_coef: float, cfg: LMPPOConfig) -> tuple[Rollout, torch.Tensor]:
    """Log-probs, values, KL-penalised rewards and advantages of sampled sequences; also returns
    each sequence's KL estimate (sum over its tokens of log pi - log ref)."""
    logits, values = policy(seq)
    logp = token_logprobs(logits, seq)
    logp_ref = token_logprobs(ref.logits(ref.hidden(seq)), seq)
    values = values[:, :-1] * mask
    rewards = token_rewards(score, logp, logp_ref, mask, kl_coef)
    adv, returns = advantages_and_returns(rewards, values, mask, cfg.gamma, cfg.gae_lambda)
    kl = (kl_k1(logp, logp_ref) * mask).sum(1)
    return Rollout(seq, mask, logp, values, normalize_advantages(adv, mask), returns), kl
