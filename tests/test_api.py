"""The Python API (rlgen/api.py): rlgen.load's policy replays the evaluations its run logged, on the
observations the env gives; rlgen.train composes as the CLI does; rlgen.make_env is the run's env; and
the README's Python example runs as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import read_csv
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import given, settings
from hypothesis import strategies as st

import rlgen
from rlgen.api import _batch_size, _override_text
from rlgen.errors import UserError
from rlgen.evaluation import EVAL_SEED_OFFSET
from rlgen.trainer import TrainingFailed

README = Path(__file__).resolve().parent.parent / "README.md"
RUNS = {
    # a normalised PPO run (its statistics live in the checkpoint), a deep agent on a tabular env (it sees
    # the state one-hot) and a tabular agent (it sees the state as the env gives it)
    "ppo": dict(agent="ppo", env="CartPole", total_steps=1024, eval_every=256,
                overrides={"agent.normalize_obs": True, "agent.normalize_reward": True}),
    "dqn": dict(agent="dqn", env="FrozenLake", total_steps=600, eval_every=200,
                overrides={"agent.learning_starts": 100}),
    "q_learning": dict(agent="q_learning", env="FrozenLake", total_steps=2000, eval_every=500),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, kwargs in RUNS.items():
        # three evaluation episodes: copies of the single env (4 or more would be CartPole's own vector
        # env, one generator for all), so each episode can be replayed on its own
        summary, out[name] = rlgen.train(**kwargs, eval_episodes=3, seed=1, run_dir=str(root / name))
        assert summary["status"] == "completed"
    return out


def replay(policy: rlgen.api.Policy) -> float:
    """The mean return of the policy on its run's evaluation episodes, one env and one observation at a
    time, as a user plays it."""
    cfg = policy.config
    env = rlgen.make_env(cfg.env.name, **cfg.env.kwargs)
    returns = []
    for i in range(cfg.eval_episodes):
        obs, _ = env.reset(seed=cfg.seed + EVAL_SEED_OFFSET + i)  # rlgen/evaluation.py: copy i's seed
        total, done = 0.0, False
        while not done:
            action = policy.act(obs)
            assert env.action_space.contains(action), action
            obs, reward, terminated, truncated, _ = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def eval_rows(run_dir: Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r["mean_return"])) for r in read_csv(run_dir / "eval.csv")[1]]


@pytest.mark.parametrize("name", RUNS)
def test_a_loaded_policy_replays_the_last_evaluation_its_run_logged(runs, name):
    policy = rlgen.load(runs[name])
    assert policy.config.agent.name == name and policy.agent.num_steps == eval_rows(runs[name])[-1][0]
    assert replay(policy) == eval_rows(runs[name])[-1][1]


@pytest.mark.parametrize("name", RUNS)
def test_the_best_checkpoint_replays_the_best_evaluation(runs, name):
    rows = eval_rows(runs[name])
    step, best = max(rows, key=lambda row: row[1])  # the first of equal maxima: a tie does not replace it
    policy = rlgen.load(runs[name], checkpoint="best")
    assert policy.agent.num_steps == step
    assert replay(policy) == best


@pytest.mark.parametrize("name", RUNS)
def test_one_observation_and_a_batch_get_the_same_actions(runs, name):
    policy = rlgen.load(runs[name])
    env = rlgen.make_env(policy.config.env.name)
    observations = [env.reset(seed=s)[0] for s in range(6)] + [env.observation_space.sample() for _ in range(6)]
    one_by_one = [policy.act(obs) for obs in observations]
    batch = policy.act(np.stack(observations))
    assert batch.shape[0] == len(observations)
    np.testing.assert_array_equal(batch, np.array(one_by_one))
    if isinstance(env.action_space, gym.spaces.Discrete):
        assert all(type(action) is int for action in one_by_one)


def test_a_batch_is_told_from_one_observation_by_the_space():
    box = gym.spaces.Box(-1, 1, (3,))
    assert _batch_size(box, np.zeros(3)) is None and _batch_size(box, np.zeros((5, 3))) == 5
    assert _batch_size(gym.spaces.Discrete(4), 2) is None and _batch_size(gym.spaces.Discrete(4), [1, 2]) == 2
    blackjack = gym.spaces.Tuple((gym.spaces.Discrete(32), gym.spaces.Discrete(11), gym.spaces.Discrete(2)))
    assert _batch_size(blackjack, (14, 10, 0)) is None
    assert _batch_size(blackjack, (np.array([14, 20]), np.array([10, 3]), np.array([0, 1]))) == 2
    with pytest.raises(UserError, match=r"neither one of this env's .* nor a batch"):
        _batch_size(box, np.zeros((5, 4)))


def test_load_refuses_what_holds_no_such_policy_in_one_line(runs, tmp_path):
    no_checkpoint = tmp_path / "no_checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(runs["dqn"] / "config.yaml", no_checkpoint)
    no_best = tmp_path / "no_best"
    shutil.copytree(runs["dqn"], no_best)
    shutil.rmtree(no_best / "checkpoint_best")
    cases = [(tmp_path / "nowhere", "last", "no such run directory"), (no_checkpoint, "last", "has no checkpoint yet"),
             (tmp_path, "last", "not a run directory (no config.yaml)"), (no_best, "best", "has no best checkpoint"),
             (runs["dqn"], "final", "checkpoint='final' is not one of")]
    for run_dir, checkpoint, fragment in cases:
        with pytest.raises(UserError) as err:
            rlgen.load(run_dir, checkpoint=checkpoint)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_train_writes_the_config_the_command_line_composes(tmp_path, main_in_process):
    run_dir = tmp_path / "run"
    cli = main_in_process("agent=dqn", "env=CartPole", "seed=3", "total_steps=300", "eval_every=0",
                          "agent.learning_rate=0.002", "agent.net_arch=[32,16]", "agent.learning_starts=100",
                          "env.kwargs.sutton_barto_reward=true", f"run_dir={run_dir}", "progress=false", "--cfg")
    assert cli.returncode == 0, cli.stderr
    summary, written = rlgen.train(agent="dqn", env="CartPole", seed=3, total_steps=300, eval_every=0,
                                   run_dir=str(run_dir), overrides={
                                       "agent.learning_rate": 2e-3, "agent.net_arch": [32, 16],
                                       "agent.learning_starts": 100, "env.kwargs.sutton_barto_reward": True})
    assert written == run_dir and summary["status"] == "completed" and summary["total_steps"] >= 300
    assert (run_dir / "config.yaml").read_text() + "\n" == cli.stdout


def test_train_takes_the_command_lines_mistakes_and_resumes(runs, tmp_path):
    with pytest.raises(UserError, match=r"unknown setting 'sed' \(did you mean 'seed'"):
        rlgen.train(agent="ppo", env="CartPole", sed=3)
    with pytest.raises(UserError, match="'seed' is given twice"):
        rlgen.train(agent="ppo", env="CartPole", seed=3, overrides={"seed": 4})
    with pytest.raises(UserError, match="unknown agent 'ppp'"):
        rlgen.train(agent="ppp")
    run = tmp_path / "resumed"
    shutil.copytree(runs["q_learning"], run)
    summary, run_dir = rlgen.train(resume=str(run), total_steps=3000)
    assert run_dir == run and summary["status"] == "completed" and summary["total_steps"] >= 3000
    again, _ = rlgen.train(resume=str(run), total_steps=3000)  # nothing left to do: the run as it is
    assert again == summary
    with pytest.raises(UserError, match="cannot change"):
        rlgen.train(resume=str(run), seed=5)


def test_a_diverged_run_raises_training_failed(tmp_path, poisoned_dqn):
    poisoned_dqn(after=150)
    with pytest.raises(TrainingFailed, match="training diverged"):
        rlgen.train(agent="dqn", env="CartPole", total_steps=400, eval_every=0, run_dir=str(tmp_path / "run"),
                    overrides={"agent.learning_starts": 100})


def test_train_with_seeds_returns_one_pair_per_seed(tmp_path):
    runs = rlgen.train(agent="q_learning", env="FrozenLake", seeds=2, total_steps=200, run_dir=str(tmp_path))
    assert [run_dir for _, run_dir in runs] == [tmp_path / "seed0", tmp_path / "seed1"]
    assert [summary["seed"] for summary, _ in runs] == [0, 1]


@settings(max_examples=200, deadline=None)
@given(st.text() | st.from_regex(r"[a-z\\',=\[\]{}$ ]*", fullmatch=True))
def test_a_str_setting_reaches_the_config_as_that_str(text):
    written = _override_text("run_dir", text)
    assert OverridesParser.create().parse_overrides([f"run_dir={written}"])[0].value() == text


@pytest.mark.parametrize("value, text", [(True, "true"), (None, "null"), (1e-3, "0.001"), ([64, 64], "[64,64]"),
                                         ({"size": 5}, "{size:5}"), ("8x8", "8x8"), ("4", "'4'"),
                                         ("true", "'true'"), ("a,b", "'a,b'")])
def test_python_values_are_written_as_overrides(value, text):
    assert _override_text("key", value) == text


def test_make_env_takes_a_short_name_or_its_id_and_the_envs_kwargs():
    short, full = rlgen.make_env("CartPole"), rlgen.make_env("CartPole-v1")
    assert short.spec.id == full.spec.id == "CartPole-v1"
    np.testing.assert_array_equal(short.reset(seed=4)[0], full.reset(seed=4)[0])
    np.testing.assert_array_equal(short.step(1)[0], full.step(1)[0])
    assert rlgen.make_env("FrozenLake", map_name="8x8").observation_space == gym.spaces.Discrete(64)
    maze = rlgen.make_env("Maze", size=5)  # its short name's other kwargs kept
    assert maze.spec.kwargs == {"size": 5, "maze_seed": 0}
    assert rlgen.make_env("rlgen/Maze-v0", size=5).observation_space == maze.observation_space
    drawn = rlgen.make_env("CartPole", render_mode="rgb_array")
    drawn.reset(seed=0)
    assert drawn.render().ndim == 3
    with pytest.raises(UserError, match="unknown env 'Cartpole'"):
        rlgen.make_env("Cartpole")
    with pytest.raises(UserError, match="rejected its kwargs"):
        rlgen.make_env("CartPole", sizee=3)


def test_import_rlgen_stays_light_and_rlgen_train_stays_the_function():
    code = ("import sys, rlgen; heavy = [m for m in ('torch', 'hydra', 'matplotlib') if m in sys.modules]; "
            "assert not heavy, heavy; from rlgen.train import main; assert callable(main); "
            "assert rlgen.train.__module__ == 'rlgen.api', rlgen.train")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert set(rlgen.API) <= set(dir(rlgen))


def readme_python_api_block() -> str:
    """The ```python block of the README's "Python API" section."""
    section = README.read_text().split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)


def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_python_api_block(), "README.md (Python API)", "exec"), namespace)
    run_dir = namespace["run_dir"]
    assert (tmp_path / run_dir / "summary.json").is_file() and namespace["summary"]["status"] == "completed"
    assert "return" in capsys.readouterr().out


def test_a_policy_that_trained_with_masks_acts_under_the_masks_given(tmp_path):
    """act(obs, mask=) as MaskablePPO's predict(action_masks=): a sampled action is always a valid one."""
    _, run_dir = rlgen.train(agent="ppo", env="MaskedGridWorld", total_steps=256, eval_every=0, seed=1,
                             run_dir=str(tmp_path / "masked"), overrides={"agent.n_steps": 128})
    policy, env = rlgen.load(run_dir), rlgen.make_env("MaskedGridWorld")
    for episode in range(3):
        obs, info = env.reset(seed=episode)
        for _ in range(30):  # a masked action would raise in env.step
            action = policy.act(obs, deterministic=False, mask=info["action_mask"])
            assert info["action_mask"][action]
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
    only = np.zeros((2, env.action_space.n), dtype=bool)
    only[:, 2] = True  # one valid action: the only one a masked policy can take
    assert policy.act(np.stack([obs, obs]), deterministic=False, mask=only).tolist() == [2, 2]
    with pytest.raises(UserError, match=r"act\(\.\.\., mask=\) gave an action mask of shape \(3,\)"):
        policy.act(obs, mask=[1, 0, 1])
    _, unmasked = rlgen.train(agent="q_learning", env="FrozenLake", total_steps=100, eval_every=0,
                              run_dir=str(tmp_path / "unmasked"), overrides={"agent.action_masking": False})
    with pytest.raises(UserError, match="did not train with action masks"):
        rlgen.load(unmasked).act(0, mask=[1, 1, 1, 1])
