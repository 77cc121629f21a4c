"""Policy-gradient, preference and imitation losses as pure torch functions (tests/test_losses.py,
tests/test_imitation_math.py).

Both PPOs (rlgen/agents/ppo.py over env steps, rlgen/rlhf/ppo_lm.py over generated tokens) use
these. A `mask` (1 on the entries that count, 0 on padding) turns a mean into a mean over the
masked entries: the language model's sequences have different lengths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlgen.distributions import gaussian_mixture_log_prob


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None = None, dim: int | None = None) -> torch.Tensor:
    """Mean of x, over the entries where mask is 1 when a mask is given (0 if there are none); with
    `dim`, one mean per slice along it (the rows of a group of seeds' padded minibatches)."""
    if mask is None:
        return x.mean() if dim is None else x.mean(dim)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def normalize_advantages(advantages: torch.Tensor, mask: torch.Tensor | None = None,
                         eps: float = 1e-8) -> torch.Tensor:
    """Advantages shifted to mean 0 and scaled to standard deviation 1.

    Without a mask: SB3's PPO form, (A - mean) / (std + eps) with the unbiased std, per minibatch.
    With a mask: lm-human-preferences' `whiten` (Ziegler et al. 2019's code; TRL's masked_whiten
    differs only by Bessel's correction), (A - mean) * rsqrt(var + eps) with the biased variance over
    the response tokens, and padding set to 0. Each PPO keeps the form of the implementation it
    reproduces; the two differ only in how the scale is estimated (relatively, by about 1 / #entries).
    """
    if mask is None:
        return (advantages - advantages.mean()) / (advantages.std() + eps)
    mean = masked_mean(advantages, mask)
    var = masked_mean((advantages - mean) ** 2, mask)
    return (advantages - mean) * torch.rsqrt(var + eps) * mask


def normalize_advantage_rows(advantages: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """SB3's form of `normalize_advantages` (unbiased std) for each row of a padded (S, B) batch, over
    the entries its mask keeps; a row of fewer than two is left as it is, as PPO leaves a minibatch of one."""
    count = mask.sum(1, keepdim=True)
    mean = masked_mean(advantages, mask, 1).unsqueeze(1)
    var = ((advantages - mean) ** 2 * mask).sum(1, keepdim=True) / (count - 1).clamp(min=1.0)
    return torch.where(count > 1, (advantages - mean) / (var.sqrt() + eps), advantages)


def clipped_surrogate(advantages: torch.Tensor, ratio: torch.Tensor, clip: float) -> torch.Tensor:
    """min(r A, clip(r, 1 - clip, 1 + clip) A) per sample: the PPO-Clip objective's terms (Schulman
    et al. 2017, eq. 7), to be averaged as the caller's loss says."""
    return torch.min(advantages * ratio, advantages * ratio.clamp(1 - clip, 1 + clip))


def clipped_surrogate_loss(advantages: torch.Tensor, ratio: torch.Tensor, clip: float,
                           mask: torch.Tensor | None = None, dim: int | None = None) -> torch.Tensor:
    """-E[min(r A, clip(r, 1 - clip, 1 + clip) A)]: the PPO-Clip objective, negated to be minimised."""
    return -masked_mean(clipped_surrogate(advantages, ratio, clip), mask, dim)


def clip_fraction(ratio: torch.Tensor, clip: float, mask: torch.Tensor | None = None,
                  dim: int | None = None) -> torch.Tensor:
    """Fraction of the samples whose ratio lies outside [1 - clip, 1 + clip] (SB3's train/clip_fraction)."""
    return masked_mean(((ratio - 1).abs() > clip).float(), mask, dim)


def value_loss(values: torch.Tensor, returns: torch.Tensor, old_values: torch.Tensor | None = None,
               clip: float | None = None, mask: torch.Tensor | None = None,
               pessimistic: bool = False, dim: int | None = None) -> torch.Tensor:
    """Mean squared error of the value prediction against the returns, optionally clipped.

    With `clip`, the prediction may move at most `clip` away from `old_values`:
    - pessimistic=False (SB3's PPO): the squared error of the clipped prediction;
    - pessimistic=True (OpenAI baselines' PPO2, and Ziegler et al. 2019's lm-human-preferences, which
      TRL's PPO follows): the larger of the clipped and the unclipped squared errors, so clipping can
      only slow the value function down, never speed it up.
    rlgen's PPO takes SB3's form, so that `agent=sb3_ppo` is a like-for-like check; the language-model
    PPO takes the pessimistic one of the RLHF code it reproduces.
    """
    plain = mask is None and dim is None
    if clip is None:
        return F.mse_loss(values, returns) if plain else masked_mean((values - returns) ** 2, mask, dim)
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    if not pessimistic:
        return F.mse_loss(clipped, returns) if plain else masked_mean((clipped - returns) ** 2, mask, dim)
    return masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask, dim)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected), the negative log-likelihood of the preference labels
    under the Bradley-Terry model (Ouyang et al. 2022, eq. 1), written as softplus(r_rejected - r_chosen)
    to stay finite."""
    return F.softplus(r_rejected - r_chosen).mean()


def mixture_density_nll(logits: torch.Tensor, means: torch.Tensor, log_std: torch.Tensor,
                        actions: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the actions under a mixture density network's Gaussian mixture
    (Bishop 1994, "Mixture Density Networks"; Bishop 2006, PRML eq. 5.153).
    logits (B, K), means and log_std (B, K, D), actions (B, D)."""
    return -gaussian_mixture_log_prob(logits, means, log_std, actions).mean()


