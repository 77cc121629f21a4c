"""Config composition with Hydra: the YAML in rlgen/conf plus the command line -> a typed TrainConfig.

A run's config is `conf/train.yaml` + `conf/agent/<agent>.yaml` + `conf/env/<env>.yaml` + the tuned
hyperparameters for that pair, if any (`conf/tuned/<agent>_<env>.yaml`, Hydra's "specializing
configuration" pattern) + the user's overrides, checked against the schemas of rlgen/config.py.

The env is named by a short name, by its Gymnasium id (the same env: `env=CartPole-v1` is
`env=CartPole`), by any other registered id, or by Gymnasium's `module:Id` for a user's own env.
rlgen uses Hydra's compose API, not a Hydra app: `hydra.*` settings would do nothing and are refused.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import math
import typing
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from importlib.resources import files

import gymnasium as gym
from hydra import compose, initialize_config_module
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlgen.agents import config_class
from rlgen.cli import explain_config_error
from rlgen.config import EnvConfig, TrainConfig, check_choice
from rlgen.envs import VECTORIZATION, registered_id  # importing rlgen.envs registers rlgen/<Name>-v0
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


ENV_GROUP_GENERIC = "gym"  # conf/env/gym.yaml: any other registered Gymnasium id


def _short_names_by_id() -> dict[str, str]:
    """Gymnasium id -> short name, read from conf/env/<short name>.yaml."""
    folder = files("rlgen.conf") / "env"
    nodes = [OmegaConf.load(str(folder / f.name)) for f in folder.iterdir()
             if f.name.endswith(".yaml") and f.name != f"{ENV_GROUP_GENERIC}.yaml"]
    return {node.id: node.name for node in nodes}


def _resolve_env_choice(value: str, short_names: list[str]) -> list[str]:
    """`env=CartPole` picks conf/env/CartPole.yaml, and so does its id `env=CartPole-v1`: a short name
    and its id are one env, tuned values and run folder included. Any other registered id, or
    Gymnasium's `module:Id` for an env the user's module registers, uses the generic node; the
    module stays in the id, so a resumed or evaluated run imports it again."""
    names = sorted(n for n in short_names if n != ENV_GROUP_GENERIC)
    if value in names:
        return [f"env={value}"]
    env_id = registered_id(value)
    if env_id is None:
        module, sep, name = value.rpartition(":")
        if sep:
            raise UserError(f"module '{module}' registers no env '{name}'{did_you_mean(name, list(gym.registry))}"
                            f"; it should call gymnasium.register(id='{name}', entry_point=...) when imported")
        near = did_you_mean(value, names + list(gym.registry))
        raise UserError(f"unknown env '{value}'{near}; short names: {', '.join(names)}, or any registered "
                        f"Gymnasium id, or module:Id for an env your module registers")
    short = _short_names_by_id().get(env_id)
    if short is not None:
        return [f"env={short}"]
    # the run folder is runs/<name>/<agent>/...: one folder level, so a namespace's '/' becomes '-'
    return [f"env={ENV_GROUP_GENERIC}", f"env.id='{value}'", f"env.name='{env_id.replace('/', '-')}'"]


HYDRA_ONLY = (
    "rlgen composes its config with Hydra's compose API and runs no Hydra app, so hydra.* settings "
    "would have no effect; the run directory is run_dir=PATH or runs_root=PATH, a sweep is -m"
)


def _check_override(key: str, agent: str) -> None:
    """Unknown fields get a message that names the nearest valid ones."""
    head, _, rest = key.lstrip("+").partition(".")
    names = [f.name for f in fields(TrainConfig)]
    if head not in names:
        raise UserError(f"unknown setting '{head}'{did_you_mean(head, names)}; settings: {', '.join(names)}")
    if head == "agent" and rest:
        names = [f.name for f in fields(config_class(agent))]
        field_name = rest.split(".")[0]
        if field_name not in names:
            raise UserError(
                f"agent {agent} has no field '{field_name}'{did_you_mean(field_name, names)}; "
                f"fields: {', '.join(names)}"
            )


def _field_type(schema: type, path: list[str]) -> object:
    """The declared type of a (nested) dataclass field, or None when the path leaves the dataclasses."""
    for i, name in enumerate(path):
        hints = typing.get_type_hints(schema) if is_dataclass(schema) else {}
        if name not in hints:
            return None
        if i == len(path) - 1:
            return hints[name]
        schema = hints[name]
    return None


def _check_bool(key: str, value: str, agent: str) -> None:
    """A boolean setting takes true or false only, as in every rlgen command (OmegaConf alone would
    also read yes/no/on/off/1/0, so `progress=ture` and `progress=yes` would differ by a letter)."""
    head, _, rest = key.lstrip("+").partition(".")
    kind = _field_type(config_class(agent), rest.split(".")) if head == "agent" and rest else (
        _field_type(TrainConfig, [head]) if not rest else None)
    if kind is bool and value.lower() not in ("true", "false"):
        raise UserError(f"{key}: Value '{value}' is not a valid bool: write true or false")


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
        # a misspelt field (`env.idd`), not an env keyword; a close cutoff, so that a keyword such as
        # `kind` is not taken for `id`
        near = difflib.get_close_matches(rest, names, n=1, cutoff=0.75)
        if near:
            raise UserError(f"env has no field '{rest}' (did you mean '{near[0]}'?); fields: {', '.join(names)}, "
                            f"or env keywords")
        return f"++env.kwargs.{rest}={value}"
    if key.startswith("env.kwargs."):  # kwargs is open: `++` adds the key or overrides it
        return f"++{key}={value}"
    return None


SWEEPS = "a,b,c  choice(a,b)  range(start,stop[,step])  glob(pattern) for agent and env"
MAX_JOBS = 1000
"""a sweep runs its jobs one after another, each config composed first: more is surely a mistake"""


def expand_overrides(overrides: list[str], multirun: bool) -> list[list[str]]:
    """Split a command line into one override list per job (the cartesian product of sweeps)."""
    for line in overrides:
        if line.startswith("~"):
            key = line[1:].partition("=")[0]
            raise UserError(f"'{line}' would delete a setting; every setting has a default: write {key}=VALUE "
                            f"to change it")
        if "=" not in line or line.startswith("="):
            raise UserError(f"'{line}' is not an override: write key=value (e.g. agent=ppo env=CartPole)")
    seen: dict[str, str] = {}
    for line in overrides:  # on a command line each setting is given once (callers composing lists: last wins)
        key = _setting(line)
        if key in seen:
            raise UserError(f"'{key}' is given twice ({seen[key]} and {line}); give it once")
        seen[key] = line
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as err:
        raise UserError(f"cannot parse overrides: {str(err).splitlines()[0]} (sweeps: {SWEEPS})") from None
    axes: list[list[str]] = []
    for o in parsed:
        if not o.is_sweep_override():
            axes.append([o.input_line])
            continue
        if not multirun:
            raise UserError(f"'{o.input_line}' is a sweep: add -m to run one job per value")
        values = _sweep_values(o)
        if not values:
            raise UserError(f"the sweep '{o.input_line}' has no values")
        axes.append([f"{o.get_key_element()}={v}" for v in values])
    if math.prod(len(axis) for axis in axes) > MAX_JOBS:
        raise UserError(f"the sweep has more than {MAX_JOBS} jobs, the most one command line runs (one after "
                        f"another); a benchmark suite (python -m rlgen.bench) runs many in parallel")
    return [list(job) for job in itertools.product(*axes)]


def _sweep_values(o: Override) -> list[str]:
    """The values of a sweep rlgen runs one job each; Hydra's interval() is for optimising sweepers."""
    key = o.get_key_element()
    if o.value_type == ValueType.GLOB_CHOICE_SWEEP:
        if key not in ("agent", "env"):
            raise UserError(f"'{o.input_line}': glob() sweeps choose among agents or envs, not {key}")
        agents, envs = list_choices()
        return o.value().filter(agents if key == "agent" else envs)
    if o.value_type == ValueType.INTERVAL_SWEEP:
        raise UserError(f"'{o.input_line}': interval() is for Hydra's optimising sweepers (Optuna, Nevergrad, "
                        f"Ax), which rlgen does not run; sweeps rlgen runs: {SWEEPS}")
    try:  # at most one value more than a command line may run: range(0,10**9) is not listed
        return list(itertools.islice(o.sweep_string_iterator(), MAX_JOBS + 1))
    except (HydraException, ValueError) as err:  # range(0,3,0)
        raise UserError(f"'{o.input_line}': {err}; sweeps rlgen runs: {SWEEPS}") from None


