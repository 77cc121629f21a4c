"""The reward model: the SFT backbone with a scalar head, trained on labelled pairs by Bradley-Terry.

Loss (Ouyang et al. 2022, eq. 1; Stiennon et al. 2020, sec. 3.4):
    loss = -log sigmoid(r(chosen) - r(rejected)),
the negative log-likelihood of the labels under the Bradley-Terry model. The score of a sequence is
the head's output at its last token (<eos>, or the last position when it never ended). Logged as
TRL's RewardTrainer names them: loss, accuracy (chosen scored above rejected), margin (mean
r(chosen) - r(rejected)); held-out figures with the `eval_` prefix.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rlgen.config import check_learning_rate, check_nonnegative, check_positive, named
from rlgen.losses import bradley_terry_loss
from rlgen.nets.gpt import ScalarHead
from rlgen.nets.optim import clipped_step


@dataclass
class RewardModelConfig:
    n_pairs: int = 2000
    """labelled pairs for training (each pair: two SFT samples for one prompt)"""
    n_eval_pairs: int = 500
    """held-out pairs for accuracy"""
    rationality: float = 2.0
    """Bradley-Terry coefficient of the simulated human, P(a preferred) = sigmoid(rationality (g_a - g_b))
    (larger: less label noise)"""
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 1e-3

    def check(self, prefix: str) -> None:
        check_positive(**named(self, "n_pairs", "n_eval_pairs", "epochs", "batch_size", prefix=prefix))
        # below 0 the simulated human prefers the worse response: every label would be inverted
        check_nonnegative(**named(self, "rationality", prefix=prefix))
        check_learning_rate(**named(self, "learning_rate", prefix=prefix))


def last_token_index(seq: torch.Tensor, pad: int) -> torch.Tensor:
    """(B,) index of each sequence's last non-padding token."""
    positions = torch.arange(seq.shape[1]).expand_as(seq)
    return torch.where(seq != pad, positions, -1).max(dim=1).values


class RewardModel(nn.Module):
    """score(seq) -> (B,) scalar rewards."""

    def __init__(self, lm: nn.Module, pad: int):
        super().__init__()
        self.net = ScalarHead(copy.deepcopy(lm), lm.n_embd)
        self.pad = pad

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        scores = self.net(seq)  # (B, T)
        return scores.gather(1, last_token_index(seq, self.pad)[:, None]).squeeze(1)


def pair_stats(rm: RewardModel, chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        r_c, r_r = rm(chosen), rm(rejected)
    return {
        "loss": bradley_terry_loss(r_c, r_r).item(),
        "accuracy": (r_c > r_r).float().mean().item(),
        "margin": (r_c - r_r).mean().item(),
        "mean_reward": torch.cat([r_c, r_r]).mean().item(),
    }


def train_reward_model(rm: RewardModel, chosen: torch.Tensor, rejected: torch.Tensor,
                       cfg: RewardModelConfig, seed: int,
                       on_step: Callable[[int, dict[str, float]], None] | None = None) -> list[dict]:
    """Minibatch AdamW on the Bradley-Terry loss; returns per-step training stats."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(rm.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    history: list[dict] = []
    rm.train()
    step = 0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(chosen), generator=gen)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            r_c, r_r = rm(chosen[idx]), rm(rejected[idx])
            loss = bradley_terry_loss(r_c, r_r)
            clipped_step(opt, loss, rm.parameters(), 1.0)
            stats = {"loss": loss.item(), "accuracy": (r_c > r_r).float().mean().item(),
                     "margin": (r_c - r_r).mean().item()}
            history.append(stats)
            if on_step is not None:
                on_step(step, stats)
            step += 1
    rm.eval()
    return history


def order_pairs(a: np.ndarray, b: np.ndarray, a_preferred: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) token tensors from two arrays of samples and the labels."""
    pick = a_preferred.astype(bool)[:, None]
    return torch.as_tensor(np.where(pick, a, b)), torch.as_tensor(np.where(pick, b, a))
