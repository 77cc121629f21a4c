"""A small demonstrations file for agents that learn from an expert run (gail), without training one:
a hand-written CartPole controller that pushes the cart the way the pole falls."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlgen.demos import policy_demonstrations


def lean_controller(obs: np.ndarray) -> np.ndarray:
    """Push right when the pole leans (or turns) right: balances CartPole-v1 for hundreds of steps."""
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


def demonstrations_file(folder: Path, episodes: int = 2) -> Path:
    path = Path(folder) / "cartpole_demos.npz"
    if not path.exists():
        policy_demonstrations(lean_controller, "CartPole-v1", episodes, seed=0).save(path)
    return path
