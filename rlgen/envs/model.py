"""A tabular MDP's model as arrays that vectorise: the one source of truth for planning and sampling.

For each (state, action) there are K possible outcomes, stored in S x A x K arrays (unused outcomes
have probability 0). Dense S x A x S' does not scale to large mazes; Gymnasium's toy-text `P` (a
dict of lists) does not vectorise, so both directions of conversion are offered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.errors import UserError


@dataclass(frozen=True)
class TabularModel:
    next_states: np.ndarray
    """(S, A, K) int64: successor state of each outcome"""
    probs: np.ndarray
    """(S, A, K) float64: probability of each outcome; sums to 1 over K"""
    rewards: np.ndarray
    """(S, A, K) float64: reward of each outcome"""
    terminated: np.ndarray
    """(S, A, K) bool: the outcome ends the episode (its successor is not bootstrapped)"""
    initial: np.ndarray
    """(S,) float64: start-state distribution"""

    @property
    def n_states(self) -> int:
        return self.next_states.shape[0]

    @property
    def n_actions(self) -> int:
        return self.next_states.shape[1]

    def q_from_v(self, values: np.ndarray, gamma: float) -> np.ndarray:
        """One Bellman backup: Q(s,a) = sum_k p_k [r_k + gamma (1 - term_k) V(s'_k)]  (S&B eq. 4.6)."""
        cont = np.where(self.terminated, 0.0, values[self.next_states])
        return (self.probs * (self.rewards + gamma * cont)).sum(axis=2)

    def policy_dynamics(self, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(r_pi, P_pi) of a policy given as (S, A) action probabilities: the expected reward (S,) and
        the (S, S) matrix of moving on without terminating (rows sum to below 1 where episodes end)."""
        w = np.asarray(policy, dtype=np.float64)[:, :, None] * self.probs  # (S, A, K)
        r_pi = (w * self.rewards).sum(axis=(1, 2))
        p_pi = np.zeros((self.n_states, self.n_states))
        rows = np.repeat(np.arange(self.n_states), w.shape[1] * w.shape[2])
        np.add.at(p_pi, (rows, self.next_states.ravel()), np.where(self.terminated, 0.0, w).ravel())
        return r_pi, p_pi

    def solve_values(self, policy: np.ndarray, gamma: float) -> np.ndarray | None:
        """V^pi exactly, from (I - gamma P_pi) V = r_pi (S&B eq. 4.4); None when the system is singular
        or near it (under gamma = 1, a policy that can loop forever). Dense: for up to a few thousand states."""
        r_pi, p_pi = self.policy_dynamics(policy)
        m = np.eye(self.n_states) - gamma * p_pi
        if np.linalg.cond(m) > 1e12:
            return None
        values = np.linalg.solve(m, r_pi)
        return values if np.all(np.isfinite(values)) else None

    def reachable(self) -> np.ndarray:
        """(S,) bool: the states some sequence of actions reaches from the start distribution."""
        seen = self.initial > 0
        frontier = seen.copy()
        live = (self.probs > 0) & ~self.terminated
        while frontier.any():
            nxt = np.zeros_like(seen)
            nxt[self.next_states[frontier][live[frontier]]] = True
            frontier = nxt & ~seen
            seen |= nxt
        return seen

    @classmethod
    def from_P(cls, P: dict[int, dict[int, list[tuple]]], n_states: int, n_actions: int,
               initial: np.ndarray | None = None) -> TabularModel:
        """From Gymnasium's toy-text `P[s][a] = [(prob, next_state, reward, terminated), ...]`."""
        K = max(len(P[s][a]) for s in range(n_states) for a in range(n_actions))
        next_states = np.zeros((n_states, n_actions, K), dtype=np.int64)
        probs = np.zeros((n_states, n_actions, K))
        rewards = np.zeros((n_states, n_actions, K))
        terminated = np.zeros((n_states, n_actions, K), dtype=bool)
        for s in range(n_states):
            for a in range(n_actions):
                for k, (p, s2, r, term) in enumerate(P[s][a]):
                    next_states[s, a, k], probs[s, a, k], rewards[s, a, k], terminated[s, a, k] = s2, p, r, term
        if initial is None:
            initial = np.full(n_states, 1.0 / n_states)
        return cls(next_states, probs, rewards, terminated, np.asarray(initial, dtype=np.float64))

    def to_P(self) -> dict[int, dict[int, list[tuple[float, int, float, bool]]]]:
        """Gymnasium's toy-text view, so tutorial code written for FrozenLake works unchanged."""
        P: dict[int, dict[int, list[tuple[float, int, float, bool]]]] = {}
        for s in range(self.n_states):
            P[s] = {}
            for a in range(self.n_actions):
                P[s][a] = [
                    (float(self.probs[s, a, k]), int(self.next_states[s, a, k]), float(self.rewards[s, a, k]),
                     bool(self.terminated[s, a, k]))
                    for k in range(self.next_states.shape[2])
                    if self.probs[s, a, k] > 0
                ]
        return P


def model_of(env: gym.Env) -> TabularModel | None:
    """The model of a tabular env: rlgen's envs carry `.model`; Gymnasium's toy-text envs carry `P`."""
    base: Any = env.unwrapped
    if isinstance(getattr(base, "model", None), TabularModel):
        return base.model
    if hasattr(base, "P") and isinstance(env.observation_space, gym.spaces.Discrete):
        initial = getattr(base, "initial_state_distrib", None)
        return TabularModel.from_P(base.P, int(env.observation_space.n), int(env.action_space.n), initial)
    return None


def require_model(env: gym.Env) -> TabularModel:
    """The model of a tabular env, for planning agents; a clear error if the env has none."""
    model = model_of(env)
    if model is None:
        name = env.spec.id if env.spec else type(env.unwrapped).__name__
        raise UserError(f"env '{name}' exposes no tabular model (no `.model` or `P`), which dynamic "
                        "programming needs; use a learning agent (q_learning, mc_control, ...)")
    return model
