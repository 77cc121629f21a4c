"""Diffusion Policy Policy Optimization (`dppo`; Ren et al. 2024, "Diffusion Policy Policy Optimization",
arXiv 2409.00588): PPO on the env's reward through the denoising chain of an `agent=diffusion` run.

Each env step samples the diffusion policy's reverse chain, a_K ~ N(0, I) -> ... -> a_0, and every
reverse step is a Gaussian whose mean the noise network sets (rlgen/denoising.py: reverse_step). The
chain is an MDP inside the env's MDP whose steps have exact likelihoods, so PPO's clipped ratio is taken
per denoising step, each with the env step's advantage (Ren et al. 2024, sec. 4). As DPPO does (sec. 4
and its code, irom-lab/dppo: model/diffusion/diffusion_vpg.py, diffusion_ppo.py and
agent/finetune/train_ppo_diffusion_agent.py):
- the first K - K' steps run a frozen copy of the diffusion run's network and the last K' steps
  (`ft_denoising_steps`) a fine-tuned copy; only those K' steps are the policy's, their latents stored;
- DDIM fine-tunes with eta (1, DDPM-like noise between DDIM's levels); DDPM samples with its posterior;
- each step's std is floored at `min_sampling_std` for sampling (exploration) and at `min_logprob_std`
  for its likelihood (finite where a step is nearly deterministic);
- the advantage of step j of K' is discounted by gamma_denoising^(K' - 1 - j): the steps nearer the
  action count most;
- the critic V(s) is an MLP of its own on the normalised observation, with its own Adam step size.

Acting for evaluation runs the same chain (frozen steps, then fine-tuned ones) from fresh noise.
`deterministic=True` (evaluation's default) samples as the diffusion run does, with its sampler and eta
and no floor on the std (DPPO's evaluation: DDIM with eta 0), so before any update it is the diffusion
run's own policy; `deterministic=False` samples as training does (eta, floored std).

Where this differs from DPPO's code: a step's log-probability is its Gaussian's exactly, summed over the
chunk (the code averages over the entries and clamps to [-5, 2]); one clip range for every step (the code
can raise it from a base over the steps); rewards are not rescaled by a running std, nor the sampling
noise clipped to +-3.

The budget counts env steps. A chunk-predicting run (horizon > 1) is fine-tuned whole but plans at every
step (agent.execute=1 in the diffusion run): DPPO's several env steps per chunk are not implemented.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlgen.agents.base import Agent
from rlgen.agents.bc import SAMPLING_SEED_OFFSET
from rlgen.agents.diffusion import Diffusion
from rlgen.config import (
    AgentConfig,
    check_choice,
    check_discount,
    check_layers,
    check_learning_rate,
    check_nonnegative,
    check_positive,
    check_probability,
    check_range,
    named,
)
from rlgen.denoising import alphas_bar, reverse_levels, reverse_step, step_log_prob, timestep_embedding
from rlgen.distributions import kl_k3
from rlgen.errors import UserError
from rlgen.loops import Rollout, flat, on_policy
from rlgen.losses import clip_fraction, clipped_surrogate_loss, normalize_advantages, value_loss
from rlgen.nets.mlp import ACTIVATIONS, flat_dim, mlp
from rlgen.nets.optim import FlatAdam
from rlgen.returns import explained_variance, gae
from rlgen.run import Run

NOISE_SEED_OFFSET = 314_159
"""the rollouts' denoising noise is seeded from the run's seed plus this, apart from acting's stream"""