def _setting(line: str) -> str:
    """The setting an override line sets: `+key` / `++key` are Hydra's "add" and "add or override",
    and every setting exists already, so they set `key` (a new key is then an unknown setting);
    `env.id=X` chooses the env as `env=X` does."""
    key = line.lstrip("+").partition("=")[0]
    return "env" if key == "env.id" else key


def _resolve(overrides: list[str], agents: list[str], envs: list[str]) -> tuple[str, list[str]]:
    """The agent chosen and the overrides Hydra composes: env choices resolved, `env.KEY` shortened
    kwargs expanded, every mistake found so far a UserError. A setting given again replaces it (a
    benchmark suite's per-env overrides come after its overrides for all)."""
    agent = _default_choice("agent")
    lines: dict[str, list[str]] = {}
    for line in overrides:
        _, sep, value = line.partition("=")
        key = _setting(line)
        if not sep:
            raise UserError(f"'{line}' is not an override: write key=value (e.g. agent=ppo env=CartPole)")
        if key.startswith(("hydra.", "hydra/")) or key == "hydra":
            raise UserError(f"'{line}': {HYDRA_ONLY}")
        if key == "agent":
            if value not in agents:
                raise unknown("agent", value, agents)
            agent = value
        lines.pop(key, None)  # a replaced setting takes its new place in the order
        if key == "env":
            lines[key] = _resolve_env_choice(value, envs)
        else:
            lines[key] = [_env_kwarg(key, value) or f"{key}={value}"]
    return agent, [line for group in lines.values() for line in group]


