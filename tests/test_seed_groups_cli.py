"""Seeds from the command line (python -m rlgen.train seeds=S): a group of S seeds writes S run
directories that pass the same checks as single runs, each member learns as its single run does,
and the group resumes, stops on Ctrl-C and survives a diverging member as one run does."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import assert_user_error, eval_steps, read_csv, read_json
from test_tensorboard import assert_tensorboard_shows_what_was_measured

from rlgen.agents.ppo import PPO
from rlgen.trainer import build_agent, load_run_config, load_trained

QUIET = ("env=CartPole", "eval_episodes=2", "progress=false")
GROUPS = {  # four evaluations each, for the TensorBoard check
    "ppo": ("agent=ppo", "total_steps=1024", "eval_every=256"),  # tuned: rollouts of 32 x 8 steps
    "dqn": ("agent=dqn", "total_steps=1200", "eval_every=300", "agent.learning_starts=200", "agent.gradient_steps=8"),
    "sql": ("agent=sql", "total_steps=1200", "eval_every=300", "agent.learning_starts=200", "agent.gradient_steps=8"),
}
FIRST_UPDATE = {  # the budget ends with the first update: one rollout, or one training phase (tuned: at step 1024)
    "ppo": ("agent=ppo", "total_steps=256", "agent.lr_schedule=constant", "agent.clip_range_schedule=constant"),
    "dqn": ("agent=dqn", "total_steps=1024", "agent.gradient_steps=16"),
    "sql": ("agent=sql", "total_steps=1024", "agent.gradient_steps=16"),
}


def tree(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every file under root with its bytes and modification time, every directory."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(Path(root).rglob("*"))}


def layout(run: Path) -> list[str]:
    """The files a run directory holds, TensorBoard's event files by kind (their names hold a time)."""
    return sorted(re.sub(r"events\.out\.tfevents\..*", "events", str(p.relative_to(run))) for p in run.rglob("*"))


def assert_run_like_single(member: Path, single: Path, seed: int, group_size: int) -> None:
    """`member` is what a single run of `seed` writes: the files of `single` (a single run of the same
    config), plus group.json; its config is that run's with its own seed; its logs have the same columns
    and evaluation steps; its summary the same keys, plus group_size; TensorBoard shows what it measured."""
    assert layout(member) == sorted([*layout(single), "group.json"])
    assert replace(load_run_config(member), run_dir=None) == replace(load_run_config(single), seed=seed, run_dir=None)
    for name in ("progress.csv", "eval.csv", "episodes.csv"):
        assert read_csv(member / name)[0] == read_csv(single / name)[0], name
    assert eval_steps(member) == eval_steps(single)
    summary, alone = read_json(member / "summary.json"), read_json(single / "summary.json")
    assert set(summary) == set(alone) | {"group_size"}
    assert (summary["seed"], summary["status"], summary["group_size"]) == (seed, "completed", group_size)
    assert summary["total_steps"] == alone["total_steps"] == eval_steps(member)[-1]
    assert summary["eval_mean_return"] == float(read_csv(member / "eval.csv")[1][-1]["mean_return"])
    assert_tensorboard_shows_what_was_measured(member)
    _, agent = load_trained(member)
    assert agent.num_steps == summary["total_steps"]


def group_of(run: Path) -> list[Path]:
    return [Path(os.path.normpath(run / name)) for name in read_json(run / "group.json")["runs"]]


# -- a group writes one whole run per seed ------------------------------------------------------------


@pytest.mark.parametrize("agent", sorted(GROUPS))
def test_a_group_writes_one_run_per_seed_each_as_its_single_run_would(agent, tmp_path, main_in_process):
    out = main_in_process(*GROUPS[agent], *QUIET, "seeds=3", f"run_dir={tmp_path}/x")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    members = [tmp_path / "x" / f"seed{k}" for k in range(3)]
    assert [line.split(" | ")[0] for line in out.stdout.splitlines()] == [f"run: {m}" for m in members]
    assert main_in_process(*GROUPS[agent], *QUIET, "seed=1", f"run_dir={tmp_path}/single").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single", "x"]
    for k, member in enumerate(members):
        assert_run_like_single(member, tmp_path / "single", seed=k, group_size=3)
        assert group_of(member) == members
        assert load_run_config(member).seeds == 1  # each run alone is an ordinary run of one seed


