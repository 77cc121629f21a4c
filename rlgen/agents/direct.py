"""Direct alignment: the policy learns from the labels themselves, without a reward model or sampling.

The log-ratio of a completion, log pi(y|x) - log pi_ref(y|x) summed over its tokens, is an implicit
reward (Rafailov et al. 2023, eq. 5); each method fits it to the hidden human's labels
(rlgen/rlhf/preferences.py: the very pairs the other methods' reward model learns from):

- dpo: the Bradley-Terry likelihood of the pairs (Rafailov et al. 2023, eq. 7);
- ipo: the squared distance of the pair's margin to 1 / (2 beta) (Azar et al. 2023, eq. 17; beta is
  their tau, as TRL names it);
- kto: each sample of the pairs labelled alone, desirable or not, against a reference point that
  estimates the policy's KL (Ethayarajh et al. 2024, eq. 8).

The math is in rlgen/losses.py. `total_steps` counts gradient steps (TRL's max_steps); minibatches
walk through the training data in a new random order each epoch. The reward model is not used for
training; it only scores samples for the rlhf/proxy_reward curve, beside the gold reward and the KL
of `agent.monitor_samples` completions sampled every `agent.monitor_every` steps.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rlgen.agents.lm import LanguageModelAgent, LanguageModelConfig
from rlgen.config import check_learning_rate, check_nonnegative, check_positive, named
from rlgen.losses import dpo_loss, ipo_loss, kto_loss
from rlgen.nets.optim import clipped_step
from rlgen.rlhf.corpus import PROMPT_LEN
from rlgen.rlhf.sft import sequence_kl, sequence_logprobs


@dataclass
class DirectConfig(LanguageModelConfig):
    beta: float = 0.1
    """strength of the pull to the reference (DPO's and KTO's beta, TRL's default 0.1; IPO's tau)"""
    learning_rate: float = 3e-4
    """Adam's; the tiny GPT takes far larger steps than TRL's 5e-7 for billion-parameter models"""
    batch_size: int = 64
    """pairs (kto: single completions) per gradient step"""
    max_grad_norm: float = 1.0
    monitor_every: int = 10
    """gradient steps between sampled batches for the rlhf/... curves (0: none)"""
    monitor_samples: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "beta", "batch_size", "max_grad_norm", "monitor_samples"))
        check_nonnegative(**named(self, "monitor_every"))
        check_learning_rate(**named(self, "learning_rate"))


@dataclass
class DPOConfig(DirectConfig):
    name: str = "dpo"


@dataclass
class IPOConfig(DirectConfig):
    name: str = "ipo"
    beta: float = 0.1
    """IPO's tau: the log-ratio margin of a pair is pulled to 1 / (2 tau)"""


@dataclass
class KTOConfig(DirectConfig):
    name: str = "kto"
    learning_rate: float = 1e-4
    """lower than dpo's: at 3e-4 the KL to the reference ran away within 60 steps (over 100 nats)"""
    desirable_weight: float = 1.0
    """lambda_D, the weight of desirable samples' loss (Ethayarajh et al. 2024, eq. 8)"""
    undesirable_weight: float = 1.0
    """lambda_U; the paper suggests lambda_D n_D / (lambda_U n_U) in [1, 4/3]"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "desirable_weight", "undesirable_weight"))


class DirectAlignment(LanguageModelAgent):
    """The loop the three share: a minibatch of the labelled data, a loss of log-ratios, one step."""

    Config = DirectConfig
    log_every: ClassVar[int] = 10
    step_unit: ClassVar[str] = "gradient steps"

    def __init__(self, observation_space, action_space, config: DirectConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.lm = self.make_lm()
        self.opt = torch.optim.Adam(self.lm.parameters(), lr=config.learning_rate)
        self.order = torch.zeros(0, dtype=torch.long)
        """this epoch's order of the training examples; the next batch starts at `cursor`"""
        self.cursor = 0
        self.ref_logps: torch.Tensor | None = None
        """the reference's sequence log-probabilities of the training examples (computed once)"""

    @property
    def policy_lm(self) -> nn.Module:
        return self.lm

    n_sequences: ClassVar[int] = 1
    """how many of an example's tensors are token sequences (the first ones); labels may follow"""

    def examples(self) -> tuple[torch.Tensor, ...]:
        """The training data, first dimension = examples."""
        raise NotImplementedError

    def loss(self, batch: tuple[torch.Tensor, ...], ref_logps: torch.Tensor) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def logps(self, lm: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        return sequence_logprobs(lm, seq, self.response_mask(seq))

    @torch.no_grad()
    def reference_logps(self) -> torch.Tensor:
        """The reference's log-probabilities of every sequence of every training example, (N, k)."""
        assert self.ref is not None
        seqs = self.examples()[: self.n_sequences]
        return torch.stack([torch.cat([self.logps(self.ref, part) for part in s.split(512)]) for s in seqs], 1)

    def next_batch(self) -> torch.Tensor:
        n, size = len(self.examples()[0]), self.config.batch_size
        if self.cursor + size > len(self.order):  # a new epoch (the last, incomplete batch is dropped)
            self.order = torch.randperm(n, generator=self.gen)
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + min(size, n)]
        self.cursor += size
        return idx

    def iteration(self) -> dict[str, float]:
        c = self.config
        if self.ref_logps is None:
            self.ref_logps = self.reference_logps()
        idx = self.next_batch()
        self.lm.train()
        loss, stats = self.loss(tuple(x[idx] for x in self.examples()), self.ref_logps[idx])
        grad_norm = clipped_step(self.opt, loss, self.lm.parameters(), c.max_grad_norm)
        self.num_steps += 1
        stats = {"train/loss": loss.item(), "train/grad_norm": grad_norm, **stats}
        self.last_batch = None
        if c.monitor_every and self.num_steps % c.monitor_every == 0:
            stats |= self.monitor_policy()
        return stats

    @torch.no_grad()
    def monitor_policy(self) -> dict[str, float]:
        assert self.ref is not None
        self.lm.eval()
        seq = self.sample(self.lm, self.prompts(self.config.monitor_samples, self.prompt_rng))
        return self.monitor(seq, sequence_kl(self.lm, self.ref, seq, self.response_mask(seq)), trained_on=False)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"lm": self.lm.state_dict(), "opt": self.opt.state_dict(),
                                       "order": self.order.clone(), "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.lm.load_state_dict(state["lm"])
        self.opt.load_state_dict(copy.deepcopy(state["opt"]))
        self.order, self.cursor = state["order"].clone(), int(state["cursor"])


