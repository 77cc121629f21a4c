"""Every registered agent: a run interrupted halfway and resumed ends exactly where the same run
ends uninterrupted (evaluations, episodes, learned tables and weights; for the SB3 adapters, the same
budget and evaluation grid), and a loaded agent shares no memory with the one that was saved."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import stop_at
from expert_demos import demonstrations_file

from rlgen.agents import AGENTS, agent_class
from rlgen.compose import load_config
from rlgen.trainer import build_agent, train

COMMON = ("progress=false", "eval_episodes=2")
TINY_RLHF = ("agent.sft.steps=30", "agent.reward_model.n_pairs=64", "agent.reward_model.n_eval_pairs=32",
             "agent.reward_model.epochs=1", "agent.ppo.batch_size=16", "agent.n_eval_prompts=16",
             "agent.bon_prompts=2", "agent.bon_samples=4")
TINY_LM = tuple(o for o in TINY_RLHF if not o.startswith("agent.ppo."))
TINY_DIRECT = ("agent.batch_size=16", "agent.monitor_every=1", "agent.monitor_samples=8")
TINY_GROUP = ("agent.batch_size=16", "agent.group_size=4", "agent.minibatch_size=8", "agent.n_epochs=2")
SETUPS: dict[str, tuple[str, ...]] = {
    "ppo": ("env=CartPole", "total_steps=2048", "eval_every=512", "agent.n_steps=64", "agent.n_envs=4"),
    "dqn": ("env=CartPole", "total_steps=1200", "eval_every=300", "agent.learning_starts=200",
            "agent.gradient_steps=4", "agent.target_update_interval=100"),
    "sql": ("env=CartPole", "total_steps=1200", "eval_every=300", "agent.learning_starts=200",
            "agent.gradient_steps=4", "agent.auto_ent_coef=true"),
    "sb3_ppo": ("env=CartPole", "total_steps=1024", "eval_every=256", "agent.n_steps=64", "agent.n_envs=2",
                "agent.batch_size=64"),
    "sb3_maskable_ppo": ("env=MaskedGridWorld", "total_steps=1024", "eval_every=256", "agent.n_steps=64",
                         "agent.n_envs=2", "agent.batch_size=64"),
    "sb3_dqn": ("env=CartPole", "total_steps=1200", "eval_every=300", "agent.learning_starts=200"),
    "sb3_a2c": ("env=CartPole", "total_steps=1000", "eval_every=250"),
    "a2c": ("env=CartPole", "total_steps=1200", "eval_every=300", "agent.n_envs=4", "agent.normalize_obs=true",
            "agent.normalize_reward=true"),
    "reinforce": ("env=CartPole", "total_steps=2048", "eval_every=512", "agent.n_steps=32", "agent.n_envs=4"),
    "policy_evaluation": ("env=GridWorld4x4", "total_steps=40", "eval_every=10"),
    "policy_iteration": ("env=GridWorld4x4", "total_steps=4", "eval_every=1", "agent.evaluation=sweeps"),
    "value_iteration": ("env=CliffWalking", "total_steps=12", "eval_every=3", "agent.tol=0"),
    "soft_value_iteration": ("env=FrozenLake-v1", "total_steps=40", "eval_every=10", "agent.tol=0"),
    "mc_prediction": ("env=RandomWalk5", "total_steps=400", "eval_every=100"),
    "mc_control": ("env=CliffWalking", "total_steps=4000", "eval_every=1000"),
    "mc_exploring_starts": ("env=GridWorld4x4", "total_steps=2000", "eval_every=500"),
    "mc_off_policy": ("env=CliffWalking", "total_steps=4000", "eval_every=1000"),
    "td_prediction": ("env=RandomWalk19", "total_steps=1000", "eval_every=250", "agent.n=3"),
    "sarsa": ("env=CliffWalking", "total_steps=2000", "eval_every=500"),
    "expected_sarsa": ("env=CliffWalking", "total_steps=2000", "eval_every=500"),
    "q_learning": ("env=CliffWalking", "total_steps=2000", "eval_every=500"),
    "double_q_learning": ("env=CliffWalking", "total_steps=2000", "eval_every=500"),
    "soft_q_learning": ("env=FrozenLake-v1", "total_steps=2000", "eval_every=500", "agent.epsilon=0.3"),
    "epsilon_greedy": ("env=Bandit10", "total_steps=3000", "eval_every=1000"),
    "ucb": ("env=Bandit10", "total_steps=3000", "eval_every=1000"),
    "gradient_bandit": ("env=Bandit10", "total_steps=3000", "eval_every=1000"),
    "thompson_sampling": ("env=Bandit10", "total_steps=3000", "eval_every=1000"),
    "rlhf": ("env=TextPreference", "total_steps=1500", "eval_every=500", *TINY_RLHF),
    "bc": ("env=Particle", "total_steps=300", "eval_every=100", "agent.n_trajectories=10", "agent.batch_size=32"),
    "mdn": ("env=Avoid", "total_steps=300", "eval_every=100", "agent.n_trajectories=10", "agent.batch_size=32"),
    "ibc": ("env=Avoid", "total_steps=60", "eval_every=20", "agent.n_trajectories=10", "agent.batch_size=16",
            "agent.inference=langevin", "agent.langevin_steps=3", "agent.langevin_samples=8"),
    "diffusion": ("env=Avoid", "total_steps=300", "eval_every=100", "agent.n_trajectories=10", "agent.batch_size=32",
                  "agent.diffusion_steps=20", "agent.sampler=ddpm", "agent.horizon=3", "agent.execute=2"),
    "dppo": ("env=Avoid", "total_steps=256", "eval_every=128", "agent.n_envs=2", "agent.n_steps=32",
             "agent.batch_size=16", "agent.n_epochs=2", "agent.ft_denoising_steps=3", "agent.critic_warmup=1"),
    # direct alignment counts gradient steps; grpo and rloo count generated tokens, as rlhf does
    "gail": ("env=CartPole", "total_steps=2048", "eval_every=512", "agent.n_steps=64", "agent.n_envs=4",
             "agent.disc_batch_size=64", "agent.grad_penalty=1"),
    "dpo": ("env=TextPreference", "total_steps=12", "eval_every=4", *TINY_LM, *TINY_DIRECT),
    "ipo": ("env=TextPreference", "total_steps=12", "eval_every=4", *TINY_LM, *TINY_DIRECT),
    "kto": ("env=TextPreference", "total_steps=12", "eval_every=4", *TINY_LM, *TINY_DIRECT),
    "grpo": ("env=TextPreference", "total_steps=1200", "eval_every=400", *TINY_LM, *TINY_GROUP),
    "rloo": ("env=TextPreference", "total_steps=1200", "eval_every=400", *TINY_LM, *TINY_GROUP),
}
LANGUAGE_MODELS = ("rlhf", "dpo", "ipo", "kto", "grpo", "rloo")
FOUNDATIONS = {"init": ("agent=diffusion", "env=Avoid", "total_steps=30", "agent.n_trajectories=3",
                        "agent.batch_size=16", "agent.diffusion_steps=20", "agent.sampling_steps=5", "agent.horizon=2")}
"""the run an agent that builds on one (Agent.builds_on) is handed, by its setting: trained once per test"""


def test_every_registered_agent_has_a_setup():
    assert sorted(SETUPS) == sorted(AGENTS)


def _config(agent: str, run_dir: Path):
    # the language models' SFT model and labels are cached beside the runs, not in the user's cache
    cache = (f"agent.cache_dir={run_dir.parent / 'cache'}",) if agent in LANGUAGE_MODELS else ()
    return load_config([f"agent={agent}", *SETUPS[agent], *COMMON, f"run_dir={run_dir}", *cache,
                        *_foundation(agent, run_dir.parent)])


def _foundation(agent: str, root: Path) -> tuple[str, ...]:
    """init= or expert= for an agent that must be handed a trained run (Agent.builds_on): a tiny diffusion
    run trained on first use, or a small demonstrations file (the imitation agents have a scripted expert)."""
    builds_on = agent_class(agent).builds_on
    if builds_on is None or agent_class(agent).learns_from_expert and builds_on[0] == "expert":
        return ()
    key = builds_on[0]
    if key == "expert":
        return (f"expert={demonstrations_file(root)}",)
    if not (root / key / "summary.json").exists():
        train(load_config([*FOUNDATIONS[key], *COMMON, f"run_dir={root / key}"]))
    return (f"{key}={root / key}",)


def assert_same_state(a, b, path: str = "state") -> None:
    """Two nested states are equal: arrays and tensors exactly, everything else by ==."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(map(str, a)) == sorted(map(str, b)), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray | torch.Tensor):
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), path
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), path
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


