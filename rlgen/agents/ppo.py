"""Proximal Policy Optimization (Schulman et al. 2017, "Proximal Policy Optimization Algorithms").

Clipped surrogate objective, GAE(lambda) advantages, entropy bonus, per-minibatch advantage
normalisation, several epochs of minibatch SGD per rollout, global gradient-norm clipping, linear
schedules, optional value clipping, Discrete (categorical) and Box (diagonal Gaussian, or gSDE's
state-dependent noise with agent.use_sde) actions.
Defaults and semantics follow Stable-Baselines3's PPO so that `agent=sb3_ppo` with the same config
is a like-for-like check. The networks, acting, GAE and checkpoints are every policy-gradient agent's
(rlgen/agents/policy_gradient.py); this file is PPO's update.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlgen.agents.policy_gradient import SCHEDULES, PolicyGradient, PolicyGradientConfig, schedule
from rlgen.agents.ppo_stacked import STATS, train_stacked
from rlgen.config import check_choice, check_positive, check_range, named
from rlgen.distributions import kl_k3
from rlgen.errors import UserError
from rlgen.loops import Rollout, each_update
from rlgen.losses import (
    clip_fraction,
    clipped_surrogate_loss,
    masked_mean,
    normalize_advantage_rows,
    normalize_advantages,
    value_loss,
)


@dataclass
class PPOConfig(PolicyGradientConfig):
    name: str = "ppo"
    batch_size: int = 64
    """minibatch size"""
    n_epochs: int = 10
    """passes over each rollout"""
    clip_range: float = 0.2
    clip_range_schedule: str = "constant"
    """constant | linear"""
    clip_range_vf: float | None = None
    """clip the value update around the old values (None: off)"""
    target_kl: float | None = None
    """stop the epochs of an update early when approx KL exceeds 1.5 x this (None: off)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.clip_range_schedule", self.clip_range_schedule, SCHEDULES)
        check_positive(**named(self, "batch_size", "n_epochs", "clip_range_vf", "target_kl"))
        # the ratio is clipped to [1 - clip_range, 1 + clip_range] (Schulman et al. 2017, eq. 7)
        check_range(0, 1, open_low=True, why=" (the ratio is clipped to 1 +- clip_range)", **named(self, "clip_range"))
        if self.normalize_advantage and min(self.batch_size, self.rollout_size) < 2:
            raise UserError(f"agent.normalize_advantage needs minibatches of 2 or more (the standard deviation of "
                            f"one advantage is undefined): batch_size={self.batch_size}, n_steps x n_envs="
                            f"{self.rollout_size}; raise them or set agent.normalize_advantage=false")


class PPO(PolicyGradient):
    Config = PPOConfig
    update_reads_masks = True

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        """GAE on the rollout, then PPO's epochs of minibatch updates on its real transitions."""
        return self.train(self.rollout_batch(rollout), progress_remaining)

    @classmethod
    def update_group(cls, agents: list[PPO], rollouts: list[Rollout], progress_remaining: float
                     ) -> list[dict[str, float]]:
        """The update of a group of seeds (python -m rlgen.train seeds=S): one stacked update
        (`train_stacked`) where every member is a plain PPO on flat observations, each member's own
        update otherwise (GAIL's rewards, image encoders)."""
        # the stacked update has no masks: a masked rollout takes each member's own (masked) update
        if not all(stackable(a) for a in agents) or any(r.masks is not None for r in rollouts):
            return each_update(agents, rollouts, progress_remaining)
        c = agents[0].config
        return train_stacked(agents, [a.rollout_batch(r) for a, r in zip(agents, rollouts, strict=True)],
                             schedule(c.lr_schedule, c.learning_rate, progress_remaining),
                             schedule(c.clip_range_schedule, c.clip_range, progress_remaining))

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
                logp, entropy, value = self.evaluate_actions(mb["obs"], mb["actions"], mask=mb.get("masks"))
                terms = self.minibatch_loss(mb, logp, entropy, value, clip)
                approx_kl = terms["kl"].item()
                if c.target_kl is not None and approx_kl > 1.5 * c.target_kl:
                    stop = True  # as SB3: skip this step and end the update
                    break
                self.gradient_step(terms["loss"])
                for key in STATS:
                    stats[key].append(approx_kl if key == "kl" else terms[key].item())
            if stop:
                break
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
            **self.fit_report(batch["values"], batch["returns"]),
        }
        return {k: float(v) for k, v in out.items()}


def stackable(agent: PPO) -> bool:
    """A plain PPO on flat observations with a state-independent Gaussian (no gSDE) where actions are
    Box: its update is `train_stacked`'s for a member."""
    plain = all(getattr(type(agent), name) is getattr(PPO, name)
                for name in ("update", "rollout_batch", "train", "evaluate_actions", "minibatch_loss"))
    return plain and agent.encoder is None and not agent.config.use_sde
