"""The math of the policies learned from demonstrations: the mixture density network's log-density
(against torch.distributions and a hand computation) and loss, and the weights' moving average."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from rlgen.compose import load_config
from rlgen.distributions import gaussian_log_prob, gaussian_mixture_log_prob
from rlgen.losses import mixture_density_nll
from rlgen.nets.optim import ema_decay
from rlgen.trainer import build_agent


def _torch_mixture(logits: torch.Tensor, means: torch.Tensor, log_std: torch.Tensor) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(logits=logits), Independent(Normal(means, log_std.exp()), 1))


@pytest.mark.parametrize(("batch", "K", "D"), [((5,), 3, 2), ((2, 4), 1, 1), ((7,), 6, 3)])
def test_mixture_log_prob_matches_torch_distributions(batch, K, D):
    g = torch.Generator().manual_seed(K * 10 + D)
    logits = 3 * torch.randn(*batch, K, generator=g, dtype=torch.float64)
    means = torch.randn(*batch, K, D, generator=g, dtype=torch.float64)
    log_std = torch.randn(*batch, K, D, generator=g, dtype=torch.float64) - 1
    x = torch.randn(*batch, D, generator=g, dtype=torch.float64)
    expected = _torch_mixture(logits, means, log_std).log_prob(x)
    torch.testing.assert_close(gaussian_mixture_log_prob(logits, means, log_std, x), expected)


def test_mixture_log_prob_by_hand():
    """0.25 N(x; -1, 1) + 0.75 N(x; 2, 0.5^2) at x = 0."""
    logits = torch.log(torch.tensor([0.25, 0.75], dtype=torch.float64))
    means = torch.tensor([[-1.0], [2.0]], dtype=torch.float64)
    log_std = torch.log(torch.tensor([[1.0], [0.5]], dtype=torch.float64))
    root_2pi = math.sqrt(2 * math.pi)
    density = 0.25 * math.exp(-0.5) / root_2pi + 0.75 * math.exp(-0.5 * 16) / (0.5 * root_2pi)
    value = gaussian_mixture_log_prob(logits, means, log_std, torch.zeros(1, dtype=torch.float64))
    assert value.item() == pytest.approx(math.log(density), rel=1e-12)


def test_one_component_is_a_gaussian_and_far_points_stay_finite():
    means, log_std, x = torch.tensor([[0.3, -0.2]]), torch.tensor([[-0.5, 0.1]]), torch.tensor([1.0, 2.0])
    torch.testing.assert_close(gaussian_mixture_log_prob(torch.tensor([4.2]), means, log_std, x),
                               gaussian_log_prob(means[0], log_std[0], x))
    # every component's density underflows to 0 in float32 here; log-sum-exp keeps the log finite
    far = gaussian_mixture_log_prob(torch.zeros(2), torch.zeros(2, 1), torch.full((2, 1), -6.9), torch.tensor([50.0]))
    assert torch.isfinite(far) and far.item() < -1e6


def test_mixture_density_nll_is_the_mean_negative_log_likelihood_and_differentiable():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 3, generator=g, requires_grad=True)
    means, log_std = torch.randn(8, 3, 2, generator=g), torch.randn(8, 3, 2, generator=g)
    actions = torch.randn(8, 2, generator=g)
    loss = mixture_density_nll(logits, means, log_std, actions)
    torch.testing.assert_close(loss, -_torch_mixture(logits, means, log_std).log_prob(actions).mean())
    loss.backward()
    # d NLL / d logit_k = (pi_k - gamma_k) / B, gamma the components' posterior responsibilities
    # (Bishop 2006, PRML eq. 5.155)
    log_joint = torch.log_softmax(logits, -1) + gaussian_log_prob(means, log_std, actions.unsqueeze(1))
    gamma = torch.softmax(log_joint, -1)
    torch.testing.assert_close(logits.grad, (torch.softmax(logits, -1) - gamma).detach() / 8)


def test_the_weights_moving_average_starts_at_the_weights_and_warms_up_as_diffusion_policys():
    assert ema_decay(0, 0.75, 0.9999) == 0.0  # the first update copies the weights
    assert ema_decay(1, 0.75, 0.9999) == pytest.approx(1 - 2**-0.75)
    assert ema_decay(99, 0.75, 0.9999) == pytest.approx(1 - 100**-0.75)
    assert ema_decay(10**9, 0.75, 0.9999) == 0.9999  # capped


def test_acting_uses_the_moving_average_and_training_goes_on_from_the_trained_weights():
    agent = build_agent(load_config(["agent=bc", "env=Step", "agent.n_trajectories=20", "agent.batch_size=8",
                                     "agent.ema_power=0.75", "agent.net_arch=[8]"]))
    agent.load_demos()
    for _ in range(30):
        agent.fit_step()
        agent.num_steps += 1
    trained = agent.optimizer.data.clone()
    obs = np.linspace(-1, 1, 5, dtype=np.float32)[:, None]
    acted = agent.act(obs)
    assert torch.equal(agent.optimizer.data, trained)  # put back after acting
    agent.optimizer.data.copy_(agent.ema)
    assert np.array_equal(agent.act(obs), acted)  # what acting used was the average
    assert not torch.equal(agent.ema, trained)
