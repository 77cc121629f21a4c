"""A2C: one update from the same weights and rollout equals Stable-Baselines3's A2C update, the flat
RMSprop is torch's, the returns are n-step returns, and it learns CartPole from the command line."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import copy_sb3_parameters, eval_means, sb3_parameter_pairs, spaces_venv, train_run
from stable_baselines3 import A2C as SB3A2C
from stable_baselines3.common.logger import Logger

from rlgen.agents.a2c import A2C, A2CConfig
from rlgen.loops import Rollout

N_STEPS, N_ENVS, OBS_DIM = 5, 4, 3
OBS = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)


def _sb3_a2c(action_space: gym.Space, config: A2CConfig) -> SB3A2C:
    return SB3A2C("MlpPolicy", spaces_venv(OBS, action_space, N_ENVS), n_steps=N_STEPS,
                  learning_rate=config.learning_rate, ent_coef=config.ent_coef, vf_coef=config.vf_coef,
                  max_grad_norm=config.max_grad_norm, rms_prop_eps=config.rms_prop_eps,
                  use_rms_prop=config.use_rms_prop, normalize_advantage=config.normalize_advantage,
                  use_sde=config.use_sde, seed=1, device="cpu")


def _rollout_arrays(action_space: gym.Space, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (N_STEPS, N_ENVS)
    if isinstance(action_space, gym.spaces.Discrete):
        actions = rng.integers(0, action_space.n, shape + (1,)).astype(np.float32)
    else:
        actions = rng.normal(size=shape + action_space.shape).astype(np.float32)
    return {"obs": rng.normal(size=shape + (OBS_DIM,)).astype(np.float32), "actions": actions,
            "advantages": rng.normal(size=shape).astype(np.float32),
            "returns": rng.normal(2.0, 1.0, size=shape).astype(np.float32),
            "values": rng.normal(size=shape).astype(np.float32)}


def _sb3_update(model: SB3A2C, data: dict[str, np.ndarray]) -> None:
    """SB3's A2C.train on a rollout buffer holding `data` (its advantages and returns as given)."""
    buf = model.rollout_buffer
    buf.reset()  # the previous update's get() flattened its arrays
    buf.observations[:] = data["obs"]
    buf.actions[:] = data["actions"]
    buf.advantages[:] = data["advantages"]
    buf.returns[:] = data["returns"]
    buf.values[:] = data["values"]
    buf.full = True
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.train()


@pytest.mark.parametrize(("action_space", "overrides"), [
    (gym.spaces.Discrete(3), {}),
    (gym.spaces.Discrete(3), {"ent_coef": 0.01, "normalize_advantage": True}),
    (gym.spaces.Discrete(3), {"use_rms_prop": False, "max_grad_norm": 0.1}),
    (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), {"ent_coef": 0.01}),
    (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), {"ent_coef": 0.01, "use_sde": True}),
], ids=["discrete", "entropy-normalised", "adam-clipped", "box", "box-gsde"])
def test_one_update_equals_sb3_a2c(action_space, overrides):
    config = A2CConfig(n_envs=N_ENVS, n_steps=N_STEPS, **overrides)
    model = _sb3_a2c(action_space, config)
    agent = A2C(OBS, action_space, config, seed=0)
    copy_sb3_parameters(model, agent)
    data = _rollout_arrays(action_space)
    batch = {"obs": data["obs"].reshape(-1, OBS_DIM),
             "actions": data["actions"].reshape(N_STEPS * N_ENVS, -1).squeeze(-1) if agent.discrete
             else data["actions"].reshape(N_STEPS * N_ENVS, -1),
             "advantages": data["advantages"].reshape(-1), "returns": data["returns"].reshape(-1),
             "values": data["values"].reshape(-1)}
    before = agent.actor[0].weight.detach().clone()
    for _ in range(2):  # the second step also reads RMSprop's (Adam's) state after the first
        _sb3_update(model, data)
        agent.train(batch, lr=config.learning_rate)
    assert not torch.equal(before, agent.actor[0].weight)
    for ours, theirs in sb3_parameter_pairs(model, agent):
        torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=0, atol=1e-6)


def test_lambda_one_gives_n_step_returns_bootstrapped_at_truncation():
    """R_t = r_t + gamma r_{t+1} + ... + gamma^k V(s_{t+k}): from the rollout's last observation, or from
    the final observation of an episode a time limit cut (Mnih et al. 2016, Algorithm S3), none after
    a termination."""
    agent = A2C(OBS, gym.spaces.Discrete(2), A2CConfig(n_envs=3, n_steps=3, gamma=0.9), seed=0)
    rewards = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]], np.float32)
    values = np.array([[0.5, 0.5, 0.5], [0.2, 0.2, 0.2], [0.1, 0.1, 0.1], [7.0, 7.0, 7.0]], np.float32)
    terminated = np.zeros((3, 3), bool)
    truncated = np.zeros((3, 3), bool)
    terminated[1, 1] = True  # env 1's episode ends at step 1
    truncated[1, 2] = True  # env 2's is cut by a time limit at step 1 (values[2, 2]: its final observation)
    rollout = Rollout(obs=np.zeros((3, 3, OBS_DIM), np.float32), actions=np.zeros((3, 3), np.int64),
                      log_probs=np.zeros((3, 3), np.float32), rewards=rewards, terminated=terminated,
                      done=terminated | truncated, valid=np.ones((3, 3), bool), values=values)
    returns = agent.rollout_batch(rollout)["returns"].reshape(3, 3)
    g = 0.9
    expected = np.array([
        [1 + g * 2 + g**2 * 3 + g**3 * 7, 1 + g * 2, 1 + g * 2 + g**2 * 0.1],
        [2 + g * 3 + g**2 * 7, 2.0, 2 + g * 0.1],
        [3 + g * 7, 3 + g * 7, 3 + g * 7],
    ])
    np.testing.assert_allclose(returns, expected, rtol=1e-6)


def test_a2c_learns_cartpole(tmp_path):
    run = train_run(tmp_path / "a2c", "agent=a2c", "env=CartPole", "total_steps=30000", "eval_every=10000",
                    "seed=0")
    assert max(eval_means(run)) >= 400, eval_means(run)
