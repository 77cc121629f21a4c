"""Invalid-action masking: a masked action is never sampled, chosen or bootstrapped from; PPO's masked
distribution is sb3-contrib's MaskablePPO's; runs on masked envs never step a masked action; a bad mask
is one line and exit 2; MaskedGridWorld refuses a masked action; sb3_maskable_ppo trains and reloads."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import assert_user_error, cli, read_csv, train_run
from hypothesis import given, settings
from hypothesis import strategies as st
from sb3_contrib.common.maskable.distributions import MaskableCategorical

from rlgen.agents.dqn import DQN, DQNConfig
from rlgen.agents.ppo import PPO, PPOConfig
from rlgen.agents.sql import SQL, SQLConfig
from rlgen.agents.td import QLearning, TDConfig
from rlgen.compose import load_config
from rlgen.distributions import epsilon_greedy, masked_logits
from rlgen.trainer import train

PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None)
OBS_DIM = 3


@st.composite
def masked_rows(draw) -> tuple[np.ndarray, np.ndarray]:
    """(n, A) values in [-50, 50] and an (n, A) mask with at least one valid action per row."""
    n, n_actions = draw(st.integers(1, 6)), draw(st.integers(2, 7))
    values = np.array(draw(st.lists(st.floats(-50, 50), min_size=n * n_actions, max_size=n * n_actions)))
    mask = np.array(draw(st.lists(st.booleans(), min_size=n * n_actions, max_size=n * n_actions)))
    mask = mask.reshape(n, n_actions)
    keep = draw(st.lists(st.integers(0, n_actions - 1), min_size=n, max_size=n))
    mask[np.arange(n), keep] = True
    return values.reshape(n, n_actions), mask


def spaces(n_actions: int) -> tuple[gym.Space, gym.Space]:
    return gym.spaces.Box(-1.0, 1.0, (OBS_DIM,), np.float32), gym.spaces.Discrete(n_actions)


def obs_of(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, OBS_DIM)).astype(np.float32)


def fixed_q(q: np.ndarray):
    """A network that outputs the same Q-values for every observation: the bootstrap's inputs by hand."""
    return lambda obs: torch.as_tensor(q, dtype=torch.float32).expand(*obs.shape[:-1], q.shape[-1])


# -- acting never picks a masked action ------------------------------------------------------------


@PROPERTY
@given(masked_rows())
def test_ppo_never_samples_or_chooses_a_masked_action(rows):
    logits, mask = rows
    agent = PPO(*spaces(mask.shape[1]), PPOConfig(), seed=0)
    with torch.no_grad():  # a policy head whose logits are the drawn values, whatever the observation
        agent.actor[-1].weight.zero_()
        agent.actor[-1].bias.zero_()
    obs = obs_of(len(mask))
    for _ in range(20):
        assert mask[np.arange(len(mask)), agent.act(obs, deterministic=False, mask=mask)].all()
        actions, _, logp, _ = agent.policy_step(obs, mask=mask)
        assert mask[np.arange(len(mask)), actions].all() and np.isfinite(logp).all()
    assert mask[np.arange(len(mask)), agent.act(obs, deterministic=True, mask=mask)].all()
    # (encode, trunk, head, critic) whose policy outputs `logits`: act takes their argmax over the valid actions
    agent._snapshot = (lambda x: x, lambda x: x, lambda x: logits, lambda x: np.zeros((len(x), 1)))
    best = np.where(mask, logits, -np.inf).argmax(axis=1)
    assert (agent.act(obs, deterministic=True, mask=mask) == best).all()


@PROPERTY
@given(masked_rows(), st.integers(0, 2**31 - 1))
def test_dqn_epsilon_greedy_and_greedy_pick_only_valid_actions(rows, seed):
    q, mask = rows
    agent = DQN(*spaces(mask.shape[1]), DQNConfig(n_envs=len(mask)), seed=seed)
    agent.q_values = lambda obs: q
    rows_ = np.arange(len(mask))
    for _ in range(10):
        assert mask[rows_, agent.greedy_or_explore(obs_of(len(mask)), 1.0, mask)].all()  # eps = 1: all random
        assert mask[rows_, agent.explore(obs_of(len(mask)), mask)].all()  # before learning_starts: random
    assert (agent.act(obs_of(len(mask)), True, mask) == np.where(mask, q, -np.inf).argmax(axis=1)).all()


