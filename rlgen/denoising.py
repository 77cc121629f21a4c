"""Denoising diffusion as pure torch functions: noise schedules, the forward process, the DDPM and DDIM
reverse steps (tests/test_diffusion.py checks them against closed forms), and each reverse step as a
Gaussian with a likelihood, for a policy gradient through the chain (tests/test_dppo.py).

Notation of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"), for an action a instead of an
image x: beta_t the noise added at step t, alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s.
Arrays are indexed from 0 as Diffusion Policy's and diffusers' schedulers are: index k holds the
paper's step t = k + 1, so `alphas_bar[k]` is alpha_bar_{k+1}, and "before index 0" means the clean
action (alpha_bar_0 = 1).

Every sampling step first predicts the clean action a_0 from the noise prediction and clips it to
[-1, 1] (`clip`: actions are scaled into that box), as Diffusion Policy does (its schedulers'
clip_sample=True), then moves to the previous noise level.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from rlgen.distributions import gaussian_log_prob

MAX_BETA = 0.999
"""betas are capped here: at beta = 1 the posterior and the prediction of a_0 divide by zero
(Nichol & Dhariwal 2021, sec. 3.2: "to prevent singularities near t = T")"""
SCHEDULES = ("cosine", "linear")
SAMPLERS = ("ddpm", "ddim")


# -- schedules ----------------------------------------------------------------------------------------


def cosine_betas(n_steps: int, s: float = 0.008) -> torch.Tensor:
    """Nichol & Dhariwal 2021 ("Improved DDPM"), eq. 17: alpha_bar(t) = f(t) / f(0) with
    f(t) = cos^2(pi/2 (t/T + s) / (1 + s)), beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1), capped at
    MAX_BETA (diffusers' "squaredcos_cap_v2", Diffusion Policy's choice). float64, shape (T,)."""
    t = torch.arange(n_steps + 1, dtype=torch.float64) / n_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)


def linear_betas(n_steps: int) -> torch.Tensor:
    """Ho et al. 2020, sec. 4: betas linear from 1e-4 to 0.02 over T = 1000 steps, scaled by 1000 / T
    for another T so the total noise stays about the same (Nichol & Dhariwal 2021's code,
    get_named_beta_schedule), capped at MAX_BETA (short chains: T < 20). float64, shape (T,)."""
    scale = 1000.0 / n_steps
    return torch.linspace(scale * 1e-4, scale * 0.02, n_steps, dtype=torch.float64).clamp(max=MAX_BETA)


def betas_for(schedule: str, n_steps: int) -> torch.Tensor:
    return {"cosine": cosine_betas, "linear": linear_betas}[schedule](n_steps)


def alphas_bar(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s) (Ho et al. 2020, eq. 4's notation)."""
    return torch.cumprod(1 - betas, dim=0)


