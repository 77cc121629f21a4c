"""The best checkpoint: a run keeps the policy of its evaluation with the highest mean return in
checkpoint_best/ beside its last checkpoint, and `rlgen.evaluate checkpoint=best` plays exactly that
policy; summary.json and checkpoint.json name its return and step, a resumed run keeps comparing
against it, and each seed of a group keeps its own."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, read_csv, read_json, stop_at
from test_tensorboard import assert_tensorboard_shows_what_was_measured

import rlgen.run as run_module
from rlgen.checkpoint import load_state, save_state
from rlgen.compose import load_config
from rlgen.evaluation import Evaluation
from rlgen.run import Run
from rlgen.trainer import finish, load_run_config, train

# DQN on CartPole for a few thousand steps: its evaluations go up and down (seed 0: the best at 3000 of 5000)
SWINGING = ("agent=dqn", "env=CartPole", "total_steps=5000", "eval_every=500", "eval_episodes=3",
            "agent.gradient_steps=32", "progress=false")


def best_of(run: Path) -> tuple[float, int]:
    """The highest mean return of eval.csv and the step of its first evaluation (a tie is no improvement)."""
    rows = read_csv(run / "eval.csv")[1]
    means = [float(r["mean_return"]) for r in rows]
    first = int(np.argmax(means))
    return means[first], int(rows[first]["step"])


@pytest.fixture(scope="module")
def swinging(tmp_path_factory) -> Path:
    """A completed run whose best evaluation is neither its first nor its last."""
    run = tmp_path_factory.mktemp("swinging") / "run"
    summary, _ = train(load_config([*SWINGING, f"run_dir={run}"]))
    assert summary["status"] == "completed"
    means = [float(r["mean_return"]) for r in read_csv(run / "eval.csv")[1]]
    assert 0 < int(np.argmax(means)) < len(means) - 1 and means[-1] < max(means)  # up, then down
    return run


def replay(evaluate, run: Path, which: str) -> dict:
    """`rlgen.evaluate` of a checkpoint with the training evaluations' episodes, seed and greediness."""
    cfg = load_run_config(run)
    out = evaluate(f"run={run}", f"checkpoint={which}", f"episodes={cfg.eval_episodes}", f"seed={cfg.seed}",
                   f"deterministic={str(cfg.eval_deterministic).lower()}")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    return read_json(run / "evaluation.json")


def test_the_best_checkpoint_plays_the_best_logged_evaluation(swinging, evaluate_in_process):
    mean, step = best_of(swinging)
    result = replay(evaluate_in_process, swinging, "best")
    assert (result["mean_return"], result["checkpoint"], result["checkpoint_step"]) == (mean, "best", step)
    last = replay(evaluate_in_process, swinging, "last")  # and the last checkpoint is still the last policy
    assert last["mean_return"] == float(read_csv(swinging / "eval.csv")[1][-1]["mean_return"]) != mean
    assert (last["checkpoint"], last["checkpoint_step"]) == ("last", 5000)


def test_summary_checkpoint_json_and_tensorboard_name_the_best(swinging):
    mean, step = best_of(swinging)
    summary = read_json(swinging / "summary.json")
    assert (summary["best_eval_mean_return"], summary["best_eval_step"]) == (mean, step)
    assert read_json(swinging / "checkpoint.json")["best_eval"] == [mean, step]
    assert_tensorboard_shows_what_was_measured(swinging)  # eval/best_mean_reward: the running maximum


