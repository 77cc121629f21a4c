"""Building environments for a run: one code path for training, evaluation and video.

Training uses Gymnasium's vector API with the NEXT_STEP autoreset mode, set explicitly: when a
sub-env ends at step t, step t returns its true final observation (so a truncated episode can be
bootstrapped from it) and step t+1 resets it, ignoring that step's action. The training loops
(rlgen/loops.py) leave that reset step out of every update (`EpisodeStats.valid`). It is Gymnasium
1.x's default and the only mode that natively vectorised envs (CartPole, ...) implement.

Action masks: an env may say which of its Discrete actions are valid, by an `action_masks()` method
(sb3-contrib's MaskablePPO convention) and/or `info["action_mask"]` on reset and step (Gymnasium's
Taxi). `action_masks` reads them, the method first, as (n_envs, n_actions) bool rows, and refuses a
mask of another shape or one without a valid action. `EpisodeStats` keeps the training envs' masks
beside their last observations.

Importing this package registers rlgen's own envs (`rlgen/<Name>-v0`) with Gymnasium.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec, load_env_creator
from gymnasium.vector import AutoresetMode

from rlgen.config import EnvConfig, check_choice
from rlgen.errors import UserError


class OneHot(gym.ObservationWrapper):
    """Discrete (or Tuple of Discrete) observations as one-hot float vectors, for deep agents."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        self.sizes = [s.n for s in space] if isinstance(space, gym.spaces.Tuple) else [space.n]
        self.observation_space = gym.spaces.Box(0.0, 1.0, (int(np.prod(self.sizes)),), np.float32)

    def observation(self, observation: Any) -> np.ndarray:
        index = np.ravel_multi_index(tuple(np.atleast_1d(observation)), self.sizes)
        out = np.zeros(self.observation_space.shape, dtype=np.float32)
        out[index] = 1.0
        return out


def _needs_one_hot(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Discrete) or (
        isinstance(space, gym.spaces.Tuple) and all(isinstance(s, gym.spaces.Discrete) for s in space)
    )


