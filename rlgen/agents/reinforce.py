"""REINFORCE (`reinforce`; Williams 1992, "Simple statistical gradient-following algorithms for
connectionist reinforcement learning"), with a learned state-value baseline (Sutton & Barto 2018,
sec. 13.4, "REINFORCE with Baseline").

The policy-gradient theorem's Monte Carlo estimate: every step of a finished episode is weighted by
its return G_t = sum_k gamma^k r_{t+k+1} to the end of the episode, minus a baseline b(s_t), and

    loss = -mean_t((G_t - b(s_t)) log pi(a_t | s_t)) + vf_coef * mean_t((G_t - V(s_t))^2)
           + ent_coef * (-mean_t(H[pi(. | s_t)]))

averaged over the steps learned from, one Adam step per rollout. With `baseline` b = V, a value network
fitted to the returns by the MSE term (the baseline is held fixed in the policy term: it changes the
variance of the estimate, not its mean); without it b = 0 and there is no value network. With
normalize_advantage (the default) the weights G_t - b(s_t) are standardised over the update's steps.

Returns are never bootstrapped: a time-limit truncation ends the return as a termination does, as in
the episodic setting of Williams and of Sutton & Barto's algorithm (the return is of the episode that was
played). The steps come from the on-policy loop's rollouts (rlgen/loops.py: on_policy); an episode still
running when a rollout ends is kept, per env, and learned from in the update of the rollout where it
ends, so every return is a whole episode's (an update in which no episode ended changes nothing). Such an
episode's first steps were sampled by the policy before the last update(s), so the estimate is slightly
off-policy: the price of whole-episode returns from fixed-length rollouts of a vector of envs (longer
rollouts make it rarer).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlgen.agents.policy_gradient import PolicyGradient, PolicyGradientConfig, schedule
from rlgen.errors import UserError
from rlgen.loops import Rollout
from rlgen.losses import normalize_advantages, value_loss
from rlgen.nets.mlp import flat_dim
from rlgen.returns import discounted_returns


@dataclass
class REINFORCEConfig(PolicyGradientConfig):
    name: str = "reinforce"
    n_steps: int = 128
    """steps per environment per rollout; the episodes that end in a rollout are learned from"""
    learning_rate: float = 1e-3
    gae_lambda: float = 1.0
    """REINFORCE's returns are whole episodes' (lambda = 1, no bootstrapping): it takes no other value"""
    normalize_advantage: bool = True
    """standardise the weights G_t - b(s_t) of each update (mean 0, standard deviation 1), a common variance
    reduction; on because Acrobot needs it (its tuned config, 3 seeds, 500k steps: final evaluations -87,
    -81, -83 with it, -500, -499, -500 without), and CartPole learns as well with it"""
    baseline: bool = True
    """subtract a learned state value V(s_t), fitted to the returns, from each return (Sutton & Barto 2018,
    sec. 13.4); false: no baseline and no value network"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gae_lambda != 1:
            raise UserError(f"agent.gae_lambda={self.gae_lambda}: REINFORCE learns from whole episodes' returns "
                            "(lambda = 1); use agent=a2c or agent=ppo for GAE(lambda), or leave it at 1")


