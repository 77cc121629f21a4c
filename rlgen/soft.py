"""Maximum-entropy RL in closed form: the soft value, the Boltzmann policy, soft value iteration.

The entropy-regularised objective adds ent_coef * H(pi(.|s)) to every reward. Its optimal values
obey the soft Bellman equations (Haarnoja et al. 2017, "Reinforcement Learning with Deep
Energy-Based Policies", sec. 2, Theorems 1-2, here with a sum over discrete actions in place of the
integral):

    Q(s, a) = r(s, a) + gamma * E[V(s')]
    V(s)    = ent_coef * log sum_a exp(Q(s, a) / ent_coef)     (a "soft" maximum over actions)
    pi(a|s) = exp((Q(s, a) - V(s)) / ent_coef)                  (the Boltzmann policy)

Read Q / ent_coef as a negative energy: the policy is the Boltzmann distribution of that energy and
V / ent_coef its log-partition function. As ent_coef -> 0, V -> max_a Q and pi -> greedy, so soft
value iteration becomes value iteration. The temperature is `ent_coef` (SB3's SAC name for it):
`alpha` is a step size everywhere in rlgen. NumPy, vectorised over states; `torch_soft_value` is
the torch twin of `soft_value` for deep agents.

With a mask of valid actions (rlgen/distributions.py) the sums and maxima run over the valid actions
only: a masked action is no choice, so it carries neither value nor probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlgen.distributions import greedy_probs, masked_values, np_softmax, torch_masked_values
from rlgen.mdp import Backup, TabularModel, iterate


def soft_value(q: np.ndarray, ent_coef: float, mask: np.ndarray | None = None) -> np.ndarray:
    """ent_coef * log sum_a exp(q / ent_coef) over the last axis (the valid actions of `mask`);
    ent_coef = 0 gives max_a q.

    Computed as m + ent_coef * log sum exp((q - m) / ent_coef) with m = max_a q, so no exponent is
    positive and nothing overflows however large q / ent_coef is (the log-sum-exp trick); a masked
    action's q is -inf there, whose exponential is 0.
    """
    q = masked_values(np.asarray(q, dtype=np.float64), mask)
    m = q.max(axis=-1)
    if ent_coef == 0.0:
        return m
    if ent_coef < 0.0:
        raise ValueError(f"ent_coef must be >= 0, got {ent_coef}")
    return m + ent_coef * np.log(np.exp((q - m[..., None]) / ent_coef).sum(axis=-1))


def torch_soft_value(q: torch.Tensor, ent_coef: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Torch twin of `soft_value` for ent_coef > 0 (torch.logsumexp subtracts the max: stable, and a
    masked action's -inf adds exp(-inf) = 0)."""
    return ent_coef * torch.logsumexp(torch_masked_values(q, mask) / ent_coef, dim=-1)


def boltzmann(q: np.ndarray, ent_coef: float, mask: np.ndarray | None = None) -> np.ndarray:
    """pi(a|s) = exp((q - V) / ent_coef) over the last axis (0 on masked actions); ent_coef = 0 spreads
    the mass evenly over the argmaxes (the greedy policy)."""
    q = masked_values(np.asarray(q, dtype=np.float64), mask)
    if ent_coef == 0.0:
        return greedy_probs(q)
    # shifted by the max before the division: the maxima are exactly 0 however large q / ent_coef is
    return np_softmax((q - q.max(axis=-1, keepdims=True)) / ent_coef)


@dataclass(frozen=True)
class SoftSolution:
    values: np.ndarray
    """(S,) soft state values V"""
    q_values: np.ndarray
    """(S, A) soft action values Q"""
    policy: np.ndarray
    """(S, A) Boltzmann policy pi(a|s)"""
    sweeps: int
    """backups performed"""
    delta: float
    """sup-norm change of V in the last sweep"""


def soft_optimality_sweep(backup: Backup, v: np.ndarray, ent_coef: float) -> np.ndarray:
    """One sweep of the soft Bellman optimality operator: V <- ent_coef log sum_a exp(Q(V) / ent_coef).

    A gamma-contraction in the sup norm, like the hard operator, since log-sum-exp is 1-Lipschitz
    in the sup norm (Haarnoja et al. 2017, Theorem 3, soft Q-iteration, and its proof).
    """
    return soft_value(backup.q(v), ent_coef)


def soft_value_iteration(model: TabularModel, gamma: float, ent_coef: float, tol: float = 1e-8,
                         max_sweeps: int = 100_000) -> SoftSolution:
    """Iterate the soft backup until the sup-norm change falls below `tol` (or `max_sweeps`)."""
    backup = Backup(model, gamma)
    v, sweeps, delta = iterate(lambda v: soft_optimality_sweep(backup, v, ent_coef), np.zeros(model.n_states),
                               tol, max_sweeps)
    q = backup.q(v)
    return SoftSolution(values=v, q_values=q, policy=boltzmann(q, ent_coef), sweeps=sweeps, delta=delta)


def soft_q_target(reward: np.ndarray, next_q: np.ndarray, terminated: np.ndarray, gamma: float,
                  ent_coef: float, next_mask: np.ndarray | None = None) -> np.ndarray:
    """Sampled soft Bellman target r + gamma (1 - terminated) ent_coef log sum_a' exp(Q(s', a') / ent_coef),
    the sum over the next state's valid actions."""
    return reward + gamma * np.where(terminated, 0.0, soft_value(next_q, ent_coef, next_mask))