VECTORS = (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
"""observations a deep agent's network takes as they are: fixed-size arrays of numbers"""


def vector_observations(env: gym.Env, env_id: str) -> gym.Env:
    """The env with observations as the flat vector a deep agent's network takes: a discrete state
    one-hot (over the product of a Tuple's sizes, so each state has its own input), an array of
    numbers (Box, MultiDiscrete, MultiBinary) as it is, any other space (Dict, a mixed Tuple, Text)
    flattened as Gymnasium flattens it (discrete parts one-hot), in float32."""
    space = env.observation_space
    if _needs_one_hot(space):
        return OneHot(env)
    if isinstance(space, VECTORS):
        return env
    try:
        flat = gym.spaces.utils.flatten_space(space)
    except NotImplementedError:
        flat = None
    if not isinstance(flat, gym.spaces.Box):  # a Sequence or a Graph: no fixed size
        env.close()
        raise UserError(f"env '{env_id}' observes {space}, which does not flatten to a vector of fixed size, "
                        f"as deep agents need")
    box = gym.spaces.Box(flat.low.astype(np.float32), flat.high.astype(np.float32), dtype=np.float32)
    return gym.wrappers.TransformObservation(gym.wrappers.FlattenObservation(env),
                                             lambda obs: obs.astype(np.float32), box)


def vector_view(env: gym.Env, env_id: str) -> Callable[[Any], np.ndarray]:
    """One observation of `env` as vector_observations shows it to a deep agent."""
    wrapped = vector_observations(env, env_id)
    if isinstance(wrapped, OneHot):
        return wrapped.observation
    if wrapped is env:
        return lambda obs: np.asarray(obs, dtype=np.float32)
    space = env.observation_space
    return lambda obs: gym.spaces.utils.flatten(space, obs).astype(np.float32)


def registered_id(env_id: str) -> str | None:
    """The registry key of `env_id`, or None when no env of that id is registered. Gymnasium's
    `module:Id` form imports the module first, as gymnasium.make does, so an env that a user's own
    module registers is found; a module that fails to import is a UserError."""
    module, sep, name = env_id.rpartition(":")
    if sep:
        try:
            importlib.import_module(module)
        except Exception as err:  # the user's module: whatever it raises is theirs to fix, in one line
            raise UserError(f"env '{env_id}': cannot import module '{module}': {_one_line(err)} (run from the "
                            f"folder that holds it, or add that folder to PYTHONPATH)") from None
    return name if name in gym.registry else None


def _one_line(err: BaseException) -> str:
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def _render_modes(spec: EnvSpec) -> list[str] | None:
    """The render modes the env's class declares in its metadata, as gymnasium.make reads them
    (None: the entry point does not say)."""
    creator = spec.entry_point if callable(spec.entry_point) else load_env_creator(str(spec.entry_point))
    metadata = getattr(creator, "metadata", None)
    return list(metadata.get("render_modes") or []) if isinstance(metadata, dict) else None


def make_env(cfg: EnvConfig, render_mode: str | None = None, one_hot: bool = True) -> gym.Env:
    """gymnasium.make, and for deep agents (`one_hot`) `vector_observations`. An env that cannot be
    built is a UserError: its constructor is the env author's code, and whatever it raises is
    reported in one line (gymnasium.make on its own shows the traceback)."""
    name = registered_id(cfg.id)
    if name is None:
        raise UserError(f"cannot make env '{cfg.id}': no env of that id is registered (an env your module "
                        f"registers is written module:Id)")
    kwargs = dict(cfg.kwargs)
    try:
        if render_mode is not None:  # only then: an env that never renders may take no render_mode at all
            modes = _render_modes(gym.spec(name))
            if modes is not None and render_mode not in modes:
                raise UserError(f"env '{cfg.id}' does not render as {render_mode} (the render_modes in its "
                                f"metadata: {', '.join(modes) or 'none'})")
            kwargs["render_mode"] = render_mode
        env = gym.make(cfg.id, **kwargs)
    except UserError:
        raise
    except Exception as err:
        if isinstance(err, TypeError) and "keyword argument" in str(err):
            raise UserError(f"env '{cfg.id}' rejected its kwargs {kwargs}: {_one_line(err)}") from None
        raise UserError(f"cannot make env '{cfg.id}': {_one_line(err)} (gymnasium.make('{cfg.id}') shows "
                        f"the traceback)") from None
    return vector_observations(env, cfg.id) if one_hot else env


NATIVE_VECTOR_MIN_ENVS = 4
VECTORIZATION = ("auto", "sync", "async")


def native_vector(cfg: EnvConfig, num_envs: int) -> bool:
    """Whether `num_envs` copies of the env are its own vector version (one generator for all copies,
    seeded by one seed), not copies of the single env (each seeded seed + i)."""
    check_choice("env.vectorization", cfg.vectorization, VECTORIZATION)
    # A native vector env pays a fixed cost per call that only pays off with several copies: on
    # CartPole-v1 it took 47 us a step for 1 copy and 39 us for 4 or 8, a sync vector env 16, 35 and
    # 63 us (measured on a 2-core x86 machine, gymnasium 1.4).
    return (cfg.vectorization == "auto" and env_spec(cfg).vector_entry_point is not None
            and num_envs >= NATIVE_VECTOR_MIN_ENVS)


def make_vec_env(cfg: EnvConfig, num_envs: int, one_hot: bool = True) -> gym.vector.VectorEnv:
    """`num_envs` copies behind the vector API, autoreset mode NEXT_STEP."""
    spec = env_spec(cfg)
    mode = cfg.vectorization
    if native_vector(cfg, num_envs):
        envs = gym.make_vec(spec.id, num_envs=num_envs, vectorization_mode="vector_entry_point", **cfg.kwargs)
        assert envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP) == AutoresetMode.NEXT_STEP
        return envs
    fns: list[Callable[[], gym.Env]] = [lambda: make_env(cfg, one_hot=one_hot) for _ in range(num_envs)]
    cls = gym.vector.AsyncVectorEnv if mode == "async" else gym.vector.SyncVectorEnv
    return cls(fns, autoreset_mode=AutoresetMode.NEXT_STEP)


MASK_METHOD = "action_masks"
"""sb3-contrib's name for an env's method that returns its mask of valid actions"""


def offers_mask_method(env: gym.Env) -> bool:
    """Whether the env (or one of its wrappers, e.g. sb3-contrib's ActionMasker) has `action_masks()`."""
    try:
        return callable(env.get_wrapper_attr(MASK_METHOD))
    except AttributeError:
        return False


def rejects_masked_actions(env: gym.Env) -> bool:
    """Whether stepping a masked action is an error in this env (rlgen's MaskedGridWorld), not merely a
    wasted step (Taxi): only an agent that honours its masks can act there."""
    return bool(getattr(env.unwrapped, "rejects_masked_actions", False))


def refuse_unmasked(env: gym.Env, agent: str, honours_masks: bool, remedy: str) -> None:
    """A UserError, before a run starts, where `env` rejects masked actions and the agent does not honour
    masks: `remedy` says what to do instead."""
    if rejects_masked_actions(env) and not honours_masks:
        name = env.spec.id if env.spec else type(env.unwrapped).__name__
        raise UserError(f"env '{name}' rejects masked actions; {agent} {remedy}")


def _env_name(envs: gym.vector.VectorEnv) -> str:
    sub = getattr(envs, "envs", None)
    spec = sub[0].spec if sub else envs.spec
    return spec.id if spec is not None else type(envs.unwrapped).__name__


