"""Distributions over actions against closed forms and torch.distributions (rlgen/distributions.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from rlgen.distributions import (
    categorical_entropy,
    categorical_log_probs,
    categorical_sample,
    epsilon_greedy,
    epsilon_greedy_probs,
    epsilon_greedy_value,
    gaussian_entropy,
    gaussian_log_prob,
    greedy_probs,
    gumbel_max_sample,
    kl_categorical,
    kl_k1,
    kl_k3,
    np_categorical_entropy,
    np_gaussian_log_prob,
    np_log_softmax,
    np_softmax,
    random_argmax,
    torch_categorical_sample,
)

LOGITS = np.array([[1.0, 0.0, -1.0, 0.5], [3.0, 3.0, -2.0, 0.0]])

# -- categorical -----------------------------------------------------------------------------------------


def test_categorical_log_probs_and_entropy_match_torch():
    logits = torch.tensor(LOGITS)
    dist = Categorical(logits=logits)
    torch.testing.assert_close(categorical_log_probs(logits), dist.logits)
    torch.testing.assert_close(categorical_entropy(logits), dist.entropy())
    # log-probabilities give the same entropy as the logits they came from
    torch.testing.assert_close(categorical_entropy(dist.logits), dist.entropy())


def test_entropy_of_an_impossible_category_is_finite():
    logits = torch.tensor([0.0, 0.0, -math.inf])
    assert categorical_entropy(logits).item() == pytest.approx(math.log(2))
    assert np_categorical_entropy(np.array([0.5, 0.5, 0.0])) == pytest.approx(math.log(2))
    assert np_categorical_entropy(np.array([0.0, 1.0])) == 0.0
    np.testing.assert_allclose(np_categorical_entropy(np.full((3, 5), 0.2)), [math.log(5)] * 3)


def test_numpy_softmax_and_log_softmax_match_torch_and_do_not_overflow():
    torch_logp = torch.log_softmax(torch.tensor(LOGITS), dim=-1).numpy()
    np.testing.assert_allclose(np_log_softmax(LOGITS), torch_logp, rtol=1e-12)
    np.testing.assert_allclose(np_softmax(LOGITS), np.exp(torch_logp), rtol=1e-12)
    huge = np.array([1e4, 1e4 - math.log(3.0)])
    np.testing.assert_allclose(np_softmax(huge), [0.75, 0.25])
    np.testing.assert_allclose(np_log_softmax(huge), np.log([0.75, 0.25]))


def test_categorical_sample_inverts_the_cdf_with_one_uniform_per_row():
    probs = np.tile([0.1, 0.6, 0.0, 0.3], (50_000, 1))
    rng = np.random.default_rng(0)
    actions = categorical_sample(probs, rng)
    np.testing.assert_allclose(np.bincount(actions, minlength=4) / len(actions), probs[0], atol=0.01)
    u = np.random.default_rng(0).random(len(probs))
    np.testing.assert_array_equal(actions, np.searchsorted([0.1, 0.7, 0.7, 1.0], u, side="right"))
    assert rng.random() == np.random.default_rng(0).random(len(probs) + 1)[-1]  # one draw per row
    assert categorical_sample(np.array([0.0, 0.0, 1.0]), rng) == 2  # one row, 0-d result


def test_gumbel_max_sample_follows_the_softmax_without_overflow():
    logits = np.tile(LOGITS[0], (50_000, 1))
    actions = gumbel_max_sample(logits, np.random.default_rng(1))
    np.testing.assert_allclose(np.bincount(actions, minlength=4) / len(actions), np_softmax(LOGITS[0]), atol=0.01)
    assert np.all(gumbel_max_sample(logits * 1e9, np.random.default_rng(1)) == 0)
    assert gumbel_max_sample(np.array([0.0, 50.0, 0.0]), np.random.default_rng(1)) == 1


def test_torch_categorical_sample_follows_the_softmax_and_its_generator():
    logits = torch.tensor(LOGITS[0], dtype=torch.float32).expand(50_000, 4)
    actions = torch_categorical_sample(logits, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(np.bincount(actions, minlength=4) / len(actions), np_softmax(LOGITS[0]), atol=0.01)
    again = torch_categorical_sample(logits, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(actions, again)


# -- greedy and epsilon-greedy ---------------------------------------------------------------------------


def test_greedy_and_epsilon_greedy_probabilities():
    q = np.array([[1.0, 3.0, 3.0, 0.0], [0.0, -1.0, -2.0, 5.0]])
    np.testing.assert_allclose(greedy_probs(q), [[0, 0.5, 0.5, 0], [0, 0, 0, 1]])
    np.testing.assert_allclose(greedy_probs(q[0]), [0, 0.5, 0.5, 0])  # one row
    np.testing.assert_allclose(greedy_probs(np.array([1.0, 1.0 + 1e-12])), [0.5, 0.5])  # rounding is a tie
    np.testing.assert_allclose(epsilon_greedy_probs(q, 0.2), [[0.05, 0.45, 0.45, 0.05], [0.05, 0.05, 0.05, 0.85]])
    assert epsilon_greedy_value(q[0], 0.2) == pytest.approx(0.05 * 1 + 0.45 * 3 * 2)
    assert epsilon_greedy_value(q[1], 0.0) == 5.0


def test_random_argmax_is_uniform_over_ties_and_draws_only_for_ties():
    rng = np.random.default_rng(0)
    values = np.tile([2.0, 0.0, 2.0, 2.0], (30_000, 1))
    picks = random_argmax(values, rng)
    np.testing.assert_allclose(np.bincount(picks, minlength=4) / len(picks), [1 / 3, 0, 1 / 3, 1 / 3], atol=0.01)
    state = rng.bit_generator.state
    assert random_argmax(np.array([[0.0, 1.0], [3.0, 2.0]]), rng).tolist() == [1, 0]
    assert rng.bit_generator.state == state  # no tie: the stream is untouched
    assert int(random_argmax(np.array([5.0, 1.0, 5.0]), rng)) in (0, 2)


def test_epsilon_greedy_samples_its_probabilities():
    q = np.tile([1.0, 3.0, 3.0, 0.0], (60_000, 1))
    actions = epsilon_greedy(q, 0.2, np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(actions, minlength=4) / len(actions), epsilon_greedy_probs(q[0], 0.2),
                               atol=0.01)
    assert set(epsilon_greedy(q[:100], 0.0, np.random.default_rng(0)).tolist()) == {1, 2}
    assert epsilon_greedy(np.zeros((0, 3)), 0.5, np.random.default_rng(0)).shape == (0,)


def test_epsilon_greedy_draws_a_coin_then_the_random_action_then_the_tie_break():
    """One row: the stream of `if rng.random() < eps: rng.integers(A) else argmax with random ties`."""
    q = np.array([[0.0, 2.0, 2.0, 1.0]])
    for seed in range(30):
        rng, ref = np.random.default_rng(seed), np.random.default_rng(seed)
        got = int(epsilon_greedy(q, 0.4, rng)[0])
        want = int(ref.integers(4)) if ref.random() < 0.4 else int(ref.choice([1, 2]))
        assert got == want and rng.random() == ref.random()


# -- Gaussian --------------------------------------------------------------------------------------------


def test_gaussian_log_prob_and_entropy_match_torch_distributions():
    mean = torch.tensor([[0.3, -1.0], [2.0, 0.0]])
    log_std = torch.tensor([-0.7, 0.4])
    x = torch.tensor([[0.0, 0.5], [1.0, -3.0]])
    dist = Normal(mean, log_std.exp())
    torch.testing.assert_close(gaussian_log_prob(mean, log_std, x), dist.log_prob(x).sum(-1))
    torch.testing.assert_close(gaussian_entropy(log_std), dist.entropy()[0].sum())
    np.testing.assert_allclose(np_gaussian_log_prob(mean.numpy(), log_std.numpy(), x.numpy()),
                               dist.log_prob(x).sum(-1).numpy(), rtol=1e-6)
    # a standard normal at its mean: -1/2 log(2 pi) per dimension
    assert gaussian_log_prob(torch.zeros(3), torch.zeros(3), torch.zeros(3)).item() == pytest.approx(
        -1.5 * math.log(2 * math.pi))


# -- KL --------------------------------------------------------------------------------------------------


def test_kl_estimators_average_to_the_exact_kl():
    lp, lq = torch.tensor([0.5, -1.0, 2.0, 0.0]), torch.tensor([0.0, 0.3, 1.0, -0.5])
    p, logp, logq = torch.softmax(lp, 0), torch.log_softmax(lp, 0), torch.log_softmax(lq, 0)
    exact = kl_divergence(Categorical(logits=lp), Categorical(logits=lq)).item()
    assert kl_categorical(lp, lq).item() == pytest.approx(exact, rel=1e-6)
    assert float((p * kl_k1(logp, logq)).sum()) == pytest.approx(exact, rel=1e-6)
    assert float((p * kl_k3(logp, logq)).sum()) == pytest.approx(exact, rel=1e-6)
    assert (kl_k3(logp, logq) >= 0).all() and (kl_k1(logp, logq) < 0).any()
    assert kl_k3(logp, logp).abs().max().item() == 0.0 and kl_categorical(lp, lp).item() == pytest.approx(0.0)