@PROPERTY
@given(masked_rows(), st.integers(0, 2**31 - 1))
def test_sql_boltzmann_samples_only_valid_actions(rows, seed):
    q, mask = rows
    agent = SQL(*spaces(mask.shape[1]), SQLConfig(ent_coef=10.0), seed=seed)  # hot: every action likely unmasked
    agent.q_values = lambda obs: q
    for eps in (0.0, 0.5):
        for _ in range(10):
            assert mask[np.arange(len(mask)), agent.greedy_or_explore(obs_of(len(mask)), eps, mask)].all()


@PROPERTY
@given(masked_rows(), st.floats(0.0, 1.0), st.integers(0, 2**31 - 1))
def test_tabular_epsilon_greedy_picks_only_valid_actions(rows, epsilon, seed):
    q, mask = rows
    rng = np.random.default_rng(seed)
    for _ in range(10):
        assert mask[np.arange(len(mask)), epsilon_greedy(q, epsilon, rng, mask)].all()
    agent = QLearning(gym.spaces.Discrete(len(mask)), gym.spaces.Discrete(mask.shape[1]),
                      TDConfig(epsilon=epsilon), seed)
    agent.Q[:] = q
    states = np.arange(len(mask))
    agent.note_masks(states, mask)
    assert all(mask[s, agent.behaviour(int(s))] for s in states for _ in range(5))
    assert mask[states, agent.act(states, deterministic=True)].all()
    assert mask[states, agent.act(states, deterministic=False)].all()
    agent.refresh()
    assert (agent.policy[~mask] == 0).all()


# -- the bootstrap ignores masked actions (hand-computed) -------------------------------------------

Q_NEXT = np.array([[5.0, 1.0, 3.0]])
"""the masked action 0 has the highest value: a bootstrap that saw it would be 5, not 3"""
MASK_NEXT = torch.tensor([[False, True, True]])


@pytest.mark.parametrize("double_q", [False, True])
def test_dqn_target_maximises_over_the_next_states_valid_actions(double_q):
    agent = DQN(*spaces(3), DQNConfig(gamma=0.9, double_q=double_q), seed=0)
    agent.q_target = agent.q_net = fixed_q(Q_NEXT[0])
    target = agent.td_target(torch.tensor([1.0]), torch.zeros(1, OBS_DIM), torch.tensor([0.0]), MASK_NEXT)
    assert target.item() == pytest.approx(1.0 + 0.9 * 3.0)
    unmasked = agent.td_target(torch.tensor([1.0]), torch.zeros(1, OBS_DIM), torch.tensor([0.0]))
    assert unmasked.item() == pytest.approx(1.0 + 0.9 * 5.0)


def test_sql_target_is_the_soft_value_over_the_valid_actions():
    agent = SQL(*spaces(3), SQLConfig(gamma=0.9, ent_coef=0.5), seed=0)
    agent.q_target = fixed_q(Q_NEXT[0])
    target = agent.td_target(torch.tensor([1.0]), torch.zeros(1, OBS_DIM), torch.tensor([0.0]), MASK_NEXT)
    soft = 0.5 * math.log(math.exp(1.0 / 0.5) + math.exp(3.0 / 0.5))  # actions 1 and 2 only
    assert target.item() == pytest.approx(1.0 + 0.9 * soft, rel=1e-6)


def test_the_replay_buffer_keeps_the_next_masks_for_the_target():
    agent = DQN(*spaces(3), DQNConfig(gamma=0.9, learning_starts=0, batch_size=4), seed=0)
    obs = np.zeros((1, OBS_DIM), np.float32)
    agent.buffer.add(obs, np.array([1]), np.array([1.0]), obs, np.array([0.0]), MASK_NEXT.numpy())
    batch = agent.buffer.sample(4, agent.rng)
    assert (batch["next_masks"] == MASK_NEXT).all()
    agent.q_target = fixed_q(Q_NEXT[0])
    assert agent.td_target(batch["rewards"], batch["next_obs"], batch["terminated"],
                           batch["next_masks"]).tolist() == pytest.approx([1.0 + 0.9 * 3.0] * 4)


def test_tabular_q_learning_bootstraps_from_the_valid_maximum():
    agent = QLearning(gym.spaces.Discrete(2), gym.spaces.Discrete(3), TDConfig(gamma=0.9), 0)
    agent.Q[1] = Q_NEXT[0]
    assert agent.target(1.0, 1, 0, False) == pytest.approx(1.0 + 0.9 * 5.0)
    agent.note_masks(1, MASK_NEXT.numpy()[0])
    assert agent.target(1.0, 1, 0, False) == pytest.approx(1.0 + 0.9 * 3.0)


