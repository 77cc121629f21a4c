"""A user's own env: anything gymnasium.make can build trains, evaluates and records video (when it
renders), named by Gymnasium's `module:Id` form or registered in the user's own Python; an env that
cannot be built is one line, and no run directory is made. Also: `import rlgen` registers rlgen's envs."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import Exit, assert_user_error, read_json
from test_readme_commands import README, readme_commands

REPO = Path(__file__).resolve().parent.parent
QUIET = ("progress=false", "eval_episodes=2")

NO_RENDER = '''
import gymnasium as gym


class Steps(gym.Env):
    """Three states in a row, reward 1 at the end; the constructor takes no render_mode."""

    def __init__(self):
        self.observation_space = gym.spaces.Discrete(3)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self.state, {}

    def step(self, action):
        self.state = min(2, self.state + int(action))
        return self.state, float(self.state == 2), self.state == 2, False, {}


gym.register("Steps-v0", entry_point=Steps, max_episode_steps=20)
'''


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty working directory whose Python files are importable (`write(name, source)`); the
    modules written and the env ids registered during the test are forgotten afterwards."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    registered, written = set(gym.registry), []

    def write(name: str, source: str) -> None:
        (folder / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)

    yield write
    for env_id in set(gym.registry) - registered:
        del gym.registry[env_id]
    for name in written:
        sys.modules.pop(name, None)


def evaluate_in_process(*args: str) -> Exit:
    from rlgen.evaluate import main

    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return Exit(int(exit_.value.code or 0), "", "")


def only_run(env_name: str, agent: str) -> Path:
    runs = list(Path("runs", env_name, agent).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_the_readme_env_trains_evaluates_and_records_video(workdir, main_in_process):
    """README's own-env example as a reader runs it, at a small budget: PPO finds the shortest way
    down the corridor (8 steps), and a fresh process evaluates the run and records it, importing the
    module again from the id in the run's config."""
    from test_readme_commands import readme_files

    workdir("my_envs", readme_files(README.read_text())["my_envs.py"])
    command = next(c for c in readme_commands(README.read_text()) if "agent=ppo env=my_envs:" in c)
    args = [a for a in command.split()[3:] if not a.startswith("total_steps=")]
    out = main_in_process(*args, "total_steps=2048", *QUIET)
    assert out.returncode == 0, out.stderr
    run = only_run("Corridor-v0", "ppo")
    assert "id: my_envs:Corridor-v0" in (run / "config.yaml").read_text()
    assert read_json(run / "summary.json")["eval_mean_return"] == -8.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    shown = subprocess.run([sys.executable, "-m", "rlgen.evaluate", f"run={run}", "episodes=2", "video=true"],
                           capture_output=True, text=True, env=env, timeout=300, check=False)
    assert shown.returncode == 0, shown.stderr
    assert read_json(run / "evaluation.json")["mean_return"] == -8.0
    assert list((run / "videos").glob("*.mp4"))


@pytest.mark.parametrize("agent", ["ppo", "q_learning"])
def test_an_env_whose_constructor_takes_no_render_mode_trains_and_evaluates(agent, workdir, main_in_process,
                                                                            capsys):
    workdir("steps_env", NO_RENDER)
    out = main_in_process(f"agent={agent}", "env=steps_env:Steps-v0", "total_steps=1024", *QUIET)
    assert out.returncode == 0, out.stderr
    run = only_run("Steps-v0", agent)
    assert read_json(run / "summary.json")["eval_mean_return"] == 1.0
    assert evaluate_in_process(f"run={run}", "episodes=2").returncode == 0
    capsys.readouterr()
    video = evaluate_in_process(f"run={run}", "episodes=2", "video=true")
    assert_user_error(Exit(video.returncode, "", capsys.readouterr().err), "does not render as rgb_array")
    assert not (run / "videos").exists()


CUE = '''
import gymnasium as gym
import numpy as np


class Cue(gym.Env):
    """One step: reward 1 for the action the cue shows. The cue is a discrete part of a structured
    observation, beside a part that carries nothing, so an agent must read the right inputs."""

    def __init__(self, kind: str = "dict"):
        cue, noise = gym.spaces.Discrete(2), gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        history = gym.spaces.Sequence(cue)  # no fixed size: no vector
        self.kind = kind
        self.observation_space = {"dict": gym.spaces.Dict({"cue": cue, "noise": noise}),
                                  "tuple": gym.spaces.Tuple((noise, cue)),
                                  "multi_discrete": gym.spaces.MultiDiscrete([3, 2]),
                                  "sequence": history,
                                  "dict_sequence": gym.spaces.Dict({"cue": cue, "history": history})}[kind]
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        noise = self.np_random.random(2).astype(np.float32)
        return {"dict": {"cue": self.cue, "noise": noise}, "tuple": (noise, self.cue),
                "multi_discrete": np.array([self.np_random.integers(3), self.cue]), "sequence": (self.cue,),
                "dict_sequence": {"cue": self.cue, "history": (self.cue,)}}[self.kind]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        return self._obs(), float(action == self.cue), True, False, {}


gym.register("Cue-v0", entry_point=Cue)
'''


