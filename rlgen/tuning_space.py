"""Search spaces for hyperparameter studies (python -m rlgen.tune): rlgen/conf/search/<agent>.yaml.

A space file lists `params`, each a config key (`agent.learning_rate`) with its kind and range:

    agent.learning_rate: {kind: float, low: 1.0e-5, high: 0.002, log: true}
    agent.gamma: {kind: float, low: 0.97, high: 0.9999, log: true, one_minus: true}
    agent.n_epochs: {kind: int, low: 1, high: 20}
    agent.net_arch: {kind: categorical, choices: {small: [64, 64], medium: [256, 256]}}

`one_minus: true` samples 1 - value log-uniformly (RL Zoo's one_minus_gamma: a discount's effect is
its horizon 1 / (1 - gamma)); Optuna names that parameter `1-agent.gamma`. Categorical choices are a
list of numbers, strings or booleans, or names mapped to any YAML value (a list of layer widths), since
Optuna's categorical choices are scalars. `constraints` hold keys whose value may not exceed a product
of others (`{key: agent.batch_size, at_most_product_of: [agent.n_steps, agent.n_envs]}`): a sampled
value above it is clipped to it, as RL Zoo's samplers clip PPO's batch_size to n_steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import optuna

from rlgen.errors import UserError, did_you_mean, unknown

KINDS = ("float", "int", "categorical")
ENTRY_FIELDS = {"float": {"kind", "low", "high", "log", "one_minus"}, "int": {"kind", "low", "high", "log"},
                "categorical": {"kind", "choices"}}


@dataclass(frozen=True)
class Param:
    key: str
    """a dotted config key, e.g. agent.learning_rate"""
    kind: str
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    one_minus: bool = False
    choices: tuple[tuple[str, Any], ...] = ()
    """(Optuna's scalar choice, the config value it stands for)"""

    @property
    def name(self) -> str:
        """The parameter's name in the Optuna study."""
        return f"1-{self.key}" if self.one_minus else self.key

    def sample(self, trial: optuna.Trial) -> Any:
        """The config value for this trial."""
        if self.kind == "categorical":
            lookup = dict(self.choices)
            return lookup[trial.suggest_categorical(self.name, [c for c, _ in self.choices])]
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        if self.one_minus:
            return 1.0 - trial.suggest_float(self.name, 1.0 - self.high, 1.0 - self.low, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class Constraint:
    key: str
    at_most_product_of: tuple[str, ...]


@dataclass(frozen=True)
class SearchSpace:
    source: str
    params: tuple[Param, ...]
    constraints: tuple[Constraint, ...] = ()

    def without(self, keys: set[str]) -> SearchSpace:
        """The space with `keys` fixed (given on the command line), so no longer searched."""
        return SearchSpace(self.source, tuple(p for p in self.params if p.key not in keys), self.constraints)

    def sample(self, trial: optuna.Trial, base: Any) -> dict[str, Any]:
        """{config key: value} for a trial, the constraints applied (base: the config the values go into)."""
        values = {p.key: p.sample(trial) for p in self.params}
        for c in self.constraints:
            if c.key in values:
                limit = math.prod(values.get(k, config_value(base, k)) for k in c.at_most_product_of)
                values[c.key] = min(values[c.key], limit)
        return values


def space_names() -> list[str]:
    """The agents rlgen ships a search space for."""
    return sorted(f.name[:-5] for f in (files("rlgen.conf") / "search").iterdir() if f.name.endswith(".yaml"))


def load_space(agent: str, path: str | None, base: Any) -> SearchSpace:
    """The space file `path` (or rlgen's space of that name, e.g. `a2c`), or rlgen's for `agent`; every
    entry checked, its keys against `base` (the composed TrainConfig)."""
    import yaml

    if path is None and agent not in space_names():
        raise UserError(f"agent {agent} has no search space (rlgen/conf/search/<agent>.yaml); agents with one: "
                        f"{', '.join(space_names())}; or give space=PATH")
    if path is None or path in space_names():
        name = path or agent
        text, source = (files("rlgen.conf") / "search" / f"{name}.yaml").read_text(), f"rlgen/conf/search/{name}.yaml"
    elif "/" not in path and not path.endswith((".yaml", ".yml")):
        raise unknown("search space", path, space_names())
    else:
        try:
            text, source = Path(path).read_text(encoding="utf-8"), path
        except OSError as err:
            raise UserError(f"space={path}: cannot read it ({err.strerror})") from None
    try:
        node = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"space={source} is not YAML ({' '.join(str(err).split())})") from None
    if not isinstance(node, dict) or not isinstance(node.get("params"), dict) or not node["params"]:
        raise UserError(f"space={source}: a search space is a mapping with params: (config key -> kind and range)")
    extra = sorted(set(node) - {"params", "constraints"})
    if extra:
        raise UserError(f"space={source}: unknown section {extra[0]}; a space has params: and constraints:")
    params = tuple(_param(source, key, entry, base) for key, entry in node["params"].items())
    constraints = tuple(_constraint(source, c, base) for c in node.get("constraints") or [])
    return SearchSpace(source, params, constraints)


def _param(source: str, key: str, entry: Any, base: Any) -> Param:
    where = f"space={source}, {key}"
    if not key.startswith("agent."):
        raise UserError(f"{where}: a searched key is an agent hyperparameter, agent.FIELD")
    check_key(where, key, base)
    if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
        kind = entry.get("kind") if isinstance(entry, dict) else None
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}"
                        f"{did_you_mean(str(kind), KINDS) if kind else ''}")
    kind = entry["kind"]
    unknown = sorted(set(entry) - ENTRY_FIELDS[kind])
    if unknown:
        allowed = sorted(ENTRY_FIELDS[kind])
        raise UserError(f"{where}: a {kind} entry has no '{unknown[0]}'{did_you_mean(unknown[0], allowed)}; "
                        f"it has {', '.join(allowed)}")
    if kind == "categorical":
        return Param(key, kind, choices=_choices(where, entry.get("choices")))
    low, high = entry.get("low"), entry.get("high")
    number = int if kind == "int" else (int, float)
    if not all(isinstance(v, number) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise UserError(f"{where}: a {kind} entry needs low < high, both {'integers' if kind == 'int' else 'numbers'}"
                        f", got low={low!r} high={high!r}")
    log, one_minus = entry.get("log", False), entry.get("one_minus", False)
    if not isinstance(log, bool) or not isinstance(one_minus, bool):
        raise UserError(f"{where}: log and one_minus are true or false")
    if log and (1.0 - high if one_minus else low) <= 0:
        raise UserError(f"{where}: log: true samples {'1 - value' if one_minus else 'the value'} log-uniformly, "
                        f"so it must stay above 0 (low={low}, high={high})")
    return Param(key, kind, float(low), float(high), log, one_minus)


def _choices(where: str, choices: Any) -> tuple[tuple[str, Any], ...]:
    if isinstance(choices, dict) and choices:
        return tuple((str(name), value) for name, value in choices.items())
    scalar = (bool, int, float, str)
    if isinstance(choices, list) and choices and all(isinstance(c, scalar) for c in choices):
        return tuple((c, c) for c in choices)
    raise UserError(f"{where}: choices must be a non-empty list of numbers, strings or booleans, or names mapped "
                    f"to values (e.g. {{small: [64, 64], medium: [256, 256]}}), got {choices!r}")


def _constraint(source: str, entry: Any, base: Any) -> Constraint:
    where = f"space={source}, constraints"
    if (not isinstance(entry, dict) or set(entry) != {"key", "at_most_product_of"}
            or not isinstance(entry["at_most_product_of"], list) or not entry["at_most_product_of"]):
        raise UserError(f"{where}: each is {{key: K, at_most_product_of: [K1, K2, ...]}}, got {entry!r}")
    keys = [entry["key"], *entry["at_most_product_of"]]
    for key in keys:
        check_key(where, str(key), base)
    return Constraint(str(entry["key"]), tuple(str(k) for k in entry["at_most_product_of"]))


def check_key(where: str, key: str, base: Any) -> None:
    """A UserError unless `key` names a field of the config (nearest names if not)."""
    node = base
    for part in key.split("."):
        names = [f.name for f in fields(node)] if is_dataclass(node) else []
        if part not in names:
            raise UserError(f"{where}: '{key}' is not a config key ({part}{did_you_mean(part, names) or ' unknown'})")
        node = getattr(node, part)


def config_value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg
