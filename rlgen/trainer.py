"""One training run, start to finish: config -> envs -> agent.learn(budget) -> run directory.

Whatever can be refused is refused before the run directory is made (on resume: before any of its
files is opened for writing): the config, a writable place for the run, the agent built on its env
and their fit. What can only go wrong later (a NaN, an env that crashes mid-run) before the first
checkpoint leaves the directory marked failed, with the reason, in summary.json; resume and
rlgen.evaluate refuse such a run and say why.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, is_dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rlgen.agents import agent_class
from rlgen.agents.base import Agent
from rlgen.best_checkpoint import BEST_CHECKPOINT
from rlgen.checkpoint import existing_dir, one_line, write_json_atomic, write_text_atomic
from rlgen.compose import from_yaml, to_yaml
from rlgen.config import TrainConfig
from rlgen.envs import make_env
from rlgen.errors import UserError
from rlgen.run import Diverged, EvaluationHook, Run
from rlgen.run_state import read_run_state


class TrainingFailed(Exception):
    """The run stopped on its own (e.g. a NaN loss); the message says why and what was kept."""


class AlreadyCompleted(Exception):
    """A resume asked for no more steps than the completed run has done; nothing was changed."""


RESUMABLE = ("total_steps", "progress", "torch_threads", "eval_episodes", "trust_checkpoint")
"""the settings a resumed run may change"""


def unwritable(target: Path) -> str | None:
    """Why `target` can be neither written nor made (None if it can): its nearest existing ancestor
    must be a directory this process may write into."""
    place = Path(target)
    try:
        while not place.exists() and place != place.parent:
            place = place.parent
        if not place.is_dir():
            return f"{place} is a file, not a directory"
    except OSError as err:  # e.g. a parent without search permission
        return f"{place} cannot be read ({err.strerror})"
    if not os.access(place, os.W_OK | os.X_OK):
        return f"cannot write into {place} (read-only or permission denied)"
    return None


def _place(cfg: TrainConfig) -> tuple[Path, str]:
    """Where a new run goes, and the setting that says so."""
    return (Path(cfg.run_dir), "run_dir") if cfg.run_dir is not None else (Path(cfg.runs_root), "runs_root")


def new_run_dir(cfg: TrainConfig) -> Path:
    """Make the run's directory and write its config.yaml there."""
    target, setting = _place(cfg)
    if cfg.run_dir is not None:
        path = target
        refuse_taken(path)
    else:
        base = target / cfg.env.name / cfg.agent.name / f"{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, k = base, 1
        while path.exists():
            path, k = base.with_name(f"{base.name}-{k}"), k + 1
    try:
        path.mkdir(parents=True, exist_ok=cfg.run_dir is not None)
        write_text_atomic(path / "config.yaml", to_yaml(cfg))
    except OSError as err:
        raise UserError(f"cannot write the run directory {path} ({err.strerror or one_line(err)}); "
                        f"choose a writable {setting}=") from None
    return path


def refuse_place(cfg: TrainConfig) -> None:
    """A UserError if a new run of cfg cannot be written where it would go, or its run_dir holds a run."""
    target, setting = _place(cfg)
    if (why := unwritable(target)) is not None:
        raise UserError(f"{setting}={target}: {why}; choose another {setting}=")
    if cfg.run_dir is not None:
        refuse_taken(target)


def holds_run(path: Path) -> bool:
    """Whether a run ended or checkpointed in `path` (one that never reached either left nothing to keep)."""
    return (Path(path) / "summary.json").exists() or (Path(path) / "checkpoint.json").exists()


def refuse_taken(path: Path) -> None:
    """A UserError if run_dir=path already holds a run."""
    if not holds_run(path):
        return
    summary = read_summary(path)
    if summary is not None and summary.get("status") == "failed":
        raise UserError(f"run_dir {path} holds a run that failed ({summary.get('reason')}); "
                        "delete it or pick another run_dir")
    raise UserError(f"run_dir {path} already holds a run; continue it with resume={path}, or pick another")


def load_run_config(run_dir: Path) -> TrainConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    try:
        return from_yaml(path.read_bytes().decode("utf-8"))
    except UserError as err:
        raise UserError(f"{path} holds a config this rlgen rejects: {err}") from None
    except Exception as err:  # YAML, OmegaConf and schema errors alike: the file is not what rlgen wrote
        raise UserError(f"{path} is damaged or not an rlgen config ({one_line(err)})") from None


