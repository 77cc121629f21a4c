"""rlgen: reinforcement learning written to be read, and checked against exact answers and SB3.

From Python (rlgen/api.py; each imported on first use, so `import rlgen` stays light):

    summary, run_dir = rlgen.train(agent="ppo", env="CartPole", total_steps=50_000)
    policy = rlgen.load(run_dir)          # policy.act(obs): an action for env.step
    env = rlgen.make_env("CartPole")

Importing rlgen registers its envs with Gymnasium (`rlgen/<Name>-v0`): `import rlgen` is all that
`gymnasium.make("rlgen/Maze-v0")` needs in your own code; `gymnasium.make("rlgen:rlgen/Maze-v0")`
imports it for you.
"""

import os
import sys
import types
from typing import Any

# NumPy's OpenBLAS on one thread, unless the user chose otherwise; this holds when NumPy is first
# imported after this line (as in every `python -m rlgen.*`). Agents act through small NumPy
# products between updates, and OpenBLAS's threads, asleep between them, take ~100 us to wake for
# each: DQN on Acrobot acted at 134 us per layer with them and 3.5 us without, and its runs took
# 1.5x less time (benchmarks/results/speed/RESULTS.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rlgen import envs as _envs  # noqa: E402, F401  (registers rlgen/<Name>-v0)

__version__ = "0.1.0"

API = ("load", "train", "make_env")
"""rlgen/api.py's functions, exported here lazily (PEP 562): they import torch, Hydra and the agents"""


def __getattr__(name: str) -> Any:
    if name not in API:
        raise AttributeError(f"module 'rlgen' has no attribute '{name}'")
    from rlgen import api

    return getattr(api, name)


def __dir__() -> list[str]:
    return sorted([*globals(), *API])


class _Package(types.ModuleType):
    """rlgen's module type: importing the submodule rlgen.train (`python -m rlgen.train`'s code) binds
    it as the package's attribute `train` (the import system sets a submodule on its parent, Python
    Language Reference 5.4.2), which would hide the function rlgen.train; that binding is skipped, the
    module stays importable by its name (`from rlgen.train import main`; `import rlgen.train as m` gives
    the function)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
