"""Particle, Avoid and Step: Gymnasium's checks, their experts, the structure that defeats regression
(a jump, two modes whose mean collides), and demonstrations as a function of their seed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import rlgen.envs  # noqa: F401  (registers rlgen/<Name>-v0)
from rlgen.demos import Demonstrations, expert_demonstrations, scripted_expert
from rlgen.envs.imitation_tasks import AvoidEnv, ParticleEnv, StepEnv, step_target
from rlgen.errors import UserError

TASKS = [("rlgen/Particle-v0", {}), ("rlgen/Avoid-v0", {}), ("rlgen/Step-v0", {}),
         ("rlgen/Step-v0", {"two_valued": True})]
IDS = ["Particle", "Avoid", "Step", "Step-two-valued"]


@pytest.mark.parametrize(("env_id", "kwargs"), TASKS, ids=IDS)
def test_each_task_passes_check_env_and_renders(env_id, kwargs):
    check_env(gym.make(env_id, **kwargs).unwrapped, skip_render_check=False)
    for mode in ("ansi", "rgb_array"):
        env = gym.make(env_id, render_mode=mode, **kwargs)
        env.reset(seed=0)
        env.step(env.action_space.sample())
        out = env.render()
        assert isinstance(out, str) if mode == "ansi" else (out.ndim == 3 and out.dtype == np.uint8)


@pytest.mark.parametrize(("env_id", "kwargs"), TASKS, ids=IDS)
def test_an_invalid_action_is_refused(env_id, kwargs):
    env = gym.make(env_id, **kwargs).unwrapped
    env.reset(seed=0)
    too_far = np.full(env.action_space.shape, 2.0, dtype=np.float32)
    for action in (too_far, np.full(env.action_space.shape, np.nan, dtype=np.float32), np.zeros(3, np.float32)):
        with pytest.raises(gym.error.InvalidAction, match="invalid action"):
            env.step(action)


@pytest.mark.parametrize(("env_id", "kwargs"), TASKS, ids=IDS)
def test_each_expert_succeeds_in_95_percent_of_50_episodes(env_id, kwargs):
    demos = expert_demonstrations(env_id, 50, seed=0, **kwargs)
    assert demos.n_episodes == 50
    assert demos.success_rate >= 0.95


def test_avoids_expert_takes_each_side_in_30_to_70_percent_and_reports_it():
    demos = expert_demonstrations("rlgen/Avoid-v0", 50, seed=0)
    assert set(np.unique(demos.mode)) == {0, 1}
    assert 0.3 <= demos.mode.mean() <= 0.7
    env = gym.make("rlgen/Avoid-v0").unwrapped
    for seed in range(10):  # the reported side is the side the expert chose
        obs, _ = env.reset(seed=seed)
        terminated = False
        while not terminated:
            obs, _, terminated, _, info = env.step(env.expert_action(obs))
        assert info["success"] and info["mode"] == env.expert_side


def test_the_mean_of_avoids_two_experts_runs_into_the_obstacle():
    env = AvoidEnv()
    obs, _ = env.reset(seed=0)
    for _ in range(40):
        actions = []
        for side in (0, 1):
            env.expert_side = side
            actions.append(env.expert_action(obs))
        obs, reward, terminated, _, info = env.step(np.mean(actions, axis=0))
        if terminated:
            break
    assert info["collision"] and reward == -1.0 and not info["success"]


def test_particles_expert_jumps_to_goal_2_once_goal_1_is_reached():
    env = ParticleEnv()
    obs, _ = env.reset(seed=3)
    actions = []
    for _ in range(50):
        actions.append(env.expert_action(obs))
        obs, *_ = env.step(actions[-1])
    goal1, goal2 = obs[4:6], obs[6:8]
    targets = [0 if np.array_equal(a, goal1) else 1 if np.array_equal(a, goal2) else -1 for a in actions]
    assert -1 not in targets and targets == sorted(targets) and 0 in targets and 1 in targets
    jump = targets.index(1)
    assert np.linalg.norm(actions[jump] - actions[jump - 1]) == pytest.approx(np.linalg.norm(goal2 - goal1))


def test_particle_succeeds_only_at_goal_2_after_goal_1():
    env = ParticleEnv()
    obs, _ = env.reset(seed=3)
    goal1, goal2 = obs[4:6].copy(), obs[6:8].copy()
    for target in (goal2, goal1):  # the wrong order
        for _ in range(25):
            obs, reward, _, _, info = env.step(target)
    assert info["visited_first"] and not info["success"] and reward == 0.0
    for _ in range(25):
        obs, reward, _, _, info = env.step(goal2)
    assert info["success"] and reward == 1.0


def test_step_jumps_by_one_at_zero_and_rewards_minus_the_error():
    s = np.array([-1.0, -1e-6, 0.0, 0.5])
    np.testing.assert_allclose(step_target(s), [-1.0, -0.5000005, 0.5, 0.75])
    env = StepEnv(two_valued=True)
    obs, _ = env.reset(seed=0)
    correct = step_target(obs)[0]
    _, reward, terminated, _, info = env.step(np.array([-correct + 0.01], dtype=np.float32))
    assert terminated and reward == pytest.approx(-0.01, abs=1e-6)
    assert info == {"success": True, "mode": 1}
    errors, nearest = StepEnv().errors(np.array([0.2, -0.2]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(errors, [0.6, 0.6])
    assert nearest.tolist() == [0, 0]


def test_demonstrations_are_a_function_of_their_seed(tmp_path):
    a = expert_demonstrations("rlgen/Particle-v0", 4, seed=7)
    b = expert_demonstrations("rlgen/Particle-v0", 4, seed=7)
    c = expert_demonstrations("rlgen/Particle-v0", 4, seed=8)
    for name in Demonstrations.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.obs, c.obs)
    assert a.obs.shape == (200, 8) and a.actions.shape == (200, 2) and a.obs.dtype == np.float32
    assert a.episode.tolist() == sorted(a.episode.tolist()) and set(a.episode) == {0, 1, 2, 3}
    a.save(tmp_path / "demos.npz")
    loaded = Demonstrations.load(tmp_path / "demos.npz")  # allow_pickle=False inside
    for name in Demonstrations.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(loaded, name), getattr(a, name))


def test_an_env_without_an_expert_is_a_user_error():
    with pytest.raises(UserError, match="no scripted expert.*Particle, Avoid, Step"):
        expert_demonstrations("CartPole-v1", 2, seed=0)
    assert scripted_expert("Pendulum-v1") is None
    assert scripted_expert("rlgen/Step-v0", {"two_valued": True}) is not None


@pytest.mark.parametrize(("env_id", "kwargs"), TASKS[:3], ids=IDS[:3])
def test_each_task_draws_a_policy_picture(env_id, kwargs):
    env = gym.make(env_id, **kwargs).unwrapped
    zero = lambda obs: np.zeros((len(obs), *env.action_space.shape), np.float32)  # noqa: E731
    image = env.policy_picture(zero, seed=0)
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 and image.std() > 0


@pytest.mark.parametrize("dim", [1, 2.5, "two", True])
def test_particles_dimension_is_an_integer_of_at_least_two(dim):
    with pytest.raises(UserError, match="Particle's dim must be an integer >= 2"):
        ParticleEnv(dim=dim)


def test_particle_in_three_dimensions_has_its_expert_succeed():
    demos = expert_demonstrations("rlgen/Particle-v0", 20, seed=0, dim=3)
    assert demos.obs.shape[1] == 12 and demos.actions.shape[1] == 3 and demos.success_rate >= 0.95
