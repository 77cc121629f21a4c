"""REINFORCE: its gradient on a hand-made two-step episode equals the closed form of a linear softmax
policy (with and without a baseline), returns are whole episodes' also across rollouts, and settings
it cannot honour are refused."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import eval_means, train_run

from rlgen.agents.reinforce import REINFORCE, REINFORCEConfig, Steps, whole_episodes
from rlgen.compose import load_config
from rlgen.errors import UserError
from rlgen.loops import Rollout

OBS = gym.spaces.Box(0.0, 1.0, (2,), np.float32)  # one-hot: two states
ACTIONS = gym.spaces.Discrete(2)
GAMMA = 0.9


def _rollout(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
             truncated: np.ndarray, valid: np.ndarray | None = None) -> Rollout:
    t, n = rewards.shape
    return Rollout(obs=obs.astype(np.float32), actions=actions, log_probs=np.zeros((t, n), np.float32),
                   rewards=rewards.astype(np.float32), terminated=terminated, done=terminated | truncated,
                   valid=np.ones((t, n), bool) if valid is None else valid,
                   values=np.zeros((t + 1, n), np.float32))


def _agent(**overrides) -> REINFORCE:
    config = REINFORCEConfig(n_envs=1, n_steps=2, gamma=GAMMA, net_arch=[], **overrides)
    agent = REINFORCE(OBS, ACTIONS, config, seed=0)
    with torch.no_grad():  # a policy far from uniform, a baseline far from the returns
        agent.actor[0].weight.copy_(torch.tensor([[0.3, -0.5], [-0.2, 0.8]]))
        agent.actor[0].bias.copy_(torch.tensor([0.1, -0.4]))
        if agent.critic is not None:
            agent.critic[0].weight.copy_(torch.tensor([[0.7, -1.1]]))
            agent.critic[0].bias.copy_(torch.tensor([0.25]))
    return agent


def _two_step_episode() -> Rollout:
    """s0 --a=1, r=1--> s1 --a=0, r=2--> terminal."""
    obs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    return _rollout(obs, np.array([[1], [0]]), np.array([[1.0], [2.0]]), np.array([[False], [True]]),
                    np.zeros((2, 1), bool))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize(("baseline", "normalize"), [(True, False), (False, False), (True, True)])
def test_gradient_of_a_two_step_episode_equals_the_closed_form(baseline, normalize):
    """For logits W s + b, d log pi(a|s) / dW = (e_a - pi(.|s)) s^T and d/db = e_a - pi(.|s) (Sutton &
    Barto 2018, eq. 13.9); the loss is -1/2 sum_t w_t log pi(a_t|s_t) + vf_coef * 1/2 sum_t (G_t - V(s_t))^2
    with V(s) = v.s + c and weights w_t = G_t - V(s_t) (without a baseline V = 0 and no value term; with
    normalize_advantage the weights standardised, unbiased standard deviation)."""
    agent = _agent(baseline=baseline, normalize_advantage=normalize, vf_coef=0.5)
    batch = agent.episodes_batch(_two_step_episode())
    np.testing.assert_allclose(batch["returns"], [1 + GAMMA * 2, 2.0], rtol=1e-6)
    agent.optimizer.zero_grad()
    agent.loss(batch)[0].backward()

    W = np.array([[0.3, -0.5], [-0.2, 0.8]])
    b = np.array([0.1, -0.4])
    v, c = np.array([0.7, -1.1]), 0.25
    states, actions, returns = np.eye(2), [1, 0], np.array([1 + GAMMA * 2, 2.0])
    values = states @ v + c if baseline else np.zeros(2)
    weights = returns - values
    if normalize:
        weights = (weights - weights.mean()) / (weights.std(ddof=1) + 1e-8)
    grad_W, grad_b, grad_v, grad_c = np.zeros((2, 2)), np.zeros(2), np.zeros(2), 0.0
    for s, a, g, value, w in zip(states, actions, returns, values, weights, strict=True):
        score = np.eye(2)[a] - _softmax(W @ s + b)
        grad_W += -0.5 * w * np.outer(score, s)
        grad_b += -0.5 * w * score
        grad_v += 0.5 * 2 * 0.5 * (value - g) * s  # vf_coef * d/dv of the mean of two squared errors
        grad_c += 0.5 * 2 * 0.5 * (value - g)
    np.testing.assert_allclose(agent.actor[0].weight.grad.numpy(), grad_W, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(agent.actor[0].bias.grad.numpy(), grad_b, rtol=1e-5, atol=1e-7)
    if baseline:
        np.testing.assert_allclose(agent.critic[0].weight.grad.numpy()[0], grad_v, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(agent.critic[0].bias.grad.numpy()[0], grad_c, rtol=1e-5, atol=1e-7)
    else:
        assert agent.critic is None and "critic" not in agent.state_dict()


def test_an_update_steps_the_policy_against_its_gradient():
    probe = _agent(baseline=False)
    probe.loss(probe.episodes_batch(_two_step_episode()))[0].backward()
    agent = _agent(baseline=False)
    before = agent.actor[0].weight.detach().clone()
    stats = agent.update(_two_step_episode(), progress_remaining=1.0)
    # Adam's first step is -lr * sign(gradient), to within its eps (clipping only scales the gradient)
    step = (agent.actor[0].weight.detach() - before).numpy()
    expected = -agent.config.learning_rate * np.sign(probe.actor[0].weight.grad.numpy())
    np.testing.assert_allclose(step, expected, rtol=1e-3)
    assert stats["reinforce/episodes"] == 1 and agent.n_updates == 1


def test_returns_are_whole_episodes_across_rollouts():
    """An episode still running when its rollout ends is learned from in the rollout where it ends, with
    its return to that end; a step that only resets its env is no step of an episode; a time-limit
    truncation ends the return (no bootstrap)."""
    agent = REINFORCE(OBS, ACTIONS, REINFORCEConfig(n_envs=2, n_steps=3, gamma=GAMMA), seed=0)
    obs = np.arange(3 * 2 * 2, dtype=np.float32).reshape(3, 2, 2)  # every step's observation its own
    actions = np.array([[0, 1], [1, 0], [0, 0]])
    terminated = np.array([[False, False], [True, False], [False, False]])
    valid = np.array([[True, True], [True, True], [False, True]])  # env 0's step 2 only resets it
    first = agent.episodes_batch(_rollout(obs, actions, np.array([[1.0, 10.0], [1.0, 10.0], [0.0, 10.0]]),
                                          terminated, np.zeros((3, 2), bool), valid))
    np.testing.assert_allclose(first["returns"], [1 + GAMMA, 1.0], rtol=1e-6)  # env 0's episode only
    np.testing.assert_array_equal(first["obs"], obs[:2, 0])
    assert len(agent.unfinished[0]) == 0 and len(agent.unfinished[1]) == 3

    truncated = np.array([[False, False], [False, True], [False, False]])
    second = agent.episodes_batch(_rollout(obs + 100, actions, np.full((3, 2), 10.0), np.zeros((3, 2), bool),
                                           truncated))
    whole = [10 * sum(GAMMA**k for k in range(5 - t)) for t in range(5)]  # env 1's five steps, no bootstrap
    np.testing.assert_allclose(second["returns"], whole, rtol=1e-6)
    np.testing.assert_array_equal(second["obs"], np.concatenate([obs[:, 1], obs[:2, 1] + 100]))
    np.testing.assert_array_equal(second["actions"], [1, 0, 0, 1, 0])
    assert len(agent.unfinished[0]) == 3 and len(agent.unfinished[1]) == 1


def test_an_update_without_an_ended_episode_changes_nothing():
    agent = _agent()
    before = {k: v.clone() for k, v in agent.actor.state_dict().items()}
    no_end = _rollout(np.ones((2, 1, 2)), np.array([[1], [0]]), np.ones((2, 1)), np.zeros((2, 1), bool),
                      np.zeros((2, 1), bool))
    assert agent.update(no_end, 1.0) == {} and agent.n_updates == 0
    assert all(torch.equal(before[k], v) for k, v in agent.actor.state_dict().items())
    assert len(agent.unfinished[0]) == 2


def test_whole_episodes_splits_at_each_end():
    steps = Steps(np.zeros((5, 1), np.float32), np.zeros(5, np.float32), np.array([1, 2, 3, 4, 5], np.float32),
                  np.array([False, True, True, False, False]))
    done, returns, rest = whole_episodes(steps, 0.5)
    np.testing.assert_allclose(returns, [1 + 0.5 * 2, 2, 3])
    assert len(done) == 3 and len(rest) == 2 and rest.rewards.tolist() == [4, 5]
    none, empty, same = whole_episodes(rest, 0.5)
    assert len(none) == 0 and len(empty) == 0 and len(same) == 2


def test_settings_reinforce_cannot_honour_are_refused():
    with pytest.raises(UserError, match="agent.gae_lambda=0.95: REINFORCE learns from whole episodes"):
        load_config(["agent=reinforce", "agent.gae_lambda=0.95"])
    with pytest.raises(UserError, match="agent.clip_obs must be positive"):
        load_config(["agent=reinforce", "agent.clip_obs=0"])


def test_reinforce_learns_cartpole(tmp_path):
    """Its tuned values at 120k steps (the tuned budget is 300k): far above an untrained policy's ~10."""
    run = train_run(tmp_path / "reinforce", "agent=reinforce", "env=CartPole", "total_steps=120000",
                    "eval_every=40000", "seed=2")
    assert max(eval_means(run)) >= 200, eval_means(run)