@pytest.mark.parametrize("kind", ["dict", "tuple", "multi_discrete"])
def test_a_structured_observation_reaches_deep_agents_as_a_vector(kind, workdir, main_in_process):
    """A Dict or Tuple flattened as Gymnasium flattens it (discrete parts one-hot), a MultiDiscrete
    as it is: PPO learns to follow the cue."""
    workdir("cue_env", CUE)
    out = main_in_process("agent=ppo", "env=cue_env:Cue-v0", f"env.kind={kind}", "total_steps=4096",
                          "progress=false", "eval_episodes=8")
    assert out.returncode == 0, out.stderr
    assert read_json(only_run("Cue-v0", "ppo") / "summary.json")["eval_mean_return"] == 1.0


class Walk(gym.Env):
    """Registered by the user's own Python, entry point a class: two states, reward 1 for action 1."""

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([1.0, 0.0], np.float32), {}

    def step(self, action):
        return np.array([0.0, 1.0], np.float32), float(action == 1), True, False, {}


@pytest.mark.parametrize(("env_id", "folder"), [("Walk-v0", "Walk-v0"), ("mine/Walk-v0", "mine-Walk-v0")])
def test_an_env_class_registered_in_the_users_own_python_trains(env_id, folder, workdir, main_in_process):
    gym.register(env_id, entry_point=Walk, max_episode_steps=5)
    out = main_in_process("agent=dqn", f"env={env_id}", "total_steps=300", *QUIET)
    assert out.returncode == 0, out.stderr
    run = only_run(folder, "dqn")  # one folder level per env, whatever its namespace
    assert read_json(run / "summary.json")["env_id"] == env_id


BROKEN = '''
import gymnasium as gym

from steps_env import Steps


class Broken(gym.Env):
    def __init__(self):
        raise RuntimeError("no licence file found")


gym.register("Broken-v0", entry_point=Broken)
gym.register("Ghost-v0", entry_point="broken_envs:Ghost")
gym.register("NotAnEnv-v0", entry_point=lambda: object())
'''


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["env=broken_envs:Broken-v0"], ["cannot make env 'broken_envs:Broken-v0'", "RuntimeError",
                                          "no licence file found"]),
        (["env=broken_envs:Ghost-v0"], ["cannot make env", "Ghost"]),
        (["env=broken_envs:NotAnEnv-v0"], ["cannot make env", "gymnasium.Env"]),
        (["env=steps_env:Steps-v0", "env.size=3"], ["rejected its kwargs", "size"]),
        (["env=steps_env:Step-v0"], ["module 'steps_env' registers no env 'Step-v0'", "'Steps-v0'"]),
        (["env=no_such_module:Steps-v0"], ["cannot import module 'no_such_module'", "PYTHONPATH"]),
        (["env=failing_import:Steps-v0"], ["cannot import module 'failing_import'", "ImportError",
                                           "needs mujoco"]),
        (["env=Steps-v0"], ["unknown env 'Steps-v0'", "module:Id"]),  # not imported: name the module
        (["env=cue_env:Cue-v0", "env.kind=sequence"], ["observes Sequence", "does not flatten to a vector"]),
        (["env=cue_env:Cue-v0", "env.kind=dict_sequence"], ["observes Dict", "does not flatten to a vector"]),
    ],
)
def test_an_env_that_cannot_be_made_is_one_line_and_leaves_no_run_directory(args, fragments, workdir,
                                                                              main_in_process):
    workdir("steps_env", NO_RENDER)
    workdir("broken_envs", BROKEN)
    workdir("failing_import", "raise ImportError('this env needs mujoco')\n")
    workdir("cue_env", CUE)
    before = git_status()
    assert_user_error(main_in_process("agent=ppo", *args, *QUIET), *fragments)
    assert not Path("runs").exists()
    assert git_status() == before


@pytest.mark.parametrize("code", [
    "import sys, gymnasium as gym\nassert 'rlgen' not in sys.modules\ngym.make('rlgen:rlgen/Maze-v0')",
    "import gymnasium as gym, rlgen\ngym.make('rlgen/CliffWalking-v0', render_mode='ansi')",
])
def test_importing_rlgen_registers_its_envs(code):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
