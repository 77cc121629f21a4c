"""rlgen.evaluate's settings reach the evaluation, the checkpoint loader and evaluation.json."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import assert_user_error

from rlgen import evaluate
from rlgen.config import EnvConfig


class PushLeft:
    """An agent that always pushes the cart left, and records how it was loaded."""

    one_hot = False
    num_steps = 123

    def __init__(self, checkpoint_exists: bool = True):
        self.loads: list[tuple[Path, bool]] = []
        self.checkpoint_exists = checkpoint_exists

    def load(self, path: Path, trust: bool = False) -> None:
        if not self.checkpoint_exists:
            raise FileNotFoundError(path)
        self.loads.append((path, trust))

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.zeros(len(obs), dtype=np.int64)

    def episode_policy(self, deterministic: bool = True):
        return lambda obs: self.act(obs, deterministic)


@pytest.fixture
def run(monkeypatch, capsys, tmp_path):
    """evaluate.main on a run directory whose config and agent are stand-ins; returns (exit, agent)."""
    cfg = SimpleNamespace(env=EnvConfig(name="CartPole", id="CartPole-v1"), agent=SimpleNamespace(name="push_left"))

    def call(*argv: str, agent: PushLeft | None = None):
        agent = agent or PushLeft()
        monkeypatch.setattr("rlgen.trainer.load_run_config", lambda run_dir: cfg)
        monkeypatch.setattr("rlgen.trainer.build_agent", lambda cfg: agent)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            evaluate.main([f"run={tmp_path}", *argv])
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=exit_.value.code, stdout=captured.out, stderr=captured.err), agent

    return call


def test_settings_reach_the_evaluation_and_the_loader(run, tmp_path):
    out, agent = run("episodes=3", "seed=5", "deterministic=false", "trust_checkpoint=true")
    assert out.returncode == 0 and out.stderr == ""
    assert agent.loads == [(tmp_path / "checkpoint", True)]
    result = json.loads((tmp_path / "evaluation.json").read_text())
    assert result["episodes"] == 3 and result["seed"] == 5 and result["deterministic"] is False
    assert result["checkpoint_step"] == 123 and 8 <= result["mean_return"] <= 11  # always left: falls at once
    assert result["checkpoint"] == "last"
    assert "push_left on CartPole-v1 (checkpoint at step 123)" in out.stdout


def test_a_checkpoint_is_not_trusted_unless_asked(run, tmp_path):
    out, agent = run("episodes=1")
    assert out.returncode == 0 and agent.loads == [(tmp_path / "checkpoint", False)]


def test_a_run_without_a_checkpoint_is_one_line(run, tmp_path):
    out, _ = run(agent=PushLeft(checkpoint_exists=False))
    assert_user_error(out, f"{tmp_path} has no checkpoint yet")


def test_checkpoint_best_loads_the_best_evaluations_checkpoint(run, tmp_path):
    out, agent = run("episodes=1", "checkpoint=best")
    assert out.returncode == 0 and agent.loads == [(tmp_path / "checkpoint_best", False)]
    result = json.loads((tmp_path / "evaluation.json").read_text())
    assert (result["checkpoint"], result["checkpoint_step"]) == ("best", 123)
    assert "push_left on CartPole-v1 (best checkpoint at step 123)" in out.stdout


def test_a_run_without_a_best_checkpoint_is_one_line(run, tmp_path):
    out, _ = run("checkpoint=best", agent=PushLeft(checkpoint_exists=False))
    assert_user_error(out, f"{tmp_path} has no best checkpoint", "use checkpoint=last")