# -- PPO's update uses MaskablePPO's distribution ---------------------------------------------------


@PROPERTY
@given(masked_rows(), st.integers(0, 2**31 - 1))
def test_ppo_log_probs_and_entropy_equal_maskable_ppos(rows, seed):
    logits, mask = rows
    logits_t, mask_t = torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(mask)
    actions = torch.as_tensor(np.random.default_rng(seed).integers(0, mask.shape[1], len(mask)))
    actions = torch.where(mask_t[torch.arange(len(mask)), actions], actions, mask_t.int().argmax(dim=1))
    theirs = MaskableCategorical(logits=logits_t, masks=mask_t)
    agent = PPO(*spaces(mask.shape[1]), PPOConfig(ent_coef=0.01), seed=0)
    agent.actor = lambda obs: logits_t  # the update's policy head, on the drawn logits
    logp, entropy, _ = agent.evaluate_actions(torch.zeros(len(mask), OBS_DIM), actions.float(), mask=mask_t)
    assert torch.allclose(logp, theirs.log_prob(actions), atol=1e-6)
    assert torch.allclose(entropy, theirs.entropy(), atol=1e-6)
    assert torch.isfinite(masked_logits(logits_t, mask_t)).all()


# -- runs on masked envs ----------------------------------------------------------------------------


class StrictMasks(gym.Wrapper):
    """Asserts that every action stepped is valid in the mask of the last info."""

    stepped = 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.mask = info["action_mask"]
        return obs, info

    def step(self, action):
        assert self.mask[int(action)], f"masked action {action} stepped (mask {self.mask})"
        StrictMasks.stepped += 1
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.mask = info["action_mask"]
        return obs, reward, terminated, truncated, info


def strict_env(inner: str, **kwargs) -> gym.Env:
    return StrictMasks(gym.make(inner, **kwargs).unwrapped)


for name, inner, limit in (("Taxi", "Taxi-v4", 200), ("MaskedGridWorld", "rlgen/MaskedGridWorld-v0", 100)):
    if f"rlgen-test/Strict{name}-v0" not in gym.registry:
        gym.register(f"rlgen-test/Strict{name}-v0", entry_point=strict_env, kwargs={"inner": inner},
                     max_episode_steps=limit)

AGENTS = ["ppo", "a2c", "dqn", "sql", "q_learning", "sarsa", "expected_sarsa", "double_q_learning", "soft_q_learning",
          "td_prediction", "mc_control", "mc_off_policy", "sb3_maskable_ppo"]


@pytest.mark.parametrize("env", ["Taxi", "MaskedGridWorld"])
@pytest.mark.parametrize("agent", AGENTS)
def test_a_run_never_steps_a_masked_action(tmp_path, agent, env):
    before = StrictMasks.stepped
    cfg = load_config([f"agent={agent}", f"env=rlgen-test/Strict{env}-v0", "total_steps=1500", "eval_every=750",
                       "eval_episodes=2", f"run_dir={tmp_path / 'run'}", "progress=false", "agent.n_envs=2"
                       if agent in ("ppo", "a2c", "sb3_maskable_ppo") else "seed=0"])
    summary, _ = train(cfg)
    assert summary["status"] == "completed" and StrictMasks.stepped - before >= 1500


def test_mc_exploring_starts_starts_with_a_valid_action(tmp_path):
    summary, _ = train(load_config(["agent=mc_exploring_starts", "env=MaskedGridWorld", "total_steps=1500",
                                    f"run_dir={tmp_path / 'run'}", "progress=false"]))
    assert summary["status"] == "completed"


def test_stepping_a_masked_action_of_masked_gridworld_is_a_clear_error():
    env = gym.make("rlgen/MaskedGridWorld-v0")
    _, info = env.reset(seed=0)
    env.unwrapped.s = 0  # the top-left corner: up and left lead off the grid
    assert env.unwrapped.action_masks().tolist() == [False, True, True, False]
    with pytest.raises(ValueError, match="action 0 is masked in state 0") as err:
        env.step(0)
    assert "\n" not in str(err.value) and "[1, 2]" in str(err.value)
    _, _, _, _, info = env.step(1)
    assert info["action_mask"].dtype == np.int8 and info["action_mask"].tolist() == [0, 1, 1, 1]


