"""Distributions over actions: log-probabilities, entropies, KL estimators and samplers.

Torch functions (the update's losses) and their NumPy twins (acting, tabular agents) side by side,
so that the two sides of an agent compute the same thing. Everything works over the last axis and
keeps the leading ones.

Invalid-action masking (Huang & Ontanon 2022, "A Closer Look at Invalid Action Masking in Policy
Gradient Algorithms"): a `mask` is a bool array broadcasting against the action axis, True where the
action is valid, with at least one valid action per row; None means every action is valid. Policies
over logits replace a masked logit by MASKED_LOGIT, value-based choices take their max, argmax and
random actions over the valid actions only. Tested against closed forms and torch.distributions
(tests/test_distributions.py, tests/test_math_properties.py).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOG_2PI = float(np.log(2 * np.pi))

MASKED_LOGIT = -1e8
"""the logit of an invalid action, as sb3-contrib's MaskableCategorical sets it: finite, so log-softmax,
its gradient and the entropy stay finite, and low enough that exp underflows to a probability of
exactly 0 in float32 and float64"""

# -- categorical ----------------------------------------------------------------------------------------


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The logits with every invalid action's replaced by MASKED_LOGIT (None: all valid, unchanged).
    Their softmax, log-probabilities and `categorical_entropy` are those of the policy restricted to
    the valid actions (a masked action adds 0 * MASKED_LOGIT = 0 to the entropy)."""
    if mask is None:
        return logits
    return torch.where(mask.bool(), logits, torch.tensor(MASKED_LOGIT, dtype=logits.dtype))


def np_masked_logits(logits: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """NumPy twin of `masked_logits`."""
    return logits if mask is None else np.where(mask, logits, np.asarray(MASKED_LOGIT, dtype=logits.dtype))


def categorical_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log softmax(logits): the log-probability of every category."""
    return F.log_softmax(logits, dim=-1)


def categorical_entropy(logits_or_logp: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits); log-probabilities work too (log softmax leaves them as they
    are). A category of probability 0 (logit -inf) adds 0: its log-probability is clamped to the
    most negative finite number, as torch.distributions.Categorical does, so 0 * log 0 is not nan."""
    logp = F.log_softmax(logits_or_logp, dim=-1).clamp(min=torch.finfo(logits_or_logp.dtype).min)
    return -(logp.exp() * logp).sum(dim=-1)


def np_softmax(logits: np.ndarray) -> np.ndarray:
    """softmax over the last axis, shifted by the max so that no exponent is positive."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def np_log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis (the log-sum-exp trick: shifted by the max first)."""
    logp = logits - logits.max(axis=-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=-1, keepdims=True))
    return logp


def np_categorical_entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis, with 0 log 0 = 0."""
    probs = np.asarray(probs, dtype=np.float64)
    logs = np.log(np.where(probs > 0, probs, 1.0))
    return -(probs * logs).sum(axis=-1)


def categorical_sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of `probs` by inverting the CDF: one uniform draw per row."""
    cum = np.cumsum(probs, axis=-1)
    u = rng.random((*cum.shape[:-1], 1))
    # rounding can leave the last cumulative sum just below u: that row takes the last category
    return np.minimum((u > cum).sum(axis=-1), cum.shape[-1] - 1)


