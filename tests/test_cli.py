"""The training CLI: a smoke run of every agent against the run-directory contract, sweeps, and
one clear line with exit status 2 for every user mistake."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import assert_user_error, cli, read_csv, read_json, train_run

from rlgen.agents import AGENTS

TINY = ("env=CartPole", "total_steps=600", "eval_every=300", "eval_episodes=2")
DEEP_AGENTS = ["ppo", "dqn", "sb3_ppo", "sb3_dqn", "sb3_a2c"]
SUMMARY_KEYS = {"agent", "env", "seed", "total_steps", "wall_seconds", "steps_per_second", "eval_mean_return",
                "eval_std_return", "solved_at_step", "versions"}


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory) -> Path:
    """One finished tiny run, shared by the tests that only read it."""
    return train_run(tmp_path_factory.mktemp("cli") / "ppo", "agent=ppo", *TINY)


def check_run_dir(run: Path, agent: str, budget: int) -> None:
    assert (run / "config.yaml").is_file() and "name: " + agent in (run / "config.yaml").read_text()
    assert list((run / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file"
    progress_columns, progress = read_csv(run / "progress.csv")
    assert progress_columns[0] == "step" and progress
    eval_columns, evals = read_csv(run / "eval.csv")
    assert eval_columns == ["step", "mean_return", "std_return", "n_episodes"]
    assert [int(r["n_episodes"]) for r in evals] == [2] * len(evals)
    steps = [int(r["step"]) for r in evals]
    assert steps == sorted(set(steps)) and steps[0] >= 300
    episode_columns, episodes = read_csv(run / "episodes.csv")
    assert episode_columns == ["step", "return", "length"]
    # CartPole pays 1 per step: an episode's return is its length
    assert episodes and all(float(e["return"]) == int(e["length"]) > 0 for e in episodes)
    summary = read_json(run / "summary.json")
    assert SUMMARY_KEYS <= set(summary)
    assert (summary["agent"], summary["env"], summary["seed"]) == (agent, "CartPole", 0)
    assert summary["total_steps"] >= budget and summary["total_steps"] == steps[-1]
    assert summary["eval_mean_return"] == pytest.approx(float(evals[-1]["mean_return"]))
    assert summary["eval_std_return"] == pytest.approx(float(evals[-1]["std_return"]))
    assert summary["wall_seconds"] > 0 and summary["steps_per_second"] > 0
    assert summary["solved_at_step"] is None  # 600 steps cannot balance CartPole for 475
    assert {"torch", "gymnasium", "stable-baselines3", "rlgen"} <= set(summary["versions"])


def test_smoke_ppo(ppo_run):
    check_run_dir(ppo_run, "ppo", 600)
    columns, _ = read_csv(ppo_run / "progress.csv")
    # SB3's tag names, so that rlgen and SB3 runs overlay in one TensorBoard
    assert {"train/policy_gradient_loss", "train/value_loss", "train/entropy_loss", "train/approx_kl",
            "train/clip_fraction", "train/explained_variance", "rollout/ep_rew_mean", "time/fps"} <= set(columns)


@pytest.mark.parametrize("agent", [a for a in DEEP_AGENTS if a != "ppo"])
def test_smoke_every_deep_agent(agent, tmp_path):
    if agent not in AGENTS:
        pytest.skip(f"{agent} is not registered")
    check_run_dir(train_run(tmp_path / agent, f"agent={agent}", *TINY), agent, 600)


def test_any_registered_gymnasium_id_trains(tmp_path):
    run = train_run(tmp_path / "run", "agent=ppo", "env=Acrobot-v1", "total_steps=256", "eval_episodes=1")
    summary = read_json(run / "summary.json")
    assert (summary["env"], summary["env_id"]) == ("Acrobot", "Acrobot-v1")  # the id of a short name is that env
    ret = summary["eval_mean_return"]
    assert -500 <= ret <= -1 and ret == int(ret)  # Acrobot's: -1 a step, at most 500 steps


def test_help_lists_agents_and_envs():
    out = cli("--help")
    assert out.returncode == 0
    agents_line = next(line for line in out.stdout.splitlines() if line.strip().startswith("agent=NAME"))
    envs_line = next(line for line in out.stdout.splitlines() if line.strip().startswith("env=NAME"))
    assert set(AGENTS) <= set(re.findall(r"[\w-]+", agents_line))
    assert {"CartPole", "Pendulum", "Acrobot"} <= set(re.findall(r"[\w-]+", envs_line))


def test_help_example_env_id_is_accepted():
    example = re.search(r"e\.g\. (env=\S+?)\)", cli("--help").stdout).group(1)
    out = cli(example, "--cfg")
    assert out.returncode == 0, out.stderr


def test_sweep_runs_one_job_per_combination(tmp_path):
    out = cli("-m", "agent=ppo,dqn", "seed=0,1", "total_steps=256", "eval_episodes=1", f"runs_root={tmp_path}",
              "progress=false")
    assert out.returncode == 0, out.stderr
    assert "[4/4]" in out.stdout
    summaries = [read_json(p) for p in sorted(tmp_path.glob("CartPole/*/*/summary.json"))]
    assert sorted((s["agent"], s["seed"]) for s in summaries) == [("dqn", 0), ("dqn", 1), ("ppo", 0), ("ppo", 1)]
    # runs_root/<env>/<agent>/<seed>-<timestamp>
    assert all(re.fullmatch(r"[01]-\d{8}-\d{6}(-\d+)?", p.parent.name)
               for p in tmp_path.glob("CartPole/*/*/summary.json"))
    # the seed reaches the envs and the agent: the two ppo runs saw different episodes
    seed0, seed1 = (next(tmp_path.glob(f"CartPole/ppo/{s}-*/episodes.csv")).read_bytes() for s in (0, 1))
    assert seed0 != seed1


def test_a_user_mistake_from_the_shell_is_one_line_and_exit_2(tmp_path):
    """The real entry point (`python -m rlgen.train`); the cases below call it in-process."""
    out = cli("agent=ppp", f"run_dir={tmp_path / 'run'}")
    assert "Traceback" not in out.stderr
    assert_user_error(out, "unknown agent 'ppp'", "'ppo'")
    assert out.stdout == ""


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["agent=ppp"], ["unknown agent 'ppp'", "'ppo'"]),
        (["env=CartPol"], ["unknown env 'CartPol'", "'CartPole'"]),
        (["agent.learnin_rate=1"], ["learnin_rate", "'learning_rate'"]),
        (["agent=dqn", "agent.learnin_rate=1"], ["learnin_rate", "'learning_rate'"]),
        (["agent.learning_rate=abc"], ["learning_rate", "abc", "could not be converted to Float"]),
        (["sed=3"], ["'sed'", "'seed'"]),
        (["total_steps=0"], ["total_steps", "0", "total_steps must be a positive number of steps, got 0"]),
        (["total_steps=-5"], ["total_steps", "-5", "must be a positive number of steps, got -5"]),
        (["seed=0,1"], ["-m"]),
        (["--frobnicate"], ["--frobnicate"]),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, fragments, tmp_path, main_in_process):
    out = main_in_process(*args, f"run_dir={tmp_path / 'run'}", "progress=false")
    assert_user_error(out, *fragments)
    assert not (tmp_path / "run").exists(), "a rejected command must not create its run directory"


def test_resume_of_a_missing_directory(tmp_path, main_in_process):
    assert_user_error(main_in_process(f"resume={tmp_path / 'nope'}"), "nope", "no such run directory")


def test_resume_cannot_change_the_saved_config(ppo_run, main_in_process):
    assert_user_error(main_in_process(f"resume={ppo_run}", "seed=4"), "seed",
                      "seed cannot change (allowed: total_steps")


def test_run_dir_that_already_holds_a_run(ppo_run, main_in_process):
    before = (ppo_run / "summary.json").read_bytes()
    out = main_in_process("agent=ppo", *TINY, f"run_dir={ppo_run}", "progress=false")
    assert_user_error(out, str(ppo_run), "resume=")
    assert (ppo_run / "summary.json").read_bytes() == before


# Mistakes found while the config is checked or the agent is built, before any file is written.
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["agent=ppo", "agent.activation=gelu"], ["agent.activation='gelu'", "not one of tanh, relu"]),
        (["agent=dqn", "env=Pendulum"], ["dqn needs Discrete actions", "Box"]),
        (["agent=ppo", "agent.lr_schedule=foo"], ["agent.lr_schedule='foo'", "not one of constant, linear"]),
        (["agent=ppo", "agent.n_envs=0"], ["agent.n_envs must be positive, got 0"]),
    ],
)
def test_invalid_agent_settings_are_user_errors(args, fragments, tmp_path, main_in_process):
    """These fail while the agent is built, before the run opens any file: safe to call in-process,
    and `raises` pins the exception, so any other failure still fails."""
    out = main_in_process(*args, "total_steps=256", f"run_dir={tmp_path / 'run'}", "progress=false")
    assert_user_error(out, *fragments)


def test_invalid_values_leave_no_run_directory(tmp_path):
    out = cli("agent=ppo", "agent.n_envs=0", f"run_dir={tmp_path / 'run'}", "progress=false")
    assert_user_error(out, "agent.n_envs must be positive, got 0")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [("progress=yes",), ("agent=ppo", "agent.normalize_advantage=on"),
                                  ("agent=dqn", "agent.double_q=1"),
                                  ("agent=rlhf", "env=TextPreference", "agent.kl.adaptive=no")])
def test_a_boolean_is_true_or_false_in_train_as_in_every_command(args, tmp_path, main_in_process):
    key, _, value = args[-1].partition("=")
    assert_user_error(main_in_process(*args, f"run_dir={tmp_path / 'run'}"),
                      f"{key}: Value '{value}' is not a valid bool: write true or false")
    assert not (tmp_path / "run").exists()


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    """`python -m rlgen.train ... | head -1`: the pipe closes before the command has written it all."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.train", "agent=ppo", "env=CartPole", "total_steps=256",
                             f"run_dir={tmp_path / 'run'}", "progress=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stdout.close()  # before the interpreter has started: every write to stdout finds no reader
    with proc.stderr:
        stderr = proc.stderr.read()
    assert proc.wait(timeout=300) == 1 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "completed"  # only the report was lost
