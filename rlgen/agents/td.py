"""Temporal-difference learning (Sutton & Barto Chapters 6 and 7): update from each step, bootstrapping.

- `td_prediction`: n-step TD estimate of V for the uniform random policy (n = 1 is TD(0), Section
  6.1; n > 1 is Section 7.1);
- `sarsa`, `expected_sarsa`, `q_learning`, `double_q_learning`: one step loop, four TD targets
  (Sections 6.4, 6.6, 6.5, 6.7).

Behaviour is epsilon-greedy in Q with ties broken at random; epsilon may decay linearly. With the env's
masks (agent.action_masking), behaviour, bootstrap and the saved policy are over each state's valid
actions (tabular.py: `valid`). A step cut by
a time limit bootstraps like any other step (truncation is not termination); only a termination
zeroes the bootstrap.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rlgen.agents.tabular import TabularAgent, TabularConfig, check_step_size
from rlgen.config import MaskingConfig, check_choice, check_nonnegative, check_probability, check_range, named
from rlgen.distributions import (
    categorical_sample,
    epsilon_greedy,
    epsilon_greedy_probs,
    epsilon_greedy_value,
    greedy_probs,
    masked_values,
    random_actions,
    random_argmax,
)
from rlgen.loops import Transition, per_step
from rlgen.returns import linear_decay, n_step_target

if TYPE_CHECKING:
    from rlgen.run import Run


@dataclass
class TDConfig(MaskingConfig, TabularConfig):
    name: str = "q_learning"
    alpha: float = 0.1
    """step size"""
    epsilon: float = 0.1
    """exploration of the epsilon-greedy behaviour policy (at the start, if it decays)"""
    epsilon_final: float = 0.1
    """epsilon after `epsilon_decay_steps` env steps (linear decay)"""
    epsilon_decay_steps: int = 0
    """0: epsilon stays constant"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_step_size(**named(self, "alpha"))
        check_probability(**named(self, "epsilon", "epsilon_final"))
        check_nonnegative(**named(self, "epsilon_decay_steps"))


