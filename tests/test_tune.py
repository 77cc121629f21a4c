"""python -m rlgen.tune: Optuna studies of rlgen runs, their tuned files, and tuned=PATH in rlgen.train."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import in_process

from rlgen.compose import from_yaml
from rlgen.run import Run

TINY = ["agent=ppo", "env=CartPole", "total_steps=2000", "eval_every=500", "eval_episodes=2", "progress=false",
        "agent.n_envs=2"]


@pytest.fixture
def tune(capsys):
    from rlgen.tune import main

    return in_process(main, capsys)


@pytest.fixture
def train(capsys):
    from rlgen.train import main

    return in_process(main, capsys)


def counted_trials(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


def test_a_study_of_three_trials_end_to_end(tmp_path, monkeypatch, tune, train):
    monkeypatch.chdir(tmp_path)
    out = tune(*TINY, "n_trials=3")
    assert out.returncode == 0, out.stderr
    db = Path("studies/ppo_CartPole.db")
    assert [state for _, state in counted_trials(db)] == ["COMPLETE"] * 3
    runs = sorted(Path("studies/ppo_CartPole").iterdir())
    assert [r.name for r in runs] == ["trial-0", "trial-1", "trial-2"]
    for k, run in enumerate(runs):
        assert (run / "config.yaml").is_file() and (run / "eval.csv").is_file() and (run / "tb").is_dir()
        assert from_yaml((run / "config.yaml").read_text()).seed == k  # seed + trial number
    report = Path("studies/ppo_CartPole-report")
    assert (report / "history.png").stat().st_size > 0
    assert "## Parameter importances" in (report / "REPORT.md").read_text()

    best = yaml.safe_load(Path("studies/ppo_CartPole-best.yaml").read_text())
    assert best["tuned_for"]["agent"] == "ppo" and best["tuned_for"]["env"] == "CartPole"
    study = optuna.load_study(study_name="ppo_CartPole", storage=f"sqlite:///{db}")
    assert best["tuned_for"]["trial"] == study.best_trial.number
    assert best["tuned_for"]["value"] == pytest.approx(study.best_value)
    assert best["agent"]["n_envs"] == 2  # fixed on the command line: part of what the trial ran
    out = train("agent=ppo", "env=CartPole", "tuned=studies/ppo_CartPole-best.yaml", "total_steps=64",
                "progress=false", "run_dir=with_tuned")
    assert out.returncode == 0, out.stderr
    cfg = from_yaml(Path("with_tuned/config.yaml").read_text())
    assert cfg.tuned == "studies/ppo_CartPole-best.yaml"
    for key, value in best["agent"].items():
        assert getattr(cfg.agent, key) == value, key
    trial_cfg = from_yaml((runs[best["tuned_for"]["trial"]] / "config.yaml").read_text())
    assert cfg.agent == trial_cfg.agent  # the best trial's hyperparameters, every one


def test_the_command_line_wins_over_a_tuned_file(tmp_path, monkeypatch, train, capsys):
    monkeypatch.chdir(tmp_path)
    Path("best.yaml").write_text("tuned_for: {agent: ppo, env: CartPole}\nagent: {n_steps: 64, gamma: 0.95}\n")
    out = train("agent=ppo", "env=CartPole", "tuned=best.yaml", "agent.gamma=0.9", "--cfg")
    cfg = yaml.safe_load(out.stdout)
    assert (cfg["agent"]["n_steps"], cfg["agent"]["gamma"], cfg["agent"]["n_envs"]) == (64, 0.9, 8)
    assert cfg["agent"]["n_epochs"] == 20  # rlgen's tuned values for the pair come first


def test_an_interrupted_study_resumes_to_its_count(tmp_path, monkeypatch, tune):
    """Ctrl-C in trial 1: that trial is marked failed and its run kept; the same command goes on to 3."""
    monkeypatch.chdir(tmp_path)
    original = Run.tick

    def tick(self, step, evaluation=None):
        if self.dir.name == "trial-1" and step >= 1000:
            self.stop_requested = True
        return original(self, step, evaluation)

    monkeypatch.setattr(Run, "tick", tick)
    out = tune(*TINY, "n_trials=3")
    assert out.returncode == 130 and "continue with the same command" in out.stdout
    db = Path("studies/ppo_CartPole.db")
    assert counted_trials(db) == [(0, "COMPLETE"), (1, "FAIL")]
    monkeypatch.setattr(Run, "tick", original)
    out = tune(*TINY, "n_trials=3")
    assert out.returncode == 0, out.stderr
    assert counted_trials(db) == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE"), (3, "COMPLETE")]
    assert '"status": "interrupted"' in Path("studies/ppo_CartPole/trial-1/summary.json").read_text()
    assert "| 1 | interrupted |" in Path("studies/ppo_CartPole-report/REPORT.md").read_text()
    out = tune(*TINY, "n_trials=3", "agent.n_envs=4")  # other trials would not compare with these
    assert out.returncode == 2 and "continue it with the same command" in out.stderr


@pytest.mark.parametrize("others, pruned", [(1e6, True), (-1e6, False)])
def test_the_median_pruner_stops_a_trial_below_the_median(tmp_path, monkeypatch, others, pruned):
    """Two finished trials whose every evaluation is far above (below) what CartPole can return: the
    new trial's first evaluation is below (above) their median, so it is pruned there (runs to the end)."""
    from rlgen.tune import Objective, open_study, prepare

    monkeypatch.chdir(tmp_path)
    job = prepare([*TINY, "n_startup_trials=2", "agent.n_steps=128"])  # evaluations at 512, 1024, ... steps
    study = open_study(job, 0)
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=others, intermediate_values={k: others for k in range(1, 5)}))
    study.optimize(Objective(job), n_trials=1)
    trial = study.trials[-1]
    summary = Path(trial.user_attrs["run_dir"], "summary.json").read_text()
    if pruned:
        assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]
        assert '"status": "pruned"' in summary
    else:
        assert trial.state == optuna.trial.TrialState.COMPLETE and list(trial.intermediate_values) == [1, 2, 3, 4]
        assert '"status": "completed"' in summary


