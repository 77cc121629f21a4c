"""Invariants of rlgen's math for random inputs (hypothesis): limits, symmetries, bounds.

Derandomized, so that CI runs the same examples every time; no example database is written.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.distributions import Categorical, Normal, kl_divergence

from rlgen.distributions import (
    categorical_entropy,
    categorical_log_probs,
    epsilon_greedy_probs,
    gaussian_entropy,
    gaussian_log_prob,
    kl_categorical,
    kl_k3,
    np_categorical_entropy,
    np_gaussian_log_prob,
    np_log_softmax,
    np_softmax,
)
from rlgen.losses import clip_fraction, clipped_surrogate_loss, normalize_advantages
from rlgen.mdp import Backup, TabularModel, evaluate_policy, solve_values, value_iteration
from rlgen.returns import gae
from rlgen.soft import soft_value

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None)
FLOATS = st.floats(-10.0, 10.0, allow_nan=False, width=32)


@st.composite
def rollouts(draw):
    """Time-major (T, N) rewards, (T + 1, N) values, terminations and truncations."""
    T, N = draw(st.integers(1, 12)), draw(st.integers(1, 3))
    rewards = draw(hnp.arrays(np.float32, (T, N), elements=FLOATS))
    values = draw(hnp.arrays(np.float32, (T + 1, N), elements=FLOATS))
    terminated = draw(hnp.arrays(np.bool_, (T, N)))
    truncated = draw(hnp.arrays(np.bool_, (T, N))) & ~terminated
    gamma = draw(st.floats(0.0, 1.0))
    return rewards, values, terminated, terminated | truncated, gamma


def monte_carlo_advantage(r, v, term, done, gamma, t, n) -> float:
    """sum of discounted rewards to the end of the episode (or of the rollout), plus the discounted
    value it bootstraps from unless the episode terminated, minus V(s_t): written step by step."""
    g, discount = 0.0, 1.0
    for k in range(t, len(r)):
        g += discount * float(r[k, n])
        discount *= gamma
        if term[k, n]:
            return g - float(v[t, n])
        if done[k, n]:  # truncated: bootstrap from the final observation's value
            return g + discount * float(v[k + 1, n]) - float(v[t, n])
    return g + discount * float(v[len(r), n]) - float(v[t, n])


@PROPERTY
@given(rollouts())
def test_gae_lambda_0_is_the_td_error_and_lambda_1_the_monte_carlo_return_minus_v(rollout):
    r, v, term, done, gamma = rollout
    td = r + gamma * np.where(term, 0.0, v[1:]) - v[:-1]
    np.testing.assert_allclose(gae(r, v, term, done, gamma, 0.0), td, rtol=1e-5, atol=1e-4)
    mc = [[monte_carlo_advantage(r, v, term, done, gamma, t, n) for n in range(r.shape[1])] for t in range(len(r))]
    np.testing.assert_allclose(gae(r, v, term, done, gamma, 1.0), mc, rtol=1e-4, atol=1e-3)


@PROPERTY
@given(rollouts(), st.floats(0.0, 1.0), st.floats(0.01, 100.0))
def test_normalised_gae_advantages_do_not_depend_on_the_reward_scale(rollout, lam, scale):
    r, v, term, done, gamma = rollout
    adv = torch.as_tensor(gae(r, v, term, done, gamma, lam), dtype=torch.float64).ravel()
    scaled = torch.as_tensor(gae(scale * r, scale * v, term, done, gamma, lam), dtype=torch.float64).ravel()
    if len(adv) > 1 and adv.std() > 1e-2:
        torch.testing.assert_close(normalize_advantages(scaled), normalize_advantages(adv), rtol=1e-3, atol=1e-3)


@PROPERTY
@given(hnp.arrays(np.float64, st.integers(2, 40), elements=st.floats(-100, 100)), st.floats(-1e3, 1e3),
       st.floats(1e-2, 1e2), st.booleans())
def test_advantage_normalisation_is_invariant_to_shift_and_positive_scale(adv, shift, scale, masked):
    a = torch.as_tensor(adv)
    if min(a.std(), scale * a.std()) < 0.1:
        return  # no scale to normalise, or one where the 1e-8 guard added to the std is not negligible
    mask = torch.ones_like(a) if masked else None
    torch.testing.assert_close(normalize_advantages(scale * a + shift, mask), normalize_advantages(a, mask),
                               rtol=1e-5, atol=1e-5)
    normed = normalize_advantages(a, mask)
    assert abs(normed.mean().item()) < 1e-9


@PROPERTY
@given(hnp.arrays(np.float32, st.integers(1, 50), elements=st.floats(-20, 0, width=32)),
       hnp.arrays(np.float32, st.integers(1, 50), elements=FLOATS), st.floats(0.01, 0.5))
def test_at_the_old_policy_the_ratio_is_one_and_the_clip_inactive(logp, adv, clip):
    n = min(len(logp), len(adv))
    logp, adv = torch.as_tensor(logp[:n]), torch.as_tensor(adv[:n])
    ratio = (logp - logp).exp()
    assert torch.all(ratio == 1.0)
    assert clip_fraction(ratio, clip).item() == 0.0
    assert clipped_surrogate_loss(adv, ratio, clip).item() == -adv.mean().item()
    assert kl_k3(logp, logp).abs().max().item() == 0.0


@PROPERTY
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=st.floats(-50, 50)),
       st.floats(1e-3, 10.0))
def test_the_soft_value_lies_between_the_max_and_the_max_plus_ent_coef_log_actions(q, ent_coef):
    v, top = soft_value(q, ent_coef), q.max(axis=-1)
    assert np.all(v >= top - 1e-9)
    assert np.all(v <= top + ent_coef * np.log(q.shape[-1]) + 1e-9)


@st.composite
def mdps(draw):
    """A random small TabularModel: S states, A actions, K outcomes each, some terminating."""
    S, A, K = draw(st.integers(1, 6)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    next_states = draw(hnp.arrays(np.int64, (S, A, K), elements=st.integers(0, S - 1)))
    weights = draw(hnp.arrays(np.float64, (S, A, K), elements=st.floats(0.0, 1.0)))
    weights[..., 0] += 1e-3  # every row has an outcome
    rewards = draw(hnp.arrays(np.float64, (S, A, K), elements=st.floats(-5, 5)))
    terminated = draw(hnp.arrays(np.bool_, (S, A, K)))
    probs = weights / weights.sum(axis=2, keepdims=True)
    return TabularModel(next_states, probs, rewards, terminated, np.full(S, 1.0 / S))


def dense_q(m: TabularModel, v: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = sum_k p_k (r_k + gamma (1 - terminated_k) V(s'_k)), one (s, a, k) at a time."""
    S, A, K = m.next_states.shape
    q = np.zeros((S, A))
    for s in range(S):
        for a in range(A):
            for k in range(K):
                boot = 0.0 if m.terminated[s, a, k] else gamma * v[m.next_states[s, a, k]]
                q[s, a] += m.probs[s, a, k] * (m.rewards[s, a, k] + boot)
    return q


