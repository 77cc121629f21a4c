"""GAIL: the discriminator's loss and the learned reward against hand computations, the policy trained on
the learned reward only, demonstrations from a trained run (deterministic from a seed, kept in the run),
the expert trained first when none is given, and every wrong expert refused in one line."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_user_error, in_process, read_json
from expert_demos import demonstrations_file, lean_controller

from rlgen.agents.gail import GAIL
from rlgen.agents.ppo import PPO
from rlgen.compose import load_config
from rlgen.demos import Demonstrations, policy_demonstrations
from rlgen.losses import adversarial_reward, discriminator_loss, lipschitz_penalty
from rlgen.trainer import build_agent, train

TINY = ("agent.n_steps=32", "agent.n_envs=4", "agent.batch_size=64", "agent.n_epochs=2", "agent.disc_batch_size=64",
        "eval_episodes=2", "progress=false")


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# -- the math ------------------------------------------------------------------------------------------


def test_the_discriminator_loss_is_the_binary_cross_entropy_of_each_half():
    expert, policy = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 3.0, 0.5])
    by_hand = (-(math.log(sigmoid(0.0)) + math.log(sigmoid(2.0))) / 2
               - (math.log(1 - sigmoid(-1.0)) + math.log(1 - sigmoid(3.0)) + math.log(1 - sigmoid(0.5))) / 3)
    assert discriminator_loss(expert, policy).item() == pytest.approx(by_hand, rel=1e-6)
    # a perfect discriminator's loss goes to 0, a clueless one's is 2 log 2
    assert discriminator_loss(torch.tensor([30.0]), torch.tensor([-30.0])).item() < 1e-12
    assert discriminator_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * math.log(2))


def test_the_learned_rewards_against_d_by_hand():
    logits = torch.tensor([-2.0, 0.0, 1.5, 40.0])
    d = [sigmoid(x) for x in logits.tolist()]
    gail = [-math.log(1 - p) if p < 1 - 1e-12 else 40.0 for p in d]  # -log(1 - D); at 40 it is ~ the logit
    airl = [math.log(p) - math.log(1 - p) for p in d[:3]]
    np.testing.assert_allclose(adversarial_reward(logits, "gail").numpy(), gail, rtol=1e-6)
    np.testing.assert_allclose(adversarial_reward(logits[:3], "airl").numpy(), airl, rtol=1e-6)
    assert (adversarial_reward(logits, "gail") > 0).all()  # gail's reward is positive everywhere


def test_the_gradient_penalty_by_hand():
    grad = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])  # norms 5, 1, 0
    assert lipschitz_penalty(grad).item() == pytest.approx((16 + 0 + 1) / 3)


# -- the agent ------------------------------------------------------------------------------------------


def gail_agent(tmp_path: Path, *overrides: str) -> GAIL:
    cfg = load_config(["agent=gail", "env=CartPole", *TINY, "agent.absorbing=true", *overrides])
    agent = build_agent(cfg)
    agent.start_from(Demonstrations.load(demonstrations_file(tmp_path)))
    return agent


@pytest.mark.parametrize("absorbing", [True, False])
def test_ppo_is_trained_on_the_learned_reward_not_the_envs(absorbing, tmp_path, monkeypatch):
    from tabular_run import LocalRun

    agent = gail_agent(tmp_path, f"agent.absorbing={str(absorbing).lower()}")
    seen = []
    original = PPO.update
    monkeypatch.setattr(PPO, "update", lambda self, rollout, p: seen.append(rollout) or original(self, rollout, p))
    run = LocalRun("CartPole-v1")
    agent.learn(256, run)
    assert len(seen) == 2
    rollout = seen[-1]
    with torch.no_grad():
        pairs = agent.pairs(rollout.obs.reshape(-1, 4), rollout.actions.reshape(-1))
        expected = torch.nn.functional.softplus(agent.discriminator(pairs)).numpy().reshape(rollout.rewards.shape)
        state = torch.zeros(1, pairs.shape[1])
        state[0, -1] = 1.0
        r_absorbing = torch.nn.functional.softplus(agent.discriminator(state)).item() if absorbing else 0.0
    # CartPole's own reward is 1 on every step; the learner sees -log(1 - D) of its pairs instead, and where
    # the env ended an episode also gamma x the absorbing state's value, r / (1 - gamma) (DAC)
    gamma = agent.config.gamma
    ended = rollout.terminated & rollout.valid
    assert ended.any()
    expected = expected + np.where(ended, gamma * r_absorbing / (1 - gamma), 0.0)
    np.testing.assert_allclose(rollout.rewards[rollout.valid], expected[rollout.valid], rtol=1e-5)
    assert not np.allclose(rollout.rewards[rollout.valid], 1.0)
    for tag in ("gail/discriminator_loss", "gail/expert_accuracy", "gail/policy_accuracy", "gail/reward"):
        assert tag in run.logged


def test_the_discriminator_learns_to_tell_the_expert_from_a_random_policy(tmp_path):
    agent = gail_agent(tmp_path, "agent.disc_updates=200", "agent.disc_learning_rate=1e-3")
    random_pairs = policy_demonstrations(lambda obs: np.random.default_rng(0).integers(0, 2, len(obs)),
                                         "CartPole-v1", 20, seed=1)
    stats = agent.train_discriminator(agent.pairs(random_pairs.obs, random_pairs.actions))
    assert stats["gail/expert_accuracy"] > 0.8 and stats["gail/policy_accuracy"] > 0.8


def test_demonstrations_from_a_run_are_its_policy_from_the_demo_seed(tmp_path):
    expert = policy_demonstrations(lean_controller, "CartPole-v1", 3, seed=5)
    again = policy_demonstrations(lean_controller, "CartPole-v1", 3, seed=5)
    other = policy_demonstrations(lean_controller, "CartPole-v1", 3, seed=6)
    assert expert.n_episodes == 3 and np.array_equal(expert.obs, again.obs)
    assert not np.array_equal(expert.obs[:4], other.obs[:4])
    np.testing.assert_array_equal(expert.actions[:, 0], lean_controller(expert.obs))


# -- through the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ppo_expert(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("expert") / "ppo"
    train(load_config(["agent=ppo", "env=CartPole", "total_steps=2048", "eval_every=0", "eval_episodes=2",
                       "progress=false", f"run_dir={run_dir}"]))
    return run_dir


def test_gail_from_an_expert_run_on_the_command_line(ppo_expert, tmp_path, main_in_process, capsys):
    from rlgen import evaluate

    out = main_in_process("agent=gail", "env=CartPole", f"expert={ppo_expert}", "agent.n_trajectories=2",
                          "total_steps=512", "eval_every=256", f"run_dir={tmp_path / 'gail'}", *TINY)
    assert out.returncode == 0, out.stderr
    summary = read_json(tmp_path / "gail" / "summary.json")
    assert summary["status"] == "completed" and summary["demo_episodes"] == 2
    demos = Demonstrations.load(tmp_path / "gail" / "demonstrations.npz")
    assert demos.n_episodes == 2 and summary["expert_mean_return"] == pytest.approx(demos.returns.mean())
    assert f"expert: {ppo_expert}" in (tmp_path / "gail" / "config.yaml").read_text()
    # replayed by rlgen.evaluate from its own checkpoint: the expert run is not needed any more
    evaluated = in_process(evaluate.main, capsys)(f"run={tmp_path / 'gail'}", "episodes=2")
    assert evaluated.returncode == 0, evaluated.stderr


def test_without_an_expert_one_is_trained_first_and_said(tmp_path, main_in_process, monkeypatch):
    out = main_in_process("agent=gail", "env=CartPole", f"runs_root={tmp_path}", "total_steps=256",
                          "agent.n_trajectories=1", *TINY)
    assert out.returncode == 0, out.stderr
    expert = tmp_path / "CartPole" / "ppo" / "expert-0"
    assert "no expert= given: training ppo on CartPole first" in out.stdout and str(expert) in out.stdout
    assert read_json(expert / "summary.json")["status"] == "completed"
    again = main_in_process("agent=gail", "env=CartPole", f"runs_root={tmp_path}", "total_steps=256",
                            "agent.n_trajectories=1", *TINY)
    assert again.returncode == 0 and f"using {expert}, trained for it before" in again.stdout


def test_wrong_experts_are_one_line_and_leave_no_run(ppo_expert, tmp_path, main_in_process):
    acrobot = ("agent=gail", "env=Acrobot", f"expert={ppo_expert}")
    assert_user_error(main_in_process(*acrobot, f"runs_root={tmp_path}", *TINY),
                      f"expert={ppo_expert} is a run on CartPole-v1; this run's env is Acrobot-v1")
    assert_user_error(main_in_process("agent=gail", "env=CartPole", f"expert={tmp_path / 'none'}",
                                      f"runs_root={tmp_path}"), "no such run directory")
    assert_user_error(main_in_process("agent=ppo", "env=CartPole", f"expert={ppo_expert}", f"runs_root={tmp_path}"),
                      "agent=ppo takes no expert=", "gail")
    assert_user_error(main_in_process("agent=gail", "env=CartPole", f"init={ppo_expert}", f"runs_root={tmp_path}"),
                      "agent=gail takes no init=")
    assert_user_error(main_in_process("agent=gail", "env=FrozenLake-v1", f"runs_root={tmp_path}"),
                      "no expert= given, and rlgen has no tuned ppo for FrozenLake", "give expert=<its run dir>")
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a file of arrays")
    assert_user_error(main_in_process("agent=gail", "env=CartPole", f"expert={bogus}", f"runs_root={tmp_path}"),
                      "is not a demonstrations file")
    pendulum = tmp_path / "pendulum.npz"
    policy_demonstrations(lambda obs: np.zeros((len(obs), 1), np.float32), "Pendulum-v1", 1, seed=0).save(pendulum)
    assert_user_error(main_in_process("agent=gail", "env=CartPole", f"expert={pendulum}", f"runs_root={tmp_path}"),
                      "observations of size (3,)", "CartPole-v1 has 4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bogus.npz", "pendulum.npz"]


def test_an_expert_whose_action_space_differs_is_refused(tmp_path, main_in_process):
    particle = tmp_path / "particle2"
    assert main_in_process("agent=bc", "env=Particle", "total_steps=5", "eval_every=0", "eval_episodes=1",
                           "agent.n_trajectories=2", "progress=false", f"run_dir={particle}").returncode == 0
    out = main_in_process("agent=bc", "env=Particle", "env.dim=3", f"expert={particle}", f"runs_root={tmp_path}",
                          "total_steps=5")
    assert_user_error(out, f"expert={particle} acts on Box", "(its env.kwargs differ?)")


def test_evaluate_writes_demonstrations_that_gail_learns_from(ppo_expert, tmp_path, main_in_process, capsys):
    from rlgen import evaluate

    demos_file = tmp_path / "expert.npz"
    evaluate_ = in_process(evaluate.main, capsys)
    out = evaluate_(f"run={ppo_expert}", "episodes=3", "seed=4", f"demos={demos_file}")
    assert out.returncode == 0 and "demonstrations: 3 episodes" in out.stdout
    demos = Demonstrations.load(demos_file)
    assert demos.n_episodes == 3 and demos.terminated.dtype == bool
    # the same episodes as a trained run's demonstrations from that seed (deterministic policy)
    agent = build_agent(load_config(["agent=gail", "env=CartPole", "agent.n_trajectories=3", "agent.demo_seed=4"]))
    from rlgen.trainer import load_trained

    agent.start_from(load_trained(ppo_expert)[1])
    assert np.array_equal(agent.demos.obs, demos.obs)
    before = demos_file.read_bytes()
    assert_user_error(evaluate_(f"run={ppo_expert}", f"demos={demos_file}"), "exists already")
    assert demos_file.read_bytes() == before
    run = main_in_process("agent=gail", "env=CartPole", f"expert={demos_file}", "total_steps=256",
                          f"run_dir={tmp_path / 'gail'}", *TINY)
    assert run.returncode == 0 and read_json(tmp_path / "gail" / "summary.json")["demo_episodes"] == 3


def test_a_tabular_expert_acts_on_its_states_and_the_learner_sees_them_one_hot(tmp_path, main_in_process):
    expert = tmp_path / "q"
    assert main_in_process("agent=q_learning", "env=FrozenLake-v1", "total_steps=500", "eval_every=0",
                           "eval_episodes=1", "progress=false", f"run_dir={expert}").returncode == 0
    out = main_in_process("agent=gail", "env=FrozenLake-v1", f"expert={expert}", "agent.n_trajectories=3",
                          "total_steps=256", f"run_dir={tmp_path / 'gail'}", *TINY)
    assert out.returncode == 0, out.stderr
    demos = Demonstrations.load(tmp_path / "gail" / "demonstrations.npz")
    assert demos.obs.shape[1] == 16 and set(np.unique(demos.obs)) <= {0.0, 1.0}  # FrozenLake's 16 states, one-hot
    assert (demos.obs.sum(axis=1) == 1).all() and demos.n_episodes == 3


def test_gail_learns_cartpole_from_two_demonstrations_without_its_reward(tmp_path):
    """The learning tier: a fixed seed, a small budget, the env's return far above a random policy's (~22)."""
    cfg = load_config(["agent=gail", "env=CartPole", f"expert={demonstrations_file(tmp_path)}", "total_steps=30000",
                       "eval_every=0", "eval_episodes=10", "progress=false", f"run_dir={tmp_path / 'run'}"])
    summary, _ = train(cfg)
    assert summary["eval_mean_return"] >= 200, summary["eval_mean_return"]
