"""Observation and reward normalisation with the semantics of Stable-Baselines3's VecNormalize.

Observations are standardised by a running mean and variance and clipped; rewards are divided by the
running standard deviation of the discounted return and clipped (the scaling of Engstrom et al. 2020,
"Implementation Matters in Deep Policy Gradients", sec. 3, "reward scaling"). The statistics are updated
only while training, from what the training envs return, and are frozen otherwise: evaluation and every
later load of the agent normalise with the values saved in its checkpoint.

The training loops use rlgen's NEXT_STEP autoreset (rlgen/envs/__init__.py): the step that ends an
episode returns its true final observation and the next step of that env only resets it. VecNormalize
sees instead the first observation of the next episode at once, and the final one in `infos`, which it
normalises but does not count. So the final observations are normalised but not counted here either,
and a step that only reset its env counts its first observation but has no reward: the statistics are
those VecNormalize would have after the same episodes (tests/test_normalize.py). One step differs: an
episode's final observation (whose value bootstraps a truncation) is normalised before the next episode's
first observation is counted, VecNormalize normalises it after; a difference of one batch of observations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlgen.config import check_positive, named


class RunningMeanStd:
    """Mean and (population) variance of all rows seen so far, merged batch by batch (Chan, Golub &
    LeVeque 1979, "Updating formulae and a pairwise algorithm for computing sample variances"). It starts
    from a pseudo-count `epsilon` at mean 0 and variance 1, as SB3's RunningMeanStd does, so the first
    batches are not divided by a variance of zero."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = float(epsilon)

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, dtype=np.float64)
        if len(batch) == 0:
            return
        n = len(batch)
        delta = batch.mean(axis=0) - self.mean
        total = self.count + n
        m2 = self.var * self.count + batch.var(axis=0) * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": np.array(self.mean), "var": np.array(self.var), "count": self.count}  # 0-d: arrays too

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mean, var = np.array(state["mean"], dtype=np.float64), np.array(state["var"], dtype=np.float64)  # copies
        if mean.shape != self.mean.shape or var.shape != self.var.shape:
            raise ValueError(f"normalisation statistics of shape {mean.shape}, this agent's are {self.mean.shape}")
        self.mean, self.var, self.count = mean, var, float(state["count"])


@dataclass
class NormalizeConfig:
    """VecNormalize's settings, as agent config fields (RL Zoo's `normalize: true` is normalize_obs and
    normalize_reward both true, with SB3's defaults for the rest)."""

    normalize_obs: bool = False
    """standardise observations by their running mean and variance (updated in training only)"""
    normalize_reward: bool = False
    """divide rewards by the running standard deviation of the discounted return"""
    clip_obs: float = 10.0
    """normalised observations are clipped to +- this"""
    clip_reward: float = 10.0
    """scaled rewards are clipped to +- this"""
    norm_epsilon: float = 1e-8
    """added to the variance before its square root"""

    def check_normalization(self) -> None:
        check_positive(**named(self, "clip_obs", "clip_reward", "norm_epsilon"))

    @property
    def normalizes(self) -> bool:
        return self.normalize_obs or self.normalize_reward


class Normalizer:
    """What an agent trained with VecNormalize's settings keeps: the running statistics of observations
    and of discounted returns, and each training env's discounted return so far."""

    def __init__(self, config: NormalizeConfig, obs_dim: int, n_envs: int, gamma: float):
        self.config = config
        self.gamma = gamma
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.ret_rms = RunningMeanStd(())
        self.returns = np.zeros(n_envs)

    def obs(self, obs: np.ndarray) -> np.ndarray:
        """Flat observations as the agent sees them (unchanged unless normalize_obs), statistics frozen."""
        c = self.config
        if not c.normalize_obs:
            return obs
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + c.norm_epsilon)
        return np.clip(scaled, -c.clip_obs, c.clip_obs).astype(np.float32)

    def count_first(self, obs: np.ndarray) -> None:
        """Count the first observations of a new run's training envs (VecNormalize.reset)."""
        if self.config.normalize_obs:
            self.obs_rms.update(obs)

    def step(self, obs: np.ndarray, rewards: np.ndarray, done: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Count one training vector step (flat observations, rewards, terminated | truncated, and which rows
        are real transitions) and return its rewards as the agent learns from them."""
        c = self.config
        if c.normalize_obs:
            self.obs_rms.update(obs[~done])  # an episode's final observation is not counted (see above)
        if not c.normalize_reward:
            return rewards
        self.returns[valid] = self.returns[valid] * self.gamma + rewards[valid]
        self.ret_rms.update(self.returns[valid])
        scaled = np.where(valid, rewards / np.sqrt(self.ret_rms.var + c.norm_epsilon), 0.0)
        self.returns[done] = 0.0
        return np.clip(scaled, -c.clip_reward, c.clip_reward).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"obs_rms": self.obs_rms.state_dict(), "ret_rms": self.ret_rms.state_dict(),
                "returns": self.returns.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.obs_rms.load_state_dict(state["obs_rms"])
        self.ret_rms.load_state_dict(state["ret_rms"])
        returns = np.array(state["returns"], dtype=np.float64)
        if returns.shape != self.returns.shape:
            raise ValueError(f"discounted returns of {returns.shape} envs, this agent has {self.returns.shape}")
        self.returns = returns
