"""Acting from an energy over actions: the derivative-free optimiser and Langevin dynamics of implicit
behavioural cloning (Florence et al. 2021, "Implicit Behavioral Cloning", appendix B; their code,
google-research/ibc, ibc/agents/mcmc.py), as pure functions of an energy callable
(tests/test_ibc.py checks them on energies whose minimum and Boltzmann distribution are known).

An `Energy` maps candidate actions (B, N, D), N for each of B observations, to their energies (B, N):
lower is better and exp(-E) is the unnormalised density of the actions. Actions stay in the box
[low, high] (the imitation agents' scaled actions: [-1, 1]).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Energy = Callable[[torch.Tensor], torch.Tensor]


def uniform_actions(batch: int, n: int, dim: int, low: float = -1.0, high: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, N, D) actions drawn uniformly from the box: the counter-examples of InfoNCE and every
    sampler's starting point (Florence et al. 2021, sec. 3 and appendix B)."""
    return low + (high - low) * torch.rand(batch, n, dim, generator=generator)


def boltzmann_resample(samples: torch.Tensor, energies: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """N draws with replacement from each row's samples, with probabilities softmax(-E)."""
    probs = torch.softmax(-energies, dim=-1)  # (B, N)
    idx = torch.multinomial(probs, samples.shape[1], replacement=True, generator=generator)  # (B, N)
    return torch.gather(samples, 1, idx.unsqueeze(-1).expand(-1, -1, samples.shape[-1]))


def boltzmann_pick(samples: torch.Tensor, energies: torch.Tensor, deterministic: bool,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, D): each row's lowest-energy sample, or one draw from softmax(-E) over the row's samples
    (the paper's policy is the argmax of that categorical; ibc_policy.py samples it when collecting)."""
    if deterministic:
        idx = energies.argmin(dim=-1, keepdim=True)  # (B, 1)
    else:
        idx = torch.multinomial(torch.softmax(-energies, dim=-1), 1, generator=generator)
    return torch.gather(samples, 1, idx.unsqueeze(-1).expand(-1, -1, samples.shape[-1])).squeeze(1)


def dfo(energy: Energy, samples: torch.Tensor, n_iters: int, noise: float, shrink: float,
        low: float = -1.0, high: float = 1.0,
        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The derivative-free optimiser (Florence et al. 2021, appendix B.1, Algorithm 1): n_iters
    evaluations of the energy; between two, resample by softmax(-E), perturb by N(0, noise^2) clipped
    to the box, and multiply noise by `shrink`. Returns the final samples (B, N, D) and energies (B, N)."""
    energies = energy(samples)
    for _ in range(n_iters - 1):
        samples = boltzmann_resample(samples, energies, generator)
        samples = (samples + noise * torch.randn(samples.shape, generator=generator)).clamp(low, high)
        noise *= shrink
        energies = energy(samples)
    return samples, energies


def polynomial_step_sizes(init: float, final: float, power: float, n: int) -> list[float]:
    """Langevin step sizes decaying from `init` to `final` over n steps:
    (init - final) (1 - i / (n - 1))^power + final (ibc's mcmc.PolynomialSchedule)."""
    if n == 1:
        return [init]
    return [(init - final) * (1 - i / (n - 1)) ** power + final for i in range(n)]


def energy_gradient(energy: Energy, actions: torch.Tensor,
                    create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """dE/da (B, N, D) and E (B, N) at the actions. Each sample's energy depends on its own action
    only, so the gradient of the sum is every sample's gradient."""
    with torch.enable_grad():
        actions = actions.detach().requires_grad_(True)
        energies = energy(actions)
        (grad,) = torch.autograd.grad(energies.sum(), actions, create_graph=create_graph)
    return grad, energies


def langevin(energy: Energy, samples: torch.Tensor, step_sizes: list[float], noise_scale: float,
             delta_clip: float, low: float = -1.0, high: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Langevin dynamics on the energy (Florence et al. 2021, appendix B.3; ibc's
    mcmc.langevin_step): a <- a - clip(lambda (dE/da / 2 + noise_scale w), +-delta_clip), w ~ N(0, I),
    clipped to the box. With a constant step lambda its stationary density is exp(-E / T) with
    T = lambda noise_scale^2 (noise_scale = lambda^-1/2 is the textbook sampler of exp(-E)); ibc uses
    noise_scale = 1 and a decaying step, which anneals towards E's minima."""
    for step in step_sizes:
        grad, _ = energy_gradient(energy, samples)
        delta = step * (0.5 * grad + noise_scale * torch.randn(samples.shape, generator=generator))
        samples = (samples - delta.clamp(-delta_clip, delta_clip)).clamp(low, high)
    return samples.detach()
