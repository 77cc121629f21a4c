"""GridWorld family: registration, check_env, the model is what step() samples, layouts, rendering."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlgen.envs.gridworld import GridWorldEnv, LayoutError, MazeEnv
from rlgen.envs.model import model_of
from rlgen.envs.registration import ENVS
from rlgen.mdp import TabularModel, evaluate_policy, value_iteration


@pytest.mark.parametrize("name", sorted(ENVS))
def test_every_registered_env_passes_check_env(name):
    env = gym.make(f"rlgen/{name}-v0")
    check_env(env.unwrapped, skip_render_check=False)
    for mode in ("ansi", "rgb_array"):
        e = gym.make(f"rlgen/{name}-v0", render_mode=mode)
        e.reset(seed=0)
        e.step(e.action_space.sample())
        out = e.render()
        assert isinstance(out, str) if mode == "ansi" else (out.ndim == 3 and out.dtype == np.uint8)


def test_p_view_round_trips_to_the_same_model():
    env = gym.make("rlgen/WindyGridworldStochastic-v0").unwrapped
    back = TabularModel.from_P(env.P, env.model.n_states, env.model.n_actions, env.model.initial)
    v = np.random.default_rng(0).normal(size=env.model.n_states)
    np.testing.assert_allclose(back.q_from_v(v, 0.9), env.model.q_from_v(v, 0.9))


def test_cliff_walking_model_matches_gymnasium():
    ours = gym.make("rlgen/CliffWalking-v0").unwrapped.model
    theirs = model_of(gym.make("CliffWalking-v1"))
    v = np.random.default_rng(1).normal(size=48)
    # state 47 is the goal: absorbing here, Gymnasium gives it transitions that are never used
    np.testing.assert_allclose(ours.q_from_v(v, 0.9)[:47], theirs.q_from_v(v, 0.9)[:47])


def test_step_samples_the_model():
    """Empirical outcome frequencies of step() match the model's probabilities (stochastic wind)."""
    env = gym.make("rlgen/WindyGridworldStochastic-v0").unwrapped
    m = env.model
    s, a, n = 3 * 10 + 6, 1, 6000  # row 3, column 6 (wind 2), move right
    env.reset(seed=0)
    counts: dict[int, int] = {}
    for _ in range(n):
        env.s = s
        s2, *_ = env.step(a)
        counts[s2] = counts.get(s2, 0) + 1
    expected: dict[int, float] = {}
    for k in range(m.probs.shape[2]):
        expected[int(m.next_states[s, a, k])] = expected.get(int(m.next_states[s, a, k]), 0) + m.probs[s, a, k]
    assert set(counts) == {t for t, p in expected.items() if p > 0}
    for t, p in expected.items():
        assert abs(counts.get(t, 0) / n - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9


def test_windy_gridworld_shortest_paths():
    """S&B Example 6.5: 15 steps with 4 moves; Exercise 6.9: 7 with king's moves."""
    for name, steps in (("WindyGridworld", 15), ("WindyGridworldKings", 7)):
        model = gym.make(f"rlgen/{name}-v0").unwrapped.model
        v, _ = value_iteration(model, gamma=1.0)
        assert v[3 * 10 + 0] == pytest.approx(-steps)


def test_random_walk_true_values():
    """S&B Example 6.2: V(A..E) = 1/6 .. 5/6; Example 7.1 (19 states): -0.9 .. 0.9."""
    for name, n, expected in (("RandomWalk5", 5, np.arange(1, 6) / 6), ("RandomWalk19", 19, np.arange(-9, 10) / 10)):
        model = gym.make(f"rlgen/{name}-v0").unwrapped.model
        v = evaluate_policy(model, np.full((n + 2, 2), 0.5), gamma=1.0)
        np.testing.assert_allclose(v[1:-1], expected, atol=1e-8)


def test_slip_probabilities():
    env = GridWorldEnv(["S.G"], slip=0.5, moves=2)
    p = env.model.probs[1, 1]  # middle cell, move right: 1 - slip/2 right, slip/2 left
    nxt = env.model.next_states[1, 1]
    assert p[nxt == 2].sum() == pytest.approx(0.75) and p[nxt == 0].sum() == pytest.approx(0.25)


@pytest.mark.parametrize("layout, message", [
    (["...", ".G."], "no start"),
    (["S#G"], "reachable"),
    (["S.X", "..G"], "unknown character"),
    (["S..", "..", "..G"], "ragged"),
    (["S.."], "no goal"),
])
def test_bad_layouts_are_clear_errors(layout, message):
    with pytest.raises(LayoutError, match=message):
        GridWorldEnv(layout)


def test_bad_layout_through_the_cli_is_one_line(tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "rlgen.train", "agent=value_iteration", "env=GridWorld4x4",
                          "+env.kwargs.layout=['S#G']", f"run_dir={tmp_path}", "progress=false"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: no goal cell 'G' is reachable from the start in this gridworld "
                                               "layout"]


def test_invalid_action_is_rejected():
    env = gym.make("rlgen/GridWorld4x4-v0").unwrapped
    env.reset(seed=0)
    for bad in (4, -1, 1.5):
        with pytest.raises(gym.error.InvalidAction, match=r"integer in \[0, 3\]"):
            env.step(bad)


def test_maze_size_and_connectivity():
    env = MazeEnv(size=41, maze_seed=3)
    assert env.model.n_states == 41 * 41
    v, _ = value_iteration(env.model, gamma=1.0)
    rooms = env.grid.ravel() != "#"
    assert np.all(v[rooms] > -41 * 41)  # every free cell reaches the goal (a perfect maze)
    assert not np.array_equal(MazeEnv(size=41, maze_seed=4).grid, env.grid)


def test_maze_of_size_1000_has_a_million_states():
    env = gym.make("rlgen/Maze-v0", size=1000)
    assert env.observation_space.n == 10**6