def checked_masks(raw: Any, n_rows: int, n_actions: int, source: str) -> np.ndarray:
    """`raw` as (n_rows, n_actions) bool rows of valid actions; a UserError naming `source` (who gave the
    masks: "env 'Taxi-v3'") for another shape or a row without a valid action (no action could be taken)."""
    masks = np.asarray(raw)
    if masks.shape == (n_actions,) and n_rows == 1:
        masks = masks[None]
    if masks.shape != (n_rows, n_actions) or not (masks.dtype == bool or np.issubdtype(masks.dtype, np.number)):
        raise UserError(f"{source} gave an action mask of shape {masks.shape} ({masks.dtype}); expected "
                        f"({n_actions},) of bool or 0/1 for each of its {n_rows} row(s), one entry per Discrete action")
    masks = masks.astype(bool)
    if not masks.any(axis=1).all():
        raise UserError(f"{source} gave an action mask with no valid action (all {n_actions} entries "
                        "False): an agent could take no action; a mask needs at least one True")
    return masks


def action_masks(envs: gym.vector.VectorEnv, info: dict[str, Any]) -> np.ndarray | None:
    """The vector env's masks of valid actions after a reset or step whose info is `info`, as (n_envs,
    n_actions) bool rows: from an `action_masks()` method (of the vector env, else of each copy), else
    from info["action_mask"] (a copy that reported none has every action valid); None if the env has
    neither or its actions are not Discrete. The copies of an AsyncVectorEnv are asked only through info."""
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Discrete):
        return None
    n, name = envs.num_envs, _env_name(envs)
    if callable(getattr(envs, MASK_METHOD, None)):
        raw = getattr(envs, MASK_METHOD)()
    elif isinstance(envs, gym.vector.SyncVectorEnv) and offers_mask_method(envs.envs[0]):
        raw = [checked_masks(m, 1, int(space.n), f"env '{name}'")[0] for m in envs.call(MASK_METHOD)]
    elif "action_mask" in info:
        raw = np.asarray(info["action_mask"])
        reported = info.get("_action_mask")
        if reported is not None and raw.shape[:1] == (n,):
            raw = np.where(np.asarray(reported)[:, None], raw, 1)
    else:
        return None
    return checked_masks(raw, n, int(space.n), f"env '{name}'")


def env_masks(env: gym.Env, info: dict[str, Any]) -> np.ndarray | None:
    """`action_masks` for one env (not vectorised): its (1, n_actions) mask after a reset or step, or None."""
    if not isinstance(env.action_space, gym.spaces.Discrete):
        return None
    name = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    if offers_mask_method(env):
        return checked_masks(env.get_wrapper_attr(MASK_METHOD)(), 1, int(env.action_space.n), f"env '{name}'")
    if "action_mask" in info:
        return checked_masks(info["action_mask"], 1, int(env.action_space.n), f"env '{name}'")
    return None


class EpisodeStats(gym.vector.VectorWrapper):
    """Sums rewards and counts steps per sub-env and reports each finished episode, once, to
    `on_episodes(step, returns, lengths)` (step = env steps taken so far, reset steps included, as
    the x-axis of every curve). In the spirit of Gymnasium's RecordEpisodeStatistics, for NEXT_STEP
    autoreset: a step right after an episode ended only resets its sub-env and is not counted."""

    def __init__(self, envs: gym.vector.VectorEnv, on_episodes: Callable[[int, np.ndarray, np.ndarray], None],
                 step: int = 0):
        super().__init__(envs)
        self.on_episodes = on_episodes
        self.step_count = step
        n = envs.num_envs
        self.returns = np.zeros(n)
        self.lengths = np.zeros(n, dtype=np.int64)
        self.prev_done = np.zeros(n, dtype=bool)
        self.valid = np.ones(n, dtype=bool)
        """which sub-envs' last step was a real transition (False: it only reset that sub-env)"""
        self.last_obs: Any = None
        self.last_masks: np.ndarray | None = None
        """(n, n_actions) bool: the valid actions in `last_obs`, where the env offers masks (else None)"""

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.returns[:], self.lengths[:], self.prev_done[:] = 0.0, 0, False
        self.last_obs = obs
        self.last_masks = action_masks(self.env, info)
        return obs, info

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        self.valid = ~self.prev_done
        self.returns += np.where(self.valid, reward, 0.0)
        self.lengths += self.valid
        self.step_count += self.num_envs
        done = terminated | truncated
        if done.any():
            self.on_episodes(self.step_count, self.returns[done], self.lengths[done])
            self.returns[done], self.lengths[done] = 0.0, 0
        self.prev_done = done
        self.last_obs = obs
        self.last_masks = action_masks(self.env, info)
        return obs, reward, terminated, truncated, info


def env_spec(cfg: EnvConfig) -> EnvSpec:
    """The registered spec of the config's env (`module:Id` imports the module first)."""
    name = registered_id(cfg.id)
    if name is None:
        raise UserError(f"no env '{cfg.id}' is registered (an env your module registers is written module:Id)")
    return gym.spec(name)


def reward_threshold(cfg: EnvConfig) -> float | None:
    return env_spec(cfg).reward_threshold


# rlgen's own environments register their ids (rlgen/<Name>-v0) when this package is imported
from rlgen.envs import registration as _registration  # noqa: E402, F401
from rlgen.envs import text_preference as _text_preference  # noqa: E402, F401
