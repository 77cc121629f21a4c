"""rlgen: reinforcement learning written to be read, and checked against exact answers and SB3.

Importing rlgen registers its envs with Gymnasium (`rlgen/<Name>-v0`): `import rlgen` is all that
`gymnasium.make("rlgen/Maze-v0")` needs in your own code; `gymnasium.make("rlgen:rlgen/Maze-v0")`
imports it for you.
"""

import os

# NumPy's OpenBLAS on one thread, unless the user chose otherwise; this holds when NumPy is first
# imported after this line (as in every `python -m rlgen.*`). Agents act through small NumPy
# products between updates, and OpenBLAS's threads, asleep between them, take ~100 us to wake for
# each: DQN on Acrobot acted at 134 us per layer with them and 3.5 us without, and its runs took
# 1.5x less time (benchmarks/results/speed/RESULTS.md).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from rlgen import envs as _envs  # noqa: E402, F401  (registers rlgen/<Name>-v0)

__version__ = "0.1.0"
