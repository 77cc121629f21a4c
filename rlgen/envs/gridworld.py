"""GridWorld MDPs defined by a text layout; the transition model is built once and `step()` samples it.

Layout characters: `.` empty, `S` start (several `S` = uniform start distribution), `G` goal
(terminal), `T` trap (terminal), `C` cliff (entering it costs its reward and sends the agent back to
a start, as in Sutton & Barto Example 6.6), `#` wall (moves into it, or off the grid, stay put).

Every cell is a state (index `row * width + col`), walls included: a wall is an unreachable absorbing
state with value 0. Keeping the index equal to the cell makes pictures a reshape, and a 1000 x 1000
maze exactly 10^6 states.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

from rlgen.errors import UserError
from rlgen.mdp import TabularModel, reachable

CELLS = ".SGTC#"
MOVES: dict[int, list[tuple[int, int]]] = {
    2: [(0, -1), (0, 1)],  # left, right (random walks)
    4: [(-1, 0), (0, 1), (1, 0), (0, -1)],  # up, right, down, left (Gymnasium CliffWalking's order)
    8: [(-1, 0), (0, 1), (1, 0), (0, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)],  # king's moves, S&B Ex. 6.9
}
COLOURS = {".": (235, 235, 235), "S": (120, 170, 250), "G": (90, 200, 110), "T": (200, 90, 90),
           "C": (60, 60, 60), "#": (25, 25, 40)}


class LayoutError(UserError, ValueError):
    """An invalid gridworld layout (one line saying what is wrong)."""


def parse_layout(layout: str | Sequence[str] | np.ndarray) -> np.ndarray:
    """A text map (rows separated by newlines or given as a list) -> (H, W) array of cell characters."""
    if isinstance(layout, np.ndarray):
        grid = layout
    else:
        if not isinstance(layout, str) and not all(isinstance(r, str) for r in layout):
            raise LayoutError(f"a gridworld layout is text: rows of cell characters, got {list(layout)}")
        rows = layout.strip().splitlines() if isinstance(layout, str) else list(layout)
        rows = [r.strip() for r in rows if r.strip()]
        if not rows:
            raise LayoutError("empty gridworld layout")
        widths = {len(r) for r in rows}
        if len(widths) > 1:
            raise LayoutError(f"ragged gridworld layout: rows have lengths {sorted(widths)}; all rows must be equal")
        grid = np.array([list(r) for r in rows])
    bad = sorted(set(np.unique(grid)) - set(CELLS))
    if bad:
        raise LayoutError(f"unknown character(s) {bad} in gridworld layout; use one of {list(CELLS)}")
    if not (grid == "S").any():
        raise LayoutError("gridworld layout has no start cell 'S'")
    if not (grid == "G").any():
        raise LayoutError("gridworld layout has no goal cell 'G'")
    return grid


def _outcomes(n_moves: int, slip: float, stochastic_wind: bool) -> list[tuple[np.ndarray, int, float]]:
    """(probability of each intended action -> this effective move, move, wind offset) triples.

    Slip: with probability `slip` the move is uniformly random (it may equal the intended one).
    Stochastic wind (S&B Exercise 6.10): in windy columns the push is one more or one less than the
    mean, each a third of the time.
    """
    offsets = [(-1, 1 / 3), (0, 1 / 3), (1, 1 / 3)] if stochastic_wind else [(0, 1.0)]
    moves = range(n_moves) if slip > 0 else [None]
    out = []
    for b in moves:
        if b is None:
            p_move = np.ones(n_moves)
        else:
            p_move = np.full(n_moves, slip / n_moves)
            p_move[b] += 1.0 - slip
        for off, p_off in offsets:
            out.append((p_move * p_off, -1 if b is None else b, off))
    return out


def build_model(grid: np.ndarray, step_reward: float, rewards: dict[str, float], wind: Sequence[int] | None,
                stochastic_wind: bool, slip: float, n_moves: int) -> TabularModel:
    """All transitions at once, vectorised over cells (a 10^6-cell maze builds in about a second)."""
    H, W = grid.shape
    S, kind = H * W, grid.ravel()
    rows, cols = np.divmod(np.arange(S), W)
    wind_col = np.zeros(W, dtype=np.int64) if wind is None else np.asarray(wind, dtype=np.int64)
    if wind_col.shape != (W,):
        raise LayoutError(f"wind needs one value per column ({W}), got {len(wind_col)}")
    cell_reward = np.full(S, float(step_reward))
    for char, r in rewards.items():
        cell_reward[kind == char] = r
    starts = np.flatnonzero(kind == "S")
    has_cliff = (kind == "C").any()
    ends = (kind == "G") | (kind == "T")
    absorbing = ends | (kind == "#")
    outcomes = _outcomes(n_moves, slip, stochastic_wind)
    n_restart = len(starts) if has_cliff else 1
    K = len(outcomes) * n_restart
    next_states = np.zeros((S, n_moves, K), dtype=np.int64)
    entered = np.zeros((S, n_moves, K), dtype=np.int64)
    probs = np.zeros((S, n_moves, K))
    for a in range(n_moves):
        for j, (p_move, b, off) in enumerate(outcomes):
            dr, dc = MOVES[n_moves][a if b < 0 else b]
            push = np.where(wind_col[cols] != 0, wind_col[cols] + off, 0)  # wind of the column left (Ex. 6.5)
            r2 = np.clip(rows + dr - push, 0, H - 1)
            c2 = np.clip(cols + dc, 0, W - 1)
            target = r2 * W + c2
            target = np.where(kind[target] == "#", np.arange(S), target)
            to_start = kind[target] == "C"
            for i in range(n_restart):  # a cliff outcome splits over the starts; others use i == 0 only
                k = j * n_restart + i
                entered[:, a, k] = target
                next_states[:, a, k] = np.where(to_start, starts[i], target)
                probs[:, a, k] = np.where(to_start, p_move[a] / n_restart, p_move[a] if i == 0 else 0.0)
    rewards_ = cell_reward[entered]
    terminated = ends[entered]
    # terminal and wall cells absorb: one outcome back to themselves, reward 0, episode over
    idx = np.flatnonzero(absorbing)
    next_states[idx], probs[idx], rewards_[idx], terminated[idx] = idx[:, None, None], 0.0, 0.0, True
    probs[idx, :, 0] = 1.0
    initial = np.zeros(S)
    initial[starts] = 1.0 / len(starts)
    return TabularModel(next_states, probs, rewards_, terminated, initial)


@lru_cache(maxsize=4)
def checked_model(layout: Any, step_reward: float, rewards: tuple, wind: tuple | None, stochastic_wind: bool,
                  slip: float, moves: int) -> tuple[np.ndarray, TabularModel]:
    """Parse, build and validate once per distinct layout: the evaluation's envs and the agent's share
    one read-only model (a 10^6-state maze's arrays are about 100 MB)."""
    grid = parse_layout(np.array(layout) if layout and isinstance(layout[0], tuple) else layout)
    cells = set(np.unique(grid)) - {"#"}  # a wall is never entered
    unpaid = sorted(set(dict(rewards)) - cells)
    if unpaid:
        raise LayoutError(f"rewards names {', '.join(map(repr, unpaid))}, which no cell of this layout is "
                          f"(cells that can be entered: {', '.join(sorted(cells))}): that reward would never be paid")
    model = build_model(grid, step_reward, dict(rewards), wind, stochastic_wind, slip, moves)
    if not reachable(model, include_terminal=True)[grid.ravel() == "G"].any():
        raise LayoutError("no goal cell 'G' is reachable from the start in this gridworld layout")
    for array in (grid, model.next_states, model.probs, model.rewards, model.terminated, model.initial):
        array.setflags(write=False)
    return grid, model


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_rewards(step_reward: Any, rewards: Any) -> None:
    if not _is_number(step_reward):
        raise LayoutError(f"step_reward must be a number, got {step_reward!r}")
    if rewards is None:
        return
    if not isinstance(rewards, Mapping):
        raise LayoutError(f"rewards maps cell characters to rewards, e.g. {{G: 1, T: -1}}, got {rewards!r}")
    for cell, reward in rewards.items():
        if not isinstance(cell, str):
            raise LayoutError(f"rewards maps cell characters to rewards, e.g. {{G: 1, T: -1}}; {cell!r} is not one")
        if not _is_number(reward):
            raise LayoutError(f"rewards[{cell!r}] must be a number, got {reward!r}")


def _hashable(layout: str | Sequence[str] | np.ndarray) -> Any:
    return tuple(map(tuple, layout)) if isinstance(layout, np.ndarray) else (
        layout if isinstance(layout, str) else tuple(layout))


class GridWorldEnv(gym.Env):
    """A gridworld MDP from a text layout.

    ## Description
    The agent moves on a grid of cells (see the module docstring for the layout characters). Moves
    are blocked by walls and the grid edge; per-column wind pushes the agent up; `slip` makes a move
    random; `moves=8` gives king's moves and `moves=2` left/right only (random walks).

    ## Action Space
    `Discrete(moves)`: 0 up, 1 right, 2 down, 3 left (then the diagonals for king's moves);
    with `moves=2`, 0 left and 1 right.

    ## Observation Space
    `Discrete(H * W)`: the cell index `row * W + col`.

    ## Rewards
    Entering a cell gives `rewards[cell character]` if given, else `step_reward`.

    ## Episode End
    Termination on entering a goal `G` or trap `T`; time limits are set at registration.

    ## Arguments
    `layout`, `step_reward`, `rewards`, `wind`, `stochastic_wind`, `slip`, `moves`, `render_mode`.
    The model (`.model`, a TabularModel; `.P`, Gymnasium's toy-text view) is what `step()` samples.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(self, layout: str | Sequence[str] | np.ndarray, step_reward: float = -1.0,
                 rewards: dict[str, float] | None = None, wind: Sequence[int] | None = None,
                 stochastic_wind: bool = False, slip: float = 0.0, moves: int = 4,
                 render_mode: str | None = None):
        if moves not in MOVES:
            raise LayoutError(f"moves must be one of {sorted(MOVES)}, got {moves}")
        if not (_is_number(slip) and 0.0 <= slip <= 1.0):
            raise LayoutError(f"slip must be a probability in [0, 1], got {slip}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise UserError(f"render_mode must be one of {self.metadata['render_modes']}, got '{render_mode}'")
        _check_rewards(step_reward, rewards)
        if not isinstance(layout, str | Sequence | np.ndarray):
            raise LayoutError(f"a gridworld layout is text: rows of cell characters, got {layout!r}")
        if wind is not None and not all(_is_number(w) and float(w).is_integer() for w in wind):
            raise LayoutError(f"wind must be whole cells per column, e.g. [0, 0, 1, 2, 1, 0], got {list(wind)}")
        cell_rewards = tuple(sorted((rewards or {}).items()))
        try:
            self.grid, self.model = checked_model(_hashable(layout), step_reward, cell_rewards,
                                                  None if wind is None else tuple(wind), stochastic_wind, slip, moves)
        except MemoryError:
            raise LayoutError("this gridworld layout is too large: its model does not fit in memory") from None
        self.wind = None if wind is None else list(wind)
        self.observation_space = gym.spaces.Discrete(self.model.n_states)
        self.action_space = gym.spaces.Discrete(moves)
        self.render_mode = render_mode
        self._cum_probs = np.cumsum(self.model.probs, axis=2)
        self._P: dict | None = None
        self.s = int(np.flatnonzero(self.model.initial)[0])
        self.last_action: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.grid.shape

    @property
    def P(self) -> dict[int, dict[int, list[tuple[float, int, float, bool]]]]:
        """Gymnasium's toy-text view of `.model` (built on first use: it is a large dict)."""
        if self._P is None:
            self._P = self.model.to_P()
        return self._P

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """`options={"state": s}` starts in cell s (exploring starts, S&B Section 5.3)."""
        super().reset(seed=seed)
        if options and "state" in options:
            s = int(options["state"])
            if not 0 <= s < self.model.n_states or self.grid.ravel()[s] == "#":
                raise ValueError(f"cannot start in state {s}: not a free cell of this gridworld")
            self.s = s
        else:
            self.s = int(self.np_random.choice(self.model.n_states, p=self.model.initial))
        self.last_action = None
        return self.s, {"prob": 1.0}

    def step(self, action: Any):
        if not self.action_space.contains(action):
            raise gym.error.InvalidAction(
                f"invalid action {action!r}: this gridworld takes an integer in [0, {self.action_space.n - 1}]")
        a = int(action)
        k = int(np.searchsorted(self._cum_probs[self.s, a], self.np_random.random(), side="right"))
        k = min(k, self.model.probs.shape[2] - 1)
        s, self.s = self.s, int(self.model.next_states[self.s, a, k])
        self.last_action = a
        reward = float(self.model.rewards[s, a, k])
        return self.s, reward, bool(self.model.terminated[s, a, k]), False, {"prob": float(self.model.probs[s, a, k])}

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            cells = self.grid.copy().ravel()
            cells[self.s] = "x"
            return "\n".join("".join(row) for row in cells.reshape(self.grid.shape)) + "\n"
        if self.render_mode == "rgb_array":
            return self.picture()
        return None

    def picture(self, max_pixels: int = 512) -> np.ndarray:
        """(H*c, W*c, 3) uint8 image: cell colours, the agent in red."""
        H, W = self.grid.shape
        c = max(1, min(32, max_pixels // max(H, W)))
        codes = np.zeros(self.grid.shape, dtype=np.int64)
        for i, ch in enumerate(CELLS):
            codes[self.grid == ch] = i
        img = np.array([COLOURS[ch] for ch in CELLS], dtype=np.uint8)[codes]
        r, col = divmod(self.s, W)
        img[r, col] = (220, 40, 40)
        return np.repeat(np.repeat(img, c, axis=0), c, axis=1)


def valid_moves(grid: np.ndarray, n_moves: int) -> np.ndarray:
    """(S, n_moves) bool: which moves from each cell stay on the grid and out of walls. Terminal and
    wall cells are never acted in: every move counts as valid there."""
    H, W = grid.shape
    rows, cols = np.divmod(np.arange(H * W), W)
    valid = np.ones((H * W, n_moves), dtype=bool)
    acting = ~np.isin(grid.ravel(), ["G", "T", "#"])
    for a, (dr, dc) in enumerate(MOVES[n_moves]):
        r2, c2 = rows + dr, cols + dc
        inside = (r2 >= 0) & (r2 < H) & (c2 >= 0) & (c2 < W)
        target = np.where(inside, np.clip(r2, 0, H - 1) * W + np.clip(c2, 0, W - 1), 0)
        valid[:, a] = ~acting | (inside & (grid.ravel()[target] != "#"))
    return valid


class MaskedGridWorldEnv(GridWorldEnv):
    """A gridworld whose moves into walls or off the grid are masked instead of bumped into.

    ## Action Masks
    `info["action_mask"]` (int8, 1 = valid, as Gymnasium's Taxi) on reset and step, and the same as
    bool from `action_masks()` (sb3-contrib's MaskablePPO convention). Stepping a masked action raises
    a ValueError. Wind and slip act after the choice: a valid move may still be pushed into a wall.

    The model (`.model`, for planners) keeps a masked move as the bump it would be in GridWorldEnv
    (stay put, pay the step reward): planners see every action, and never choose a bump, which is
    worth less than the moves that make progress. Other sections: GridWorldEnv's.
    """

    rejects_masked_actions = True
    """stepping a masked action is an error, not a wasted step: only agents that honour masks can act here"""

    def __init__(self, layout: str | Sequence[str] | np.ndarray, moves: int = 4, **kwargs: Any):
        super().__init__(layout, moves=moves, **kwargs)
        self.valid = valid_moves(self.grid, moves)
        self.valid.setflags(write=False)

    def action_masks(self) -> np.ndarray:
        """(n_actions,) bool: True for each move that stays on the grid and out of walls from here."""
        return self.valid[self.s].copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = super().reset(seed=seed, options=options)
        return obs, info | {"action_mask": self.valid[obs].astype(np.int8)}

    def step(self, action: Any):
        if self.action_space.contains(action) and not self.valid[self.s, int(action)]:
            (r, c), valid = divmod(self.s, self.grid.shape[1]), np.flatnonzero(self.valid[self.s]).tolist()
            raise ValueError(f"action {int(action)} is masked in state {self.s} (row {r}, column {c}): it moves into "
                             f"a wall or off the grid; the valid actions there are {valid} (info['action_mask'], "
                             "action_masks())")
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, info | {"action_mask": self.valid[obs].astype(np.int8)}


def maze_layout(size: int, seed: int) -> np.ndarray:
    """A perfect maze on a size x size grid (binary-tree algorithm, vectorised): rooms at odd
    coordinates, each room opens north or west at random, so every room connects to the top-left.
    Start top-left, goal at the bottom-right room."""
    if size < 5:
        raise LayoutError(f"maze size must be at least 5, got {size}")
    m = (size - 1) // 2  # rooms per side
    grid = np.full((size, size), "#")
    grid[1:2 * m:2, 1:2 * m:2] = "."
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(m), np.arange(m), indexing="ij")
    north = rng.random((m, m)) < 0.5
    north = np.where(i == 0, False, np.where(j == 0, True, north))
    carve_n = north & (i > 0)
    carve_w = ~north & (j > 0)
    grid[2 * i[carve_n], 2 * j[carve_n] + 1] = "."
    grid[2 * i[carve_w] + 1, 2 * j[carve_w]] = "."
    grid[1, 1] = "S"
    grid[2 * m - 1, 2 * m - 1] = "G"
    return grid


class MazeEnv(GridWorldEnv):
    """A seeded random maze of any size (`size=1000` gives 10^6 states); -1 per step until the goal."""

    def __init__(self, size: int = 21, maze_seed: int = 0, slip: float = 0.0, render_mode: str | None = None):
        for name, value in (("size", size), ("maze_seed", maze_seed)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
                raise LayoutError(f"maze {name} must be a whole number >= 0, got {value!r}")
        try:
            layout = maze_layout(int(size), int(maze_seed))
        except MemoryError:
            raise LayoutError(f"a maze of size {size} ({size}^2 cells) does not fit in memory") from None
        super().__init__(layout, step_reward=-1.0, slip=slip, render_mode=render_mode)
