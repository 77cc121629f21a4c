"""Typed configuration schemas: dataclasses and validators only (no Hydra, no agents, no envs).

Every node of a run's config is one of these dataclasses (each agent adds its own, derived from
AgentConfig), so a misspelt field or a value of the wrong type is an error, not a silently ignored
key. Composing them from YAML and the command line is rlgen/compose.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from rlgen.errors import UserError, did_you_mean


def check_choice(field: str, value: str, choices: list[str] | tuple[str, ...]) -> None:
    """For a config's __post_init__: a value outside `choices` is a user mistake."""
    if value not in choices:
        raise UserError(f"{field}={value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}")


def check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise UserError(f"{name} must be positive, got {value}")


@dataclass
class AgentConfig:
    """Fields every agent has; each agent extends it with its hyperparameters."""

    name: str = MISSING
    """registry name of the agent (set by conf/agent/<name>.yaml)"""


@dataclass
class EnvConfig:
    name: str = MISSING
    """short name, used in the run directory (`runs/<name>/...`)"""
    id: str = MISSING
    """Gymnasium id passed to gymnasium.make"""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """extra keyword arguments for gymnasium.make"""
    vectorization: str = "auto"
    """auto (the env's native vector version where it has one and there are 4+ copies, else sync) | sync | async"""


@dataclass
class TrainConfig:
    agent: Any = MISSING
    env: EnvConfig = MISSING
    seed: int = 0
    """seeds the env, the agent's networks and its sampling"""
    total_steps: int = 100_000
    """budget in environment steps (planning agents: sweeps)"""
    eval_every: int = 10_000
    """environment steps between deterministic evaluations (0: only at the end)"""
    eval_episodes: int = 10
    run_dir: str | None = None
    """write the run directory exactly here (default: runs/<env>/<agent>/<seed>-<timestamp>)"""
    runs_root: str = "runs"
    resume: str | None = None
    """a run directory to continue to its budget"""
    torch_threads: int = 1
    """small networks are fastest on one thread; parallelise across processes instead"""
    progress: bool = True
    """show a live progress bar"""
    trust_checkpoint: bool = False
    """resume: load a checkpoint written by an older rlgen (a pickle, which can run code when loaded);
    only for checkpoints from a source you trust"""
