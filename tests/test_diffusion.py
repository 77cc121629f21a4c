"""The diffusion policy: its math against closed forms (rlgen/denoising.py), what it learns with a fixed
seed, action chunks, and the command line (smoke runs and mistakes)."""

from __future__ import annotations

import math

import pytest
import torch

from rlgen.denoising import (
    MAX_BETA,
    alphas_bar,
    betas_for,
    cosine_betas,
    ddim_levels,
    ddim_sigma,
    ddim_step,
    ddpm_step,
    linear_betas,
    posterior,
    predict_a0,
    q_sample,
    q_step,
    sample,
    timestep_embedding,
)

# -- schedules ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
@pytest.mark.parametrize("n_steps", [1, 5, 100, 1000])
def test_schedules_add_noise_until_almost_none_of_the_action_is_left(schedule, n_steps):
    betas = betas_for(schedule, n_steps)
    ab = alphas_bar(betas)
    assert betas.shape == (n_steps,) and ((betas > 0) & (betas <= MAX_BETA)).all()
    assert (ab[1:] < ab[:-1]).all()
    if n_steps >= 100:
        assert ab[-1] < 1e-4 and ab[0] > 0.99


def test_cosine_schedule_is_nichol_and_dhariwals_alpha_bar_and_linear_is_ho_et_als():
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    ab = alphas_bar(cosine_betas(100))
    for k in (0, 10, 50, 90):  # uncapped levels: alpha_bar(t) = f(t / T) / f(0), eq. 17
        assert float(ab[k]) == pytest.approx(f((k + 1) / 100) / f(0.0), rel=1e-12)
    assert linear_betas(1000)[[0, -1]].tolist() == pytest.approx([1e-4, 0.02], rel=1e-12)
    assert linear_betas(100)[[0, -1]].tolist() == pytest.approx([1e-3, 0.2], rel=1e-12)


