"""rlgen from Python: `rlgen.load`, `rlgen.train` and `rlgen.make_env`, as SB3 and RL Zoo users expect.

    import rlgen
    summary, run_dir = rlgen.train(agent="ppo", env="CartPole", seed=3, total_steps=50_000)
    policy = rlgen.load(run_dir)                  # checkpoint="best": the best evaluation's policy
    env = rlgen.make_env("CartPole")
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(policy.act(obs))

Each is what the command line does, composed and checked the same way: `train` is `python -m
rlgen.train`, `load` reads a run as `python -m rlgen.evaluate` does, and a user's mistake is a
rlgen.errors.UserError whose message is the line the command would print.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from rlgen.agents.base import Agent
from rlgen.compose import expand_overrides, load_config, override_value
from rlgen.config import TrainConfig, check_choice
from rlgen.envs import checked_masks, vector_view
from rlgen.envs import make_env as make_env_of_config
from rlgen.errors import UserError
from rlgen.evaluate import CHECKPOINTS
from rlgen.evaluation import reads_masks
from rlgen.seed_groups import train_seeds
from rlgen.trainer import TrainingFailed, load_trained, read_summary, resume_config


class Policy:
    """A trained run's policy, acting on observations as its env gives them (`make_env`), as SB3's
    `predict` does: one observation gives one action `env.step` takes (an int for Discrete actions, an
    array for Box), a batch (a leading axis, as a vector env gives them) a batch of actions."""

    def __init__(self, run_dir: Path, config: TrainConfig, agent: Agent, observation_space: gym.Space,
                 action_space: gym.Space, view: Callable[[Any], np.ndarray]):
        self.run_dir = run_dir
        self.config = config
        """the run's TrainConfig, as its config.yaml holds it"""
        self.agent = agent
        """the rlgen agent the checkpoint was loaded into (agent.num_steps: the step it was saved at)"""
        self.observation_space = observation_space
        """the env's observation space, before any view a deep agent takes of it"""
        self.action_space = action_space
        self._view = view

    def act(self, obs: Any, deterministic: bool = True, mask: Any = None) -> Any:
        """The action for one observation, or the actions for a batch of them; `deterministic=False`
        samples from the policy. A deep agent sees a discrete observation one-hot, as in its evaluations
        (rlgen.envs.vector_view); an agent that plans action chunks plans afresh at every call.
        mask: the valid actions of each observation, as the env gives them (its action_masks() or
        info["action_mask"]: (n_actions,), or (n, n_actions) for a batch), honoured as in training by an
        agent that trained with masks (MaskablePPO's `predict(action_masks=...)`); None: every action valid."""
        space = self.observation_space
        size = _batch_size(space, obs)
        batch = obs if size is not None else concatenate(space, [obs], create_empty_array(space, 1))
        if self.agent.one_hot:
            batch = np.stack([self._view(row) for row in iterate(batch_space(space, size or 1), batch)])
        if mask is None:
            actions = np.asarray(self.agent.act(batch, deterministic))
        else:
            policy = self.agent.episode_policy(deterministic)
            if not reads_masks(policy):
                raise UserError(f"{self.config.agent.name} did not train with action masks (Discrete actions and "
                                "agent.action_masking=true), so it takes no mask=; call act(obs)")
            masks = checked_masks(mask, size or 1, int(self.action_space.n), "act(..., mask=)")
            actions = np.asarray(policy(batch, masks))
        if size is not None:
            return actions
        return int(actions[0]) if isinstance(self.action_space, gym.spaces.Discrete) else actions[0]

    def __repr__(self) -> str:
        return (f"Policy({self.config.agent.name} on {self.config.env.id}, step {self.agent.num_steps}, "
                f"{self.run_dir})")