def _default_choice(group: str) -> str:
    """The option of `group` that train.yaml's defaults list picks."""
    defaults = OmegaConf.load(_conf_file("train.yaml")).defaults
    return next(d[group] for d in defaults if not isinstance(d, str) and group in d)


def load_config(overrides: list[str]) -> TrainConfig:
    """Compose train.yaml with the overrides into a typed TrainConfig, or raise a UserError. A `tuned=PATH`
    file's values come before the overrides, so that those given on the command line win."""
    _store_schemas()
    tuned_env = None
    with initialize_config_module("rlgen.conf", version_base="1.3"):
        agents, envs = _group_options("agent"), _group_options("env")
        agent, resolved = _resolve(overrides, agents, envs)
        # not a Hydra override: `tuned` is also the config group of rlgen's own tuned values (train.yaml)
        path = next((line.partition("=")[2] for line in resolved if line.partition("=")[0] == "tuned"), "null")
        resolved = [line for line in resolved if line.partition("=")[0] != "tuned"]
        if path != "null":
            values, tuned_env = read_tuned_file(path, agent)
            agent, resolved = _resolve([override_line(k, v) for k, v in values.items()] + overrides, agents, envs)
            resolved = [line for line in resolved if line.partition("=")[0] != "tuned"]
        _store_schemas(agent)
        for line in resolved:
            key, _, value = line.partition("=")
            _check_override(key, agent)
            _check_bool(key, value, agent)
        try:
            cfg = compose("train", overrides=resolved)
            typed = OmegaConf.to_object(cfg)
        except (HydraException, OmegaConfBaseException) as err:
            raise UserError(explain_config_error(err)) from None
    assert isinstance(typed, TrainConfig)  # its __post_init__ has checked the values
    if tuned_env is not None and tuned_env != typed.env.name:
        raise UserError(f"tuned={path} was tuned for env {tuned_env}, not {typed.env.name}; use it with "
                        f"env={tuned_env}, or tune for {typed.env.name} (python -m rlgen.tune)")
    if tuned_env is not None:
        typed = replace(typed, tuned=path)
    check_choice("env.vectorization", typed.env.vectorization, VECTORIZATION)  # before a run directory exists
    return typed


def override_line(key: str, value: object) -> str:
    """`key=value` in Hydra's override grammar, for a value read from YAML or given in Python."""
    return f"{key}={override_value(value)}"


