"""bc and mdn: what each learns from Step's demonstrations with a fixed seed (regression blurs the
jump and averages two correct actions; the mixture keeps both), the evaluation's success report,
and the command line, smoke runs and mistakes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_user_error, read_csv, train_run, trained_on_step

from rlgen.compose import load_config
from rlgen.envs.imitation_tasks import StepEnv
from rlgen.evaluation import evaluate_episodes

S = np.linspace(-1.0, 1.0, 2001, dtype=np.float32)[:, None]
"""a fine grid of Step's observation"""


def test_bc_learns_steps_continuous_part_and_blurs_its_jump():
    errors, _ = StepEnv().errors(S, trained_on_step("bc", 1000).act(S))
    away, near = errors[np.abs(S[:, 0]) > 0.1], errors[np.abs(S[:, 0]) < 0.01]
    assert away.mean() < 0.01 and away.max() < 0.05
    assert near.mean() > 0.2 and near.mean() > 20 * away.mean()  # the regression interpolates across the jump


def test_bc_averages_two_correct_actions_and_mdn_keeps_both():
    errors, _ = StepEnv(two_valued=True).errors(S, trained_on_step("bc", 1000, "env.two_valued=true").act(S))
    assert errors.mean() > 0.4  # near 0, between +-(1/2 + |s|/2)

    mdn = trained_on_step("mdn", 1000, "env.two_valued=true")
    errors, nearest = StepEnv(two_valued=True).errors(S, mdn.act(S))
    assert (errors < 0.05).mean() > 0.95 and 0.2 < nearest.mean() < 0.8
    with torch.no_grad():
        logits, means, _ = mdn.heads(mdn.normalize(S))
    weights, means = torch.softmax(logits, -1).numpy(), means[..., 0].numpy()  # Step's actions are not rescaled
    correct = StepEnv(two_valued=True).correct_actions(S)  # (N, 2)
    for branch in range(2):  # every observation: mixture weight on components centred on each correct action
        mass = (weights * (np.abs(means - correct[:, branch : branch + 1]) < 0.05)).sum(axis=1)
        assert mass.min() > 0.1 and mass.mean() > 0.3, branch
    _, sampled = StepEnv(two_valued=True).errors(S, mdn.act(S, deterministic=False))
    assert 0.35 < sampled.mean() < 0.65


def test_evaluation_reports_success_and_mode_only_where_the_env_does():
    cfg = load_config(["agent=mdn", "env=Avoid"])
    towards_goal = lambda obs: np.tile([0.0, 1.0], (len(obs), 1)).astype(np.float32)  # noqa: E731
    result = evaluate_episodes(towards_goal, cfg.env, 4, seed=0)
    assert result.rates() == {"success_rate": 0.0, "mode_fraction": result.mode.mean()}  # straight into the obstacle
    assert result.act_ms >= 0.0
    plain = load_config(["agent=ppo", "env=CartPole"]).env
    result = evaluate_episodes(lambda obs: np.zeros(len(obs), dtype=np.int64), plain, 2, seed=0)
    assert result.success is None and result.mode is None and result.rates() == {}


@pytest.mark.parametrize(("agent", "env", "mode"), [("bc", "Particle", False), ("mdn", "Avoid", True)])
def test_a_cli_run_writes_success_to_its_summary_eval_csv_and_tensorboard(agent, env, mode, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_run(tmp_path / "run", f"agent={agent}", f"env={env}", "total_steps=60", "eval_every=30",
                    "eval_episodes=3", "agent.n_trajectories=3", "agent.batch_size=16")
    summary = json.loads((run / "summary.json").read_text())
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["action_latency_ms"] > 0
    assert summary["expert_success_rate"] == 1.0 and ("mode_fraction" in summary) == mode
    columns, rows = read_csv(run / "eval.csv")
    assert "success_rate" in columns and ("mode_fraction" in columns) == mode and len(rows) == 2
    tb = EventAccumulator(str(run / "tb"), size_guidance={"images": 0}).Reload()
    assert len(tb.Images("eval/policy")) == 2
    assert {"eval/success_rate", "eval/action_latency_ms", "train/loss"} <= set(tb.Tags()["scalars"])


@pytest.mark.parametrize(("overrides", "fragments"), [
    (("agent=mdn", "env=CartPole"), ("mdn", "Box", "Discrete")),
    (("agent=mdn", "env=Pendulum", "expert=no/such/run"), ("no such run directory 'no/such/run'",)),
    (("agent=bc", "env=Step", "agent.demo_env=rlgen/Avoid-v0"), ("observations of size 2",)),
])
def test_a_policy_without_demonstrations_to_learn_from_is_one_line_and_no_run(overrides, fragments, tmp_path,
                                                                             main_in_process):
    out = main_in_process(*overrides, f"runs_root={tmp_path}", "total_steps=10", "progress=false")
    assert_user_error(out, *fragments)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("deterministic", [True, False])
def test_evaluations_act_as_eval_deterministic_says(deterministic, tmp_path, main_in_process, monkeypatch):
    from rlgen.agents.bc import MDN

    asked = []
    policy = MDN.episode_policy
    monkeypatch.setattr(MDN, "episode_policy", lambda self, d=True: asked.append(d) or policy(self, d))
    out = main_in_process("agent=mdn", "env=Step", f"run_dir={tmp_path / 'run'}", "total_steps=20", "eval_every=10",
                          "eval_episodes=2", "agent.n_trajectories=5", "agent.batch_size=8", "progress=false",
                          f"eval_deterministic={str(deterministic).lower()}")
    assert out.returncode == 0 and asked == [deterministic, deterministic]  # one per evaluation