def _batch_size(space: gym.Space, obs: Any) -> int | None:
    """None for one observation of `space`, else the number of observations in the batch."""
    if isinstance(space, gym.spaces.Tuple):  # a vector env gives a tuple of batches, one per part
        return _batch_size(space[0], obs[0])
    if isinstance(space, gym.spaces.Dict):
        key = next(iter(space.spaces))
        return _batch_size(space[key], obs[key])
    shape = np.shape(obs)
    if shape == space.shape:
        return None
    if len(shape) != len(space.shape) + 1 or shape[1:] != space.shape:
        raise UserError(f"an observation of shape {shape} is neither one of this env's {space} nor a batch of "
                        f"them (shape (n, {', '.join(map(str, space.shape))}))")
    return shape[0]


def load(run_dir: str | Path, checkpoint: str = "last", trust: bool = False) -> Policy:
    """The policy of a run directory: its last checkpoint, or with checkpoint="best" that of its best
    evaluation (checkpoint_best/). trust=True also loads a checkpoint an older rlgen pickled, which can
    run code when read: only for runs you trust. A directory that holds no such policy is a UserError."""
    check_choice("checkpoint", checkpoint, CHECKPOINTS)
    config, agent = load_trained(Path(run_dir), trust=trust, checkpoint=checkpoint)
    env = make_env_of_config(config.env, one_hot=False)
    try:
        return Policy(Path(run_dir), config, agent, env.observation_space, env.action_space,
                      vector_view(env, config.env.id))
    finally:
        env.close()


def train(agent: str | None = None, env: str | None = None, *, overrides: Mapping[str, Any] | None = None,
          progress: bool = False, **settings: Any) -> tuple[dict[str, Any], Path] | list[tuple[dict[str, Any], Path]]:
    """Train as `python -m rlgen.train agent=... env=... key=value ...` does, tuned values included.

    settings: the command's settings by name (seed=3, seeds=5, total_steps=50_000, run_dir="out/ppo",
    resume=RUN_DIR, ...; `python -m rlgen.train --help` lists them); agent and env default to the
    command's (ppo, CartPole). overrides: the dotted ones, {"agent.learning_rate": 1e-3,
    "env.kwargs.size": 5}. Values are Python values (True, None, [64, 64], a str kept as the str).
    Returns the run's (summary, run directory); with seeds > 1, one such pair per seed. A run that
    failed (a diverged loss) raises rlgen.trainer.TrainingFailed, saying what was kept."""
    choices = [f"{key}={value}" for key, value in (("agent", agent), ("env", env)) if value is not None]
    given = [*settings.items(), ("progress", progress), *(overrides or {}).items()]
    lines = choices + [f"{key}={_override_text(key, value)}" for key, value in given]
    job = expand_overrides(lines, multirun=False)[0]  # the CLI's checks: each setting once, no sweep
    cfg = resume_config(job) if "resume" in settings else load_config(job)
    outcomes = train_seeds(cfg)
    failed = next((o.error for o in outcomes if o.error is not None), None)
    if failed is not None:
        raise TrainingFailed(failed)
    # a resume with nothing to do (its run completed its budget) answers with the run as it is
    runs = [(o.summary if o.summary is not None else read_summary(o.run_dir) or {}, o.run_dir) for o in outcomes]
    return runs[0] if cfg.seeds == 1 and len(runs) == 1 else runs


def make_env(name: str, render_mode: str | None = None, **kwargs: Any) -> gym.Env:
    """The env a run of `env=name` trains on: a short name (CartPole, Taxi, Maze, ...) or a Gymnasium id,
    its config composed as `python -m rlgen.train env=name` composes it (a short name's default kwargs
    included), `kwargs` as its keyword arguments. Observations are as the env gives them, the ones a
    loaded policy's `act` takes."""
    lines = [f"env={name}", *(f"env.kwargs.{key}={_override_text(key, value)}" for key, value in kwargs.items())]
    return make_env_of_config(load_config(lines).env, render_mode=render_mode, one_hot=False)


def _override_text(key: str, value: Any) -> str:
    """A Python value as an override writes it (compose.override_value); resume= is a path the CLI reads
    as it is written."""
    return value if key == "resume" and isinstance(value, str) else override_value(value)
