"""Tabular maximum-entropy RL: soft value iteration (planning) and soft Q-learning (learning).

Both solve the entropy-regularised problem of rlgen/soft.py: rewards plus ent_coef * H(pi(.|s)),
whose optimal policy is the Boltzmann policy pi(a|s) = exp((Q(s,a) - V(s)) / ent_coef) with
V(s) = ent_coef * log sum_a exp(Q(s,a) / ent_coef) (Haarnoja et al. 2017, sec. 2).

- `soft_value_iteration`: synchronous soft Bellman backups over the tabular model, one per budget
  step, until the sup-norm change is below tol (the soft analogue of value iteration, dp.py).
- `soft_q_learning`: Q-learning (td.py's step loop) with the soft target r + gamma * V(s') in place
  of r + gamma * max Q, acting from the Boltzmann policy (Haarnoja et al. 2017, sec. 3; Fox et al.
  2016, "Taming the Noise in Reinforcement Learning via Soft Updates", for the tabular algorithm).

The temperature is `ent_coef` (SB3's SAC name for it); `alpha` stays the step size, as in Sutton &
Barto and the other tabular agents. Soft values add an entropy bonus at every step, so undiscounted
(gamma = 1) problems where an episode can last forever have infinite soft values: gamma defaults
to 0.99 here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rlgen.agents.dp import DPAgent, DPConfig
from rlgen.agents.td import TDConfig, TDControl
from rlgen.config import check_range, named
from rlgen.distributions import gumbel_max_sample, masked_values, np_categorical_entropy, random_actions, uniform_probs
from rlgen.mdp import TabularModel
from rlgen.soft import boltzmann, soft_q_target, soft_value

if TYPE_CHECKING:
    from rlgen.run import Run


def _check_temperature(**values: float) -> None:
    check_range(0, open_low=True, why=" (the temperature divides Q; for the hard ent_coef -> 0 limit use "
                "value_iteration or q_learning)", **values)


@dataclass
class SoftValueIterationConfig(DPConfig):
    name: str = "soft_value_iteration"
    gamma: float = 0.99
    """discount factor (< 1: the entropy bonus makes endless episodes infinitely valuable otherwise)"""
    ent_coef: float = 0.1
    """temperature: weight of the policy's entropy against the reward"""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_temperature(**named(self, "ent_coef"))


class SoftValueIteration(DPAgent):
    """V <- ent_coef * logsumexp(Q(V) / ent_coef) until the change is below tol; the policy is the
    Boltzmann policy of the final Q. Logs dp/delta per sweep, and the policy's mean entropy."""

    Config = SoftValueIterationConfig

    def sweep(self, model: TabularModel) -> float:
        self.Q = self.folded(model).q(self.V)
        new = soft_value(self.Q, self.config.ent_coef)
        delta, self.V = float(np.abs(new - self.V).max()), new
        self.policy = boltzmann(self.Q, self.config.ent_coef)
        return delta

    def learn(self, total_steps: int, run: Run) -> None:
        super().learn(total_steps, run)
        run.log(self.num_steps, {"train/entropy": float(np_categorical_entropy(self.policy).mean()),
                                 "train/ent_coef": self.config.ent_coef})


@dataclass
class SoftQLearningConfig(TDConfig):
    name: str = "soft_q_learning"
    gamma: float = 0.99
    """discount factor (< 1: the entropy bonus makes endless episodes infinitely valuable otherwise)"""
    ent_coef: float = 0.1
    """temperature of the Boltzmann policy and of the soft target"""
    alpha: float = 0.5
    """step size (S&B's alpha)"""
    epsilon: float = 0.0
    """probability of a uniform action instead of a Boltzmann sample. Learning is off-policy (the
    target does not depend on the behaviour), and at a low temperature the Boltzmann policy alone
    can stop trying actions whose Q it has underrated"""
    epsilon_final: float = 0.0
    """epsilon after `epsilon_decay_steps` env steps (linear decay; 0 steps: epsilon stays constant)"""
    step_power: float = 0.0
    """0: constant step size; w in (0.5, 1]: the n-th update of (s, a) uses alpha / n^w, a
    Robbins-Monro schedule under which tabular Q-learning converges (Even-Dar & Mansour 2003)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_temperature(**named(self, "ent_coef"))
        # w > 1 makes the steps summable, so Q stops short of its target; w < 0 makes them grow
        check_range(0, 1, why=" (the exponent of the step size alpha / n^w)", **named(self, "step_power"))


class SoftQLearning(TDControl):
    """Q(s,a) += step * (r + gamma * (1 - terminated) * V(s') - Q(s,a)), V the soft value of Q(s', .);
    actions sampled from the Boltzmann policy of Q (TD's step loop, td.py). Deterministic acting is
    argmax Q."""

    Config = SoftQLearningConfig
    tables = (*TDControl.tables, "counts")

    def __init__(self, observation_space, action_space, config: SoftQLearningConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.counts = np.zeros((self.n_states, self.n_actions))
        self.refresh()

    def behaviour(self, s: int) -> int:
        """A sample of softmax(Q[s] / ent_coef) by the Gumbel-max trick (no exponentials to overflow),
        or with probability epsilon a uniform action."""
        mask = self.mask_of(s)  # the valid actions, where the env offers masks (tabular.py)
        if self.rng.random() < self.epsilon():
            return int(random_actions(1, self.n_actions, self.rng, None if mask is None else mask[None])[0])
        return int(gumbel_max_sample(masked_values(self.Q[s], mask) / self.config.ent_coef, self.rng))

    def target(self, r: float, s2: int, a2: int, terminated: bool) -> float:
        return float(soft_q_target(r, self.Q[s2], terminated, self.config.gamma, self.config.ent_coef,
                                   self.mask_of(s2)))

    def update(self, s: int, a: int, r: float, s2: int, a2: int, terminated: bool) -> float:
        self.counts[s, a] += 1
        delta = self.target(r, s2, a2, terminated) - self.Q[s, a]
        self.Q[s, a] += self.config.alpha / self.counts[s, a] ** self.config.step_power * delta
        return delta

    def learn(self, total_steps: int, run: Run) -> None:
        super().learn(total_steps, run)
        visited = self.counts.sum(axis=1) > 0  # the Boltzmann policy's entropy where it has acted
        ent = (float(np_categorical_entropy(self.policy[visited]).mean()) if visited.any()
               else float(np.log(self.n_actions)))
        run.log(self.num_steps, {"train/entropy": ent, "train/ent_coef": self.config.ent_coef})

    def refresh(self) -> None:
        """values.npy and policy.npy: the soft value and the Boltzmann policy of Q."""
        self.V = soft_value(self.Q, self.config.ent_coef, self.valid)
        self.policy = boltzmann(self.Q, self.config.ent_coef, self.valid)

    def behaviour_probs(self, q: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The Boltzmann policy of Q, mixed with epsilon uniform (what `behaviour` samples)."""
        eps = self.epsilon()
        return eps * uniform_probs(mask, q.shape) + (1.0 - eps) * boltzmann(q, self.config.ent_coef, mask)
