"""Deterministic evaluation: n episodes at once, from a fixed sequence of start seeds.

A policy that honours the env's masks of valid actions is a `MaskedPolicy`: it is handed the mask of
each observation (rlgen.envs.action_masks) beside it; any other policy is called with the observations alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import load_env_creator

from rlgen.config import EnvConfig
from rlgen.envs import action_masks, make_env, make_vec_env, native_vector, registered_id

EVAL_SEED_OFFSET = 1_000_003
"""Evaluation envs are seeded apart from training envs, the same way at every evaluation, so
successive points of a learning curve differ only by the policy."""


class MaskedPolicy:
    """A policy that reads the env's masks: `policy(obs, mask)` is `act(obs, deterministic, mask=mask)`,
    mask the (n, n_actions) valid actions of each observation (None: all valid)."""

    reads_masks = True

    def __init__(self, act: Callable[..., np.ndarray], deterministic: bool):
        self.act, self.deterministic = act, deterministic

    def __call__(self, obs: Any, mask: np.ndarray | None = None) -> np.ndarray:
        return self.act(obs, deterministic=self.deterministic, mask=mask)


def reads_masks(policy: Callable[..., np.ndarray]) -> bool:
    return bool(getattr(policy, "reads_masks", False))


@dataclass
class Evaluation:
    """What n evaluation episodes gave, one entry per episode."""

    returns: np.ndarray
    lengths: np.ndarray
    success: np.ndarray | None
    """info["success"] at each episode's end; None if the env reports no success"""
    mode: np.ndarray | None
    """info["mode"] at each episode's end (which of the ways to succeed was taken); None if not reported"""
    act_ms: float
    """mean wall-clock milliseconds per call of the policy (one call acts in every env at once)"""

    def rates(self) -> dict[str, float]:
        """success_rate and mode_fraction (the fraction of episodes that ended in mode 1), where reported."""
        out = {}
        if self.success is not None:
            out["success_rate"] = float(self.success.mean())
        if self.mode is not None:
            out["mode_fraction"] = float((self.mode == 1).mean())
        return out


def evaluate_episodes(
    act: Callable[[np.ndarray], np.ndarray],
    env_cfg: EnvConfig,
    episodes: int,
    seed: int,
    one_hot: bool = True,
    max_steps: int = 100_000,
) -> Evaluation:
    """Run one episode in each of `episodes` parallel envs (a policy with a `reset()` is reset first:
    rlgen/agents/base.py, episode_policy)."""
    return evaluate_together([act], env_cfg, episodes, [seed], one_hot, max_steps)[0]


