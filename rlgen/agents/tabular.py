"""The base of every tabular agent: value and policy arrays indexed by state, and their artifacts.

A subclass (dynamic programming, Monte Carlo, TD, bandits, soft Q-learning, ...) fills three arrays
and implements `learn`:

- `V` (S,): state values;
- `Q` (S, A) or None: action values (None for agents that only predict V);
- `policy` (S, A): action probabilities; `act` takes the argmax (deterministic) or samples from it.

Agents that update only Q while learning derive `policy` and `V` from it in `refresh()`, which the
base calls before the arrays are read (checkpoints, artifacts).

Action masks (agents whose config has action_masking, rlgen/config.py: MaskingConfig): a tabular
MDP's valid actions are a function of its state, so the agent keeps them as a table `valid` (S, A),
filled in from the masks of the states it meets (None until the env offers one). Behaviour, targets
and the saved policy then run over each state's valid actions only. Everything else is shared: turning
observations into state indices (`Discrete` and `Tuple` of `Discrete`, e.g. Blackjack's (sum,
dealer card, usable ace)), checkpoints of the three arrays, and `write_artifacts` (values.npy,
q_values.npy, policy.npy, and on gridworlds values.png: the value heatmap with the policy's arrows,
also added to TensorBoard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np

import rlgen.envs.registration  # noqa: F401  (registers rlgen/<Name>-v0 before any env is made)
from rlgen.agents.base import Agent
from rlgen.config import AgentConfig, check_discount, check_range, named
from rlgen.distributions import categorical_sample
from rlgen.envs import refuse_unmasked
from rlgen.evaluation import MaskedPolicy

if TYPE_CHECKING:
    from rlgen.run import Run


@dataclass
class TabularConfig(AgentConfig):
    gamma: float = 1.0
    """discount factor (1 suits the episodic tasks of Sutton & Barto)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_discount(**named(self, "gamma"))


def check_step_size(**values: float) -> None:
    """A step size alpha in (0, 1] moves an estimate part of the way to its target (Sutton & Barto
    eq. 2.5, 6.2): above 1 it overshoots, and at 0 nothing is learnt."""
    check_range(0, 1, open_low=True, why=" (a step size)", **values)


def check_step_or_average(**values: float) -> None:
    """A constant step size in (0, 1], or 0 for sample averages (step 1/n, S&B eq. 2.3)."""
    check_range(0, 1, why=" (a constant step size; 0: sample averages)", **values)


def space_sizes(space: gym.Space) -> list[int] | None:
    """The sizes of a Discrete space or of each part of a Tuple of Discrete spaces (None: neither)."""
    if isinstance(space, gym.spaces.Discrete):
        return [int(space.n)]
    if isinstance(space, gym.spaces.Tuple) and all(isinstance(s, gym.spaces.Discrete) for s in space):
        return [int(s.n) for s in space]
    return None


def copy_table(table: np.ndarray | None) -> np.ndarray | None:
    """A copy of an array for or from a checkpoint (None stays None), so neither side aliases the other."""
    return None if table is None else np.array(table, copy=True)


def restore_tables(owner: object, saved: dict[str, Any], names: Iterable[str]) -> None:
    """owner.<name> = saved[name] for each name, arrays copied; an array of another shape than the
    owner's (a checkpoint of another env or agent) is a ValueError."""
    for name in names:
        mine, value = getattr(owner, name), saved[name]
        if isinstance(mine, np.ndarray) or isinstance(value, np.ndarray):
            if (mine is None) != (value is None) or np.shape(mine) != np.shape(value):
                raise ValueError(f"{name} has shape {np.shape(value)} in the checkpoint, {np.shape(mine)} here")
            value = copy_table(value)
        setattr(owner, name, value)


