"""Supervised pretraining (the SFT policy, also the frozen reference), sampling and log-probs.

The language model is anything with `hidden(idx) -> (B, T, C)`, `logits(h) -> (B, T, V)` and
`n_embd`: the tiny GPT of rlgen/nets/gpt.py or a Hugging Face causal LM behind rlgen/rlhf/hf.py.
A trained SFT model is cached under $RLGEN_CACHE (default ~/.cache/rlgen), keyed by a hash of
everything that determines it, so later runs load it in a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlgen.checkpoint import STATE_FILE, damaged, load_state, one_line, save_state
from rlgen.config import check_learning_rate, check_positive, check_seed, named
from rlgen.distributions import categorical_log_probs, kl_categorical, torch_categorical_sample
from rlgen.errors import UserError
from rlgen.nets.optim import clipped_step
from rlgen.rlhf.corpus import CorpusConfig, Vocab, make_corpus


@dataclass
class SFTConfig:
    steps: int = 400
    """gradient steps of next-token prediction"""
    batch_size: int = 64
    learning_rate: float = 3e-3
    seed: int = 0

    def check(self, prefix: str) -> None:
        check_positive(**named(self, "steps", "batch_size", prefix=prefix))
        check_learning_rate(**named(self, "learning_rate", prefix=prefix))
        check_seed(**named(self, "seed", prefix=prefix))


def default_cache_dir(configured: str | None = None) -> Path:
    """The config's cache dir, else $RLGEN_CACHE, else ~/.cache/rlgen."""
    return Path(configured or os.environ.get("RLGEN_CACHE") or Path.home() / ".cache" / "rlgen")


def cache_key(*parts: object) -> str:
    text = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def lm_loss(lm: nn.Module, batch: torch.Tensor, pad: int) -> torch.Tensor:
    """Mean next-token cross-entropy over the non-padding targets."""
    logits = lm.logits(lm.hidden(batch[:, :-1]))  # (B, T-1, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), ignore_index=pad)


def train_sft(lm: nn.Module, data: np.ndarray, cfg: SFTConfig, pad: int,
              on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Fit `lm` to the corpus with AdamW and a cosine learning-rate decay; returns the losses."""
    gen = torch.Generator().manual_seed(cfg.seed)
    data_t = torch.as_tensor(data)
    opt = torch.optim.AdamW(lm.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    losses = []
    lm.train()
    for step in range(cfg.steps):
        batch = data_t[torch.randint(len(data_t), (cfg.batch_size,), generator=gen)]
        loss = lm_loss(lm, batch, pad)
        clipped_step(opt, loss, lm.parameters(), 1.0)
        sched.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    lm.eval()
    return losses


def pretrained_sft(make_lm: Callable[[], nn.Module], key_parts: tuple, corpus_cfg: CorpusConfig,
                   sft_cfg: SFTConfig, vocab: Vocab, block_size: int, cache_dir: Path,
                   on_step: Callable[[int, float], None] | None = None) -> tuple[nn.Module, dict]:
    """The SFT model: loaded from the cache if this exact setup was trained before, else trained
    and cached. Returns the model and its stats (final loss, whether it came from the cache).

    The cache is a checkpoint directory (rlgen.checkpoint): the weights in safetensors, the stats in
    JSON, so a planted file cannot run code; a damaged one is a UserError naming the directory."""
    key = cache_key(*key_parts, corpus_cfg, sft_cfg, block_size, len(vocab))
    path = cache_dir / f"sft-{key}"
    torch.manual_seed(sft_cfg.seed)
    lm = make_lm()
    if (path / STATE_FILE).is_file():  # an older rlgen's model.pt alone is not read: it is trained again
        try:
            cached = load_state(path)
            lm.load_state_dict(cached["model"])
            stats = dict(cached["stats"])
        except UserError as err:
            raise UserError(f"{err}; delete that SFT cache to train it again") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise UserError(f"{damaged(path, one_line(err))}; delete that SFT cache to train it again") from None
        lm.eval()
        return lm, {**stats, "cached": True, "key": key}
    data = make_corpus(corpus_cfg, vocab, block_size)
    losses = train_sft(lm, data, sft_cfg, vocab.pad, on_step)
    stats = {"loss_final": float(np.mean(losses[-50:])), "loss_curve": losses[:: max(len(losses) // 100, 1)]}
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_state(path, {"model": lm.state_dict(), "stats": stats})
    return lm, {**stats, "cached": False, "key": key}


# -- sampling and log-probabilities ------------------------------------------------------------------


@torch.no_grad()
def generate(lm: nn.Module, prompts: torch.Tensor, max_new: int, eos: int, pad: int,
             generator: torch.Generator | None = None, greedy: bool = False) -> torch.Tensor:
    """Sample continuations of a batch of equal-length prompts (B, P) -> (B, P + max_new).

    Tokens after a sequence's <eos> are <pad>. The whole prefix is re-run every step: at 32 tokens
    a key-value cache saves less than it costs in code.
    """
    seq = prompts
    done = torch.zeros(len(prompts), dtype=torch.bool)
    for _ in range(max_new):
        logits = lm.logits(lm.hidden(seq))[:, -1]  # (B, V): next-token logits
        if greedy:
            nxt = logits.argmax(-1)
        else:
            nxt = torch_categorical_sample(logits, generator)
        nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        done |= nxt == eos
        if done.all():
            break
    if seq.shape[1] < prompts.shape[1] + max_new:  # pad to the fixed length
        seq = F.pad(seq, (0, prompts.shape[1] + max_new - seq.shape[1]), value=pad)
    return seq


def response_mask(seq: torch.Tensor, prompt_len: int, pad: int) -> torch.Tensor:
    """(B, T-1) float mask over next-token positions that produced a generated token."""
    mask = (seq[:, 1:] != pad).float()
    mask[:, : prompt_len - 1] = 0.0
    return mask


def sequence_logprobs(lm: nn.Module, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log pi(completion | prompt) of each sequence: its tokens' log-probabilities summed over `mask`
    (response_mask), (B, L) -> (B,)."""
    return (token_logprobs(lm.logits(lm.hidden(seq)), seq) * mask).sum(-1)


def sequence_kl(lm: nn.Module, ref: nn.Module, seq: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) of each sampled sequence's completion: the exact KL of the two next-token
    distributions summed over its positions (B, L) -> (B,). Its mean over sequences sampled from pi is
    an unbiased estimate of the sequence-level KL, never negative, and of lower variance than the sum of
    log pi - log pi_ref over the sampled tokens (its expectation given the prefixes)."""
    logits, ref_logits = lm.logits(lm.hidden(seq))[:, :-1], ref.logits(ref.hidden(seq))[:, :-1]
    return (kl_categorical(logits, ref_logits) * mask).sum(-1)


def token_logprobs(logits: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:
    """log pi(seq[t+1] | seq[:t+1]) for every position: logits (B, T, V) of seq -> (B, T-1)."""
    return categorical_log_probs(logits[:, :-1]).gather(-1, seq[:, 1:, None]).squeeze(-1)