def resume_config(overrides: list[str]) -> TrainConfig:
    """A resumed run keeps its saved config; only the budget and a few run settings may change."""
    given = dict(o.split("=", 1) for o in overrides)
    run_dir = Path(given.pop("resume"))
    if not run_dir.is_dir():
        raise UserError(f"resume: no such run directory '{run_dir}'")
    extra = [k for k in given if k not in RESUMABLE]
    if extra:
        raise UserError(
            f"resume continues a run with its saved config; {', '.join(extra)} cannot change "
            f"(allowed: {', '.join(RESUMABLE)})"
        )
    cfg = load_run_config(run_dir)
    changes = {k: _typed(k, v, getattr(cfg, k)) for k, v in given.items()}
    return replace(cfg, resume=str(run_dir), **changes)


def _typed(key: str, text: str, current: object) -> object:
    """A resume override's value, of the type of the saved setting; a bad one is a user mistake."""
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise UserError(f"{key} must be true or false, got '{text}'")
        return text.lower() == "true"
    try:
        return type(current)(text)
    except ValueError:
        raise UserError(f"{key} must be {type(current).__name__}, got '{text}'") from None


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's summary.json (None if it has none yet); a UserError if it is damaged."""
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path} is damaged ({one_line(err)}); move it aside to use the run") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path} is damaged (not a JSON object); move it aside to use the run")
    return summary


def build_agent(cfg: TrainConfig) -> Agent:
    """The agent, built on its env and checked against it (Agent.check_env)."""
    cls = agent_class(cfg.agent.name)
    env = make_env(cfg.env, one_hot=cls.one_hot)
    try:
        agent = cls(env.observation_space, env.action_space, cfg.agent, cfg.seed)
        agent.check_env(env)
        return agent
    finally:
        env.close()


