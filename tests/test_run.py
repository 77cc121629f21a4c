"""Reliability of a run: reproducible with a seed, interruptible and resumable, atomic checkpoints,
and a diverging loss that stops the run without losing the last good checkpoint."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import eval_steps, read_csv, read_json, train_run

from rlgen.checkpoint import existing_dir, replace_dir_atomic, write_atomic, write_json_atomic
from rlgen.trainer import build_agent, load_run_config

SMALL = {
    "ppo": ("agent=ppo", "env=CartPole", "total_steps=1024", "eval_every=256", "eval_episodes=3"),
    # tuned: learning_starts 1000, then 128 updates every 256 steps; 16 keep the test quick
    "dqn": ("agent=dqn", "env=CartPole", "total_steps=1600", "eval_every=400", "eval_episodes=3",
            "agent.gradient_steps=16"),
}


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("ppo") / "run", *SMALL["ppo"], "seed=3")


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["ppo", "dqn"])
def test_same_config_and_seed_give_identical_evaluations(agent, tmp_path, request):
    a = request.getfixturevalue("ppo_run") if agent == "ppo" else train_run(tmp_path / "a", *SMALL[agent], "seed=3")
    b = train_run(tmp_path / "b", *SMALL[agent], "seed=3")
    assert (a / "eval.csv").read_bytes() == (b / "eval.csv").read_bytes()
    assert (a / "episodes.csv").read_bytes() == (b / "episodes.csv").read_bytes()
    assert len(read_csv(a / "progress.csv")[1]) > 0  # training happened, not only random acting
    # (that a different seed gives different episodes is checked by the sweep in test_cli.py)


def _start(run_dir: Path, *overrides: str) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "rlgen.train", *overrides, f"run_dir={run_dir}", "progress=false"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path.name} appeared: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("agent", "overrides"),
    [
        ("ppo", ("agent=ppo", "env=CartPole", "total_steps=6144", "eval_every=1024", "eval_episodes=2")),
        ("dqn", ("agent=dqn", "env=CartPole", "total_steps=3000", "eval_every=500", "eval_episodes=2",
                 "agent.learning_starts=200", "agent.gradient_steps=16")),
    ],
)
def test_ctrl_c_stops_cleanly_and_resume_finishes_the_budget(agent, overrides, tmp_path):
    run = tmp_path / "run"
    proc = _start(run, *overrides)
    _wait_for(run / "checkpoint.json", proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "resume=" in stdout
    summary = read_json(run / "summary.json")
    budget = int(next(o for o in overrides if o.startswith("total_steps=")).split("=")[1])
    assert summary["status"] == "interrupted" and 0 < summary["total_steps"] < budget
    assert read_json(run / "checkpoint.json")["num_steps"] == summary["total_steps"]
    config = (run / "config.yaml").read_text()

    resumed = subprocess.run([sys.executable, "-m", "rlgen.train", f"resume={run}", "progress=false"],
                             capture_output=True, text=True, timeout=240, check=False)
    assert resumed.returncode == 0, resumed.stderr
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["total_steps"] >= budget
    steps = eval_steps(run)
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), steps
    assert steps[-1] == summary["total_steps"]
    episode_steps = [int(r["step"]) for r in read_csv(run / "episodes.csv")[1]]
    assert episode_steps == sorted(episode_steps)
    assert (run / "config.yaml").read_text() == config  # resuming keeps the run's config


# -- atomic writes -------------------------------------------------------------------------------


class Boom(Exception):
    pass


def test_a_failed_file_write_leaves_the_previous_file_whole(tmp_path):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"step": 1})

    def half_write(tmp: Path) -> None:
        tmp.write_text('{"step": 2, "trunc')
        raise Boom

    with pytest.raises(Boom):
        write_atomic(target, half_write)
    assert read_json(target) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], "a temporary file was left behind"


def test_a_failed_directory_write_leaves_the_previous_checkpoint_whole(tmp_path):
    target = tmp_path / "checkpoint"
    replace_dir_atomic(target, lambda tmp: (tmp / "agent.pt").write_bytes(b"good"))

    def half_fill(tmp: Path) -> None:
        (tmp / "agent.pt").write_bytes(b"ba")
        raise Boom

    with pytest.raises(Boom):
        replace_dir_atomic(target, half_fill)
    assert (target / "agent.pt").read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    replace_dir_atomic(target, lambda tmp: (tmp / "agent.pt").write_bytes(b"new"))
    assert (existing_dir(target) / "agent.pt").read_bytes() == b"new"


def test_a_crash_between_the_two_renames_keeps_the_old_checkpoint_findable(tmp_path):
    target = tmp_path / "checkpoint"
    replace_dir_atomic(target, lambda tmp: (tmp / "agent.pt").write_bytes(b"old"))
    os.replace(target, tmp_path / "checkpoint.old")  # where a crash after the first rename leaves it
    assert (existing_dir(target) / "agent.pt").read_bytes() == b"old"
    assert existing_dir(tmp_path / "nothing") is None


# -- divergence ----------------------------------------------------------------------------------


@pytest.fixture
def diverged(tmp_path, poisoned_dqn, main_in_process):
    """A DQN run forced to diverge past step 1500: evaluations (and checkpoints) every 1000 steps,
    training from step 1000 (the tuned learning_starts)."""
    run = tmp_path / "run"
    poisoned_dqn(after=1500)
    out = main_in_process("agent=dqn", "env=CartPole", "total_steps=5000", "eval_every=1000", "eval_episodes=2",
                          f"run_dir={run}", "progress=false")
    return run, out


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(diverged):
    run, out = diverged
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert "diverged" in lines[0] and "train/loss" in lines[0]
    kept = read_json(run / "checkpoint.json")["num_steps"]
    assert f"checkpoint (step {kept})" in lines[0] and 0 < kept < 5000
    assert not (run / "summary.json").exists()
    agent = build_agent(load_run_config(run))
    agent.load(run / "checkpoint")
    assert agent.num_steps == kept
    assert all(torch.isfinite(p).all() for p in agent.q_net.parameters())
    assert np.isfinite(agent.q_values(np.zeros((1, 4), np.float32))).all()


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory) -> tuple[Path, dict]:
    """A DQN run killed outright (no handler runs) after its first checkpoint, then resumed."""
    run = tmp_path_factory.mktemp("kill") / "run"
    proc = _start(run, "agent=dqn", "env=CartPole", "total_steps=3000", "eval_every=500", "eval_episodes=2",
                  "agent.learning_starts=200", "agent.gradient_steps=8")
    _wait_for(run / "checkpoint.json", proc)
    proc.kill()
    proc.communicate(timeout=60)
    state = read_json(run / "checkpoint.json")
    out = subprocess.run([sys.executable, "-m", "rlgen.train", f"resume={run}", "progress=false"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    return run, state


def test_a_killed_run_resumes_from_its_last_checkpoint(killed_and_resumed):
    run, state = killed_and_resumed
    assert 0 < state["num_steps"] < 3000
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["total_steps"] == 3000
    steps = eval_steps(run)
    assert all(a < b for a, b in zip(steps, steps[1:], strict=False)), steps
    assert steps[-1] == 3000


def test_a_resumed_run_keeps_its_evaluation_grid(killed_and_resumed):
    run, _ = killed_and_resumed
    assert eval_steps(run) == [500, 1000, 1500, 2000, 2500, 3000]


def test_run_files_share_one_permission_mode(ppo_run):
    run = ppo_run
    mode = stat.S_IMODE((run / "eval.csv").stat().st_mode)
    for name in ("config.yaml", "summary.json", "checkpoint.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == mode, name


@pytest.mark.parametrize("tag", ["train/loss", "train/q_mean", "train/entropy", "rlhf/kl"])
def test_any_non_finite_training_statistic_is_a_divergence(tag, tmp_path):
    """Not only losses: a NaN statistic of any name stops the run (an undefined one is left out by its agent)."""
    from rlgen.compose import load_config
    from rlgen.run import Diverged, Run

    cfg = load_config(["agent=q_learning", "env=GridWorld4x4", f"run_dir={tmp_path}", "progress=false"])
    run = Run(cfg, tmp_path, build_agent(cfg))
    try:
        run.log(1, {"train/fine": 1.0})
        with pytest.raises(Diverged, match=tag):
            run.log(2, {tag: float("nan")})
        with pytest.raises(Diverged, match=tag):
            run.log(3, {tag: float("inf")})
    finally:
        run.close()
