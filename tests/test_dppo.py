"""DPPO: the per-step Gaussians of the denoising chain against torch.distributions, the chain against the
diffusion agent's own sampler, PPO's ratio before any update, fine-tuning that raises Step's return,
and the command line (a smoke run from a diffusion run, mistakes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_user_error, in_process, read_csv, train_run

from rlgen.agents.dppo import DPPO
from rlgen.compose import load_config
from rlgen.denoising import (
    alphas_bar,
    betas_for,
    ddim_levels,
    ddim_step,
    ddpm_step,
    reverse_levels,
    reverse_step,
    step_log_prob,
)
from rlgen.trainer import build_agent, train

TINY_DIFFUSION = ("agent=diffusion", "agent.n_trajectories=3", "agent.batch_size=16", "agent.diffusion_steps=20",
                  "agent.sampling_steps=5")
OBS = np.array([[0.5, 0.1], [0.45, 0.3], [0.6, 0.55], [0.3, 0.8]], dtype=np.float32)
"""Avoid positions: the start, beside the obstacle, above it"""

# -- the chain's per-step Gaussians ---------------------------------------------------------------------


@pytest.mark.parametrize(("sampler", "eta"), [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
@pytest.mark.parametrize("min_std", [0.0, 0.1])
def test_a_steps_log_probability_is_the_normal_density_of_its_mean_and_floored_std(sampler, eta, min_std):
    gen = torch.Generator().manual_seed(0)
    betas = betas_for("cosine", 20)
    ab = alphas_bar(betas)
    for k, prev in reverse_levels(20, sampler, 5):
        a_k, eps = torch.randn(64, 3, generator=gen), 2 * torch.randn(64, 3, generator=gen)
        mean, std = reverse_step(a_k, eps, k, prev, betas, ab, sampler, eta)
        if max(std, min_std) == 0:
            continue  # a deterministic step has no density
        x = mean + torch.randn(64, 3, generator=gen)
        normal = torch.distributions.Normal(mean, max(std, min_std))
        torch.testing.assert_close(step_log_prob(mean, std, x, min_std), normal.log_prob(x).sum(-1))
        noise = torch.randn(64, 3, generator=gen)
        # the step the samplers take is this Gaussian's draw
        drawn = (ddpm_step(a_k, eps, k, betas, ab, noise) if sampler == "ddpm" else
                 ddim_step(a_k, eps, float(ab[k]), float(ab[prev]) if prev >= 0 else 1.0, eta, noise))
        torch.testing.assert_close(drawn, mean + std * noise)


def test_reverse_levels_are_ddpms_every_index_or_ddims_levels_down_to_the_clean_action():
    assert reverse_levels(4, "ddpm", 2) == [(3, 2), (2, 1), (1, 0), (0, -1)]
    levels = ddim_levels(100, 10)
    assert reverse_levels(100, "ddim", 10) == list(zip(levels, [*levels[1:], -1], strict=True))
    betas = betas_for("cosine", 100)
    ab = alphas_bar(betas)
    for k, prev in reverse_levels(100, "ddpm", 1)[:-1]:  # DDPM's steps are noisy but the last
        assert reverse_step(torch.zeros(1, 2), torch.zeros(1, 2), k, prev, betas, ab, "ddpm", 0.0)[1] > 0
    for k, prev in reverse_levels(100, "ddim", 10):  # DDIM's with eta 0 are not
        assert reverse_step(torch.zeros(1, 2), torch.zeros(1, 2), k, prev, betas, ab, "ddim", 0.0)[1] == 0


# -- the agent ------------------------------------------------------------------------------------------


def diffusion_on_avoid(*overrides: str, steps: int = 30):
    """A diffusion policy after a few gradient steps on Avoid's demonstrations (its EMA weights differ
    from the trained ones)."""
    agent = build_agent(load_config([*TINY_DIFFUSION, "env=Avoid", *overrides]))
    agent.load_demos()
    for _ in range(steps):
        agent.fit_step()
        agent.num_steps += 1
    return agent


def dppo_from(source, *overrides: str) -> DPPO:
    agent = build_agent(load_config(["agent=dppo", "env=Avoid", "agent.ft_denoising_steps=3", *overrides]))
    agent.start_from(source)
    return agent


@pytest.mark.parametrize("overrides", [(), ("agent.eta=0.5",), ("agent.sampler=ddpm", "agent.horizon=2")])
def test_without_a_floor_on_the_std_the_chain_is_the_diffusion_agents_own_sampler(overrides):
    """Evaluation's chain (the run's sampler and eta, no floor), with the same noise, gives the actions
    the diffusion policy takes, its acting (EMA) weights in both the frozen and the fine-tuned steps."""
    source = diffusion_on_avoid(*overrides)
    agent = dppo_from(source)
    for seed in range(3):
        source.generator.manual_seed(seed)
        agent.generator.manual_seed(seed)
        assert np.array_equal(agent.act(OBS), source.act(OBS))
    assert not np.array_equal(agent.act(OBS), agent.act(OBS))  # fresh noise at every call


def test_the_frozen_steps_run_the_diffusion_runs_network_and_the_last_k_the_fine_tuned_one():
    agent = dppo_from(diffusion_on_avoid())
    x = agent.normalize(OBS)
    before = agent.sample_chain(x, 1.0, 0.1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in agent.ft.parameters():
            p.add_(0.1)
    after = agent.sample_chain(x, 1.0, 0.1, torch.Generator().manual_seed(0))
    assert before[1].shape == (4, 4, 2) and before[2].shape == (4, 3)  # K' = 3 steps: 4 latents, 3 log-probs
    assert torch.equal(before[1][:, 0], after[1][:, 0])  # the latent the fine-tuned steps start from
    assert not torch.equal(before[0], after[0])


def test_ppos_ratio_is_exactly_one_before_the_first_update():
    agent = dppo_from(diffusion_on_avoid(), "agent.ft_denoising_steps=5")
    latents, actions, log_probs, values = agent.policy_step(OBS)
    assert latents.shape == (4, 6, 2) and actions.shape == (4, 2) and log_probs.shape == (4, 5)
    again = agent.chain_log_probs(agent.normalize(OBS), torch.as_tensor(latents))
    assert torch.equal((again - torch.as_tensor(log_probs)).exp(), torch.ones(4, 5))
    assert np.isfinite(log_probs).all() and values.shape == (4,)


def test_fine_tuning_raises_the_return_of_a_poor_diffusion_policy_on_step(tmp_path):
    """Step rewards minus the distance to the correct action: from a policy after 150 gradient steps,
    whose actions are loose (mean return -0.19 on 200 episodes), 8192 env steps of DPPO bring them
    closer (-0.14 with these seeds)."""
    start = tmp_path / "start"
    common = ("env=Step", "eval_episodes=200", "eval_every=0", "progress=false")
    before, _ = train(load_config([*TINY_DIFFUSION, *common, "total_steps=150", f"run_dir={start}"]))
    after, _ = train(load_config(["agent=dppo", *common, f"init={start}", "total_steps=8192", "agent.n_envs=32",
                                  "agent.n_steps=16", "agent.batch_size=128", "agent.learning_rate=1e-3",
                                  "agent.clip_range=0.1", "agent.ft_denoising_steps=5",
                                  f"run_dir={tmp_path / 'dppo'}"]))
    assert after["eval_mean_return"] > before["eval_mean_return"] + 0.03, (before, after)


# -- the command line -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def init_run(tmp_path_factory) -> Path:
    """A tiny diffusion run on Avoid (DDIM, 5 levels of 20) for dppo to start from."""
    return train_run(tmp_path_factory.mktemp("init") / "diffusion", *TINY_DIFFUSION, "env=Avoid", "total_steps=30",
                     "eval_every=0", "eval_episodes=2")


def test_a_cli_run_fine_tunes_the_init_run_and_logs_ppos_scalars(init_run, tmp_path, capsys):
    run = train_run(tmp_path / "run", "agent=dppo", "env=Avoid", f"init={init_run}", "total_steps=128",
                    "eval_every=64", "eval_episodes=3", "agent.n_envs=4", "agent.n_steps=16", "agent.batch_size=32",
                    "agent.ft_denoising_steps=5", "agent.critic_warmup=1")
    assert len(read_csv(run / "eval.csv")[1]) == 2
    header = read_csv(run / "progress.csv")[0]
    for tag in ("train/policy_gradient_loss", "train/value_loss", "train/approx_kl", "train/clip_fraction",
                "train/explained_variance", "dppo/ratio"):
        assert tag in header, tag
    assert str(init_run) in (run / "config.yaml").read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and 0 <= summary["success_rate"] <= 1
    from rlgen.evaluate import main

    evaluated = in_process(main, capsys)(f"run={run}", "episodes=3")  # rebuilt from its checkpoint alone
    assert evaluated.returncode == 0 and "success rate" in evaluated.stdout, evaluated.stderr
    # the frozen network is the diffusion run's acting (EMA) weights; the fine-tuned one has moved from them
    tuned = build_agent(load_config(["agent=dppo", "env=Avoid", "agent.ft_denoising_steps=5"]))
    tuned.load(run / "checkpoint")
    assert tuned.n_updates == 5 * 2  # the second rollout's 2 minibatches x 5 epochs: the first warmed the critic up
    source = build_agent(load_config([*TINY_DIFFUSION, "env=Avoid"]))
    source.load(init_run / "checkpoint")
    with source.acting_weights():
        ema = source.net.state_dict()
        for name, weight in tuned.base.state_dict().items():
            assert torch.equal(weight, ema[name]), name
        assert any(not torch.equal(w, ema[name]) for name, w in tuned.ft.state_dict().items())


def test_mistakes_are_one_line_and_make_no_run(init_run, tmp_path, main_in_process):
    bc = train_run(tmp_path / "bc", "agent=bc", "env=Avoid", "total_steps=5", "eval_every=0", "eval_episodes=1",
                   "agent.n_trajectories=2")
    chunked = train_run(tmp_path / "chunked", *TINY_DIFFUSION, "env=Avoid", "total_steps=5", "eval_every=0",
                        "eval_episodes=1", "agent.horizon=3", "agent.execute=2")
    runs = tmp_path / "runs"
    for overrides, fragments in [
        ((f"init={bc}",), ("init= is a bc run; dppo fine-tunes a diffusion run",)),
        ((f"init={chunked}",), ("agent.execute=2", "dppo plans at every step")),
        ((f"init={init_run}", "agent.ft_denoising_steps=6"),
         ("agent.ft_denoising_steps=6 is more than the 5 steps of the init= run's ddim chain; use 1 to 5",)),
        ((f"init={init_run}", "agent.min_logprob_std=0"), ("agent.min_logprob_std must be positive",)),
        ((f"init={init_run}", "agent.gamma_denoising=1.5"), ("agent.gamma_denoising must be in [0, 1]",)),
        ((f"init={tmp_path / 'nothing'}",), ("no such run directory",)),
        ((f"init={init_run}", "env=Particle"), ("is a run on rlgen/Avoid-v0",)),
    ]:
        env = () if any(o.startswith("env=") for o in overrides) else ("env=Avoid",)
        out = main_in_process("agent=dppo", *env, *overrides, f"runs_root={runs}", "total_steps=64",
                              "progress=false")
        assert_user_error(out, *fragments)
        assert not (runs / "Avoid" / "dppo").exists() and not (runs / "Particle").exists()
    out = main_in_process("agent=bc", "env=Avoid", f"init={init_run}", f"runs_root={runs}", "total_steps=1")
    assert_user_error(out, "agent=bc takes no init= (it is for dppo)")
