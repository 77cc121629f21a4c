"""Shared helpers: run the training CLI in a subprocess and read what a run directory holds."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

torch.set_num_threads(1)  # the machines running the suite are shared; small nets are fastest this way


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m rlgen.train *args`, on one torch thread, with its output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "rlgen.train", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )


def train_run(run_dir: Path, *overrides: str, timeout: float = 300) -> Path:
    """A training run into `run_dir` (no progress bar) that must succeed; returns the directory."""
    out = cli(*overrides, f"run_dir={run_dir}", "progress=false", timeout=timeout)
    assert out.returncode == 0, f"exit {out.returncode}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    return Path(run_dir)


def assert_user_error(out: Any, *fragments: str) -> str:
    """A user mistake: exit status 2 and exactly one line on stderr (no traceback) naming the fix."""
    assert out.returncode == 2, f"exit {out.returncode}\nstderr:\n{out.stderr}"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{out.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def tuned_file(agent: str, env: str) -> dict[str, Any]:
    """rlgen/conf/tuned/<agent>_<env>.yaml as written, for tests that check where its values go."""
    import rlgen

    return yaml.safe_load((Path(rlgen.__file__).parent / "conf" / "tuned" / f"{agent}_{env}.yaml").read_text())


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def eval_means(run_dir: Path) -> list[float]:
    return [float(r["mean_return"]) for r in read_csv(Path(run_dir) / "eval.csv")[1]]


def eval_steps(run_dir: Path) -> list[int]:
    return [int(r["step"]) for r in read_csv(Path(run_dir) / "eval.csv")[1]]


def stop_at(monkeypatch, step: int) -> None:
    """The first tick at or past `step` asks the run to stop, as Ctrl-C does."""
    from rlgen.run import Run

    original = Run.tick

    def tick(self, now: int, evaluation=None) -> bool:
        if now >= step:
            self.stop_requested = True
        return original(self, now, evaluation)

    monkeypatch.setattr(Run, "tick", tick)


class Exit:
    """What the CLI's entry point did when called in-process: exit status, stdout, stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def evaluate_in_process(capsys):
    """`python -m rlgen.evaluate` called in this process (see in_process)."""
    from rlgen.evaluate import main

    return in_process(main, capsys)


@pytest.fixture
def main_in_process(capsys):
    """Call rlgen.train's entry point in this process (no interpreter start-up, torch already loaded).
    An exception other than the CLI's own exit escapes and fails the test: that would be a traceback."""
    from rlgen.train import main

    return in_process(main, capsys)


def in_process(main, capsys):
    """A command's entry point called in this process: (*args) -> Exit (status, stdout, stderr)."""

    def call(*args: str) -> Exit:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(list(args))
        captured = capsys.readouterr()
        return Exit(int(exit_.value.code or 0), captured.out, captured.err)

    return call


@pytest.fixture
def poisoned_dqn(monkeypatch):
    """DQN whose weights become infinite at its first training phase past `after` steps, so that
    phase's loss is NaN: a divergence on demand (a learning rate large enough to cause one is refused
    as a user mistake)."""
    from rlgen.agents.dqn import DQN

    original = DQN.train

    def poison(after: int) -> None:
        def train(self, gradient_steps: int):
            if self.num_steps > after:
                with torch.no_grad():
                    for p in self.q_net.parameters():
                        p.fill_(float("inf"))
            return original(self, gradient_steps)

        monkeypatch.setattr(DQN, "train", train)

    return poison


def trained_on_step(agent: str, steps: int, *overrides: str):
    """A policy learned from demonstrations after `steps` gradient steps on Step's (fixed seeds)."""
    from rlgen.compose import load_config
    from rlgen.trainer import build_agent

    learner = build_agent(load_config([f"agent={agent}", "env=Step", *overrides]))
    learner.load_demos()
    for _ in range(steps):
        learner.fit_step()
        learner.num_steps += 1
    return learner


def spaces_venv(observation_space: Any, action_space: Any, n_envs: int) -> Any:
    """A DummyVecEnv of n_envs envs that only have these spaces: enough to build an SB3 model whose update
    is then fed by hand."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    class Spaces(gym.Env):
        def __init__(self) -> None:
            self.observation_space, self.action_space = observation_space, action_space

    return DummyVecEnv([Spaces] * n_envs)


def sb3_parameter_pairs(model: Any, agent: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(rlgen's, SB3's) for every parameter of a policy-gradient agent with [64, 64] layers and SB3's
    ActorCriticPolicy: SB3's mlp_extractor nets and heads are rlgen's actor and critic."""
    p = model.policy
    layers = [(agent.actor[0], p.mlp_extractor.policy_net[0]), (agent.actor[2], p.mlp_extractor.policy_net[2]),
              (agent.actor[4], p.action_net), (agent.critic[0], p.mlp_extractor.value_net[0]),
              (agent.critic[2], p.mlp_extractor.value_net[2]), (agent.critic[4], p.value_net)]
    pairs = [(getattr(ours, k), getattr(theirs, k)) for ours, theirs in layers for k in ("weight", "bias")]
    return pairs + ([(agent.log_std, p.log_std)] if hasattr(p, "log_std") else [])


def copy_sb3_parameters(model: Any, agent: Any) -> None:
    """Give the agent the SB3 model's weights (sb3_parameter_pairs)."""
    with torch.no_grad():
        for ours, theirs in sb3_parameter_pairs(model, agent):
            ours.copy_(theirs)