def test_a_group_from_another_seed_in_the_runs_root(tmp_path, main_in_process):
    out = main_in_process("agent=ppo", *QUIET, "total_steps=256", "seed=10", "seeds=2", f"runs_root={tmp_path}")
    assert out.returncode == 0, out.stderr
    runs = sorted(tmp_path.glob("CartPole/ppo/*"))
    assert [re.fullmatch(r"(\d+)-\d{8}-\d{6}", r.name).group(1) for r in runs] == ["10", "11"]
    assert [read_json(r / "summary.json")["seed"] for r in runs] == [10, 11]
    assert group_of(runs[0]) == group_of(runs[1]) == runs


@pytest.mark.parametrize("agent", sorted(FIRST_UPDATE))
def test_a_members_first_update_is_its_single_runs(agent, tmp_path, main_in_process):
    settings = (*FIRST_UPDATE[agent], *QUIET, "eval_every=0")
    assert main_in_process(*settings, "seeds=3", f"run_dir={tmp_path}/group").returncode == 0
    for k in range(3):
        assert main_in_process(*settings, f"seed={k}", f"run_dir={tmp_path}/single-{k}").returncode == 0
        cfg, member = load_trained(tmp_path / "group" / f"seed{k}")
        _, single = load_trained(tmp_path / f"single-{k}")
        untrained = build_agent(cfg).optimizer.data
        assert member.num_steps == single.num_steps == cfg.total_steps
        assert (single.optimizer.data - untrained).abs().max() > 1e-4  # the update did change the weights
        torch.testing.assert_close(member.optimizer.data, single.optimizer.data, rtol=0, atol=1e-6)
        assert member.n_updates == single.n_updates


# -- resume -------------------------------------------------------------------------------------------------


def test_resuming_any_member_continues_the_whole_group(tmp_path, main_in_process):
    members = [tmp_path / "x" / f"seed{k}" for k in range(3)]
    # 500 steps end with the second rollout, at 512
    out = main_in_process(*GROUPS["ppo"][:1], *QUIET, "total_steps=500", "eval_every=256", "seeds=3",
                          f"run_dir={tmp_path}/x")
    assert out.returncode == 0, out.stderr
    assert [read_json(m / "summary.json")["total_steps"] for m in members] == [512] * 3
    out = main_in_process(f"resume={members[1]}", "total_steps=1000")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert len(out.stdout.splitlines()) == 3
    for m in members:
        summary = read_json(m / "summary.json")
        assert (summary["status"], summary["total_steps"], summary["group_size"]) == ("completed", 1024, 3)
        assert eval_steps(m) == [256, 512, 768, 1024]
        assert read_json(m / "checkpoint.json")["n_resumes"] == 1
        assert_tensorboard_shows_what_was_measured(m)
    before = tree(tmp_path)
    # the same command again (a job scheduler's requeue): the rollout went past the budget, nothing is left
    out = main_in_process(f"resume={members[2]}", "total_steps=1000")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.splitlines() == [f"{m} has already completed its budget of 1024 steps; nothing to do (to train "
                                       f"it longer: resume={m} total_steps above 1024)" for m in members]
    assert tree(tmp_path) == before


def test_resuming_a_member_whose_sibling_is_gone_is_one_line(tmp_path, main_in_process):
    out = main_in_process(*GROUPS["ppo"][:1], *QUIET, "total_steps=256", "seeds=2", f"run_dir={tmp_path}/x")
    assert out.returncode == 0, out.stderr
    shutil.rmtree(tmp_path / "x" / "seed0")
    before = tree(tmp_path)
    assert_user_error(main_in_process(f"resume={tmp_path / 'x' / 'seed1'}", "total_steps=512"),
                      f"was trained in a group with {tmp_path / 'x' / 'seed0'}, which is gone", "group.json aside")
    assert tree(tmp_path) == before


# -- Ctrl-C -------------------------------------------------------------------------------------------------