def test_a_resumed_run_keeps_its_best(swinging, tmp_path, monkeypatch):
    """Stopped after its best evaluation, before a worse one: resumed from its last checkpoint, it ends
    as the whole run does, with the same best."""
    mean, step = best_of(swinging)
    halted = load_config([*SWINGING, f"run_dir={tmp_path / 'run'}"])
    with monkeypatch.context() as m:
        stop_at(m, step + 1)
        assert train(halted)[0]["status"] == "interrupted"
    assert read_json(tmp_path / "run" / "checkpoint.json")["best_eval"] == [mean, step]
    kept = (tmp_path / "run" / "checkpoint_best" / "tensors.safetensors").read_bytes()
    summary, _ = train(replace(halted, resume=str(tmp_path / "run"), run_dir=None))
    assert summary["status"] == "completed"
    assert (tmp_path / "run" / "eval.csv").read_text() == (swinging / "eval.csv").read_text()  # from the last
    assert (summary["best_eval_mean_return"], summary["best_eval_step"]) == (mean, step)
    assert (tmp_path / "run" / "checkpoint_best" / "tensors.safetensors").read_bytes() == kept
    assert kept == (swinging / "checkpoint_best" / "tensors.safetensors").read_bytes()


def test_a_run_without_a_best_checkpoint_is_one_line(tmp_path, monkeypatch, evaluate_in_process):
    """Stopped before its first evaluation: no best (null in summary.json); checkpoint=best says so."""
    with monkeypatch.context() as m:
        stop_at(m, 1)
        summary, run = train(load_config([*SWINGING, f"run_dir={tmp_path / 'run'}"]))
    assert (summary["status"], summary["best_eval_mean_return"], summary["best_eval_step"]) == ("interrupted", None,
                                                                                               None)
    assert not (run / "checkpoint_best").exists() and (run / "checkpoint").is_dir()
    assert_user_error(evaluate_in_process(f"run={run}", "checkpoint=best"), "has no best checkpoint", "checkpoint=last")
    assert evaluate_in_process(f"run={run}", "checkpoint=last", "episodes=1").returncode == 0


@pytest.mark.parametrize(("value", "fragment"), [("bogus", "not one of last, best"), ("best_model", "'best'"),
                                                 ("Last", "'last'")])
def test_a_wrong_checkpoint_is_one_line(value, fragment, tmp_path, evaluate_in_process):
    assert_user_error(evaluate_in_process(f"run={tmp_path}", f"checkpoint={value}"), f"checkpoint='{value}'", fragment)


@pytest.mark.parametrize("best", [[1.0], [5.0, -3], "high", [5.0, 2.5]])
def test_a_damaged_best_in_checkpoint_json_is_one_line(best, swinging, tmp_path, main_in_process):
    run = tmp_path / "run"
    shutil.copytree(swinging, run)
    state = read_json(run / "checkpoint.json")
    (run / "checkpoint.json").write_text(json.dumps(state | {"best_eval": best}))
    assert_user_error(main_in_process(f"resume={run}", "total_steps=6000"), "checkpoint.json is damaged", "best_eval")


def test_each_seed_of_a_group_keeps_its_own_best(tmp_path, main_in_process, evaluate_in_process):
    out = main_in_process(*SWINGING, "seeds=2", f"run_dir={tmp_path}/group")
    assert out.returncode == 0, out.stderr
    bests = []
    for seed in (0, 1):
        member = tmp_path / "group" / f"seed{seed}"
        mean, step = best_of(member)
        summary = read_json(member / "summary.json")
        assert (summary["best_eval_mean_return"], summary["best_eval_step"]) == (mean, step)
        result = replay(evaluate_in_process, member, "best")
        assert (result["mean_return"], result["checkpoint_step"]) == (mean, step)
        bests.append((mean, step))
    assert bests[0] != bests[1]


# -- the rule itself, with a stand-in agent and scripted evaluations -----------------------------------


class Stand:
    """An agent whose checkpoint records the step it was saved at; it always pushes the cart left."""

    one_hot = False

    def __init__(self) -> None:
        self.num_steps = 0

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return np.zeros(len(obs), dtype=np.int64)

    def episode_policy(self, deterministic: bool = True):
        return self.act

    def save(self, path: Path) -> None:
        save_state(path, {"num_steps": self.num_steps})

    def evaluation_extras(self) -> dict[str, float]:
        return {}

    def write_artifacts(self, run: Run) -> None:
        pass

    def summary_fields(self) -> dict[str, float]:
        return {}


def scripted(mean: float) -> Evaluation:
    return Evaluation(returns=np.array([mean]), lengths=np.array([1]), success=None, mode=None, act_ms=0.0)


