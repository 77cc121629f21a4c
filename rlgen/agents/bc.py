"""Policies learned from an env's scripted expert: behavioural cloning (`bc`) and a mixture density
network (`mdn`), the explicit baselines for the generative policies.

`ImitationAgent` is what every policy learned from demonstrations shares: the demonstrations
(rlgen/demos.py, generated from `demo_seed`, so every policy and run seed learns from the same ones),
observations normalised by their mean and spread in the demonstrations, actions scaled to [-1, 1]
from the action space's bounds, minibatches, and `learn` = the offline loop (rlgen/loops.py: the
budget counts gradient steps). A subclass writes its network, `fit_step` and `policy`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlgen.agents.base import Agent
from rlgen.config import (
    check_choice,
    check_layers,
    check_learning_rate,
    check_nonnegative,
    check_positive,
    check_range,
    named,
)
from rlgen.demos import (
    DEMONSTRATIONS_FILE,
    Demonstrations,
    DemonstrationsConfig,
    demonstrations_of,
    demos_summary,
    expert_demonstrations,
    scripted_expert,
)
from rlgen.distributions import categorical_sample, np_softmax
from rlgen.errors import UserError
from rlgen.loops import flat, offline
from rlgen.losses import mixture_density_nll
from rlgen.nets.mlp import ACTIVATIONS, flat_dim, mlp
from rlgen.nets.optim import FlatAdam, ema_decay
from rlgen.run import Run

SAMPLING_SEED_OFFSET = 271_828
"""the acting generator's seed is the run's plus this: apart from the training streams"""
GENERATIVE_NET_ARCH = (256, 256)
"""hidden layers of every policy learned from demonstrations, so that they compare at equal size"""


@dataclass
class ImitationConfig(DemonstrationsConfig):
    batch_size: int = 256
    learning_rate: float = 1e-3
    net_arch: list[int] = field(default_factory=lambda: list(GENERATIVE_NET_ARCH))
    activation: str = "relu"
    ema_power: float = 0.0
    """acting uses an exponential moving average of the weights whose decay after t updates is
    1 - (1 + t)^-ema_power, capped at ema_max_decay (Diffusion Policy's: 0.75); 0: the weights themselves"""
    ema_max_decay: float = 0.9999

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("agent.activation", self.activation, tuple(ACTIVATIONS))
        check_positive(**named(self, "batch_size"))
        check_learning_rate(**named(self, "learning_rate"))
        check_layers(**named(self, "net_arch"))
        check_nonnegative(**named(self, "ema_power"))
        check_range(0, 1, open_high=True, why=" (a decay)", **named(self, "ema_max_decay"))


class ImitationAgent(Agent):
    """Learns a policy from an expert's demonstrations, one minibatch per gradient step: the env's
    scripted expert's, or those of a trained run given as expert= (or a demonstrations file)."""

    learns_from_expert = True
    builds_on = ("expert", "ppo")
    action_spaces = (gym.spaces.Box,)

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: ImitationConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        bounded = self.discrete or bool(np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all())
        if not bounded:
            raise UserError(f"agent={config.name} needs actions with finite bounds; this env's are {action_space}")
        self.obs_dim = flat_dim(observation_space.shape)
        self.act_dim = int(action_space.n) if self.discrete else flat_dim(action_space.shape)
        """the action's size (discrete: the number of actions, one logit each)"""
        spaces = scripted_expert(config.demo_env, config.demo_env_kwargs)
        self.scripted = spaces is not None
        """whether the demonstrations come from the env's scripted expert (else from a run: start_from)"""
        if spaces is not None:
            demo_obs, demo_actions = spaces
            if (flat_dim(demo_obs.shape), flat_dim(demo_actions.shape)) != (self.obs_dim, self.act_dim):
                raise UserError(f"the demonstrations of {config.demo_env} have observations of size "
                                f"{flat_dim(demo_obs.shape)} and actions of size {flat_dim(demo_actions.shape)}; "
                                f"this env's are {self.obs_dim} and {self.act_dim}")
        if not self.discrete:
            self.low = action_space.low.astype(np.float32).reshape(-1)
            self.high = action_space.high.astype(np.float32).reshape(-1)
        self.obs_mean = torch.zeros(self.obs_dim)
        self.obs_std = torch.ones(self.obs_dim)
        self.generator = torch.Generator().manual_seed(seed + SAMPLING_SEED_OFFSET)
        """acting's random stream (candidates, noise), saved in checkpoints: evaluations are reproducible
        and leave training's streams alone"""
        self.demos: Demonstrations | None = None
        self.given: Demonstrations | None = None
        """demonstrations handed over by start_from (a run's policy, or a file), kept in checkpoints"""
        self.data: tuple[torch.Tensor, torch.Tensor] = (torch.zeros(0, self.obs_dim), torch.zeros(0, self.act_dim))
        """the demonstrations as the networks see them: normalised observations, scaled actions"""

    def needs_foundation(self) -> bool:
        return not self.scripted

    def start_from(self, source: Agent | Demonstrations) -> None:
        """Learn from `source`'s demonstrations: a file's, or n_trajectories episodes of a trained run's
        policy (deterministic, from demo_seed) on this env."""
        self.given = demonstrations_of(source, self.config, self.one_hot)

    # -- data ---------------------------------------------------------------------------------------

    def load_demos(self) -> Demonstrations:
        """Generate the demonstrations (the same ones on every call) and the normalisation they define."""
        c = self.config
        if self.given is not None:
            demos = self.given
        elif self.scripted:
            demos = expert_demonstrations(c.demo_env, c.n_trajectories, c.demo_seed, **c.demo_env_kwargs)
        else:
            raise UserError(f"{c.demo_env} has no scripted expert: give agent={c.name} one with expert=<run dir>")
        self.obs_mean, self.obs_std = map(torch.as_tensor, demos.obs_normalisation())
        self.data = (self.normalize(demos.obs), torch.as_tensor(self.scale(demos.actions)))
        self.demos = demos
        return demos

    def normalize(self, obs: np.ndarray) -> torch.Tensor:
        return (torch.as_tensor(flat(obs)) - self.obs_mean) / self.obs_std

    def scale(self, actions: np.ndarray) -> np.ndarray:
        """Env actions -> [-1, 1] per dimension (discrete: the action's index)."""
        if self.discrete:
            return actions.reshape(-1).astype(np.int64)
        return (2.0 * (actions - self.low) / (self.high - self.low) - 1.0).astype(np.float32)

    def unscale(self, actions: np.ndarray) -> np.ndarray:
        """(B, act_dim) in [-1, 1] -> a batch of env actions (float32, the action space's shape), clipped
        into the bounds (discrete: the indices as they are)."""
        if self.discrete:
            return actions.astype(np.int64)
        actions = np.clip(self.low + (actions + 1.0) * 0.5 * (self.high - self.low), self.low, self.high)
        return actions.astype(np.float32).reshape(len(actions), *self.action_space.shape)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A minibatch of (observation, action) pairs drawn uniformly, with replacement."""
        idx = torch.as_tensor(self.rng.integers(0, len(self.data[0]), size=self.config.batch_size))
        return self.data[0][idx], self.data[1][idx]

    # -- the contract ---------------------------------------------------------------------------------

    def learn(self, total_steps: int, run: Run) -> None:
        self.load_demos()
        offline(self, run, total_steps)

    def fit_step(self) -> dict[str, float]:
        raise NotImplementedError

    def policy(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        """(B, act_dim) actions in [-1, 1] for a batch of normalised observations."""
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        with self.acting_weights():
            return self.unscale(self.policy(self.normalize(obs), deterministic))

    def acting_weights(self) -> AbstractContextManager:
        """The weights acting uses, in place while the context lasts (the trained ones here)."""
        return nullcontext()

    def summary_fields(self) -> dict[str, Any]:
        if self.demos is None:
            return {}
        return demos_summary(self.demos)

    def state_dict(self) -> dict[str, Any]:
        given = {} if self.given is None else {"demonstrations": self.given.arrays()}
        return {**super().state_dict(), "obs_mean": self.obs_mean.clone(), "obs_std": self.obs_std.clone(),
                "sampling_rng": self.generator.get_state(), **given}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.obs_mean = state["obs_mean"].clone()
        self.obs_std = state["obs_std"].clone()
        self.generator.set_state(state["sampling_rng"].clone())
        if "demonstrations" in state:
            self.given = Demonstrations.copy_of(state["demonstrations"])

    def write_artifacts(self, run: Run) -> None:
        if self.given is not None:
            self.given.save(run.dir / DEMONSTRATIONS_FILE)


class OneNetwork(ImitationAgent):
    """An imitation agent with one MLP from `in_dim` to `out_dim` numbers, trained with Adam."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: ImitationConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        self.net = mlp(self.in_dim, config.net_arch, self.out_dim, config.activation)
        self.optimizer = FlatAdam(self.net.parameters(), lr=config.learning_rate)
        self.ema = self.optimizer.data.clone() if config.ema_power > 0 else None
        """the moving average of the weights (flat, as the optimiser holds them), or None"""

    @property
    def in_dim(self) -> int:
        """the observation's size; more where the network also reads an action"""
        return self.obs_dim

    @property
    def out_dim(self) -> int:
        raise NotImplementedError

    def gradient_step(self, loss: torch.Tensor) -> dict[str, float]:
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.ema is not None:
            c = self.config
            self.ema.lerp_(self.optimizer.data, 1.0 - ema_decay(self.num_steps, c.ema_power, c.ema_max_decay))
        return {"train/loss": float(loss.detach())}

    @contextmanager
    def acting_weights(self) -> Iterator[None]:
        """The moving average in place of the trained weights while acting, when there is one."""
        if self.ema is None:
            yield
            return
        trained = self.optimizer.data.clone()
        self.optimizer.data.copy_(self.ema)
        try:
            yield
        finally:
            self.optimizer.data.copy_(trained)

    def state_dict(self) -> dict[str, Any]:
        ema = {} if self.ema is None else {"ema": self.ema.clone()}
        return {**super().state_dict(), "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), **ema}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema = state["ema"].clone()


# -- behavioural cloning ------------------------------------------------------------------------------


@dataclass
class BCConfig(ImitationConfig):
    name: str = "bc"


class BC(OneNetwork):
    """Behavioural cloning: regress the expert's action on the observation with mean squared error,
    act by the regression (the explicit policy of Florence et al. 2021, sec. 3). Where the expert's
    action jumps or has several values, the regression interpolates or averages: that is its failure.
    Discrete actions: a classifier of the expert's action (cross-entropy), acting by its most probable
    action (sampling it when not deterministic), the BC baseline of Ho & Ermon 2016 (sec. 6)."""

    Config = BCConfig
    action_spaces = (gym.spaces.Discrete, gym.spaces.Box)

    @property
    def out_dim(self) -> int:
        return self.act_dim

    def fit_step(self) -> dict[str, float]:
        obs, actions = self.batch()
        loss = F.cross_entropy if self.discrete else F.mse_loss
        return self.gradient_step(loss(self.net(obs), actions))

    def policy(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        out = self.net(obs).numpy()
        if not self.discrete:
            return out
        return out.argmax(axis=1) if deterministic else categorical_sample(np_softmax(out), self.rng)


# -- mixture density network --------------------------------------------------------------------------


@dataclass
class MDNConfig(ImitationConfig):
    name: str = "mdn"
    n_components: int = 5
    """K Gaussians in the mixture"""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(**{"agent.n_components": self.n_components})


class MDN(OneNetwork):
    """A mixture density network (Bishop 1994): the MLP outputs a mixture of K diagonal Gaussians over
    the (scaled) action and is trained by its negative log-likelihood. Deterministic acting takes the
    mean of the most probable component; stochastic acting samples the mixture."""

    Config = MDNConfig
    MIN_STD = 1e-3
    """floor of a component's standard deviation (actions are scaled to [-1, 1]): a component
    collapsing onto a single demonstration would send the likelihood to infinity"""

    @property
    def out_dim(self) -> int:
        return self.config.n_components * (1 + 2 * self.act_dim)

    def heads(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """logits (B, K), means (B, K, D), log_std (B, K, D)."""
        K, D = self.config.n_components, self.act_dim
        out = self.net(obs)
        logits, means, raw = out[:, :K], out[:, K : K + K * D], out[:, K + K * D :]
        # softplus: every component starts broad (std ~ 0.7 at raw = 0) and so receives gradient from
        # every demonstration; components that start narrow die out and the mixture collapses to one
        log_std = torch.log(F.softplus(raw) + self.MIN_STD)
        return logits, means.reshape(-1, K, D), log_std.reshape(-1, K, D)

    def fit_step(self) -> dict[str, float]:
        obs, actions = self.batch()
        return self.gradient_step(mixture_density_nll(*self.heads(obs), actions))

    def policy(self, obs: torch.Tensor, deterministic: bool) -> np.ndarray:
        logits, means, log_std = (t.numpy() for t in self.heads(obs))
        rows = np.arange(len(logits))
        if deterministic:
            return means[rows, logits.argmax(axis=1)]
        k = categorical_sample(np_softmax(logits), self.rng)
        return means[rows, k] + np.exp(log_std[rows, k]) * self.rng.standard_normal(means[rows, k].shape)