def _interrupted(args: list[str], ready: list[Path]) -> subprocess.CompletedProcess[str]:
    """`python -m rlgen.train *args`, sent SIGINT once every path of `ready` exists."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rlgen.train", *args, "progress=false"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not all(p.exists() for p in ready):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "not ready after 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # did not stop: ended here, not left running after the test
            proc.kill()
            proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_ctrl_c_checkpoints_every_member_and_resuming_completes_them(tmp_path, main_in_process):
    members = [tmp_path / "x" / f"seed{k}" for k in range(3)]
    out = _interrupted(["agent=ppo", "env=CartPole", "total_steps=1000000", "eval_every=1024", "eval_episodes=2",
                        "seeds=3", f"run_dir={tmp_path}/x"], [m / "checkpoint.json" for m in members])
    assert out.returncode == 130 and out.stderr == "", out.stderr
    done = read_json(members[0] / "summary.json")["total_steps"]
    for m in members:  # in lockstep: every member stopped at the same step, its checkpoint's
        summary = read_json(m / "summary.json")
        assert (summary["status"], summary["stopped_by"], summary["total_steps"]) == ("interrupted", "SIGINT", done)
        assert read_json(m / "checkpoint.json")["num_steps"] == done
    assert out.stdout.splitlines()[-1] == (f"interrupted by SIGINT at step {done}; continue with: python -m "
                                           f"rlgen.train resume={members[0]} (the runs of its group with it)")
    out = main_in_process(f"resume={members[2]}", f"total_steps={done + 512}")
    assert out.returncode == 0, out.stderr
    for m in members:
        summary = read_json(m / "summary.json")
        assert summary["status"] == "completed" and summary["total_steps"] == eval_steps(m)[-1] >= done + 512


def test_ctrl_c_stops_seeds_trained_one_after_another(tmp_path):
    out = _interrupted(["agent=q_learning", "env=FrozenLake", "total_steps=10000000", "eval_every=1000",
                        "eval_episodes=2", "seeds=3", f"run_dir={tmp_path}/q"],
                       [tmp_path / "q" / "seed0" / "checkpoint.json"])
    assert out.returncode == 130 and out.stderr == "", out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["q"]
    assert [p.name for p in (tmp_path / "q").iterdir()] == ["seed0"]  # the later seeds were not started
    assert read_json(tmp_path / "q/seed0/summary.json")["status"] == "interrupted"
    assert out.stdout.splitlines()[-1].endswith(f"resume={tmp_path / 'q' / 'seed0'}; seeds 1..2 were not started "
                                                "(train them with seed=1 seeds=2)")


# -- a diverging member -------------------------------------------------------------------------------------


def nan_for_seed(monkeypatch, seed: int, after: int) -> None:
    """PPO's group update reports a NaN loss for the member of `seed` once it is past `after` steps."""
    update_group = PPO.update_group.__func__

    def poisoned(cls, agents, rollouts, progress_remaining):
        stats = update_group(cls, agents, rollouts, progress_remaining)
        return [s | {"train/loss": float("nan")} if a.seed == seed and a.num_steps > after else s
                for a, s in zip(agents, stats, strict=True)]

    monkeypatch.setattr(PPO, "update_group", classmethod(poisoned))


@pytest.mark.parametrize("after, kept", [(600, 512), (0, None)])
def test_a_diverging_member_leaves_the_group_and_the_others_complete(after, kept, tmp_path, monkeypatch,
                                                                   main_in_process):
    members = [tmp_path / "x" / f"seed{k}" for k in range(3)]
    with monkeypatch.context() as m:
        nan_for_seed(m, seed=1, after=after)
        out = main_in_process("agent=ppo", *QUIET, "total_steps=1024", "eval_every=512", "seeds=3",
                              f"run_dir={tmp_path}/x")
    assert out.returncode == 1
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("error: training diverged: train/loss is nan") and str(members[1]) in line
    assert [line.split(" | ")[0] for line in out.stdout.splitlines()] == [f"run: {members[0]}", f"run: {members[2]}"]
    for k in (0, 2):
        summary = read_json(members[k] / "summary.json")
        assert (summary["status"], summary["total_steps"], summary["group_size"]) == ("completed", 1024, 3)
    if kept is not None:  # as a single run's: the last good checkpoint kept, no summary
        assert f"the last good checkpoint (step {kept}) is kept" in line
        assert read_json(members[1] / "checkpoint.json")["num_steps"] == kept
        assert not (members[1] / "summary.json").exists()
        return
    assert "is marked failed" in line
    assert read_json(members[1] / "summary.json")["status"] == "failed"
    # resuming the group leaves out the member that has nothing to continue from, and says so
    out = main_in_process(f"resume={members[0]}", "total_steps=1536")
    assert out.returncode == 0, out.stderr
    assert f"{members[1]} failed before its first checkpoint" in out.stdout and "seed 1" in out.stdout
    assert [read_json(members[k] / "summary.json")["total_steps"] for k in (0, 2)] == [1536, 1536]
    assert_user_error(main_in_process(f"resume={members[1]}", "total_steps=1536"),
                      f"cannot resume {members[1]}: it failed before its first checkpoint")


# -- mistakes -------------------------------------------------------------------------------------------------


MISTAKES = {
    "seeds=0": (("seeds=0",), "seeds must be positive, got 0"),
    "seeds=-2": (("seeds=-2",), "seeds must be positive, got -2"),
    "seeds=abc": (("seeds=abc",), "seeds: Value 'abc'"),
    "seeds=1.5": (("seeds=1.5",), "seeds: Value '1.5'"),
    "past the largest seed": (("seed=2147483640", "seeds=9"), "goes past the largest seed, 2147483647"),
    "resume with seeds": (("resume={tmp}", "seeds=3"), "seeds cannot change"),
}