def test_timestep_embedding_is_sines_and_cosines_of_the_level():
    emb = timestep_embedding(torch.tensor([0, 3]), 8)
    assert emb.shape == (2, 8)
    assert emb[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert emb[1, 0].item() == pytest.approx(math.sin(3.0)) and emb[1, 4].item() == pytest.approx(math.cos(3.0))


def test_ddim_levels_start_at_the_noisiest_index_and_take_every_index_at_full_length():
    assert ddim_levels(100, 10) == [99, 89, 79, 69, 59, 49, 39, 29, 19, 9]
    assert ddim_levels(7, 7) == [6, 5, 4, 3, 2, 1, 0]
    assert ddim_levels(100, 1) == [99]
    for n in range(1, 31):
        levels = ddim_levels(30, n)
        assert len(set(levels)) == n and levels == sorted(levels, reverse=True) and levels[0] == 29 and levels[-1] >= 0


# -- the forward process ---------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_closed_form_forward_process_is_iterated_noising_exactly(schedule):
    """q(a_k | a_0) = N(sqrt(ab_k) a_0, (1 - ab_k) I): iterating q(a_t | a_{t-1}) = N(sqrt(alpha_t) a_{t-1},
    beta_t I) is a linear-Gaussian chain whose mean and variance follow mean <- sqrt(alpha) mean and
    var <- alpha var + beta; they agree with the closed form at every level."""
    betas = betas_for(schedule, 100)
    ab = alphas_bar(betas)
    a0, mean, var = 0.7, 0.7, 0.0
    for k, beta in enumerate(betas.tolist()):
        mean, var = math.sqrt(1 - beta) * mean, (1 - beta) * var + beta
        assert mean == pytest.approx(math.sqrt(ab[k]) * a0, rel=1e-10, abs=1e-12)
        assert var == pytest.approx(1 - float(ab[k]), rel=1e-10)


def test_closed_form_forward_process_matches_iterated_noising_by_monte_carlo():
    """The same, sampled: 200 000 chains of q_step against q_sample at three levels, mean and variance
    within 5 standard errors."""
    gen = torch.Generator().manual_seed(0)
    betas = cosine_betas(50)
    ab = alphas_bar(betas)
    n, a0 = 200_000, torch.tensor([0.8, -0.5], dtype=torch.float64)
    chain = a0.expand(n, 2).clone()
    for k in range(50):
        chain = q_step(chain, float(betas[k]), torch.randn(n, 2, generator=gen, dtype=torch.float64))
        if k in (4, 24, 49):
            direct = q_sample(a0.expand(n, 2), torch.full((n,), k), torch.randn(n, 2, generator=gen,
                                                                                dtype=torch.float64), ab)
            for draws in (chain, direct):
                sd = math.sqrt(1 - float(ab[k]))
                assert torch.allclose(draws.mean(0), math.sqrt(ab[k]) * a0, atol=5 * sd / math.sqrt(n))
                assert torch.allclose(draws.var(0), torch.full((2,), sd**2, dtype=torch.float64),
                                      atol=5 * sd**2 * math.sqrt(2 / n))


# -- reverse steps ---------------------------------------------------------------------------------------


def _consistent(k: int, ab: torch.Tensor, gen: torch.Generator, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(a_k, eps) with a_k on the forward process from some a_0 in [-1, 1] (so no clipping bites)."""
    a0 = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return q_sample(a0, torch.full((n,), k), eps, ab), eps


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_ddim_with_eta_1_on_consecutive_levels_is_the_ddpm_step(schedule, clip):
    """Song et al. 2021, sec. 4.1: eta = 1 makes the generative process DDPM's. Between consecutive
    levels DDIM's sigma^2 is the posterior variance beta~ (eq. 16 vs Ho et al. eq. 7), and with the same
    noise the step is DDPM's ancestral step exactly, also when a wild noise prediction is clipped."""
    gen = torch.Generator().manual_seed(1)
    betas = betas_for(schedule, 40)
    ab = alphas_bar(betas)
    for k in range(40):
        a_k = torch.randn(64, 3, generator=gen, dtype=torch.float64)
        eps = 3 * torch.randn(64, 3, generator=gen, dtype=torch.float64)  # a_0 often outside [-1, 1]
        noise = torch.randn(64, 3, generator=gen, dtype=torch.float64)
        ab_prev = float(ab[k - 1]) if k else 1.0
        assert ddim_sigma(float(ab[k]), ab_prev, 1.0) ** 2 == pytest.approx(posterior(a_k, a_k, k, betas, ab)[1],
                                                                           rel=1e-12, abs=1e-15)
        ddim = ddim_step(a_k, eps, float(ab[k]), ab_prev, 1.0, noise, clip)
        torch.testing.assert_close(ddim, ddpm_step(a_k, eps, k, betas, ab, noise, clip), rtol=1e-9, atol=1e-9)


def test_ddim_with_eta_0_is_deterministic():
    gen = torch.Generator().manual_seed(2)
    ab = alphas_bar(cosine_betas(100))
    a_k, eps = _consistent(60, ab, gen)
    steps = [ddim_step(a_k, eps, float(ab[60]), float(ab[40]), 0.0, torch.randn(a_k.shape, generator=gen,
                                                                                  dtype=torch.float64))
             for _ in range(3)]
    assert torch.equal(steps[0], steps[1]) and torch.equal(steps[0], steps[2])
    model = lambda a, k: 0.3 * a  # noqa: E731
    a_K = torch.randn(8, 2, generator=gen)
    runs = [sample(model, a_K, cosine_betas(100), "ddim", 10, 0.0, torch.Generator().manual_seed(s)) for s in (0, 1)]
    assert torch.equal(*runs)
    noisy = [sample(model, a_K, cosine_betas(100), "ddim", 10, 0.5, torch.Generator().manual_seed(s)) for s in (0, 1)]
    assert not torch.equal(*noisy)


def test_ddim_with_eta_0_reaches_ddpms_posterior_mean_in_the_small_step_limit():
    """The deterministic step and DDPM's posterior mean share the a_0 term; with c = 1 - ab_{k-1} and the
    posterior variance v, DDIM puts sqrt(c) eps on the noise where DDPM's mean puts sqrt(c - v) eps (Song
    et al. 2021, eq. 12 at sigma = 0 and sigma^2 = v). So (exactly) DDIM - mean = v / (sqrt(c) + sqrt(c - v))
    eps: second order in DDPM's noise std sqrt(v). At a fixed point of the chain (a fixed fraction of the
    K levels) v ~ 1/K, so the gap, measured in DDPM's own noise std, shrinks like 1/sqrt(K); at index 0
    (the last step) both are the predicted a_0 itself."""
    gen = torch.Generator().manual_seed(3)
    worst = []
    for n_steps in (50, 500, 5000):
        betas = cosine_betas(n_steps)
        ab = alphas_bar(betas)
        ratios = []
        for fraction in (0.25, 0.5, 0.75):
            k = int(fraction * n_steps)
            a_k, eps = _consistent(k, ab, gen)
            mean, v = posterior(predict_a0(a_k, eps, ab[k]), a_k, k, betas, ab)
            c = 1 - float(ab[k - 1])
            ddim = ddim_step(a_k, eps, float(ab[k]), float(ab[k - 1]), 0.0, torch.zeros_like(a_k), clip=False)
            torch.testing.assert_close(ddim - mean, v / (math.sqrt(c) + math.sqrt(c - v)) * eps, rtol=1e-7, atol=1e-12)
            ratios.append(float(((ddim - mean) / eps).mean()) / math.sqrt(v))  # the gap per unit of eps
        worst.append(max(ratios))
    assert worst[0] > 3 * worst[1] > 9 * worst[2]  # about sqrt(10) per tenfold K
    ab = alphas_bar(cosine_betas(50))
    a_k, eps = _consistent(0, ab, gen)
    mean, v = posterior(predict_a0(a_k, eps, ab[0]), a_k, 0, cosine_betas(50), ab)
    assert v == 0.0
    torch.testing.assert_close(ddim_step(a_k, eps, float(ab[0]), 1.0, 0.0, torch.zeros_like(a_k), clip=False), mean)


def test_sampling_with_a_perfect_noise_model_recovers_a_point_mass():
    """If every action is a0, the exact noise prediction is (a_k - sqrt(ab_k) a0) / sqrt(1 - ab_k); both
    samplers must then return a0 from any start."""
    betas = cosine_betas(100)
    ab = alphas_bar(betas)
    a0 = torch.tensor([0.3, -0.9])
    model = lambda a, k: (a - ab[k].sqrt().float() * a0) / (1 - ab[k]).sqrt().float()  # noqa: E731
    a_K = torch.randn(16, 2, generator=torch.Generator().manual_seed(4))
    for sampler, steps, eta in (("ddpm", 100, 1.0), ("ddim", 10, 0.0), ("ddim", 5, 1.0)):
        out = sample(model, a_K, betas, sampler, steps, eta, torch.Generator().manual_seed(5))
        torch.testing.assert_close(out, a0.expand(16, 2), atol=1e-4, rtol=0)
