"""Dynamic programming (Sutton & Barto Chapter 4): policy evaluation, policy iteration, value iteration.

Every sweep is a synchronous Bellman backup over the whole TabularModel at once (S x A x K arrays),
no per-state Python loop. The run's budget `total_steps` counts sweeps (the x-axis of dp/delta in
TensorBoard; for policy iteration with exact evaluation, improvements); a run stops early once a sweep
changes no value by more than `tol`. Evaluation then runs the greedy policy in the real env, like for
any other agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlgen.agents.tabular import TabularAgent, TabularConfig, greedy
from rlgen.config import check_choice
from rlgen.envs.model import TabularModel
from rlgen.errors import UserError
from rlgen.loops import sweeps

if TYPE_CHECKING:
    from rlgen.run import Run


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
    """One synchronous sweep of the Bellman expectation equation (S&B eq. 4.5)."""
    new = (policy * backup.R).sum(axis=1)
    new[backup.live] = (policy[backup.live].T * backup.q_live(v)).sum(axis=0)
    return new


def optimality_sweep(backup: Backup, v: np.ndarray) -> np.ndarray:
    """One synchronous sweep of the Bellman optimality equation (S&B eq. 4.10)."""
    new = backup.v_fixed.copy()
    new[backup.live] = backup.q_live(v).max(axis=0)
    return new


def evaluate_policy(model: TabularModel, policy: np.ndarray, gamma: float, tol: float = 1e-10,
                    max_sweeps: int = 100_000) -> np.ndarray:
    """V^pi by iterated sweeps until the sup-norm change is below tol (S&B Section 4.1)."""
    backup, v = Backup(model, gamma), np.zeros(model.n_states)
    for _ in range(max_sweeps):
        new = evaluation_sweep(backup, policy, v)
        delta, v = np.abs(new - v).max(), new
        if delta < tol:
            break
    return v


def value_iteration(model: TabularModel, gamma: float, tol: float = 1e-10,
                    max_sweeps: int = 100_000) -> tuple[np.ndarray, int]:
    """(V*, sweeps used) by value iteration (S&B Section 4.4)."""
    backup, v = Backup(model, gamma), np.zeros(model.n_states)
    for sweep in range(1, max_sweeps + 1):
        new = optimality_sweep(backup, v)
        delta, v = np.abs(new - v).max(), new
        if delta < tol:
            return v, sweep
    return v, max_sweeps


@dataclass
class DPConfig(TabularConfig):
    tol: float = 1e-8
    """stop when a sweep changes no value by more than this (sup norm)"""


@dataclass
class PolicyEvaluationConfig(DPConfig):
    name: str = "policy_evaluation"
    policy: str = "uniform"
    """the policy to evaluate: uniform (random), or the path of a policy.npy (S, A) from another run"""


class DPAgent(TabularAgent):
    """A planner: one sweep of the env's model per budget step (rlgen/loops.py: sweeps), stopping
    early once a sweep changes no value by more than tol. Subclasses write `sweep`."""

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.backup: Backup | None = None
        """the model folded for fast sweeps, built on the first sweep"""

    def learn(self, total_steps: int, run: Run) -> None:
        sweeps(self, run, total_steps)
        self.refresh()

    def folded(self, model: TabularModel) -> Backup:
        if model.n_states != self.n_states:
            raise UserError(f"the env's model has {model.n_states} states, its observations {self.n_states}")
        if self.backup is None:
            self.backup = Backup(model, self.config.gamma)
        return self.backup

    def sweep(self, model: TabularModel) -> float:
        """One sweep; updates V (and policy where it changes); returns the sup-norm change of V."""
        raise NotImplementedError

    def converged(self, delta: float) -> bool:
        return delta < self.config.tol


class PolicyEvaluation(DPAgent):
    """V^pi of a fixed policy (S&B Section 4.1); `act` follows that same policy."""

    Config = PolicyEvaluationConfig
    samples_policy = True
    has_q = True

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        if config.policy != "uniform":
            path = Path(config.policy)
            if not path.is_file():
                raise UserError(f"agent.policy must be 'uniform' or the path of a policy.npy, got '{config.policy}'")
            policy = np.load(path)
            if policy.shape != self.policy.shape:
                raise UserError(f"policy {path} has shape {policy.shape}, this env needs {self.policy.shape}")
            self.policy = policy

    def sweep(self, model: TabularModel) -> float:
        backup = self.folded(model)
        new = evaluation_sweep(backup, self.policy, self.V)
        delta, self.V = float(np.abs(new - self.V).max()), new
        self.Q = backup.q(self.V)
        return delta


@dataclass
class PolicyIterationConfig(DPConfig):
    name: str = "policy_iteration"
    evaluation: str = "exact"
    """exact: solve the linear system of V^pi, one budget step per improvement (Howard 1960), for up to
    EXACT_MAX_STATES states | sweeps: iterative evaluation to tol, one budget step per sweep (S&B Section 4.3)"""

    def __post_init__(self):
        check_choice("agent.evaluation", self.evaluation, ("exact", "sweeps"))


EXACT_MAX_STATES = 5000


class PolicyIteration(DPAgent):
    """Evaluate the current policy, make it greedy, repeat until it is stable (S&B Section 4.3).

    The first policy is the uniform random one, which ends its episodes in the usual gridworlds; the
    greedy policy of a proper policy's values is proper again (Bertsekas & Tsitsiklis 1996, Sec. 2.2),
    so exact evaluation stays well posed under gamma = 1. Evaluated by sweeps instead, a slowly mixing
    policy (the random walk on CliffWalking under gamma = 1) needs millions of sweeps to reach tol: the
    exact solve is the default. If a system is singular all the same, that evaluation falls back to sweeps."""

    Config = PolicyIterationConfig

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        if config.evaluation == "exact" and self.n_states > EXACT_MAX_STATES:
            raise UserError(f"exact policy evaluation solves a dense {self.n_states}x{self.n_states} system; "
                            f"above {EXACT_MAX_STATES} states use agent.evaluation=sweeps")
        self.stable = False
        self.improvements = 0

    def sweep(self, model: TabularModel) -> float:
        backup = self.folded(model)
        if self.config.evaluation == "exact":
            new = model.solve_values(self.policy, self.config.gamma)
            if new is None:
                new = evaluate_policy(model, self.policy, self.config.gamma, self.config.tol)
            delta, self.V = float(np.abs(new - self.V).max()), new
            self.improve(backup)
            return delta
        new = evaluation_sweep(backup, self.policy, self.V)
        delta, self.V = float(np.abs(new - self.V).max()), new
        if delta < self.config.tol:  # evaluation done: improve
            self.improve(backup)
        return delta

    def improve(self, backup: Backup) -> None:
        self.Q = backup.q(self.V)
        improved = greedy(self.Q)
        # stable when the old policy is already greedy (compare greedy sets, not tie-breaking)
        self.stable = bool(np.all((self.policy > 0) <= (improved > 0)) and self.improvements > 0)
        self.policy = improved
        self.improvements += 1

    def converged(self, delta: float) -> bool:
        return self.stable


@dataclass
class ValueIterationConfig(DPConfig):
    name: str = "value_iteration"


class ValueIteration(DPAgent):
    """V <- max_a Q(V) until the change is below tol; the policy is greedy in the final Q (S&B Section 4.4)."""

    Config = ValueIterationConfig

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.swept_since_refresh = False
        """Q and the greedy policy are derived from V when read, not on every sweep"""

    def sweep(self, model: TabularModel) -> float:
        new = optimality_sweep(self.folded(model), self.V)
        delta, self.V = float(np.abs(new - self.V).max()), new
        self.swept_since_refresh = True
        return delta

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        self.refresh()
        return super().act(obs, deterministic)

    def refresh(self) -> None:
        if self.swept_since_refresh and self.backup is not None:
            self.Q = self.backup.q(self.V)
            self.policy, self.swept_since_refresh = greedy(self.Q), False

