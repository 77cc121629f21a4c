"""The benchmark harness end to end: suites, the process pool, resuming, the report's numbers."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rlgen import bench
from rlgen import benchstats as bs
from rlgen.benchsuite import Options, _lookup, find_suite, load_suite, plan
from rlgen.cli import parse_settings
from rlgen.compose import load_config
from rlgen.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def _summaries(logdir: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for path in logdir.glob("*/*/seed*/summary.json"):
        summary = json.loads(path.read_text())
        out[(summary["agent"], summary["seed"])] = {**summary, "dir": path.parent}
    return out


@pytest.mark.slow
def test_smoke_suite_end_to_end_through_the_process_pool(tmp_path, capsys):
    logdir, out = tmp_path / "runs", tmp_path / "report"
    with pytest.raises(SystemExit) as exit_:
        bench.main(["smoke", "workers=1", f"logdir={logdir}", f"out={out}"])
    assert exit_.value.code == 0
    runs = _summaries(logdir)
    assert sorted(runs) == [(a, s) for a in ("ppo", "sb3_ppo") for s in (0, 1, 2)]
    assert all(r["status"] == "completed" and r["total_steps"] >= 4096 for r in runs.values())
    # one logdir, one sub-tree per run: TensorBoard overlays ours and SB3's
    assert all(any((r["dir"] / "tb").iterdir()) for r in runs.values())

    # the report's numbers, recomputed from the run directories alone
    report = (out / "REPORT.md").read_text()
    results = json.loads((out / "results.json").read_text())
    for row in results["tables"]["CartPole"]:
        mine = [r for (a, _), r in runs.items() if a == row["agent"]]
        finals = np.array([r["eval_mean_return"] for r in mine])
        assert row["iqm"] == pytest.approx(bs.iqm(finals))
        lo, hi = bs.bootstrap_ci(finals)
        assert row["ci"] == [pytest.approx(lo), pytest.approx(hi)]
        assert lo <= row["iqm"] <= hi
        # rlgen's PPO seeds were trained as one group: each counts its share of the group's time
        groups = [r.get("group_size", 1) for r in mine]
        assert groups == ([3, 3, 3] if row["agent"] == "ppo" else [1, 1, 1])
        shares = list(zip(mine, groups, strict=True))
        assert row["sps"] == pytest.approx(np.mean([r["steps_per_second"] * g for r, g in shares]))
        assert row["wall"] == pytest.approx(np.mean([r["wall_seconds"] / g for r, g in shares]))
        peaks = [json.loads((r["dir"] / "bench.json").read_text())["peak_rss_mb"] for r in mine]
        assert row["peak_mb"] == pytest.approx(max(peaks)) and 50 < row["peak_mb"] < 4000
        assert row["solved"] == sum(r["solved_at_step"] is not None for r in mine)
        line = next(ln for ln in report.splitlines() if ln.startswith(f"| {row['agent']} | 3 |"))
        assert f"{bs.iqm(finals):.2f} [{lo:.2f}, {hi:.2f}]" in line
        assert f"| {row['solved']}/3 |" in line and f"| {max(peaks):.0f} |" in line
    hours = sum(r["wall_seconds"] / r.get("group_size", 1) for r in runs.values()) / 3600
    assert f"- time: {hours:.2f} hours of wall time summed over the completed runs" in report
    # the verdicts: final return and AUC, each a permutation test, Holm over both (the report's family)
    cells, tests = [], []
    for measure in ("final", "auc"):
        x, y = ([runs[(a, s)]["eval_mean_return"] if measure == "final" else _auc(runs[(a, s)]["dir"])
                 for s in range(3)] for a in ("ppo", "sb3_ppo"))
        tests.append((bs.probability_of_improvement(x, y), bs.permutation_pvalue(x, y)))
        ci = bs.probability_of_improvement_ci(x, y)
        cells.append(f"{tests[-1][0]:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] | {tests[-1][1]:.3f}")
    verdicts = bs.verdicts(*zip(*tests, strict=True), smallest=[bs.smallest_pvalue([(3, 3)])] * 2)
    holm = bs.holm([p for _, p in tests])
    row = " | ".join(f"{c} | {h:.3f} | **{v}**" for c, h, v in zip(cells, holm, verdicts, strict=True))
    assert f"| ppo | sb3_ppo | CartPole | 3 / 3 | {row} |" in report
    # 3 runs a side: no split gives p below 2 / C(6, 3) = 0.1, so no outcome could have been called
    assert verdicts == ["too few runs", "too few runs"]
    assert "family holds **2 comparisons**" in report
    assert (out / "curves_CartPole.png").stat().st_size > 10_000
    assert "seeds: 0, 1, 2" in report and "torch: " in report and "cores: " in report

    # a second call runs nothing; an interrupted run is resumed, the others are left alone
    interrupted = runs[("sb3_ppo", 1)]["dir"] / "summary.json"
    interrupted.write_text(interrupted.read_text().replace('"completed"', '"interrupted"'))
    untouched = runs[("ppo", 0)]["dir"] / "summary.json"
    before = untouched.stat().st_mtime_ns
    capsys.readouterr()
    with pytest.raises(SystemExit):
        bench.main(["smoke", "workers=1", f"logdir={logdir}", f"out={out}"])
    printed = capsys.readouterr().out
    assert "6 runs, 5 already done" in printed and "[1/1] completed" in printed
    assert json.loads(interrupted.read_text())["status"] == "completed"
    assert untouched.stat().st_mtime_ns == before


def _auc(run_dir: Path) -> float:
    """The normalised area under a run's eval.csv curve."""
    with open(run_dir / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return bs.normalised_auc([float(r["step"]) for r in rows], [float(r["mean_return"]) for r in rows])


def options(*args: str) -> Options:
    return parse_settings(list(args), Options, "python -m rlgen.bench")


def test_classic_suite_plans_rl_zoo_budgets(tmp_path):
    suite = load_suite(find_suite("classic"))
    jobs = plan(suite, options(), tmp_path)
    budget = {(j.agent, j.env): j.budget for j in jobs}
    assert budget[("ppo", "CartPole")] == budget[("sb3_ppo", "CartPole")] == 100_000
    assert budget[("dqn", "MountainCar")] == budget[("sb3_dqn", "MountainCar")] == 120_000
    assert budget[("dqn", "Acrobot")] == 100_000 and budget[("sb3_a2c", "LunarLander")] == 200_000
    # RL Zoo's budgets, uncut; ours and SB3's share every budget
    assert budget[("ppo", "Acrobot")] == budget[("sb3_ppo", "MountainCar")] == 1_000_000
    assert budget[("sb3_a2c", "MountainCar")] == 1_000_000 and budget[("ppo", "LunarLanderContinuous")] == 1_000_000
    assert budget[("ppo", "Pendulum")] == budget[("sb3_ppo", "Pendulum")] == 100_000
    assert all(budget[(a, env)] == budget[(f"sb3_{a}", env)] for a in ("ppo", "dqn", "a2c") for env in suite.envs
               if (a, env) in budget)
    assert ("dqn", "Pendulum") not in budget and ("reinforce", "Acrobot") in budget
    assert budget[("a2c", "Pendulum")] == budget[("sb3_a2c", "Pendulum")] == 1_000_000
    assert ("a2c", "LunarLanderContinuous") not in budget
    seeds = {(j.agent, j.env): set() for j in jobs}
    for j in jobs:
        seeds[(j.agent, j.env)].add(j.seed)
    for env in ("CartPole", "MountainCar", "LunarLander"):
        assert seeds[("ppo", env)] == seeds[("sb3_dqn", env)] == seeds[("a2c", env)] == set(range(10))
    assert seeds[("reinforce", "CartPole")] == seeds[("reinforce", "Acrobot")] == set(range(5))
    assert seeds[("a2c", "Acrobot")] == seeds[("sb3_a2c", "Acrobot")] == set(range(20))  # a close verdict
    assert seeds[("ppo", "Acrobot")] == set(range(10))
    pendulum = load_config(next(j for j in jobs if j.agent == "sb3_ppo" and j.env == "Pendulum").overrides)
    assert pendulum.agent.use_sde and pendulum.agent.sde_sample_freq == 4  # RL Zoo's gSDE, on both sides
    a2c = next(j for j in jobs if j.agent == "sb3_a2c" and j.env == "LunarLander")
    config = load_config(a2c.overrides)
    assert config.agent.gamma == 0.995 and config.agent.lr_schedule == "linear"
    normalised = load_config(next(j for j in jobs if j.agent == "sb3_ppo" and j.env == "MountainCar").overrides)
    assert normalised.agent.normalize_obs and normalised.agent.normalize_reward
    cut = plan(suite, options("seeds=2", "budget_scale=0.1", "envs=CartPole"), tmp_path)
    assert {j.seed for j in cut} == {0, 1} and {j.env for j in cut} == {"CartPole"}
    assert {(j.agent, j.budget) for j in cut if j.agent == "dqn"} == {("dqn", 5000)}
    assert "eval_every=250" in next(j for j in cut if j.agent == "dqn").overrides
    few_evals = options("budget_scale=0.1", "evals=4", "eval_episodes=3", "envs=LunarLander")
    few = plan(suite, few_evals, tmp_path)
    ppo = next(j for j in few if j.agent == "ppo" and j.env == "LunarLander")
    assert ppo.budget == 100_000 and "eval_every=25000" in ppo.overrides and "eval_episodes=3" in ppo.overrides
    assert options("eval_episodes=3").cut and not options("evals=4").cut


def test_tabular_suite_is_a_valid_dp_error_suite():
    suite = load_suite(find_suite("tabular"))
    assert suite.metric == "dp_error" and "FrozenLake" in suite.envs
    assert _lookup(suite.step_sweep, "value_iteration", "CliffWalking")[-1] == [1, 3, 10, 30, 100, 300, 1000]
    assert _lookup(suite.step_sweep, "policy_iteration", "CliffWalking")[-1] == [1, 2, 3, 5, 10]


@pytest.mark.parametrize("argv, message", [
    (["smok"], "unknown suite 'smok' (did you mean 'smoke'"),
    (["smoke", "budget_scale=2"], "budget_scale must be in (0, 1]"),
    (["smoke", "backend=dask"], "unknown backend 'dask'"),
    (["smoke", "worker=2"], "unknown setting 'worker' (did you mean 'workers'"),
    (["smoke", "seeds=two"], "seeds: Value 'two' of type 'str' could not be converted to Integer"),
    (["smoke", "workers=-1"], "workers must be >= 0"),
    (["smoke", "agents=dqn"], "unknown agent in this suite 'dqn'"),
    (["smoke", "envs=CartPole,Pong"], "unknown env in this suite 'Pong'"),
    (["smoke", "report_only=ture"], "report_only: Value 'ture' is not a valid bool"),
])
def test_user_mistakes_are_one_line_and_exit_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        bench.main([*argv, f"logdir={tmp_path}", f"out={tmp_path}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1


def test_a_suite_file_with_a_typo_is_a_user_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nagents: [ppo]\nenvs: [CartPole]\nseed: [0]\n")
    with pytest.raises(UserError, match="seed"):
        load_suite(path)


def test_a_suite_value_out_of_range_is_a_user_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nagents: [ppo]\nenvs: [CartPole]\nruns_per_process: 0\n")
    with pytest.raises(UserError, match=r"suite .*bad.yaml: runs_per_process must be >= 1, got 0"):
        load_suite(path)


@pytest.mark.parametrize("key", ["ppo/Pong", "dqn", "all"])
def test_seeds_for_an_agent_or_env_the_suite_does_not_list_are_a_user_error(key, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nagents: [ppo]\nenvs: [CartPole]\nagent_seeds:\n  {key}: [0, 1]\n")
    with pytest.raises(UserError, match=f"agent_seeds names {key}: a key is an agent or env the suite lists"):
        load_suite(path)


def test_the_most_specific_seed_list_applies(tmp_path):
    path = tmp_path / "seeds.yaml"
    path.write_text("name: seeds\nagents: [ppo, dqn]\nenvs: [CartPole, Acrobot]\nseeds: [0]\n"
                    "agent_seeds:\n  dqn/Acrobot: [5, 6, 7]\n  dqn: [3, 4]\n  Acrobot: [1, 2]\n")
    jobs = plan(load_suite(path), options(), tmp_path)
    seeds: dict[tuple[str, str], list[int]] = {}
    for job in jobs:
        seeds.setdefault((job.agent, job.env), []).append(job.seed)
    assert seeds == {("ppo", "CartPole"): [0], ("ppo", "Acrobot"): [1, 2], ("dqn", "CartPole"): [3, 4],
                     ("dqn", "Acrobot"): [5, 6, 7]}


def _bench(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        bench.main(list(argv))
    captured = capsys.readouterr()
    return int(exit_.value.code or 0), captured.out, captured.err


def test_report_only_without_runs_never_replaces_a_more_complete_report(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"runs": [{"status": "completed"}] * 6}))
    (out / "REPORT.md").write_text("# Benchmark report: `smoke`\n\n- runs: 6 (6 completed)\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["smoke", "report_only=true", f"logdir={tmp_path / 'clone-without-runs'}", f"out={out}"]

    code, _, err = _bench(capsys, *argv)
    assert code == 2 and err.count("\n") == 1
    assert f"not replacing {out / 'REPORT.md'} (6 completed runs, 0 missing)" in err
    assert "(0 completed, 6 missing)" in err and "force=true" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    code, printed, _ = _bench(capsys, *argv, "force=true")
    assert code == 0 and f"report written: {out / 'REPORT.md'}" in printed
    assert [r["status"] for r in json.loads((out / "results.json").read_text())["runs"]] == ["missing"] * 6
    # as complete as the report it replaces: written without force
    code, printed, _ = _bench(capsys, *argv)
    assert code == 0 and f"report written: {out / 'REPORT.md'}" in printed


def test_a_report_that_cannot_be_compared_is_not_replaced(tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "REPORT.md").write_text("# written by hand\n")
    code, _, err = _bench(capsys, "smoke", "report_only=true", f"logdir={tmp_path / 'runs'}", f"out={out}")
    assert code == 2 and err.count("\n") == 1 and "results.json cannot be read" in err and "force=true" in err
    assert [p.name for p in out.iterdir()] == ["REPORT.md"]
    assert (out / "REPORT.md").read_text() == "# written by hand\n"


@pytest.mark.slow
def test_a_tiny_suite_on_a_local_ray_instance(tmp_path):
    ray = pytest.importorskip("ray")
    suite = tmp_path / "tiny.yaml"
    suite.write_text("name: tiny\nagents: [ppo]\nenvs: [CartPole]\nseeds: [0, 1]\n"
                     "steps: {all: 512}\noverrides: {all: [eval_every=256, eval_episodes=2]}\n")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        assert ray.is_initialized()
        with pytest.raises(SystemExit) as exit_:
            bench.main([str(suite), "backend=ray", f"logdir={tmp_path / 'runs'}", f"out={tmp_path / 'report'}"])
    finally:
        ray.shutdown()
    assert exit_.value.code == 0
    runs = _summaries(tmp_path / "runs")
    assert sorted(runs) == [("ppo", 0), ("ppo", 1)]
    assert all(r["status"] == "completed" and (r["dir"] / "bench.json").is_file() for r in runs.values())
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    finals = [r["eval_mean_return"] for r in runs.values()]
    assert results["tables"]["CartPole"][0]["iqm"] == pytest.approx(bs.iqm(finals))


def test_runs_are_grouped_by_agent_env_and_budget_in_consecutive_seeds(tmp_path):
    from rlgen.benchsuite import Job

    def job(agent: str, seed: int, budget: int = 1000, env: str = "CartPole", **kw) -> Job:
        overrides = [f"agent={agent}", f"env={env}", f"seed={seed}", f"total_steps={budget}"]
        return Job(agent, env, seed, budget, str(tmp_path / env / agent / f"seed{seed}"), overrides, **kw)

    jobs = [job("ppo", s) for s in (0, 1, 2, 4, 5)] + [job("sb3_ppo", s) for s in (0, 1)]
    jobs += [job("dqn", s) for s in range(5)] + [job("ppo", 0, budget=2000), job("ppo", 1, budget=2000)]
    jobs += [job("ppo", 0, env="Acrobot"), job("gail", 0, after="x"), job("gail", 1, after="x")]
    units = [[(j.agent, j.env, j.seed, j.budget) for j in unit] for unit in bench.groups(jobs, size=3)]
    assert units == [
        [("ppo", "CartPole", 0, 1000), ("ppo", "CartPole", 1, 1000), ("ppo", "CartPole", 2, 1000)],
        [("ppo", "CartPole", 4, 1000), ("ppo", "CartPole", 5, 1000)],  # seed 3 is not planned: a new group
        [("sb3_ppo", "CartPole", 0, 1000)], [("sb3_ppo", "CartPole", 1, 1000)],  # SB3 learns one seed at a time
        [("dqn", "CartPole", 0, 1000), ("dqn", "CartPole", 1, 1000), ("dqn", "CartPole", 2, 1000)],
        [("dqn", "CartPole", 3, 1000), ("dqn", "CartPole", 4, 1000)],
        [("ppo", "CartPole", 0, 2000), ("ppo", "CartPole", 1, 2000)],
        [("ppo", "Acrobot", 0, 1000)], [("gail", "CartPole", 0, 1000)], [("gail", "CartPole", 1, 1000)],
    ]
    assert all(len(unit) == 1 for unit in bench.groups(jobs, size=1))


def test_a_group_stopped_before_its_budget_goes_on_as_a_group(tmp_path):
    from rlgen.benchsuite import Job
    from rlgen.seed_groups import read_group

    parent = tmp_path / "CartPole" / "ppo"
    jobs = [Job("ppo", "CartPole", s, 1024, str(parent / f"seed{s}"),
                ["agent=ppo", "env=CartPole", f"seed={s}", "total_steps=1024", "eval_every=512",
                 "agent.n_steps=64", "progress=false"]) for s in (3, 4)]
    first = bench.run_group([replace(j, budget=512, overrides=[*j.overrides, "total_steps=512"]) for j in jobs])
    assert [r["status"] for r in first] == ["completed", "completed"]
    assert sorted(read_group(parent / "seed3")) == [parent / "seed3", parent / "seed4"]
    results = bench.run_group(jobs)  # resumed, both, to the larger budget
    assert [r["status"] for r in results] == ["completed", "completed"]
    for s in (3, 4):
        summary = json.loads((parent / f"seed{s}" / "summary.json").read_text())
        assert summary["total_steps"] == 1024 and summary["seed"] == s and summary["group_size"] == 2
        assert json.loads((parent / f"seed{s}" / "bench.json").read_text())["group_size"] == 2


TINY = ("name: tiny\nagents: [ppo]\nenvs: [CartPole]\nseeds: [0, 1]\n"
        "steps: {all: 512}\noverrides: {all: [eval_every=256, eval_episodes=2%s]}\n")


@pytest.mark.slow
def test_a_suite_goes_on_from_the_runs_its_report_records(tmp_path, capsys):
    """A report's results.json keeps each completed run's record: on another machine (an empty logdir) the
    same suite runs only what changed (its config, a package version) and reports the rest as recorded."""
    suite, out = tmp_path / "tiny.yaml", tmp_path / "report"
    suite.write_text(TINY % "")
    code, _, _ = _bench(capsys, str(suite), "workers=1", "group=1", f"logdir={tmp_path / 'a'}", f"out={out}")
    assert code == 0
    first = json.loads((out / "results.json").read_text())
    assert all(r["status"] == "completed" and r["curve"][0] == [256, 512] and len(r["config"]) == 16
               for r in first["runs"])

    # another machine: nothing is trained, the report is the same report, and says where its runs came from
    code, printed, _ = _bench(capsys, str(suite), "workers=1", f"logdir={tmp_path / 'b'}", f"out={out}")
    assert code == 0 and f"2 runs, 2 already done (2 as recorded in {out / 'results.json'})" in printed
    assert not (tmp_path / "b").exists()
    second = json.loads((out / "results.json").read_text())
    assert second["tables"] == first["tables"] and second["comparisons"] == first["comparisons"]
    assert [r["curve"] for r in second["runs"]] == [r["curve"] for r in first["runs"]]
    assert all(r["kept"] for r in second["runs"])
    assert "2 of the runs were done before" in (out / "REPORT.md").read_text()

    # a record made with another version of a package it ran on is run again, and only that one
    second["runs"][1]["versions"]["torch"] = "0.0"
    (out / "results.json").write_text(json.dumps(second))
    code, printed, _ = _bench(capsys, str(suite), "workers=1", f"logdir={tmp_path / 'c'}", f"out={out}")
    assert code == 0 and "2 runs, 1 already done" in printed
    assert [p.name for p in (tmp_path / "c" / "CartPole" / "ppo").iterdir()] == ["seed1"]
    third = json.loads((out / "results.json").read_text())
    assert [bool(r.get("kept")) for r in third["runs"]] == [True, False]
    # the run made again from the same config and seed gives the record it replaces
    assert third["runs"][1]["curve"] == first["runs"][1]["curve"]

    # a changed config (here the evaluation's episodes) runs everything again; so does reuse=false
    suite.write_text(TINY % ", eval_deterministic=false")
    code, printed, _ = _bench(capsys, str(suite), "workers=1", f"logdir={tmp_path / 'd'}", f"out={out}")
    assert code == 0 and "2 runs, 0 already done" in printed
    code, printed, _ = _bench(capsys, str(suite), "workers=1", "reuse=false", f"logdir={tmp_path / 'e'}",
                              f"out={out}")
    assert code == 0 and "2 runs, 0 already done" in printed
    assert sorted(p.name for p in (tmp_path / "e" / "CartPole" / "ppo").iterdir()) == ["seed0", "seed1"]
