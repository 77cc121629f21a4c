"""python -m rlgen.plot: run directories found under the paths given, grouped by (agent, env), drawn as
the mean over seeds with benchstats' bootstrap band; every user mistake one line and exit status 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import assert_user_error, in_process, read_csv

import rlgen
from rlgen import plot

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Three tiny runs of two agents on CartPole, in runs/CartPole/<agent>/<seed>-<time>/."""
    root = tmp_path_factory.mktemp("plot") / "runs"
    for agent, seed in (("ppo", 0), ("ppo", 1), ("dqn", 0)):
        rlgen.train(agent=agent, env="CartPole", seed=seed, total_steps=512, eval_every=128, eval_episodes=2,
                    runs_root=str(root), overrides={"agent.learning_starts": 64} if agent == "dqn" else {})
    return root


@pytest.fixture
def plot_main(capsys):
    return in_process(plot.main, capsys)


@pytest.fixture
def bands(monkeypatch) -> list[np.ndarray]:
    """The curves each call of benchstats.curve_band got, the call itself left to do its work."""
    seen, original = [], plot.curve_band

    def spy(curves, *args, **kwargs):
        seen.append(np.asarray(curves))
        return original(curves, *args, **kwargs)

    monkeypatch.setattr(plot, "curve_band", spy)
    return seen


def column(run_dir: Path, log: str, name: str) -> list[float]:
    return [float(r[name]) for r in read_csv(run_dir / log)[1] if r.get(name, "") != ""]


def test_three_runs_of_two_agents_make_two_curves_with_benchstats_band(runs, tmp_path, plot_main, bands):
    out = plot_main(str(runs), f"out={tmp_path / 'curves.png'}")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG)
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]  # written through a temporary file, renamed
    assert "ppo on CartPole (2 runs)" in out.stdout and "dqn on CartPole (1 run)" in out.stdout
    ppo = sorted((runs / "CartPole" / "ppo").iterdir())
    dqn = sorted((runs / "CartPole" / "dqn").iterdir())
    by_size = sorted(bands, key=len)
    np.testing.assert_array_equal(by_size[0], [column(dqn[0], "eval.csv", "mean_return")])
    np.testing.assert_array_equal(by_size[1], [column(run, "eval.csv", "mean_return") for run in ppo])


def test_a_metric_of_progress_csv_and_a_single_run(runs, tmp_path, plot_main, bands):
    run = sorted((runs / "CartPole" / "ppo").iterdir())[0]
    out = plot_main(str(run), "metric=train/entropy_loss", f"out={tmp_path / 'entropy.png'}")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(bands, [[column(run, "progress.csv", "train/entropy_loss")]])


def test_a_metric_some_runs_lack_leaves_them_out_and_says_so(runs, tmp_path, plot_main):
    out = plot_main(str(runs), "metric=rollout/exploration_rate", f"out={tmp_path / 'eps.png'}")
    assert out.returncode == 0, out.stderr
    assert "dqn on CartPole (1 run)" in out.stdout and "ppo on CartPole" not in out.stdout.splitlines()[0]
    assert "left out (no rollout/exploration_rate)" in out.stdout