TIMINGS = ("wall_seconds", "cpu_seconds", "stage_seconds", "seconds", "cached", "t_start", "episode_times")
"""keys that differ between equal runs: times (SB3's Monitor's clock among them), and whether a stage came
from a cache the first run filled"""


def _without_timings(state):
    if isinstance(state, dict):
        return {k: _without_timings(v) for k, v in state.items() if not any(t in str(k) for t in TIMINGS)}
    if isinstance(state, list | tuple):
        return type(state)(_without_timings(v) for v in state)
    return state


@pytest.mark.parametrize("agent", sorted(SETUPS))
def test_an_interrupted_and_resumed_run_ends_where_the_uninterrupted_run_ends(agent, tmp_path, monkeypatch):
    whole = _config(agent, tmp_path / "whole")
    summary_whole, _ = train(whole)
    assert summary_whole["status"] == "completed"

    halted = _config(agent, tmp_path / "halted")
    with monkeypatch.context() as m:
        stop_at(m, halted.total_steps // 2)
        summary_halted, _ = train(halted)
    assert summary_halted["status"] == "interrupted"
    assert 0 < summary_halted["total_steps"] < halted.total_steps
    summary_resumed, _ = train(replace(halted, resume=str(tmp_path / "halted"), run_dir=None))
    assert summary_resumed["status"] == "completed"

    for name in ("eval.csv", "episodes.csv"):
        assert (tmp_path / "halted" / name).read_text() == (tmp_path / "whole" / name).read_text(), name
    assert summary_resumed["total_steps"] == summary_whole["total_steps"]
    assert summary_resumed["eval_mean_return"] == summary_whole["eval_mean_return"]
    assert_same_state(_without_timings(_saved(whole, tmp_path / "halted")),
                      _without_timings(_saved(whole, tmp_path / "whole")))
    for table in ("values.npy", "q_values.npy", "policy.npy"):
        if (tmp_path / "whole" / table).exists():
            assert np.array_equal(np.load(tmp_path / "halted" / table), np.load(tmp_path / "whole" / table)), table


@pytest.mark.parametrize("agent", ["ppo", "dqn", "q_learning", "mc_prediction", "value_iteration"])
def test_a_loaded_agent_shares_no_memory_with_the_saved_one(agent, tmp_path):
    cfg = _config(agent, tmp_path / "run")
    train(cfg)
    saved = build_agent(cfg)
    saved.load(tmp_path / "run" / "checkpoint")
    saved.save(tmp_path / "copy")
    loaded = build_agent(cfg)
    loaded.load(tmp_path / "copy")
    assert_same_state(loaded.state_dict(), saved.state_dict())
    for x in _arrays(saved.state_dict()):
        for y in _arrays(loaded.state_dict()):
            assert not np.shares_memory(x, y)


def _saved(cfg, run_dir: Path) -> dict:
    agent = build_agent(cfg)
    agent.load(run_dir / "checkpoint")
    return agent.state_dict()


def _arrays(state) -> list[np.ndarray]:
    if isinstance(state, dict):
        return [a for v in state.values() for a in _arrays(v)]
    if isinstance(state, list | tuple):
        return [a for v in state for a in _arrays(v)]
    if isinstance(state, torch.Tensor):
        return [state.detach().numpy()]
    return [state] if isinstance(state, np.ndarray) else []
