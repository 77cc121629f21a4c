"""Observation and reward normalisation (rlgen/normalize.py): the running statistics against their closed
forms and against Stable-Baselines3's VecNormalize, the on-policy loop's use of them, and a normalised
PPO run whose checkpoint carries them into evaluation and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from conftest import read_csv, train_run
from stable_baselines3.common.running_mean_std import RunningMeanStd as SB3RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from rlgen.agents.ppo import PPO, PPOConfig
from rlgen.checkpoint import load_state
from rlgen.compose import load_config
from rlgen.config import EnvConfig
from rlgen.envs import EpisodeStats, make_vec_env
from rlgen.evaluation import evaluate_episodes
from rlgen.loops import collect_rollout, flat
from rlgen.normalize import NormalizeConfig, Normalizer, RunningMeanStd
from rlgen.run import Run
from rlgen.trainer import build_agent, train

BOTH = NormalizeConfig(normalize_obs=True, normalize_reward=True)


def _with_pseudo_count(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of the rows of x together with a pseudo-sample of weight eps at mean 0
    and variance 1 (the prior RunningMeanStd starts from)."""
    mean = x.sum(axis=0) / (eps + len(x))
    var = (eps * (1.0 + mean**2) + ((x - mean) ** 2).sum(axis=0)) / (eps + len(x))
    return mean, var


@pytest.mark.parametrize("eps", [1e-4, 1e-12])
def test_running_mean_std_is_the_mean_and_population_variance_of_every_row(eps):
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) for n in (1, 7, 2, 30, 1, 5)]
    rms = RunningMeanStd((3,), epsilon=eps)
    for b in batches:
        rms.update(b)
    rms.update(np.zeros((0, 3)))  # an empty batch changes nothing
    rows = np.concatenate(batches)
    mean, var = _with_pseudo_count(rows, eps)
    np.testing.assert_allclose(rms.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(rms.var, var, rtol=1e-12)
    assert rms.count == pytest.approx(eps + len(rows), rel=1e-15)
    if eps < 1e-9:  # the pseudo-sample weighs nothing: numpy's own mean and variance
        np.testing.assert_allclose(rms.mean, rows.mean(0), rtol=1e-10)
        np.testing.assert_allclose(rms.var, rows.var(0), rtol=1e-10)
    theirs = SB3RunningMeanStd(epsilon=eps, shape=(3,))
    for b in batches:
        theirs.update(b)
    np.testing.assert_allclose(rms.mean, theirs.mean, rtol=1e-10)
    np.testing.assert_allclose(rms.var, theirs.var, rtol=1e-10)


def test_normalizer_step_counts_discounted_returns_of_two_episodes_in_two_envs():
    """NEXT_STEP autoreset: env 0's episode ends at step 1 (step 2 only resets it), env 1's at step 2
    (step 3 only resets it). With gamma 0.5 the discounted returns counted are 1, 3 | 2.5, 2.5 | 2.25 | 5;
    an episode's final observation is not counted, the first of the next one is."""
    norm = Normalizer(BOTH, obs_dim=1, n_envs=2, gamma=0.5)
    norm.count_first(np.array([[0.0], [2.0]]))
    steps = [  # obs, rewards, done, valid
        ([1.0, 3.0], [1.0, 3.0], [False, False], [True, True]),
        ([4.0, 5.0], [2.0, 1.0], [True, False], [True, True]),
        ([6.0, 7.0], [0.0, 1.0], [False, True], [False, True]),
        ([8.0, 9.0], [5.0, 0.0], [False, False], [True, False]),
    ]
    counted_returns = [[1.0, 3.0], [2.5, 2.5], [2.25], [5.0]]
    rewards_seen = []
    for (obs, rewards, done, valid), returns in zip(steps, counted_returns, strict=True):
        scaled = norm.step(np.array(obs)[:, None], np.array(rewards), np.array(done), np.array(valid))
        rewards_seen += returns
        _, var = _with_pseudo_count(np.array(rewards_seen), 1e-4)
        expected = np.where(valid, np.clip(np.array(rewards) / np.sqrt(var + 1e-8), -10, 10), 0.0)
        np.testing.assert_allclose(scaled, expected, rtol=1e-6)
    mean, var = _with_pseudo_count(np.array([1.0, 3.0, 2.5, 2.5, 2.25, 5.0]), 1e-4)
    np.testing.assert_allclose([norm.ret_rms.mean, norm.ret_rms.var], [mean, var], rtol=1e-12)
    counted_obs = np.array([0.0, 2.0, 1.0, 3.0, 5.0, 6.0, 8.0, 9.0])[:, None]  # not 4 (final) nor 7 (final)
    mean, var = _with_pseudo_count(counted_obs, 1e-4)
    np.testing.assert_allclose([norm.obs_rms.mean, norm.obs_rms.var], [mean, var], rtol=1e-12)
    np.testing.assert_array_equal(norm.returns, [5.0, 0.0])


class _Scripted(VecEnv):
    """A vector env that plays given observations, rewards and dones, whatever the actions (SB3's API:
    the step that ends an episode returns the next one's first observation, the final one in infos)."""

    def __init__(self, first: np.ndarray, steps: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]):
        super().__init__(len(first), gym.spaces.Box(-np.inf, np.inf, first.shape[1:]), gym.spaces.Discrete(2))
        self.first, self.steps, self.t = first, steps, 0

    def reset(self):
        return self.first.copy()

    def step_async(self, actions):
        pass

    def step_wait(self):
        obs, rewards, dones, final = self.steps[self.t]
        self.t += 1
        infos = [{"terminal_observation": final[i].copy()} if d else {} for i, d in enumerate(dones)]
        return obs.copy(), rewards.copy(), dones.copy(), infos

    def close(self):
        pass

    def get_attr(self, attr_name, indices=None):
        return [None] * self.num_envs

    def set_attr(self, attr_name, value, indices=None):
        pass

    def env_method(self, method_name, *args, indices=None, **kwargs):
        return [None] * self.num_envs

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * self.num_envs


