"""PPO: log-probabilities against torch.distributions, the clipped surrogate on hand-made ratios,
and learning CartPole (Discrete) and Pendulum (Box) from the command line."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import eval_means, read_json, train_run, tuned_file
from torch.distributions import Categorical, Normal

from rlgen.agents.ppo import PPO, PPOConfig
from rlgen.nets.mlp import mlp, numpy_forward

OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)


def _ppo(action_space: gym.Space, **overrides) -> PPO:
    return PPO(OBS, action_space, PPOConfig(**overrides), seed=0)


def _obs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).normal(size=(n, 3)), dtype=torch.float32)


def _set_output_bias(net: torch.nn.Sequential, bias: list[float]) -> None:
    with torch.no_grad():
        net[-1].bias.copy_(torch.tensor(bias))


def test_categorical_log_prob_and_entropy_match_torch_distributions():
    agent = _ppo(gym.spaces.Discrete(4))
    _set_output_bias(agent.actor, [1.0, 0.0, -1.0, 0.5])  # a policy far from uniform
    obs = _obs(16)
    actions = torch.as_tensor(np.random.default_rng(1).integers(0, 4, 16))
    logp, entropy, value = agent.evaluate_actions(obs, actions)
    with torch.no_grad():
        dist = Categorical(logits=agent.actor(obs))
        torch.testing.assert_close(logp, dist.log_prob(actions))
        torch.testing.assert_close(entropy, dist.entropy())
        torch.testing.assert_close(value, agent.critic(obs)[:, 0])


def test_gaussian_log_prob_and_entropy_match_torch_distributions():
    agent = _ppo(gym.spaces.Box(-100.0, 100.0, (2,), np.float32))
    with torch.no_grad():
        agent.log_std.copy_(torch.tensor([-0.7, 0.4]))
    obs = _obs(16)
    actions = torch.as_tensor(np.random.default_rng(2).normal(size=(16, 2)), dtype=torch.float32)
    logp, entropy, _ = agent.evaluate_actions(obs, actions)
    with torch.no_grad():
        dist = Normal(agent.actor(obs), agent.log_std.exp())
        torch.testing.assert_close(logp, dist.log_prob(actions).sum(1))
        torch.testing.assert_close(entropy, dist.entropy().sum(1))


def test_stochastic_discrete_actions_follow_the_softmax_of_the_policy():
    agent = _ppo(gym.spaces.Discrete(4))
    _set_output_bias(agent.actor, [1.0, 0.0, -1.0, 0.5])
    obs = np.repeat(np.array([[0.3, -0.2, 0.1]], dtype=np.float32), 20_000, axis=0)
    with torch.no_grad():
        probs = torch.softmax(agent.actor(torch.as_tensor(obs[:1])), dim=1)[0].numpy()
    counts = np.bincount(agent.act(obs, deterministic=False), minlength=4) / len(obs)
    np.testing.assert_allclose(counts, probs, atol=0.015)
    assert (agent.act(obs[:5], deterministic=True) == probs.argmax()).all()


def test_stochastic_box_actions_are_gaussian_around_the_mean():
    agent = _ppo(gym.spaces.Box(-100.0, 100.0, (2,), np.float32))
    with torch.no_grad():
        agent.log_std.copy_(torch.tensor([-1.0, 0.5]))
    obs = np.repeat(np.array([[0.3, -0.2, 0.1]], dtype=np.float32), 20_000, axis=0)
    with torch.no_grad():
        mean = agent.actor(torch.as_tensor(obs[:1]))[0].numpy()
    actions = agent.act(obs, deterministic=False)
    np.testing.assert_allclose(actions.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(actions.std(0), np.exp([-1.0, 0.5]), rtol=0.03)
    np.testing.assert_allclose(agent.act(obs[:3], deterministic=True), np.repeat(mean[None], 3, 0), atol=1e-5)


def test_box_actions_are_clipped_to_the_action_space():
    agent = _ppo(gym.spaces.Box(-0.5, 0.5, (2,), np.float32))
    with torch.no_grad():
        agent.log_std.copy_(torch.tensor([2.0, 2.0]))  # std 7.4: most samples fall outside
    actions = agent.act(np.zeros((1000, 3), np.float32), deterministic=False)
    assert actions.min() >= -0.5 and actions.max() <= 0.5


def _surrogate(ratio: np.ndarray, adv: np.ndarray, clip: float) -> float:
    """Schulman et al. 2017 eq. 7, written case by case: a positive advantage gains nothing from
    raising the ratio past 1 + clip, a negative one nothing from lowering it past 1 - clip."""
    per_sample = np.where(adv >= 0, adv * np.minimum(ratio, 1 + clip), adv * np.maximum(ratio, 1 - clip))
    return float(-per_sample.mean())


def test_clipped_surrogate_on_hand_made_ratios_and_advantages():
    """One epoch, one minibatch, no normalisation: the reported losses are those of the policy
    before its update, so the stored log-probs set the ratios exactly."""
    clip = 0.2
    agent = _ppo(gym.spaces.Discrete(3), n_epochs=1, batch_size=8, normalize_advantage=False, ent_coef=0.0,
                 clip_range=clip)
    obs = _obs(8, seed=5)
    actions = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    ratio = np.array([0.5, 0.85, 1.0, 1.1, 1.3, 0.7, 1.5, 1.19], dtype=np.float32)
    adv = np.array([1.0, -2.0, 0.5, -1.0, 2.0, 1.5, -0.5, 3.0], dtype=np.float32)
    returns = np.linspace(-1, 1, 8).astype(np.float32)
    with torch.no_grad():
        logp_new, entropy, value = agent.evaluate_actions(obs, actions)
    batch = {
        "obs": obs.numpy(),
        "actions": actions.numpy().astype(np.float32),
        "logp": logp_new.numpy() - np.log(ratio),  # so that exp(logp_new - logp_old) = ratio
        "values": value.numpy(),
        "advantages": adv,
        "returns": returns,
    }
    stats = agent.train(batch, progress_remaining=1.0)
    assert stats["train/policy_gradient_loss"] == pytest.approx(_surrogate(ratio, adv, clip), abs=1e-5)
    assert stats["train/clip_fraction"] == pytest.approx(np.mean(np.abs(ratio - 1) > clip))
    assert stats["train/approx_kl"] == pytest.approx(np.mean(ratio - 1 - np.log(ratio)), abs=1e-5)
    assert stats["train/value_loss"] == pytest.approx(float(np.mean((value.numpy() - returns) ** 2)), rel=1e-5)
    assert stats["train/entropy_loss"] == pytest.approx(-float(entropy.mean()), rel=1e-5)
    # the update moved the policy: the same log-probs are no longer those of the new policy
    with torch.no_grad():
        assert not torch.allclose(agent.evaluate_actions(obs, actions)[0], logp_new)


def test_box_update_raises_no_warning():
    agent = _ppo(gym.spaces.Box(-1.0, 1.0, (2,), np.float32), n_epochs=1, batch_size=4)
    n = 4
    batch = {
        "obs": _obs(n).numpy(), "actions": np.zeros((n, 2), np.float32), "logp": np.zeros(n, np.float32),
        "values": np.zeros(n, np.float32), "advantages": np.ones(n, np.float32), "returns": np.ones(n, np.float32),
    }
    stats = agent.train(batch, 1.0)
    # equal advantages normalise to 0 and ent_coef is 0: nothing moves log_std from log_std_init = 0
    assert stats["train/std"] == 1.0 and stats["train/policy_gradient_loss"] == 0.0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_box_update_widens_the_gaussian_towards_far_actions_that_paid(sign):
    """Actions 2 std from the mean with advantage +sign, actions at the mean with -sign: d log pi /
    d log std = z^2 - 1 is +3 for the first and -1 for the second, so the one Adam step (of size
    lr, whatever the gradient's scale) raises log std for sign +1 and lowers it for -1."""
    lr = 3e-4
    agent = _ppo(gym.spaces.Box(-10.0, 10.0, (2,), np.float32), n_epochs=1, batch_size=4, learning_rate=lr)
    obs = _obs(4)
    with torch.no_grad():
        mean = agent.actor(obs).numpy()
        actions = torch.as_tensor(mean + np.array([[2.0, -2.0], [-2.0, 2.0], [0.0, 0.0], [0.0, 0.0]], np.float32))
        logp, _, value = agent.evaluate_actions(obs, actions)
    batch = {
        "obs": obs.numpy(), "actions": actions.numpy(), "logp": logp.numpy(), "values": value.numpy(),
        "advantages": sign * np.array([1.0, 1.0, -1.0, -1.0], np.float32), "returns": value.numpy(),
    }
    stats = agent.train(batch, 1.0)
    np.testing.assert_allclose(agent.log_std.detach().numpy(), [sign * lr] * 2, rtol=1e-3)
    assert stats["train/std"] == pytest.approx(np.exp(sign * lr), rel=1e-6)
    assert stats["train/approx_kl"] == pytest.approx(0.0, abs=1e-7)  # stats are of the policy before the step


@pytest.mark.slow
def test_ppo_solves_cartpole_with_its_tuned_config(tmp_path):
    run = train_run(tmp_path / "run", "agent=ppo", "env=CartPole", "seed=0")
    summary = read_json(run / "summary.json")
    assert summary["total_steps"] >= tuned_file("ppo", "CartPole")["total_steps"]  # the tuned budget
    assert summary["eval_mean_return"] >= 475, eval_means(run)
    assert summary["solved_at_step"] is not None


@pytest.mark.slow
def test_ppo_improves_on_pendulum_box_actions(tmp_path):
    """A short budget (a third of the tuned one) already lifts the return far above its start."""
    run = train_run(tmp_path / "run", "agent=ppo", "env=Pendulum", "seed=0", "total_steps=40960",
                    "eval_every=8192")
    means = eval_means(run)
    assert means[0] < -1000, means  # after one update the policy still swings at random
    assert means[-1] > means[0] + 400 and means[-1] > -800, means


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("ortho_init", [False, True])
def test_numpy_forward_matches_the_torch_module(activation, ortho_init):
    torch.manual_seed(0)
    net = mlp(5, [16, 8], 3, activation, ortho_init, out_gain=1.0)
    x = np.random.default_rng(0).normal(size=(32, 5)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(numpy_forward(net)(x), expected, rtol=1e-5, atol=1e-6)
