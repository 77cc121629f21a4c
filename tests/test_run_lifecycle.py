"""A run's life through the command lines: refused before its directory exists when it cannot go on,
marked failed when it fails before its first checkpoint, left untouched by a resume that cannot or
need not go on, and stopped by SIGTERM as by Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import pytest
from conftest import assert_user_error, eval_steps, read_csv, read_json

from rlgen.checkpoint import save_state
from rlgen.compose import load_config
from rlgen.errors import UserError
from rlgen.run import Run
from rlgen.trainer import train

QUICK = ("agent=q_learning", "env=GridWorld4x4", "total_steps=300", "eval_every=100", "eval_episodes=1",
         "progress=false")


def tree(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file under root with its bytes and modification time (a rewrite changes it), every directory."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(Path(root).rglob("*"))}


@pytest.fixture(scope="module")
def completed(tmp_path_factory) -> Path:
    """A small completed tabular run (evaluations at 100, 200, 300)."""
    run = tmp_path_factory.mktemp("completed") / "run"
    summary, _ = train(load_config([*QUICK, f"run_dir={run}"]))
    assert summary["status"] == "completed"
    return run


@pytest.fixture
def copy_of(tmp_path):
    def copy(run: Path) -> Path:
        shutil.copytree(run, tmp_path / "copy")
        return tmp_path / "copy"

    return copy


# -- a place the run cannot be written: one line before anything starts --------------------------------


@contextmanager
def made_read_only(path: Path) -> Iterator[Path]:
    """`path` (a directory) with nothing writable in it: mode 555, and for root, whom modes do not bind,
    the immutable attribute too. Skips the test where the file system offers neither."""
    path.chmod(0o555)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    try:
        try:
            (path / "probe").touch()
        except OSError:
            yield path
        else:
            (path / "probe").unlink()
            pytest.skip("cannot make a read-only directory on this file system")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
        path.chmod(0o755)


@pytest.fixture
def read_only(tmp_path) -> Iterator[Path]:
    (tmp_path / "read-only").mkdir()
    with made_read_only(tmp_path / "read-only") as path:
        yield path


UNWRITABLE = {
    "runs_root is a file": ("runs_root={file}", "is a file, not a directory"),
    "runs_root is under a file": ("runs_root={file}/runs", "is a file, not a directory"),
    "run_dir is a file": ("run_dir={file}", "is a file, not a directory"),
    "run_dir is under a file": ("run_dir={file}/deeper/run", "is a file, not a directory"),
    "run_dir in a read-only directory": ("run_dir={read_only}/run", "cannot write into"),
    "run_dir is a read-only directory": ("run_dir={read_only}", "cannot write into"),
    "runs_root is read-only": ("runs_root={read_only}", "cannot write into"),
}


@pytest.mark.parametrize("case", list(UNWRITABLE))
def test_a_place_the_run_cannot_be_written_is_one_line_and_nothing_is_made(case, tmp_path, read_only,
                                                                           main_in_process):
    template, fragment = UNWRITABLE[case]
    (tmp_path / "a-file").write_text("mine\n")
    setting = template.format(file=tmp_path / "a-file", read_only=read_only)
    before = tree(tmp_path)
    out = main_in_process(*QUICK, setting)
    assert_user_error(out, setting.split("=")[0] + "=", fragment)
    assert tree(tmp_path) == before


# -- an agent that does not fit its env: refused before the run directory exists ---------------------------


MISFITS = {
    ("value_iteration", "Blackjack"): "no tabular model",
    ("policy_iteration", "Bandit10"): "no tabular model",
    ("soft_value_iteration", "Blackjack-v1"): "no tabular model",
    ("policy_evaluation", "BanditBernoulli"): "no tabular model",
    ("mc_exploring_starts", "Taxi"): "can start in any state",
    ("mc_exploring_starts", "Blackjack"): "can start in any state",
    ("ucb", "GridWorld4x4"): "one state",
    ("thompson_sampling", "Taxi"): "one state",
    ("epsilon_greedy", "Blackjack"): "one state",
    ("rlhf", "CartPole"): "needs env=TextPreference",
    ("dqn", "Pendulum"): "needs Discrete actions",
}


@pytest.mark.parametrize(("agent", "env"), list(MISFITS))
def test_an_agent_that_does_not_fit_its_env_is_refused_before_any_directory(agent, env, tmp_path, main_in_process):
    out = main_in_process(f"agent={agent}", f"env={env}", "total_steps=50", f"runs_root={tmp_path / 'runs'}",
                          "progress=false")
    assert_user_error(out, MISFITS[agent, env])
    assert not (tmp_path / "runs").exists()


class FlakyEnv(gym.Env):
    """Four cells in a row; raises `error` when built (at_step=0) or on its at_step-th step."""

    observation_space = gym.spaces.Discrete(4)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, error: str = "RuntimeError", at_step: int = 30, render_mode: str | None = None):
        self.error = {"RuntimeError": RuntimeError, "UserError": UserError}[error]
        self.at_step, self.steps, self.s = at_step, 0, 0
        if at_step == 0:
            raise self.error("the simulator's licence server is down")

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.s = 0
        return self.s, {}

    def step(self, action):
        self.steps += 1
        if self.steps == self.at_step:
            raise self.error("the simulator lost its connection")
        self.s = min(max(self.s + (1 if action else -1), 0), 3)
        return self.s, -1.0, self.s == 3, False, {}


gym.register("lifecycle/Flaky-v0", entry_point=FlakyEnv, max_episode_steps=20)


def test_an_env_that_fails_to_build_leaves_no_directory(tmp_path):
    cfg = load_config(["agent=q_learning", "env=lifecycle/Flaky-v0", "env.kwargs.at_step=0",
                       f"runs_root={tmp_path / 'runs'}", "progress=false"])
    with pytest.raises(UserError, match="RuntimeError: the simulator's licence server"):  # one line, not a traceback
        train(cfg)
    assert not (tmp_path / "runs").exists()


# -- a run that fails before its first checkpoint: marked failed, refused with the reason ---------------------


def assert_refused_as_failed(run: Path, reason: str, main_in_process, evaluate_in_process) -> None:
    before = tree(run)
    assert_user_error(evaluate_in_process(f"run={run}"), f"{run} failed before its first checkpoint", reason)
    assert_user_error(main_in_process(f"resume={run}"), f"cannot resume {run}: it failed", reason)
    assert_user_error(main_in_process(*QUICK, f"run_dir={run}"), f"run_dir {run} holds a run that failed", reason)
    assert tree(run) == before


def test_a_nan_before_the_first_checkpoint_marks_the_run_failed(tmp_path, main_in_process, evaluate_in_process,
                                                               poisoned_dqn):
    run = tmp_path / "run"
    # the first training phase's loss is NaN; no evaluation (so no checkpoint) before the end of the budget
    poisoned_dqn(after=0)
    out = main_in_process("agent=dqn", "env=CartPole", "agent.learning_starts=100",
                          "total_steps=3000", "eval_every=0", "eval_episodes=1", f"run_dir={run}", "progress=false")
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert "diverged" in line and "train/loss" in line and f"so {run} is marked failed" in line
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed" and "train/loss" in summary["reason"]
    assert not (run / "checkpoint.json").exists()
    assert_refused_as_failed(run, "training diverged", main_in_process, evaluate_in_process)


@pytest.mark.parametrize("error", ["RuntimeError", "UserError"])
def test_an_env_that_fails_mid_run_marks_the_run_failed(error, tmp_path, main_in_process, evaluate_in_process):
    run = tmp_path / "run"
    cfg = load_config(["agent=q_learning", "env=lifecycle/Flaky-v0", f"env.kwargs.error={error}", "total_steps=200",
                       "eval_every=0", "eval_episodes=1", f"run_dir={run}", "progress=false"])
    with pytest.raises((RuntimeError, UserError), match="lost its connection") as raised:
        train(cfg)
    if error == "UserError":
        assert f"so {run} is marked failed" in str(raised.value)
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed" and summary["reason"].endswith("the simulator lost its connection")
    assert_refused_as_failed(run, "lost its connection", main_in_process, evaluate_in_process)


# -- a damaged run: one line, and nothing of it changes --------------------------------------------------


def _rewrite_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


DAMAGE = {  # name: (damage, fragment on resume, fragment from evaluate or None if evaluate does not read it)
    "checkpoint.json cut short": (lambda r: (r / "checkpoint.json").write_text('{"num_steps": 3'),
                                  "checkpoint.json is damaged", None),
    "checkpoint.json not UTF-8": (lambda r: (r / "checkpoint.json").write_bytes(b"\x80\xff\x00"),
                                  "checkpoint.json is damaged", None),
    "checkpoint.json a list": (lambda r: (r / "checkpoint.json").write_text("[1, 2]"),
                               "checkpoint.json is damaged", None),
    "checkpoint.json step a string": (lambda r: _rewrite_json(r / "checkpoint.json", lambda d: d.update(num_steps="x")),
                                      "num_steps is 'x'", None),
    "checkpoint.json negative step": (lambda r: _rewrite_json(r / "checkpoint.json", lambda d: d.update(num_steps=-4)),
                                      "num_steps is -4", None),
    "checkpoint.json bad last_eval": (lambda r: _rewrite_json(r / "checkpoint.json", lambda d: d.update(last_eval=[1])),
                                      "last_eval is [1]", None),
    "no checkpoint/ directory": (lambda r: shutil.rmtree(r / "checkpoint"), "checkpoint/ directory",
                                 "has no checkpoint yet"),
    "checkpoint/ files cut short": (lambda r: (r / "checkpoint" / "state.json").write_text('{"form'),
                                    "is damaged or not an rlgen checkpoint", "is damaged or not an rlgen checkpoint"),
    "env_state/ files cut short": (lambda r: (r / "env_state" / "state.json").write_text('{"form'),
                                   "env_state is damaged or not an rlgen checkpoint", None),
    "env_state/ holds a number": (lambda r: save_state(r / "env_state", 5), "it holds no list of env states", None),
    "config.yaml not YAML": (lambda r: (r / "config.yaml").write_text("agent: [q_learning\n"),
                             "config.yaml is damaged", "config.yaml is damaged"),
    "config.yaml of an unknown agent": (lambda r: (r / "config.yaml").write_text("agent:\n  name: nope\n"),
                                        "config.yaml is damaged", "config.yaml is damaged"),
    "summary.json cut short": (lambda r: (r / "summary.json").write_text('{"status": "compl'),
                               "summary.json is damaged", "summary.json is damaged"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_run_is_one_line_and_left_as_it_was(kind, completed, copy_of, main_in_process,
                                                      evaluate_in_process):
    damage, on_resume, on_evaluate = DAMAGE[kind]
    run = copy_of(completed)
    damage(run)
    before = tree(run)
    assert_user_error(main_in_process(f"resume={run}", "total_steps=600"), on_resume)
    if on_evaluate is not None:
        assert_user_error(evaluate_in_process(f"run={run}", "episodes=1"), on_evaluate)
    assert tree(run) == before


def test_a_run_stopped_before_its_first_checkpoint_cannot_be_resumed(completed, copy_of, main_in_process):
    run = copy_of(completed)
    for name in ("checkpoint", "env_state", "checkpoint.json", "summary.json"):  # as kill -9 leaves it
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    before = tree(run)
    assert_user_error(main_in_process(f"resume={run}"), f"cannot resume {run}: it stopped before its first checkpoint")
    assert tree(run) == before


def test_evaluate_refuses_a_run_it_cannot_write_into(completed, copy_of, evaluate_in_process):
    with made_read_only(copy_of(completed)) as run:
        assert_user_error(evaluate_in_process(f"run={run}", "episodes=1"), "cannot write into", "evaluation.json")


# -- resuming a completed run, or below the steps done ----------------------------------------------------


@pytest.mark.parametrize("budget", [None, "300", "250"])
def test_resuming_a_completed_run_says_so_and_changes_nothing(budget, completed, copy_of, main_in_process):
    run = copy_of(completed)
    before = tree(run)
    if budget == "250":  # below the 300 steps done: a mistake
        out = main_in_process(f"resume={run}", f"total_steps={budget}")
        assert_user_error(out, "total_steps=250", "has done 300 steps already", "total_steps above 300")
    else:
        out = main_in_process(f"resume={run}", *([f"total_steps={budget}"] if budget else []))
        assert out.returncode == 0 and out.stderr == ""
        assert out.stdout.strip() == (f"{run} has already completed its budget of 300 steps; nothing to do "
                                      f"(to train it longer: resume={run} total_steps above 300)")
    assert tree(run) == before


def test_a_planner_that_converged_early_is_completed_for_its_whole_budget(tmp_path, main_in_process):
    run = tmp_path / "run"
    out = main_in_process("agent=value_iteration", "env=GridWorld4x4", "total_steps=1000", f"run_dir={run}",
                          "progress=false")
    assert out.returncode == 0
    done = read_json(run / "summary.json")["total_steps"]
    assert done < 500  # converged: far fewer sweeps than the budget
    before = tree(run)
    out = main_in_process(f"resume={run}", "total_steps=500")
    assert out.returncode == 0 and "has already completed its budget of 1000 steps" in out.stdout
    assert tree(run) == before


def test_resuming_below_the_steps_done_changes_nothing(tmp_path, main_in_process, monkeypatch):
    run = tmp_path / "run"
    original = Run.tick
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    def tick(self: Run, step: int, evaluation=None) -> bool:  # stop at step 200, as Ctrl-C would
        self.stop_requested |= step >= 200
        return original(self, step, evaluation)

    with monkeypatch.context() as m:
        m.setattr(Run, "tick", tick)
        summary, _ = train(load_config([*QUICK, f"run_dir={run}"]))
    assert summary["status"] == "interrupted" and summary["total_steps"] == 200
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # the run's handlers are gone
    before = tree(run)
    out = main_in_process(f"resume={run}", "total_steps=150")
    assert_user_error(out, "total_steps=150", "has done 200 steps already", "give total_steps=200 or more")
    assert tree(run) == before
    assert main_in_process(f"resume={run}").returncode == 0
    assert eval_steps(run) == [100, 200, 300]


def test_a_completed_run_resumed_with_a_larger_budget_goes_on(completed, copy_of, main_in_process):
    run = copy_of(completed)
    out = main_in_process(f"resume={run}", "total_steps=500")
    assert out.returncode == 0, out.stderr
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed" and summary["total_steps"] == 500
    assert eval_steps(run) == [100, 200, 300, 400, 500]
    steps = [int(r["step"]) for r in read_csv(run / "progress.csv")[1]]
    assert steps == sorted(set(steps))


# -- SIGTERM: what SLURM, Kubernetes and Docker send --------------------------------------------------------


def test_sigterm_checkpoints_says_how_to_resume_and_exits_143(tmp_path, main_in_process):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.train", "agent=ppo", "env=CartPole", "total_steps=500000",
                             "eval_every=1024", "eval_episodes=2", f"run_dir={run}", "progress=false"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint.json").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr == ""
    summary = read_json(run / "summary.json")
    assert summary["status"] == "interrupted" and summary["stopped_by"] == "SIGTERM"
    done = summary["total_steps"]
    assert 0 < done < 500000 and read_json(run / "checkpoint.json")["num_steps"] == done
    assert stdout.strip().splitlines()[-1] == (f"interrupted by SIGTERM at step {done}; continue with: "
                                               f"python -m rlgen.train resume={run}")
    out = main_in_process(f"resume={run}", f"total_steps={done + 512}")
    assert out.returncode == 0, out.stderr
    assert read_json(run / "summary.json")["status"] == "completed"
    assert eval_steps(run)[-1] == read_json(run / "summary.json")["total_steps"]


def test_the_first_stop_signal_asks_to_stop_and_the_second_stops_at_once():
    run = SimpleNamespace(stop_requested=False, stop_signal=None, previous_handlers={})
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    Run.catch_interrupt(run)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # Python runs a signal's handler between two bytecodes of the main thread
            if run.stop_requested:
                break
        assert run.stop_requested and run.stop_signal == signal.SIGTERM
        # a second SIGTERM or SIGINT takes the signal's default action: the process ends
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    finally:
        for sig, handler in run.previous_handlers.items():
            signal.signal(sig, handler)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_csv_row_a_kill_cut_short_is_dropped_on_resume(tmp_path):
    from rlgen.csvlog import CsvLog

    path = tmp_path / "eval.csv"
    whole = "step,mean_return,std_return,n_episodes\r\n100,1.0,0.0,1\r\n200,2.0,0.0,1\r\n"
    path.write_bytes((whole + "12").encode())  # the row of step 1234, cut after two characters by kill -9
    log = CsvLog(path, keep_until=200)
    log.close()
    assert [r["step"] for r in log.rows] == ["100", "200"]
    assert path.read_bytes() == whole.encode()