@PROPERTY
@given(mdps(), st.floats(0.0, 0.95), st.data())
def test_bellman_backups_agree_with_a_dense_linear_solve(m, gamma, data):
    S, A = m.n_states, m.n_actions
    v = data.draw(hnp.arrays(np.float64, S, elements=st.floats(-10, 10)))
    np.testing.assert_allclose(Backup(m, gamma).q(v), dense_q(m, v, gamma), atol=1e-12)
    policy = data.draw(hnp.arrays(np.float64, (S, A), elements=st.floats(0.01, 1.0)))
    policy /= policy.sum(axis=1, keepdims=True)
    # V^pi = (I - gamma P_pi)^-1 r_pi, with P_pi and r_pi summed here outcome by outcome
    p_pi, r_pi = np.zeros((S, S)), np.zeros(S)
    for s, a, k in np.ndindex(*m.next_states.shape):
        w = policy[s, a] * m.probs[s, a, k]
        r_pi[s] += w * m.rewards[s, a, k]
        p_pi[s, m.next_states[s, a, k]] += 0.0 if m.terminated[s, a, k] else w
    exact = np.linalg.solve(np.eye(S) - gamma * p_pi, r_pi)
    np.testing.assert_allclose(solve_values(m, policy, gamma), exact, atol=1e-9)
    np.testing.assert_allclose(evaluate_policy(m, policy, gamma, tol=1e-12), exact, atol=1e-9)


@PROPERTY
@given(mdps(), st.floats(0.0, 0.95))
def test_value_iterations_fixed_point_satisfies_the_optimality_equation(m, gamma):
    v, _ = value_iteration(m, gamma, tol=1e-12)
    np.testing.assert_allclose(v, dense_q(m, v, gamma).max(axis=1), atol=1e-9)


@PROPERTY
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6), elements=st.floats(-20, 20,
                                                                                                     width=32)),
       st.data())
def test_categorical_log_probs_and_entropies_agree_with_torch_distributions(logits, data):
    other = data.draw(hnp.arrays(np.float32, logits.shape, elements=st.floats(-20, 20, width=32)))
    lt, ot = torch.as_tensor(logits), torch.as_tensor(other)
    dist = Categorical(logits=lt)
    torch.testing.assert_close(categorical_log_probs(lt), dist.logits)
    torch.testing.assert_close(categorical_entropy(lt), dist.entropy(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kl_categorical(lt, ot), kl_divergence(dist, Categorical(logits=ot)),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np_log_softmax(logits), dist.logits.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np_categorical_entropy(np_softmax(logits.astype(np.float64))),
                               dist.entropy().numpy(), rtol=1e-4, atol=1e-4)


@PROPERTY
@given(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), st.data())
def test_gaussian_log_probs_and_entropies_agree_with_torch_distributions(shape, data):
    def draw(low, high):
        return data.draw(hnp.arrays(np.float64, shape, elements=st.floats(low, high)))

    mean, x, log_std = draw(-10, 10), draw(-10, 10), draw(-3, 2)
    mt, xt, st_ = torch.as_tensor(mean), torch.as_tensor(x), torch.as_tensor(log_std)
    dist = Normal(mt, st_.exp())
    torch.testing.assert_close(gaussian_log_prob(mt, st_, xt), dist.log_prob(xt).sum(-1))
    torch.testing.assert_close(gaussian_entropy(st_), dist.entropy().sum(-1))
    np.testing.assert_allclose(np_gaussian_log_prob(mean, log_std, x), dist.log_prob(xt).sum(-1).numpy(), rtol=1e-9)


@PROPERTY
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=st.floats(-5, 5)),
       st.floats(0.0, 1.0))
def test_epsilon_greedy_probabilities_sum_to_one_and_favour_the_greedy_action(q, epsilon):
    probs = epsilon_greedy_probs(q, epsilon)
    n_actions = q.shape[-1]
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
    assert np.all(probs >= epsilon / n_actions - 1e-12)
    greedy = q >= q.max(axis=-1, keepdims=True) - 1e-9  # values within 1e-9 of the max are ties
    on_greedy = np.where(greedy, probs, 0.0).sum(axis=-1)
    assert np.all(on_greedy >= 1 - epsilon + epsilon / n_actions - 1e-12)
