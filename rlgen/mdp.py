"""The tabular MDP and its exact solutions: Bellman backups, policy evaluation, value iteration.

A `TabularModel` stores, for each (state, action), K possible outcomes in S x A x K arrays (unused
outcomes have probability 0). Dense S x A x S' does not scale to large mazes; Gymnasium's toy-text
`P` (a dict of lists) does not vectorise, so both directions of conversion are offered. The model is
the one source of truth for planning (here) and for sampling (the envs' `step()`).

Every sweep is a synchronous Bellman backup over all states at once through `Backup`, the model
folded once for fast sweeps; no per-state Python loop. Tested against Sutton & Barto's figures and
dense linear algebra (tests/test_mdp.py, tests/test_dp.py, tests/test_math_properties.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


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
        """(S, A) action values after one Bellman backup of V (S&B eq. 4.6); see `Backup`."""
        return Backup(self, gamma).q(values)

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


class Backup:
    """The model folded for fast sweeps: Q = R + sum_k G_k V[next_k], with R = sum_k p_k r_k and
    G_k = gamma p_k (1 - terminated_k) computed once (S&B eq. 4.6).

    Only "live" states, those with an outcome that bootstraps, are swept; the others (terminal cells,
    a maze's walls: half of its cells) have the constant Q = R. Outcome slots no live state uses are
    dropped. Arrays are stored outcome- and action-major, (K, A, L), so the sums over outcomes and
    the max over actions combine whole rows (numpy reduces a short last axis slowly).
    """

    def __init__(self, model: TabularModel, gamma: float):
        self.R = (model.probs * model.rewards).sum(axis=2)  # (S, A)
        boot = (model.probs > 0) & ~model.terminated  # (S, A, K)
        self.live = np.flatnonzero(boot.any(axis=(1, 2)))
        slots = boot[self.live].any(axis=(0, 1)) if self.live.size else np.zeros(boot.shape[2], bool)
        index_type = np.int32 if model.n_states < 2**31 else np.int64  # half the memory traffic
        self.next = np.ascontiguousarray(model.next_states[self.live][:, :, slots].astype(index_type).T)
        self.G = np.ascontiguousarray((gamma * model.probs * ~model.terminated)[self.live][:, :, slots].T)
        self.R_live = np.ascontiguousarray(self.R[self.live].T)  # (A, L)
        self.v_fixed = self.R.max(axis=1)  # V of the states that do not bootstrap, under a greedy policy

    def q_live(self, v: np.ndarray) -> np.ndarray:
        """(A, L) action values of the live states after one backup of V."""
        q = self.R_live.copy()
        for k in range(self.G.shape[0]):
            q += self.G[k] * v[self.next[k]]
        return q

    def q(self, v: np.ndarray) -> np.ndarray:
        """(S, A) action values of V after one backup."""
        q = self.R.copy()
        q[self.live] = self.q_live(v).T
        return q


def evaluation_sweep(backup: Backup, policy: np.ndarray, v: np.ndarray) -> np.ndarray:
    """One synchronous sweep of the Bellman expectation equation for an (S, A) policy (S&B eq. 4.5)."""
    new = (policy * backup.R).sum(axis=1)
    new[backup.live] = (policy[backup.live].T * backup.q_live(v)).sum(axis=0)
    return new


def optimality_sweep(backup: Backup, v: np.ndarray) -> np.ndarray:
    """One synchronous sweep of the Bellman optimality equation (S&B eq. 4.10)."""
    new = backup.v_fixed.copy()
    new[backup.live] = backup.q_live(v).max(axis=0)
    return new


def iterate(sweep: Callable[[np.ndarray], np.ndarray], v: np.ndarray, tol: float,
            max_sweeps: int) -> tuple[np.ndarray, int, float]:
    """Apply `sweep` until it changes no value by `tol` or more (sup norm), at most `max_sweeps`
    times; returns (V, sweeps done, the last sweep's change). The operators swept here are
    gamma-contractions, so for gamma < 1 the error to the fixed point is below tol gamma / (1 - gamma)."""
    delta = np.inf
    for n in range(1, max_sweeps + 1):
        new = sweep(v)
        delta, v = float(np.abs(new - v).max()), new
        if delta < tol:
            return v, n, delta
    return v, max_sweeps, delta


def evaluate_policy(model: TabularModel, policy: np.ndarray, gamma: float, tol: float = 1e-10,
                    max_sweeps: int = 100_000) -> np.ndarray:
    """V^pi of an (S, A) policy by iterated sweeps (S&B Section 4.1)."""
    backup = Backup(model, gamma)
    v, _, _ = iterate(lambda v: evaluation_sweep(backup, policy, v), np.zeros(model.n_states), tol, max_sweeps)
    return v


def value_iteration(model: TabularModel, gamma: float, tol: float = 1e-10,
                    max_sweeps: int = 100_000) -> tuple[np.ndarray, int]:
    """(V*, sweeps used) by value iteration (S&B Section 4.4)."""
    backup = Backup(model, gamma)
    v, sweeps, _ = iterate(lambda v: optimality_sweep(backup, v), np.zeros(model.n_states), tol, max_sweeps)
    return v, sweeps


def policy_dynamics(model: TabularModel, policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r_pi, P_pi) of an (S, A) policy: the expected reward (S,) and the (S, S) matrix of moving on
    without terminating (rows sum to below 1 where episodes end)."""
    w = np.asarray(policy, dtype=np.float64)[:, :, None] * model.probs  # (S, A, K)
    r_pi = (w * model.rewards).sum(axis=(1, 2))
    p_pi = np.zeros((model.n_states, model.n_states))
    rows = np.repeat(np.arange(model.n_states), w.shape[1] * w.shape[2])
    np.add.at(p_pi, (rows, model.next_states.ravel()), np.where(model.terminated, 0.0, w).ravel())
    return r_pi, p_pi


def solve_values(model: TabularModel, policy: np.ndarray, gamma: float) -> np.ndarray | None:
    """V^pi exactly, from (I - gamma P_pi) V = r_pi (S&B eq. 4.4); None when the system is singular
    or near it (under gamma = 1, a policy that can loop forever). Dense: for up to a few thousand states."""
    r_pi, p_pi = policy_dynamics(model, policy)
    m = np.eye(model.n_states) - gamma * p_pi
    if np.linalg.cond(m) > 1e12:
        return None
    values = np.linalg.solve(m, r_pi)
    return values if np.all(np.isfinite(values)) else None


def reachable(model: TabularModel, include_terminal: bool = False) -> np.ndarray:
    """(S,) bool: the states some sequence of actions reaches from the start distribution.

    By default only through outcomes that do not end the episode: the states an agent acts in.
    `include_terminal` also follows the outcomes that end it (a goal is reachable). Breadth-first
    over index frontiers, so a 10^6-state maze with paths of 10^5 steps costs O(S) in all.
    """
    seen = model.initial > 0
    frontier = np.flatnonzero(seen)
    follow = model.probs > 0 if include_terminal else (model.probs > 0) & ~model.terminated
    while frontier.size:
        nxt = model.next_states[frontier][follow[frontier]]
        nxt = np.unique(nxt[~seen[nxt]])
        seen[nxt] = True
        frontier = nxt
    return seen