def best_step(run_dir: Path) -> int:
    return load_state(run_dir / "checkpoint_best")["num_steps"]


def test_only_a_strictly_better_evaluation_replaces_the_best_and_finish_keeps_its_own(tmp_path):
    cfg = load_config(["env=CartPole", "eval_every=100", "total_steps=550", "eval_episodes=3", "progress=false"])
    agent, kept = Stand(), []
    run = Run(cfg, tmp_path, agent)
    try:
        for step, mean in zip((100, 200, 300, 400, 500), (5.0, 3.0, 5.0, 7.0, 2.0), strict=True):
            agent.num_steps = step
            run.tick(step, scripted(mean))
            kept.append(best_step(tmp_path))
        assert kept == [100, 100, 100, 400, 400]  # 5.0 again is no improvement
        agent.num_steps = 550
        summary = finish(run, agent, "completed")  # its own evaluation: always-left CartPole, about 9
    finally:
        run.close()
    assert summary["best_eval_mean_return"] == summary["eval_mean_return"] > 7.0
    assert summary["best_eval_step"] == best_step(tmp_path) == 550


SHORT = ["env=CartPole", "eval_every=100", "total_steps=300", "progress=false"]


def best_then_broken_better(run_dir: Path, monkeypatch, attribute: str, broken) -> None:
    """A stand-in run's best evaluation at step 100, then a better one at 200 whose keeping `broken`
    (in place of `attribute`, a dotted name) stops with an OSError."""
    agent = Stand()
    run = Run(load_config(SHORT), run_dir, agent)
    try:
        agent.num_steps = 100
        run.tick(100, scripted(1.0))
        with monkeypatch.context() as m:
            m.setattr(attribute, broken)
            agent.num_steps = 200
            with pytest.raises(OSError):
                run.tick(200, scripted(2.0))
    finally:
        run.close()


def test_a_failed_copy_leaves_the_previous_best_whole(tmp_path, monkeypatch):
    def broken(src, dst, **kwargs):  # the copy dies halfway, as a full disk or a kill would leave it
        shutil.copy2(Path(src) / "state.json", Path(dst) / "state.json")
        raise OSError("no space left on device")

    best_then_broken_better(tmp_path, monkeypatch, "rlgen.best_checkpoint.shutil.copytree", broken)
    assert best_step(tmp_path) == 100
    assert sorted(p.name for p in tmp_path.iterdir() if "best" in p.name) == ["checkpoint_best"]


@pytest.mark.parametrize("crash", ["before checkpoint.json", "after checkpoint.json"])
def test_a_crash_while_keeping_a_new_best_leaves_the_run_and_its_best_agreeing(crash, tmp_path, monkeypatch):
    """The new best is staged whole, checkpoint.json written, then the best swapped in: a run resumed after a
    crash in between keeps the best its checkpoint.json names (and best.json inside says which)."""
    def killed(*args, **kwargs):
        raise OSError("killed")

    if crash == "before checkpoint.json":
        write = run_module.write_json_atomic
        best_then_broken_better(tmp_path, monkeypatch, "rlgen.run.write_json_atomic", lambda path, data: killed() if
                                Path(path).name == "checkpoint.json" else write(path, data))
    else:
        best_then_broken_better(tmp_path, monkeypatch, "rlgen.best_checkpoint.swap_dir", killed)
    assert (tmp_path / "checkpoint_best.next").is_dir()
    state = read_json(tmp_path / "checkpoint.json")
    Run(load_config(SHORT), tmp_path, Stand(), state=state).close()
    mean, step = (1.0, 100) if crash == "before checkpoint.json" else (2.0, 200)
    assert state["best_eval"] == [mean, step]
    assert best_step(tmp_path) == step
    assert read_json(tmp_path / "checkpoint_best" / "best.json") == {"step": step, "mean_return": mean}
    assert sorted(p.name for p in tmp_path.iterdir() if "best" in p.name) == ["checkpoint_best"]