def load_trained(run_dir: Path, trust: bool = False, checkpoint: str = "last") -> tuple[TrainConfig, Agent]:
    """The config and agent of a run directory, its last checkpoint loaded (checkpoint="best": the best
    evaluation's, checkpoint_best/); a UserError for a directory that holds no such policy (none, not a
    run, failed, no checkpoint yet, never evaluated)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory")
    if not run_dir.is_dir():
        raise UserError(f"no such run directory '{run_dir}'")
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == "failed":
        raise UserError(f"{run_dir} failed before its first checkpoint ({summary.get('reason')}): it holds no policy")
    cfg = load_run_config(run_dir)
    agent = build_agent(cfg)
    try:
        agent.load(run_dir / {"last": "checkpoint", "best": BEST_CHECKPOINT}[checkpoint], trust=trust)
    except FileNotFoundError:
        if checkpoint == "best":
            raise UserError(f"{run_dir} has no best checkpoint ({BEST_CHECKPOINT}/: the run never evaluated, or "
                            "an rlgen without best checkpoints ran it); use checkpoint=last") from None
        raise UserError(f"{run_dir} has no checkpoint yet (the run stopped before its first one)") from None
    return cfg, agent


def check_foundation(cfg: TrainConfig) -> None:
    """expert= and init= only for the agents that build on such a run (Agent.builds_on)."""
    from rlgen.agents import AGENTS

    def key_of(name: str) -> str:
        return (agent_class(name).builds_on or ("", ""))[0]

    for key in ("expert", "init"):
        if getattr(cfg, key) is not None and key != key_of(cfg.agent.name):
            takers = [name for name in AGENTS if key_of(name) == key]
            raise UserError(f"agent={cfg.agent.name} takes no {key}= (it is for {', '.join(takers) or 'no agent'})")


def start_foundation(cfg: TrainConfig, agent: Agent) -> TrainConfig:
    """Hand a new run's agent what it builds on: the run (or, for an expert, the demonstrations file)
    that expert= / init= names, or a run of the default agent trained now with the env's tuned config.
    Returns the config with that path filled in, so config.yaml records where the run started from."""
    key, default = type(agent).builds_on
    given = getattr(cfg, key)
    path = Path(given) if given is not None else train_foundation(cfg, key, default)
    if key == "expert" and path.suffix == ".npz":
        from rlgen.demos import Demonstrations

        if not path.is_file():
            raise UserError(f"expert={path}: no such demonstrations file")
        agent.start_from(Demonstrations.load(path))
        return replace(cfg, expert=str(path))
    source_cfg, source = load_trained(path, trust=cfg.trust_checkpoint)
    if source_cfg.env.id != cfg.env.id:
        raise UserError(f"{key}={path} is a run on {source_cfg.env.id}; this run's env is {cfg.env.id}")
    theirs, ours = env_spaces(source_cfg), env_spaces(cfg)  # as the envs give them, whatever each agent's view
    if theirs != ours:
        raise UserError(f"{key}={path} acts on {theirs[1]} from {theirs[0]}; this env has {ours[1]} from {ours[0]} "
                        "(its env.kwargs differ?)")
    agent.start_from(source)
    return replace(cfg, **{key: str(path)})


def env_spaces(cfg: TrainConfig) -> tuple[Any, Any]:
    """The (observation, action) spaces of a config's env, as the env gives them."""
    env = make_env(cfg.env, one_hot=False)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def train_foundation(cfg: TrainConfig, key: str, agent_name: str) -> Path:
    """The run `key` was not given: <runs_root>/<env>/<agent>/<key>-<seed>, trained now with the env's
    tuned config and this run's seed, env kwargs and settings (or the completed one from before)."""
    run_dir = Path(cfg.runs_root) / cfg.env.name / agent_name / f"{key}-{cfg.seed}"
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == "completed":
        print(f"no {key}= given: using {run_dir}, trained for it before", flush=True)
        return run_dir
    from rlgen.compose import load_config, tuned_pairs

    tuned = sorted(env for agent, env, _ in tuned_pairs() if agent == agent_name)
    if key == "expert" and cfg.env.name not in tuned:  # an untuned expert would be a poor one to imitate
        raise UserError(f"no expert= given, and rlgen has no tuned {agent_name} for {cfg.env.name} to train one "
                        f"with (it has for {', '.join(tuned)}); train an expert and give expert=<its run dir>")
    if (run_dir / "checkpoint.json").is_file():
        print(f"no {key}= given: continuing {run_dir}, the {agent_name} run started for it before", flush=True)
        prerequisite = replace(load_run_config(run_dir), resume=str(run_dir), progress=cfg.progress)
    else:
        kwargs = [f"env.kwargs.{k}={json.dumps(v)}" for k, v in cfg.env.kwargs.items()]
        prerequisite = load_config([f"agent={agent_name}", f"env={cfg.env.id}", *kwargs, f"seed={cfg.seed}",
                                    f"runs_root={cfg.runs_root}", f"progress={str(cfg.progress).lower()}",
                                    f"torch_threads={cfg.torch_threads}", f"run_dir={run_dir}"])
        print(f"no {key}= given: training {agent_name} on {cfg.env.name} first (its tuned config, seed "
              f"{cfg.seed}, {prerequisite.total_steps} steps) in {run_dir}", flush=True)
    summary, _ = train(prerequisite)
    if summary.get("status") != "completed":
        raise UserError(f"the {agent_name} run for {key}= stopped before its budget ({run_dir}); run the same "
                        "command again to continue it")
    return run_dir


def resume_state(cfg: TrainConfig) -> tuple[dict[str, Any], str | None]:
    """The checkpoint state the run at cfg.resume continues from, and why there is nothing to do if the
    run has completed cfg.total_steps already; a UserError for a run that cannot go on as asked."""
    run_dir = Path(cfg.resume)
    summary = read_summary(run_dir)
    if summary is not None and summary.get("status") == "failed":
        raise UserError(f"cannot resume {run_dir}: it failed before its first checkpoint ({summary.get('reason')}); "
                        "start a new run")
    if not (run_dir / "checkpoint.json").is_file():
        if (run_dir / "config.yaml").is_file():
            raise UserError(f"cannot resume {run_dir}: it stopped before its first checkpoint, so there is "
                            "nothing to resume from; start the run again")
        raise UserError(f"cannot resume {run_dir}: no checkpoint.json there (is it a run directory?)")
    state = read_run_state(run_dir)
    done = state["num_steps"]
    if existing_dir(run_dir / "checkpoint") is None:
        raise UserError(f"cannot resume {run_dir}: checkpoint.json names step {done}, but the checkpoint/ "
                        "directory it belongs to is missing")
    completed = summary is not None and summary.get("status") == "completed"
    asked = summary.get("budget_steps", done) if completed else done
    budget = max(asked, done)  # a rollout may end past the budget
    longer = f"total_steps above {budget}" if completed else f"total_steps={done} or more"
    # a completed run asked again for its own budget, which its last rollout went past, has nothing to do
    if cfg.total_steps < min(asked, done):
        raise UserError(f"cannot resume {run_dir} with total_steps={cfg.total_steps}: it has done {done} steps "
                        f"already; give {longer}")
    if (why := unwritable(run_dir)) is not None:
        raise UserError(f"cannot resume {run_dir}: {why}; copy the run to a writable place and resume that")
    if completed and cfg.total_steps <= budget:
        return state, (f"{run_dir} has already completed its budget of {budget} steps; nothing to do "
                       f"(to train it longer: resume={run_dir} {longer})")
    return state, None