def override_value(value: object) -> str:
    """A Python value as an override writes it: true / false, null, [a,b], {k:v}, a number as Python
    prints it (1e-05 and inf are Hydra floats too), and a str as itself when Hydra's grammar reads it
    back as that str, else quoted."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if not isinstance(value, str):
        return str(value)
    return value if _reads_back(value) else _quoted(value)


@functools.cache
def _parser() -> OverridesParser:
    return OverridesParser.create()


def _reads_back(text: str) -> bool:
    try:
        return _parser().parse_overrides([f"key={text}"])[0].value() == text
    except HydraException:
        return False


def _quoted(text: str) -> str:
    """Hydra's single-quoted string: a quote is escaped by a backslash, and so is each backslash
    that comes right before a quote or the closing quote (Hydra docs, "Override grammar", "Quoted values")."""
    out, run = [], 0
    for char in text:
        if char == "\\":
            run += 1
            continue
        out.append("\\" * (2 * run if char == "'" else run) + ("\\'" if char == "'" else char))
        run = 0
    return "'" + "".join(out) + "\\" * (2 * run) + "'"


def read_tuned_file(path: str, agent: str) -> tuple[dict[str, object], str]:
    """The agent values ({"agent.<field>": value}) and the env of a tuned file (rlgen.tune's best YAML:
    `tuned_for: {agent, env, ...}` and an `agent:` mapping), checked against the chosen agent."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            node = yaml.safe_load(f)
    except OSError as err:
        raise UserError(f"tuned={path}: cannot read it ({err.strerror}); give a file python -m rlgen.tune "
                        f"wrote (studies/<agent>_<env>-best.yaml)") from None
    except yaml.YAMLError as err:
        raise UserError(f"tuned={path} is not YAML ({' '.join(str(err).split())})") from None
    made_for = node.get("tuned_for") if isinstance(node, dict) else None
    if not isinstance(made_for, dict) or not {"agent", "env"} <= set(made_for):
        raise UserError(f"tuned={path} says not what it was tuned for: it needs tuned_for: with agent: and env: "
                        f"(python -m rlgen.tune writes such files)")
    if made_for["agent"] != agent:
        raise UserError(f"tuned={path} was tuned for agent {made_for['agent']}, not {agent}; use it with "
                        f"agent={made_for['agent']}")
    values = node.get("agent") or {}
    extra = sorted(set(node) - {"tuned_for", "agent"})
    if not isinstance(values, dict) or extra:
        raise UserError(f"tuned={path}: a tuned file holds tuned_for: and agent: only, "
                        f"not {', '.join(extra) or 'agent: ' + str(values)}")
    names = [f.name for f in fields(config_class(agent)) if f.name != "name"]
    for key in values:
        if key not in names:
            raise UserError(f"tuned={path}: agent {agent} has no field '{key}'{did_you_mean(key, names)}")
    return {f"agent.{k}": v for k, v in values.items()}, str(made_for["env"])


def tuned_pairs() -> list[tuple[str, str, str]]:
    """(agent, env short name, the file's first comment: where the values come from) for every
    conf/tuned/<agent>_<env>.yaml."""
    agents, envs = list_choices()
    pairs = {f"{a}_{e}.yaml": (a, e) for a in agents for e in envs}
    out = []
    for f in (files("rlgen.conf") / "tuned").iterdir():
        if f.name in pairs:
            comments = [ln[1:].strip() for ln in f.read_text().splitlines() if ln.startswith("#")]
            source = next((c for c in comments if not c.startswith("@package")), "")
            out.append((*pairs[f.name], source))
    return sorted(out)


def _conf_file(name: str) -> str:
    return str(files("rlgen.conf") / name)


RENAMED_AGENT_FIELDS = {"n_demos": "n_trajectories"}
"""agent fields renamed since runs were first written: old name -> new name"""


def to_yaml(cfg: TrainConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def from_yaml(text: str) -> TrainConfig:
    """Rebuild a typed config from a run directory's config.yaml."""
    raw = OmegaConf.create(text)
    for old, new in RENAMED_AGENT_FIELDS.items():  # a run written before the rename still loads
        if old in raw.agent:
            raw.agent[new] = raw.agent.pop(old)
    schema = OmegaConf.structured(TrainConfig)
    schema.agent = OmegaConf.structured(config_class(raw.agent.name))
    schema.env = OmegaConf.structured(EnvConfig)
    typed = OmegaConf.to_object(OmegaConf.merge(schema, raw))
    assert isinstance(typed, TrainConfig)
    return typed
