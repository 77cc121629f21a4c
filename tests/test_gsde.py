"""gSDE (agent.use_sde): the log-probability and entropy are SB3's StateDependentNoiseDistribution's, a PPO
update from the same weights and data equals SB3's PPO with use_sde (A2C's: tests/test_a2c.py), the noise
is the last hidden features times a matrix drawn at a rollout's start and every sde_sample_freq steps, its
spread is the one the log-probability assumes, and a gSDE run resumes, and runs in a group of seeds, as if
alone and uninterrupted."""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_user_error, copy_sb3_parameters, sb3_parameter_pairs, spaces_venv, stop_at
from stable_baselines3 import PPO as SB3PPO
from stable_baselines3.common.logger import Logger

from rlgen.agents.ppo import PPO, PPOConfig
from rlgen.compose import load_config
from rlgen.distributions import sde_noise
from rlgen.trainer import train

N_STEPS, N_ENVS, OBS_DIM = 8, 4, 3
OBS = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACTIONS = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)


def _sb3_ppo(config: PPOConfig) -> SB3PPO:
    return SB3PPO("MlpPolicy", spaces_venv(OBS, ACTIONS, N_ENVS), n_steps=N_STEPS, batch_size=config.batch_size,
                  n_epochs=config.n_epochs, learning_rate=config.learning_rate, ent_coef=config.ent_coef,
                  clip_range=config.clip_range, use_sde=True, sde_sample_freq=config.sde_sample_freq,
                  policy_kwargs=dict(log_std_init=config.log_std_init), seed=1, device="cpu")


def _agent(**overrides) -> PPO:
    config = PPOConfig(**{"n_envs": N_ENVS, "n_steps": N_STEPS, "batch_size": N_STEPS * N_ENVS, "use_sde": True,
                          **overrides})
    return PPO(OBS, ACTIONS, config, seed=0)


def _data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return (torch.as_tensor(rng.normal(size=(n, OBS_DIM)), dtype=torch.float32),
            torch.as_tensor(rng.normal(size=(n, 2)), dtype=torch.float32))


