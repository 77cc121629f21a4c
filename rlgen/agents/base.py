"""The one small base class every agent shares: construction, acting, saving and loading."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from rlgen.checkpoint import damaged, load_state, one_line, save_state
from rlgen.config import AgentConfig

if TYPE_CHECKING:
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

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any, seed: int):
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.seed = seed
        self.num_steps = 0
        self.rng = np.random.default_rng(seed)
        torch.manual_seed(seed)

    def learn(self, total_steps: int, run: Run) -> None:
        raise NotImplementedError

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        raise NotImplementedError

    def check_env(self, env: gym.Env) -> None:
        """A UserError if this agent cannot learn on `env` beyond what its spaces show (asked before the
        run directory is made). Most agents need nothing more than the spaces they were built with."""

    def write_artifacts(self, run: Run) -> None:
        """Extra files for the run directory at the end of training (tabular agents: value arrays,
        pictures). Deep agents have none beyond the checkpoint."""

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
