"""Deep soft Q-learning: its pieces against closed forms, its greedy policy against soft value
iteration on a one-hot gridworld, temperature tuning, and the CLI."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_user_error, read_csv, read_json, train_run

from rlgen.agents.sql import SQL, SQLConfig
from rlgen.compose import load_config
from rlgen.distributions import categorical_entropy, gumbel_max_sample, np_categorical_entropy
from rlgen.envs.model import model_of
from rlgen.soft import boltzmann, soft_value, soft_value_iteration, torch_soft_value
from rlgen.trainer import build_agent, train


def test_torch_pieces_match_the_numpy_closed_forms():
    q = np.array([[1e4, 1e4 - 1.0, 0.0], [0.3, -0.2, 0.1]])
    for ent_coef in (1e-3, 0.5, 10.0):
        qt = torch.tensor(q)
        np.testing.assert_allclose(torch_soft_value(qt, ent_coef).numpy(), soft_value(q, ent_coef), rtol=1e-12)
        np.testing.assert_allclose(categorical_entropy(qt / ent_coef).numpy(),
                                   np_categorical_entropy(boltzmann(q, ent_coef)), atol=1e-9)
    # leading dimensions (a whole training phase of minibatches at once) are kept
    assert torch_soft_value(torch.zeros(3, 5, 2), 1.0).shape == (3, 5)


def test_boltzmann_sample_follows_the_softmax():
    q = np.tile([[1.0, 0.0, -1.0, 2.0]], (40_000, 1))
    actions = gumbel_max_sample(q / 0.8, np.random.default_rng(0))
    freq = np.bincount(actions, minlength=4) / len(actions)
    np.testing.assert_allclose(freq, boltzmann(q[:1], 0.8)[0], atol=0.01)
    assert np.all(gumbel_max_sample(q * 1e6 / 1e-3, np.random.default_rng(0)) == 3)  # no overflow


def sql_agent(**overrides) -> SQL:
    space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    return SQL(space, gym.spaces.Discrete(3), SQLConfig(**overrides), seed=0)


def test_soft_target_uses_the_target_network():
    agent = sql_agent(ent_coef=0.5, gamma=0.9)
    next_obs = torch.randn(8, 4)
    rewards, terminated = torch.ones(8), torch.tensor([0.0, 1.0] * 4)
    expected = 1.0 + 0.9 * (1 - terminated) * 0.5 * torch.logsumexp(agent.q_target(next_obs) / 0.5, dim=1)
    torch.testing.assert_close(agent.td_target(rewards, next_obs, terminated), expected.detach())


@pytest.mark.parametrize("ratio", [0.3, 0.9])
def test_temperature_tuning_reaches_the_target_entropy(ratio):
    """With Q fixed, dual descent on log ent_coef settles where the policy's entropy equals the target."""
    agent = sql_agent(ent_coef=0.05, auto_ent_coef=True, target_entropy_ratio=ratio, ent_coef_learning_rate=0.05)
    with torch.no_grad():
        agent.q_net[-1].weight.mul_(20.0)  # spread the Q values so that the target is not met at the start
    states = torch.randn(256, 4)
    for _ in range(1500):
        agent._temperature_step(states)
    reached = categorical_entropy(agent.q_net(states).detach() / agent.ent_coef).mean().item()
    assert reached == pytest.approx(ratio * np.log(3), abs=0.02)


def test_checkpoint_keeps_the_tuned_temperature():
    agent = sql_agent(auto_ent_coef=True, ent_coef_learning_rate=0.1)
    for _ in range(20):
        agent._temperature_step(torch.randn(16, 4))
    other = sql_agent(auto_ent_coef=True)
    other.load_state_dict(agent.state_dict())
    assert other.ent_coef == pytest.approx(agent.ent_coef) and agent.ent_coef != pytest.approx(0.05)


@pytest.mark.slow
def test_deep_sql_greedy_policy_matches_soft_value_iteration_on_one_hot_frozen_lake(tmp_path):
    gamma, ent_coef = 0.9, 0.02
    env = gym.make("FrozenLake-v1", is_slippery=False)
    m = model_of(env)
    sol = soft_value_iteration(m, gamma, ent_coef, tol=1e-12)
    cfg = load_config([
        "agent=sql", "env=FrozenLake-v1", "env.is_slippery=false", "total_steps=5000", "eval_every=0",
        f"run_dir={tmp_path}", "progress=false", f"agent.gamma={gamma}", f"agent.ent_coef={ent_coef}",
        "agent.learning_rate=0.001", "agent.train_freq=1", "agent.target_update_interval=100",
        "agent.learning_starts=500", "agent.batch_size=64", "agent.exploration_initial_eps=1.0",
        "agent.exploration_final_eps=0.1", "agent.exploration_fraction=0.4",
    ])
    summary, run_dir = train(cfg)
    agent = build_agent(cfg)
    agent.load(run_dir / "checkpoint")
    q = agent.q_values(np.eye(m.n_states, dtype=np.float32))  # the deep agent sees one-hot states
    live = np.array([0, 1, 2, 3, 4, 6, 8, 9, 10, 13, 14])  # not the holes (5, 7, 11, 12) nor the goal (15)
    np.testing.assert_allclose(q[live], sol.q_values[live], rtol=0, atol=0.02)
    top2 = np.sort(sol.q_values, axis=1)[:, -2:]
    clear = live[(top2[:, 1] - top2[:, 0])[live] > 5e-3]  # soft VI has no single greedy action in a tie
    assert len(clear) >= 9
    np.testing.assert_array_equal(q[clear].argmax(axis=1), sol.q_values[clear].argmax(axis=1))
    assert summary["eval_mean_return"] == 1.0


@pytest.mark.slow
def test_cli_smoke(tmp_path, main_in_process):
    run_dir = train_run(tmp_path / "sql", "agent=sql", "env=CartPole", "total_steps=1500", "eval_every=1000",
                        "eval_episodes=2", "agent.auto_ent_coef=true", "agent.learning_starts=500")
    columns, rows = read_csv(run_dir / "progress.csv")
    assert {"train/entropy", "train/ent_coef", "train/ent_coef_loss", "train/loss"} <= set(columns)
    assert 0.0 < float(rows[-1]["train/entropy"]) <= np.log(2) + 1e-6
    assert float(rows[-1]["train/ent_coef"]) != 0.05  # tuned away from its initial value
    assert read_json(run_dir / "summary.json")["total_steps"] == 1500

    for agent in ("soft_q_learning", "soft_value_iteration"):  # in-process: no interpreter start-up
        out = main_in_process(f"agent={agent}", "env=FrozenLake-v1", "total_steps=2000", "eval_episodes=2",
                              f"run_dir={tmp_path / agent}", "progress=false")
        assert out.returncode == 0, out.stderr
        for name in ("values.npy", "q_values.npy", "policy.npy", "summary.json", "episodes.csv"):
            assert (tmp_path / agent / name).is_file(), name
        np.testing.assert_allclose(np.load(tmp_path / agent / "policy.npy").sum(axis=1), 1.0)
        assert "train/entropy" in read_csv(tmp_path / agent / "progress.csv")[0]

    for agent in ("sql", "soft_q_learning", "soft_value_iteration"):
        out = main_in_process(f"agent={agent}", "env=FrozenLake-v1", "agent.ent_coef=0",
                              f"run_dir={tmp_path / ('bad_' + agent)}", "progress=false")
        assert_user_error(out, "agent.ent_coef must be > 0")