def timestep_embedding(k: torch.Tensor, dim: int) -> torch.Tensor:
    """The sinusoidal position embedding of Vaswani et al. 2017 (sec. 3.5) for the noise level, as Ho
    et al. 2020 (appendix B) give it to their network: sin and cos of k at dim/2 geometric frequencies
    from 1 to 1/10000. k (B,) -> (B, dim); dim even."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angles = k.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


# -- forward process ----------------------------------------------------------------------------------


def q_sample(a0: torch.Tensor, k: torch.Tensor, noise: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """a_k ~ q(a_k | a_0) in closed form: sqrt(alpha_bar) a_0 + sqrt(1 - alpha_bar) eps (Ho et al. 2020,
    eq. 4). a0 and noise (B, ...), k (B,) indices into the schedule `ab` (alphas_bar)."""
    abk = _rows(ab[k], a0)
    return abk.sqrt() * a0 + (1 - abk).sqrt() * noise


def q_step(a_prev: torch.Tensor, beta: float, noise: torch.Tensor) -> torch.Tensor:
    """One step of the forward process, q(a_t | a_{t-1}) = N(sqrt(1 - beta_t) a_{t-1}, beta_t I)
    (Ho et al. 2020, eq. 2): what q_sample iterates."""
    return math.sqrt(1 - beta) * a_prev + math.sqrt(beta) * noise


# -- reverse steps ------------------------------------------------------------------------------------


def predict_a0(a_k: torch.Tensor, eps: torch.Tensor, ab_k: torch.Tensor | float) -> torch.Tensor:
    """a_0 implied by a_k and a noise prediction: eq. 4 solved for a_0 (Ho et al. 2020, eq. 15)."""
    ab_k = torch.as_tensor(ab_k, dtype=a_k.dtype)
    return (a_k - (1 - ab_k).sqrt() * eps) / ab_k.sqrt()


def posterior(a0: torch.Tensor, a_k: torch.Tensor, k: int, betas: torch.Tensor, ab: torch.Tensor
              ) -> tuple[torch.Tensor, float]:
    """Mean and variance of q(a_{k-1} | a_k, a_0), Ho et al. 2020 eqs. 6-7:
    mean = sqrt(ab_{k-1}) beta_k / (1 - ab_k) a_0 + sqrt(alpha_k) (1 - ab_{k-1}) / (1 - ab_k) a_k,
    variance = (1 - ab_{k-1}) / (1 - ab_k) beta_k (0 at index 0, whose predecessor is clean)."""
    ab_k, ab_prev, beta = float(ab[k]), _ab_before(ab, k), float(betas[k])
    mean = (math.sqrt(ab_prev) * beta * a0 + math.sqrt(1 - beta) * (1 - ab_prev) * a_k) / (1 - ab_k)
    return mean, (1 - ab_prev) / (1 - ab_k) * beta


def ddpm_mean_std(a_k: torch.Tensor, eps: torch.Tensor, k: int, betas: torch.Tensor, ab: torch.Tensor,
                  clip: bool = True) -> tuple[torch.Tensor, float]:
    """The Gaussian of DDPM's reverse step p(a_{k-1} | a_k) = N(mean, std^2 I) (Ho et al. 2020, Algorithm 2,
    with the posterior variance sigma_t^2 = beta~_t, their "fixed small" choice): the posterior taken at
    the predicted (clipped) a_0; std 0 at index 0, whose step is the mean."""
    a0 = predict_a0(a_k, eps, ab[k])
    mean, var = posterior(a0.clamp(-1, 1) if clip else a0, a_k, k, betas, ab)
    return mean, math.sqrt(var)


def ddpm_step(a_k: torch.Tensor, eps: torch.Tensor, k: int, betas: torch.Tensor, ab: torch.Tensor,
              noise: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """Ancestral sampling, one step: a_{k-1} = posterior mean + sigma noise (ddpm_mean_std)."""
    mean, std = ddpm_mean_std(a_k, eps, k, betas, ab, clip)
    return mean + std * noise


def ddim_sigma(ab_k: float, ab_prev: float, eta: float) -> float:
    """Song et al. 2021 ("DDIM"), eq. 16: sigma = eta sqrt((1 - ab_prev) / (1 - ab_k)) sqrt(1 - ab_k / ab_prev).
    eta = 0: a deterministic step; eta = 1 between consecutive levels: DDPM's posterior std."""
    return eta * math.sqrt((1 - ab_prev) / (1 - ab_k) * (1 - ab_k / ab_prev))


def ddim_mean_std(a_k: torch.Tensor, eps: torch.Tensor, ab_k: float, ab_prev: float, eta: float,
                  clip: bool = True) -> tuple[torch.Tensor, float]:
    """The Gaussian of one DDIM step from level ab_k to any earlier level ab_prev (Song et al. 2021,
    eq. 12): mean sqrt(ab_prev) a_0 + sqrt(1 - ab_prev - sigma^2) eps, std sigma (ddim_sigma).
    With clipping, eps is re-derived from the clipped a_0 (diffusers' use_clipped_model_output), so
    that a_0, eps and a_k stay consistent: then eta = 1 between consecutive levels is exactly the DDPM
    step, clipped or not (tests/test_diffusion.py)."""
    a0 = predict_a0(a_k, eps, ab_k)
    if clip:
        a0 = a0.clamp(-1, 1)
        eps = (a_k - math.sqrt(ab_k) * a0) / math.sqrt(1 - ab_k)
    sigma = ddim_sigma(ab_k, ab_prev, eta)
    return math.sqrt(ab_prev) * a0 + math.sqrt(max(1 - ab_prev - sigma**2, 0.0)) * eps, sigma


def ddim_step(a_k: torch.Tensor, eps: torch.Tensor, ab_k: float, ab_prev: float, eta: float,
              noise: torch.Tensor, clip: bool = True) -> torch.Tensor:
    """One DDIM step: a_prev = its mean + sigma noise (ddim_mean_std)."""
    mean, sigma = ddim_mean_std(a_k, eps, ab_k, ab_prev, eta, clip)
    return mean + sigma * noise


