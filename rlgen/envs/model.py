"""The tabular model of an env, for planning: rlgen's envs carry one, Gymnasium's toy-text envs a `P`.

The model itself (`TabularModel`, S x A x K arrays) and its exact solutions live in rlgen/mdp.py.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlgen.errors import UserError
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


def require_model(env: gym.Env) -> TabularModel:
    """The model of a tabular env, for planning agents; a clear error if the env has none."""
    model = model_of(env)
    if model is None:
        name = env.spec.id if env.spec else type(env.unwrapped).__name__
        raise UserError(f"env '{name}' exposes no tabular model (no `.model` or `P`), which dynamic "
                        "programming needs; use a learning agent (q_learning, mc_control, ...)")
    return model