def pair_stats(chosen: torch.Tensor, rejected: torch.Tensor, beta: float, logp_c: torch.Tensor,
               logp_r: torch.Tensor) -> dict[str, float]:
    """TRL's DPOTrainer figures: implicit rewards beta * log-ratio, how often the chosen one's is higher."""
    r_c, r_r = beta * chosen.detach(), beta * rejected.detach()
    return {"rewards/chosen": r_c.mean().item(), "rewards/rejected": r_r.mean().item(),
            "rewards/accuracies": (r_c > r_r).float().mean().item(), "rewards/margins": (r_c - r_r).mean().item(),
            "logps/chosen": logp_c.detach().mean().item(), "logps/rejected": logp_r.detach().mean().item()}


class PairwiseAlignment(DirectAlignment):
    """dpo and ipo: the training pairs, chosen and rejected through the policy in one forward pass."""

    pair_loss = staticmethod(dpo_loss)
    n_sequences = 2

    def examples(self) -> tuple[torch.Tensor, ...]:
        assert self.prefs is not None
        n = self.config.reward_model.n_pairs
        return self.prefs.chosen[:n], self.prefs.rejected[:n]

    def loss(self, batch: tuple[torch.Tensor, ...], ref_logps: torch.Tensor) -> tuple[torch.Tensor, dict]:
        chosen, rejected = batch
        logps = self.logps(self.lm, torch.cat([chosen, rejected]))
        logp_c, logp_r = logps[: len(chosen)], logps[len(chosen):]
        ratio_c, ratio_r = logp_c - ref_logps[:, 0], logp_r - ref_logps[:, 1]
        loss = self.pair_loss(ratio_c, ratio_r, self.config.beta)
        return loss, pair_stats(ratio_c, ratio_r, self.config.beta, logp_c, logp_r)


class DPO(PairwiseAlignment):
    Config = DPOConfig


class IPO(PairwiseAlignment):
    Config = IPOConfig
    pair_loss = staticmethod(ipo_loss)


class KTO(DirectAlignment):
    Config = KTOConfig

    def examples(self) -> tuple[torch.Tensor, ...]:
        assert self.prefs is not None
        return self.prefs.singles, self.prefs.desirable

    @staticmethod
    def mismatched(seq: torch.Tensor) -> torch.Tensor:
        """Each prompt with the next example's completion: samples y' ~ a policy unrelated to x, whose
        log-ratio estimates KL(pi || pi_ref) without bias from the labels (KTO's reference point z0)."""
        return torch.cat([seq[:, :PROMPT_LEN], seq.roll(-1, 0)[:, PROMPT_LEN:]], 1)

    def loss(self, batch: tuple[torch.Tensor, ...], ref_logps: torch.Tensor) -> tuple[torch.Tensor, dict]:
        c = self.config
        assert self.ref is not None
        seq, desirable = batch
        logps = self.logps(self.lm, seq)
        ratio = logps - ref_logps[:, 0]
        with torch.no_grad():
            other = self.mismatched(seq)
            z0 = (self.logps(self.lm, other) - self.logps(self.ref, other)).mean().clamp(min=0.0)
        loss = kto_loss(ratio, desirable, z0, c.beta, c.desirable_weight, c.undesirable_weight)
        rewards = c.beta * ratio.detach()
        stats = {"kl": z0.item(), "count/desirable": float(desirable.sum())}
        for key, which in (("chosen", desirable), ("rejected", ~desirable)):
            if which.any():  # a batch without desirable (or undesirable) samples has no such mean
                stats[f"rewards/{key}"] = rewards[which].mean().item()
                stats[f"logps/{key}"] = logps.detach()[which].mean().item()
        return loss, stats
