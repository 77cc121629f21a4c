"""One training run, start to finish: config -> envs -> agent.learn(budget) -> run directory."""

from __future__ import annotations

import signal
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch

from rlgen.agents import agent_class
from rlgen.agents.base import Agent
from rlgen.checkpoint import write_json_atomic, write_text_atomic
from rlgen.compose import from_yaml, to_yaml
from rlgen.config import TrainConfig
from rlgen.envs import make_env
from rlgen.errors import UserError
from rlgen.run import Diverged, Run, read_json


class TrainingFailed(Exception):
    """The run stopped on its own (e.g. a NaN loss); the message says why and what was kept."""


def new_run_dir(cfg: TrainConfig) -> Path:
    if cfg.run_dir is not None:
        path = Path(cfg.run_dir)
        if (path / "summary.json").exists() or (path / "checkpoint.json").exists():
            raise UserError(f"run_dir {path} already holds a run; continue it with resume={path}, or pick another")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(cfg.runs_root) / cfg.env.name / cfg.agent.name / f"{cfg.seed}-{stamp}"
    path, k = base, 1
    while path.exists():
        path, k = base.with_name(f"{base.name}-{k}"), k + 1
    path.mkdir(parents=True)
    return path


def load_run_config(run_dir: Path) -> TrainConfig:
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir} is not a run directory (no config.yaml)")
    return from_yaml((run_dir / "config.yaml").read_text())


def build_agent(cfg: TrainConfig) -> Agent:
    cls = agent_class(cfg.agent.name)
    env = make_env(cfg.env, one_hot=cls.one_hot)
    try:
        return cls(env.observation_space, env.action_space, cfg.agent, cfg.seed)
    finally:
        env.close()


def train(cfg: TrainConfig) -> tuple[dict[str, Any], Path]:
    """Run (or, with cfg.resume, continue) one training run; return its summary and directory."""
    torch.set_num_threads(cfg.torch_threads)
    state = None
    if cfg.resume is not None:
        run_dir = Path(cfg.resume)
        if not (run_dir / "checkpoint.json").is_file():
            raise UserError(f"cannot resume {run_dir}: no checkpoint.json there (is it a run directory?)")
        state = read_json(run_dir / "checkpoint.json")
    agent = build_agent(cfg)  # before the run directory: a config the env rejects leaves nothing behind
    if state is not None:
        agent.load(run_dir / "checkpoint", trust=cfg.trust_checkpoint)
    else:
        run_dir = new_run_dir(cfg)
        write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
    run = Run(cfg, run_dir, agent, state)
    if state is None:
        run.tb.add_text("hparams", "```yaml\n" + to_yaml(cfg) + "```", 0)
    previous = signal.getsignal(signal.SIGINT)
    run.catch_interrupt()
    try:
        agent.learn(cfg.total_steps, run)
        return _finish(run, agent, "interrupted" if run.stop_requested else "completed"), run_dir
    except Diverged as err:
        saved = run_dir / "checkpoint.json"
        kept = read_json(saved)["num_steps"] if saved.exists() else None
        where = f"the last good checkpoint (step {kept}) is kept" if kept is not None else "no checkpoint was written"
        raise TrainingFailed(f"training diverged: {err}; {where} in {run_dir}") from None
    finally:
        signal.signal(signal.SIGINT, previous)
        run.close()


def _finish(run: Run, agent: Agent, status: str) -> dict[str, Any]:
    """Final evaluation (unless one was just made), checkpoint, artifacts and summary.json."""
    step = agent.num_steps
    last_eval = int(float(run.eval_csv.rows[-1]["step"])) if run.eval_csv.rows else None
    if status == "completed" and last_eval != step:
        run.evaluate(step)
    run.flush_logs(step)
    run.checkpoint(step)
    agent.write_artifacts(run)
    summary = run.summary(step, status) | agent.summary_fields()
    write_json_atomic(run.dir / "summary.json", summary)
    if status == "completed":
        metrics = {"eval/mean_reward": summary["eval_mean_return"] or 0.0}
        run.tb.add_hparams(_flat_hparams(run.cfg), metrics, run_name=".")
    return summary


def _flat_hparams(cfg: TrainConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"seed": cfg.seed, "total_steps": cfg.total_steps, "env": cfg.env.id}
    agent = asdict(cfg.agent) if is_dataclass(cfg.agent) else dict(cfg.agent)
    for key, value in agent.items():
        out[f"agent.{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return out
