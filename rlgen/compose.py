"""Config composition with Hydra: the YAML in rlgen/conf plus the command line -> a typed TrainConfig.

A run's config is `conf/train.yaml` + `conf/agent/<agent>.yaml` + `conf/env/<env>.yaml` + the tuned
hyperparameters for that pair, if any (`conf/tuned/<agent>_<env>.yaml`, Hydra's "specializing
configuration" pattern) + the user's overrides, checked against the schemas of rlgen/config.py.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import fields
from importlib.resources import files

import gymnasium as gym
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

import rlgen.envs  # noqa: F401  (registers rlgen/<Name>-v0 before the registry is consulted)
from rlgen.agents import config_class
from rlgen.cli import explain_config_error
from rlgen.config import EnvConfig, TrainConfig
from rlgen.errors import UserError, did_you_mean, unknown


def _store_schemas(agent: str | None = None) -> None:
    """Register the typed schemas with Hydra; only the chosen agent's module is imported."""
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(group="env", name="env_schema", node=EnvConfig)
    if agent is not None:
        cs.store(group="agent", name=f"{agent}_schema", node=config_class(agent))


def _group_options(group: str) -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return [o for o in loader.get_group_options(group) if not o.endswith("_schema")]


ENV_GROUP_GENERIC = "gym"  # conf/env/gym.yaml: any registered Gymnasium id


def _resolve_env_choice(value: str, short_names: list[str]) -> list[str]:
    """`env=CartPole` picks conf/env/CartPole.yaml; `env=<any registered id>` uses the generic node."""
    if value in short_names:
        return [f"env={value}"]
    if value in gym.registry:
        return [f"env={ENV_GROUP_GENERIC}", f"env.id={value}", f"env.name={value}"]
    names = sorted(n for n in short_names if n != ENV_GROUP_GENERIC)
    near = did_you_mean(value, names + list(gym.registry))
    raise UserError(f"unknown env '{value}'{near}; short names: {', '.join(names)}, or any registered Gymnasium id")


def _check_override(key: str, agent: str) -> None:
    """Unknown fields get a message that names the nearest valid ones."""
    if key in ("agent", "env") or key.startswith(("hydra", "+", "~")):
        return
    head, _, rest = key.partition(".")
    if not rest:
        names = [f.name for f in fields(TrainConfig)]
        if head not in names:
            raise UserError(f"unknown setting '{key}'{did_you_mean(head, names)}; settings: {', '.join(names)}")
    elif head == "agent":
        names = [f.name for f in fields(config_class(agent))]
        field_name = rest.split(".")[0]
        if field_name not in names:
            raise UserError(
                f"agent {agent} has no field '{field_name}'{did_you_mean(field_name, names)}; "
                f"fields: {', '.join(names)}"
            )


def list_choices() -> tuple[list[str], list[str]]:
    """The agents and the env short names a user can pick."""
    _store_schemas()
    with initialize_config_module("rlgen.conf", version_base="1.3"):
        envs = [e for e in _group_options("env") if e != ENV_GROUP_GENERIC]
        return _group_options("agent"), envs


def _env_kwarg(key: str, value: str) -> str | None:
    """`env.size=1000` is short for `env.kwargs.size=1000` when `size` is not an EnvConfig field;
    gymnasium.make then rejects a keyword the env does not take, with the env's own message."""
    head, _, rest = key.partition(".")
    names = [f.name for f in fields(EnvConfig)]
    if head == "env" and rest and "." not in rest and rest not in names:
        # a misspelt field, not an env keyword; only a near miss, as `rewards` or `wind` are keywords
        if difflib.get_close_matches(rest, names, n=1, cutoff=0.75):
            raise UserError(f"env has no field '{rest}'{did_you_mean(rest, names)}; "
                            f"fields: {', '.join(names)}, or env keywords")
        return f"++env.kwargs.{rest}={value}"
    if key.startswith("env.kwargs."):  # kwargs is open: `++` adds the key or overrides it
        return f"++{key}={value}"
    return None


def expand_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Split a command line into one override list per job (the cartesian product of sweeps)."""
    for line in overrides:
        if "=" not in line:
            raise UserError(f"'{line}' is not an override: write key=value (e.g. agent=ppo env=CartPole)")
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot parse overrides: {str(err).splitlines()[0]}") from None
    axes: list[list[str]] = []
    for o in parsed:
        key = o.get_key_element()
        if o.is_sweep_override():
            if not multirun:
                raise UserError(f"'{o.input_line}' is a sweep: add -m to run one job per value")
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
        else:
            axes.append([o.input_line])
    return [list(job) for job in itertools.product(*axes)]


def load_config(overrides: list[str]) -> TrainConfig:
    """Compose train.yaml with the overrides into a typed TrainConfig, or raise a UserError."""
    _store_schemas()
    with initialize_config_module("rlgen.conf", version_base="1.3"):
        agents, envs = _group_options("agent"), _group_options("env")
        resolved: list[str] = []
        defaults = OmegaConf.load(_conf_file("train.yaml")).defaults
        agent = next(d["agent"] for d in defaults if not isinstance(d, str) and "agent" in d)
        for line in overrides:
            key, sep, value = line.partition("=")
            line = _env_kwarg(key, value) or line
            if not sep:
                raise UserError(f"'{line}' is not an override: write key=value (e.g. agent=ppo env=CartPole)")
            if key == "agent":
                if value not in agents:
                    raise unknown("agent", value, agents)
                agent = value
            if key == "env":
                resolved += _resolve_env_choice(value, envs)
            else:
                resolved.append(line)
        _store_schemas(agent)
        for line in resolved:
            _check_override(line.partition("=")[0], agent)
        try:
            cfg = compose("train", overrides=resolved)
            typed = OmegaConf.to_object(cfg)
        except (HydraException, OmegaConfBaseException) as err:
            raise UserError(explain_config_error(err)) from None
    assert isinstance(typed, TrainConfig)  # its __post_init__ has checked the values
    return typed


def _conf_file(name: str) -> str:
    return str(files("rlgen.conf") / name)


def to_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> TrainConfig:
    """Rebuild a typed config from a run directory's config.yaml."""
    raw = OmegaConf.create(text)
    schema = OmegaConf.structured(TrainConfig)
    schema.agent = OmegaConf.structured(config_class(raw.agent.name))
    schema.env = OmegaConf.structured(EnvConfig)
    typed = OmegaConf.to_object(OmegaConf.merge(schema, raw))
    assert isinstance(typed, TrainConfig)
    return typed
