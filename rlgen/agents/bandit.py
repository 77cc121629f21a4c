"""Bandit algorithms (Sutton & Barto Chapter 2), vectorised over many independent problems.

Each rule is a small class holding (P, k) arrays for P problems at once, with `select()` -> (P,)
arms and `update(arms, rewards)`. The testbed (`rlgen.bandit_testbed`) runs thousands of problems
with them in one numpy loop; the agents below run the same rule with P = 1 through the CLI, where
an episode is the env's fixed number of pulls and estimates carry over from one episode to the next
(the env's arms are the same problem every episode, see rlgen/envs/bandits.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

from rlgen.agents.tabular import TabularAgent, TabularConfig, check_step_or_average, copy_table, restore_tables
from rlgen.config import check_choice, check_nonnegative, check_positive, check_probability, named
from rlgen.distributions import (
    categorical_sample,
    epsilon_greedy,
    epsilon_greedy_probs,
    greedy_probs,
    np_softmax,
    random_argmax,
)
from rlgen.loops import Transition, per_step

if TYPE_CHECKING:
    from rlgen.run import Run


class BanditRule:
    """Batched state of one bandit algorithm over P problems with k arms each."""

    def __init__(self, n_problems: int, k: int, config: Any, rng: np.random.Generator):
        self.P, self.k, self.cfg, self.rng = n_problems, k, config, rng
        self.rows = np.arange(n_problems)
        self.N = np.zeros((n_problems, k))
        self.t = 0

    def select(self) -> np.ndarray:
        raise NotImplementedError

    def update(self, arms: np.ndarray, rewards: np.ndarray) -> None:
        self.t += 1
        self.N[self.rows, arms] += 1

    def estimates(self) -> np.ndarray:
        """(P, k) what the rule believes about each arm (value estimates or preferences)."""
        raise NotImplementedError

    def probs(self) -> np.ndarray:
        """(P, k) probability of pulling each arm next."""
        raise NotImplementedError


class ActionValues(BanditRule):
    """Q estimates by sample averages or a constant step size (S&B eq. 2.3 and 2.5)."""

    def __init__(self, n_problems: int, k: int, config: Any, rng: np.random.Generator):
        super().__init__(n_problems, k, config, rng)
        self.Q = np.full((n_problems, k), float(getattr(config, "initial_value", 0.0)))

    def update(self, arms: np.ndarray, rewards: np.ndarray) -> None:
        super().update(arms, rewards)
        n = self.N[self.rows, arms]
        step = self.cfg.alpha if self.cfg.alpha > 0 else 1.0 / n
        self.Q[self.rows, arms] += step * (rewards - self.Q[self.rows, arms])

    def estimates(self) -> np.ndarray:
        return self.Q


class EpsilonGreedy(ActionValues):
    """Greedy with probability 1 - epsilon, else a uniformly random arm (S&B Section 2.2);
    `initial_value` > 0 gives optimistic initial values (Section 2.6)."""

    def select(self) -> np.ndarray:
        return epsilon_greedy(self.Q, self.cfg.epsilon, self.rng)

    def probs(self) -> np.ndarray:
        return epsilon_greedy_probs(self.Q, self.cfg.epsilon)


class UCB(ActionValues):
    """argmax Q + c sqrt(ln t / N), untried arms first (S&B eq. 2.10)."""

    def score(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = self.cfg.c * np.sqrt(np.log(max(self.t, 1)) / self.N)
        return np.where(self.N == 0, np.inf, self.Q + bonus)

    def select(self) -> np.ndarray:
        return random_argmax(np.nan_to_num(self.score(), posinf=1e300), self.rng)

    def probs(self) -> np.ndarray:
        return greedy_probs(self.score())


class GradientBandit(BanditRule):
    """Soft-max preferences H moved by stochastic gradient ascent on expected reward, with the
    average reward as baseline or none (S&B eq. 2.12)."""

    def __init__(self, n_problems: int, k: int, config: Any, rng: np.random.Generator):
        super().__init__(n_problems, k, config, rng)
        self.H = np.zeros((n_problems, k))
        self.baseline = np.zeros(n_problems)

    def select(self) -> np.ndarray:
        return categorical_sample(np_softmax(self.H), self.rng)

    def update(self, arms: np.ndarray, rewards: np.ndarray) -> None:
        super().update(arms, rewards)
        if self.cfg.baseline:  # incremental mean of all rewards so far, including this one
            self.baseline += (rewards - self.baseline) / self.t
        pi = np_softmax(self.H)
        onehot = np.zeros_like(pi)
        onehot[self.rows, arms] = 1.0
        self.H += self.cfg.alpha * (rewards - self.baseline)[:, None] * (onehot - pi)

    def estimates(self) -> np.ndarray:
        return self.H

    def probs(self) -> np.ndarray:
        return np_softmax(self.H)


class Thompson(BanditRule):
    """Sample each arm's value from its posterior, pull the best sample (Thompson 1933).
    gaussian: N(0, 1) prior, unit-variance rewards, posterior N(sum r / (n + 1), 1 / (n + 1));
    beta: Beta(1, 1) prior on 0/1 rewards, posterior Beta(1 + successes, 1 + failures)."""

    def __init__(self, n_problems: int, k: int, config: Any, rng: np.random.Generator):
        super().__init__(n_problems, k, config, rng)
        self.S = np.zeros((n_problems, k))

    def update(self, arms: np.ndarray, rewards: np.ndarray) -> None:
        super().update(arms, rewards)
        self.S[self.rows, arms] += rewards

    def sample(self, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = self.rng if rng is None else rng
        if self.cfg.likelihood == "beta":
            return rng.beta(1.0 + self.S, 1.0 + self.N - self.S)
        return rng.normal(self.S / (self.N + 1.0), 1.0 / np.sqrt(self.N + 1.0))

    def select(self) -> np.ndarray:
        return self.sample().argmax(axis=1)

    def estimates(self) -> np.ndarray:
        if self.cfg.likelihood == "beta":
            return (1.0 + self.S) / (2.0 + self.N)
        return self.S / (self.N + 1.0)

    def probs(self, n_samples: int = 1000) -> np.ndarray:
        """Monte Carlo estimate of P(arm is pulled) = P(its sample is the largest), from a generator of
        its own: reading the policy (for a checkpoint, say) must not move the learning's random stream."""
        rng = np.random.default_rng(self.t)
        picks = np.stack([self.sample(rng).argmax(axis=1) for _ in range(n_samples)], axis=1)  # (P, n_samples)
        return np.stack([(picks == a).mean(axis=1) for a in range(self.k)], axis=1)


@dataclass
class EpsilonGreedyConfig(TabularConfig):
    name: str = "epsilon_greedy"
    epsilon: float = 0.1
    alpha: float = 0.0
    """constant step size; 0 means sample averages"""
    initial_value: float = 0.0
    """Q estimates before any pull (5 with epsilon 0 is S&B Figure 2.3's optimistic greedy)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_probability(**named(self, "epsilon"))
        check_step_or_average(**named(self, "alpha"))


@dataclass
class UCBConfig(TabularConfig):
    name: str = "ucb"
    c: float = 2.0
    """exploration weight (S&B Figure 2.4 uses 2)"""
    alpha: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_nonnegative(**named(self, "c"))
        check_step_or_average(**named(self, "alpha"))


@dataclass
class GradientBanditConfig(TabularConfig):
    name: str = "gradient_bandit"
    alpha: float = 0.1
    """step size of the preferences (not bounded by 1: S&B Figure 2.6 tries values above 1)"""
    baseline: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**named(self, "alpha"))


@dataclass
class ThompsonConfig(TabularConfig):
    name: str = "thompson_sampling"
    likelihood: str = "gaussian"
    """gaussian (unit-variance rewards) or beta (0/1 rewards, e.g. BanditBernoulli)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.likelihood", self.likelihood, ("gaussian", "beta"))


class BanditAgent(TabularAgent):
    """One bandit rule (P = 1) behind the agent contract. S = 1: Q is the rule's estimates,
    policy its current pull probabilities."""

    Rule: ClassVar[type[BanditRule]] = BanditRule

    @classmethod
    def misfit(cls, observation_space: gym.Space, action_space: gym.Space) -> str | None:
        if observation_space != gym.spaces.Discrete(1):
            return f"needs a bandit env (one state, e.g. env=Bandit10); this env's observations are {observation_space}"
        return super().misfit(observation_space, action_space)

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.rule = self.Rule(self.n_states, self.n_actions, config, self.rng)

    def learn(self, total_steps: int, run: Run) -> None:
        per_step(self, run, total_steps)
        self.refresh()

    def explore(self, obs: Any) -> np.ndarray:
        return self.rule.select()

    def observe(self, t: Transition, total_steps: int) -> dict[str, float]:
        self.rule.update(t.actions, t.rewards.astype(float))
        return {"bandit/regret": float(t.info["regret"][0]),
                "bandit/optimal_action": float(t.actions[0] == t.info["optimal_action"][0])}

    def refresh(self) -> None:
        self.Q = np.array(self.rule.estimates(), dtype=float).reshape(self.n_states, self.n_actions)
        self.policy = self.rule.probs().reshape(self.n_states, self.n_actions)
        self.V = (self.policy * self.Q).sum(axis=1)

    def act(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        n = len(self.states(obs))
        if deterministic:
            return np.full(n, int(np.asarray(self.rule.estimates())[0].argmax()))
        return np.array([int(self.rule.select()[0]) for _ in range(n)])

    def rule_state(self) -> list[str]:
        """The rule's attributes a checkpoint keeps: all but its rng (the agent's) and cfg (the config)."""
        return sorted(set(vars(self.rule)) - {"rng", "cfg"})

    def state_dict(self) -> dict[str, Any]:
        rule = {k: copy_table(v) if isinstance(v, np.ndarray) else v for k, v in vars(self.rule).items()
                if k in self.rule_state()}
        return {**super().state_dict(), "rule": rule}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if sorted(state["rule"]) != self.rule_state():
            raise ValueError(f"the bandit rule's state has {sorted(state['rule'])}, not {self.rule_state()}")
        restore_tables(self.rule, state["rule"], self.rule_state())


class EpsilonGreedyAgent(BanditAgent):
    Config = EpsilonGreedyConfig
    Rule = EpsilonGreedy


class UCBAgent(BanditAgent):
    Config = UCBConfig
    Rule = UCB


class GradientBanditAgent(BanditAgent):
    Config = GradientBanditConfig
    Rule = GradientBandit


class ThompsonAgent(BanditAgent):
    Config = ThompsonConfig
    Rule = Thompson