def restricted(probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Action probabilities restricted to the valid actions and renormalised (uniform over them where
    the policy gave them no mass)."""
    kept = probs * valid
    total = kept.sum(axis=-1, keepdims=True)
    uniform = valid / valid.sum(axis=-1, keepdims=True)
    return np.where(total > 0, kept / np.where(total > 0, total, 1.0), uniform)


class TabularAgent(Agent):
    """Arrays V, Q, policy over states; `act` reads `policy`. Subclasses implement `learn`."""

    Config: ClassVar[type[AgentConfig]] = TabularConfig
    one_hot: ClassVar[bool] = False
    action_spaces = (gym.spaces.Discrete,)
    observation_spaces = (gym.spaces.Discrete, gym.spaces.Tuple)  # of Discrete: misfit says
    has_q: ClassVar[bool] = True
    """False for agents that only estimate V (prediction): no q_values.npy"""
    samples_policy: ClassVar[bool] = False
    """True for prediction agents: `act` samples the (stochastic) policy being evaluated even when
    deterministic, so evaluation returns estimate that policy's value"""
    tables: ClassVar[tuple[str, ...]] = ("V", "Q", "policy")
    """the array attributes a checkpoint keeps; subclasses add what else they learn (counts, ...)"""

    @classmethod
    def misfit(cls, observation_space: gym.Space, action_space: gym.Space) -> str | None:
        if space_sizes(observation_space) is None:
            return (f"is tabular: it needs Discrete observations (or a Tuple of them); "
                    f"this env's are {type(observation_space).__name__}")
        return super().misfit(observation_space, action_space)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.sizes = space_sizes(observation_space)
        self.n_states = int(np.prod(self.sizes))
        self.n_actions = int(action_space.n)
        self.V = np.zeros(self.n_states)
        self.Q: np.ndarray | None = np.zeros((self.n_states, self.n_actions)) if self.has_q else None
        self.policy = np.full((self.n_states, self.n_actions), 1.0 / self.n_actions)
        self.masking = bool(getattr(config, "action_masking", False))
        """honours the env's masks of valid actions"""
        self.valid: np.ndarray | None = None
        """(S, A) bool: the valid actions of each state, as the env's masks gave them (None: no masks met)"""

    # -- masks of valid actions -----------------------------------------------------------------------

    def note_masks(self, states: np.ndarray | int, masks: np.ndarray | None) -> None:
        """Remember the valid actions of these states (rows of `masks`); nothing without masks or masking."""
        if masks is None or not self.masking:
            return
        if self.valid is None:
            self.valid = np.ones((self.n_states, self.n_actions), dtype=bool)
        self.valid[states] = masks

    def mask_of(self, s: np.ndarray | int) -> np.ndarray | None:
        """The valid actions of state(s) s (None: every action, no mask met)."""
        return None if self.valid is None else self.valid[s]

    def check_env(self, env: gym.Env) -> None:
        why = "set agent.action_masking=true" if hasattr(self.config, "action_masking") else \
            "use an agent that honours masks (q_learning, sarsa, expected_sarsa, mc_control, ...)"
        refuse_unmasked(env, self.config.name, self.masking, f"must honour its mask: {why}")

    def episode_policy(self, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
        return MaskedPolicy(self.act, deterministic) if self.masking else super().episode_policy(deterministic)

    # -- observations -> state indices ----------------------------------------------------------------

    def states(self, obs: Any) -> np.ndarray:
        """A batch of observations (array, or tuple of arrays for Tuple spaces) -> (n,) state indices."""
        if len(self.sizes) == 1:
            return np.asarray(obs, dtype=np.int64).reshape(-1)
        parts = [np.asarray(o, dtype=np.int64).reshape(-1) for o in obs]
        return np.ravel_multi_index(tuple(parts), self.sizes)

    def state(self, obs: Any) -> int:
        """One observation -> its state index."""
        if len(self.sizes) == 1:
            return int(obs)
        return int(np.ravel_multi_index(tuple(int(o) for o in obs), self.sizes))

    def act(self, obs: Any, deterministic: bool = True, mask: np.ndarray | None = None) -> np.ndarray:
        s = self.states(obs)
        self.note_masks(s, mask)
        probs = self.policy[s] if self.valid is None else restricted(self.policy[s], self.valid[s])
        if deterministic and not self.samples_policy:
            return probs.argmax(axis=1)
        return categorical_sample(probs, self.rng)

    # -- checkpoints and artifacts --------------------------------------------------------------------

    def refresh(self) -> None:
        """Bring `policy` and `V` up to date with what was learned (a hook; nothing to do by default)."""

    def state_dict(self) -> dict[str, Any]:
        """Copies of the `tables` (and the base's counters and RNG states): nothing aliases the agent."""
        self.refresh()
        valid = {} if self.valid is None else {"valid": copy_table(self.valid)}
        return {**super().state_dict(), **{name: copy_table(getattr(self, name)) for name in self.tables}, **valid}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        restore_tables(self, state, self.tables)
        if "valid" in state:
            if np.shape(state["valid"]) != (self.n_states, self.n_actions):
                raise ValueError(f"valid has shape {np.shape(state['valid'])} in the checkpoint")
            self.valid = np.array(state["valid"], dtype=bool)

    def write_artifacts(self, run: Run) -> None:
        """values.npy (S,), q_values.npy (S, A) if the agent has Q, policy.npy (S, A); on gridworlds
        values.png (heatmap + arrows), also as the TensorBoard image `tabular/values`."""
        self.refresh()
        np.save(run.dir / "values.npy", self.V)
        if self.Q is not None:
            np.save(run.dir / "q_values.npy", self.Q)
        np.save(run.dir / "policy.npy", self.policy)
        env = run.make_env()
        grid = getattr(env.unwrapped, "grid", None)
        if grid is not None:
            from rlgen.agents.tabular_plot import value_picture

            image = value_picture(grid, self.V, self.policy, run.dir / "values.png",
                                  title=f"{run.cfg.agent.name} on {run.cfg.env.name}")
            run.tb.add_image("tabular/values", image, self.num_steps, dataformats="HWC")
        env.close()
