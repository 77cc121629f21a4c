"""RLHF end to end: corpus -> SFT -> preferences -> reward model -> KL-regularised PPO.

The pipeline of Ziegler et al. 2019 / Stiennon et al. 2020 / Ouyang et al. 2022 at toy scale, on
the TextPreference format (rlgen/envs/text_preference.py). The budget `total_steps` counts
generated tokens during RL (each token is one action of the env); supervised pretraining, the
preference labels and reward-model training happen first (rlgen/agents/lm.py) and take no budget.
Generation is batched in torch rather than stepped through the env; `act` serves the env's
observations for evaluation, whose return is the gold (hidden) score of a greedy completion.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from rlgen.agents.lm import LanguageModelAgent, LanguageModelConfig
from rlgen.errors import UserError
from rlgen.nets.gpt import PolicyWithValue
from rlgen.rlhf.ppo_lm import KLControllerConfig, LMPPOConfig, kl_controller, make_rollout, ppo_update


@dataclass
class RLHFConfig(LanguageModelConfig):
    name: str = "rlhf"
    ppo: LMPPOConfig = field(default_factory=LMPPOConfig)
    kl: KLControllerConfig = field(default_factory=KLControllerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        for part in ("ppo", "kl"):
            getattr(self, part).check(f"agent.{part}")
        # the adaptive controller multiplies beta by 1 + e * batch_size / horizon with |e| <= 0.2
        # (Ziegler et al. 2019, sec. 2.2): a horizon shorter than that flips beta's sign
        if self.kl.adaptive and self.kl.kl_horizon <= 0.2 * self.ppo.batch_size:
            raise UserError(f"agent.kl.kl_horizon={self.kl.kl_horizon} must exceed 0.2 x agent.ppo.batch_size "
                            f"({0.2 * self.ppo.batch_size:g}), or the adaptive KL coefficient can turn negative")


class RLHF(LanguageModelAgent):
    Config = RLHFConfig

    def __init__(self, observation_space, action_space, config: RLHFConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        lm = self.make_lm()
        self.policy = PolicyWithValue(lm, lm.n_embd)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=config.ppo.learning_rate)
        self.kl_ctl = kl_controller(config.kl)

    @property
    def policy_lm(self) -> torch.nn.Module:
        return self.policy.lm

    def iteration(self) -> dict[str, float]:
        c = self.config.ppo
        assert self.ref is not None
        self.policy.eval()  # no dropout: the ratio must be exactly 1 before the first step
        seq = self.sample(self.policy.lm, self.prompts(c.batch_size, self.prompt_rng))
        mask = self.response_mask(seq)
        score = self.proxy(seq)
        rollout, kl = make_rollout(self.policy, self.ref, seq, mask, score, self.kl_ctl.value, c)
        stats = ppo_update(self.policy, self.opt, rollout, c, self.gen)
        monitored = self.monitor(seq, kl, score)
        self.kl_ctl.update(monitored["rlhf/kl"], c.batch_size)
        self.num_steps += int(mask.sum().item())
        return stats | monitored | {
            "rlhf/kl_coef": self.kl_ctl.value,
            "rlhf/non_score_reward": -self.kl_ctl.value * monitored["rlhf/kl"],
        }

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"policy": self.policy.state_dict(), "opt": self.opt.state_dict(),
                                       "kl_coef": self.kl_ctl.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.policy.load_state_dict(state["policy"])
        self.opt.load_state_dict(copy.deepcopy(state["opt"]))  # torch keeps the caller's tensors otherwise
        self.kl_ctl.value = state["kl_coef"]
