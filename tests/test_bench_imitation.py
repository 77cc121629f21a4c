"""The imitation suite: runs that build on other runs (an expert, a start) are planned after them and
handed their directory; the report compares GAIL and BC with the expert and a random policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import in_process

from rlgen import bench
from rlgen.benchsuite import Options, find_suite, load_suite, plan
from rlgen.cli import parse_settings

TINY = """\
name: tiny
agents: [expert, gail_2, bc_2, bc_1]
envs: [CartPole]
variants:
  expert: {agent: ppo, seeds: [0]}
  gail_2: {agent: gail, builds_on: expert, builds_on_seed: 0, overrides: [agent.n_trajectories=2]}
  bc_2: {agent: bc, builds_on: expert, builds_on_seed: 0, overrides: [agent.n_trajectories=2]}
  bc_1: {agent: bc, builds_on: expert, builds_on_seed: 0, overrides: [agent.n_trajectories=1]}
seeds: [0, 1]
metric: imitation
steps: {expert: 4096, gail: 1024, bc: 50}
overrides:
  all: [eval_every=0, eval_episodes=4]
  gail: [agent.n_steps=64, agent.n_envs=4, agent.disc_batch_size=64]
runs_per_process: 20
"""


def options(*args: str) -> Options:
    return parse_settings(list(args), Options, "python -m rlgen.bench")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_the_imitation_suite_builds_every_learner_on_one_expert_per_env(tmp_path):
    suite = load_suite(find_suite("imitation"))
    jobs = plan(suite, options(), tmp_path)
    experts = [j for j in jobs if j.agent == "expert"]
    assert [(j.env, j.seed) for j in experts] == [("CartPole", 0), ("Acrobot", 0), ("LunarLander", 0)]
    for job in jobs:
        if job.agent.startswith(("gail", "bc")):
            expert = str(tmp_path / job.env / "expert" / "seed0")
            assert job.after == expert and f"expert={expert}" in job.overrides
            assert f"agent.n_trajectories={job.agent.split('_')[1]}" in job.overrides
    assert {j.seed for j in jobs if j.agent == "gail_10"} == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("text, message", [
    ("agents: [bc]\nenvs: [CartPole]\nvariants: {S: {env: CartPole, builds_on: bc}}\n", "apply to agent variants"),
    ("agents: [g]\nenvs: [CartPole]\nvariants: {g: {agent: gail, builds_on: ex}}\n",
     "builds on ex, which is not listed"),
    ("agents: [p, g]\nenvs: [CartPole]\nvariants: {p: {agent: ppo}, g: {agent: dqn, builds_on: p}}\n",
     "agent dqn builds on no run"),
])
def test_a_bad_builds_on_is_one_line_and_exit_2(text, message, tmp_path, capsys):
    path = write(tmp_path, "name: bad\n" + text)
    out = in_process(bench.main, capsys)(str(path), f"logdir={tmp_path / 'runs'}", f"out={tmp_path / 'out'}")
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_a_run_whose_foundation_is_not_planned_is_refused(tmp_path, capsys):
    out = in_process(bench.main, capsys)(str(write(tmp_path, TINY)), "agents=gail_2", f"logdir={tmp_path / 'r'}",
                                         f"out={tmp_path / 'o'}")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "gail_2 builds on the runs of expert, which this plan does not train on CartPole (seed 0)" in out.stderr


def test_the_tiny_imitation_suite_runs_and_reports(tmp_path, capsys):
    logdir, out_dir = tmp_path / "runs", tmp_path / "out"
    out = in_process(bench.main, capsys)(str(write(tmp_path, TINY)), f"logdir={logdir}", f"out={out_dir}",
                                         "workers=2")
    assert out.returncode == 0, out.stderr
    expert = logdir / "CartPole" / "expert" / "seed0"
    for label in ("gail_2", "bc_2", "bc_1"):
        for seed in (0, 1):
            run = logdir / "CartPole" / label / f"seed{seed}"
            summary = json.loads((run / "summary.json").read_text())
            assert summary["status"] == "completed" and summary["demo_episodes"] == int(label[-1])
            assert f"expert: {expert}" in (run / "config.yaml").read_text()
    results = json.loads((out_dir / "results.json").read_text())
    table = results["imitation"]["CartPole"]
    expert_return = json.loads((expert / "summary.json").read_text())["eval_mean_return"]
    assert table["expert"] == pytest.approx(expert_return) and 10 < table["random"] < 40  # CartPole's random: ~22
    rows = {r["label"]: r for r in table["rows"]}
    assert list(rows) == ["gail_2", "bc_1", "bc_2"] and rows["bc_1"]["trajectories"] == 1
    for row in rows.values():
        by_hand = [(x - table["random"]) / (table["expert"] - table["random"]) for x in row["scores"]]
        assert row["normalised"] == pytest.approx(by_hand)
    report = (out_dir / "REPORT.md").read_text()
    assert "## GAIL, BC and the expert" in report and "| GAIL | 2 | 2 |" in report
    assert (out_dir / "imitation_CartPole.png").is_file() and (out_dir / "curves_CartPole.png").is_file()

    # on another machine, from the records: a run to do whose expert is only a record trains the expert again
    results["runs"][-1]["versions"]["numpy"] = "0.0"  # bc_1, seed 1: made with another numpy
    (out_dir / "results.json").write_text(json.dumps(results))
    again = in_process(bench.main, capsys)(str(write(tmp_path, TINY)), f"logdir={tmp_path / 'b'}",
                                           f"out={out_dir}", "workers=2")
    assert again.returncode == 0, again.stderr
    assert f"7 runs, 5 already done (5 as recorded in {out_dir / 'results.json'})" in again.stdout
    made = sorted(str(p.relative_to(tmp_path / "b")) for p in (tmp_path / "b").glob("*/*/seed*"))
    assert made == ["CartPole/bc_1/seed1", "CartPole/expert/seed0"]
    table_again = json.loads((out_dir / "results.json").read_text())["imitation"]["CartPole"]
    assert (table_again["expert"], table_again["random"]) == (table["expert"], table["random"])
    # the runs trained again, from the same config and seed, score as before
    assert [r["scores"] for r in table_again["rows"]] == [r["scores"] for r in table["rows"]]
