"""The README's tabular commands through the CLI, with small budgets: each run directory holds the
contract's files and the tabular artifacts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

COMMANDS = {
    "value_iteration": (["agent=value_iteration", "env=GridWorld4x4"], (16,), True),
    "policy_evaluation": (["agent=policy_evaluation", "env=GridWorld4x4", "agent.policy=uniform"], (16,), True),
    "sarsa": (["agent=sarsa", "env=CliffWalking", "agent.epsilon=0.1", "agent.alpha=0.5", "total_steps=3000",
               "eval_every=1000"], (48,), True),
    "q_learning": (["agent=q_learning", "env=CliffWalking", "total_steps=3000"], (48,), True),
    "mc_control": (["agent=mc_control", "env=Blackjack-v1", "total_steps=2000"], (704,), False),
    "ucb": (["agent=ucb", "env=Bandit10", "total_steps=2000"], (1,), False),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_cli_run_writes_the_tabular_artifacts(name, tmp_path):
    args, v_shape, picture = COMMANDS[name]
    out = subprocess.run([sys.executable, "-m", "rlgen.train", *args, f"run_dir={tmp_path}", "progress=false"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for f in ("config.yaml", "summary.json", "episodes.csv", "eval.csv", "progress.csv", "values.npy",
              "q_values.npy", "policy.npy", "checkpoint.json"):
        assert (tmp_path / f).is_file(), f
    assert (tmp_path / "values.png").is_file() == picture
    v, q, pi = (np.load(tmp_path / f) for f in ("values.npy", "q_values.npy", "policy.npy"))
    assert v.shape == v_shape and q.shape[0] == pi.shape[0] == v_shape[0] and q.shape == pi.shape
    np.testing.assert_allclose(pi.sum(axis=1), 1.0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["eval_mean_return"] is not None
    if name == "value_iteration":  # greedy from uniform starts: -(mean distance to a corner) = -1.6..-2
        assert summary["eval_mean_return"] > -3 and summary["total_steps"] < 10
    if name == "policy_evaluation":
        np.testing.assert_allclose(v.reshape(4, 4)[0], [0, -14, -20, -22], atol=1e-6)


def test_prediction_agent_writes_no_q_values(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rlgen.train", "agent=td_prediction", "env=RandomWalk5",
                          "total_steps=500", f"run_dir={tmp_path}", "progress=false"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "values.npy").is_file() and not (tmp_path / "q_values.npy").exists()
    assert (tmp_path / "values.png").is_file()
