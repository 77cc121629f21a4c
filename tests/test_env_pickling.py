"""Every env rlgen registers pickles, and the copy carries on exactly as the original would:
AsyncVectorEnv's workers, multiprocessing, Ray and copy.deepcopy all rely on it."""

from __future__ import annotations

import copy
import pickle

import gymnasium as gym
import numpy as np
import pytest

import rlgen.envs  # noqa: F401  (registers rlgen/<Name>-v0)

RLGEN_ENVS = sorted(env_id for env_id in gym.registry if env_id.startswith("rlgen/"))


def test_every_rlgen_env_is_checked():
    assert "rlgen/TextPreference-v0" in RLGEN_ENVS and "rlgen/Maze-v0" in RLGEN_ENVS


@pytest.mark.parametrize("env_id", RLGEN_ENVS)
@pytest.mark.parametrize("duplicate", [lambda env: pickle.loads(pickle.dumps(env)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_env_copy_continues_identically(env_id, duplicate):
    env = gym.make(env_id)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(60)]
    env.step(actions[0])
    twin = duplicate(env)
    masked = hasattr(env.unwrapped, "action_masks")  # MaskedGridWorld: a masked action is an error, not a step
    for i, action in enumerate(actions[1:]):
        if masked:
            action = env.action_space.sample(env.unwrapped.action_masks().astype(np.int8))
        a, b = env.step(action), twin.step(action)
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1:4] == b[1:4]
        if a[2] or a[3]:
            np.testing.assert_array_equal(env.reset(seed=i)[0], twin.reset(seed=i)[0])
