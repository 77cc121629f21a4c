"""README commands show what the text around them claims.

Each command is read from README.md, so the test follows any edit to it, and run as written, or at
a size that runs in seconds where the README's is large (the 10^6-state maze), with its result
checked against an exact answer.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from conftest import eval_means

from rlgen.bandit_testbed import run_testbed
from rlgen.compose import load_config
from rlgen.distributions import greedy_probs
from rlgen.envs.gridworld import maze_layout
from rlgen.envs.model import require_model
from rlgen.mdp import Backup, TabularModel, evaluation_sweep, value_iteration
from rlgen.soft import soft_value_iteration
from rlgen.trainer import train

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_command(*fragments: str, module: str = "rlgen.train") -> list[str]:
    """The settings of the one `python -m <module>` line of README.md that holds every fragment."""
    lines = [line for line in README.read_text().splitlines()
             if line.startswith(f"python -m {module} ") and all(f in line for f in fragments)]
    assert len(lines) == 1, f"{len(lines)} README commands hold {fragments}"
    return shlex.split(lines[0].split("#")[0])[3:]


def run(tmp_path: Path, settings: list[str], *overrides: str) -> Path:
    cfg = load_config([*settings, *overrides, f"run_dir={tmp_path / 'run'}", "progress=false"])
    summary, run_dir = train(cfg)
    assert summary["status"] == "completed"
    return run_dir


def with_maze_size(settings: list[str], size: int) -> list[str]:
    """The settings with the maze's size replaced (given as env.size= or env.kwargs.size=)."""
    return [s for s in settings if not s.startswith(("env.size=", "env.kwargs.size="))] + [f"env.size={size}"]


# -- the 10^6-state maze: value iteration must carry the goal's value back to the start ----------------


def maze_start_distance(size: int, maze_seed: int = 0) -> int:
    """Steps from the start to the goal. In a binary-tree maze every room opens north or west, so the
    path from the goal room to the start room only goes up and left: its length is the Manhattan
    distance (checked against the values of a run in test_readme_maze_command_at_a_small_size)."""
    grid = maze_layout(size, maze_seed)
    (rs, cs), (rg, cg) = np.argwhere(grid == "S")[0], np.argwhere(grid == "G")[0]
    return int(abs(rg - rs) + abs(cg - cs))


def sweeps_that_reach(gamma: float, tol: float, budget: int) -> int:
    """How far (in steps) value iteration from V = 0 carries the goal's value before it stops, with
    reward -1 a step. A state d steps away that has not yet seen the goal holds
    -(1 - gamma^k) / (1 - gamma) after k sweeps, so the sweep changes it by gamma^(k-1) (exactly 1
    when gamma = 1) and the run stops at the first sweep whose change is below tol, or at the
    budget, or when every value is exact; a state is exact once the sweeps reach its distance."""
    if gamma == 1.0:
        return budget if tol <= 1.0 else 1
    return min(budget, 1 + math.ceil(math.log(tol) / math.log(gamma)))


def test_readme_maze_settings_reach_the_start():
    """At the README's size: the settings let the goal's value reach the start before the run stops
    (gamma 0.99 with tol 1e-6 stopped after 1,376 sweeps, the start being 1,992 steps away)."""
    cfg = load_config(readme_command("env=Maze"))
    distance = maze_start_distance(cfg.env.kwargs["size"], cfg.env.kwargs.get("maze_seed", 0))
    assert cfg.env.kwargs["size"] == 1000 and distance > 1900
    assert sweeps_that_reach(cfg.agent.gamma, cfg.agent.tol, cfg.total_steps) >= distance
    assert gym.spec("rlgen/Maze-v0").max_episode_steps > distance  # the evaluation can walk it


def test_readme_maze_command_at_a_small_size(tmp_path):
    """The README's settings on a 41 x 41 maze: the start's value is minus its distance, and the
    greedy policy walks that shortest path."""
    run_dir = run(tmp_path, with_maze_size(readme_command("env=Maze"), 41), "eval_episodes=1")
    distance = maze_start_distance(41)
    start = int(np.flatnonzero(maze_layout(41, 0).ravel() == "S")[0])
    assert np.load(run_dir / "values.npy")[start] == -distance
    assert eval_means(run_dir)[-1] == -distance


