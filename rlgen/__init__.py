"""rlgen: reinforcement learning written to be read, and checked against exact answers and SB3."""

__version__ = "0.1.0"
