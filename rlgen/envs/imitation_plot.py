"""Pictures of the imitation tasks: frames for render() (NumPy only) and, for an evaluation, a
policy's paths or actions beside the expert's (matplotlib, imported when first drawn)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

COLOURS = {"goal": (60, 170, 80), "goal 1": (60, 170, 80), "goal 2": (70, 110, 220), "obstacle": (120, 120, 120)}
CHARS = {"goal": "G", "goal 1": "1", "goal 2": "2", "obstacle": "O"}
Disc = tuple[np.ndarray, float, str]


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """x and y of the centres of size x size cells over the unit square, row 0 at the top (y = 1)."""
    centres = (np.arange(size) + 0.5) / size
    return np.meshgrid(centres, centres[::-1])


def ascii_square(pos: np.ndarray, discs: list[Disc], size: int = 21) -> str:
    """The unit square as text: discs by their letter, the point as `x`."""
    x, y = _grid(size)
    cells = np.full((size, size), ".")
    for centre, radius, name in discs:
        cells[np.hypot(x - centre[0], y - centre[1]) < max(radius, 0.5 / size)] = CHARS[name]
    col, row = (np.clip(pos[0], 0, 1 - 1e-9) * size).astype(int), (np.clip(1 - pos[1], 0, 1 - 1e-9) * size).astype(int)
    cells[row, col] = "x"
    return "\n".join("".join(r) for r in cells) + "\n"


def raster_square(pos: np.ndarray, discs: list[Disc], size: int = 200) -> np.ndarray:
    """(size, size, 3) uint8 frame: discs in their colours, the point in red."""
    x, y = _grid(size)
    img = np.full((size, size, 3), 255, dtype=np.uint8)
    for centre, radius, name in [*discs, (pos, 0.02, "point")]:
        img[np.hypot(x - centre[0], y - centre[1]) < radius] = COLOURS.get(name, (220, 40, 40))
    return img


def raster_step(s: float, correct: Callable[[np.ndarray], np.ndarray], action: np.ndarray | None,
                height: int = 100, width: int = 200) -> np.ndarray:
    """(height, width, 3) frame of Step: correct actions against s (black), the current s (grey
    line) and the action taken (red)."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    grid = np.linspace(-1.0, 1.0, width)
    rows = lambda a: np.clip(((1.0 - a) / 2.0 * (height - 1)).round().astype(int), 0, height - 1)  # noqa: E731
    img[:, int((s + 1.0) / 2.0 * (width - 1))] = (180, 180, 180)
    for branch in correct(grid).T:
        img[rows(branch), np.arange(width)] = 0
    if action is not None:
        r, c = int(rows(np.asarray(action[0]))), int((s + 1.0) / 2.0 * (width - 1))
        img[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3] = (220, 40, 40)
    return img


def _figure_array(fig: Any) -> np.ndarray:
    import matplotlib.pyplot as plt

    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw_episode(ax: Any, episode: dict[str, Any], colour: str, alpha: float, style: str = "-") -> None:
    xy = episode["positions"]
    ax.plot(xy[:, 0], xy[:, 1], style, color=colour, alpha=alpha, lw=1.2)
    ax.plot(xy[0, 0], xy[0, 1], "o", color=colour, alpha=alpha, ms=3)


def _draw_discs(ax: Any, discs: list[Disc]) -> None:
    plt = _pyplot()
    for centre, radius, name in discs:
        colour = np.array(COLOURS[name]) / 255
        ax.add_patch(plt.Circle(tuple(centre), radius, color=colour, alpha=0.5 if name == "obstacle" else 0.35))


def paths_picture(policy: list[dict[str, Any]], expert: list[dict[str, Any]], panels: bool) -> np.ndarray:
    """The policy's paths (green: success, red: failure) over the expert's (grey, dashed) from the
    same starts; one panel per episode when each has its own goals, else all on one."""
    plt = _pyplot()
    n = len(policy) if panels else 1
    cols, rows = min(n, 4), (n + 3) // 4
    side = 2.2 if panels else 4.0
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows + 0.3), dpi=80, squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set(xlim=(0, 1), ylim=(0, 1), xticks=[], yticks=[], aspect="equal")
        shown = [i] if panels else range(len(policy))
        if panels and i >= len(policy):
            ax.axis("off")
            continue
        _draw_discs(ax, policy[shown[0]]["discs"])
        for k in shown:
            _draw_episode(ax, expert[k], "0.5", 0.6, "--")
            _draw_episode(ax, policy[k], "tab:green" if policy[k]["success"] else "tab:red", 0.9)
    wins = sum(e["success"] for e in policy)
    fig.suptitle(f"policy (solid) {wins}/{len(policy)} successes; expert dashed", fontsize=9)
    fig.tight_layout()
    return _figure_array(fig)


def step_picture(s: np.ndarray, actions: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """The policy's action against s (blue) over the correct actions (black)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=80)
    for k, branch in enumerate(correct.T):
        jump = np.flatnonzero(np.abs(np.diff(branch)) > 0.5) + 1  # no vertical line across the jump
        for j, (xs, ys) in enumerate(zip(np.split(s, jump), np.split(branch, jump), strict=True)):
            ax.plot(xs, ys, color="black", lw=2, label="correct" if k == j == 0 else None)
    ax.plot(s, actions, ".", color="tab:blue", ms=2, label="policy")
    ax.set(xlim=(-1, 1), ylim=(-1.05, 1.05), xlabel="observation s", ylabel="action")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return _figure_array(fig)
