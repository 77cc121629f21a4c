"""python -m rlgen.tune agent=ppo env=Acrobot n_trials=50 [key=value ...]: an Optuna hyperparameter study.

What RL Zoo's `--optimize` does (rl_zoo3/exp_manager.py), on rlgen's runs: a TPE sampler and a median
pruner, each trial an ordinary run directory trained by rlgen.trainer.train. The study lives in an
Optuna RDB storage (by default a SQLite file), so an interrupted study resumes where it stopped and
several processes, or machines, share it. The best trial becomes a tuned file for `rlgen.train tuned=`.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from omegaconf import MISSING
from optuna.trial import TrialState

from rlgen.cli import parse_settings
from rlgen.compose import load_config, override_line
from rlgen.config import TrainConfig, check_positive, check_seed
from rlgen.errors import UserError, cli_main
from rlgen.trainer import TrainingFailed, train
from rlgen.tuning_report import write_report, write_tuned
from rlgen.tuning_space import SearchSpace, load_space

COUNTED = ("COMPLETE", "PRUNED")
"""trial states n_trials counts; a failed or interrupted trial is not a result"""
HEARTBEAT_SECONDS = 60
"""a running trial's process writes a heartbeat this often; one silent for 3 beats (a process killed
outright) is marked failed when another trial starts, so its slot is not held forever"""


@dataclass
class TuneSettings:
    """Tune an agent's hyperparameters on one env with Optuna: TPE sampling, median pruning on the runs'
    evaluations, the study in a SQLite file (resumable, shared by workers and machines). A fixed
    hyperparameter (agent.n_envs=8, env.KEY=VALUE) is applied to every trial and not searched."""

    agent: str = MISSING
    """the agent to tune: one with a search space (rlgen/conf/search/), or any with space=PATH"""
    env: str = MISSING
    """a short name or Gymnasium id, as in python -m rlgen.train"""
    n_trials: int = 50
    """trials to reach in the study, counting completed and pruned ones of every process"""
    timeout: float | None = None
    """seconds after which this command starts no new trial"""
    total_steps: int | None = None
    """env steps per trial (default: the tuned or default budget of the pair)"""
    eval_every: int | None = None
    """env steps between the evaluations the pruner sees (default: the pair's)"""
    eval_episodes: int | None = None
    workers: int = 1
    """processes sharing the study (each torch on one thread)"""
    seed: int = 0
    """seeds the sampler; trial n trains with seed + n"""
    n_startup_trials: int = 10
    """trials sampled at random before TPE models the results, and before the pruner prunes (RL Zoo's)"""
    storage: str | None = None
    """an Optuna RDB URL (default sqlite:///<studies_root>/<agent>_<env>.db)"""
    study: str | None = None
    """the study's name (default <agent>_<env>)"""
    space: str | None = None
    """a search-space file, or the name of one of rlgen's (default rlgen/conf/search/<agent>.yaml)"""
    best: str | None = None
    """where the best trial's tuned file goes (default <studies_root>/<study>-best.yaml)"""
    studies_root: str = "studies"
    """the trials' run directories go to <studies_root>/<study>/trial-<n>/"""
    progress: bool = True
    """a progress bar per trial (only with workers=1)"""

    def __post_init__(self) -> None:
        if self.n_trials <= 0:
            raise UserError(f"n_trials must be a positive number of trials, got {self.n_trials}")
        check_positive(workers=self.workers, timeout=self.timeout)
        check_seed(seed=self.seed)
        if self.n_startup_trials < 0:
            raise UserError(f"n_startup_trials must be >= 0, got {self.n_startup_trials}")


@dataclass
class Job:
    """Everything a worker process needs to run trials of the study (picklable)."""

    settings: TuneSettings
    base: TrainConfig
    """the config every trial starts from: the pair's, the fixed values and the budget"""
    overrides: list[str]
    """the overrides that compose `base`"""
    space: SearchSpace
    storage: str
    study: str
    trials_dir: Path

    @property
    def n_evaluations(self) -> int:
        return self.base.total_steps // (self.base.eval_every or self.base.total_steps)

    def identity(self) -> dict[str, Any]:
        """What makes trials of one study comparable; a study resumed or joined must have the same."""
        return {"overrides": [o for o in self.overrides if not o.startswith("progress=")],
                "space": sorted(p.name for p in self.space.params)}


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped a trial's run: the trial is marked failed, the study can go on later."""


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the tuner's settings, fixed config overrides): a dotted key (agent.n_envs=8) is an override."""
    fixed = [a for a in argv if "." in a.partition("=")[0] and not a.startswith("-")]
    return [a for a in argv if a not in fixed], fixed


def prepare(argv: list[str]) -> Job:
    """The job a command line asks for, every user mistake refused before a trial starts."""
    args, fixed = split_argv(argv)
    s = parse_settings(args, TuneSettings, "python -m rlgen.tune")
    budget = [f"{k}={v}" for k in ("total_steps", "eval_every", "eval_episodes") if (v := getattr(s, k)) is not None]
    overrides = [f"agent={s.agent}", f"env={s.env}", *fixed, *budget, "torch_threads=1",
                 f"progress={str(s.progress and s.workers == 1).lower()}"]
    base = load_config(overrides)
    space = load_space(base.agent.name, s.space, base).without({a.partition("=")[0].lstrip("+") for a in fixed})
    if not space.params:
        raise UserError(f"every key of the search space {space.source} is fixed on the command line: "
                        "nothing to search")
    name = s.study or f"{base.agent.name}_{base.env.name}"
    storage = s.storage or f"sqlite:///{Path(s.studies_root) / name}.db"
    return Job(s, base, overrides, space, storage, name, Path(s.studies_root) / name)


def open_study(job: Job, worker: int) -> optuna.Study:
    """The study (created on first use), with a sampler seeded for this process and the trials so far."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # announce() reports each trial in one line
    try:
        if job.storage.startswith("sqlite:///"):
            Path(job.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        storage = optuna.storages.RDBStorage(job.storage, heartbeat_interval=HEARTBEAT_SECONDS,
                                             grace_period=3 * HEARTBEAT_SECONDS)
        ids = {st.study_name: st._study_id for st in storage.get_all_studies()}
        done = len(storage.get_all_trials(ids[job.study], deepcopy=False)) if job.study in ids else 0
    except Exception as err:  # SQLAlchemy's and Optuna's errors alike: the URL cannot be used
        why = " ".join(str(err).split("(Background on this error")[0].split())[:160]  # SQLAlchemy's link: no help
        raise UserError(f"storage={job.storage} cannot be opened ({why}); give an "
                        f"Optuna RDB URL such as sqlite:///studies/study.db") from None
    s = job.settings
    # a seed of its own for each process and each restart: the same seed again would propose the
    # startup trials already run (TPE's random start draws from this generator)
    seed = int(np.random.SeedSequence([s.seed, worker, done]).generate_state(1)[0])
    # RL Zoo's sampler and pruner (rl_zoo3/exp_manager.py: _create_sampler, _create_pruner)
    sampler = optuna.samplers.TPESampler(n_startup_trials=s.n_startup_trials, seed=seed, multivariate=True)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=s.n_startup_trials, n_warmup_steps=job.n_evaluations // 3)
    return optuna.create_study(storage=storage, sampler=sampler, pruner=pruner, study_name=job.study,
                               direction="maximize", load_if_exists=True)


def check_study(study: optuna.Study, job: Job) -> None:
    """A new study records what it tunes; one resumed or joined must tune the same, into trial
    directories that hold no other study's runs."""
    made = study.user_attrs.get("identity")
    if made is None:
        if not study.trials and job.trials_dir.is_dir() and any(job.trials_dir.glob("trial-*")):
            raise UserError(f"{job.trials_dir} holds the trials of another study; move it aside, or give "
                            f"study=NAME or studies_root=PATH")
        study.set_user_attr("identity", job.identity())
        study.set_user_attr("agent", job.base.agent.name)
        study.set_user_attr("env", job.base.env.name)
        return
    if made != job.identity():
        raise UserError(f"study {job.study} in {job.storage} was made with {' '.join(made['overrides'])} and "
                        f"{len(made['space'])} searched keys; continue it with the same command, or give study=NAME")


def counted(study: optuna.Study, running: bool = False) -> int:
    states = [TrialState[s] for s in COUNTED] + ([TrialState.RUNNING] if running else [])
    return len(study.get_trials(deepcopy=False, states=states))


class Objective:
    """A trial: its sampled values on the job's config, trained as an ordinary run in trial-<n>/.

    The value is the mean return of the run's final evaluation, as RL Zoo's objective takes its last
    evaluation: it is what the tuned config is later judged by (a final evaluation on fresh seeds),
    and a mean over the evaluations would also reward learning early at the cost of the end.
    """

    def __init__(self, job: Job):
        self.job = job

    def __call__(self, trial: optuna.Trial) -> float:
        job = self.job
        values = job.space.sample(trial, job.base)
        trial.set_user_attr("config", values)
        run_dir = job.trials_dir / f"trial-{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir))
        # seeds differ between trials (RL Zoo's trials are unseeded): a config is not chosen for one seed's luck
        cfg = load_config(job.overrides + [override_line(k, v) for k, v in values.items()]
                          + [f"seed={job.settings.seed + trial.number}", f"run_dir={run_dir}"])
        try:
            summary, _ = train(cfg, (Pruning(trial),))
        except TrainingFailed as err:  # a NaN: the sampled values do not train (RL Zoo prunes these too)
            trial.set_user_attr("failure", str(err))
            raise optuna.TrialPruned(str(err)) from None
        if summary["status"] == "interrupted":
            trial.set_user_attr("interrupted", True)
            raise Interrupted(str(run_dir))
        if summary["status"] == "pruned":
            raise optuna.TrialPruned()
        return float(summary["eval_mean_return"])


class Pruning:
    """The run's hook: each periodic evaluation reported to the trial (step = its index, so trials whose
    rollouts end at other env steps compare at the same evaluation); False when the pruner says stop."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.index = trial, 0

    def __call__(self, step: int, mean_return: float) -> bool:
        self.index += 1
        self.trial.report(mean_return, self.index)
        return not self.trial.should_prune()


def announce(study: optuna.Study, trial: optuna.trial.FrozenTrial, n_trials: int) -> None:
    state = trial.state.name.lower()
    value = f" {trial.value:.2f}" if trial.value is not None else ""
    if trial.state == TrialState.PRUNED:  # Optuna gives a pruned trial its last reported value
        value = f" (diverged: {trial.user_attrs['failure']})" if "failure" in trial.user_attrs else \
            f" at evaluation {max(trial.intermediate_values)}, {trial.value:.2f}"
    config = " ".join(f"{k}={v}" for k, v in trial.user_attrs.get("config", {}).items())
    print(f"trial {trial.number}: {state}{value} ({counted(study)} of {n_trials} counted) {config}", flush=True)


def work(job: Job, worker: int) -> bool:
    """Run trials until the study counts n_trials (running ones included, so parallel workers do not
    overshoot) or the timeout; False if a stop signal interrupted a trial."""
    study = open_study(job, worker)
    objective, start = Objective(job), time.monotonic()
    callbacks = [lambda st, t: announce(st, t, job.settings.n_trials)]
    while job.settings.timeout is None or time.monotonic() - start < job.settings.timeout:
        optuna.storages.fail_stale_trials(study)
        if counted(study, running=True) >= job.settings.n_trials:
            return True
        try:
            study.optimize(objective, n_trials=1, callbacks=callbacks)
        except (Interrupted, KeyboardInterrupt):
            return False
    return True


def _child(job: Job, worker: int) -> None:
    """A worker process: its own process group, so that Ctrl-C reaches it once, forwarded by the parent."""
    os.setpgrp()
    try:
        sys.exit(0 if work(job, worker) else 130)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def run_workers(job: Job) -> bool:
    """job.settings.workers processes on the study; a stop signal is passed on to each. False if any was
    interrupted."""
    if job.settings.workers == 1:
        return work(job, 0)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that has torch and SQLite open
    target = importlib.import_module("rlgen.tune")._child  # not __main__'s: the children import rlgen.tune
    procs = [ctx.Process(target=target, args=(job, k)) for k in range(job.settings.workers)]
    for p in procs:
        p.start()

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if any(p.exitcode == 2 for p in procs):
        raise SystemExit(2)  # the worker printed its one line
    return all(p.exitcode == 0 for p in procs)


@cli_main
def main(argv: list[str]) -> int:
    job = prepare(argv)
    study = open_study(job, 0)
    check_study(study, job)
    print(f"study {job.study} ({job.storage}): {counted(study)} of {job.settings.n_trials} trials counted; "
          f"searching {len(job.space.params)} keys of {job.space.source}; trials in {job.trials_dir}/", flush=True)
    finished = run_workers(job)
    study = open_study(job, 0)
    outputs = write_outputs(study, job)
    if not finished:
        print(f"interrupted: the trial under way is marked failed (not counted); {counted(study)} of "
              f"{job.settings.n_trials} trials counted; continue with the same command", flush=True)
        return 130
    print(outputs, flush=True)
    return 0


def write_outputs(study: optuna.Study, job: Job) -> str:
    """The best trial's tuned file and the report, from the completed trials so far; what was written."""
    if not any(t.state == TrialState.COMPLETE for t in study.trials):
        return "no trial completed yet: no tuned file or report"
    best = Path(job.settings.best) if job.settings.best else job.trials_dir.with_name(f"{job.study}-best.yaml")
    report = job.trials_dir.with_name(f"{job.study}-report")
    write_tuned(study, job, best)
    write_report(study, job, report, best)
    t = study.best_trial
    return (f"best: trial {t.number}, value {t.value:.2f}; tuned file {best} (python -m rlgen.train "
            f"agent={job.base.agent.name} env={job.base.env.name} tuned={best}); report {report / 'REPORT.md'}")


if __name__ == "__main__":
    main()