def torch_categorical_sample(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One category per row of softmax(logits) (B, V) -> (B,), drawn from `generator` (torch.multinomial)."""
    return torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)


def gumbel_max_sample(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of softmax(logits): argmax(logits + G) with G ~ Gumbel(0, 1) i.i.d.
    (Gumbel 1954; Maddison et al. 2014, "A* Sampling", sec. 2). No exponentials, so nothing
    overflows however large the logits. One uniform draw per category, G = -log(-log U)."""
    return (logits - np.log(-np.log(rng.random(np.shape(logits))))).argmax(axis=-1)


# -- greedy and epsilon-greedy over action values (NumPy) -------------------------------------------------


def masked_values(q: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """q with every invalid action's value at -inf, so no max or argmax over the row picks it
    (None: q unchanged)."""
    return q if mask is None else np.where(mask, q, -np.inf)


def torch_masked_values(q: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Torch twin of `masked_values`."""
    return q if mask is None else q.masked_fill(~mask.bool(), -torch.inf)


def uniform_probs(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """The uniform policy over the valid actions, (..., A) of `shape` (None: over all of them)."""
    valid = np.ones(shape) if mask is None else np.broadcast_to(mask, shape).astype(np.float64)
    return valid / valid.sum(axis=-1, keepdims=True)


def greedy_probs(q: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The greedy policy of action values q over the last axis (over the valid actions of `mask`),
    ties sharing the mass equally (so ties stay visible in a saved policy). Values within 1e-9 of the
    max count as tied: sums of the same returns in a different order differ in the last bits."""
    q = masked_values(q, mask)
    best = q >= q.max(axis=-1, keepdims=True) - 1e-9
    return best / best.sum(axis=-1, keepdims=True)


def epsilon_greedy_probs(q: np.ndarray, epsilon: float, mask: np.ndarray | None = None) -> np.ndarray:
    """The epsilon-soft policy: epsilon spread over all (valid) actions, the rest on the greedy ones
    (Sutton & Barto Section 5.4)."""
    spread = epsilon / q.shape[-1] if mask is None else epsilon * uniform_probs(mask, q.shape)
    return spread + (1.0 - epsilon) * greedy_probs(q, mask)


def epsilon_greedy_value(q_row: np.ndarray, epsilon: float, mask: np.ndarray | None = None) -> float:
    """sum_a pi(a|s) Q(s, a) for one state under the epsilon-greedy policy (Expected SARSA's
    bootstrap, Sutton & Barto eq. 6.9), the sum over the valid actions of `mask`."""
    probs = epsilon_greedy_probs(q_row, epsilon, mask)
    return float(probs @ np.where(probs > 0, q_row, 0.0))  # a masked action's value never enters, even inf


def random_argmax(values: np.ndarray, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
    """argmax over the last axis (over the valid actions of `mask`) with ties broken uniformly at
    random (zero-initialised estimates would otherwise always pick the first action). Draws from
    `rng` only for rows with a tie."""
    values = masked_values(values, mask)
    best = values == values.max(axis=-1, keepdims=True)
    n_best = best.sum(axis=-1)
    pick = np.zeros(n_best.shape, dtype=np.int64)  # which of the tied maxima, in index order
    tied = n_best > 1
    if tied.any():
        pick[tied] = rng.integers(0, n_best[tied])
    return (np.cumsum(best, axis=-1) <= pick[..., None]).sum(axis=-1)


def random_actions(n: int, n_actions: int, rng: np.random.Generator, mask: np.ndarray | None = None) -> np.ndarray:
    """(n,) uniformly random actions, each among its row's valid actions of an (n, A) `mask` (None: among
    all, one rng.integers draw, as before masks existed)."""
    if mask is None:
        return rng.integers(n_actions, size=n)
    return categorical_sample(uniform_probs(mask, (n, n_actions)), rng)


def epsilon_greedy(q_rows: np.ndarray, epsilon: float, rng: np.random.Generator,
                   mask: np.ndarray | None = None) -> np.ndarray:
    """(n,) actions for (n, A) action values: with probability epsilon a uniformly random (valid) action,
    else a greedy one (ties at random). Draws one uniform per row, then the random actions, then
    the tie-breaks."""
    n, n_actions = q_rows.shape
    explore = rng.random(n) < epsilon
    actions = np.empty(n, dtype=np.int64)
    rows = None if mask is None else np.broadcast_to(mask, q_rows.shape)
    actions[explore] = random_actions(int(explore.sum()), n_actions, rng, None if rows is None else rows[explore])
    actions[~explore] = random_argmax(q_rows[~explore], rng, None if rows is None else rows[~explore])
    return actions


# -- diagonal Gaussian ------------------------------------------------------------------------------------


def gaussian_log_prob(mean: torch.Tensor, log_std: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, diag(exp(log_std))^2), summed over the last axis (independent dimensions)."""
    z = (x - mean) / log_std.exp()
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(dim=-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of a diagonal Gaussian: sum over the last axis of 1/2 + 1/2 log(2 pi) + log std."""
    return (0.5 + 0.5 * LOG_2PI + log_std).sum(dim=-1)


def np_gaussian_log_prob(mean: np.ndarray, log_std: np.ndarray, x: np.ndarray) -> np.ndarray:
    """NumPy twin of `gaussian_log_prob`."""
    z = (x - mean) / np.exp(log_std)
    return (-0.5 * z**2 - log_std - 0.5 * LOG_2PI).sum(axis=-1)


# -- generalized state-dependent exploration (gSDE; Raffin et al. 2022, "Smooth Exploration for Robotic
# Reinforcement Learning", sec. 3) -------------------------------------------------------------------------
# The action is mean(s) + z(s) @ W: z(s) the policy's last hidden features, W a (latent, act) matrix of
# independent N(0, exp(log_std_ij)^2) weights drawn every few steps, so that the noise is a smooth function
# of the state between draws. Given z, the action is Gaussian with variance sum_i z_i^2 exp(log_std_ij)^2
# per dimension j; SB3's StateDependentNoiseDistribution adds SDE_EPSILON to it (full_std, exp, no squashing).

SDE_EPSILON = 1e-6


def sde_log_std(latent: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Per-row log standard deviation of gSDE's action noise: latent (..., L), log_std (L, A) -> (..., A).
    The features carry no gradient here (SB3's learn_features=False): only log_std learns the scale."""
    variance = latent.detach().pow(2) @ (2 * log_std).exp()
    return 0.5 * torch.log(variance + SDE_EPSILON)


def np_sde_log_std(latent: np.ndarray, log_std: np.ndarray) -> np.ndarray:
    """NumPy twin of `sde_log_std`."""
    return 0.5 * np.log(latent**2 @ np.exp(2 * log_std) + SDE_EPSILON)


def sde_matrices(log_std: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n exploration matrices (n, L, A), each weight W_ij ~ N(0, exp(log_std_ij)^2)."""
    return (rng.standard_normal((n, *log_std.shape)) * np.exp(log_std)).astype(np.float32)


def sde_noise(latent: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """Row k's noise latent_k @ matrices_k: latent (n, L), matrices (n, L, A) -> (n, A)."""
    return np.einsum("nl,nla->na", latent, matrices)


# -- mixture of diagonal Gaussians ------------------------------------------------------------------------


def gaussian_mixture_log_prob(logits: torch.Tensor, means: torch.Tensor, log_std: torch.Tensor,
                              x: torch.Tensor) -> torch.Tensor:
    """log sum_k pi_k N(x; mean_k, diag(exp(log_std_k))^2) with pi = softmax(logits): a mixture
    density network's output (Bishop 1994; Bishop 2006, "Pattern Recognition and Machine Learning",
    sec. 5.6), by log-sum-exp over the K components.
    logits (..., K), means and log_std (..., K, D), x (..., D) -> (...)."""
    component = gaussian_log_prob(means, log_std, x.unsqueeze(-2))  # (..., K)
    return torch.logsumexp(categorical_log_probs(logits) + component, dim=-1)


# -- KL divergence (Schulman 2020, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html) --


def kl_k1(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """log p(x) - log q(x) for x ~ p: unbiased for KL(p || q), may be negative per sample."""
    return logp - logq


def kl_k3(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """(r - 1) - log r with r = q(x) / p(x), x ~ p: unbiased for KL(p || q), never negative, and of
    lower variance than k1 when p and q are close."""
    log_r = logq - logp
    return torch.expm1(log_r) - log_r


def kl_categorical(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of categorical distributions over the last axis, exactly."""
    logp, logq = categorical_log_probs(logits_p), categorical_log_probs(logits_q)
    return (logp.exp() * (logp - logq)).sum(dim=-1)