@pytest.mark.parametrize("log_std_init", [0.0, -2.0])
def test_log_prob_and_entropy_are_sb3s(log_std_init):
    agent = _agent(log_std_init=log_std_init)
    model = _sb3_ppo(agent.config)
    with torch.no_grad():
        model.policy.log_std.add_(torch.randn(model.policy.log_std.shape) * 0.3)  # a std that differs per weight
    copy_sb3_parameters(model, agent)
    obs, actions = _data(32)
    logp, entropy, value = agent.evaluate_actions(obs, actions)
    values, sb3_logp, sb3_entropy = model.policy.evaluate_actions(obs, actions)
    torch.testing.assert_close(logp, sb3_logp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(entropy, sb3_entropy, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(value, values.squeeze(-1))


def test_one_ppo_update_equals_sb3s_with_gsde():
    """Three epochs on one minibatch holding the whole rollout (so that SB3's shuffle of it changes nothing)."""
    agent = _agent(batch_size=N_STEPS * N_ENVS, n_epochs=3, ent_coef=0.01, sde_sample_freq=4)
    model = _sb3_ppo(agent.config)
    copy_sb3_parameters(model, agent)
    n = N_STEPS * N_ENVS
    obs, actions = _data(n, seed=1)
    rng = np.random.default_rng(2)
    advantages, returns = rng.normal(size=n).astype(np.float32), rng.normal(1.0, 1.0, size=n).astype(np.float32)
    with torch.no_grad():
        logp, _, values = agent.evaluate_actions(obs, actions)
    buf = model.rollout_buffer
    buf.reset()
    buf.observations[:] = obs.numpy().reshape(N_STEPS, N_ENVS, OBS_DIM)
    buf.actions[:] = actions.numpy().reshape(N_STEPS, N_ENVS, 2)
    buf.log_probs[:] = (logp.numpy() - 0.05).reshape(N_STEPS, N_ENVS)  # ratios away from 1: clipping matters
    buf.advantages[:] = advantages.reshape(N_STEPS, N_ENVS)
    buf.returns[:] = returns.reshape(N_STEPS, N_ENVS)
    buf.values[:] = values.numpy().reshape(N_STEPS, N_ENVS)
    buf.full = True
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.train()
    batch = {"obs": obs.numpy(), "actions": actions.numpy(), "logp": logp.numpy() - 0.05,
             "values": values.numpy(), "advantages": advantages, "returns": returns}
    before = agent.log_std.detach().clone()
    agent.train(batch, progress_remaining=1.0)
    assert not torch.equal(before, agent.log_std)
    for ours, theirs in sb3_parameter_pairs(model, agent):
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("freq", [3, -1])
def test_noise_is_latent_times_a_matrix_drawn_every_sde_sample_freq_steps(freq):
    agent = _agent(sde_sample_freq=freq)
    drawn = []
    for rollout in range(2):
        agent.begin_rollout()
        for step in range(7):
            obs, _ = _data(N_ENVS, seed=10 * rollout + step)
            actions, env_actions, logp, _ = agent.policy_step(obs.numpy())
            with torch.no_grad():
                latent, mean = agent.actor[:-1](obs).numpy(), agent.actor(obs).numpy()
                torch_logp, _, _ = agent.evaluate_actions(obs, torch.as_tensor(actions))
            np.testing.assert_allclose(actions - mean, sde_noise(latent, agent.exploration), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(logp, torch_logp.numpy(), rtol=1e-4, atol=1e-4)  # acting's = the update's
            np.testing.assert_array_equal(env_actions, np.clip(actions, -2.0, 2.0))
            assert agent.exploration.shape == (N_ENVS, 64, 2)
            drawn.append(agent.exploration)
    new = [i for i in range(len(drawn)) if i == 0 or drawn[i] is not drawn[i - 1]]
    # a rollout's first step draws, then every freq-th (freq=-1: none until the next rollout)
    assert new == ([0, 3, 6, 7, 10, 13] if freq == 3 else [0, 7])
    assert not np.allclose(drawn[0][0], drawn[0][1])  # each env has its own matrix


def test_the_noise_has_the_spread_the_log_probability_assumes():
    """Over many draws of the matrix, the action's standard deviation is exp(sde_log_std) per dimension: a
    spread that depends on the state."""
    agent = _agent(log_std_init=-3.0)
    with torch.no_grad():
        agent.log_std.add_(torch.randn(agent.log_std.shape) * 0.5)
    spreads = []
    for seed in (3, 4):
        obs, _ = _data(1, seed)
        samples = agent.act(np.repeat(obs.numpy(), 20000, axis=0), deterministic=False)
        with torch.no_grad():
            latent = agent.actor[:-1](obs)
            mean = agent.actor(obs).numpy()[0]
            variance = latent.pow(2) @ (2 * agent.log_std).exp()
        expected = np.sqrt(variance.numpy()[0])
        assert np.all(np.abs(mean) + 4 * expected < 2.0), "a sample clipped at the bounds would bias the spread"
        np.testing.assert_allclose(samples.mean(axis=0), mean, atol=4 * expected.max() / np.sqrt(20000))
        np.testing.assert_allclose(samples.std(axis=0), expected, rtol=0.03)
        spreads.append(expected)
    assert not np.allclose(spreads[0], spreads[1], rtol=0.1)


def test_gsde_mistakes_are_one_line(main_in_process, tmp_path):
    discrete = "use_sde=true explores continuous"
    for args, fragment in [(("agent=ppo", "env=CartPole", "agent.use_sde=true"), discrete),
                           (("agent=sb3_a2c", "env=CartPole", "agent.use_sde=true"), discrete),
                           (("agent=ppo", "env=Pendulum", "agent.use_sde=true", "agent.sde_sample_freq=0"),
                            "agent.sde_sample_freq must be -1")]:
        assert_user_error(main_in_process(*args, f"runs_root={tmp_path}"), fragment)
    assert not any(tmp_path.iterdir())


COMMON = ["agent=ppo", "env=Pendulum", "agent.use_sde=true", "agent.sde_sample_freq=4", "agent.n_envs=2",
          "agent.n_steps=64", "agent.batch_size=32", "agent.n_epochs=2", "total_steps=1024", "eval_every=256",
          "eval_episodes=2", "progress=false"]


def test_a_resumed_gsde_run_ends_where_the_uninterrupted_one_does(tmp_path, monkeypatch):
    whole, _ = train(load_config([*COMMON, f"run_dir={tmp_path / 'whole'}"]))
    halted_cfg = load_config([*COMMON, f"run_dir={tmp_path / 'halted'}"])
    with monkeypatch.context() as m:
        stop_at(m, 512)
        assert train(halted_cfg)[0]["status"] == "interrupted"
    resumed, _ = train(replace(halted_cfg, resume=str(tmp_path / "halted"), run_dir=None))
    assert resumed["status"] == whole["status"] == "completed"
    for name in ("eval.csv", "episodes.csv"):
        assert (tmp_path / "halted" / name).read_text() == (tmp_path / "whole" / name).read_text(), name


def test_a_gsde_group_member_is_its_single_run_exactly(tmp_path):
    from rlgen.seed_groups import train_seeds

    group = train_seeds(load_config([*COMMON, "seed=4", "seeds=2", f"run_dir={tmp_path / 'group'}"]))
    assert [o.summary["status"] for o in group] == ["completed", "completed"]
    alone = train_seeds(load_config([*COMMON, "seed=5", f"run_dir={tmp_path / 'alone'}"]))[0]
    for name in ("eval.csv", "episodes.csv"):
        assert (tmp_path / "group" / "seed5" / name).read_text() == (alone.run_dir / name).read_text(), name
