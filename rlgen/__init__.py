"""rlgen: reinforcement learning written to be read, and checked against exact answers and SB3.

Importing rlgen registers its envs with Gymnasium (`rlgen/<Name>-v0`): `import rlgen` is all that
`gymnasium.make("rlgen/Maze-v0")` needs in your own code; `gymnasium.make("rlgen:rlgen/Maze-v0")`
imports it for you.
"""

from rlgen import envs as _envs  # noqa: F401  (registers rlgen/<Name>-v0)

__version__ = "0.1.0"
