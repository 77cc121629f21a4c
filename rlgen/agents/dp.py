"""Dynamic programming (Sutton & Barto Chapter 4): policy evaluation, policy iteration, value iteration.

Every sweep is a synchronous Bellman backup over the whole TabularModel at once (S x A x K arrays,
the sweeps of rlgen/mdp.py), no per-state Python loop. The run's budget `total_steps` counts sweeps
(the x-axis of dp/delta in TensorBoard; for policy iteration with exact evaluation, improvements); a
run stops early once a sweep changes no value by more than `tol`. Evaluation then runs the greedy
policy in the real env, like for any other agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from rlgen.agents.tabular import TabularAgent, TabularConfig
from rlgen.config import check_choice, check_nonnegative, named
from rlgen.distributions import greedy_probs
from rlgen.envs.model import require_model
from rlgen.errors import UserError
from rlgen.loops import sweeps
from rlgen.mdp import Backup, TabularModel, evaluate_policy, evaluation_sweep, optimality_sweep, solve_values

if TYPE_CHECKING:
    from rlgen.run import Run


@dataclass
class DPConfig(TabularConfig):
    tol: float = 1e-8
    """stop when a sweep changes no value by more than this (sup norm)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nonnegative(**named(self, "tol"))


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

    def check_env(self, env: gym.Env) -> None:
        self.check_model(require_model(env))

    def check_model(self, model: TabularModel) -> None:
        if model.n_states != self.n_states:
            raise UserError(f"the env's model has {model.n_states} states, its observations {self.n_states}")

    def folded(self, model: TabularModel) -> Backup:
        self.check_model(model)
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

    def __post_init__(self) -> None:
        super().__post_init__()
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
            new = solve_values(model, self.policy, self.config.gamma)
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
        improved = greedy_probs(self.Q)
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
            self.policy, self.swept_since_refresh = greedy_probs(self.Q), False