@pytest.mark.parametrize(("tol", "reaches"), [(1e-3, False), (1e-4, True)])
def test_the_stopping_rule_predicts_the_run(tmp_path, tol, reaches):
    """sweeps_that_reach against real runs on either side of a start 76 steps away (gamma 0.9:
    tol 1e-3 stops after 67 sweeps, 1e-4 after 89)."""
    distance = maze_start_distance(41)
    assert (sweeps_that_reach(0.9, tol, 100_000) >= distance) == reaches
    settings = ["agent=value_iteration", "env=Maze", "env.size=41", "agent.gamma=0.9", f"agent.tol={tol}"]
    run_dir = run(tmp_path, settings, "eval_episodes=1")
    limit = gym.spec("rlgen/Maze-v0").max_episode_steps
    assert eval_means(run_dir)[-1] == (-distance if reaches else -limit)


# -- soft FrozenLake: the soft-optimal policy reaches the goal ------------------------------------------


def success_probability(model: TabularModel, policy: np.ndarray, horizon: int) -> float:
    """P(the goal within `horizon` steps) from the start, exactly: FrozenLake pays 1 at the goal only,
    so it is the undiscounted value of `horizon` evaluation sweeps."""
    backup, v = Backup(model, 1.0), np.zeros(model.n_states)
    for _ in range(horizon):
        v = evaluation_sweep(backup, policy, v)
    return float(model.initial @ v)


@pytest.fixture(scope="module")
def frozen_lake() -> tuple[TabularModel, int, float]:
    """FrozenLake's model, its time limit, and how often value iteration's policy reaches the goal."""
    model = require_model(gym.make("FrozenLake-v1"))
    horizon = gym.spec("FrozenLake-v1").max_episode_steps
    v, _ = value_iteration(model, 0.99)
    return model, horizon, success_probability(model, greedy_probs(model.q_from_v(v, 0.99)), horizon)


@pytest.mark.parametrize("agent", ["soft_value_iteration", "soft_q_learning"])
def test_readme_soft_commands_reach_the_goal_as_value_iteration(tmp_path, frozen_lake, agent):
    """Run as written: the greedy policy of the soft Q values (what evaluation plays) reaches the goal as
    often as value iteration's, about 0.74."""
    model, horizon, optimum = frozen_lake
    run_dir = run(tmp_path, readme_command(f"agent={agent} ", "FrozenLake"), "eval_episodes=1")
    q = np.load(run_dir / "q_values.npy")
    assert optimum > 0.7
    assert success_probability(model, greedy_probs(q), horizon) == pytest.approx(optimum, abs=0.015)
    if agent == "soft_value_iteration":  # the Boltzmann policy itself pays for its entropy
        boltzmann = success_probability(model, np.load(run_dir / "policy.npy"), horizon)
        assert boltzmann == pytest.approx(0.63, abs=0.01)  # "reaches the goal 63% of the time"


@pytest.mark.parametrize("ent_coef", [0.05, 0.1])
def test_readme_high_temperature_claim(frozen_lake, ent_coef):
    """"From ent_coef = 0.05 on, the soft-optimal policy's greedy choice never reaches the goal" and
    "with gamma = 0.99 and ent_coef = 0.1 the soft-optimal policy prefers wandering forever"."""
    model, horizon, _ = frozen_lake
    text = " ".join(README.read_text().split())
    assert "From ent_coef = 0.05 on, the soft-optimal policy's greedy choice never reaches the goal" in text
    assert "with gamma = 0.99 and ent_coef = 0.1 the soft-optimal policy prefers wandering forever" in text
    sol = soft_value_iteration(model, 0.99, ent_coef)
    assert success_probability(model, greedy_probs(sol.q_values), horizon) == 0.0


# -- the 10-armed testbed ----------------------------------------------------------------------------


def test_readme_testbed_command_draws_sutton_barto_figure_2_4():
    """UCB (c = 2) against epsilon-greedy (0.1) on 2000 problems: UCB's spike at step 11, once every
    arm has been tried, then a higher average reward (about 1.5 against 1.35 in S&B Figure 2.4)."""
    settings = dict(s.split("=", 1) for s in readme_command("agents=", module="rlgen.bandit_testbed"))
    ucb, greedy = (run_testbed(spec, int(settings["problems"]), int(settings["steps"]))
                   for spec in settings["agents"].split(","))
    assert ucb.label.startswith("ucb") and greedy.label.startswith("epsilon_greedy")
    assert int(np.argmax(ucb.reward[:30])) == 10
    assert ucb.reward[-500:].mean() > greedy.reward[-500:].mean() + 0.05
