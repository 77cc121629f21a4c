"""The diffusion policy: its math against closed forms (rlgen/denoising.py), what it learns with a fixed
seed, action chunks, and the command line (smoke runs and mistakes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_user_error, in_process, read_csv, train_run, trained_on_step

from rlgen.agents.diffusion import Diffusion, action_chunks
from rlgen.compose import load_config
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
from rlgen.envs.imitation_tasks import AvoidEnv, StepEnv
from rlgen.trainer import build_agent

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


# -- the agent -------------------------------------------------------------------------------------------

S = np.linspace(-1.0, 1.0, 2001, dtype=np.float32)[:, None]
"""a fine grid of Step's observation"""


def test_diffusion_learns_both_correct_actions_of_two_valued_step():
    """Where regression averages the two correct actions (tests/test_imitation_agents.py), the sampled
    actions land on one or the other, about half the time each, with both samplers."""
    agent = trained_on_step("diffusion", 1500, "env.two_valued=true")
    for sampler in ("ddim", "ddpm"):
        agent.config.sampler = sampler
        errors, nearest = StepEnv(two_valued=True).errors(S, agent.act(S))
        assert (errors < 0.1).mean() > 0.85 and 0.3 < nearest.mean() < 0.7, sampler


def test_acting_is_reproducible_from_the_seed_and_apart_from_training_noise():
    a, b = trained_on_step("diffusion", 5), trained_on_step("diffusion", 5)
    assert np.array_equal(a.act(S[:50]), b.act(S[:50]))
    assert not np.array_equal(a.act(S[:50]), a.act(S[:50]))  # fresh noise at every call
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a.act(S[:50])
    assert torch.equal(torch.rand(1), before)  # acting leaves the training noise's stream alone


def test_action_chunks_follow_the_episode_and_repeat_its_last_action():
    actions = np.arange(10, dtype=np.float32).reshape(5, 2)
    episode = np.array([0, 0, 0, 1, 1])
    chunks = action_chunks(actions, episode, 3)
    assert chunks.shape == (5, 3, 2)
    assert chunks[:, :, 0].tolist() == [[0, 2, 4], [2, 4, 4], [4, 4, 4], [6, 8, 8], [8, 8, 8]]
    assert np.array_equal(action_chunks(actions, episode, 1)[:, 0], actions)


def test_a_chunked_policy_plans_every_execute_steps_and_after_a_reset(monkeypatch):
    agent = build_agent(load_config(["agent=diffusion", "env=Avoid", "agent.horizon=4", "agent.execute=3"]))
    plans = []
    original = agent.plan
    monkeypatch.setattr(agent, "plan", lambda obs: plans.append(len(obs)) or original(obs))
    policy = agent.episode_policy()
    obs = np.full((2, 2), 0.5, dtype=np.float32)
    first = [policy(obs) for _ in range(7)]
    assert plans == [2, 2, 2] and all(a.shape == (2, 2) for a in first)  # planned at steps 0, 3 and 6
    policy.reset()
    policy(obs)
    assert len(plans) == 4
    env = AvoidEnv()
    env.rollout(policy, seed=0)  # a picture's episodes start with a reset of the policy
    assert plans[4] == 1
    assert build_agent(load_config(["agent=diffusion", "env=Avoid"])).episode_policy().__name__ == "act"


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_a_cli_run_of_either_sampler_writes_success_and_a_checkpoint(sampler, tmp_path):
    run = train_run(tmp_path / "run", "agent=diffusion", "env=Avoid", f"agent.sampler={sampler}", "total_steps=40",
                    "eval_every=20", "eval_episodes=3", "agent.n_trajectories=3", "agent.batch_size=16",
                    "agent.diffusion_steps=20", "agent.horizon=2", "agent.execute=2")
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["action_latency_ms"] > 0 and "mode_fraction" in summary
    assert len(read_csv(run / "eval.csv")[1]) == 2 and (run / "checkpoint").is_dir()


def test_rlgen_evaluate_plays_the_chunks_and_reports_success(tmp_path, capsys, monkeypatch):
    from rlgen.evaluate import main

    run = train_run(tmp_path / "run", "agent=diffusion", "env=Avoid", "total_steps=20", "eval_every=20",
                    "eval_episodes=2", "agent.n_trajectories=3", "agent.batch_size=16", "agent.diffusion_steps=10",
                    "agent.horizon=4", "agent.execute=4")
    planned = []
    plan = Diffusion.plan
    monkeypatch.setattr(Diffusion, "plan", lambda self, obs: planned.append(len(obs)) or plan(self, obs))
    done = in_process(main, capsys)(f"run={run}", "episodes=3")
    assert done.returncode == 0 and "success rate" in done.stdout
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert 0.0 <= evaluation["success_rate"] <= 1.0 and "mode_fraction" in evaluation
    # the episodes run in lockstep: one plan every 4 steps of the longest (at most Avoid's 100), where
    # planning at every step would take at least the mean length's
    assert len(planned) <= 25 and len(planned) < evaluation["mean_length"] <= 4 * len(planned)


@pytest.mark.parametrize(("overrides", "fragments"), [
    (("env=Step", "agent.diffusion_steps=0"), ("agent.diffusion_steps must be positive",)),
    (("env=Step", "agent.sampling_steps=101"), ("agent.sampling_steps must be in [1, 100]", "diffusion_steps=100")),
    (("env=Step", "agent.diffusion_steps=5"), ("agent.sampling_steps must be in [1, 5]",)),
    (("env=Step", "agent.eta=-0.5"), ("agent.eta must be >= 0",)),
    (("env=Step", "agent.horizon=0"), ("agent.horizon must be positive",)),
    (("env=Step", "agent.horizon=4", "agent.execute=5"), ("agent.execute must be in [1, 4]",)),
    (("env=Step", "agent.schedule=cosin"), ("agent.schedule='cosin' is not one of cosine, linear", "'cosine'")),
    (("env=Step", "agent.sampler=ddm"), ("agent.sampler='ddm' is not one of ddpm, ddim",)),
    (("env=CartPole",), ("diffusion needs Box actions; this env's are Discrete", "bc, gail")),
    (("env=Pendulum", "expert=no/run"), ("no such run directory 'no/run'",)),
])
def test_bad_settings_are_one_line_and_no_run(overrides, fragments, tmp_path, main_in_process):
    out = main_in_process("agent=diffusion", *overrides, f"runs_root={tmp_path}", "total_steps=10", "progress=false")
    assert_user_error(out, *fragments)
    assert not any(tmp_path.iterdir())
