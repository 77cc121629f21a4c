"""The Stable-Baselines3 adapters are treated as rlgen's own agents are: a resumed run continues its
training envs where they stopped (the same episodes from the same env seeds), and normalisation is
VecNormalize's with the agent's settings, saved in the checkpoint and used whenever the agent acts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import cli, read_csv, train_run


def test_a_resumed_sb3_run_continues_the_same_episodes(tmp_path):
    """Random actions only (before learning_starts), so an uninterrupted run and one stopped at step 1000
    and resumed see the same episodes exactly when the envs, their generators and the action space's
    generator continue as they were; a resumed run given a new env seed would not."""
    setup = ("agent=sb3_dqn", "env=CartPole", "agent.learning_starts=100000", "eval_every=500", "eval_episodes=2")
    whole = train_run(tmp_path / "whole", *setup, "total_steps=3000")
    cut = train_run(tmp_path / "cut", *setup, "total_steps=1000")
    out = cli(f"resume={cut}", "total_steps=3000", "progress=false")
    assert out.returncode == 0, out.stderr
    _, expected = read_csv(whole / "episodes.csv")
    _, got = read_csv(cut / "episodes.csv")
    assert len(expected) > 100 and any(int(r["step"]) > 1000 for r in expected)
    assert got == expected


def test_a_normalised_sb3_run_acts_on_its_saved_statistics(tmp_path):
    """VecNormalize's statistics are saved in the checkpoint: the reloaded agent's evaluation, with the
    seed and episodes of the run's own last one, equals the evaluation it logged."""
    run = train_run(tmp_path / "run", "agent=sb3_ppo", "env=CartPole", "total_steps=2048", "eval_every=1024",
                    "eval_episodes=3", "agent.n_envs=2", "agent.n_steps=256", "agent.normalize_obs=true",
                    "agent.normalize_reward=true")
    _, logged = read_csv(run / "eval.csv")
    out = subprocess.run([sys.executable, "-m", "rlgen.evaluate", f"run={run}", "episodes=3", "seed=0"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads((run / "evaluation.json").read_text())
    assert abs(result["mean_return"] - float(logged[-1]["mean_return"])) < 1e-9


@pytest.mark.parametrize(("ours", "theirs", "setup"), [
    ("ppo", "sb3_ppo", ("agent.n_envs=2", "agent.n_steps=64", "agent.batch_size=64", "agent.n_epochs=1")),
    ("a2c", "sb3_a2c", ("agent.n_envs=2", "agent.n_steps=64")),
    ("dqn", "sb3_dqn", ("agent.learning_starts=100",)),
])
def test_sb3_evaluates_where_rlgen_does(ours, theirs, setup, tmp_path):
    """The same evaluation steps on both sides of a comparison: an on-policy pair's after the update that
    ends the first rollout past each evaluation due (128-step rollouts, an evaluation due every 200 steps),
    so neither side is judged on a policy a rollout older; an off-policy pair's at the step it is due."""
    grids = []
    for agent in (ours, theirs):
        run = train_run(tmp_path / agent, f"agent={agent}", "env=CartPole", *setup, "total_steps=1024",
                        "eval_every=200", "eval_episodes=1")
        grids.append([int(r["step"]) for r in read_csv(run / "eval.csv")[1]])
    assert grids[0] == grids[1]
    assert grids[0] == ([256, 512, 640, 896, 1024] if ours != "dqn" else [200, 400, 600, 800, 1000, 1024])
