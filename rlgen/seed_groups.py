"""Seeds trained together (python -m rlgen.train seeds=S): the runs of seeds seed .. seed+S-1, in
lockstep in one process when the agent learns in groups (Agent.learn_group), else one after another.

Each seed's run directory is what a single run of it writes (rlgen/trainer.py), plus group.json in
each run of a group, which lists the group's runs: resuming any of them resumes all. A run of a group
that diverges leaves it (marked as a single run would be); Ctrl-C stops every run, each checkpointed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from rlgen.agents import agent_class
from rlgen.agents.base import Agent
from rlgen.checkpoint import one_line, write_json_atomic
from rlgen.compose import to_yaml
from rlgen.config import TrainConfig
from rlgen.errors import UserError
from rlgen.loops import Member
from rlgen.run import Run, catch_interrupt
from rlgen.trainer import (
    RESUMABLE,
    AlreadyCompleted,
    TrainingFailed,
    build_agent,
    check_foundation,
    finish,
    flat_hparams,
    holds_run,
    load_run_config,
    mark_failed,
    new_run_dir,
    read_summary,
    refuse_place,
    resume_state,
    train,
)

GROUP_FILE = "group.json"
"""in each run of a group trained together (seeds=S): the group's run directories, relative to it"""


@dataclass
class Outcome:
    """How one run of a `train_seeds` call ended: its summary, or why it stopped (`error`: failed, the
    message says what was kept), or why nothing was done (`note`)."""

    run_dir: Path
    summary: dict[str, Any] | None = None
    error: str | None = None
    note: str | None = None


def train_seeds(cfg: TrainConfig) -> list[Outcome]:
    """Train (or continue) one run, or with cfg.seeds > 1 the runs of seeds seed .. seed+seeds-1: in
    lockstep in this process when the agent learns in groups (Agent.learn_group; a group's runs know
    each other by their group.json, so resuming one resumes all), else one after another. Each seed's
    run directory is what a single run of it writes."""
    if cfg.resume is not None and (group := read_group(Path(cfg.resume))) is not None:
        return _resume_group(cfg, group)
    if cfg.seeds == 1:
        return [_single(cfg)]
    if cfg.run_dir is not None and holds_run(Path(cfg.run_dir)):
        raise UserError(f"run_dir={cfg.run_dir} holds a run; with seeds={cfg.seeds} it is the directory of the "
                        "seeds' runs (<run_dir>/seed<k>): pick another")
    members = [replace(cfg, seed=cfg.seed + k, seeds=1, run_dir=None if cfg.run_dir is None else
                       str(Path(cfg.run_dir) / f"seed{cfg.seed + k}")) for k in range(cfg.seeds)]
    cls = agent_class(cfg.agent.name)
    if cls.learns_in_groups() and cls.builds_on is None:
        return _train_group(members)
    for c in members:  # every seed's place is checked before the first run is made
        refuse_place(c)
    print(f"agent={cfg.agent.name} does not learn seeds in a group: training seeds {cfg.seed}.."
          f"{cfg.seed + cfg.seeds - 1} one after another", flush=True)
    outcomes: list[Outcome] = []
    for c in members:
        outcomes.append(_single(c))
        if outcomes[-1].summary is not None and outcomes[-1].summary["status"] == "interrupted":
            break  # Ctrl-C stops the command, not only this seed's run: the later seeds are not started
    return outcomes


def _single(cfg: TrainConfig) -> Outcome:
    try:
        summary, run_dir = train(cfg)
    except AlreadyCompleted as done:
        return Outcome(Path(cfg.resume), note=str(done))
    except TrainingFailed as err:
        return Outcome(Path(cfg.run_dir or cfg.runs_root), error=str(err))
    return Outcome(run_dir, summary)


def read_group(run_dir: Path) -> list[Path] | None:
    """The run directories of the group `run_dir` was trained in (None: it was trained alone)."""
    path = Path(run_dir) / GROUP_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_bytes().decode("utf-8"))["runs"]
        dirs = [Path(os.path.normpath(Path(run_dir) / name)) for name in names]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} is damaged ({one_line(err)}); move it aside to resume {run_dir} on its own") from None
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        raise UserError(f"{run_dir} was trained in a group with {missing[0]}, which is gone; move {path} aside "
                        f"to resume {run_dir} on its own")
    return dirs