@dataclass
class Steps:
    """The steps of one env's episodes, in order: the observations (as the networks read them), the
    actions and the rewards (as the agent learns from them), and which steps end an episode."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    done: np.ndarray

    def __len__(self) -> int:
        return len(self.rewards)

    def __getitem__(self, rows: Any) -> Steps:
        return Steps(self.obs[rows], self.actions[rows], self.rewards[rows], self.done[rows])

    @staticmethod
    def concat(parts: list[Steps]) -> Steps:
        return Steps(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("obs", "actions", "rewards", "done")))


def whole_episodes(steps: Steps, gamma: float) -> tuple[Steps, np.ndarray, Steps]:
    """(the steps of the episodes that end within `steps`, their returns G_t, the steps after the last end)."""
    ends = np.flatnonzero(steps.done) + 1
    cut = int(ends[-1]) if len(ends) else 0
    starts = np.concatenate([[0], ends])[:-1].astype(int)
    returns = [discounted_returns(steps.rewards[s:e], gamma) for s, e in zip(starts, ends, strict=True)]
    return steps[:cut], np.concatenate([np.zeros(0), *returns]).astype(np.float32), steps[cut:]


class REINFORCE(PolicyGradient):
    Config = REINFORCEConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: REINFORCEConfig, seed: int):
        super().__init__(observation_space, action_space, config, seed)
        obs_dim = flat_dim(observation_space.shape)
        act_shape = () if self.discrete else (flat_dim(action_space.shape),)
        empty = Steps(np.zeros((0, obs_dim), np.float32), np.zeros((0, *act_shape), np.float32),
                      np.zeros(0, np.float32), np.zeros(0, bool))
        self.unfinished = [empty] * self.n_envs
        """each env's episode in progress: its steps so far, learned from once it ends"""

    def learns_values(self) -> bool:
        return self.config.baseline

    def update(self, rollout: Rollout, progress_remaining: float) -> dict[str, float]:
        """Learn from the episodes that ended in this rollout (with their steps from earlier rollouts)."""
        batch = self.episodes_batch(rollout)
        if batch is None:
            return {}
        c = self.config
        return self.train(batch, schedule(c.lr_schedule, c.learning_rate, progress_remaining))

    def episodes_batch(self, rollout: Rollout) -> dict[str, np.ndarray] | None:
        """The steps of every episode that ended in the rollout, with their returns (None if none ended);
        each env's episode still running is kept for a later rollout."""
        parts = []
        for i in range(self.n_envs):
            valid = rollout.valid[:, i]  # a step that only reset its env is no step of an episode
            new = Steps(rollout.obs[valid, i], rollout.actions[valid, i].astype(np.float32),
                        rollout.rewards[valid, i], rollout.done[valid, i])
            ended, returns, self.unfinished[i] = whole_episodes(Steps.concat([self.unfinished[i], new]),
                                                                self.config.gamma)
            parts.append((ended, returns))
        steps = Steps.concat([p for p, _ in parts])
        if len(steps) == 0:
            return None
        return {"obs": steps.obs, "actions": steps.actions, "done": steps.done,
                "returns": np.concatenate([r for _, r in parts])}

    def loss(self, batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, dict[str, float], np.ndarray | None]:
        """REINFORCE's loss on a batch of whole episodes' steps, its statistics, and the baseline's values."""
        c = self.config
        returns = torch.as_tensor(batch["returns"])
        logp, entropy, value = self.evaluate_actions(torch.as_tensor(batch["obs"]), torch.as_tensor(batch["actions"]))
        weights = returns if self.critic is None else returns - value.detach()
        if c.normalize_advantage and len(weights) > 1:
            weights = normalize_advantages(weights)
        pg_loss = -(weights * logp).mean()
        ent_loss = -entropy.mean()
        loss = pg_loss + c.ent_coef * ent_loss
        stats = {"train/policy_loss": pg_loss.item(), "train/entropy_loss": ent_loss.item()}
        if self.critic is not None:
            vf_loss = value_loss(value, returns)
            loss = loss + c.vf_coef * vf_loss
            stats["train/value_loss"] = vf_loss.item()
        return loss, stats, None if self.critic is None else value.detach().numpy()

    def train(self, batch: dict[str, np.ndarray], lr: float) -> dict[str, float]:
        """One gradient step on a batch of whole episodes (episodes_batch) at learning rate `lr`."""
        loss, stats, values = self.loss(batch)
        self.optimizer.lr = lr
        self.gradient_step(loss)
        return {**stats, "train/learning_rate": lr, "train/n_updates": float(self.n_updates),
                "reinforce/episodes": float(batch["done"].sum()), **self.fit_report(values, batch["returns"])}

    # -- checkpoints: the episodes in progress too --------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(),
                "unfinished": [{k: getattr(s, k).copy() for k in ("obs", "actions", "rewards", "done")}
                               for s in self.unfinished]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if len(state["unfinished"]) != self.n_envs:
            raise ValueError(f"episodes in progress of {len(state['unfinished'])} envs, this agent has {self.n_envs}")
        self.unfinished = [Steps(*(np.array(s[k]) for k in ("obs", "actions", "rewards", "done")))
                           for s in state["unfinished"]]
