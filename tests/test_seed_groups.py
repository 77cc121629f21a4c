"""Seeds trained as a group (python -m rlgen.train seeds=S): each member learns as its single run does."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlgen.agents.ppo import PPO, PPOConfig
from rlgen.agents.ppo_stacked import train_stacked
from rlgen.nets.optim import FlatAdam
from rlgen.nets.stack import Stack


def _batch(rng: np.random.Generator, n: int, obs_dim: int, act: gym.Space) -> dict[str, np.ndarray]:
    actions = (rng.integers(0, act.n, n) if isinstance(act, gym.spaces.Discrete)
               else rng.standard_normal((n, act.shape[0])))
    return {"obs": rng.standard_normal((n, obs_dim)).astype(np.float32),
            "actions": np.asarray(actions, dtype=np.float32),
            "logp": (rng.standard_normal(n) * 0.1 - 0.7).astype(np.float32),
            "values": rng.standard_normal(n).astype(np.float32),
            "advantages": rng.standard_normal(n).astype(np.float32),
            "returns": rng.standard_normal(n).astype(np.float32)}


@pytest.mark.parametrize("action_space, overrides, counts", [
    (gym.spaces.Discrete(2), {}, [256, 250, 131, 256]),  # one minibatch each: a rollout of n_steps x n_envs
    (gym.spaces.Discrete(3), {"batch_size": 64, "n_epochs": 3}, [256, 200, 129, 65]),  # shuffled, ragged
    (gym.spaces.Box(-1, 1, (2,)), {"batch_size": 64, "n_epochs": 2, "clip_range_vf": 0.2, "ent_coef": 0.01},
     [256, 190, 256]),
    (gym.spaces.Discrete(2), {"batch_size": 64, "n_epochs": 10, "target_kl": 0.02, "learning_rate": 0.003},
     [256, 256, 180]),
])
def test_stacked_update_equals_each_members_own(action_space, overrides, counts):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,))
    config = PPOConfig(n_envs=8, n_steps=32, **{"batch_size": 256, "n_epochs": 4} | overrides)
    rng = np.random.default_rng(0)
    batches = [_batch(rng, n, 4, action_space) for n in counts]
    group = [PPO(obs_space, action_space, config, seed) for seed in range(len(counts))]
    alone = [PPO(obs_space, action_space, config, seed) for seed in range(len(counts))]
    for agent, batch in zip(alone, batches, strict=True):  # sampled by the policy itself: KL starts at 0
        with torch.no_grad():
            logp, _, _ = agent.evaluate_actions(torch.from_numpy(batch["obs"]), torch.from_numpy(batch["actions"]))
        batch["logp"] = logp.numpy()
    expected = [a.train(b, 0.7) for a, b in zip(alone, batches, strict=True)]
    got = train_stacked(group, batches, config.learning_rate, config.clip_range)  # constant schedules
    for a, b, e, g in zip(alone, group, expected, got, strict=True):
        torch.testing.assert_close(b.optimizer.data, a.optimizer.data, rtol=0, atol=1e-6)
        torch.testing.assert_close(b.optimizer.exp_avg_sq, a.optimizer.exp_avg_sq, rtol=1e-4, atol=1e-9)
        assert b.optimizer.steps == a.optimizer.steps and b.n_updates == a.n_updates
        assert b.rng.bit_generator.state == a.rng.bit_generator.state  # the same minibatches were drawn
        assert g.keys() == e.keys()
        for key in e:
            assert g[key] == pytest.approx(e[key], rel=1e-4, abs=1e-6), key
    if overrides.get("target_kl"):
        assert len({a.n_updates for a in alone}) > 1  # the members stopped at different steps


def test_stack_step_leaves_waiting_members_alone():
    nets = [torch.nn.Linear(3, 2) for _ in range(3)]
    opts = [FlatAdam(n.parameters(), lr=0.1) for n in nets]
    before = [o.data.clone() for o in opts]
    stack = Stack(opts)
    stack.grad.normal_()
    stack.step(torch.tensor([True, False, True]))
    stack.store()
    assert torch.equal(opts[1].data, before[1]) and opts[1].steps == 0
    assert not torch.equal(opts[0].data, before[0]) and opts[0].steps == 1


@pytest.mark.parametrize("vectorization, episodes", [
    ("sync", 6),
    ("auto", 6),  # CartPole's own vector env for 4 or more copies: one per policy
    ("auto", 2),  # copies of the single env for each alone: so together, though 6 would make its own
])
def test_evaluations_made_together_equal_each_made_alone(vectorization, episodes):
    from rlgen.config import EnvConfig
    from rlgen.evaluation import evaluate_episodes, evaluate_together

    env = EnvConfig(name="CartPole", id="CartPole-v1", vectorization=vectorization)
    calls: dict[int, int] = {}

    def policy(k: int):
        w = np.random.default_rng(k).standard_normal(4)

        def act(obs: np.ndarray) -> np.ndarray:
            calls[k] = calls.get(k, 0) + 1
            return (np.asarray(obs) @ w > 0).astype(np.int64)  # a linear policy: episodes of many lengths

        return act

    seeds = [0, 7, 3]
    together = evaluate_together([policy(k) for k in range(3)], env, episodes, seeds)
    called_together, calls = dict(calls), {}
    alone = [evaluate_episodes(policy(k), env, episodes, seed) for k, seed in enumerate(seeds)]
    assert called_together == calls  # each policy acted as often as alone
    for t, a in zip(together, alone, strict=True):
        np.testing.assert_array_equal(t.returns, a.returns)
        np.testing.assert_array_equal(t.lengths, a.lengths)
    assert len({int(n) for a in alone for n in a.lengths}) > 2  # episodes of several lengths: a real check


@pytest.mark.parametrize("agent", ["dqn", "sql"])
def test_a_dqn_group_member_is_its_single_run_exactly(tmp_path, agent):
    from rlgen.checkpoint import load_state
    from rlgen.compose import load_config
    from rlgen.seed_groups import train_seeds

    common = [f"agent={agent}", "env=Acrobot", "total_steps=1200", "eval_every=600", "eval_episodes=3",
              "progress=false", "agent.learning_starts=300", "agent.train_freq=4", "agent.gradient_steps=2",
              "agent.net_arch=[32]", "agent.batch_size=16"]
    group = train_seeds(load_config([*common, "seed=4", "seeds=2", f"run_dir={tmp_path / 'group'}"]))
    assert [o.summary["status"] for o in group] == ["completed", "completed"]
    alone = train_seeds(load_config([*common, "seed=5", f"run_dir={tmp_path / 'alone'}"]))[0]
    member = tmp_path / "group" / "seed5"
    assert (member / "eval.csv").read_text() == (alone.run_dir / "eval.csv").read_text()
    assert (member / "episodes.csv").read_text() == (alone.run_dir / "episodes.csv").read_text()
    ours, theirs = load_state(member / "checkpoint"), load_state(alone.run_dir / "checkpoint")
    for key in ("q_net", "q_target"):
        for name, value in theirs[key].items():
            assert torch.equal(ours[key][name], value), (key, name)
