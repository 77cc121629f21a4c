"""DQN: TD targets on a hand-set network, the replay buffer, epsilon, and learning CartPole."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import eval_means, read_json, train_run, tuned_file

from rlgen.agents.dqn import DQN, DQNConfig, ReplayBuffer, linear_epsilon

GAMMA = 0.9


def _linear_q(net: torch.nn.Sequential, weight: list[list[float]], bias: list[float]) -> None:
    """Q(s) = W s + b (the network has no hidden layer)."""
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(weight))
        net[0].bias.copy_(torch.tensor(bias))


def _dqn(double_q: bool) -> DQN:
    obs = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    agent = DQN(obs, gym.spaces.Discrete(3), DQNConfig(net_arch=[], gamma=GAMMA, double_q=double_q), seed=0)
    # online net: Q(s') = (s1, s2, 0); target net: Q_target(s') = (10 s1, 1, 2 s2)
    _linear_q(agent.q_net, [[1, 0], [0, 1], [0, 0]], [0, 0, 0])
    _linear_q(agent.q_target, [[10, 0], [0, 0], [0, 2]], [0, 1, 0])
    return agent


NEXT_OBS = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [1.0, 3.0]])
REWARDS = torch.tensor([1.0, -1.0, 0.5, 2.0])
TERMINATED = torch.tensor([0.0, 0.0, 0.0, 1.0])


def test_td_target_bootstraps_from_the_target_networks_max():
    # max_a Q_target: row 0 (10, 1, 0) -> 10; row 1 (0, 1, 2) -> 2; row 2 (-10, 1, -2) -> 1; row 3 terminal
    expected = torch.tensor([1 + GAMMA * 10, -1 + GAMMA * 2, 0.5 + GAMMA * 1, 2.0])
    torch.testing.assert_close(_dqn(False).td_target(REWARDS, NEXT_OBS, TERMINATED), expected)


def test_double_q_target_values_the_online_networks_choice_with_the_target_network():
    # argmax online: row 0 (1, 0, 0) -> 0; row 1 (0, 1, 0) -> 1; row 2 (-1, -1, 0) -> 2
    # Q_target there:  row 0 -> 10;          row 1 -> 1;           row 2 -> -2
    expected = torch.tensor([1 + GAMMA * 10, -1 + GAMMA * 1, 0.5 + GAMMA * -2, 2.0])
    torch.testing.assert_close(_dqn(True).td_target(REWARDS, NEXT_OBS, TERMINATED), expected)


def _add(buffer: ReplayBuffer, values: list[float]) -> None:
    """One transition per value v: obs (v, v), action v % 2, reward v, next obs (v+1, v+1)."""
    v = np.asarray(values, dtype=np.float32)
    obs = np.stack([v, v], axis=1)
    buffer.add(obs, v.astype(np.int64) % 2, v, obs + 1, np.zeros(len(v), np.float32))


def _sampled_rewards(buffer: ReplayBuffer, n: int, seed: int = 0) -> np.ndarray:
    return buffer.sample(n, np.random.default_rng(seed))["rewards"].numpy()


def test_replay_buffer_overwrites_the_oldest_transitions():
    buffer = ReplayBuffer(capacity=5, obs_dim=2)
    _add(buffer, [0, 1, 2])
    _add(buffer, [3, 4, 5, 6])  # wraps around: 0 and 1 are overwritten
    assert buffer.size == 5
    assert set(_sampled_rewards(buffer, 2000)) == {2.0, 3.0, 4.0, 5.0, 6.0}


def test_replay_buffer_samples_only_filled_entries_and_keeps_transitions_whole():
    buffer = ReplayBuffer(capacity=100, obs_dim=2)
    _add(buffer, [7, 8, 9])
    batch = buffer.sample(1000, np.random.default_rng(1))
    r = batch["rewards"].numpy()
    assert set(r) == {7.0, 8.0, 9.0}
    np.testing.assert_array_equal(batch["obs"].numpy(), np.stack([r, r], 1))
    np.testing.assert_array_equal(batch["next_obs"].numpy(), np.stack([r, r], 1) + 1)
    np.testing.assert_array_equal(batch["actions"].numpy(), r.astype(np.int64) % 2)


def test_replay_buffer_samples_uniformly():
    buffer = ReplayBuffer(capacity=10, obs_dim=2)
    _add(buffer, list(range(10)))
    counts = np.bincount(_sampled_rewards(buffer, 50_000).astype(int), minlength=10)
    # each count is Binomial(50000, 0.1): sd 67, so +-400 is six standard deviations
    assert np.abs(counts - 5000).max() < 400, counts


def test_replay_buffer_state_round_trip():
    buffer = ReplayBuffer(capacity=4, obs_dim=2)
    _add(buffer, [1, 2, 3, 4, 5])
    copy = ReplayBuffer(capacity=4, obs_dim=2)
    copy.load_state_dict(buffer.state_dict())
    np.testing.assert_array_equal(_sampled_rewards(copy, 64, seed=3), _sampled_rewards(buffer, 64, seed=3))
    _add(buffer, [6])
    _add(copy, [6])  # both overwrite the same (oldest) slot
    np.testing.assert_array_equal(_sampled_rewards(copy, 64, seed=4), _sampled_rewards(buffer, 64, seed=4))


def test_linear_epsilon():
    kw = dict(total=1000, initial=1.0, final=0.1, fraction=0.2)
    assert linear_epsilon(0, **kw) == pytest.approx(1.0)
    assert linear_epsilon(100, **kw) == pytest.approx(0.55)  # half way through the decay
    assert linear_epsilon(200, **kw) == pytest.approx(0.1)
    assert linear_epsilon(900, **kw) == pytest.approx(0.1)


@pytest.mark.slow
def test_dqn_solves_cartpole_with_its_tuned_config(tmp_path):
    run = train_run(tmp_path / "run", "agent=dqn", "env=CartPole", "seed=0")
    summary = read_json(run / "summary.json")
    assert summary["total_steps"] == tuned_file("dqn", "CartPole")["total_steps"]  # the tuned budget
    # DQN's evaluations swing between checkpoints; the claim is that it reaches the threshold
    assert max(eval_means(run)) >= 475, eval_means(run)
    assert summary["solved_at_step"] is not None


def test_gradient_steps_minus_one_trains_as_many_steps_as_one_phase_collects(tmp_path):
    """SB3's gradient_steps=-1: each training phase makes as many gradient steps as env steps it
    collected (train_freq per env), also the first one after learning_starts (not the ~learning_starts
    steps collected before it)."""
    from rlgen.compose import load_config
    from rlgen.trainer import build_agent, train

    cfg = load_config(["agent=dqn", "env=CartPole", "total_steps=200", "eval_every=0", "eval_episodes=1",
                       "agent.learning_starts=100", "agent.train_freq=4", "agent.gradient_steps=-1",
                       f"run_dir={tmp_path}", "progress=false"])
    train(cfg)
    agent = build_agent(cfg)
    agent.load(tmp_path / "checkpoint")
    phases = len(range(104, 201, 4))  # every 4th step past learning_starts
    assert agent.n_updates == 4 * phases