def fake_run(run_dir: Path, agent: str, steps: list[int], values: list[float], episode_steps: list[int]) -> Path:
    """A run directory as far as plotting reads one: config.yaml's names and its CSV logs."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"agent:\n  name: {agent}\nenv:\n  name: CartPole\n  id: CartPole-v1\n")
    rows = "".join(f"{s},{v},0.0,3\n" for s, v in zip(steps, values, strict=True))
    (run_dir / "eval.csv").write_text("step,mean_return,std_return,n_episodes\n" + rows)
    (run_dir / "episodes.csv").write_text("step,return,length\n" + "".join(f"{s},1.0,1\n" for s in episode_steps))
    return run_dir


def test_seeds_evaluated_at_other_steps_are_interpolated_onto_the_first_seeds(tmp_path, plot_main, bands):
    fake_run(tmp_path / "a", "ppo", [100, 200, 300], [1.0, 2.0, 3.0], [])
    fake_run(tmp_path / "b", "ppo", [150, 250], [10.0, 20.0], [])
    out = plot_main(str(tmp_path / "a"), str(tmp_path / "b"), f"out={tmp_path / 'p.png'}")
    assert out.returncode == 0, out.stderr
    # a's steps up to where b ends (250); b at 100 and 200: np.interp holds its first value before 150
    np.testing.assert_allclose(bands[0], [[1.0, 2.0], [10.0, 15.0]])


def test_x_episodes_counts_the_training_episodes_ended_by_each_step(tmp_path, plot_main, monkeypatch):
    fake_run(tmp_path / "a", "ppo", [100, 200, 300], [1.0, 2.0, 3.0], [40, 90, 100, 180, 290, 310])
    grids, original = [], plot._aligned

    def spy(curves):
        grids.append(np.asarray(curves[0][0]))
        return original(curves)

    monkeypatch.setattr(plot, "_aligned", spy)
    out = plot_main(str(tmp_path / "a"), "x=episodes", f"out={tmp_path / 'p.png'}")
    assert out.returncode == 0, out.stderr
    np.testing.assert_array_equal(grids[0], [3, 4, 5])


def test_the_default_file_is_written_once_and_never_replaced(runs, tmp_path, plot_main, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert plot_main(str(runs)).returncode == 0
    assert (tmp_path / "plot.png").read_bytes().startswith(PNG)
    before = (tmp_path / "plot.png").read_bytes()
    assert_user_error(plot_main(str(runs)), "plot.png exists already", "out=")
    assert (tmp_path / "plot.png").read_bytes() == before
    assert plot_main(str(runs), "out=plot.png").returncode == 0  # named: replaced


def test_a_row_a_kill_cut_short_is_left_out_and_a_damaged_one_is_one_line(tmp_path, plot_main, bands):
    run = fake_run(tmp_path / "a", "ppo", [100, 200], [1.0, 2.0], [])
    with open(run / "eval.csv", "a") as f:
        f.write("300,3.0")  # the kill came before std_return was written
    assert plot_main(str(run), f"out={tmp_path / 'p.png'}").returncode == 0
    np.testing.assert_array_equal(bands, [[[1.0, 2.0]]])
    (run / "eval.csv").write_text("step,mean_return\n100,lots\n")
    assert_user_error(plot_main(str(run), f"out={tmp_path / 'p.png'}"), "eval.csv is damaged")


def test_a_damaged_config_is_one_line(tmp_path, plot_main):
    run = fake_run(tmp_path / "a", "ppo", [100], [1.0], [])
    (run / "config.yaml").write_text("agent: [unclosed\n")
    assert_user_error(plot_main(str(run), f"out={tmp_path / 'p.png'}"), "config.yaml is damaged or not an rlgen config")


def test_a_path_holding_an_equals_sign_is_a_path(tmp_path, plot_main):
    fake_run(tmp_path / "lr=0.1", "ppo", [100, 200], [1.0, 2.0], [])
    out = plot_main(str(tmp_path / "lr=0.1"), f"out={tmp_path / 'p.png'}")
    assert out.returncode == 0, out.stderr


def test_each_mistake_is_one_line_and_exit_status_2(runs, tmp_path, plot_main):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("in the way\n")
    (tmp_path / "folder.png").mkdir()
    out = str(tmp_path / "p.png")
    cases = [
        ((str(tmp_path / "empty"), f"out={out}"), ("no run directories under", "config.yaml")),
        ((str(tmp_path / "nowhere"), f"out={out}"), ("no such run directory or folder",)),
        ((str(tmp_path / "afile"), f"out={out}"), ("is a file; name a run directory or a folder",)),
        ((str(runs), "metric=train/los", f"out={out}"), ("unknown metric 'train/los'", "did you mean 'train/loss'",
                                                         "available: eval/mean_return")),
        ((str(runs), "--metric", "train/loss"), ("'--metric' is a flag", "write metric=")),
        ((str(runs), f"out={tmp_path / 'afile' / 'p.png'}"), ("cannot be written", "is a file")),
        ((str(runs), f"out={tmp_path / 'folder.png'}"), ("is a directory",)),
        ((str(runs), "out=p.jpg"), ("out= names a .png file",)),
        ((str(runs), "x=time", f"out={out}"), ("x='time' is not one of step, episodes",)),
        ((f"out={out}",), ("name the runs to plot",)),
        ((str(runs), "metric"), ("setting 'metric' has no value",)),
    ]
    for args, fragments in cases:
        assert_user_error(plot_main(*args), *fragments)
    assert not Path(out).exists()


def test_help_names_the_paths_and_the_settings(plot_main):
    out = plot_main("--help")
    assert out.returncode == 0 and out.stderr == ""
    for line in ("usage: python -m rlgen.plot RUN_OR_PARENT [RUN_OR_PARENT ...] [key=value ...]",
                 "  metric: str = eval/mean_return", "  x: str = step"):
        assert line in out.stdout
