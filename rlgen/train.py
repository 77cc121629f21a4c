"""python -m rlgen.train agent=ppo env=CartPole [key=value ...] [-m for sweeps]"""

from __future__ import annotations

import signal
import sys
from dataclasses import replace
from pathlib import Path

from rlgen.compose import expand_overrides, list_choices, load_config
from rlgen.errors import UserError, cli_main

RESUMABLE_OVERRIDES = ("total_steps", "progress", "torch_threads", "eval_episodes", "trust_checkpoint")

HELP = """usage: python -m rlgen.train [agent=NAME] [env=NAME] [key=value ...] [-m]

Train one agent on one environment; the run directory (config, TensorBoard logs, CSVs, checkpoint,
summary) goes to runs/<env>/<agent>/<seed>-<timestamp>/ unless run_dir=PATH is given.

  agent=NAME              {agents}
  env=NAME                {envs}
                          or any registered Gymnasium id (e.g. env=Taxi-v4)
  seed=INT                total_steps=INT          eval_every=INT         eval_episodes=INT
  run_dir=PATH            resume=RUN_DIR           progress=BOOL          torch_threads=INT
  agent.FIELD=VALUE       any hyperparameter of the agent (see rlgen/conf/agent/NAME.yaml)
  env.kwargs.KEY=VALUE    keyword arguments for gymnasium.make
  -m, --multirun          sweep: agent=ppo,sb3_ppo seed=0,1,2 runs one job per combination
  --cfg                   print the composed config and exit

examples:
  python -m rlgen.train agent=ppo env=CartPole
  python -m rlgen.train agent=dqn env=CartPole seed=3 agent.learning_rate=1e-3 total_steps=80000
  python -m rlgen.train -m agent=ppo,sb3_ppo seed=0,1,2
  python -m rlgen.train resume=runs/CartPole/ppo/0-20260101-120000
"""


def _resume_config(overrides: list[str]):
    """A resumed run keeps its saved config; only the budget and a few run settings may change."""
    from rlgen.trainer import load_run_config

    given = dict(o.split("=", 1) for o in overrides)
    run_dir = Path(given.pop("resume"))
    if not run_dir.is_dir():
        raise UserError(f"resume: no such run directory '{run_dir}'")
    extra = [k for k in given if k not in RESUMABLE_OVERRIDES]
    if extra:
        raise UserError(
            f"resume continues a run with its saved config; {', '.join(extra)} cannot change "
            f"(allowed: {', '.join(RESUMABLE_OVERRIDES)})"
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


@cli_main
def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        agents, envs = list_choices()
        print(HELP.format(agents=", ".join(agents), envs=", ".join(envs)))
        return 0
    multirun = any(a in ("-m", "--multirun") for a in argv)
    show_cfg = "--cfg" in argv
    overrides = [a for a in argv if a not in ("-m", "--multirun", "--cfg")]
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise UserError(f"unknown option {flags[0]}; see python -m rlgen.train --help")
    jobs = expand_overrides(overrides, multirun)
    configs = [
        _resume_config(job) if any(o.startswith("resume=") for o in job) else load_config(job) for job in jobs
    ]
    if show_cfg:
        from rlgen.compose import to_yaml

        for cfg in configs:
            print(to_yaml(cfg))
        return 0
    if multirun and len({c.run_dir for c in configs if c.run_dir}) < sum(1 for c in configs if c.run_dir):
        raise UserError("run_dir is the same for several jobs of the sweep; drop it or sweep it too")
    from rlgen.trainer import AlreadyCompleted, TrainingFailed, train

    code = 0
    for i, cfg in enumerate(configs):
        if len(configs) > 1:
            print(f"[{i + 1}/{len(configs)}] agent={cfg.agent.name} env={cfg.env.name} seed={cfg.seed}")
        try:
            summary, run_dir = train(cfg)
        except AlreadyCompleted as done:
            # exit 0: the run is as asked, as after SB3's learn() asked for no more steps; and a job
            # scheduler re-running the same resume command (SLURM --requeue) must not see it fail
            print(done)
            continue
        except TrainingFailed as err:
            print(f"error: {err}", file=sys.stderr)
            code = 1
            continue
        _report(summary, run_dir)
        if summary["status"] == "interrupted":
            stopped_by = signal.Signals[summary.get("stopped_by", "SIGINT")]
            print(f"interrupted by {stopped_by.name} at step {summary['total_steps']}; continue with: "
                  f"python -m rlgen.train resume={run_dir}")
            return 128 + stopped_by  # the shell's status of a process the signal ended: 130, 143
    return code


def _report(summary: dict, run_dir: Path) -> None:
    mean, std = summary["eval_mean_return"], summary["eval_std_return"]
    solved = summary["solved_at_step"]
    parts = [f"run: {run_dir}", f"steps: {summary['total_steps']}", f"{summary['steps_per_second']:.0f} steps/s"]
    if mean is not None:
        parts.append(f"eval return {mean:.2f} +- {std:.2f}")
    if summary["reward_threshold"] is not None:
        parts.append(f"solved at step {solved}" if solved is not None else "not solved")
    print(" | ".join(parts))


if __name__ == "__main__":
    main()
