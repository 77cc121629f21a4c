"""ibc, the implicit (energy-based) policy: the InfoNCE loss and the gradient penalty by hand, the
derivative-free optimiser and Langevin dynamics on energies whose minimum and Boltzmann distribution
are known, what the agent learns from Step's demonstrations with a fixed seed, and the command line."""

from __future__ import annotations

import math

import pytest
import torch

from rlgen.energy import (
    boltzmann_pick,
    boltzmann_resample,
    dfo,
    energy_gradient,
    langevin,
    polynomial_step_sizes,
    uniform_actions,
)
from rlgen.losses import energy_gradient_penalty, info_nce_loss

# -- the math ------------------------------------------------------------------------------------------


def test_info_nce_by_hand():
    """E(s, a) = 1 against counter-examples of energy 0 and 2; a second row with one far counter-example."""
    positive = torch.tensor([1.0, -3.0], dtype=torch.float64)
    negative = torch.tensor([[0.0, 2.0], [40.0, 40.0]], dtype=torch.float64)
    first = -math.log(math.exp(-1) / (math.exp(-1) + math.exp(0) + math.exp(-2)))
    second = -math.log(math.exp(3) / (math.exp(3) + 2 * math.exp(-40)))
    assert info_nce_loss(positive, negative).item() == pytest.approx((first + second) / 2, rel=1e-12)


def test_info_nce_is_finite_for_large_energies_and_pushes_the_demo_down():
    positive = torch.tensor([500.0], requires_grad=True)
    negative = torch.tensor([[-500.0, 0.0]], requires_grad=True)
    loss = info_nce_loss(positive, negative)
    assert loss.item() == pytest.approx(1000.0)  # -log softmax: E+ - E_min when one term dominates
    loss.backward()
    assert positive.grad.item() == pytest.approx(1.0) and negative.grad[0, 0].item() == pytest.approx(-1.0)


def test_gradient_penalty_by_hand():
    """max(0, ||g||_inf - 1)^2 per sample: |-3| -> 4, 0.5 -> 0, |2| -> 1; mean 5/3."""
    grad = torch.tensor([[[1.0, -3.0], [0.5, 0.2], [2.0, 0.0]]])
    assert energy_gradient_penalty(grad, margin=1.0).item() == pytest.approx(5 / 3)


def test_polynomial_step_sizes_run_from_init_to_final():
    steps = polynomial_step_sizes(0.1, 1e-5, 2.0, 5)
    assert steps[0] == pytest.approx(0.1) and steps[-1] == pytest.approx(1e-5)
    assert steps[2] == pytest.approx((0.1 - 1e-5) * 0.25 + 1e-5)
    assert polynomial_step_sizes(0.3, 0.0, 2.0, 1) == [0.3]


MINIMUM = torch.tensor([0.3, -0.6])


def quadratic(actions: torch.Tensor) -> torch.Tensor:
    """E(a) = ||a - m||^2 / (2 * 0.2^2) (B, N): exp(-E) is N(m, 0.2^2 I)."""
    return ((actions - MINIMUM) ** 2).sum(-1) / (2 * 0.04)


def test_energy_gradient_is_the_closed_form():
    actions = uniform_actions(3, 5, 2, generator=torch.Generator().manual_seed(0))
    grad, energies = energy_gradient(quadratic, actions)
    torch.testing.assert_close(grad, (actions - MINIMUM) / 0.04)
    torch.testing.assert_close(energies, quadratic(actions))


def test_uniform_actions_fill_the_box():
    a = uniform_actions(4, 5000, 2, low=-1.0, high=1.0, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, 5000, 2) and a.min() >= -1 and a.max() <= 1
    assert a.mean().abs() < 0.02 and (a.var() - 1 / 3).abs() < 0.02


def test_resampling_follows_softmax_of_minus_energy():
    samples = torch.tensor([[[0.0], [1.0], [2.0]]]).expand(2000, -1, -1)
    energies = -torch.log(torch.tensor([[6.0, 3.0, 1.0]])).expand(2000, -1)  # probabilities 6/10, 3/10, 1/10
    drawn = boltzmann_resample(samples, energies, torch.Generator().manual_seed(2))
    freq = torch.stack([(drawn == k).float().mean() for k in range(3)])
    torch.testing.assert_close(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.01, rtol=0)
    picked = boltzmann_pick(samples, energies, deterministic=False, generator=torch.Generator().manual_seed(3))
    assert picked.shape == (2000, 1) and abs((picked == 0).float().mean().item() - 0.6) < 0.04
    assert (boltzmann_pick(samples, energies, deterministic=True) == 0).all()


