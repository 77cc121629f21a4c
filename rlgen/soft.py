"""Maximum-entropy RL in closed form: the soft value, the Boltzmann policy, soft value iteration.

The entropy-regularised objective adds alpha * H(pi(.|s)) to every reward. Its optimal values obey
the soft Bellman equations (Haarnoja et al. 2017, "Reinforcement Learning with Deep Energy-Based
Policies", sec. 2, Theorems 1-2, here with a sum over discrete actions in place of the integral):

    Q(s, a) = r(s, a) + gamma * E[V(s')]
    V(s)    = alpha * log sum_a exp(Q(s, a) / alpha)          (a "soft" maximum over actions)
    pi(a|s) = exp((Q(s, a) - V(s)) / alpha)                    (the Boltzmann policy)

Read Q / alpha as a negative energy: the policy is the Boltzmann distribution of that energy and
V / alpha its log-partition function. As alpha -> 0, V -> max_a Q and pi -> greedy, so soft value
iteration becomes value iteration. Everything here is NumPy, vectorised over states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlgen.envs.model import TabularModel


def soft_value(q: np.ndarray, alpha: float) -> np.ndarray:
    """alpha * log sum_a exp(q / alpha) over the last axis; alpha = 0 gives max_a q.

    Computed as m + alpha * log sum exp((q - m) / alpha) with m = max_a q, so no exponent is positive
    and nothing overflows however large q / alpha is (the log-sum-exp trick).
    """
    q = np.asarray(q, dtype=np.float64)
    m = q.max(axis=-1)
    if alpha == 0.0:
        return m
    if alpha < 0.0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    return m + alpha * np.log(np.exp((q - m[..., None]) / alpha).sum(axis=-1))


def boltzmann(q: np.ndarray, alpha: float) -> np.ndarray:
    """pi(a|s) = exp((q - V) / alpha) over the last axis; alpha = 0 spreads mass evenly over the argmaxes."""
    q = np.asarray(q, dtype=np.float64)
    m = q.max(axis=-1, keepdims=True)
    if alpha == 0.0:
        best = (q == m).astype(np.float64)
        return best / best.sum(axis=-1, keepdims=True)
    z = np.exp((q - m) / alpha)  # shifted by the max: every exponent <= 0, the largest term is 1
    return z / z.sum(axis=-1, keepdims=True)


def entropy(pi: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis, with 0 log 0 = 0."""
    pi = np.asarray(pi, dtype=np.float64)
    logs = np.log(np.where(pi > 0, pi, 1.0))
    return -(pi * logs).sum(axis=-1)


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


def soft_bellman_backup(model: TabularModel, values: np.ndarray, gamma: float, alpha: float) -> np.ndarray:
    """One sweep of the soft Bellman optimality operator: V <- alpha log sum_a exp(Q(V) / alpha).

    A gamma-contraction in the sup norm, like the hard operator, since log-sum-exp is 1-Lipschitz
    in the sup norm (Haarnoja et al. 2017, Theorem 3, soft Q-iteration, and its proof).
    """
    return soft_value(model.q_from_v(values, gamma), alpha)


def soft_value_iteration(
    model: TabularModel, gamma: float, alpha: float, tol: float = 1e-8, max_sweeps: int = 100_000,
    values: np.ndarray | None = None,
) -> SoftSolution:
    """Iterate the soft backup until the sup-norm change falls below `tol` (or `max_sweeps`)."""
    v = np.zeros(model.n_states) if values is None else np.asarray(values, dtype=np.float64).copy()
    delta, sweeps = np.inf, 0
    while sweeps < max_sweeps and delta >= tol:
        new = soft_bellman_backup(model, v, gamma, alpha)
        delta = float(np.abs(new - v).max())
        v, sweeps = new, sweeps + 1
    q = model.q_from_v(v, gamma)
    return SoftSolution(values=v, q_values=q, policy=boltzmann(q, alpha), sweeps=sweeps, delta=delta)


def soft_q_target(reward: np.ndarray, next_q: np.ndarray, terminated: np.ndarray, gamma: float,
                  alpha: float) -> np.ndarray:
    """Sampled soft Bellman target r + gamma (1 - terminated) alpha log sum_a' exp(Q(s', a') / alpha)."""
    return reward + gamma * np.where(terminated, 0.0, soft_value(next_q, alpha))