@pytest.mark.parametrize("case", list(MISTAKES))
def test_a_mistake_with_seeds_is_one_line_and_nothing_is_made(case, tmp_path, monkeypatch, main_in_process):
    args, fragment = MISTAKES[case]
    monkeypatch.chdir(tmp_path)  # where runs/ would go
    out = main_in_process("agent=ppo", *QUIET, "total_steps=256", *(a.format(tmp=tmp_path) for a in args))
    assert_user_error(out, fragment)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("agent", ["ppo", "q_learning"])  # a group, and seeds one after another
def test_a_run_dir_that_holds_a_run_is_not_a_place_for_seeds(agent, tmp_path, main_in_process):
    taken = tmp_path / "x"
    assert main_in_process("agent=q_learning", "env=GridWorld4x4", "total_steps=50", "eval_episodes=1",
                           f"run_dir={taken}", "progress=false").returncode == 0
    before = tree(tmp_path)
    out = main_in_process(f"agent={agent}", "env=GridWorld4x4", "total_steps=50", "eval_episodes=1", "seeds=3",
                          f"run_dir={taken}", "progress=false")
    assert_user_error(out, f"run_dir={taken} holds a run; with seeds=3 it is the directory of the seeds' runs")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("agent", ["ppo", "q_learning"])  # a group, and seeds one after another
def test_a_member_whose_run_dir_holds_a_run_is_refused_before_any_run_is_made(agent, tmp_path, main_in_process):
    taken = tmp_path / "x" / "seed1"
    assert main_in_process("agent=q_learning", "env=GridWorld4x4", "total_steps=50", "eval_episodes=1", "seed=1",
                           f"run_dir={taken}", "progress=false").returncode == 0
    before = tree(tmp_path)
    out = main_in_process(f"agent={agent}", "env=GridWorld4x4", "total_steps=50", "eval_episodes=1", "seeds=3",
                          f"run_dir={tmp_path}/x", "progress=false")
    assert_user_error(out, f"run_dir {taken} already holds a run")
    assert tree(tmp_path) == before  # x/seed0 was not made


# -- agents that do not learn in groups; sweeps; help ----------------------------------------------------


def test_an_agent_without_group_learning_trains_the_seeds_one_after_another(tmp_path, main_in_process):
    out = main_in_process("agent=q_learning", "env=FrozenLake", "total_steps=300", "eval_episodes=1", "seeds=2",
                          f"runs_root={tmp_path}", "progress=false")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == ("agent=q_learning does not learn seeds in a group: training seeds 0..1 "
                                          "one after another")
    runs = sorted(tmp_path.glob("FrozenLake/q_learning/*"))
    assert [read_json(r / "summary.json")["seed"] for r in runs] == [0, 1]
    assert all(read_json(r / "summary.json")["status"] == "completed" for r in runs)
    assert not any((r / "group.json").exists() for r in runs)  # each resumes alone


def test_a_sweep_with_seeds_trains_a_group_per_job(tmp_path, main_in_process):
    out = main_in_process("-m", "agent=ppo,dqn", "seeds=2", "env=CartPole", "total_steps=256", "eval_episodes=1",
                          f"runs_root={tmp_path}", "progress=false")
    assert out.returncode == 0, out.stderr
    assert "[2/2] agent=dqn env=CartPole seed=0 seeds=2" in out.stdout
    summaries = {p.parent: read_json(p) for p in tmp_path.glob("CartPole/*/*/summary.json")}
    assert sorted((s["agent"], s["seed"]) for s in summaries.values()) == [("dqn", 0), ("dqn", 1), ("ppo", 0),
                                                                          ("ppo", 1)]
    for run in summaries:
        assert [p.parent.name for p in group_of(run)] == [run.parent.name] * 2


def test_help_shows_seeds_and_its_example_runs(tmp_path, main_in_process):
    text = main_in_process("--help").stdout
    entry = text[text.index("  seeds=int"):text.index("  total_steps=int")].splitlines()
    assert "seed .. seed+seeds-1" in entry[0] and "run goes to DIR/seed<k>" in " ".join(entry)
    assert all(len(line) <= 106 for line in entry), entry
    example = next(line for line in text.splitlines() if " seeds=" in line and line.startswith("  python"))
    out = main_in_process(*example.split("#")[0].split()[3:], "--cfg")
    assert out.returncode == 0, out.stderr
    assert "run_dir: out/ppo" in out.stdout and "seeds: 5" in out.stdout
