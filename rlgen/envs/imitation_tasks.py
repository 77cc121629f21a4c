"""Imitation tasks with scripted experts: Particle, Avoid and Step.

Each env offers `expert_action(obs)`, the action its scripted expert takes in the env's current
state, so that demonstrations are generated locally from a seed (rlgen/demos.py). Each reports
`info["success"]` on every step (and `info["mode"]` where an episode can succeed in more than one
way), so the value at an episode's end, whether the env or the time limit ended it, is the outcome.

The tasks are built so that the expert's action is a discontinuous (Particle, Step) or a
multi-valued (Avoid, Step with two_valued=True) function of the observation: the cases in which a
regression on demonstrations interpolates where it should jump, or averages where it should choose
(Florence et al. 2021, "Implicit Behavioral Cloning", sec. 3 and 6).
`policy_picture(act, seed)` draws what a policy does on the task (rlgen/envs/imitation_plot.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.envs import imitation_plot
from rlgen.errors import UserError

EXPERT_TASKS = ("Particle", "Avoid", "Step")
"""short names of the envs with a scripted expert"""


class PointTask(gym.Env):
    """A point in the unit square: rendering, action checks and rollouts for pictures."""

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 20}
    PICTURE_EPISODES = 8

    def __init__(self, render_mode: str | None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UserError(f"render_mode must be one of {self.metadata['render_modes']}, got '{render_mode}'")
        self.render_mode = render_mode
        self.pos = np.full(2, 0.5)

    def checked(self, action: Any) -> np.ndarray:
        a = np.asarray(action, dtype=np.float32)
        if a.shape != self.action_space.shape or not np.all(np.isfinite(a)) or not self.action_space.contains(a):
            space = self.action_space
            raise gym.error.InvalidAction(f"invalid action {action!r}: {type(self).__name__.removesuffix('Env')} takes "
                                          f"{space.shape[0]} numbers in [{space.low[0]:g}, {space.high[0]:g}]")
        return a.astype(np.float64)

    def discs(self) -> list[tuple[np.ndarray, float, str]]:
        """What is drawn besides the point: (centre, radius, name) of goals and obstacles."""
        raise NotImplementedError

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return imitation_plot.ascii_square(self.pos, self.discs())
        if self.render_mode == "rgb_array":
            return imitation_plot.raster_square(self.pos, self.discs())
        return None

    def rollout(self, act: Callable[[np.ndarray], np.ndarray], seed: int) -> dict[str, Any]:
        """One episode of `act` (a batch-of-one policy; one with a `reset()`, which remembers earlier
        steps, is reset first) on this env, seeded: positions and outcome."""
        obs, info = self.reset(seed=seed)
        if hasattr(act, "reset"):
            act.reset()
        positions, discs = [self.pos.copy()], self.discs()
        limit = self.spec.max_episode_steps if self.spec and self.spec.max_episode_steps else 200
        for _ in range(limit):
            action = np.asarray(act(obs[None]), dtype=np.float32).reshape(self.action_space.shape)
            obs, _, terminated, _, info = self.step(np.clip(action, self.action_space.low, self.action_space.high))
            positions.append(self.pos.copy())
            if terminated:
                break
        return {"positions": np.array(positions), "discs": discs, "success": bool(info["success"])}

    def episodes(self, act: Callable[[np.ndarray], np.ndarray], seed: int) -> tuple[list[dict], list[dict]]:
        """PICTURE_EPISODES episodes of the policy and of the expert from the same seeds."""
        expert = lambda obs: self.expert_action(obs[0])[None]  # noqa: E731
        seeds = range(seed, seed + self.PICTURE_EPISODES)
        return [self.rollout(act, s) for s in seeds], [self.rollout(expert, s) for s in seeds]

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ParticleEnv(PointTask):
    """Visit goal 1, then goal 2: the particle task of Florence et al. 2021 ("Implicit Behavioral
    Cloning", sec. 6 and appendix), in `dim` dimensions (the paper's N-D particle; 2 by default).

    ## Description
    A point mass in the unit (hyper)cube is driven by a PD controller towards a set-point, the
    action. The expert's set-point is goal 1 until the particle has come within `expert_radius` of
    it, then goal 2: the action jumps there, and the observation does not say that goal 1 was
    visited (the velocity, pointing away from it, is the only hint), as in the paper's env and oracle.
    ## Action Space
    `Box(0, 1, (dim,))`: the position set-point (the paper's choice, rather than a velocity).
    ## Observation Space
    `Box((4 * dim,))`: position, velocity, goal 1, goal 2; positions in [0, 1].
    ## Rewards
    1 on every step at which the particle is within `goal_radius` of goal 2, goal 1 having been
    visited before; else 0.
    ## Episode End
    No termination: the time limit (50 steps of 0.05 s, as in the paper) is set at registration.
    `info["success"]` (goal 1 visited, then within `goal_radius` of goal 2) at the last step is the
    outcome, as in the paper's evaluation.
    ## Arguments
    `dim`, `goal_radius`, `expert_radius`, `k_p`, `k_v` (PD gains), `dt` (simulation step),
    `substeps` (per action), `render_mode`. Pictures and frames show the first two dimensions.
    """

    MAX_SPEED = 4.0
    """velocities are clipped here (the PD controller stays below k_p / k_v * sqrt(dim))"""

    def __init__(self, dim: int = 2, goal_radius: float = 0.05, expert_radius: float = 0.01, k_p: float = 10.0,
                 k_v: float = 5.0, dt: float = 0.005, substeps: int = 10, render_mode: str | None = None):
        super().__init__(render_mode)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer, float)) or int(dim) != dim or dim < 2:
            raise UserError(f"Particle's dim must be an integer >= 2, got {dim!r}")
        self.dim = int(dim)
        self.goal_radius, self.expert_radius = goal_radius, expert_radius
        self.k_p, self.k_v, self.dt, self.substeps = k_p, k_v, dt, int(substeps)
        ones, v = np.ones(self.dim, dtype=np.float32), self.MAX_SPEED
        self.observation_space = gym.spaces.Box(np.concatenate([0 * ones, -v * ones, 0 * ones, 0 * ones]),
                                                np.concatenate([ones, v * ones, ones, ones]))
        self.action_space = gym.spaces.Box(0.0, 1.0, (self.dim,), np.float32)
        self.pos = np.full(self.dim, 0.5)
        self.vel = np.zeros(self.dim)
        self.goals = np.full((2, self.dim), 0.5)
        self.visited = [False, False]
        """goal 1 visited; goal 2 visited after goal 1"""
        self.expert_turned = False
        """the expert has come within expert_radius of goal 1 and now heads for goal 2"""

    def obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel, self.goals.ravel()]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos = self.np_random.random(self.dim)
        self.goals = self.np_random.random((2, self.dim))
        self.vel = np.zeros(self.dim)
        self.visited = [False, False]
        self.expert_turned = False
        return self.obs(), self.info()

    def info(self) -> dict[str, Any]:
        at_second = bool(np.linalg.norm(self.goals[1] - self.pos) < self.goal_radius)
        return {"success": self.visited[1] and at_second, "visited_first": self.visited[0]}

    def step(self, action: Any):
        target = self.checked(action)
        pos, vel, dt, r = self.pos.copy(), self.vel.copy(), self.dt, self.goal_radius
        for _ in range(self.substeps):
            # u = k_p (x* - x) - k_v v, explicit Euler: the paper code's particle dynamics
            u = self.k_p * (target - pos) - self.k_v * vel
            pos, vel = pos + vel * dt, vel + u * dt
            walled = (pos < 0.0) | (pos > 1.0)  # the walls stop the particle
            pos, vel = np.clip(pos, 0.0, 1.0), np.where(walled, 0.0, np.clip(vel, -self.MAX_SPEED, self.MAX_SPEED))
            first = float(np.linalg.norm(self.goals[0] - pos))
            self.visited[0] |= first < r
            self.visited[1] |= self.visited[0] and float(np.linalg.norm(self.goals[1] - pos)) < r
            self.expert_turned |= first < self.expert_radius
        self.pos, self.vel = pos, vel
        info = self.info()
        return self.obs(), float(info["success"]), False, False, info

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        """Goal 1's position until within expert_radius of it, then goal 2's (the paper's ParticleOracle)."""
        d = self.dim
        return np.asarray(obs[3 * d : 4 * d] if self.expert_turned else obs[2 * d : 3 * d], dtype=np.float32)

    def discs(self) -> list[tuple[np.ndarray, float, str]]:
        return [(self.goals[0], self.goal_radius, "goal 1"), (self.goals[1], self.goal_radius, "goal 2")]

    def policy_picture(self, act: Callable[[np.ndarray], np.ndarray], seed: int) -> np.ndarray:
        """Episodes of the policy (each with its own goals) beside the expert's, one panel each."""
        return imitation_plot.paths_picture(*self.episodes(act, seed), panels=True)


class AvoidEnv(PointTask):
    """Reach the goal past an obstacle: the expert goes round it on the left or on the right.

    ## Description
    The point starts on the vertical axis through the obstacle, near the bottom of the unit square
    (at one point, or at a random height with `start_spread` > 0); the goal is at the top middle
    and a disc-shaped obstacle sits between them.
    At each reset the expert picks a side with probability 1/2 (from the env's np_random), heads for
    a waypoint beside the obstacle on that side, then for the goal. Its demonstrations have two modes
    whose mean, from the start, runs straight into the obstacle. One start point makes the side a
    choice, which a regression averages: with the start spread (0.01 to either side, or 0.05 in
    height) the demonstrations cover the states beside the axis with one side more than the other,
    and an MSE regression on them is drawn to a side and reached the goal in 90-96% of episodes (an
    obstacle of radius 0.15); from one start point, in none, at radius 0.25 (seeds 0-5; at radius
    0.15 one seed of four drifted to a side before reaching it). Evaluation episodes then differ
    only by the policy's own randomness, which is what shows whether it takes both sides.
    ## Action Space
    `Box(-1, 1, (2,))`: the velocity, as a fraction of `speed` per step on each axis.
    ## Observation Space
    `Box(0, 1, (2,))`: the position.
    ## Rewards
    1 on reaching the goal, -1 on hitting the obstacle, else 0.
    ## Episode End
    Termination at the goal (`info["success"]`) or on a collision (`info["collision"]`); the
    time limit is set at registration. `info["mode"]` is the side the point passed the obstacle
    on (0 left, 1 right; before it has passed, the side it is on).
    ## Arguments
    `obstacle_radius`, `goal_radius`, `speed`, `start_spread` (half-range of the start's height),
    `render_mode`.
    """

    GOAL = np.array([0.5, 0.9])
    OBSTACLE = np.array([0.5, 0.5])
    START = np.array([0.5, 0.1])
    WAYPOINT_MARGIN = 0.15
    """the expert's waypoint is this far beside the obstacle's edge"""

    def __init__(self, obstacle_radius: float = 0.25, goal_radius: float = 0.05, speed: float = 0.03,
                 start_spread: float = 0.0, render_mode: str | None = None):
        super().__init__(render_mode)
        self.obstacle_radius, self.goal_radius, self.speed = obstacle_radius, goal_radius, speed
        self.start_spread = start_spread
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.expert_side = 0
        self.side = -1
        """the side the obstacle was passed on, -1 until then"""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos = self.START + np.array([0.0, self.np_random.uniform(-self.start_spread, self.start_spread)])
        self.expert_side = int(self.np_random.integers(2))
        self.side = -1
        return self.pos.astype(np.float32), {"success": False, "mode": self.mode, "collision": False}

    @property
    def mode(self) -> int:
        return self.side if self.side >= 0 else int(self.pos[0] >= self.OBSTACLE[0])

    def step(self, action: Any):
        self.pos = np.clip(self.pos + self.speed * self.checked(action), 0.0, 1.0)
        if self.side < 0 and self.pos[1] >= self.OBSTACLE[1]:
            self.side = int(self.pos[0] >= self.OBSTACLE[0])
        collision = bool(np.linalg.norm(self.pos - self.OBSTACLE) < self.obstacle_radius)
        success = not collision and bool(np.linalg.norm(self.pos - self.GOAL) < self.goal_radius)
        reward = 1.0 if success else -1.0 if collision else 0.0
        info = {"success": success, "mode": self.mode, "collision": collision}
        return self.pos.astype(np.float32), reward, success or collision, False, info

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        """Towards the waypoint beside the obstacle on the expert's side until level with the
        obstacle's centre, then towards the goal; full speed, and exactly onto a target within reach."""
        pos = np.asarray(obs, dtype=np.float64)
        offset = self.obstacle_radius + self.WAYPOINT_MARGIN
        waypoint = self.OBSTACLE + np.array([offset if self.expert_side else -offset, 0.0])
        target = waypoint if pos[1] < waypoint[1] - 1e-4 else self.GOAL  # float32 observations land near it
        delta = target - pos
        return (delta / max(float(np.linalg.norm(delta)), self.speed)).astype(np.float32)

    def discs(self) -> list[tuple[np.ndarray, float, str]]:
        return [(self.OBSTACLE, self.obstacle_radius, "obstacle"), (self.GOAL, self.goal_radius, "goal")]

    def policy_picture(self, act: Callable[[np.ndarray], np.ndarray], seed: int) -> np.ndarray:
        """Episodes of the policy over the expert's, on one panel (the obstacle and goal are fixed)."""
        return imitation_plot.paths_picture(*self.episodes(act, seed), panels=False)


def step_target(s: np.ndarray) -> np.ndarray:
    """Step's correct action: s / 2 - 1/2 below 0, s / 2 + 1/2 from 0 on (a jump of 1 at s = 0)."""
    s = np.asarray(s, dtype=np.float64)
    return 0.5 * s + np.where(s >= 0.0, 0.5, -0.5)


class StepEnv(gym.Env):
    """One decision whose correct action jumps: a contextual task for the discontinuity.

    ## Description
    The observation s is drawn uniformly from [-1, 1]; the correct action is s/2 - 1/2 for s < 0
    and s/2 + 1/2 for s >= 0, so it jumps by 1 at s = 0. With `two_valued=True` its negative is
    correct too (the correct set is {+-(1/2 + |s|/2)}): the expert takes either with probability
    1/2 per episode, from the env's np_random.
    ## Action Space
    `Box(-1, 1, (1,))`.
    ## Observation Space
    `Box(-1, 1, (1,))`: s.
    ## Rewards
    Minus the distance of the action to the nearest correct action.
    ## Episode End
    After the one step. `info["success"]`: the distance is at most `tolerance`; with two_valued,
    `info["mode"]` is the correct action it was nearest to (0: the one above, 1: its negative).
    ## Arguments
    `two_valued`, `tolerance`, `render_mode`.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, two_valued: bool = False, tolerance: float = 0.05, render_mode: str | None = None):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UserError(f"render_mode must be one of {self.metadata['render_modes']}, got '{render_mode}'")
        self.two_valued, self.tolerance, self.render_mode = bool(two_valued), tolerance, render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.s = np.zeros(1, dtype=np.float32)
        self.expert_branch = 0
        self.last_action: np.ndarray | None = None

    def correct_actions(self, s: np.ndarray) -> np.ndarray:
        """(N, K) correct actions for N observations (K = 2 when two-valued)."""
        target = step_target(np.asarray(s).reshape(-1))
        return np.stack([target, -target], axis=1) if self.two_valued else target[:, None]

    def errors(self, s: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance of each action to the nearest correct action, and which one that is."""
        gaps = np.abs(self.correct_actions(s) - np.asarray(actions, dtype=np.float64).reshape(-1, 1))
        return gaps.min(axis=1), gaps.argmin(axis=1)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.s = self.np_random.uniform(-1.0, 1.0, 1).astype(np.float32)
        self.expert_branch = int(self.np_random.integers(2)) if self.two_valued else 0
        self.last_action = None
        return self.s.copy(), {"success": False}

    def step(self, action: Any):
        a = np.asarray(action, dtype=np.float32)
        if a.shape != (1,) or not np.all(np.isfinite(a)) or not self.action_space.contains(a):
            raise gym.error.InvalidAction(f"invalid action {action!r}: Step takes 1 number in [-1, 1]")
        self.last_action = a
        error, nearest = self.errors(self.s, a)
        info: dict[str, Any] = {"success": bool(error[0] <= self.tolerance)}
        if self.two_valued:
            info["mode"] = int(nearest[0])
        return self.s.copy(), -float(error[0]), True, False, info

    def expert_action(self, obs: np.ndarray) -> np.ndarray:
        return self.correct_actions(obs)[0, self.expert_branch : self.expert_branch + 1].astype(np.float32)

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            correct = ", ".join(f"{c:+.3f}" for c in self.correct_actions(self.s)[0])
            taken = "-" if self.last_action is None else f"{self.last_action[0]:+.3f}"
            return f"s={self.s[0]:+.3f} action={taken} correct={correct}\n"
        if self.render_mode == "rgb_array":
            return imitation_plot.raster_step(self.s[0], self.correct_actions, self.last_action)
        return None

    def policy_picture(self, act: Callable[[np.ndarray], np.ndarray], seed: int) -> np.ndarray:
        """The policy's action against the observation on a grid of s, over the correct actions."""
        s = np.linspace(-1.0, 1.0, 401, dtype=np.float32)[:, None]
        actions = np.asarray(act(s), dtype=np.float64).reshape(len(s), -1)[:, 0]
        return imitation_plot.step_picture(s[:, 0], actions, self.correct_actions(s))

    NEAR_JUMP = 0.05
    """|s| below this is "near the jump" for policy_metrics"""

    def policy_metrics(self, act: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        """The policy's mean distance to the nearest correct action for |s| < NEAR_JUMP and elsewhere, on
        policy_picture's grid of 401 points over [-1, 1] (0.005 apart: 19 of them near the jump): where
        a regression interpolates across the jump, and where it should be as good as any policy."""
        s = np.linspace(-1.0, 1.0, 401, dtype=np.float32)[:, None]
        error, _ = self.errors(s, np.asarray(act(s), dtype=np.float64).reshape(len(s), -1)[:, 0])
        near = np.abs(s[:, 0]) < self.NEAR_JUMP
        return {"error_near_jump": float(error[near].mean()), "error_elsewhere": float(error[~near].mean())}