def test_dfo_finds_a_quadratic_minimum_more_precisely_than_its_uniform_samples():
    g = torch.Generator().manual_seed(4)
    start = uniform_actions(16, 256, 2, generator=g)
    samples, energies = dfo(quadratic, start, n_iters=4, noise=0.33, shrink=0.5, generator=g)
    best = boltzmann_pick(samples, energies, deterministic=True)
    start_best = boltzmann_pick(start, quadratic(start), deterministic=True)
    assert (best - MINIMUM).norm(dim=-1).max() < 0.05
    assert (best - MINIMUM).norm(dim=-1).mean() < 0.5 * (start_best - MINIMUM).norm(dim=-1).mean()
    assert samples.min() >= -1 and samples.max() <= 1
    # one iteration is the uniform samples' argmin
    one, e_one = dfo(quadratic, start, n_iters=1, noise=0.33, shrink=0.5, generator=g)
    torch.testing.assert_close(boltzmann_pick(one, e_one, True), start_best)


def test_dfo_finds_both_minima_of_a_two_well_energy():
    """E = min of two equal wells at -0.5 and +0.5: every row's argmin is in one of them, and the rows
    split between them (the optimiser does not average two modes)."""
    def wells(a: torch.Tensor) -> torch.Tensor:
        return torch.minimum((a + 0.5) ** 2, (a - 0.5) ** 2).sum(-1) / 0.005

    g = torch.Generator().manual_seed(5)
    samples, energies = dfo(wells, uniform_actions(400, 256, 1, generator=g), n_iters=3, noise=0.33, shrink=0.5,
                            generator=g)
    best = boltzmann_pick(samples, energies, deterministic=True)
    assert ((best.abs() - 0.5).abs() < 0.03).all()
    assert 0.4 < (best < 0).float().mean().item() < 0.6


def test_langevin_with_a_constant_step_samples_the_boltzmann_distribution():
    """noise_scale = step^-1/2 is the unadjusted Langevin algorithm for exp(-E): mean m, variance 0.04."""
    step = 1e-3
    g = torch.Generator().manual_seed(6)
    chains = langevin(quadratic, uniform_actions(1, 4000, 2, generator=g), [step] * 1500,
                      noise_scale=step ** -0.5, delta_clip=1.0, generator=g)[0]
    torch.testing.assert_close(chains.mean(0), MINIMUM, atol=0.015, rtol=0)
    torch.testing.assert_close(chains.var(0), torch.full((2,), 0.04), atol=0.004, rtol=0)


def test_langevin_temperature_is_step_times_noise_scale_squared():
    """noise_scale = 1 (ibc's): the stationary density is about exp(-E / T) with T = step, so the variance
    is about 0.04 * step; on a quadratic the recursion a - m <- (1 - r)(a - m) - step w, r = step / (2 * 0.04),
    is linear and its stationary variance exactly step^2 / (1 - (1 - r)^2)."""
    step = 0.02
    g = torch.Generator().manual_seed(7)
    chains = langevin(quadratic, uniform_actions(1, 4000, 2, generator=g), [step] * 300, noise_scale=1.0,
                      delta_clip=1.0, generator=g)[0]
    rate = step / (2 * 0.04)
    exact = step**2 / (1 - (1 - rate) ** 2)
    assert exact == pytest.approx(0.04 * step, rel=0.15)
    torch.testing.assert_close(chains.var(0), torch.full((2,), exact), rtol=0.08, atol=0)
    torch.testing.assert_close(chains.mean(0), MINIMUM, atol=0.003, rtol=0)


def test_langevin_with_ibcs_schedule_anneals_into_the_minimum_and_respects_the_box():
    g = torch.Generator().manual_seed(8)
    start = uniform_actions(8, 64, 2, generator=g)
    end = langevin(quadratic, start, polynomial_step_sizes(0.1, 1e-5, 2.0, 100), noise_scale=1.0, delta_clip=0.1,
                   generator=g)
    assert (end - MINIMUM).norm(dim=-1).max() < 0.05 and end.abs().max() <= 1
    assert not end.requires_grad