@dataclass
class TDPredictionConfig(MaskingConfig, TabularConfig):
    name: str = "td_prediction"
    alpha: float = 0.1
    n: int = 1
    """steps before bootstrapping: 1 is TD(0)"""
    policy: str = "uniform"
    """the policy to evaluate (uniform random)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_step_size(**named(self, "alpha"))
        check_range(1, why=" (steps before bootstrapping)", **named(self, "n"))
        check_choice("agent.policy", self.policy, ("uniform",))


class TDPrediction(TabularAgent):
    """n-step TD prediction of V^pi for the uniform random policy (over the valid actions, with masks)."""

    Config = TDPredictionConfig
    samples_policy = True
    has_q = False

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.window: deque[tuple[int, float]] = deque()
        """the last n (state, reward) pairs whose states are not yet updated"""

    def learn(self, total_steps: int, run: Run) -> None:
        per_step(self, run, total_steps)

    def explore(self, obs: Any, mask: np.ndarray | None = None) -> np.ndarray:
        self.note_masks(self.states(obs), mask)
        return random_actions(1, self.n_actions, self.rng, self.mask_of(self.states(obs)))

    def observe(self, t: Transition, total_steps: int) -> None:
        """Append the step to the window of the last n; update the oldest state once n steps (or the
        episode's end) are in it; at the end of an episode, update every state left in the window."""
        cfg = self.config
        s2, terminated = self.states(t.next_obs)[0], bool(t.terminated[0])
        self.window.append((int(self.states(t.obs)[0]), float(t.rewards[0])))
        done = terminated or bool(t.truncated[0])
        while self.window and (len(self.window) == cfg.n or done):
            tail = 0.0 if terminated else self.V[s2]
            s0 = self.window[0][0]
            target = n_step_target([x[1] for x in self.window], cfg.gamma, tail)
            self.V[s0] += cfg.alpha * (target - self.V[s0])
            self.window.popleft()
            if not done:
                break
        return None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "window": [list(x) for x in self.window]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.window = deque((int(s), float(r)) for s, r in state["window"])


class TDControl(TabularAgent):
    """The step loop shared by SARSA, Expected SARSA, Q-learning and Double Q-learning.
    Subclasses define `target(r, s2, a2, terminated)`, and may override `update`."""

    Config = TDConfig

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.next_action: int | None = None
        """SARSA's bootstrap action a' of the last step: the action taken next"""

    def epsilon(self) -> float:
        cfg = self.config
        return linear_decay(cfg.epsilon, cfg.epsilon_final, cfg.epsilon_decay_steps, self.num_steps)

    def behaviour(self, s: int) -> int:
        mask = self.mask_of(s)
        return int(epsilon_greedy(self.Q[s][None], self.epsilon(), self.rng, None if mask is None else mask[None])[0])

    def target(self, r: float, s2: int, a2: int, terminated: bool) -> float:
        raise NotImplementedError

    def update(self, s: int, a: int, r: float, s2: int, a2: int, terminated: bool) -> float:
        """One TD update of Q(s, a); returns the TD error."""
        delta = self.target(r, s2, a2, terminated) - self.Q[s, a]
        self.Q[s, a] += self.config.alpha * delta
        return delta

    def learn(self, total_steps: int, run: Run) -> None:
        per_step(self, run, total_steps)
        self.refresh()

    def explore(self, obs: Any, mask: np.ndarray | None = None) -> np.ndarray:
        """The behaviour policy's action, or the one already chosen as SARSA's bootstrap action."""
        self.note_masks(self.states(obs), mask)
        a = self.next_action if self.next_action is not None else self.behaviour(int(self.states(obs)[0]))
        self.next_action = None
        return np.array([a])

    def observe(self, t: Transition, total_steps: int) -> dict[str, float]:
        s, a, s2 = int(self.states(t.obs)[0]), int(t.actions[0]), int(self.states(t.next_obs)[0])
        self.note_masks(s2, None if t.next_masks is None else t.next_masks[0])
        a2 = self.behaviour(s2)  # SARSA's bootstrap action is also the next action taken
        delta = self.update(s, a, float(t.rewards[0]), s2, a2, bool(t.terminated[0]))
        stats = {"td/abs_error": abs(delta)}
        if t.terminated[0] or t.truncated[0]:
            stats["rollout/exploration_rate"] = self.epsilon()
        else:
            self.next_action = a2
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "next_action": self.next_action}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.next_action = state["next_action"]

    def refresh(self) -> None:
        """policy.npy and values.npy: the greedy (target) policy in Q, and V = max_a Q (over valid actions)."""
        self.policy = greedy_probs(self.Q, self.valid)
        self.V = masked_values(self.Q, self.valid).max(axis=1)

    def behaviour_probs(self, q: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """(n, A) probabilities of the behaviour policy for rows of Q: epsilon-greedy (over `mask`'s actions)."""
        return epsilon_greedy_probs(q, self.epsilon(), mask)

    def act(self, obs: Any, deterministic: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
        """Greedy in Q; not deterministic: a sample of the behaviour policy (over valid actions, with masks)."""
        s = self.states(obs)
        self.note_masks(s, mask)
        if deterministic:
            return masked_values(self.Q[s], self.mask_of(s)).argmax(axis=1)
        return categorical_sample(self.behaviour_probs(self.Q[s], self.mask_of(s)), self.rng)


class Sarsa(TDControl):
    """On-policy: bootstrap from the action the behaviour policy takes next (S&B eq. 6.7)."""

    def target(self, r: float, s2: int, a2: int, terminated: bool) -> float:
        return r if terminated else r + self.config.gamma * self.Q[s2, a2]

    def refresh(self) -> None:
        """SARSA learns the values of its epsilon-greedy policy, so that is the policy it writes."""
        self.policy = epsilon_greedy_probs(self.Q, self.epsilon(), self.valid)
        self.V = (self.policy * self.Q).sum(axis=1)


class ExpectedSarsa(Sarsa):
    """Bootstrap from the expectation under the epsilon-greedy policy (S&B eq. 6.9)."""

    def target(self, r: float, s2: int, a2: int, terminated: bool) -> float:
        if terminated:
            return r
        return r + self.config.gamma * epsilon_greedy_value(self.Q[s2], self.epsilon(), self.mask_of(s2))


class QLearning(TDControl):
    """Off-policy: bootstrap from the greedy action (S&B eq. 6.8), among the valid ones."""

    def target(self, r: float, s2: int, a2: int, terminated: bool) -> float:
        return r if terminated else r + self.config.gamma * masked_values(self.Q[s2], self.mask_of(s2)).max()


class DoubleQLearning(TDControl):
    """Two estimates; one picks the next action, the other values it, chosen by a coin per step
    (S&B Section 6.7, van Hasselt 2010). Q is their mean (the behaviour acts on Q1 + Q2)."""

    tables = (*TDControl.tables, "Q1", "Q2")

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.Q1, self.Q2 = np.zeros_like(self.Q), np.zeros_like(self.Q)

    def update(self, s: int, a: int, r: float, s2: int, a2: int, terminated: bool) -> float:
        learner, other = (self.Q1, self.Q2) if self.rng.random() < 0.5 else (self.Q2, self.Q1)
        if terminated:
            boot = 0.0
        else:
            boot = self.config.gamma * other[s2, int(random_argmax(learner[s2], self.rng, self.mask_of(s2)))]
        delta = r + boot - learner[s, a]
        learner[s, a] += self.config.alpha * delta
        self.Q[s, a] = 0.5 * (self.Q1[s, a] + self.Q2[s, a])
        return delta
