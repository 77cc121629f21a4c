"""ibc, the implicit (energy-based) policy: the InfoNCE loss and the gradient penalty by hand, the
derivative-free optimiser and Langevin dynamics on energies whose minimum and Boltzmann distribution
are known, what the agent learns from Step's demonstrations with a fixed seed, and the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_user_error, read_csv, train_run, trained_on_step

from rlgen.energy import (
    boltzmann_pick,
    boltzmann_resample,
    dfo,
    energy_gradient,
    langevin,
    polynomial_step_sizes,
    uniform_actions,
)
from rlgen.envs.imitation_tasks import StepEnv
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


# -- the agent -----------------------------------------------------------------------------------------

S = np.linspace(-1.0, 1.0, 2001, dtype=np.float32)[:, None]
"""a fine grid of Step's observation"""
SMALL = ("agent.net_arch=[64,64]", "agent.n_counter_examples=16")
"""a network small enough for a fast test (the defaults: 256 x 256, 32 counter-examples)"""


def test_ibc_learns_step_and_jumps_where_bc_blurs():
    errors, _ = StepEnv().errors(S, trained_on_step("ibc", 1000, *SMALL).act(S))
    bc_errors, _ = StepEnv().errors(S, trained_on_step("bc", 1000, "agent.net_arch=[64,64]").act(S))
    near = np.abs(S[:, 0]) < 0.1
    assert errors[~near].mean() < 0.005 and errors[~near].max() < 0.05
    # the energy switches valleys somewhere between the demonstrations either side of s = 0; the
    # regression runs through the gap between the branches over a wider band
    assert (errors[near] > 0.1).mean() < 0.5 * (bc_errors[near] > 0.1).mean()
    assert errors[near].mean() < 0.6 * bc_errors[near].mean()


@pytest.mark.parametrize("inference", ["dfo", "langevin"])
def test_ibc_keeps_both_correct_actions_of_two_valued_step(inference):
    agent = trained_on_step("ibc", 1000, *SMALL, f"agent.inference={inference}", "agent.langevin_steps=10",
                    "env.two_valued=true")
    errors, nearest = StepEnv(two_valued=True).errors(S, agent.act(S))
    assert (errors < 0.05).mean() > 0.97 and errors.mean() < 0.01
    assert 0.25 < nearest.mean() < 0.75  # both branches are taken, neither averaged
    # a draw from softmax(-E) at temperature 1 is wider than the argmin, and centred on the branches too
    sampled, branch = StepEnv(two_valued=True).errors(S, agent.act(S, deterministic=False))
    assert np.median(sampled) < 0.15 and 0.25 < branch.mean() < 0.75


def test_acting_is_reproducible_from_the_seed_draws_fresh_candidates_and_leaves_training_alone():
    a, b = trained_on_step("ibc", 5, *SMALL), trained_on_step("ibc", 5, *SMALL)
    np.testing.assert_array_equal(a.act(S[:50]), b.act(S[:50]))
    drawn = a.generator.get_state()
    a.act(S[:50])
    assert not torch.equal(a.generator.get_state(), drawn)  # fresh candidates at every call
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a.act(S[:50])
    assert torch.equal(torch.rand(1), before)  # the counter-examples' stream is untouched


@pytest.mark.parametrize(("env", "inference"), [("Particle", "dfo"), ("Avoid", "langevin")])
def test_a_cli_run_writes_success_rate_and_its_losses(env, inference, tmp_path):
    run = train_run(tmp_path / "run", "agent=ibc", f"env={env}", f"agent.inference={inference}", "total_steps=20",
                    "eval_every=10", "eval_episodes=2", "agent.n_trajectories=3", "agent.batch_size=8",
                    "agent.dfo_samples=32", "agent.dfo_counter_examples=4", "agent.langevin_samples=8",
                    "agent.langevin_steps=3")
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["action_latency_ms"] > 0
    columns, rows = read_csv(run / "progress.csv")
    assert "train/info_nce" in columns and ("train/grad_penalty" in columns) == (inference == "langevin")
    assert len(read_csv(run / "eval.csv")[1]) == 2


@pytest.mark.parametrize(("overrides", "fragments"), [
    (("agent.inference=langevn",), ("agent.inference='langevn' is not one of dfo, langevin", "langevin")),
    (("agent.dfo_samples=0",), ("dfo_samples",)),
    (("agent.n_counter_examples=0",), ("n_counter_examples",)),
    (("agent.langevin_steps=-1",), ("langevin_steps",)),
    (("agent.dfo_shrink=1.5",), ("dfo_shrink",)),
    (("agent.inference=langevin", "agent.n_counter_examples=4"), ("langevin_counter_examples=8 must be at most",)),
    (("env=CartPole",), ("ibc needs Box actions", "Discrete")),
    (("env=Pendulum", "expert=no/run"), ("no such run directory 'no/run'",)),
])
def test_bad_input_is_one_line_and_no_run(overrides, fragments, tmp_path, main_in_process):
    overrides = overrides if any(o.startswith("env=") for o in overrides) else ("env=Step", *overrides)
    out = main_in_process("agent=ibc", *overrides, f"runs_root={tmp_path}", "total_steps=10", "progress=false")
    assert_user_error(out, *fragments)
    assert not any(tmp_path.iterdir())
