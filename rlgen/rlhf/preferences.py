"""What the hidden human tells every alignment method, and the reward model learnt from it.

Pairs of SFT samples for random prompts are labelled by the hidden human with Bradley-Terry noise
(rlgen/rlhf/gold.py); the same samples, each judged alone, carry the unpaired desirable/undesirable
labels that KTO learns from. The reward model is trained on the labelled pairs, and best-of-n is
measured against it. Every method of one seed sees exactly this: the pairs the reward model learns
from are the pairs DPO learns from.

All of it is a function of the SFT model, the config and the seed (its own generators, never the
caller's), so it is cached like the SFT model: the methods compared on one seed compute it once.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rlgen.checkpoint import STATE_FILE, damaged, load_state, one_line, save_state
from rlgen.errors import UserError
from rlgen.rlhf.best_of_n import best_of_n_curve
from rlgen.rlhf.corpus import PROMPT_LEN, Vocab, sample_prompt
from rlgen.rlhf.gold import gold_score, noise_ceiling, preference_labels, preference_probability
from rlgen.rlhf.reward_model import RewardModel, RewardModelConfig, order_pairs, pair_stats, train_reward_model
from rlgen.rlhf.sft import cache_key, generate

BEST_OF_N = (1, 2, 4, 8, 16, 32, 64)

DESIRABLE_THRESHOLD = 0.0
"""the gold score at which the human, judging one review alone, is as likely to call it desirable as
not: a neutral, well-formed review (the SFT samples' mean gold is close to it)"""


@dataclass
class Preferences:
    """One seed's labelled data and reward model. Pairs [0, n_pairs) are for training, the rest held out."""

    chosen: torch.Tensor
    """(n, L) token ids of the preferred sample of each pair"""
    rejected: torch.Tensor
    singles: torch.Tensor
    """(2 n_pairs, L) the training pairs' samples, each labelled alone (KTO)"""
    desirable: torch.Tensor
    """(2 n_pairs,) bool: the human's verdict on each single sample"""
    reward_model: dict[str, torch.Tensor]
    """the reward model's weights"""
    rm_norm: tuple[float, float]
    """mean and std of the reward model's scores on SFT samples (proxy = (score - mean) / std)"""
    stats: dict[str, Any] = field(default_factory=dict)
    """reward-model curves and held-out figures, the SFT policy's gold, best-of-n, stage times"""


def sample(lm: nn.Module, prompts: torch.Tensor, block_size: int, vocab: Vocab, gen: torch.Generator,
           greedy: bool = False) -> torch.Tensor:
    """Completions of the prompts up to block_size tokens, in chunks of 256."""
    return torch.cat([generate(lm, p, block_size - PROMPT_LEN, vocab.eos, vocab.pad, gen, greedy)
                      for p in prompts.split(256)])


def prompts(vocab: Vocab, n: int, rng: np.random.Generator) -> torch.Tensor:
    return torch.as_tensor(np.array([sample_prompt(vocab, rng) for _ in range(n)]))


def gold(vocab: Vocab, seq: torch.Tensor) -> np.ndarray:
    return gold_score(vocab, seq.numpy(), PROMPT_LEN)


@torch.no_grad()
def scores(rm: RewardModel, seq: torch.Tensor) -> torch.Tensor:
    return torch.cat([rm(s) for s in seq.split(512)])


def proxy_scores(rm: RewardModel, rm_norm: tuple[float, float], seq: torch.Tensor) -> torch.Tensor:
    """The reward model's scores normalised to mean 0 and std 1 on SFT samples (Ziegler et al. 2019)."""
    return (scores(rm, seq) - rm_norm[0]) / rm_norm[1]


def desirable_labels(g: np.ndarray, rationality: float, rng: np.random.Generator) -> np.ndarray:
    """The human's verdict on single samples: desirable with probability
    sigmoid(rationality (g - DESIRABLE_THRESHOLD)), the Bradley-Terry noise of the pairs against a
    neutral review."""
    p = preference_probability(g, np.full_like(g, DESIRABLE_THRESHOLD), rationality)
    return rng.random(len(g)) < p


def label_and_fit(ref: nn.Module, vocab: Vocab, block_size: int, cfg: RewardModelConfig, seed: int,
                  bon_prompts: int, bon_samples: int) -> Preferences:
    """Sample the pairs from the SFT model, label them, train the reward model, measure best-of-n."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed + 1)
    gen = torch.Generator().manual_seed(seed + 1)
    n = cfg.n_pairs + cfg.n_eval_pairs
    p = prompts(vocab, n, rng)
    a, b = sample(ref, p, block_size, vocab, gen), sample(ref, p, block_size, vocab, gen)
    g_a, g_b = gold(vocab, a), gold(vocab, b)
    chosen, rejected = order_pairs(a.numpy(), b.numpy(), preference_labels(g_a, g_b, cfg.rationality, rng))
    singles = torch.cat([a[: cfg.n_pairs], b[: cfg.n_pairs]])
    desirable = desirable_labels(np.concatenate([g_a[: cfg.n_pairs], g_b[: cfg.n_pairs]]), cfg.rationality, rng)
    t1 = time.perf_counter()

    with torch.random.fork_rng():  # the head's initial weights from the seed alone
        torch.manual_seed(seed + 1)
        rm = RewardModel(ref, vocab.pad).requires_grad_(True)
    curve = train_reward_model(rm, chosen[: cfg.n_pairs], rejected[: cfg.n_pairs], cfg, seed)
    rm.requires_grad_(False)
    held = pair_stats(rm, chosen[cfg.n_pairs:], rejected[cfg.n_pairs:])
    sft_scores = scores(rm, torch.cat([a, b]))
    rm_norm = (sft_scores.mean().item(), sft_scores.std().item() + 1e-8)
    t2 = time.perf_counter()

    bon_rng = np.random.default_rng(seed + 2)
    seq = sample(ref, prompts(vocab, bon_prompts, bon_rng).repeat_interleave(bon_samples, 0), block_size, vocab,
                 gen)
    proxy = proxy_scores(rm, rm_norm, seq).numpy().reshape(bon_prompts, bon_samples)
    bon = best_of_n_curve(proxy, gold(vocab, seq).reshape(bon_prompts, bon_samples),
                          [k for k in BEST_OF_N if k <= bon_samples])

    train_last = {k: float(np.mean([h[k] for h in curve[-10:]])) for k in curve[0]}
    rm_stats = {f"reward_model/{k}": v for k, v in train_last.items()}
    rm_stats |= {f"reward_model/eval_{k}": v for k, v in held.items()}
    rm_stats["reward_model/noise_ceiling"] = noise_ceiling(g_a[cfg.n_pairs:], g_b[cfg.n_pairs:], cfg.rationality)
    stats = {
        "reward_model": {**rm_stats, "curve": curve},
        "gold_reward_sft": float(np.mean(np.concatenate([g_a, g_b]))),
        "desirable_fraction": float(desirable.mean()),
        "best_of_n": bon,
        "samples_sft": [vocab.decode(s) for s in seq[::bon_samples][:8]],
        "stage_seconds": {"preferences": t1 - t0, "reward_model": t2 - t1, "best_of_n": time.perf_counter() - t2},
    }
    return Preferences(chosen, rejected, singles, torch.as_tensor(desirable), rm.state_dict(), rm_norm, stats)


def cached_preferences(ref: nn.Module, sft_key: str, vocab: Vocab, block_size: int, cfg: RewardModelConfig,
                       seed: int, bon_prompts: int, bon_samples: int, cache_dir: Path) -> Preferences:
    """label_and_fit's result for this SFT model, config and seed, from the cache when it was made before.
    The cache is a checkpoint directory (JSON and safetensors: loading it runs no code)."""
    key = cache_key(sft_key, asdict(cfg), seed, bon_prompts, bon_samples, DESIRABLE_THRESHOLD, BEST_OF_N)
    path = cache_dir / f"preferences-{key}"
    if (path / STATE_FILE).is_file():
        try:
            state = load_state(path)
            prefs = Preferences(**{k: state[k] for k in Preferences.__dataclass_fields__})
            prefs.rm_norm = tuple(prefs.rm_norm)
            prefs.stats = {**prefs.stats, "cached": True}
            return prefs
        except UserError as err:
            raise UserError(f"{err}; delete that preference cache to make it again") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise UserError(f"{damaged(path, one_line(err))}; delete that preference cache to make it again") from None
    prefs = label_and_fit(ref, vocab, block_size, cfg, seed, bon_prompts, bon_samples)
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_state(path, asdict(prefs))
    prefs.stats["cached"] = False
    return prefs
