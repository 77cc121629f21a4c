"""Typed configuration schemas: dataclasses and validators only (no Hydra, no agents, no envs).

Every node of a run's config is one of these dataclasses (each agent adds its own, derived from
AgentConfig), so a misspelt field or a value of the wrong type is an error, not a silently ignored
key. Composing them from YAML and the command line is rlgen/compose.py's job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np
from omegaconf import MISSING

from rlgen.errors import UserError, did_you_mean

MAX_SEED = 2**31 - 1
"""seeds above this overflow once offset (evaluation envs: seed + 1_000_003; numpy's legacy seeding,
which SB3 uses, takes at most 2**32 - 1)"""
MAX_LEARNING_RATE = float(np.finfo(np.float32).max)
"""the optimisers scale float32 weights by the learning rate: a larger one overflows (a merely huge one
diverges, and the run stops on its NaN loss)"""


def check_choice(field: str, value: str, choices: list[str] | tuple[str, ...]) -> None:
    """For a config's __post_init__: a value outside `choices` is a user mistake."""
    if value not in choices:
        raise UserError(f"{field}={value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}")


def named(config: Any, *names: str, prefix: str = "agent") -> dict[str, Any]:
    """{"agent.<name>": value} for the named fields of a config: the keywords of the check_* validators,
    so that a message names the setting as the user writes it."""
    return {f"{prefix}.{name}": getattr(config, name) for name in names}


def check_range(low: float, high: float = math.inf, *, open_low: bool = False, open_high: bool = False,
                why: str = "", **values: float | None) -> None:
    """Each value must be a finite number in the interval from low to high (None: an option left off)."""
    for name, value in values.items():
        if value is None:
            continue
        inside = (isinstance(value, int) or math.isfinite(value)) and low <= value <= high
        if not inside or (open_low and value == low) or (open_high and value == high):
            raise UserError(f"{name} must be {_interval(low, high, open_low, open_high)}{why}, got {value}")


def _interval(low: float, high: float, open_low: bool, open_high: bool) -> str:
    def num(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    if high == math.inf:
        return f"{'>' if open_low else '>='} {num(low)}"
    return f"in {'(' if open_low else '['}{num(low)}, {num(high)}{')' if open_high else ']'}"


def check_positive(**values: float | None) -> None:
    """Counts and sizes, scales and norms (None: an option left off)."""
    for name, value in values.items():
        if value is not None and not (value > 0 and (isinstance(value, int) or math.isfinite(value))):
            raise UserError(f"{name} must be positive, got {value}")


def check_nonnegative(**values: float | None) -> None:
    check_range(0, **values)


def check_probability(**values: float | None) -> None:
    """Probabilities and fractions (epsilon, exploration fractions, lambda, ...): [0, 1]."""
    check_range(0, 1, why=" (a probability or fraction)", **values)


def check_discount(**values: float) -> None:
    """A discount factor outside [0, 1] is no discount: above 1 returns grow without bound."""
    check_range(0, 1, why=" (a discount factor)", **values)


def check_learning_rate(**values: float) -> None:
    check_range(0, MAX_LEARNING_RATE, open_low=True, why=" (a step size, at most float32's largest)", **values)


def check_seed(**values: int) -> None:
    check_range(0, MAX_SEED, why=" (a seed)", **values)


def check_layers(**values: list[int]) -> None:
    """Hidden-layer widths: each a positive number of units ([] is a linear model, no hidden layer)."""
    for name, widths in values.items():
        if any(w <= 0 for w in widths):
            raise UserError(f"{name}={list(widths)}: every hidden layer needs a positive number of units, "
                            "e.g. 64,64 ([] for none)")


def check_finite(config: Any, prefix: str = "agent") -> None:
    """Every float field, also of nested configs, must be a number: nan or inf trains nothing meaningful."""
    for f in fields(config):
        value, name = getattr(config, f.name), f"{prefix}.{f.name}"
        if is_dataclass(value):
            check_finite(value, name)
        elif isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{name} must be a finite number, got {value}")


@dataclass
class AgentConfig:
    """Fields every agent has; each agent extends it with its hyperparameters."""

    name: str = MISSING
    """registry name of the agent (set by conf/agent/<name>.yaml)"""

    def __post_init__(self) -> None:
        """Checks every agent shares; a subclass adds its own after calling this."""
        check_finite(self)


@dataclass
class MaskingConfig:
    """The setting of the agents that can honour an env's mask of valid actions (a config mixin)."""

    action_masking: bool = True
    """honour the env's mask of valid Discrete actions (its action_masks() method, else info["action_mask"])
    where it offers one: act, explore and bootstrap over the valid actions only; false ignores the mask
    (the unmasked comparison). Box actions have no mask: the setting does nothing there"""


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
    seeds: int = 1
    """train seeds seed .. seed+seeds-1 together in this process, one ordinary run directory each (PPO
    updates them as one stacked network, DQN and SQL in lockstep; other agents train them one after
    another); with run_dir=DIR, seed k's run goes to DIR/seed<k>"""
    total_steps: int = 100_000
    """budget in environment steps (planning agents: sweeps)"""
    eval_every: int = 10_000
    """environment steps between evaluations (0: only at the end)"""
    eval_episodes: int = 10
    eval_deterministic: bool = True
    """evaluations act deterministically (SB3's EvalCallback default); false samples the policy, which
    is what shows a generative policy's coverage of the expert's modes"""
    run_dir: str | None = None
    """write the run directory exactly here (default: runs/<env>/<agent>/<seed>-<timestamp>; with seeds > 1,
    each seed's in <run_dir>/seed<k>)"""
    runs_root: str = "runs"
    resume: str | None = None
    """a run directory to continue to its budget"""
    tuned: str | None = None
    """a tuned-hyperparameters file (python -m rlgen.tune writes one: studies/<agent>_<env>-best.yaml); its
    values apply after rlgen's tuned values for the pair and before the command line's"""
    expert: str | None = None
    """gail: the run directory whose policy is imitated (its episodes are the demonstrations), or a
    demonstrations .npz (python -m rlgen.evaluate run=DIR demos=FILE writes one); unset: an expert is
    trained first with the env's tuned config"""
    init: str | None = None
    """dppo: the diffusion run it fine-tunes; unset: one is trained first with the env's config"""
    torch_threads: int = 1
    """small networks are fastest on one thread; parallelise across processes instead"""
    progress: bool = True
    """show a live progress bar"""
    trust_checkpoint: bool = False
    """resume: load a checkpoint written by an older rlgen (a pickle, which can run code when loaded);
    only for checkpoints from a source you trust"""

    def __post_init__(self) -> None:
        """Also on resume (dataclasses.replace) and for a saved config.yaml: no path skips them."""
        check_seed(seed=self.seed)
        check_positive(torch_threads=self.torch_threads, eval_episodes=self.eval_episodes, seeds=self.seeds)
        if self.seed + self.seeds - 1 > MAX_SEED:
            raise UserError(f"seeds={self.seeds} from seed={self.seed} goes past the largest seed, {MAX_SEED}")
        if self.total_steps <= 0:
            raise UserError(f"total_steps must be a positive number of steps, got {self.total_steps}")
        if self.eval_every < 0:
            raise UserError(f"eval_every must be >= 0 (0: evaluate only at the end), got {self.eval_every}")