def test_normalizer_has_vecnormalize_statistics_after_the_same_episodes():
    """Two envs whose episodes end together (lengths 3 and 4): SB3 sees the next episode's first
    observation at once, rlgen's NEXT_STEP envs one step later on a step that only resets; both count the
    same observations and returns, and give the agent the same normalised observations and rewards. The
    one difference: an episode's final observation is normalised before the next episode's first one is
    counted (VecNormalize counts it first; rlgen/normalize.py)."""
    rng = np.random.default_rng(1)
    n, dim, gamma = 2, 3, 0.9
    first = rng.normal(1.0, 2.0, (n, dim))
    obs = rng.normal(1.0, 2.0, (7, n, dim))  # obs[2] and obs[6]: each episode's final observation
    rewards = rng.normal(0.5, 1.0, (7, n))
    ends = [False, False, True, False, False, False, True]
    next_first = {2: rng.normal(1.0, 2.0, (n, dim)), 6: rng.normal(1.0, 2.0, (n, dim))}
    sb3_steps = [(next_first.get(t, obs[t]), rewards[t], np.full(n, ends[t]), obs[t]) for t in range(7)]
    venv = VecNormalize(_Scripted(first, sb3_steps), gamma=gamma, clip_obs=100.0, clip_reward=100.0)
    config = replace(BOTH, clip_obs=100.0, clip_reward=100.0)
    norm = Normalizer(config, dim, n, gamma)

    theirs_first = venv.reset()
    norm.count_first(first)
    np.testing.assert_allclose(norm.obs(first), theirs_first, rtol=1e-6)
    for t in range(7):
        before = venv.obs_rms.copy()
        theirs_obs, theirs_rewards, _, infos = venv.step(np.zeros(n, dtype=np.int64))
        done = np.full(n, ends[t])
        scaled = norm.step(obs[t], rewards[t], done, np.ones(n, bool))
        np.testing.assert_allclose(scaled, theirs_rewards, rtol=1e-6)
        if ends[t]:  # the final observation, with VecNormalize's statistics before it counted the next first ones
            expected = np.clip((obs[t] - before.mean) / np.sqrt(before.var + 1e-8), -100.0, 100.0)
            np.testing.assert_allclose(norm.obs(obs[t]), expected, rtol=1e-6)
            assert not np.allclose(norm.obs(obs[t]), np.stack([i["terminal_observation"] for i in infos]))
            # rlgen's step that only resets: the first observation of the next episodes
            norm.step(next_first[t], np.zeros(n), np.zeros(n, bool), np.zeros(n, bool))
            np.testing.assert_allclose(norm.obs(next_first[t]), theirs_obs, rtol=1e-6)
        else:
            np.testing.assert_allclose(norm.obs(obs[t]), theirs_obs, rtol=1e-6)
    for ours, theirs in ((norm.obs_rms, venv.obs_rms), (norm.ret_rms, venv.ret_rms)):
        np.testing.assert_allclose(ours.mean, theirs.mean, rtol=0, atol=1e-10)
        np.testing.assert_allclose(ours.var, theirs.var, rtol=0, atol=1e-10)
        assert ours.count == pytest.approx(theirs.count, abs=1e-10)


