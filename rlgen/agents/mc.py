"""Monte Carlo methods (Sutton & Barto Chapter 5): learn from complete episodes, no bootstrapping.

- `mc_prediction`: first-visit or every-visit estimate of V^pi for a fixed policy (Section 5.1);
- `mc_control`: on-policy control with an epsilon-soft policy (Section 5.4);
- `mc_exploring_starts`: control from random (state, action) starts (Section 5.3), on envs that can
  start anywhere (rlgen gridworlds, through `reset(options={"state": s})`);
- `mc_off_policy`: off-policy control with weighted importance sampling (Section 5.7).

With the env's masks (agent.action_masking), behaviour, exploring starts, bootstraps, importance weights
and the saved policy are over each state's valid actions (tabular.py: `valid`).

The budget counts env steps; episodes are whole, so a run may end a few steps past it. An episode
cut by a time limit is completed with the current estimate of its last state's value
(truncation is not termination).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from rlgen.agents.tabular import TabularAgent, TabularConfig, check_step_or_average
from rlgen.config import MaskingConfig, check_choice, check_nonnegative, check_probability, named
from rlgen.distributions import (
    epsilon_greedy,
    epsilon_greedy_probs,
    epsilon_greedy_value,
    greedy_probs,
    masked_values,
    random_actions,
    random_argmax,
)
from rlgen.errors import UserError
from rlgen.loops import Episode, episodes
from rlgen.returns import episode_returns, linear_decay

if TYPE_CHECKING:
    from rlgen.run import Run


def first_visits(pairs: list[Any]) -> np.ndarray:
    """(T,) bool: True where pairs[t] occurs for the first time in the episode."""
    seen: set = set()
    out = np.zeros(len(pairs), dtype=bool)
    for t, p in enumerate(pairs):
        if p not in seen:
            seen.add(p)
            out[t] = True
    return out


@dataclass
class MCConfig(MaskingConfig, TabularConfig):
    name: str = "mc_control"
    first_visit: bool = True
    """average returns from first visits only (False: every visit)"""
    epsilon: float = 0.1
    """exploration of the epsilon-soft (behaviour) policy (at the start, if it decays)"""
    epsilon_final: float = 0.1
    """epsilon after `epsilon_decay_steps` env steps (linear decay; decaying to 0 is GLIE, S&B 5.4)"""
    epsilon_decay_steps: int = 0
    """0: epsilon stays constant"""
    alpha: float = 0.0
    """constant step size; 0 means sample averages (1/N)"""
    initial_value: float = 0.0
    """Q before any return; below every return (pessimistic) makes the greedy target of mc_off_policy
    prefer actions already tried, so its importance weights survive (S&B Section 5.7's "arbitrary")"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_probability(**named(self, "epsilon", "epsilon_final"))
        check_nonnegative(**named(self, "epsilon_decay_steps"))
        check_step_or_average(**named(self, "alpha"))


@dataclass
class MCPredictionConfig(MCConfig):
    name: str = "mc_prediction"
    policy: str = "uniform"
    """the policy to evaluate (uniform random)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.policy", self.policy, ("uniform",))


class MCAgent(TabularAgent):
    """The episode loop shared by the Monte Carlo agents: `behaviour(s)` picks actions, `update`
    learns from a finished episode."""

    Config = MCConfig
    tables = (*TabularAgent.tables, "counts")

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.counts = np.zeros((self.n_states, self.n_actions))
        if self.Q is not None:
            self.Q[:] = config.initial_value

    def behaviour(self, s: int) -> int:
        return int(self.act(np.array([s]), deterministic=False)[0])

    def epsilon(self) -> float:
        cfg = self.config
        return linear_decay(cfg.epsilon, cfg.epsilon_final, cfg.epsilon_decay_steps, self.num_steps)

    def update(self, states: list[int], actions: list[int], returns: np.ndarray) -> None:
        raise NotImplementedError

    def begin(self, envs: gym.vector.VectorEnv) -> tuple[Any, int | None]:
        """Start an episode: (observation, forced first action or None)."""
        obs, _ = envs.reset()
        return obs, None

    def explore(self, obs: Any, mask: np.ndarray | None = None) -> np.ndarray:
        self.note_masks(self.states(obs), mask)
        return np.array([self.behaviour(int(self.states(obs)[0]))])

    def random_action(self, s: int) -> int:
        """A uniformly random action (among the valid ones of state s)."""
        mask = self.mask_of(s)
        return int(random_actions(1, self.n_actions, self.rng, None if mask is None else mask[None])[0])

    def greedy_value(self, s: int) -> float:
        """max_a Q(s, a) over the valid actions."""
        return float(masked_values(self.Q[s], self.mask_of(s)).max())

    def learn(self, total_steps: int, run: Run) -> None:
        episodes(self, run, total_steps)
        self.refresh()

    def learn_episode(self, ep: Episode) -> dict[str, float]:
        """Returns of every step (completed by the value of the last state if a time limit cut the
        episode: truncation is not termination), then the agent's update."""
        states = [self.state(o) for o in ep.observations]
        if ep.masks:  # the masks of o_0 .. o_T: the final state's valid actions complete a truncated episode
            self.note_masks(np.array([*states, self.state(ep.final_obs)]), np.array(ep.masks))
        tail = 0.0 if ep.terminated else self.bootstrap(self.state(ep.final_obs))
        self.update(states, ep.actions, episode_returns(ep.rewards, self.config.gamma, tail))
        return {"rollout/exploration_rate": self.epsilon()}

    def bootstrap(self, s: int) -> float:
        """The value that completes an episode cut by a time limit in state s."""
        return float(self.V[s])

    def average(self, s: int, a: int, target: float) -> None:
        """Q(s, a) moves toward the return: a sample average, or a constant step (S&B eq. 2.3, 2.5)."""
        self.counts[s, a] += 1
        step = self.config.alpha or 1.0 / self.counts[s, a]
        self.Q[s, a] += step * (target - self.Q[s, a])


class MCPrediction(MCAgent):
    """V^pi of the uniform random policy from sampled returns (S&B Section 5.1)."""

    Config = MCPredictionConfig
    samples_policy = True
    has_q = False
    tables = (*MCAgent.tables, "v_counts")

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.v_counts = np.zeros(self.n_states)

    def update(self, states: list[int], actions: list[int], returns: np.ndarray) -> None:
        use = first_visits(states) if self.config.first_visit else np.ones(len(states), dtype=bool)
        for s, g in zip(np.asarray(states)[use], returns[use], strict=True):
            self.v_counts[s] += 1
            step = self.config.alpha or 1.0 / self.v_counts[s]
            self.V[s] += step * (g - self.V[s])


class MCControl(MCAgent):
    """On-policy first-visit (or every-visit) control of an epsilon-soft policy (S&B Section 5.4)."""

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.policy = epsilon_greedy_probs(self.Q, config.epsilon)

    def behaviour(self, s: int) -> int:
        mask = self.mask_of(s)
        return int(epsilon_greedy(self.Q[s][None], self.epsilon(), self.rng, None if mask is None else mask[None])[0])

    def update(self, states: list[int], actions: list[int], returns: np.ndarray) -> None:
        pairs = list(zip(states, actions, strict=True))
        use = first_visits(pairs) if self.config.first_visit else np.ones(len(pairs), dtype=bool)
        for (s, a), g, keep in zip(pairs, returns.tolist(), use.tolist(), strict=True):
            if keep:
                self.average(s, a, g)

    def bootstrap(self, s: int) -> float:
        return epsilon_greedy_value(self.Q[s], self.epsilon(), self.mask_of(s))

    def refresh(self) -> None:
        """policy.npy and values.npy from Q: the epsilon-soft policy being learned, and its V."""
        self.policy = epsilon_greedy_probs(self.Q, self.epsilon(), self.valid)
        self.V = (self.policy * self.Q).sum(axis=1)

    def act(self, obs: Any, deterministic: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
        if deterministic:  # the greedy action of the learned Q, not of the epsilon-soft policy's noise
            s = self.states(obs)
            self.note_masks(s, mask)
            return masked_values(self.Q[s], self.mask_of(s)).argmax(axis=1)
        return super().act(obs, deterministic, mask)


def start_grid(base: gym.Env) -> np.ndarray:
    """The grid of an env that can start in any of its cells (rlgen's gridworlds)."""
    grid = getattr(base, "grid", None)
    if grid is None:
        raise UserError(f"mc_exploring_starts needs an env that can start in any state (rlgen gridworlds); "
                        f"'{base.spec.id if base.spec else type(base).__name__}' cannot: use mc_control")
    return grid


class MCExploringStarts(MCControl):
    """Control with exploring starts: every episode begins in a random free cell with a random
    action, then follows the greedy policy (S&B Section 5.3, Figure 5.2's Monte Carlo ES)."""

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.policy = greedy_probs(self.Q)

    def check_env(self, env: gym.Env) -> None:
        start_grid(env.unwrapped)

    def begin(self, envs: gym.vector.VectorEnv) -> tuple[Any, int | None]:
        grid = start_grid(envs.unwrapped.envs[0].unwrapped)  # a one-env SyncVectorEnv (rlgen/loops.py: episodes)
        free = np.flatnonzero(~np.isin(grid.ravel(), ["#", "G", "T", "C"]))
        s = int(self.rng.choice(free))
        obs, _ = envs.reset(options={"state": s})
        self.note_masks(s, None if getattr(envs, "last_masks", None) is None else envs.last_masks[0])
        return obs, self.random_action(s)

    def behaviour(self, s: int) -> int:
        return int(random_argmax(self.Q[s], self.rng, self.mask_of(s)))

    def bootstrap(self, s: int) -> float:
        return self.greedy_value(s)

    def refresh(self) -> None:
        self.policy = greedy_probs(self.Q, self.valid)
        self.V = masked_values(self.Q, self.valid).max(axis=1)


class MCOffPolicy(MCAgent):
    """Off-policy control, weighted importance sampling (S&B Section 5.7): the behaviour is
    epsilon-greedy in Q, the target policy greedy; returns are weighted by pi/b from the episode's
    end back to the first action the target would not take."""

    tables = (*MCAgent.tables, "C")

    def __init__(self, observation_space, action_space, config, seed):
        super().__init__(observation_space, action_space, config, seed)
        self.C = np.zeros((self.n_states, self.n_actions))
        self.policy = greedy_probs(self.Q)

    def behaviour(self, s: int) -> int:
        # epsilon-greedy with ties to the first argmax, the target policy's action, so that the
        # importance weight in `update` is exact (rlgen.distributions.epsilon_greedy breaks ties at random)
        if self.rng.random() < self.epsilon():
            return self.random_action(s)
        return self.greedy_action(s)

    def greedy_action(self, s: int) -> int:
        """The target policy's action: the first argmax of Q among the valid actions."""
        return int(masked_values(self.Q[s], self.mask_of(s)).argmax())

    def update(self, states: list[int], actions: list[int], returns: np.ndarray) -> None:
        eps = self.epsilon()
        w = 1.0
        for t in range(len(states) - 1, -1, -1):
            s, a = states[t], actions[t]
            self.C[s, a] += w
            self.Q[s, a] += w / self.C[s, a] * (returns[t] - self.Q[s, a])
            if a != self.greedy_action(s):
                break  # pi(a|s) = 0: earlier steps carry zero weight
            n = self.n_actions if self.valid is None else int(self.valid[s].sum())
            w /= 1.0 - eps + eps / n  # b(a|s) of the greedy action under epsilon-greedy over the n valid actions

    def bootstrap(self, s: int) -> float:
        return self.greedy_value(s)

    def refresh(self) -> None:
        self.policy = greedy_probs(self.Q, self.valid)
        self.V = masked_values(self.Q, self.valid).max(axis=1)