def _resume_group(cfg: TrainConfig, group: list[Path]) -> list[Outcome]:
    """Continue every run of the group cfg.resume was trained in, with the settings given for it. A run
    that failed before its first checkpoint has nothing to continue from: it is left out, and said so
    (the run resume= names is refused as a single run would be)."""
    given = {key: getattr(cfg, key) for key in RESUMABLE}
    named = Path(os.path.normpath(cfg.resume))
    left_out: dict[Path, Outcome] = {}
    for d in group:
        summary = read_summary(d)
        if d != named and summary is not None and summary.get("status") == "failed":
            left_out[d] = Outcome(d, note=f"{d} failed before its first checkpoint ({summary.get('reason')}): "
                                          f"left out; start a new run of seed {summary.get('seed')}")
    resumed = iter(_train_group([replace(load_run_config(d), resume=str(d), **given)
                                 for d in group if d not in left_out]))
    return [left_out[d] if d in left_out else next(resumed) for d in group]


def _group_states(cfgs: list[TrainConfig]) -> tuple[list[dict[str, Any] | None], dict[int, Outcome]]:
    """Each run's checkpoint state (None: a new run), and the outcome of each resumed run that has
    nothing to do; a UserError for anything that can be refused, before any file is written."""
    states: list[dict[str, Any] | None] = []
    outcomes: dict[int, Outcome] = {}
    for k, c in enumerate(cfgs):
        if c.resume is None:
            refuse_place(c)
            states.append(None)
            continue
        state, done = resume_state(c)
        states.append(state)
        if done is not None:
            outcomes[k] = Outcome(Path(c.resume), note=done)
    return states, outcomes


def _train_group(cfgs: list[TrainConfig]) -> list[Outcome]:
    """The runs of cfgs (one agent, env and budget; one seed each) trained in lockstep by the agent's
    learn_group. Resumed runs continue in groups of those checkpointed at the same step."""
    torch.set_num_threads(cfgs[0].torch_threads)
    states, outcomes = _group_states(cfgs)
    todo = [k for k in range(len(cfgs)) if k not in outcomes]
    if not todo:
        return [outcomes[k] for k in range(len(cfgs))]
    check_foundation(cfgs[0])
    agents = {k: build_agent(cfgs[k]) for k in todo}  # each seeds torch itself: its weights are its single run's
    dirs: dict[int, Path] = {}
    for k in todo:
        if states[k] is not None:
            dirs[k] = Path(cfgs[k].resume)
            agents[k].load(dirs[k] / "checkpoint", trust=cfgs[k].trust_checkpoint)
        else:
            dirs[k] = new_run_dir(cfgs[k])
    if any(s is None for s in states):
        for k in todo:
            names = [os.path.relpath(dirs[j], dirs[k]) for j in todo]
            write_json_atomic(dirs[k] / GROUP_FILE, {"runs": names})
    runs = {k: Run(cfgs[k], dirs[k], agents[k], states[k], show_progress=i == 0) for i, k in enumerate(todo)}
    for k in todo:
        if states[k] is None:
            runs[k].start_session(to_yaml(cfgs[k]), flat_hparams(cfgs[k]))
    catch_interrupt([runs[k] for k in todo])
    try:
        _lockstep(agent_class(cfgs[0].agent.name), cfgs[0].total_steps, agents, runs, outcomes)
    except UserError as err:
        for k in todo:
            if k not in outcomes:
                mark_failed(runs[k], agents[k].num_steps, str(err))
        raise
    except Exception as err:  # an env's or agent's own error: kept as it is (a traceback), the runs marked
        for k in todo:
            if k not in outcomes:
                mark_failed(runs[k], agents[k].num_steps, f"{type(err).__name__}: {one_line(err)}")
        raise
    finally:
        for run in runs.values():
            run.close()
    return [outcomes[k] for k in range(len(cfgs))]


def _lockstep(cls: type[Agent], total_steps: int, agents: dict[int, Agent], runs: dict[int, Run],
              outcomes: dict[int, Outcome]) -> None:
    """learn_group for the runs at each checkpointed step in turn (all of them, for a new group), then
    each run finished as a single run is, or marked as one that diverged; its outcome is recorded as it
    ends, so that an error in a later learn_group marks failed only the runs it stopped."""
    by_step: dict[int, list[int]] = {}
    for k, agent in agents.items():
        by_step.setdefault(agent.num_steps, []).append(k)
    for ks in by_step.values():
        members = [Member(agents[k], runs[k]) for k in ks]
        if not runs[ks[0]].stop_requested:
            cls.learn_group(members, total_steps)
        for k, m in zip(ks, members, strict=True):
            if m.failure is not None:
                reason = f"training diverged: {m.failure}"
                outcomes[k] = Outcome(runs[k].dir, error=mark_failed(runs[k], agents[k].num_steps, reason))
            else:
                status = "interrupted" if runs[k].stop_requested else "completed"
                # the group's wall time is each member's: say how many shared it
                outcomes[k] = Outcome(runs[k].dir, finish(runs[k], agents[k], status, {"group_size": len(agents)}))