class _Recorder(gym.vector.VectorWrapper):
    """Keeps what the envs returned, before any normalisation."""

    def __init__(self, envs: gym.vector.VectorEnv):
        super().__init__(envs)
        self.steps: list[tuple] = []

    def step(self, actions):
        out = self.env.step(actions)
        self.steps.append(tuple(np.copy(x) for x in out[:4]))
        return out


def test_the_loop_feeds_the_normalizer_and_the_agent_sees_its_output():
    """A rollout with truncations (time limit 7): every observation the networks read is normalised with
    the statistics of the steps before it (the final observation that bootstraps a truncation and the
    rollout's last too), the rollout keeps scaled rewards, and EpisodeStats the env's own."""
    recorded = _Recorder(make_vec_env(EnvConfig(name="CartPole", id="CartPole-v1",
                                                kwargs={"max_episode_steps": 7}), 2))
    episodes = []
    envs = EpisodeStats(recorded, lambda step, returns, lengths: episodes.extend(returns))
    agent = PPO(envs.single_observation_space, envs.single_action_space,
                PPOConfig(n_envs=2, n_steps=20, normalize_obs=True, normalize_reward=True), seed=0)
    first, _ = envs.reset(seed=0)
    agent.normalizer.count_first(flat(first))
    rollout, last = collect_rollout(agent, envs, first, 20)

    replay = Normalizer(agent.config, 4, 2, agent.config.gamma)
    replay.count_first(flat(first))
    obs = flat(first)
    for t, (next_obs, reward, terminated, truncated) in enumerate(recorded.steps):
        np.testing.assert_array_equal(rollout.obs[t], replay.obs(obs))
        np.testing.assert_allclose(rollout.values[t], agent.value(replay.obs(obs)), rtol=1e-6)
        scaled = replay.step(flat(next_obs), reward, terminated | truncated, rollout.valid[t])
        np.testing.assert_array_equal(rollout.rewards[t], scaled)
        obs = flat(next_obs)
    np.testing.assert_allclose(rollout.values[-1], agent.value(replay.obs(flat(last))), rtol=1e-6)
    assert (rollout.done & ~rollout.terminated).any()  # a truncation was bootstrapped through this path
    for ours, theirs in ((agent.normalizer.obs_rms, replay.obs_rms), (agent.normalizer.ret_rms, replay.ret_rms)):
        assert np.array_equal(ours.mean, theirs.mean) and np.array_equal(ours.var, theirs.var)
    assert set(episodes) <= {float(k) for k in range(1, 8)}  # whole rewards of 1 per step: the env's own


