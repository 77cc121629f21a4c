"""The tabular picture: state values as a heatmap on the grid, the policy as arrows on top."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rlgen.envs.gridworld import MOVES  # noqa: E402

MAX_ARROW_CELLS = 60 * 60
"""beyond this many cells arrows are unreadable; the heatmap alone is drawn"""


def arrows(policy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One arrow per (state, action) with positive probability, its length proportional to it:
    (state indices, x components, y components), up being +y on the picture."""
    moves = np.array(MOVES[policy.shape[1]], dtype=float)  # (A, 2) as (d_row, d_col)
    scaled = policy / policy.max(axis=1, keepdims=True)
    s, a = np.nonzero(policy > 1e-6)
    return s, scaled[s, a] * moves[a, 1], -scaled[s, a] * moves[a, 0]


def value_picture(grid: np.ndarray, values: np.ndarray, policy: np.ndarray, path: Path,
                  title: str = "") -> np.ndarray:
    """Save the heatmap-with-arrows PNG at `path` and return it as an (H, W, 3) uint8 array."""
    H, W = grid.shape
    shown = np.ma.masked_where(np.isin(grid, ["#", "C"]), values.reshape(H, W))  # cells never occupied
    scale = min(0.6, 12.0 / max(H, W))
    fig, ax = plt.subplots(figsize=(max(4.0, W * scale + 1.5), max(3.0, H * scale + 0.8)), dpi=100)
    cmap = plt.get_cmap("viridis").with_extremes(bad="black")
    im = ax.imshow(shown, cmap=cmap, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="V(s)")
    if H * W <= MAX_ARROW_CELLS and policy.shape[1] in MOVES:
        free = ~np.isin(grid, ["#", "G", "T", "C"]).ravel()
        s, u, v = arrows(policy)
        keep = free[s]
        rows, cols = np.divmod(s[keep], W)
        ax.quiver(cols, rows, u[keep], v[keep], color="white", angles="uv", scale=2.5, scale_units="xy",
                  width=0.003 + 0.006 / max(H, W) ** 0.5, headwidth=4)
        marks = "GTC" if (grid == "S").sum() > 1 else "SGTC"
        for ch in marks:
            for r, c in zip(*np.nonzero(grid == ch), strict=True):
                ax.text(c, r, ch, ha="center", va="center", color="red" if ch in "TC" else "orange",
                        fontsize=max(5, min(12, int(100 / max(H, W)))), fontweight="bold")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    fig.canvas.draw()
    image = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return image