def info_nce_loss(positive_energy: torch.Tensor, negative_energies: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -log e^{-E(s,a)} / (e^{-E(s,a)} + sum_j e^{-E(s,a~_j)}): the InfoNCE loss of
    an energy-based policy (Florence et al. 2021, "Implicit Behavioral Cloning", eq. 3), a cross-entropy
    that picks the demonstration out of its counter-examples. positive_energy (B,), negative_energies
    (B, N)."""
    logits = -torch.cat([positive_energy.unsqueeze(1), negative_energies], dim=1)  # (B, 1 + N), the demo first
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device))


def energy_gradient_penalty(grad: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over samples of max(0, ||dE/da||_inf - margin)^2 (Florence et al. 2021, appendix B.3;
    ibc's losses/gradient_loss.py): keeps the energy's slope within what Langevin's steps
    were tuned for. grad (..., D)."""
    return (grad.abs().amax(dim=-1) - margin).clamp(min=0.0).square().mean()


def discriminator_loss(expert_logits: torch.Tensor, policy_logits: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of a discriminator D = sigmoid(logit) that labels expert pairs 1 and the
    policy's 0, each half a mean: -E_expert[log D] - E_policy[log(1 - D)] (Ho & Ermon 2016, eq. 17 with
    D's roles swapped: there D(s, a) -> 1 on the policy's pairs), written with softplus to stay finite."""
    return F.softplus(-expert_logits).mean() + F.softplus(policy_logits).mean()


def adversarial_reward(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """The policy's reward from the discriminator's logits. gail: -log(1 - D) = softplus(logit), always
    positive (Ho & Ermon 2016's cost log D(s, a) in this D's convention); airl: log D - log(1 - D) =
    logit, positive where the pair looks like the expert's and negative where it does not (Fu et al.
    2018, "Learning Robust Rewards with Adversarial Inverse Reinforcement Learning", sec. 5)."""
    return F.softplus(logits) if kind == "gail" else logits


def lipschitz_penalty(grad: torch.Tensor) -> torch.Tensor:
    """Mean of (||grad||_2 - 1)^2 over the rows: the gradient penalty of Gulrajani et al. 2017 ("Improved
    Training of Wasserstein GANs", eq. 3), taken at points between expert and policy pairs, which
    Kostrikov et al. 2019 (DAC, sec. 4.3) apply to GAIL's discriminator. grad (B, D)."""
    return (grad.norm(dim=-1) - 1.0).square().mean()


# -- direct alignment: the policy's log-ratio to the reference as an implicit reward -------------------
# logratio = log pi(y|x) - log pi_ref(y|x), summed over the tokens of the completion y.


def dpo_loss(chosen_logratio: torch.Tensor, rejected_logratio: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean of -log sigmoid(beta (logratio(y_w) - logratio(y_l))): Rafailov et al. 2023, "Direct
    Preference Optimization", eq. 7. It is the Bradley-Terry loss of the implicit rewards
    beta * logratio (their eq. 5), so the reward model's loss serves."""
    return bradley_terry_loss(beta * chosen_logratio, beta * rejected_logratio)


def ipo_loss(chosen_logratio: torch.Tensor, rejected_logratio: torch.Tensor, tau: float) -> torch.Tensor:
    """Mean of (logratio(y_w) - logratio(y_l) - 1/(2 tau))^2: Azar et al. 2023, "A General Theoretical
    Paradigm to Understand Learning from Human Preferences", eq. 17. The margin is pulled to the fixed
    point 1/(2 tau) instead of pushed without bound, so deterministic preferences do not drive the
    policy away from the reference. (TRL averages the log-probabilities over tokens for IPO; the paper's
    sums are kept here, as for DPO.)"""
    return (chosen_logratio - rejected_logratio - 1.0 / (2.0 * tau)).square().mean()


def kto_loss(logratio: torch.Tensor, desirable: torch.Tensor, reference_point: torch.Tensor, beta: float,
             desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> torch.Tensor:
    """Mean of lambda_y - v(x, y) over unpaired completions (Ethayarajh et al. 2024, "KTO: Model
    Alignment as Prospect Theoretic Optimization", eq. 8):
        v = lambda_D sigmoid(beta (logratio - z0))   for a desirable y,
        v = lambda_U sigmoid(beta (z0 - logratio))   for an undesirable one,
    where z0, the reference point, estimates KL(pi || pi_ref) and gets no gradient (the caller passes it
    detached, clamped at 0 as the paper's implementation does). logratio (B,), desirable (B,) bool."""
    lam = torch.where(desirable, desirable_weight, undesirable_weight).to(logratio.dtype)
    sign = torch.where(desirable, 1.0, -1.0).to(logratio.dtype)
    value = lam * torch.sigmoid(beta * sign * (logratio - reference_point))
    return (lam - value).mean()


LOSS_REDUCTIONS = ("grpo", "dapo", "dr_grpo")


def token_loss_mean(per_token: torch.Tensor, mask: torch.Tensor, reduction: str,
                    max_tokens: int | None = None) -> torch.Tensor:
    """A scalar from per-token losses (B, T) over the completions' tokens, as TRL's GRPOTrainer's loss types:
    - grpo: each sequence's mean over its tokens, then the mean over sequences (Shao et al. 2024, eq. 3:
      the 1/|o_i| length normalisation, which weighs a token of a short answer more);
    - dapo: the sum over every token of the batch divided by their number (Yu et al. 2025, "DAPO",
      token-level policy gradient loss);
    - dr_grpo: the sum divided by a constant, batch size x max_tokens (Liu et al. 2025, Dr. GRPO): no
      length normalisation at all."""
    if reduction == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if reduction == "dapo":
        return masked_mean(per_token, mask)
    if reduction == "dr_grpo":
        return (per_token * mask).sum() / (per_token.shape[0] * (max_tokens or per_token.shape[1]))
    raise ValueError(f"unknown reduction {reduction!r}; one of {', '.join(LOSS_REDUCTIONS)}")