RUN = ("agent=ppo", "env=CartPole", "total_steps=4096", "eval_every=2048", "agent.n_steps=64", "agent.n_envs=4",
       "agent.normalize_obs=true", "agent.normalize_reward=true", "eval_episodes=3", "seed=3")


def test_a_normalised_run_evaluates_and_resumes_with_its_saved_statistics(tmp_path, monkeypatch):
    run = train_run(tmp_path / "run", *RUN)
    state = load_state(run / "checkpoint")
    n_episodes = len(read_csv(run / "episodes.csv")[1])
    # counted: the 4 first observations and every observation a step returned but an episode's final one
    assert state["normalizer"]["obs_rms"]["count"] == pytest.approx(1e-4 + 4 + 4096 - n_episodes)
    assert state["normalizer"]["ret_rms"]["count"] > 4096 - 2 * n_episodes

    out = subprocess.run([sys.executable, "-m", "rlgen.evaluate", f"run={run}", "episodes=3", "seed=3"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    last = read_csv(run / "eval.csv")[1][-1]
    assert json.loads((run / "evaluation.json").read_text())["mean_return"] == pytest.approx(
        float(last["mean_return"]), abs=1e-9)

    cfg = load_config([*RUN, f"run_dir={run}"])
    agent = build_agent(cfg)
    agent.load(run / "checkpoint")
    before = agent.normalizer.state_dict()
    evaluate_episodes(agent.act, cfg.env, 3, 3)
    after = agent.normalizer.state_dict()
    assert all(np.array_equal(before[k][s], after[k][s]) for k in ("obs_rms", "ret_rms") for s in ("mean", "var"))

    halted = load_config([*RUN, f"run_dir={tmp_path / 'halted'}", "progress=false"])
    original = Run.tick

    def tick(self, now, evaluation=None):
        if now >= 2048:
            self.stop_requested = True
        return original(self, now, evaluation)

    with monkeypatch.context() as m:
        m.setattr(Run, "tick", tick)
        assert train(halted)[0]["status"] == "interrupted"
    assert train(replace(halted, resume=str(tmp_path / "halted"), run_dir=None))[0]["status"] == "completed"
    resumed = load_state(tmp_path / "halted" / "checkpoint")["normalizer"]
    for part in ("obs_rms", "ret_rms"):
        for key in ("mean", "var"):
            assert np.array_equal(resumed[part][key], state["normalizer"][part][key]), (part, key)
        assert resumed[part]["count"] == state["normalizer"][part]["count"]
    assert (tmp_path / "halted" / "eval.csv").read_text() == (run / "eval.csv").read_text()


def test_each_seed_of_a_group_keeps_its_own_normalizer(tmp_path):
    """seeds=2 of A2C: each member normalises with statistics of its own envs, those its single run has."""
    common = ("agent=a2c", "env=CartPole", "total_steps=2000", "eval_every=1000", "agent.n_envs=4",
              "agent.normalize_obs=true", "agent.normalize_reward=true", "eval_episodes=2")
    group = train_run(tmp_path / "group", *common, "seeds=2")
    single = train_run(tmp_path / "single", *common, "seed=1")
    states = [load_state(group / f"seed{k}" / "checkpoint")["normalizer"] for k in (0, 1)]
    alone = load_state(single / "checkpoint")["normalizer"]
    for part in ("obs_rms", "ret_rms"):
        assert np.array_equal(states[1][part]["mean"], alone[part]["mean"]), part
        assert np.array_equal(states[1][part]["var"], alone[part]["var"]), part
        assert not np.array_equal(states[0][part]["mean"], states[1][part]["mean"]), part
    assert (group / "seed1" / "eval.csv").read_text() == (single / "eval.csv").read_text()
