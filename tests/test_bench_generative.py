"""The generative suite: variants, evaluation-only runs, the success report, Step's error near the jump."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import in_process

from rlgen import bench
from rlgen import benchstats as bs
from rlgen.benchsuite import Options, find_suite, load_suite, plan, suite_agents
from rlgen.cli import parse_settings
from rlgen.envs.imitation_tasks import StepEnv, step_target

TINY = """\
name: tiny
agents: [bc, mdn, bc_eval20]
envs: [Avoid, Step, Step2]
variants:
  bc_eval20: {agent: bc, overrides: [eval_episodes=20], evaluate_only: true}
  Step2: {env: Step, overrides: [env.two_valued=true]}
seeds: [0, 1]
metric: success
steps: {all: 200}
overrides: {all: [eval_every=0, eval_episodes=10, agent.n_trajectories=20]}
runs_per_process: 50
"""


def options(*args: str) -> Options:
    return parse_settings(list(args), Options, "python -m rlgen.bench")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return path


def test_step_policy_metrics_separate_the_jump_from_elsewhere():
    env = StepEnv()
    assert env.policy_metrics(step_target) == {"error_near_jump": 0.0, "error_elsewhere": 0.0}
    # a regression's straight line through the jump misses both branches by 1/2 everywhere
    assert env.policy_metrics(lambda s: 0.5 * s) == pytest.approx({"error_near_jump": 0.5, "error_elsewhere": 0.5})
    # exact except within 0.05 of the jump, where it interpolates: s/2 there misses by 1/2
    blurred = lambda s: np.where(np.abs(s) < 0.05, 0.5 * s, step_target(s))  # noqa: E731
    assert env.policy_metrics(blurred) == pytest.approx({"error_near_jump": 0.5, "error_elsewhere": 0.0})
    # two-valued: the negative branch is as correct as the other
    assert StepEnv(two_valued=True).policy_metrics(lambda s: -step_target(s))["error_elsewhere"] == 0.0


def test_the_generative_suite_plans_every_task_with_the_same_demonstrations_and_network(tmp_path):
    suite = load_suite(find_suite("generative"))
    agents, absent = suite_agents(suite)
    assert suite.metric == "success" and suite.envs == ["Particle", "Avoid", "Step", "Step2"]
    # the variants join with their base agent, by name, once it is registered
    assert {"mdn_sampled", "ibc", "ibc_sampled", "ibc_langevin", "diffusion", "diffusion_ddpm"} == (
        set(agents[2:]) | set(absent))
    assert all((label in absent) == (v.agent in absent) for label, v in suite.variants.items() if v.agent)
    jobs = plan(suite, options("agents=bc,mdn"), tmp_path)
    assert len(jobs) == 2 * 4 * 5 and {j.seed for j in jobs} == {0, 1, 2, 3, 4}
    assert all("agent.demo_seed=0" in j.overrides and "agent.net_arch=[256,256]" in j.overrides for j in jobs)
    step2 = [j for j in jobs if j.env == "Step2"]
    assert all(j.overrides[:3] == [f"agent={j.agent}", "env=Step", "env.two_valued=true"] for j in step2)
    assert Path(step2[0].run_dir).parent.parent.name == "Step2"
    assert all(j.budget == (5_000 if j.env.startswith("Step") else 20_000) for j in jobs)  # one-step tasks: fewer
    # per task, every policy learns from the same demonstrations (the last n_trajectories given wins)
    demos = {(j.env, [o for o in j.overrides if o.startswith("agent.n_trajectories=")][-1]) for j in jobs}
    assert len(demos) == len(suite.envs)


def test_variants_take_their_base_tables_then_their_own(tmp_path):
    path = write(tmp_path, """\
name: v
agents: [bc, bc_small, bc_eval]
optional_agents: [mdn_wide, sqil_small]
envs: [Step, Step2]
variants:
  bc_small: {agent: bc, overrides: [agent.batch_size=32]}
  bc_eval: {agent: bc, overrides: [eval_episodes=7], evaluate_only: true}
  mdn_wide: {agent: mdn, overrides: [agent.n_components=8]}
  sqil_small: {agent: sqil, overrides: [agent.batch_size=32]}
  Step2: {env: Step, overrides: [env.two_valued=true]}
