"""The diffusion policy (`diffusion`): a denoising diffusion model of the expert's action given the
observation (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"; Chi et al. 2023, "Diffusion
Policy: Visuomotor Policy Learning via Action Diffusion"), with an MLP for the noise prediction.

Training: the DDPM loss, ||eps - eps_theta(a_k, k, s)||^2 at a noise level k drawn uniformly, a_k from
the closed-form forward process (Ho et al. 2020, Algorithm 1). Acting: the reverse chain from fresh
Gaussian noise, DDPM's ancestral sampler over all K levels or DDIM's (Song et al. 2021) over a shorter
subsequence; the math is rlgen/denoising.py. Optionally the model predicts a chunk of `horizon` actions
and the policy executes `execute` of them before it plans again (Chi et al. 2023, sec. 3.1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlgen.agents.bc import ImitationConfig, OneNetwork
from rlgen.config import check_choice, check_nonnegative, check_positive, check_range, named
from rlgen.demos import Demonstrations
from rlgen.denoising import SAMPLERS, SCHEDULES, alphas_bar, betas_for, q_sample, sample, timestep_embedding


@dataclass
class DiffusionConfig(ImitationConfig):
    name: str = "diffusion"
    ema_power: float = 0.75
    """acting uses the weights' moving average, as Diffusion Policy does (see ImitationConfig)"""
    diffusion_steps: int = 100
    """K, the noise levels of the forward process (Diffusion Policy's num_train_timesteps)"""
    schedule: str = "cosine"
    """cosine (Nichol & Dhariwal 2021, Diffusion Policy's squaredcos_cap_v2) | linear (Ho et al. 2020,
    1e-4 .. 0.02 scaled to K levels)"""
    sampler: str = "ddim"
    """ddim (Song et al. 2021: sampling_steps levels) | ddpm (ancestral sampling over all K levels)"""
    sampling_steps: int = 10
    """DDIM's levels, at most diffusion_steps (ignored by ddpm)"""
    eta: float = 0.0
    """DDIM's noise: 0 deterministic given the starting noise; 1 is DDPM's variance on consecutive levels"""
    horizon: int = 1
    """H, actions predicted per observation (an action chunk; 1: no chunking)"""
    execute: int = 1
    """actions of each chunk executed before the policy plans again (1 .. horizon)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.schedule", self.schedule, SCHEDULES)
        check_choice("agent.sampler", self.sampler, SAMPLERS)
        check_positive(**named(self, "diffusion_steps", "horizon"))
        check_range(1, self.diffusion_steps, **named(self, "sampling_steps"),
                    why=f" (DDIM's levels, at most agent.diffusion_steps={self.diffusion_steps})")
        check_nonnegative(**named(self, "eta"))
        check_range(1, self.horizon, why=f" (at most agent.horizon={self.horizon})", **named(self, "execute"))


def action_chunks(actions: np.ndarray, episode: np.ndarray, horizon: int) -> np.ndarray:
    """(N, horizon, act_dim): for each step, the actions of its episode from that step on, the last
    one repeated past the episode's end (Diffusion Policy pads its sequences the same way). `episode`
    holds each step's episode id, the steps of one episode consecutive and in order."""
    last = np.searchsorted(episode, episode, side="right") - 1  # each step's episode's last step
    index = np.minimum(np.arange(len(actions))[:, None] + np.arange(horizon)[None, :], last[:, None])
    return actions[index]


class Diffusion(OneNetwork):
    """A noise-prediction MLP eps(a_k, k, s): input the normalised observation, the noisy (scaled)
    action chunk and a sinusoidal embedding of k; output the predicted noise on the chunk.

    Acting samples: every call draws fresh starting noise (and DDPM's or DDIM's step noise) from the
    agent's own generator, seeded from the run's seed and saved in checkpoints, as Diffusion Policy
    samples fresh noise at every call. A diffusion policy *is* its distribution: starting from fixed
    noise would pick one mode per observation by an arbitrary boundary (on Avoid, one side for all
    starts near each other), and starting from the mean of the noise (zero) can land between modes.
    So `deterministic` changes nothing: evaluation is deterministic in the sense that matters here,
    reproducible (the same seed and checkpoint give the same actions), and the generator is apart from
    training's, so evaluating does not change what is learned.
    """

    Config = DiffusionConfig
    EMBEDDING = 32
    """width of the noise level's sinusoidal embedding"""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: DiffusionConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.betas = betas_for(config.schedule, config.diffusion_steps)
        self.alphas_bar = alphas_bar(self.betas)

    @property
    def chunk_dim(self) -> int:
        return self.config.horizon * self.act_dim

    @property
    def in_dim(self) -> int:
        return self.obs_dim + self.chunk_dim + self.EMBEDDING

    @property
    def out_dim(self) -> int:
        return self.chunk_dim

    def load_demos(self) -> Demonstrations:
        """The demonstrations with each step's action replaced by its chunk, flattened (N, H * act_dim)."""
        demos = super().load_demos()
        chunks = action_chunks(self.data[1].numpy(), demos.episode, self.config.horizon)
        self.data = (self.data[0], torch.as_tensor(chunks.reshape(len(chunks), -1)))
        return demos

    def eps(self, a_k: torch.Tensor, k: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """The predicted noise on a batch of noisy chunks a_k (B, H * act_dim) at levels k (B,)."""
        return self.net(torch.cat([obs, a_k, timestep_embedding(k, self.EMBEDDING)], dim=-1))

    def fit_step(self) -> dict[str, float]:
        obs, a0 = self.batch()
        k = torch.randint(0, self.config.diffusion_steps, (len(a0),))
        noise = torch.randn_like(a0)
        # Ho et al. eq. 14
        return self.gradient_step(F.mse_loss(self.eps(q_sample(a0, k, noise, self.alphas_bar), k, obs), noise))

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> np.ndarray:
        """(B, H, act_dim) sampled action chunks in [-1, 1] for a batch of normalised observations."""
        c, n = self.config, len(obs)
        a_K = torch.randn(n, self.chunk_dim, generator=self.generator)
        chunk = sample(lambda a, k: self.eps(a, torch.full((n,), k), obs), a_K, self.betas, c.sampler,
                       c.sampling_steps, c.eta, self.generator)
        return chunk.reshape(n, c.horizon, self.act_dim).numpy()

    def policy(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """The first action of a freshly sampled chunk (see the class docstring on `deterministic`)."""
        return self.plan(obs)[:, 0]

    def episode_policy(self, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
        """Chunks executed `execute` at a time (a diffusion policy samples either way: see the class)."""
        return self.act if self.config.execute == 1 else ChunkExecutor(self)


class ChunkExecutor:
    """Receding-horizon control with action chunks for a batch of episodes that start together and run
    in lockstep (each of evaluation's envs plays one episode): plan a chunk for every episode, execute
    its first `execute` actions, plan again. `reset()` starts new episodes (LeRobot's convention for
    policies with an action queue); the agent's own `act` re-plans at every step."""

    def __init__(self, agent: Diffusion):
        self.agent = agent
        self.chunk: np.ndarray | None = None
        self.next = 0

    def reset(self) -> None:
        self.chunk = None

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        agent = self.agent
        if self.chunk is None or self.next == agent.config.execute or len(self.chunk) != len(obs):
            with agent.acting_weights():
                self.chunk, self.next = agent.plan(agent.normalize(obs)), 0
        self.next += 1
        return agent.unscale(self.chunk[:, self.next - 1])
