"""RLHF end to end: corpus -> SFT -> preferences -> reward model -> KL-regularised PPO.

The pipeline of Ziegler et al. 2019 / Stiennon et al. 2020 / Ouyang et al. 2022 at toy scale, on
the TextPreference format (rlgen/envs/text_preference.py). The budget `total_steps` counts
generated tokens during RL (each token is one action of the env); supervised pretraining, the
preference labels and reward-model training happen first and take no budget. Generation is batched
in torch rather than stepped through the env; `act` serves the env's observations for evaluation,
whose return is the gold (hidden) score of a greedy completion.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import rlgen.envs.text_preference  # noqa: F401  (registers rlgen/TextPreference-v0)
from rlgen.agents.base import Agent
from rlgen.checkpoint import write_json_atomic
from rlgen.config import AgentConfig, check_positive, named
from rlgen.distributions import torch_categorical_sample
from rlgen.errors import UserError
from rlgen.nets.gpt import GPT, GPTConfig, PolicyWithValue, check_width
from rlgen.rlhf import hf
from rlgen.rlhf.best_of_n import best_of_n_curve
from rlgen.rlhf.corpus import PROMPT_LEN, CorpusConfig, Vocab, sample_prompt
from rlgen.rlhf.gold import gold_score, noise_ceiling, preference_labels
from rlgen.rlhf.ppo_lm import KLControllerConfig, LMPPOConfig, kl_controller, make_rollout, ppo_update
from rlgen.rlhf.report import write_report
from rlgen.rlhf.reward_model import (
    RewardModel,
    RewardModelConfig,
    order_pairs,
    pair_stats,
    train_reward_model,
)
from rlgen.rlhf.sft import SFTConfig, default_cache_dir, generate, pretrained_sft, response_mask
from rlgen.run import Run

BACKBONES: dict[str, Callable[[int, int, int, int, int], torch.nn.Module]] = {
    "gpt": lambda V, T, n_layer, n_head, n_embd: GPT(GPTConfig(V, T, n_layer, n_head, n_embd)),
    "hf_gpt2": hf.random_gpt2,
}
"""backbone name -> (vocab_size, block_size, n_layer, n_head, n_embd) -> language model"""


@dataclass
class RLHFConfig(AgentConfig):
    name: str = "rlhf"
    backbone: str = "gpt"
    """gpt (rlgen/nets/gpt.py) | hf_gpt2 (a random transformers GPT-2) | a local HF model directory"""
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    ppo: LMPPOConfig = field(default_factory=LMPPOConfig)
    kl: KLControllerConfig = field(default_factory=KLControllerConfig)
    cache_dir: str | None = None
    """where SFT models are cached (None: $RLGEN_CACHE, else ~/.cache/rlgen)"""
    n_eval_prompts: int = 256
    """prompts for the gold reward of the SFT and the final policy"""
    bon_prompts: int = 16
    """prompts for the best-of-n curve (64 samples each)"""
    bon_samples: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "n_layer", "n_head", "n_embd", "n_eval_prompts", "bon_prompts", "bon_samples"))
        check_width(self.n_head, self.n_embd, prefix="agent.")
        for part in ("corpus", "sft", "reward_model", "ppo", "kl"):
            getattr(self, part).check(f"agent.{part}")
        # the adaptive controller multiplies beta by 1 + e * batch_size / horizon with |e| <= 0.2
        # (Ziegler et al. 2019, sec. 2.2): a horizon shorter than that flips beta's sign
        if self.kl.adaptive and self.kl.kl_horizon <= 0.2 * self.ppo.batch_size:
            raise UserError(f"agent.kl.kl_horizon={self.kl.kl_horizon} must exceed 0.2 x agent.ppo.batch_size "
                            f"({0.2 * self.ppo.batch_size:g}), or the adaptive KL coefficient can turn negative")


class RLHF(Agent):
    Config = RLHFConfig
    one_hot = False

    @classmethod
    def misfit(cls, observation_space, action_space) -> str | None:
        words = len(Vocab())
        if getattr(action_space, "n", None) != words or len(getattr(observation_space, "shape", None) or ()) != 1:
            return f"needs env=TextPreference (actions = its {words} words)"
        return super().misfit(observation_space, action_space)

    def __init__(self, observation_space, action_space, config: RLHFConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.vocab = Vocab()
        self.block_size = int(observation_space.shape[0])
        self.gen = torch.Generator().manual_seed(seed)
        lm = self.make_lm()
        self.policy = PolicyWithValue(lm, lm.n_embd)
        self.ref: torch.nn.Module | None = None
        self.rm: RewardModel | None = None
        self.rm_norm = (0.0, 1.0)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=config.ppo.learning_rate)
        self.kl_ctl = kl_controller(config.kl)
        self.history: list[dict[str, float]] = []
        self.info: dict[str, Any] = {"stage_seconds": {}}
        self._final: dict[str, Any] | None = None
        self.prompt_rng = np.random.default_rng(seed + 3)
        """draws the prompts of the RL stage; checkpointed, so a resumed run draws the same ones"""

    def make_lm(self) -> torch.nn.Module:
        c, V = self.config, len(self.vocab)
        if c.backbone in BACKBONES:
            return BACKBONES[c.backbone](V, self.block_size, c.n_layer, c.n_head, c.n_embd)
        return hf.local_causal_lm(c.backbone, V)  # anything else names a model directory on disk

    # -- stages -------------------------------------------------------------------------------------

    def prompts(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        return torch.as_tensor(np.array([sample_prompt(self.vocab, rng) for _ in range(n)]))

    def sample(self, lm: torch.nn.Module, prompts: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        out = [generate(lm, p, self.block_size - PROMPT_LEN, self.vocab.eos, self.vocab.pad, self.gen, greedy)
               for p in prompts.split(256)]
        return torch.cat(out)

    def gold(self, seq: torch.Tensor) -> np.ndarray:
        return gold_score(self.vocab, seq.numpy(), PROMPT_LEN)

    @torch.no_grad()
    def proxy(self, seq: torch.Tensor) -> torch.Tensor:
        """Reward-model score, normalised to mean 0 and std 1 on SFT samples (Ziegler et al. 2019)."""
        assert self.rm is not None
        scores = torch.cat([self.rm(s) for s in seq.split(512)])
        return (scores - self.rm_norm[0]) / self.rm_norm[1]

    def stage_sft(self, run: Run) -> None:
        c = self.config
        key = (c.backbone, c.n_layer, c.n_head, c.n_embd)
        lm, stats = pretrained_sft(self.make_lm, key, c.corpus, c.sft, self.vocab, self.block_size,
                                   default_cache_dir(c.cache_dir))
        lm.eval()
        self.ref = lm.requires_grad_(False)
        self.policy.lm.load_state_dict(lm.state_dict())
        self.info["sft"] = stats
        run.log(0, {"sft/loss": stats["loss_final"]})

    def stage_reward_model(self, run: Run) -> None:
        rc = self.config.reward_model
        rng = np.random.default_rng(self.seed + 1)
        n = rc.n_pairs + rc.n_eval_pairs
        prompts = self.prompts(n, rng)
        a, b = self.sample(self.ref, prompts), self.sample(self.ref, prompts)
        g_a, g_b = self.gold(a), self.gold(b)
        chosen, rejected = order_pairs(a.numpy(), b.numpy(), preference_labels(g_a, g_b, rc.rationality, rng))
        t0 = time.perf_counter()
        self.info["stage_seconds"]["preferences"] = t0 - self._t_stage
        self.rm = RewardModel(self.ref, self.vocab.pad).requires_grad_(True)
        hist = train_reward_model(self.rm, chosen[: rc.n_pairs], rejected[: rc.n_pairs], rc, self.seed)
        self.rm.requires_grad_(False)
        held = pair_stats(self.rm, chosen[rc.n_pairs:], rejected[rc.n_pairs:])
        ceiling = noise_ceiling(g_a[rc.n_pairs:], g_b[rc.n_pairs:], rc.rationality)
        with torch.no_grad():
            sft_scores = torch.cat([self.rm(s) for s in torch.cat([a, b]).split(512)])
        self.rm_norm = (sft_scores.mean().item(), sft_scores.std().item() + 1e-8)
        train_last = {k: float(np.mean([h[k] for h in hist[-10:]])) for k in hist[0]}
        stats = {f"reward_model/{k}": v for k, v in train_last.items()}
        stats |= {f"reward_model/eval_{k}": v for k, v in held.items()}
        stats["reward_model/noise_ceiling"] = ceiling
        self.info["reward_model"] = {**stats, "curve": hist}
        self.info["gold_reward_sft"] = float(np.mean(np.concatenate([g_a, g_b])))
        self._t_stage = time.perf_counter()
        self.info["stage_seconds"]["reward_model"] = self._t_stage - t0
        run.log(0, stats)

    def stage_best_of_n(self) -> None:
        c = self.config
        rng = np.random.default_rng(self.seed + 2)
        prompts = self.prompts(c.bon_prompts, rng).repeat_interleave(c.bon_samples, 0)
        seq = self.sample(self.ref, prompts)
        proxy = self.proxy(seq).numpy().reshape(c.bon_prompts, c.bon_samples)
        gold = self.gold(seq).reshape(c.bon_prompts, c.bon_samples)
        ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= c.bon_samples]
        self.info["best_of_n"] = best_of_n_curve(proxy, gold, ns)
        self.info["samples_sft"] = [self.vocab.decode(s) for s in seq[:: c.bon_samples][:8]]

    # -- RL ------------------------------------------------------------------------------------------

    def rl_iteration(self, rng: np.random.Generator) -> dict[str, float]:
        c = self.config.ppo
        assert self.ref is not None
        self.policy.eval()  # no dropout: the ratio must be exactly 1 before the first step
        seq = self.sample(self.policy.lm, self.prompts(c.batch_size, rng))
        mask = response_mask(seq, PROMPT_LEN, self.vocab.pad)
        score = self.proxy(seq)
        rollout, kl = make_rollout(self.policy, self.ref, seq, mask, score, self.kl_ctl.value, c)
        stats = ppo_update(self.policy, self.opt, rollout, c, self.gen)
        gold = self.gold(seq)
        kl_mean = kl.mean().item()
        lengths = mask.sum(1).numpy()
        self.kl_ctl.update(kl_mean, c.batch_size)
        self.num_steps += int(lengths.sum())
        self._last_batch = (gold, lengths)
        return stats | {
            "rlhf/proxy_reward": score.mean().item(),
            "rlhf/gold_reward": float(gold.mean()),
            "rlhf/kl": kl_mean,
            "rlhf/sqrt_kl": float(np.sqrt(max(kl_mean, 0.0))),
            "rlhf/kl_coef": self.kl_ctl.value,
            "rlhf/non_score_reward": -self.kl_ctl.value * kl_mean,
            "rlhf/response_length": float(lengths.mean()),
        }

    def learn(self, total_steps: int, run: Run) -> None:
        self._t_stage = time.perf_counter()
        if self.rm is None:  # a fresh run; a resumed one restored these from its checkpoint
            self.stage_sft(run)
            t = time.perf_counter()
            self.info["stage_seconds"]["sft"] = t - self._t_stage
            self._t_stage = t
            self.stage_reward_model(run)
            self.stage_best_of_n()
            self.info["stage_seconds"]["best_of_n"] = time.perf_counter() - self._t_stage
            run.flush_logs(0)
        t_rl = time.perf_counter()
        rng = self.prompt_rng
        while self.num_steps < total_steps:
            stats = self.rl_iteration(rng)
            run.log(self.num_steps, stats)
            run.episodes(self.num_steps, *self._last_batch)
            rl_stats = {k: v for k, v in stats.items() if k.startswith("rlhf/")}
            self.history.append({"step": self.num_steps, **rl_stats})
            if not run.tick(self.num_steps):
                break
        seconds = self.info["stage_seconds"]
        seconds["rl"] = seconds.get("rl", 0.0) + time.perf_counter() - t_rl

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Next word for each observation (prompt + words so far, padded)."""
        seq = torch.as_tensor(np.asarray(obs, dtype=np.int64))
        last = (seq != self.vocab.pad).sum(1) - 1  # position of each text's latest word
        logits = self.policy.lm(seq)[torch.arange(len(seq)), last]  # (B, V)
        if deterministic:
            return logits.argmax(-1).numpy()
        return torch_categorical_sample(logits, self.gen).numpy()

    # -- end of run and checkpoints ------------------------------------------------------------------

    def final_stats(self) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed + 4)
        prompts = self.prompts(self.config.n_eval_prompts, rng)
        seq = self.sample(self.policy.lm, prompts)
        ref_seq = self.sample(self.ref, prompts)
        rollout, kl = make_rollout(self.policy, self.ref, seq, response_mask(seq, PROMPT_LEN, self.vocab.pad),
                                   self.proxy(seq), 0.0, self.config.ppo)
        rm = self.info["reward_model"]
        return {
            "gold_reward_sft": float(self.gold(ref_seq).mean()),
            "gold_reward_final": float(self.gold(seq).mean()),
            "proxy_reward_sft": float(self.proxy(ref_seq).mean()),
            "proxy_reward_final": float(self.proxy(seq).mean()),
            "kl_final": float(kl.mean()),
            "reward_model_accuracy": rm["reward_model/eval_accuracy"],
            "reward_model_noise_ceiling": rm["reward_model/noise_ceiling"],
            "stage_seconds": self.info["stage_seconds"],
            "samples_final": [self.vocab.decode(s) for s in seq[:8]],
        }

    def write_artifacts(self, run: Run) -> None:
        if self.rm is None:
            return
        summary = self.final()
        write_json_atomic(run.dir / "rlhf_summary.json", summary)
        extra = {k: self.info[k] for k in ("best_of_n", "samples_sft", "sft") if k in self.info}
        write_json_atomic(run.dir / "rlhf_curves.json", {"rl": self.history, **extra,
                                                         "reward_model": self.info["reward_model"]})
        write_report(run.dir, summary, self.history, self.info, run.tb)

    SUMMARY_FIELDS = ("gold_reward_sft", "gold_reward_final", "proxy_reward_sft", "proxy_reward_final", "kl_final",
                      "reward_model_accuracy", "reward_model_noise_ceiling", "stage_seconds")

    def summary_fields(self) -> dict[str, Any]:
        if self.rm is None:
            return {}
        stats = self.final()
        return {k: stats[k] for k in self.SUMMARY_FIELDS if k in stats}

    def final(self) -> dict[str, Any]:
        """final_stats() once per process: it samples, so a second call would differ."""
        if self._final is None:
            self._final = self.final_stats()
        return self._final

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {
            "policy": self.policy.state_dict(), "opt": self.opt.state_dict(), "kl_coef": self.kl_ctl.value,
            "ref": self.ref.state_dict() if self.ref is not None else None,
            "rm": self.rm.state_dict() if self.rm is not None else None, "rm_norm": self.rm_norm,
            "history": copy.deepcopy(self.history), "info": copy.deepcopy(self.info), "gen": self.gen.get_state(),
            "prompt_rng": self.prompt_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.opt.load_state_dict(copy.deepcopy(state["opt"]))  # torch keeps the caller's tensors otherwise
        self.kl_ctl.value = state["kl_coef"]
        if state["rm"] is not None:
            self.ref = self.make_lm().eval().requires_grad_(False)
            self.ref.load_state_dict(state["ref"])
            self.rm = RewardModel(self.ref, self.vocab.pad)
            self.rm.load_state_dict(state["rm"])
            self.rm.requires_grad_(False).eval()
        self.rm_norm = tuple(state["rm_norm"])
        self.history, self.info = copy.deepcopy(state["history"]), copy.deepcopy(state["info"])
        self.gen.set_state(state["gen"])
        self.prompt_rng.bit_generator.state = state["prompt_rng"]
        torch.set_rng_state(state["torch_rng"])  # again: building the reference model above drew from it