@pytest.mark.parametrize("agent", ["agent=ppo", "agent=dqn", "agent=q_learning", "agent=sb3_ppo", "agent=reinforce"])
def test_an_agent_that_ignores_masks_is_refused_where_masked_actions_are_errors(agent):
    off = [] if agent in ("agent=sb3_ppo", "agent=reinforce") else ["agent.action_masking=false"]
    out = subprocess.run([sys.executable, "-m", "rlgen.train", agent, "env=MaskedGridWorld", *off, "total_steps=10"],
                         capture_output=True, text=True, check=False)
    assert_user_error(out, "rejects masked actions")


BAD_ENVS = textwrap.dedent('''
    import gymnasium as gym
    import numpy as np

    class BadMask(gym.Env):
        observation_space = gym.spaces.Discrete(2)
        action_space = gym.spaces.Discrete(4)

        def __init__(self, mask):
            self.mask = mask

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 0, {}

        def step(self, action):
            return 0, 0.0, False, False, {}

        def action_masks(self):
            return np.array(self.mask)

    class BadInfoMask(BadMask):
        action_masks = None

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return 0, {"action_mask": np.array(self.mask, dtype=np.int8)}

    gym.register("BadShape-v0", entry_point=BadMask, kwargs={"mask": [1, 1, 0]}, max_episode_steps=5)
    gym.register("NoValid-v0", entry_point=BadMask, kwargs={"mask": [0, 0, 0, 0]}, max_episode_steps=5)
    gym.register("BadInfo-v0", entry_point=BadInfoMask, kwargs={"mask": [[1, 1, 1, 1]]}, max_episode_steps=5)
''')


@pytest.mark.parametrize(("env", "agent", "fragment"), [
    ("BadShape-v0", "ppo", "mask of shape (3,)"), ("BadShape-v0", "q_learning", "expected (4,)"),
    ("NoValid-v0", "dqn", "no valid action"), ("BadInfo-v0", "ppo", "mask of shape (1, 1, 4)"),
    ("BadShape-v0", "sb3_maskable_ppo", "mask of shape (3,)")])
def test_a_wrong_mask_is_one_line_and_exit_2(tmp_path, env, agent, fragment):
    (tmp_path / "badmasks.py").write_text(BAD_ENVS)
    out = subprocess.run([sys.executable, "-m", "rlgen.train", f"agent={agent}", f"env=badmasks:{env}",
                          "total_steps=64", "agent.n_envs=1" if agent != "q_learning" else "seed=0",
                          "progress=false", f"run_dir={tmp_path / 'run'}"], capture_output=True, text=True,
                         cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert_user_error(out, fragment, env)


def test_sb3_maskable_ppo_trains_and_reloads(tmp_path):
    run = train_run(tmp_path / "run", "agent=sb3_maskable_ppo", "env=MaskedGridWorld", "total_steps=1024",
                    "eval_every=512", "eval_episodes=2", "agent.n_envs=2", "agent.n_steps=128")
    _, logged = read_csv(run / "eval.csv")
    out = subprocess.run([sys.executable, "-m", "rlgen.evaluate", f"run={run}", "episodes=2", "seed=0"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    result = json.loads((run / "evaluation.json").read_text())
    assert result["mean_return"] == pytest.approx(float(logged[-1]["mean_return"]))


@pytest.mark.parametrize("agent", ["ppo", "q_learning"])
def test_a_resumed_masked_run_continues_the_same_episodes(tmp_path, agent):
    """The training envs' masks are part of their checkpointed state: an interrupted and resumed run on
    Taxi sees the episodes of an uninterrupted one exactly."""
    setup = (f"agent={agent}", "env=Taxi", "eval_every=512", "eval_episodes=2",
             *(("agent.n_envs=2", "agent.n_steps=64") if agent == "ppo" else ()))
    whole = train_run(tmp_path / "whole", *setup, "total_steps=2048")
    cut = train_run(tmp_path / "cut", *setup, "total_steps=1024")
    out = cli(f"resume={cut}", "total_steps=2048", "progress=false")
    assert out.returncode == 0, out.stderr
    assert read_csv(cut / "episodes.csv") == read_csv(whole / "episodes.csv")
    assert read_csv(cut / "eval.csv") == read_csv(whole / "eval.csv")