def evaluate_together(
    acts: list[Callable[[np.ndarray], np.ndarray]],
    env_cfg: EnvConfig,
    episodes: int,
    seeds: list[int],
    one_hot: bool = True,
    max_steps: int = 100_000,
) -> list[Evaluation]:
    """`evaluate_episodes` of several policies (the seeds of a group of runs) in one vector env of
    len(acts) x episodes copies: policy k acts on its own rows, seeded from seeds[k] as it would be alone,
    and is called while any of its episodes runs, so each gets the episodes and returns it would alone.
    An env whose own vector version would run a policy's episodes (one generator for all its copies)
    cannot be shared so: each policy then has its own, as alone."""
    n = len(acts)
    if n > 1 and native_vector(env_cfg, episodes):
        return [evaluate_together([act], env_cfg, episodes, [seed], one_hot, max_steps)[0]
                for act, seed in zip(acts, seeds, strict=True)]
    # copies of the single env, as each policy's own episodes would be, however many they are together
    envs = make_vec_env(env_cfg if n == 1 else replace(env_cfg, vectorization="sync"), n * episodes, one_hot=one_hot)
    rows = [slice(k * episodes, (k + 1) * episodes) for k in range(n)]
    outcome: dict[str, np.ndarray] = {}
    act_seconds, calls = np.zeros(n), np.zeros(n)
    try:
        # a vector env of copies seeds copy i with seed + i (gymnasium.vector.SyncVectorEnv.reset); an env's
        # own vector version takes one seed
        each = [s + EVAL_SEED_OFFSET + i for s in seeds for i in range(episodes)]
        obs, info = envs.reset(seed=each[0] if n == 1 else each)
        masks = action_masks(envs, info) if any(reads_masks(act) for act in acts) else None
        for act in acts:
            if hasattr(act, "reset"):
                act.reset()
        returns = np.zeros(n * episodes)
        lengths = np.zeros(n * episodes, dtype=np.int64)
        running = np.ones(n * episodes, dtype=bool)
        actions: list[np.ndarray] = [np.empty(0)] * n
        for _ in range(max_steps):
            for k, (act, part) in enumerate(zip(acts, rows, strict=True)):
                if running[part].any() or not calls[k]:  # a policy whose episodes ended keeps its last actions
                    start = time.perf_counter()
                    mask = (masks[part],) if masks is not None and reads_masks(act) else ()
                    actions[k] = np.asarray(act(_part(obs, part), *mask))
                    act_seconds[k], calls[k] = act_seconds[k] + time.perf_counter() - start, calls[k] + 1
                elif masks is not None:  # its envs only restart: a valid action, which an env may insist on
                    actions[k] = masks[part].argmax(axis=1)
            obs, reward, terminated, truncated, info = envs.step(np.concatenate(actions))
            masks = action_masks(envs, info) if masks is not None else None
            returns += np.where(running, reward, 0.0)
            lengths += running
            ended = running & (terminated | truncated)
            for key in ("success", "mode"):
                if key in info:  # the env's report at each episode's last step
                    seen = outcome.setdefault(key, np.zeros(n * episodes, dtype=np.asarray(info[key]).dtype))
                    seen[ended] = np.asarray(info[key])[ended]
            running &= ~ended
            if not running.any():
                break
    finally:
        envs.close()
    return [Evaluation(returns[part], lengths[part], outcome["success"][part] if "success" in outcome else None,
                       outcome["mode"][part] if "mode" in outcome else None, 1000 * act_seconds[k] / max(calls[k], 1))
            for k, part in enumerate(rows)]


def _part(obs: Any, rows: slice) -> Any:
    """Some rows of a vector env's observations (a tuple or dict of arrays for Tuple and Dict spaces)."""
    if isinstance(obs, tuple):
        return tuple(o[rows] for o in obs)
    if isinstance(obs, dict):
        return {key: value[rows] for key, value in obs.items()}
    return obs[rows]


def _env_offers(env_cfg: EnvConfig, method: str) -> bool:
    """Whether the env's class has `method`, asked without making the env (some take a while to build)."""
    entry = gym.spec(registered_id(env_cfg.id) or env_cfg.id).entry_point  # module:Id names a user's env
    return hasattr(load_env_creator(entry) if isinstance(entry, str) else entry, method)


def policy_picture(act: Callable[[np.ndarray], np.ndarray], env_cfg: EnvConfig, seed: int,
                   one_hot: bool = True) -> np.ndarray | None:
    """An (H, W, 3) picture of what the policy does, from an env that can draw one
    (`policy_picture(act, seed)`, rlgen/envs/imitation_tasks.py); None for any other env."""
    if not _env_offers(env_cfg, "policy_picture"):
        return None
    env = make_env(env_cfg, one_hot=one_hot)
    try:
        return env.unwrapped.policy_picture(act, seed + EVAL_SEED_OFFSET)
    finally:
        env.close()


LATENCY_CALLS = 20


def final_metrics(act: Callable[[np.ndarray], np.ndarray], env_cfg: EnvConfig, seed: int,
                  one_hot: bool = True) -> dict[str, float]:
    """What a final evaluation adds for a policy: the median milliseconds of `act` on a batch of one
    observation over LATENCY_CALLS calls (after one warm-up call), and the env's own measures of the
    policy where it offers them (`policy_metrics(act)`, e.g. Step's error near its jump)."""
    env = make_env(env_cfg, one_hot=one_hot)
    try:
        obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET)
        batch = np.asarray(obs)[None]
        act(batch)
        times = []
        for _ in range(LATENCY_CALLS):
            start = time.perf_counter()
            act(batch)
            times.append(1000 * (time.perf_counter() - start))
        own = env.unwrapped.policy_metrics(act) if hasattr(env.unwrapped, "policy_metrics") else {}
    finally:
        env.close()
    return {"action_latency_one_ms": float(np.median(times)), **own}
