"""Soft value functions, soft value iteration and tabular soft Q-learning, against closed forms,
against value iteration (ent_coef -> 0), and against each other (learning -> planning)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlgen.compose import load_config
from rlgen.distributions import np_categorical_entropy
from rlgen.envs.model import model_of
from rlgen.mdp import Backup, TabularModel, reachable, value_iteration
from rlgen.soft import boltzmann, soft_optimality_sweep, soft_q_target, soft_value, soft_value_iteration
from rlgen.trainer import train

ENVS = [("FrozenLake-v1", {"is_slippery": True}), ("FrozenLake-v1", {"is_slippery": False}), ("CliffWalking-v1", {})]


def model(env_id: str, kwargs: dict) -> TabularModel:
    env = gym.make(env_id, **kwargs)
    m = model_of(env)
    env.close()
    assert m is not None
    return m


def live_states(m: TabularModel) -> np.ndarray:
    """States reachable from the start through non-terminal transitions: the ones an agent acts in."""
    return np.flatnonzero(reachable(m))


# -- closed forms -----------------------------------------------------------------------------------


def test_soft_value_closed_forms():
    q = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 3.0]])
    np.testing.assert_allclose(soft_value(q, 0.5), 0.5 * np.log(np.exp(q / 0.5).sum(axis=1)))
    np.testing.assert_allclose(soft_value(q, 1.0)[0], np.log(2.0))  # two equal actions: max + ent_coef log 2
    np.testing.assert_array_equal(soft_value(q, 0.0), q.max(axis=1))
    ent_coef = 0.3
    assert np.all(soft_value(q, ent_coef) >= q.max(axis=1))  # max <= soft max <= max + ent_coef log |A|
    assert np.all(soft_value(q, ent_coef) <= q.max(axis=1) + ent_coef * np.log(2) + 1e-12)


def test_logsumexp_is_stable_for_large_q_over_ent_coef():
    q = np.array([[1e4, 1e4 - 1.0, -1e4], [1e6, 1e6, 1e6]])
    for ent_coef in (1e-6, 1e-3, 1.0):
        v = soft_value(q, ent_coef)
        pi = boltzmann(q, ent_coef)
        assert np.all(np.isfinite(v)) and np.all(np.isfinite(pi))
        np.testing.assert_allclose(v[1], 1e6 + ent_coef * np.log(3), rtol=0, atol=1e-6)
        np.testing.assert_allclose(pi.sum(axis=1), 1.0)
    np.testing.assert_allclose(soft_value(q, 1.0)[0], 1e4 + np.log1p(np.exp(-1.0)), rtol=0, atol=1e-9)
    np.testing.assert_allclose(boltzmann(q, 1e-3)[0], [1.0, 0.0, 0.0])
    # the naive formula overflows where the stable one does not
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.log(np.exp(q[0] / 1e-3).sum()))


def test_boltzmann_is_exp_of_q_minus_v_and_its_limits():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 4))
    ent_coef = 0.7
    np.testing.assert_allclose(boltzmann(q, ent_coef), np.exp((q - soft_value(q, ent_coef)[:, None]) / ent_coef))
    np.testing.assert_allclose(boltzmann(q, 1e6), 0.25, atol=1e-6)  # ent_coef -> inf: uniform
    np.testing.assert_allclose(np_categorical_entropy(boltzmann(q, 1e6)), np.log(4), atol=1e-9)
    greedy = boltzmann(q, 0.0)
    np.testing.assert_array_equal(greedy.argmax(axis=1), q.argmax(axis=1))
    np.testing.assert_allclose(np_categorical_entropy(greedy), 0.0)
    # soft value = expected Q plus ent_coef times the policy's entropy (the max-entropy objective, one step)
    pi = boltzmann(q, ent_coef)
    np.testing.assert_allclose(soft_value(q, ent_coef), (pi * q).sum(axis=1) + ent_coef * np_categorical_entropy(pi))


def test_soft_value_iteration_one_state_closed_form():
    """One state, A self-loops with rewards r_a: V = gamma V + ent_coef LSE(r / ent_coef), so
    V = ent_coef log sum_a exp(r_a / ent_coef) / (1 - gamma)."""
    r = np.array([1.0, 0.5, -2.0])
    gamma, ent_coef = 0.9, 0.4
    shape = (1, 3, 1)
    m = TabularModel(np.zeros(shape, dtype=np.int64), np.ones(shape), r.reshape(shape),
                     np.zeros(shape, dtype=bool), np.ones(1))
    sol = soft_value_iteration(m, gamma, ent_coef, tol=1e-12)
    expected = ent_coef * np.log(np.exp(r / ent_coef).sum()) / (1 - gamma)
    np.testing.assert_allclose(sol.values, [expected], rtol=1e-9)
    np.testing.assert_allclose(sol.policy[0], np.exp(r / ent_coef) / np.exp(r / ent_coef).sum())


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS)
def test_soft_value_iteration_is_a_fixed_point(env_id, kwargs):
    m = model(env_id, kwargs)
    sol = soft_value_iteration(m, 0.95, 0.2, tol=1e-10)
    np.testing.assert_allclose(soft_optimality_sweep(Backup(m, 0.95), sol.values, 0.2), sol.values, atol=1e-9)
    np.testing.assert_allclose(sol.q_values, m.q_from_v(sol.values, 0.95))
    np.testing.assert_allclose(sol.policy.sum(axis=1), 1.0)


@pytest.mark.parametrize(("env_id", "kwargs"), ENVS)
def test_soft_values_approach_value_iteration_as_ent_coef_goes_to_zero(env_id, kwargs):
    m, gamma = model(env_id, kwargs), 0.95
    v_star, _ = value_iteration(m, gamma, tol=1e-12)
    gaps = []
    for ent_coef in (1.0, 0.1, 0.01, 1e-3, 1e-4):
        v = soft_value_iteration(m, gamma, ent_coef, tol=1e-12).values
        gap = v - v_star
        # 0 <= V_soft - V* <= ent_coef log|A| / (1 - gamma), since max <= soft max <= max + ent_coef log|A|
        assert gap.min() >= -1e-9
        assert gap.max() <= ent_coef * np.log(m.n_actions) / (1 - gamma) + 1e-9
        gaps.append(gap.max())
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))
    assert gaps[-1] < 1e-2
    # ... and the greedy policies agree wherever value iteration's argmax is unique
    q_star = m.q_from_v(v_star, gamma)
    q_soft = soft_value_iteration(m, gamma, 1e-4, tol=1e-12).q_values
    top2 = np.sort(q_star, axis=1)[:, -2:]
    clear = live_states(m)[(top2[:, 1] - top2[:, 0])[live_states(m)] > 1e-2]
    np.testing.assert_array_equal(q_soft[clear].argmax(axis=1), q_star[clear].argmax(axis=1))


def test_soft_q_target_masks_terminal_successors():
    next_q = np.array([[0.0, 0.0], [1.0, 1.0]])
    target = soft_q_target(np.array([1.0, 2.0]), next_q, np.array([False, True]), 0.5, 1.0)
    np.testing.assert_allclose(target, [1.0 + 0.5 * np.log(2), 2.0])


# -- tabular soft Q-learning converges to soft value iteration --------------------------------------


def learn_tabular(tmp_path, agent: str, env_id: str, kwargs: dict, overrides: list[str]) -> np.ndarray:
    env_kwargs = [f"env.{k}={v}" for k, v in kwargs.items()]
    cfg = load_config([f"agent={agent}", f"env={env_id}", *env_kwargs, *overrides, "eval_every=0",
                       "eval_episodes=2", f"run_dir={tmp_path / agent}", "progress=false"])
    _, run_dir = train(cfg)
    return np.load(run_dir / "q_values.npy")


@pytest.mark.parametrize(
    ("kwargs", "ent_coef", "steps", "schedule", "tol"),
    [
        ({"is_slippery": False}, 0.01, 20_000, ["agent.alpha=1.0"], 1e-3),  # deterministic: step size 1
        ({"is_slippery": True}, 0.05, 60_000, ["agent.alpha=1.0", "agent.step_power=0.8"], 0.04),
    ],
)
def test_soft_q_learning_converges_to_soft_value_iteration(tmp_path, kwargs, ent_coef, steps, schedule, tol):
    gamma = 0.9
    m = model("FrozenLake-v1", kwargs)
    sol = soft_value_iteration(m, gamma, ent_coef, tol=1e-12)
    q = learn_tabular(tmp_path, "soft_q_learning", "FrozenLake-v1", kwargs,
                      [f"total_steps={steps}", f"agent.gamma={gamma}", f"agent.ent_coef={ent_coef}",
                       "agent.epsilon=0.5", *schedule])
    live = live_states(m)
    np.testing.assert_allclose(soft_value(q[live], ent_coef), sol.values[live], rtol=0, atol=tol)
    top2 = np.sort(sol.q_values, axis=1)[:, -2:]
    clear = live[(top2[:, 1] - top2[:, 0])[live] > 0.05]  # the argmax is meaningful where Q is not tied
    assert len(clear) >= 5
    np.testing.assert_array_equal(q[clear].argmax(axis=1), sol.q_values[clear].argmax(axis=1))


def test_soft_value_iteration_agent_matches_the_function(tmp_path):
    kwargs = {"is_slippery": True}
    q = learn_tabular(tmp_path, "soft_value_iteration", "FrozenLake-v1", kwargs,
                      ["total_steps=5000", "agent.gamma=0.9", "agent.ent_coef=0.05", "agent.tol=1e-12"])
    sol = soft_value_iteration(model("FrozenLake-v1", kwargs), 0.9, 0.05, tol=1e-12)
    np.testing.assert_allclose(q, sol.q_values, atol=1e-9)
    policy = np.load(tmp_path / "soft_value_iteration" / "policy.npy")
    np.testing.assert_allclose(policy, sol.policy, atol=1e-9)