def ddim_levels(n_steps: int, sampling_steps: int) -> list[int]:
    """The DDIM subsequence of noise indices, noisiest first, with "trailing" spacing: it starts at
    the last index (K - 1), where a_K ~ N(0, I) is drawn, and ends at index 0's successor level, the
    clean action (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
    sec. 3.4, table 2: "leading" spacing never starts at the noisiest level). sampling_steps = K gives
    every index: DDPM's chain."""
    ratio = n_steps / sampling_steps
    return [round(n_steps - i * ratio) - 1 for i in range(sampling_steps)]


def sample(eps_model: Callable[[torch.Tensor, int], torch.Tensor], a_K: torch.Tensor, betas: torch.Tensor,
           sampler: str, sampling_steps: int, eta: float, generator: torch.Generator | None,
           clip: bool = True) -> torch.Tensor:
    """Run the reverse chain from a_K ~ N(0, I): DDPM's K ancestral steps, or DDIM's `sampling_steps`
    levels (ddim_levels) with `eta`. eps_model(a_k, k) predicts the noise at index k; noise comes from
    `generator`, drawn only where a step adds some (DDPM's last step and DDIM with eta = 0 draw none)."""
    ab = alphas_bar(betas)
    a = a_K
    if sampler == "ddpm":
        for k in range(len(betas) - 1, -1, -1):
            noise = _noise(a, generator) if k > 0 else torch.zeros_like(a)
            a = ddpm_step(a, eps_model(a, k), k, betas, ab, noise, clip)
        return a
    levels = ddim_levels(len(betas), sampling_steps)
    for k, prev in zip(levels, [*levels[1:], -1], strict=True):
        ab_prev = float(ab[prev]) if prev >= 0 else 1.0
        noise = _noise(a, generator) if eta > 0 and prev >= 0 else torch.zeros_like(a)
        a = ddim_step(a, eps_model(a, k), float(ab[k]), ab_prev, eta, noise, clip)
    return a


# -- the reverse chain as a policy --------------------------------------------------------------------
# Every reverse step is a Gaussian whose mean the noise network sets, so the chain is an MDP inside each
# env step whose every step has an exact likelihood: what DPPO takes PPO's ratio of, step by step (Ren et
# al. 2024, "Diffusion Policy Policy Optimization", sec. 4).


def reverse_levels(n_steps: int, sampler: str, sampling_steps: int) -> list[tuple[int, int]]:
    """(k, prev) for every step of the reverse chain, noisiest first: DDPM's every index (prev = k - 1) or
    DDIM's levels (ddim_levels); prev = -1 is the clean action."""
    levels = list(range(n_steps - 1, -1, -1)) if sampler == "ddpm" else ddim_levels(n_steps, sampling_steps)
    return list(zip(levels, [*levels[1:], -1], strict=True))


def reverse_step(a_k: torch.Tensor, eps: torch.Tensor, k: int, prev: int, betas: torch.Tensor, ab: torch.Tensor,
                 sampler: str, eta: float) -> tuple[torch.Tensor, float]:
    """Mean and std of the reverse step from index k to prev (reverse_levels): DDPM's posterior (eta
    plays no part) or DDIM's step with eta."""
    if sampler == "ddpm":
        return ddpm_mean_std(a_k, eps, k, betas, ab)
    return ddim_mean_std(a_k, eps, float(ab[k]), float(ab[prev]) if prev >= 0 else 1.0, eta)


def step_log_prob(mean: torch.Tensor, std: float, x: torch.Tensor, min_std: float) -> torch.Tensor:
    """log N(x; mean, s^2 I) with s = max(std, min_std), summed over the last axis: the likelihood of one
    reverse step's sample. The floor keeps it finite and smooth where a step is (nearly) deterministic
    (DDIM's last step, DDPM's last steps): DPPO's min_logprob_denoising_std (Ren et al. 2024; 0.1 in
    irom-lab/dppo's diffusion_vpg.py and every config that sets it)."""
    return gaussian_log_prob(mean, torch.full_like(mean, math.log(max(std, min_std))), x)


def _noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype)


def _ab_before(ab: torch.Tensor, k: int) -> float:
    """alpha_bar of the level before index k: 1 (the clean action) before index 0."""
    return float(ab[k - 1]) if k > 0 else 1.0


def _rows(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) per-row values shaped to broadcast against `like` (B, ...), in its dtype."""
    return values.to(like.dtype).reshape(-1, *([1] * (like.dim() - 1)))