@dataclass
class DPPOConfig(AgentConfig):
    name: str = "dppo"
    n_envs: int = 16
    """parallel environments"""
    n_steps: int = 64
    """steps per environment per rollout"""
    batch_size: int = 256
    """env steps per minibatch (each with its K' denoising steps)"""
    n_epochs: int = 5
    """passes over each rollout (DPPO's update_epochs on its gym tasks)"""
    learning_rate: float = 1e-4
    """Adam's step size for the fine-tuned noise network (DPPO's actor_lr on its gym tasks)"""
    critic_learning_rate: float = 1e-3
    """Adam's step size for the critic (DPPO's critic_lr)"""
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.01
    """PPO's clip of each denoising step's ratio (DPPO's clip_ploss_coef: 0.001 to 0.1 in its configs, mostly 0.01)"""
    gamma_denoising: float = 0.99
    """discount over the denoising steps: step j of K' weighs gamma_denoising^(K' - 1 - j) (DPPO: 0.9 to 0.99)"""
    ft_denoising_steps: int = 10
    """K', the last steps of the chain that are fine-tuned (at most the diffusion run's chain: its
    sampling_steps with DDIM, diffusion_steps with DDPM)"""
    eta: float = 1.0
    """DDIM's eta while training (DPPO: 1); evaluation samples with the diffusion run's own"""
    min_sampling_std: float = 0.1
    """floor of each fine-tuned step's std while training: the exploration (DPPO's min_sampling_denoising_std)"""
    min_logprob_std: float = 0.1
    """floor of each step's std in its likelihood (DPPO's min_logprob_denoising_std)"""
    critic_net_arch: list[int] = field(default_factory=lambda: [256, 256])
    """hidden layers of the critic"""
    activation: str = "relu"
    """the critic's activation"""
    critic_warmup: int = 0
    """rollouts at the start in which only the critic learns (DPPO's n_critic_warmup_itr)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.activation", self.activation, tuple(ACTIVATIONS))
        check_positive(**named(self, "n_envs", "n_steps", "batch_size", "n_epochs", "ft_denoising_steps",
                               "min_sampling_std", "min_logprob_std"))
        check_learning_rate(**named(self, "learning_rate", "critic_learning_rate"))
        check_discount(**named(self, "gamma", "gamma_denoising"))
        check_probability(**named(self, "gae_lambda"))
        check_range(0, 1, open_low=True, why=" (the ratio is clipped to 1 +- clip_range)", **named(self, "clip_range"))
        check_nonnegative(**named(self, "eta", "critic_warmup"))
        check_layers(**named(self, "critic_net_arch"))
        if min(self.batch_size, self.n_steps * self.n_envs) < 2:
            raise UserError(f"dppo normalises the advantages of each minibatch, which needs 2 or more env steps: "
                            f"batch_size={self.batch_size}, n_steps x n_envs={self.n_steps * self.n_envs}")


@dataclass
class ChainSpec:
    """What the fine-tuning keeps of the diffusion run besides weights and tensors: how its chain samples."""

    sampler: str
    sampling_steps: int
    eta: float
    """the run's own DDIM eta (evaluation's)"""
    horizon: int
    net_arch: list[int]
    activation: str


class DPPO(Agent):
    """A diffusion run's policy fine-tuned by PPO on the env's reward (see the module docstring)."""

    Config = DPPOConfig
    builds_on = ("init", "diffusion")
    action_spaces = (gym.spaces.Box,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: DPPOConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        c = config
        self.n_envs = c.n_envs
        self.obs_dim, self.act_dim = flat_dim(observation_space.shape), flat_dim(action_space.shape)
        self.low = action_space.low.astype(np.float32).reshape(-1)
        self.high = action_space.high.astype(np.float32).reshape(-1)
        self.critic = mlp(self.obs_dim, c.critic_net_arch, 1, c.activation)
        self.critic_optimizer = FlatAdam(self.critic.parameters(), lr=c.critic_learning_rate)
        self.noise = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET)
        """the rollouts' denoising noise"""
        self.generator = torch.Generator().manual_seed(seed + SAMPLING_SEED_OFFSET)
        """acting's noise (evaluations), apart from training's, as the diffusion agent's"""
        self.n_updates = 0
        self.n_rollouts = 0
        # the chain: filled by start_from (a new run) or load_state_dict (a resumed or loaded one)
        self.spec: ChainSpec | None = None
        self.betas = self.ab = torch.zeros(0, dtype=torch.float64)
        self.levels: list[tuple[int, int]] = []
        self.obs_mean, self.obs_std = torch.zeros(self.obs_dim), torch.ones(self.obs_dim)
        self.base: nn.Module | None = None
        self.ft: nn.Module | None = None
        self.optimizer: FlatAdam | None = None

    # -- the chain ---------------------------------------------------------------------------------

    def start_from(self, source: Agent) -> None:
        """Copy a diffusion run's acting (EMA) weights into a frozen and a fine-tuned network, with its
        normalisation and noise schedule."""
        if not isinstance(source, Diffusion):
            raise UserError(f"init= is a {source.config.name} run; dppo fine-tunes a diffusion run (agent=diffusion)")
        s = source.config
        if s.execute != 1:
            raise UserError(f"init= executes {s.execute} actions of each chunk (agent.execute={s.execute}); dppo "
                            "plans at every step: fine-tune a diffusion run trained with agent.execute=1")
        spec = ChainSpec(s.sampler, s.sampling_steps, s.eta, s.horizon, list(s.net_arch), s.activation)
        with source.acting_weights():
            weights = {k: v.clone() for k, v in source.net.state_dict().items()}
        self._build(spec, source.betas.clone(), weights, weights)
        self.obs_mean, self.obs_std = source.obs_mean.clone(), source.obs_std.clone()

    def _build(self, spec: ChainSpec, betas: torch.Tensor, base: dict[str, Any], ft: dict[str, Any]) -> None:
        steps = len(reverse_levels(len(betas), spec.sampler, spec.sampling_steps))
        if self.config.ft_denoising_steps > steps:
            raise UserError(f"agent.ft_denoising_steps={self.config.ft_denoising_steps} is more than the {steps} steps "
                            f"of the init= run's {spec.sampler} chain; use 1 to {steps}")
        self.spec, self.betas, self.ab = spec, betas, alphas_bar(betas)
        self.levels = reverse_levels(len(betas), spec.sampler, spec.sampling_steps)
        in_dim = self.obs_dim + self.chunk_dim + Diffusion.EMBEDDING
        self.base = mlp(in_dim, spec.net_arch, self.chunk_dim, spec.activation).requires_grad_(False)
        self.ft = mlp(in_dim, spec.net_arch, self.chunk_dim, spec.activation)
        self.optimizer = FlatAdam(self.ft.parameters(), lr=self.config.learning_rate)
        self.base.load_state_dict(base)
        self.ft.load_state_dict(ft)

    @property
    def chunk_dim(self) -> int:
        return self.spec.horizon * self.act_dim

    @property
    def first_ft(self) -> int:
        """index into the chain of its first fine-tuned step"""
        return len(self.levels) - self.config.ft_denoising_steps

    def eps(self, net: nn.Module, a_k: torch.Tensor, k: int, obs: torch.Tensor) -> torch.Tensor:
        """The noise predicted on a batch of latents at index k: the layout of Diffusion.eps."""
        level = timestep_embedding(torch.full((len(a_k),), k), Diffusion.EMBEDDING)
        return net(torch.cat([obs, a_k, level], dim=-1))

    def step_gaussian(self, i: int, a: torch.Tensor, obs: torch.Tensor, eta: float) -> tuple[torch.Tensor, float]:
        """Mean and std of chain step i (0: the noisiest) from latents `a`: the frozen network before
        the fine-tuned steps, the fine-tuned one from there."""
        k, prev = self.levels[i]
        net = self.base if i < self.first_ft else self.ft
        return reverse_step(a, self.eps(net, a, k, obs), k, prev, self.betas, self.ab, self.spec.sampler, eta)

    @torch.no_grad()
    def sample_chain(self, obs: torch.Tensor, eta: float, min_std: float, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the chain from fresh noise for a batch of normalised observations, each step's std floored
        at min_std (noise drawn only where a step has some, as denoising.sample draws it). Returns the
        chunks (B, H * act_dim), the latents around the fine-tuned steps (B, K' + 1, H * act_dim) and
        their log-probabilities (B, K'), the std floored at min_logprob_std."""
        a = torch.randn(len(obs), self.chunk_dim, generator=generator)
        latents, log_probs = [], []
        for i in range(len(self.levels)):
            if i == self.first_ft:
                latents.append(a)
            mean, std = self.step_gaussian(i, a, obs, eta)
            std = max(std, min_std)
            a = mean + std * torch.randn(a.shape, generator=generator) if std > 0 else mean
            if i >= self.first_ft:
                latents.append(a)
                log_probs.append(step_log_prob(mean, std, a, self.config.min_logprob_std))
        return a, torch.stack(latents, dim=1), torch.stack(log_probs, dim=1)

    def chain_log_probs(self, obs: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """(B, K') log-probabilities of the fine-tuned steps' latents (B, K' + 1, D) under the current
        fine-tuned network, as sample_chain computes them."""
        out = []
        for j in range(self.config.ft_denoising_steps):
            mean, std = self.step_gaussian(self.first_ft + j, latents[:, j], obs, self.config.eta)
            out.append(step_log_prob(mean, std, latents[:, j + 1], self.config.min_logprob_std))
        return torch.stack(out, dim=1)

    def normalize(self, obs: np.ndarray) -> torch.Tensor:
        return (torch.as_tensor(flat(obs)) - self.obs_mean) / self.obs_std

    def env_actions(self, chunks: torch.Tensor) -> np.ndarray:
        """The first action of each chunk, from [-1, 1] to the env's bounds (as ImitationAgent.unscale)."""
        a = chunks[:, : self.act_dim].numpy()
        a = np.clip(self.low + (a + 1.0) * 0.5 * (self.high - self.low), self.low, self.high)
        return a.astype(np.float32).reshape(len(a), *self.action_space.shape)

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        c = self.config
        eta, min_std = (self.spec.eta, 0.0) if deterministic else (c.eta, c.min_sampling_std)
        return self.env_actions(self.sample_chain(self.normalize(obs), eta, min_std, self.generator)[0])

    # -- training (the rollout loop is rlgen/loops.py: on_policy) ------------------------------------

    def learn(self, total_steps: int, run: Run) -> None:
        on_policy(self, run, total_steps, self.config.n_steps)

    @torch.no_grad()
    def policy_step(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rollout stores each step's fine-tuned latents as its `actions` (N, K' + 1, D) and their
        per-step log-probabilities as its `log_probs` (N, K')."""
        x = self.normalize(obs)
        chunks, latents, log_probs = self.sample_chain(x, self.config.eta, self.config.min_sampling_std, self.noise)
        return latents.numpy(), self.env_actions(chunks), log_probs.numpy(), self.critic(x)[:, 0].numpy()

    @torch.no_grad()
    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.critic(self.normalize(obs))[:, 0].numpy()

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        """GAE over env steps, then epochs of minibatches: PPO's clipped loss on every fine-tuned step."""
        c = self.config
        advantages = gae(rollout.rewards, rollout.values, rollout.terminated, rollout.done, c.gamma, c.gae_lambda)
        valid, values = rollout.valid, rollout.values[:-1]
        data = {"obs": self.normalize(rollout.obs[valid]), "latents": torch.as_tensor(rollout.actions[valid]),
                "log_probs": torch.as_tensor(rollout.log_probs[valid]),
                "advantages": torch.as_tensor(advantages[valid]),
                "returns": torch.as_tensor((advantages + values)[valid])}
        train_actor = self.n_rollouts >= c.critic_warmup
        self.n_rollouts += 1
        n = len(data["obs"])
        stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "kl", "clipfrac", "ratio")}
        for _ in range(c.n_epochs):
            perm = torch.as_tensor(self.rng.permutation(n))
            for start in range(0, n, c.batch_size):
                mb = {k: v[perm[start : start + c.batch_size]] for k, v in data.items()}
                if len(mb["obs"]) < 2:  # one advantage has no spread to normalise by
                    continue
                for key, value in self.minibatch_step(mb, train_actor).items():
                    stats[key].append(value)
        if not stats["vf"]:  # a rollout of fewer than two real transitions: nothing to learn from
            return {"train/n_updates": float(self.n_updates)}
        ev = explained_variance(values[valid], (advantages + values)[valid])
        out = {"train/value_loss": np.mean(stats["vf"]), "train/learning_rate": c.learning_rate,
               "train/clip_range": c.clip_range, "train/n_updates": self.n_updates}
        if train_actor:
            out |= {"train/policy_gradient_loss": np.mean(stats["pg"]), "train/approx_kl": np.mean(stats["kl"]),
                    "train/clip_fraction": np.mean(stats["clipfrac"]), "dppo/ratio": np.mean(stats["ratio"])}
        if np.isfinite(ev):  # undefined when every return is the same
            out["train/explained_variance"] = ev
        return {k: float(v) for k, v in out.items()}

    def minibatch_step(self, mb: dict[str, torch.Tensor], train_actor: bool) -> dict[str, float]:
        """One step of the critic on its squared error and, after the warm-up, one of the fine-tuned
        network on PPO's clipped loss over every (env step, denoising step) pair."""
        c = self.config
        vf_loss = value_loss(self.critic(mb["obs"])[:, 0], mb["returns"])
        self.critic_optimizer.zero_grad()
        vf_loss.backward()
        self.critic_optimizer.step()
        if not train_actor:
            return {"vf": vf_loss.item()}
        log_probs = self.chain_log_probs(mb["obs"], mb["latents"])  # (B, K')
        ratio = (log_probs - mb["log_probs"]).exp()
        # each denoising step takes its env step's advantage, discounted towards the noisy end of the
        # chain (Ren et al. 2024, sec. 4, the denoising discount; diffusion_ppo.py's gamma_denoising)
        k = c.ft_denoising_steps
        discount = c.gamma_denoising ** torch.arange(k - 1, -1, -1, dtype=torch.float32)
        advantages = normalize_advantages(mb["advantages"])[:, None] * discount  # (B, K')
        pg_loss = clipped_surrogate_loss(advantages, ratio, c.clip_range)
        self.optimizer.zero_grad()
        pg_loss.backward()
        self.optimizer.step()
        self.n_updates += 1
        with torch.no_grad():  # KL(old || new) per denoising step, from the old chain's samples
            approx_kl = kl_k3(mb["log_probs"], log_probs).mean().item()
        return {"vf": vf_loss.item(), "pg": pg_loss.item(), "kl": approx_kl,
                "clipfrac": clip_fraction(ratio, c.clip_range).item(), "ratio": ratio.mean().item()}

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "chain": asdict(self.spec), "betas": self.betas.clone(),
            "obs_mean": self.obs_mean.clone(), "obs_std": self.obs_std.clone(),
            "base": self.base.state_dict(), "ft": self.ft.state_dict(), "optimizer": self.optimizer.state_dict(),
            "critic": self.critic.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict(),
            "noise_rng": self.noise.get_state(), "sampling_rng": self.generator.get_state(),
            "n_updates": self.n_updates, "n_rollouts": self.n_rollouts,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # the networks first: initialising them draws from torch's global stream, which the base restores
        self._build(ChainSpec(**state["chain"]), state["betas"].clone(), state["base"], state["ft"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.obs_mean, self.obs_std = state["obs_mean"].clone(), state["obs_std"].clone()
        self.critic.load_state_dict(state["critic"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.noise.set_state(state["noise_rng"].clone())
        self.generator.set_state(state["sampling_rng"].clone())
        self.n_updates, self.n_rollouts = int(state["n_updates"]), int(state["n_rollouts"])
        super().load_state_dict(state)
