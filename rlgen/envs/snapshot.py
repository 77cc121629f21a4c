"""The state of a running env as plain data, so an interrupted run resumes exactly where it stopped.

Gymnasium has no get/set-state API, but the envs rlgen trains on keep their state in plain
attributes: numbers, arrays, and NumPy generators (`CartPoleEnv.state`, `TimeLimit._elapsed_steps`,
`SyncVectorEnv._autoreset_envs`, `Env._np_random`, the spaces' generators). `env_state` walks the
wrapper chain (and a sync vector env's sub-envs) and records those; `set_env_state` writes them
back into a freshly made env of the same config. Constants that are not plain data (a tabular model,
a vocabulary, an env spec) are left alone. An attribute of any other kind (Box2D's physics world, a
pygame window) may hold state we cannot record: then the env is not restorable, `env_state` returns
None, and a resumed run starts new episodes instead (rlgen/run.py says so in its log).
"""

from __future__ import annotations

import enum
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

PLAIN = (type(None), bool, int, float, str, np.generic)
CONSTANT_KINDS: tuple[type, ...] = (EnvSpec, enum.Enum, np.dtype)
"""kinds of attribute that never hold episode state: recorded by no one, restored by no one"""


class NotRestorable(Exception):
    """An attribute whose state cannot be written down as plain data."""


def _constant(value: Any) -> bool:
    # frozen dataclasses (rlgen's TabularModel) and objects that declare themselves constant
    # (rlgen's Vocab) describe the env, they do not change while it runs
    params = getattr(type(value), "__dataclass_params__", None)
    text = isinstance(value, np.ndarray) and value.dtype.kind in "US"  # a gridworld's map
    return (isinstance(value, CONSTANT_KINDS) or callable(value) or getattr(value, "env_constant", False)
            or (params is not None and params.frozen) or text)


def _record(value: Any) -> Any:
    """`value` as plain data (arrays copied), or NotRestorable."""
    if isinstance(value, np.str_ | np.bytes_):  # Blackjack's card suits: text, kept as text
        return value.item()
    if isinstance(value, PLAIN):
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise NotRestorable(f"an array of dtype {value.dtype}")
        return value.copy()
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, list | tuple):
        return type(value)(_record(v) for v in value)
    if isinstance(value, dict):
        return {k: _record(v) for k, v in value.items()}
    raise NotRestorable(type(value).__name__)


def _restore(current: Any, saved: Any) -> Any:
    if isinstance(saved, dict) and "__generator__" in saved:
        current.bit_generator.state = saved["__generator__"]
        return current
    if isinstance(saved, np.ndarray):
        return saved.copy()
    return saved


def _parts(env: Any) -> list[Any]:
    """Every object of an env that may hold state: wrappers, the base env, sub-envs, spaces."""
    out, todo = [], [env]
    while todo:
        obj = todo.pop(0)
        out.append(obj)
        inner = vars(obj).get("env")
        if isinstance(inner, gym.Env | gym.vector.VectorEnv):
            todo.append(inner)
        todo.extend(e for e in vars(obj).get("envs", []) if isinstance(e, gym.Env))
        for value in vars(obj).values():  # spaces, and the spaces a Tuple or Dict space holds
            todo.extend(s for s in _members(value) if isinstance(s, gym.Space))
    return out


SKIPPED = ("env", "envs", "env_fns", "_saved_kwargs", "metadata", "_metadata", "render_mode", "spec", "_cached_spec")
"""structure, constants, and Gymnasium wrappers' `_cached_spec` (None until `.spec` is first read, then the
EnvSpec): a cache of a constant, which would make a state recorded after the first read not fit a new env"""


def _state_items(obj: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in vars(obj).items()
            if k not in SKIPPED and not _structure(v) and not _constant(v)]


def _members(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list | tuple) else [value]


def _structure(value: Any) -> bool:
    """A sub-env or a space (or a collection of them): walked as a part of its own."""
    members = _members(value)
    return bool(members) and all(isinstance(m, gym.Space | gym.Env) for m in members)


def env_state(env: gym.Env | gym.vector.VectorEnv) -> list[dict[str, Any]] | None:
    """The env's state as plain data (one dict per part), or None when it cannot be recorded."""
    try:
        return [{k: _record(v) for k, v in _state_items(obj)} for obj in _parts(env)]
    except NotRestorable:
        return None


def set_env_state(env: gym.Env | gym.vector.VectorEnv, state: list[dict[str, Any]]) -> bool:
    """Write a recorded state back into an env built from the same config; False if it does not fit."""
    parts = _parts(env)
    if len(parts) != len(state) or any(set(dict(_state_items(p))) != set(s) for p, s in zip(parts, state, strict=True)):
        return False
    for part, saved in zip(parts, state, strict=True):
        for key, value in saved.items():
            setattr(part, key, _restore(getattr(part, key), value))
    return True