seeds: [0, 1]
steps: {bc: 300, bc_small/Step2: 100}
overrides: {Step: [eval_episodes=3]}
exclude: [mdn/Step2]
""")
    suite = load_suite(path)
    # a variant of an agent that is not registered (yet) is left out, as its base would be
    assert suite_agents(suite) == (["bc", "bc_small", "bc_eval", "mdn_wide"], ["sqil_small"])
    jobs = {(j.agent, j.env, j.seed): j for j in plan(suite, options(), tmp_path / "runs")}
    assert not any(a == "mdn_wide" and e == "Step2" for a, e, _ in jobs)  # excluded by its base's name
    small = jobs[("bc_small", "Step2", 1)]
    assert small.budget == 100 and jobs[("bc_small", "Step", 1)].budget == 300
    assert small.overrides[:4] == ["agent=bc", "env=Step", "env.two_valued=true", "agent.batch_size=32"]
    assert "eval_episodes=3" in small.overrides  # the base env's overrides apply to its variant
    assert small.run_dir == str(tmp_path / "runs" / "Step2" / "bc_small" / "seed1")
    assert "agent.n_components=8" in jobs[("mdn_wide", "Step", 0)].overrides
    evaluation = jobs[("bc_eval", "Step2", 1)]
    trained = jobs[("bc", "Step2", 1)]
    assert evaluation.source == trained.run_dir and not trained.source
    assert evaluation.overrides == [*trained.overrides, "eval_episodes=7"] and evaluation.budget == 300


@pytest.mark.parametrize("text, message", [
    ("variants: {bc2: {agent: bc, env: Step}}\nagents: [bc2]\nenvs: [Step]\n", "a variant names exactly one base"),
    ("variants: {bc2: {agent: bc}}\nagents: [bc]\nenvs: [Step]\n", "variant bc2 (of bc) is not listed in agents"),
    ("variants: {S2: {env: Step, evaluate_only: true}}\nagents: [bc]\nenvs: [S2]\n", "evaluate_only applies to agent"),
    ("variants: {bc: {agent: bc}}\nagents: [bc]\nenvs: [Step]\n", "its base must be a plain agent or env"),
    ("variants: {bc2: {agent: bcc}}\nagents: [bc2]\nenvs: [Step]\n", "unknown agent 'bcc' (did you mean 'bc'"),
    ("variants: {bc2: {agnt: bc}}\nagents: [bc2]\nenvs: [Step]\n", "Key 'agnt' not in 'Variant'"),
    ("agents: [bc]\nenvs: [Step]\nmetric: sucess\n", "metric must be one of return, dp_error, success"),
    ("variants: {bc2: {agent: bc, overrides: [agent.samplr=ddim], evaluate_only: true}}\nagents: [bc, bc2]\n"
     "envs: [Step]\n", "variant bc2: agent bc has no field 'samplr'"),
])
def test_a_bad_suite_is_one_line_and_exit_2(text, message, tmp_path, capsys):
    path = write(tmp_path, "name: bad\n" + text)
    out = in_process(bench.main, capsys)(str(path), f"logdir={tmp_path / 'runs'}", f"out={tmp_path / 'out'}")
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_an_evaluation_only_variant_needs_its_base_in_the_plan(tmp_path, capsys):
    path = write(tmp_path, TINY)
    out = in_process(bench.main, capsys)(str(path), "agents=mdn,bc_eval20", f"logdir={tmp_path}", f"out={tmp_path}")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert ("bc_eval20 evaluates the runs of bc, which this plan does not train on Avoid; add bc to agents="
            in out.stderr)


def _summaries(logdir: Path) -> dict[tuple[str, str, int], dict]:
    out = {}
    for path in logdir.glob("*/*/seed*/summary.json"):
        env, agent, seed = path.parts[-4], path.parts[-3], int(path.parts[-2].removeprefix("seed"))
        out[(agent, env, seed)] = {**json.loads(path.read_text()), "dir": path.parent}
    return out


@pytest.mark.slow
def test_a_tiny_generative_suite_end_to_end(tmp_path, capsys):
    logdir, out = tmp_path / "runs", tmp_path / "report"
    argv = (str(write(tmp_path, TINY)), "workers=1", f"logdir={logdir}", f"out={out}")
    assert in_process(bench.main, capsys)(*argv).returncode == 0
    runs = _summaries(logdir)
    assert len(runs) == 3 * 3 * 2 and all(r["status"] == "completed" for r in runs.values())

    # the evaluation-only variant: bc's trained models, evaluated on 20 episodes instead of 10
    for (agent, env, seed), r in runs.items():
        if agent == "bc_eval20":
            trained = runs[("bc", env, seed)]
            assert r["evaluated_from"] == str(trained["dir"]) and r["wall_seconds"] == trained["wall_seconds"]
            assert (r["dir"] / "eval.csv").read_text().splitlines()[1].endswith(",20")
    assert "error_near_jump" in runs[("bc", "Step", 0)] and "error_near_jump" not in runs[("bc", "Avoid", 0)]
    assert all(r["action_latency_one_ms"] > 0 for r in runs.values())

    # the tables, recomputed from the run directories
    report, results = (out / "REPORT.md").read_text(), json.loads((out / "results.json").read_text())
    for env in ("Avoid", "Step", "Step2"):
        assert [row["agent"] for row in results["tables"][env]] == ["bc", "mdn", "bc_eval20"]
        assert (out / f"policies_{env}.png").stat().st_size > 10_000 and f"![{env}](policies_{env}.png)" in report
        for row in results["tables"][env]:
            mine = [r for (a, e, _), r in runs.items() if a == row["agent"] and e == env]
            success = np.array([r["success_rate"] for r in mine])
            lo, hi = bs.bootstrap_ci(success)
            assert row["iqm"] == pytest.approx(bs.iqm(success)) and row["ci"] == [pytest.approx(lo), pytest.approx(hi)]
            section = report.split(f"\n## {env}\n")[1].split("\n## ")[0]
            line = next(ln for ln in section.splitlines() if ln.startswith(f"| {row['agent']} | 2 | 200 |"))
            assert f"{bs.iqm(success):.2f} [{lo:.2f}, {hi:.2f}]" in line
    step = next(row for row in results["tables"]["Step"] if row["agent"] == "bc")
    near = np.mean([runs[("bc", "Step", s)]["error_near_jump"] for s in (0, 1)])
    assert step["error_near_jump"] == pytest.approx(near) and f"{near:.3f} / " in report
    avoid = next(row for row in results["tables"]["Avoid"] if row["agent"] == "mdn")
    right = np.mean([runs[("mdn", "Avoid", s)]["mode_fraction"] for s in (0, 1)])
    assert avoid["mode_fraction"] == pytest.approx(right) and f"| {1 - right:.2f} / {right:.2f} |" in report
    assert "| mode 0 / mode 1 |" not in report.split("\n## Step\n")[1].split("\n## ")[0]
    assert "**Step2**: Step, with `env.two_valued=true`" in report
    assert "**bc_eval20**: the models of the bc runs, acting with `eval_episodes=20`" in report

    # a second call runs nothing
    again = in_process(bench.main, capsys)(*argv)
    assert again.returncode == 0 and "18 runs, 18 already done" in again.stdout
