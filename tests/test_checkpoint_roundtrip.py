"""Every registered agent's checkpoint round-trips: trained a little, saved, loaded into a fresh agent,
the two state_dicts are equal exactly and share no memory; state a checkpoint used to lose is kept."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from expert_demos import demonstrations_file
from state_compare import assert_no_shared_memory, assert_same
from tabular_run import LocalRun

from rlgen.agents import AGENTS, agent_class
from rlgen.compose import load_config
from rlgen.demos import Demonstrations
from rlgen.run import Run
from rlgen.trainer import build_agent, start_foundation, train

DEEP = ("env=CartPole", "total_steps=256", "agent.n_envs=2")
DQN_LIKE = (*DEEP, "agent.learning_starts=64", "agent.buffer_size=500", "agent.batch_size=16",
            "agent.target_update_interval=50")
PPO_LIKE = (*DEEP, "agent.n_steps=64", "agent.batch_size=32", "agent.n_epochs=2")
GRID = ("env=GridWorld4x4", "total_steps=400")
SWEEPS = ("env=GridWorld4x4", "total_steps=3")
BANDIT = ("env=Bandit10", "total_steps=50")
RLHF = ("env=TextPreference", "total_steps=40", "agent.sft.steps=3", "agent.corpus.n_reviews=200",
        "agent.reward_model.n_pairs=32", "agent.reward_model.n_eval_pairs=16", "agent.reward_model.epochs=1",
        "agent.bon_prompts=2", "agent.bon_samples=4", "agent.n_eval_prompts=8", "agent.ppo.batch_size=8",
        "agent.ppo.minibatch_size=4", "agent.ppo.n_epochs=1")
IMITATION = ("env=Avoid", "total_steps=20", "agent.n_trajectories=3", "agent.batch_size=8")
LM = tuple(o for o in RLHF if not o.startswith(("agent.ppo.", "total_steps=")))
DIRECT = (*LM, "total_steps=3", "agent.batch_size=8", "agent.monitor_every=1", "agent.monitor_samples=4")
GROUP = (*LM, "total_steps=40", "agent.batch_size=8", "agent.group_size=4", "agent.minibatch_size=4",
         "agent.n_epochs=1")

SETTINGS = {
    "ppo": PPO_LIKE, "sb3_ppo": PPO_LIKE, "sb3_maskable_ppo": PPO_LIKE, "sb3_a2c": (*DEEP, "agent.n_steps=8"),
    "a2c": (*DEEP, "agent.n_steps=8", "agent.normalize_obs=true", "agent.normalize_reward=true"),
    "reinforce": (*DEEP, "agent.n_steps=32"),
    "dqn": DQN_LIKE, "sb3_dqn": DQN_LIKE, "sql": DQN_LIKE,
    "policy_evaluation": SWEEPS, "policy_iteration": SWEEPS, "value_iteration": SWEEPS,
    "soft_value_iteration": SWEEPS,
    "epsilon_greedy": BANDIT, "ucb": BANDIT, "gradient_bandit": BANDIT, "thompson_sampling": BANDIT,
    "rlhf": RLHF, "bc": IMITATION, "mdn": IMITATION,
    "ibc": (*IMITATION, "agent.n_counter_examples=4", "agent.dfo_samples=16"),
    "diffusion": (*IMITATION, "agent.diffusion_steps=10", "agent.horizon=2"),
    "gail": (*PPO_LIKE, "agent.disc_batch_size=32"),
    "dppo": ("env=Avoid", "total_steps=64", "agent.n_envs=2", "agent.n_steps=16", "agent.batch_size=8",
             "agent.n_epochs=1", "agent.ft_denoising_steps=3"),
    "dpo": DIRECT, "ipo": DIRECT, "kto": DIRECT, "grpo": GROUP, "rloo": GROUP,
}
LANGUAGE_MODELS = ("rlhf", "dpo", "ipo", "kto", "grpo", "rloo")
FOUNDATIONS = {"init": ("agent=diffusion", *IMITATION, "agent.diffusion_steps=10", "agent.sampling_steps=5")}
"""the run an agent that builds on one (Agent.builds_on) is handed, by its setting"""


def test_every_registered_agent_has_settings_here():
    tabular = {"mc_prediction", "mc_control", "mc_exploring_starts", "mc_off_policy", "td_prediction", "sarsa",
               "expected_sarsa", "q_learning", "double_q_learning", "soft_q_learning"}
    assert set(AGENTS) == set(SETTINGS) | tabular


def trained(name: str, run_dir: Path):
    """The agent `name` after a tiny run through the real Run (no evaluation before the end)."""
    cfg = load_config([f"agent={name}", *SETTINGS.get(name, GRID), f"run_dir={run_dir}", "progress=false",
                       "eval_every=0", "eval_episodes=1", f"agent.cache_dir={run_dir.parent / 'cache'}"]
                      if name in LANGUAGE_MODELS else
                      [f"agent={name}", *SETTINGS.get(name, GRID), f"run_dir={run_dir}", "progress=false",
                       "eval_every=0", "eval_episodes=1"])
    run_dir.mkdir(parents=True)
    agent = build_agent(cfg)
    if agent.builds_on is not None and agent.needs_foundation():
        key, start = agent.builds_on[0], run_dir.parent / "foundation"
        if key == "expert":
            agent.start_from(Demonstrations.load(demonstrations_file(run_dir.parent)))
        else:
            train(load_config([*FOUNDATIONS[key], f"run_dir={start}", "progress=false", "eval_every=0",
                               "eval_episodes=1"]))
            start_foundation(replace(cfg, **{key: str(start)}), agent)
    run = Run(cfg, run_dir, agent)
    try:
        agent.learn(cfg.total_steps, run)
    finally:
        run.close()
    return agent, cfg


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_a_checkpoint_restores_the_agent_exactly_and_aliases_nothing(name, tmp_path):
    agent, cfg = trained(name, tmp_path / "run")
    assert agent.num_steps > 0
    agent.save(tmp_path / "checkpoint")
    fresh = build_agent(cfg)
    fresh.load(tmp_path / "checkpoint")
    state, restored = agent.state_dict(), fresh.state_dict()
    assert_same(state, restored)
    assert_no_shared_memory(state, restored)
    other = build_agent(cfg)
    other.load_state_dict(state)  # in memory too, a loaded agent keeps none of the caller's arrays
    assert_no_shared_memory(state, other.state_dict())


@pytest.mark.parametrize("name", ["q_learning", "double_q_learning", "mc_off_policy", "ucb", "thompson_sampling"])
def test_a_tabular_state_dict_is_a_copy(name, tmp_path):
    agent, _ = trained(name, tmp_path / "run")
    assert_no_shared_memory(agent.state_dict(), agent.state_dict())


# -- state that checkpoints used to lose ------------------------------------------------------------------


def _mc_prediction():
    run = LocalRun("rlgen/GridWorld4x4-v0")
    env = run.make_env()
    cls = agent_class("mc_prediction")
    return cls(env.observation_space, env.action_space, cls.Config(), 0)


def test_mc_prediction_keeps_its_visit_counts_across_a_resume(tmp_path):
    """Nine returns of 0 then one of 1 average to 0.1, whether or not the run was resumed between."""
    uninterrupted = _mc_prediction()
    for _ in range(9):
        uninterrupted.update([5], [0], np.array([0.0]))
    uninterrupted.save(tmp_path / "checkpoint")
    resumed = _mc_prediction()
    resumed.load(tmp_path / "checkpoint")
    for agent in (uninterrupted, resumed):
        agent.update([5], [0], np.array([1.0]))
        assert agent.V[5] == pytest.approx(0.1)
    assert resumed.v_counts[5] == 10


def test_sb3_dqn_resumes_with_its_buffer_counters_and_exploration(tmp_path):
    agent, cfg = trained("sb3_dqn", tmp_path / "run")
    agent.save(tmp_path / "checkpoint")
    fresh = build_agent(cfg)
    fresh.load(tmp_path / "checkpoint")
    a, b = agent.model, fresh.model
    assert b.num_timesteps == a.num_timesteps == agent.num_steps and b._n_updates == a._n_updates > 0
    assert (b.exploration_rate, b._n_calls, b._episode_num) == (a.exploration_rate, a._n_calls, a._episode_num)
    assert (b.replay_buffer.pos, b.replay_buffer.full) == (a.replay_buffer.pos, a.replay_buffer.full)
    np.testing.assert_array_equal(b.replay_buffer.observations, a.replay_buffer.observations)
    for p, q in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
