"""What every language-model alignment agent shares: the SFT start, the hidden human's labels, the
reward model, the training loop, the gold/KL evaluation, reports and checkpoints.

The methods (rlhf: PPO with a reward model, rlgen/agents/rlhf.py; dpo, ipo, kto: direct alignment,
rlgen/agents/direct.py; grpo, rloo: critic-free policy gradients, rlgen/agents/grpo.py) differ only in
how one training iteration changes the policy. They all start from the same SFT policy, which stays
frozen as the reference, and the same labelled data of their seed (rlgen/rlhf/preferences.py); the
gold function stays hidden from all of them and only scores them.

Every evaluation samples completions of the same prompts (with the same noise) from the policy and
measures the gold reward, the proxy reward (the reward model, normalised on SFT samples) and
KL(policy || SFT) per sequence: eval.csv's gold_reward, proxy_reward and kl, TensorBoard's
eval/gold_reward, eval/proxy_reward and eval/kl. These are the points of the gold-against-KL frontier
(`python -m rlgen.bench alignment`). The SFT policy is evaluated the same way before training
(summary.json's gold_reward_sft_eval): every evaluation's paired baseline, free of the noise of
another sample (gold_reward_sft is the mean over the labelled pairs' samples).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

import rlgen.envs.text_preference  # noqa: F401  (registers rlgen/TextPreference-v0)
from rlgen.agents.base import Agent
from rlgen.checkpoint import write_json_atomic
from rlgen.config import AgentConfig, check_positive, named
from rlgen.distributions import torch_categorical_sample
from rlgen.errors import UserError
from rlgen.nets.gpt import GPT, GPTConfig, check_width
from rlgen.rlhf import hf
from rlgen.rlhf.corpus import PROMPT_LEN, CorpusConfig, Vocab, longest_review
from rlgen.rlhf.preferences import Preferences, cached_preferences, gold, prompts, proxy_scores, sample
from rlgen.rlhf.report import write_report
from rlgen.rlhf.reward_model import RewardModel, RewardModelConfig
from rlgen.rlhf.sft import SFTConfig, default_cache_dir, pretrained_sft, response_mask, sequence_kl
from rlgen.run import Run

BACKBONES: dict[str, Callable[[int, int, int, int, int], torch.nn.Module]] = {
    "gpt": lambda V, T, n_layer, n_head, n_embd: GPT(GPTConfig(V, T, n_layer, n_head, n_embd)),
    "hf_gpt2": hf.random_gpt2,
}
"""backbone name -> (vocab_size, block_size, n_layer, n_head, n_embd) -> language model"""

EVAL_PROMPTS_SEED = 4
EVAL_NOISE_SEED = 5
"""offsets from the run's seed: the evaluation prompts, and the sampling noise every evaluation reuses
(the same noise at every checkpoint, so successive points differ by the policy alone)"""


@dataclass
class LanguageModelConfig(AgentConfig):
    backbone: str = "gpt"
    """gpt (rlgen/nets/gpt.py) | hf_gpt2 (a random transformers GPT-2) | a local HF model directory"""
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """the labelled pairs (every method's data) and the reward model trained on them"""
    cache_dir: str | None = None
    """where SFT models and each seed's labels and reward model are cached (None: $RLGEN_CACHE, else
    ~/.cache/rlgen)"""
    n_eval_prompts: int = 256
    """prompts (one sample each) of every evaluation's gold reward, proxy reward and KL"""
    bon_prompts: int = 16
    """prompts for the best-of-n curve against the reward model"""
    bon_samples: int = 64
    """samples per prompt for best-of-n (n = 1, 2, 4, ... up to this)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "n_layer", "n_head", "n_embd", "n_eval_prompts", "bon_prompts", "bon_samples"))
        check_width(self.n_head, self.n_embd, prefix="agent.")
        for part in ("corpus", "sft", "reward_model"):
            getattr(self, part).check(f"agent.{part}")


class LanguageModelAgent(Agent):
    """Subclasses build their policy in __init__ (`policy_lm` is the language model that acts), take the
    SFT weights in `start_from`, and implement `iteration`; their state_dict adds theirs to this one's."""

    Config = LanguageModelConfig
    one_hot = False
    log_every: ClassVar[int] = 1000
    """steps between the averaged training scalars written (Run.log)"""
    step_unit: ClassVar[str] = "generated tokens"
    """what `total_steps` counts"""

    @classmethod
    def misfit(cls, observation_space, action_space) -> str | None:
        words = len(Vocab())
        if getattr(action_space, "n", None) != words or len(getattr(observation_space, "shape", None) or ()) != 1:
            return f"needs env=TextPreference (actions = its {words} words)"
        return super().misfit(observation_space, action_space)

    def __init__(self, observation_space, action_space, config: LanguageModelConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.vocab = Vocab()
        self.block_size = int(observation_space.shape[0])
        if self.block_size < (longest := longest_review(config.corpus)):
            raise UserError(f"env.max_len={self.block_size} is shorter than the longest review of the corpus "
                            f"({longest} tokens with agent.corpus.max_clauses={config.corpus.max_clauses}); give "
                            f"env.max_len={longest} or more, or fewer clauses")
        self.gen = torch.Generator().manual_seed(seed)
        """the policy's sampling while training (checkpointed)"""
        self.prompt_rng = np.random.default_rng(seed + 3)
        """the prompts of training (checkpointed, so a resumed run draws the same ones)"""
        self.ref: nn.Module | None = None
        self.rm: RewardModel | None = None
        self.prefs: Preferences | None = None
        self.history: list[dict[str, float]] = []
        self.info: dict[str, Any] = {"stage_seconds": {}}
        self.last_batch: tuple[np.ndarray, np.ndarray] | None = None
        """(gold, length) of the completions the last iteration sampled, reported as episodes"""
        self._final: dict[str, Any] | None = None

    def make_lm(self) -> nn.Module:
        c, V = self.config, len(self.vocab)
        if c.backbone in BACKBONES:
            return BACKBONES[c.backbone](V, self.block_size, c.n_layer, c.n_head, c.n_embd)
        return hf.local_causal_lm(c.backbone, V)  # anything else names a model directory on disk

    @property
    def policy_lm(self) -> nn.Module:
        raise NotImplementedError

    def start_from(self, sft: nn.Module) -> None:
        """Take the SFT model's weights as the policy's start."""
        self.policy_lm.load_state_dict(sft.state_dict())

    def iteration(self) -> dict[str, float]:
        """One training iteration: advances num_steps, returns the scalars to log."""
        raise NotImplementedError

    # -- sampling and scoring ------------------------------------------------------------------------

    def prompts(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        return prompts(self.vocab, n, rng)

    def sample(self, lm: nn.Module, prompt_ids: torch.Tensor, gen: torch.Generator | None = None,
               greedy: bool = False) -> torch.Tensor:
        return sample(lm, prompt_ids, self.block_size, self.vocab, gen or self.gen, greedy)

    def response_mask(self, seq: torch.Tensor) -> torch.Tensor:
        return response_mask(seq, PROMPT_LEN, self.vocab.pad)

    def gold(self, seq: torch.Tensor) -> np.ndarray:
        return gold(self.vocab, seq)

    def proxy(self, seq: torch.Tensor) -> torch.Tensor:
        """Reward-model score, normalised to mean 0 and std 1 on SFT samples."""
        assert self.rm is not None and self.prefs is not None
        return proxy_scores(self.rm, self.prefs.rm_norm, seq)

    # -- the stages before training ------------------------------------------------------------------

    def prepare(self, run: Run) -> None:
        """SFT (the start and the frozen reference), then the seed's labels and reward model."""
        c = self.config
        t0 = time.perf_counter()
        key = (c.backbone, c.n_layer, c.n_head, c.n_embd)
        lm, sft_stats = pretrained_sft(self.make_lm, key, c.corpus, c.sft, self.vocab, self.block_size,
                                       default_cache_dir(c.cache_dir))
        self.ref = lm.eval().requires_grad_(False)
        self.start_from(self.ref)
        self.info["sft"] = {k: v for k, v in sft_stats.items() if k != "key"}
        self.info["stage_seconds"]["sft"] = time.perf_counter() - t0
        run.log(0, {"sft/loss": sft_stats["loss_final"]})
        prefs = cached_preferences(self.ref, sft_stats["key"], self.vocab, self.block_size, c.reward_model, self.seed,
                                   c.bon_prompts, c.bon_samples, default_cache_dir(c.cache_dir))
        self.set_preferences(prefs)
        # the start on the evaluation's own prompts and noise: each later evaluation's paired baseline
        self.info["sft_eval"] = self.evaluate_completions()[0]
        stats = prefs.stats
        self.info |= {k: stats[k] for k in ("reward_model", "gold_reward_sft", "best_of_n", "samples_sft",
                                            "desirable_fraction")}
        self.info["preferences_cached"] = stats["cached"]
        self.info["stage_seconds"] |= stats["stage_seconds"] if not stats["cached"] else {}
        run.log(0, {k: v for k, v in stats["reward_model"].items() if k != "curve"})
        run.flush_logs(0)

    def set_preferences(self, prefs: Preferences) -> None:
        assert self.ref is not None
        self.prefs = prefs
        self.rm = RewardModel(self.ref, self.vocab.pad)
        self.rm.load_state_dict(prefs.reward_model)
        self.rm.requires_grad_(False).eval()

    # -- training ------------------------------------------------------------------------------------

    def learn(self, total_steps: int, run: Run) -> None:
        if self.ref is None:  # a fresh run; a resumed one restored these from its checkpoint
            self.prepare(run)
        t0 = time.perf_counter()
        while self.num_steps < total_steps:
            stats = self.iteration()
            run.log(self.num_steps, stats)
            if self.last_batch is not None:
                run.episodes(self.num_steps, *self.last_batch)
            monitored = {k: v for k, v in stats.items() if k.startswith("rlhf/")}
            if monitored:  # the direct methods sample (and so monitor) every monitor_every steps only
                self.history.append({"step": self.num_steps, **monitored})
            if not run.tick(self.num_steps):
                break
        seconds = self.info["stage_seconds"]
        seconds["training"] = seconds.get("training", 0.0) + time.perf_counter() - t0

    def monitor(self, seq: torch.Tensor, kl: torch.Tensor, proxy: torch.Tensor | None = None,
                trained_on: bool = True) -> dict[str, float]:
        """rlhf/... scalars of completions sampled in training, their KL estimates (B,) and proxy scores (when
        the caller has them already), reported as episodes; the tokens of those the policy learns from count
        as generated (summary.json)."""
        gold_scores = self.gold(seq)
        lengths = self.response_mask(seq).sum(1).numpy()
        self.last_batch = (gold_scores, lengths)
        if trained_on:
            self.info["generated_tokens"] = self.info.get("generated_tokens", 0) + int(lengths.sum())
        kl_mean = kl.mean().item()
        return {
            "rlhf/gold_reward": float(gold_scores.mean()),
            "rlhf/proxy_reward": (self.proxy(seq) if proxy is None else proxy).mean().item(),
            "rlhf/kl": kl_mean,
            "rlhf/sqrt_kl": float(np.sqrt(max(kl_mean, 0.0))),
            "rlhf/response_length": float(lengths.mean()),
        }

    # -- evaluation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_completions(self) -> tuple[dict[str, float], torch.Tensor]:
        """Gold, proxy and KL of one sampled completion for each evaluation prompt, and the completions."""
        assert self.ref is not None
        lm = self.policy_lm
        was_training = lm.training
        lm.eval()
        ids = self.prompts(self.config.n_eval_prompts, np.random.default_rng(self.seed + EVAL_PROMPTS_SEED))
        seq = self.sample(lm, ids, torch.Generator().manual_seed(self.seed + EVAL_NOISE_SEED))
        kl = torch.cat([sequence_kl(lm, self.ref, s, self.response_mask(s)) for s in seq.split(256)])
        lm.train(was_training)
        return {"gold_reward": float(self.gold(seq).mean()), "proxy_reward": self.proxy(seq).mean().item(),
                "kl": kl.mean().item()}, seq

    def evaluation_extras(self) -> dict[str, float]:
        if self.ref is None:
            return {}
        return self.evaluate_completions()[0]

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Next word for each observation (prompt + words so far, padded)."""
        seq = torch.as_tensor(np.asarray(obs, dtype=np.int64))
        last = (seq != self.vocab.pad).sum(1) - 1  # position of each text's latest word
        logits = self.policy_lm.logits(self.policy_lm.hidden(seq))[torch.arange(len(seq)), last]  # (B, V)
        if deterministic:
            return logits.argmax(-1).numpy()
        return torch_categorical_sample(logits, self.gen).numpy()

    # -- end of run ----------------------------------------------------------------------------------

    def final_stats(self) -> dict[str, Any]:
        figures, seq = self.evaluate_completions()
        rm = self.info["reward_model"]
        start = self.info.get("sft_eval", {})
        return {
            "gold_reward_sft": self.info["gold_reward_sft"],
            "gold_reward_sft_eval": start.get("gold_reward"),
            "proxy_reward_sft_eval": start.get("proxy_reward"),
            "gold_reward_final": figures["gold_reward"],
            "proxy_reward_final": figures["proxy_reward"],
            "kl_final": figures["kl"],
            "reward_model_accuracy": rm["reward_model/eval_accuracy"],
            "reward_model_noise_ceiling": rm["reward_model/noise_ceiling"],
            "stage_seconds": self.info["stage_seconds"],
            "generated_tokens": self.info.get("generated_tokens", 0),
            "samples_final": [self.vocab.decode(s) for s in seq[:8]],
        }

    def final(self) -> dict[str, Any]:
        """final_stats() once per process."""
        if self._final is None:
            self._final = self.final_stats()
        return self._final

    SUMMARY_FIELDS = ("gold_reward_sft", "gold_reward_sft_eval", "proxy_reward_sft_eval",
                      "gold_reward_final", "proxy_reward_final", "kl_final",
                      "reward_model_accuracy", "reward_model_noise_ceiling", "generated_tokens", "stage_seconds")

    def summary_fields(self) -> dict[str, Any]:
        if self.ref is None:
            return {}
        stats = self.final()
        return {k: stats[k] for k in self.SUMMARY_FIELDS if k in stats}

    def write_artifacts(self, run: Run) -> None:
        if self.ref is None:
            return
        summary = self.final()
        write_json_atomic(run.dir / "rlhf_summary.json", summary)
        extra = {k: self.info[k] for k in ("best_of_n", "samples_sft", "sft") if k in self.info}
        write_json_atomic(run.dir / "rlhf_curves.json", {"rl": self.history, **extra,
                                                         "reward_model": self.info["reward_model"]})
        write_report(run.dir, summary, self.history, self.info, run.tb, title=f"{self.config.name} run")

    # -- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        prefs = None
        if self.prefs is not None:
            p = self.prefs
            prefs = {"chosen": p.chosen, "rejected": p.rejected, "singles": p.singles, "desirable": p.desirable,
                     "rm_norm": list(p.rm_norm)}
        return super().state_dict() | {
            "ref": self.ref.state_dict() if self.ref is not None else None,
            "rm": self.rm.state_dict() if self.rm is not None else None, "prefs": prefs,
            "history": copy.deepcopy(self.history), "info": copy.deepcopy(self.info), "gen": self.gen.get_state(),
            "prompt_rng": self.prompt_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state["ref"] is not None:
            self.ref = self.make_lm().eval().requires_grad_(False)
            self.ref.load_state_dict(state["ref"])
            p = state["prefs"]
            data = (p[k].clone() for k in ("chosen", "rejected", "singles", "desirable"))  # not the caller's
            self.set_preferences(Preferences(*data, state["rm"], tuple(p["rm_norm"])))
        self.history, self.info = copy.deepcopy(state["history"]), copy.deepcopy(state["info"])
        self.gen.set_state(state["gen"])
        self.prompt_rng.bit_generator.state = state["prompt_rng"]
        torch.set_rng_state(state["torch_rng"])  # again: building the reference model above drew from it
