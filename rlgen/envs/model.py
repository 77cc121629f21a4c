"""The tabular model of an env, for planning: rlgen's envs carry one, Gymnasium's toy-text envs a `P`.

The model itself (`TabularModel`, S x A x K arrays) and its exact solutions live in rlgen/mdp.py.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlgen.mdp import TabularModel


def model_of(env: gym.Env) -> TabularModel | None:
    """The model of a tabular env: rlgen's envs carry `.model`; Gymnasium's toy-text envs carry `P`."""
    base: Any = env.unwrapped
    if isinstance(getattr(base, "model", None), TabularModel):
        return base.model
    if hasattr(base, "P") and isinstance(env.observation_space, gym.spaces.Discrete):
        initial = getattr(base, "initial_state_distrib", None)
        return TabularModel.from_P(base.P, int(env.observation_space.n), int(env.action_space.n), initial)
    return None
