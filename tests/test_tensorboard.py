"""TensorBoard shows exactly what was measured: a run read back the way TensorBoard serves it (its
event-processing classes, purging of orphaned points included) holds every evaluation of eval.csv and
every scalar of progress.csv at its step, once, and nothing else; a resumed run too; and the HParams
dashboard shows each run's final evaluation."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import read_csv

from rlgen.compose import load_config
from rlgen.run import Run
from rlgen.trainer import train

# budgets that end on a logging boundary (Run.LOG_EVERY = 1000 steps; 256 and 128 steps per rollout)
SETUPS = {
    "ppo": ("agent=ppo", "env=CartPole", "total_steps=2048", "eval_every=512", "eval_episodes=2", "progress=false"),
    "sb3_ppo": ("agent=sb3_ppo", "env=CartPole", "total_steps=2048", "eval_every=512", "eval_episodes=2",
                "agent.n_steps=64", "agent.n_envs=2", "agent.batch_size=64", "progress=false"),
}


def served(run_dir: Path):
    """The run's tb/ directory as TensorBoard loads it: every point kept, orphaned ones purged."""
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    events = EventAccumulator(str(run_dir / "tb"), size_guidance={SCALARS: 0}, purge_orphaned_data=True)
    return events.Reload()


def served_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = served(run_dir)
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def measured(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """What the run's CSVs hold, as curves: eval.csv's evaluations (and the best mean so far) and
    progress.csv's scalars."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for row in read_csv(run_dir / "eval.csv")[1]:
        curves.setdefault("eval/mean_reward", []).append((int(row["step"]), float(row["mean_return"])))
        curves.setdefault("eval/std_reward", []).append((int(row["step"]), float(row["std_return"])))
        best = max(v for _, v in curves["eval/mean_reward"])
        curves.setdefault("eval/best_mean_reward", []).append((int(row["step"]), best))
    for row in read_csv(run_dir / "progress.csv")[1]:
        for tag, value in row.items():
            if tag != "step" and value != "":
                curves.setdefault(tag, []).append((int(row["step"]), float(value)))
    return curves


def assert_tensorboard_shows_what_was_measured(run_dir: Path) -> None:
    shown, wanted = served_scalars(run_dir), measured(run_dir)
    assert sorted(shown) == sorted(wanted)
    for tag, points in wanted.items():
        assert [s for s, _ in shown[tag]] == [s for s, _ in points], tag
        assert [v for _, v in shown[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag  # float32
    steps = [s for s, _ in wanted["eval/mean_reward"]]
    assert steps == sorted(set(steps)) and len(steps) >= 4
    assert [p.name for p in (run_dir / "tb").iterdir() if p.is_dir()] == []  # one TensorBoard run, no other


@pytest.mark.parametrize("agent", sorted(SETUPS))
def test_tensorboard_shows_every_evaluation_and_scalar_at_its_step(agent, tmp_path):
    summary, run_dir = train(load_config([*SETUPS[agent], f"run_dir={tmp_path / 'run'}"]))
    assert summary["status"] == "completed" and summary["total_steps"] == 2048
    assert_tensorboard_shows_what_was_measured(run_dir)
    assert [s for s, _ in served_scalars(run_dir)["time/fps"]] == [1024, 2048]  # the last step once


class Crash(Exception):
    pass


@pytest.mark.parametrize("agent", sorted(SETUPS))
def test_a_run_resumed_after_a_crash_shows_what_the_csvs_kept(agent, tmp_path, monkeypatch):
    """Points written after the last checkpoint (1024) are in the event file when the process dies; the
    resumed run purges them as the CSVs drop their rows, and keeps those of the checkpoint's step."""
    cfg = load_config([*SETUPS[agent], f"run_dir={tmp_path / 'run'}"])
    monkeypatch.setattr(Run, "LOG_EVERY", 256)
    original = Run.tick

    def tick(self: Run, step: int, evaluation=None) -> bool:
        if step > 1400:
            raise Crash
        return original(self, step, evaluation)

    with monkeypatch.context() as m:
        m.setattr(Run, "tick", tick)
        with pytest.raises(Crash):
            train(cfg)
    run_dir = tmp_path / "run"
    before = served_scalars(run_dir)
    assert max(s for s, _ in before["time/fps"]) > 1024  # orphaned points, past the checkpoint
    # TensorBoard reads a run's event files in the order of their names, which begin with the second
    # they were made in; a resume is never within the same second as the crash (process start-up alone)
    time.sleep(1.1)
    summary, _ = train(replace(cfg, resume=str(run_dir), run_dir=None))
    assert summary["status"] == "completed"
    assert 1024 in [s for s, _ in served_scalars(run_dir)["eval/mean_reward"]]
    assert_tensorboard_shows_what_was_measured(run_dir)


def test_a_run_interrupted_and_resumed_shows_each_step_once(tmp_path, monkeypatch):
    cfg = load_config([*SETUPS["ppo"], f"run_dir={tmp_path / 'run'}"])
    original = Run.tick

    def tick(self: Run, step: int, evaluation=None) -> bool:  # Ctrl-C at step 1280, between two logging boundaries
        self.stop_requested |= step >= 1280
        return original(self, step, evaluation)

    with monkeypatch.context() as m:
        m.setattr(Run, "tick", tick)
        assert train(cfg)[0]["status"] == "interrupted"
    time.sleep(1.1)  # see above
    assert train(replace(cfg, resume=str(tmp_path / "run"), run_dir=None))[0]["status"] == "completed"
    assert_tensorboard_shows_what_was_measured(tmp_path / "run")


def test_the_hparams_dashboard_shows_each_runs_config_and_final_evaluation(tmp_path):
    """Through TensorBoard's HParams backend over a log directory of two runs (an rlgen PPO, an SB3 PPO):
    one session each, with its own hyperparameters and, as metric, its last evaluation."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.backend.event_processing import plugin_event_multiplexer as multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    finals = {}
    for agent in SETUPS:
        summary, _ = train(load_config([*SETUPS[agent], f"run_dir={tmp_path / agent}"]))
        finals[f"{agent}/tb"] = summary["eval_mean_return"]
    runs = multiplexer.EventMultiplexer(purge_orphaned_data=True)
    runs.AddRunsFromDirectory(str(tmp_path))
    runs.Reload()
    provider = data_provider.MultiplexerDataProvider(runs, str(tmp_path))
    hparams = backend_context.Context(base_plugin.TBContext(logdir=str(tmp_path), data_provider=provider,
                                                            multiplexer=runs))
    request = api_pb2.ListSessionGroupsRequest(start_index=0, slice_size=10, allowed_statuses=[
        api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])
    groups = list_session_groups.Handler(context.RequestContext(), hparams, "", request).run().session_groups
    assert sorted(g.name for g in groups) == sorted(finals)
    for group in groups:
        assert group.hparams["agent.name"].string_value == group.name.split("/")[0]
        assert group.hparams["total_steps"].number_value == 2048
        [final] = [m for m in group.metric_values if m.name.tag == "eval/mean_reward"]
        assert (final.training_step, final.value) == (2048, pytest.approx(finals[group.name]))
        assert [s.status for s in group.sessions] == [api_pb2.STATUS_SUCCESS]


def test_scalars_logged_after_a_flush_at_the_same_step_join_its_row_and_points(tmp_path):
    """As soft value iteration's entropy, logged after the last sweep was flushed at the same step."""
    from rlgen.trainer import build_agent

    cfg = load_config(["agent=q_learning", "env=GridWorld4x4", f"run_dir={tmp_path}", "progress=false"])
    run = Run(cfg, tmp_path, build_agent(cfg))
    run.log(1000, {"dp/delta": 0.5})  # a logging boundary: written now
    run.log(1000, {"train/entropy": 1.25})
    run.flush_logs(1000)  # the end of training: only the entropy is new
    run.flush_logs(1000)  # nothing new
    run.close()
    [row] = read_csv(tmp_path / "progress.csv")[1]
    assert (row["step"], row["dp/delta"], row["train/entropy"]) == ("1000", "0.5", "1.25")
    shown = served_scalars(tmp_path)
    assert sorted(shown) == ["dp/delta", "time/fps", "train/entropy"]
    assert all([s for s, _ in points] == [1000] for points in shown.values())
