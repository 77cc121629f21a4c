"""The one small base class every agent shares: construction, acting, saving and loading."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rlgen.agents import AGENTS, agent_class
from rlgen.checkpoint import damaged, load_state, one_line, save_state
from rlgen.config import AgentConfig
from rlgen.envs.imitation_tasks import EXPERT_TASKS
from rlgen.errors import UserError

if TYPE_CHECKING:
    from rlgen.demos import Demonstrations
    from rlgen.loops import Member
    from rlgen.run import Run


class Agent:
    """An algorithm. Subclasses set `Config` and implement learn, act, and (for checkpoints)
    state_dict / load_state_dict.

    `learn(total_steps, run)` trains until `num_steps` reaches `total_steps` or `run.tick` says
    stop; it reports through `run` (training scalars, finished episodes) and never writes files
    itself. `act(obs)` takes a batch of observations and returns a batch of actions.
    """

    Config: ClassVar[type[AgentConfig]] = AgentConfig
    one_hot: ClassVar[bool] = True
    """deep agents see discrete observations one-hot encoded; tabular agents set False"""
    n_envs: int = 1
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (gym.spaces.Discrete, gym.spaces.Box)
    """the kinds of action space the agent can learn on"""
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (
        gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
    """the kinds of observation space it can read (deep agents see discrete ones one-hot encoded)"""
    learns_from_expert: ClassVar[bool] = False
    """learns from an expert's demonstrations, not from rewards: an env's scripted expert's or a run's (expert=)"""
    builds_on: ClassVar[tuple[str, str] | None] = None
    """(the run setting, the agent trained for it when it is unset): what this agent starts from, a
    trained run it is handed before learning (start_from), e.g. ("expert", "ppo") or ("init", "diffusion")"""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any, seed: int):
        why = self.misfit(observation_space, action_space)
        if why is not None:
            raise UserError(f"{config.name} {why}; {agents_for(observation_space, action_space)}")
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.seed = seed
        self.num_steps = 0
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)

    @classmethod
    def misfit(cls, observation_space: gym.Space, action_space: gym.Space) -> str | None:
        """What the agent needs that an env with these spaces lacks (None: nothing)."""
        if not isinstance(action_space, cls.action_spaces):
            return f"needs {_kinds(cls.action_spaces)} actions; this env's are {type(action_space).__name__}"
        if not isinstance(observation_space, cls.observation_spaces):
            return (f"needs {_kinds(cls.observation_spaces)} observations; "
                    f"this env's are {type(observation_space).__name__}")
        return None

    def learn(self, total_steps: int, run: Run) -> None:
        raise NotImplementedError

    @classmethod
    def learns_in_groups(cls) -> bool:
        """Whether `learn_group` trains a group of seeds in lockstep (python -m rlgen.train seeds=S);
        otherwise the trainer trains them one after another."""
        return False

    @classmethod
    def learn_group(cls, members: list[Member], total_steps: int) -> None:
        """`learn` for the members of a group (rlgen/loops.py: Member), each an agent of this class and
        its run; a member that diverges leaves the group (`Member.failure`), the others go on."""
        raise NotImplementedError

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        raise NotImplementedError

    def episode_policy(self, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]:
        """A policy for a batch of episodes that start together and run in lockstep (evaluation plays
        one episode per env). `act` for an agent whose action depends only on the observation; an agent
        that remembers earlier steps of the episode (action chunks) returns a new callable with a
        `reset()`, which whoever plays the episodes calls when new ones start."""
        return functools.partial(self.act, deterministic=deterministic)

    def start_from(self, source: Agent | Demonstrations) -> None:
        """Take what this agent builds on (builds_on) from the loaded agent of a trained run on the same
        env (an expert to imitate, a policy to fine-tune) or from demonstrations; a UserError if it
        cannot serve."""
        raise NotImplementedError

    def needs_foundation(self) -> bool:
        """Whether, with builds_on set, this agent cannot learn unless it is handed a run (one is then
        trained first when none is given); False where it has its own (an env's scripted expert)."""
        return self.builds_on is not None

    def check_env(self, env: gym.Env) -> None:
        """A UserError if this agent cannot learn on `env` beyond what its spaces show (asked before the
        run directory is made). Most agents need nothing more than the spaces they were built with."""

    def write_artifacts(self, run: Run) -> None:
        """Extra files for the run directory at the end of training (tabular agents: value arrays,
        pictures). Deep agents have none beyond the checkpoint."""

    def evaluation_extras(self) -> dict[str, float]:
        """Figures of the policy that each evaluation adds to eval.csv and TensorBoard (eval/<name>) beside
        the env's return: the language-model agents' gold reward and KL to their reference. None for most."""
        return {}

    def summary_fields(self) -> dict[str, Any]:
        """Agent-specific figures added to summary.json (e.g. RLHF's gold and proxy rewards)."""
        return {}

    # -- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue training: weights, optimiser, counters, RNG states."""
        return {"num_steps": self.num_steps, "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.num_steps = int(state["num_steps"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])

    def save(self, path: Path) -> None:
        """Write the checkpoint directory atomically (the previous one survives a crash mid-write),
        as JSON and safetensors (rlgen.checkpoint.save_state): loading it can run no code."""
        save_state(Path(path), self.state_dict())

    def load(self, path: Path, trust: bool = False) -> None:
        """Restore a checkpoint directory; a UserError if it is damaged, not rlgen's, or another agent's.
        trust=True also loads an older rlgen's pickle, which runs any code its author put in it."""
        state = load_state(Path(path), trust=trust)
        try:
            self.load_state_dict(state)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
            why = f"its state does not fit a {type(self).__name__} ({type(err).__name__}: {one_line(err)})"
            raise damaged(Path(path), why) from None


def _either(names: list[str]) -> str:
    """'a', 'a or b', 'a, b or c'"""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _kinds(spaces: tuple[type[gym.Space], ...]) -> str:
    return _either([s.__name__ for s in spaces])


MAX_SUGGESTED = 6
"""a longer list of agents that fit is cut short"""


def agents_for(observation_space: gym.Space, action_space: gym.Space) -> str:
    """'use a, b or c': the registered agents that can learn on these spaces (each module is
    imported to ask it, which only a mistake pays for)."""
    fitting = [name for name in AGENTS if agent_class(name).misfit(observation_space, action_space) is None]
    imitators = [name for name in fitting if agent_class(name).learns_from_expert or agent_class(name).builds_on]
    fit = [name for name in fitting if name not in imitators]
    # an agent that learns from an expert needs one (a run, or an env's scripted one), which the spaces do not tell
    also = (f"; from an expert, not rewards (a run given as expert= or init=, or the scripted expert of "
            f"{', '.join(EXPERT_TASKS)}): {', '.join(imitators)}") if imitators else ""
    if not fitting:
        return "no rlgen agent handles these spaces"
    if not fit:
        return f"no rlgen agent learns from rewards on these spaces{also}"
    if len(fit) > MAX_SUGGESTED:
        return (f"use {', '.join(fit[:MAX_SUGGESTED])} or {len(fit) - MAX_SUGGESTED} more (python -m rlgen.train "
                f"--help){also}")
    return f"use {_either(fit)}{also}"