def train(cfg: TrainConfig, on_evaluation: tuple[EvaluationHook, ...] = ()) -> tuple[dict[str, Any], Path]:
    """Run (or, with cfg.resume, continue) one training run; return its summary and directory. A hook of
    `on_evaluation` that returns False after an evaluation ends the run with status "pruned"."""
    torch.set_num_threads(cfg.torch_threads)
    state, done = resume_state(cfg) if cfg.resume is not None else (None, None)
    if state is None:  # cheap, so before the agent is built
        refuse_place(cfg)
    check_foundation(cfg)
    agent = build_agent(cfg)
    if state is None and agent.builds_on is not None and (
            getattr(cfg, agent.builds_on[0]) is not None or agent.needs_foundation()):
        cfg = start_foundation(cfg, agent)
    if state is not None:
        run_dir = Path(cfg.resume)
        agent.load(run_dir / "checkpoint", trust=cfg.trust_checkpoint)  # a completed run must be whole too
        if done is not None:
            raise AlreadyCompleted(done)
    else:
        run_dir = new_run_dir(cfg)
    run = Run(cfg, run_dir, agent, state)
    run.on_evaluation = on_evaluation
    if state is None:
        run.start_session(to_yaml(cfg), flat_hparams(cfg))
    run.catch_interrupt()
    try:
        agent.learn(cfg.total_steps, run)
        status = "pruned" if run.pruned else "interrupted" if run.stop_requested else "completed"
        return finish(run, agent, status), run_dir
    except Diverged as err:
        raise TrainingFailed(mark_failed(run, agent.num_steps, f"training diverged: {err}")) from None
    except UserError as err:
        raise UserError(mark_failed(run, agent.num_steps, str(err))) from None
    except Exception as err:  # an env's or agent's own error: kept as it is (a traceback), the run marked
        mark_failed(run, agent.num_steps, f"{type(err).__name__}: {one_line(err)}")
        raise
    finally:
        run.close()


def mark_failed(run: Run, step: int, reason: str) -> str:
    """After a failure at `step`: a run with a checkpoint can go on from it; one without is marked
    failed in summary.json. Returns the reason and what was kept."""
    if (run.dir / "checkpoint.json").exists():
        kept = read_run_state(run.dir)["num_steps"]
        return f"{reason}; the last good checkpoint (step {kept}) is kept in {run.dir}"
    write_json_atomic(run.dir / "summary.json", run.summary(step, "failed") | {"reason": reason})
    return f"{reason}; no checkpoint was written, so {run.dir} is marked failed"


def finish(run: Run, agent: Agent, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Final evaluation (unless one was just made), checkpoint, artifacts and summary.json."""
    step = agent.num_steps
    last_eval = int(float(run.eval_csv.rows[-1]["step"])) if run.eval_csv.rows else None
    if status == "completed" and last_eval != step:
        run.evaluate(step)
    run.flush_logs(step)
    run.checkpoint(step)
    agent.write_artifacts(run)
    summary = run.summary(step, status) | agent.summary_fields() | (extra or {})
    write_json_atomic(run.dir / "summary.json", summary)
    if status == "completed":
        run.end_session(step)
    return summary


def flat_hparams(cfg: TrainConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"seed": cfg.seed, "total_steps": cfg.total_steps, "env": cfg.env.id}
    agent = asdict(cfg.agent) if is_dataclass(cfg.agent) else dict(cfg.agent)
    for key, value in agent.items():
        out[f"agent.{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return out