def test_fixed_keys_leave_the_space_and_batches_fit_the_rollout(tmp_path, monkeypatch):
    from rlgen.tune import prepare

    monkeypatch.chdir(tmp_path)
    job = prepare(["agent=ppo", "env=CartPole", "agent.n_envs=1", "agent.learning_rate=1e-3"])
    keys = {p.key for p in job.space.params}
    assert "agent.learning_rate" not in keys and {"agent.batch_size", "agent.n_steps"} <= keys
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    clipped = 0
    for _ in range(200):
        trial = study.ask()
        values = job.space.sample(trial, job.base)
        assert values["agent.batch_size"] <= values["agent.n_steps"] * 1
        clipped += values["agent.batch_size"] < trial.params["agent.batch_size"]
        assert 0.97 <= values["agent.gamma"] <= 0.9999 and values["agent.net_arch"] in ([64], [64, 64], [256, 256])
        study.tell(trial, 0.0)
    assert clipped > 0  # the constraint was needed, not merely never met


def test_parallel_workers_share_the_study(tmp_path, monkeypatch, tune):
    monkeypatch.chdir(tmp_path)
    out = tune(*TINY, "n_trials=3", "workers=2")
    assert out.returncode == 0, out.stderr
    states = [s for _, s in counted_trials(Path("studies/ppo_CartPole.db"))]
    assert states.count("COMPLETE") == 3 and len(states) == 3
    assert len(list(Path("studies/ppo_CartPole").glob("trial-*"))) == 3


BAD_SPACES = {
    "kind": "params: {agent.gamma: {kind: uniform, low: 0.9, high: 0.99}}",
    "range": "params: {agent.gamma: {kind: float, low: 0.99, high: 0.9}}",
    "key": "params: {agent.gama: {kind: float, low: 0.9, high: 0.99}}",
    "field": "params: {agent.gamma: {kind: float, low: 0.9, high: 0.99, logg: true}}",
    "log": "params: {agent.ent_coef: {kind: float, low: 0.0, high: 0.1, log: true}}",
    "choices": "params: {agent.net_arch: {kind: categorical, choices: [[64], [64, 64]]}}",
    "constraint": "params: {agent.n_epochs: {kind: int, low: 1, high: 9}}\nconstraints: [{key: agent.batch_size}]",
    "not_a_space": "- a list",
}


@pytest.mark.parametrize("args", [
    ["agent=ppx", "env=CartPole"], ["agent=ppo", "env=CartPol"], ["agent=ppo", "env=CartPole", "space=ppp"],
    ["agent=ppo", "env=CartPole", "n_trials=0"], ["agent=ppo", "env=CartPole", "n_trials=-2"],
    ["agent=ppo", "env=CartPole", "storage=postgresq://nowhere/db"], ["agent=q_learning", "env=CliffWalking"],
    ["agent=ppo", "env=CartPole", "workers=0"], ["agent=ppo", "env=CartPole", "agent.n_stepz=8"],
    ["agent=ppo", "env=CartPole", "storage=sqlite:///afile/study.db"],
    *[["agent=ppo", "env=CartPole", f"space={name}.yaml"] for name in BAD_SPACES],
])
def test_a_mistake_is_one_line_and_exit_2(tmp_path, monkeypatch, tune, args):
    monkeypatch.chdir(tmp_path)
    Path("afile").write_text("in the way\n")
    for name, text in BAD_SPACES.items():
        Path(f"{name}.yaml").write_text(text + "\n")
    out = tune(*args)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["afile", *(f"{n}.yaml" for n in BAD_SPACES)])


@pytest.mark.parametrize("text, args, says", [
    (None, [], "cannot read it"),
    ("tuned_for: {agent: dqn, env: CartPole}\nagent: {}\n", [], "tuned for agent dqn"),
    ("tuned_for: {agent: ppo, env: Acrobot}\nagent: {}\n", [], "tuned for env Acrobot"),
    ("tuned_for: {agent: ppo, env: CartPole}\nagent: {n_stepz: 64}\n", [], "no field 'n_stepz'"),
    ("agent: {n_steps: 64}\n", [], "tuned_for"),
    ("tuned_for: {agent: ppo, env: CartPole}\nagent: {n_steps: 64}\n", ["resume=somewhere"], "resume"),
])
def test_a_bad_tuned_file_is_one_line_and_exit_2(tmp_path, monkeypatch, train, text, args, says):
    monkeypatch.chdir(tmp_path)
    if text is not None:
        Path("best.yaml").write_text(text)
    out = train("agent=ppo", "env=CartPole", "tuned=best.yaml", *args)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and says in out.stderr, out.stderr
