"""python -m rlgen.train agent=ppo env=CartPole [key=value ...] [-m for sweeps]"""

from __future__ import annotations

import inspect
import signal
import sys
import textwrap
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import get_type_hints

import rlgen
from rlgen.cli import field_docs, type_name
from rlgen.compose import expand_overrides, list_choices, load_config, tuned_pairs
from rlgen.config import TrainConfig
from rlgen.errors import UserError, cli_main, did_you_mean

HELP = """usage: python -m rlgen.train [agent=NAME] [env=NAME] [key=value ...] [-m]

Train one agent on one environment; the run directory (config, TensorBoard logs, CSVs, checkpoint,
summary) goes to runs/<env>/<agent>/<seed>-<timestamp>/ unless run_dir=PATH is given.

  agent=NAME              {agents}
  env=NAME                {envs}
                          or its Gymnasium id (env=CartPole-v1 is env=CartPole, tuned values and run
                          folder included), any registered Gymnasium id (e.g. env=FrozenLake8x8-v1), or
                          module:Id for an env your own module registers (env=my_envs:Corridor-v0)
{settings}
  agent.FIELD=VALUE       a hyperparameter: a field of the agent's Config dataclass (the docstring
                          under each field says what it does); `python -m rlgen.train agent=NAME
                          [env=NAME] --help` lists them with the values that run would use
  env.kwargs.KEY=VALUE    a keyword argument for gymnasium.make (env.KEY=VALUE for short)
  -m, --multirun          sweep: one job per combination of a,b,c / choice(a,b) / range(start,stop) /
                          glob(pattern) (agent and env), e.g. -m agent=ppo,sb3_ppo seed=range(0,3)
  --cfg                   print the composed config (every setting and hyperparameter) and exit
  --tuned                 list the (agent, env) pairs with tuned hyperparameters (rlgen/conf/tuned/)

examples:
  python -m rlgen.train agent=ppo env=CartPole
  python -m rlgen.train agent=dqn env=CartPole seed=3 agent.learning_rate=1e-3 total_steps=80000
  python -m rlgen.train -m agent=ppo,sb3_ppo seed=0,1,2
  python -m rlgen.train agent=ppo env=CartPole seeds=5 run_dir=out/ppo   # out/ppo/seed0 .. seed4
  python -m rlgen.train agent=ppo env=Acrobot tuned=studies/ppo_Acrobot-best.yaml   # python -m rlgen.tune wrote it
  python -m rlgen.train agent=ppo env=CartPole --help
  python -m rlgen.train resume=runs/CartPole/ppo/0-20260101-120000
"""


def _field_lines(prefix: str, schema: type, values: object | None) -> list[str]:
    """`  prefix.field=value   its docstring` for each field of a config dataclass, nested ones
    expanded; with `values` None, each field's type stands for its value (the usage's settings)."""
    _, docs = field_docs(schema)
    hints = get_type_hints(schema)
    lines = []
    for f in fields(schema):
        value = getattr(values, f.name, None) if values is not None else None
        if values is not None and is_dataclass(value):
            lines += _field_lines(f"{prefix}{f.name}.", type(value), value)
            continue
        text = f"{prefix}{f.name}=" + (_as_override(value) if values is not None else type_name(hints[f.name]))
        lines.append(_entry(text, docs.get(f.name, "")))
    return lines


def _entry(text: str, doc: str) -> str:
    """A help entry: the setting in the first column, its docstring wrapped in the second."""
    column, indent = 26, " " * 26
    first = f"  {text}".ljust(column) if len(text) < column - 3 else f"  {text}\n" + indent
    # every line of the docstring in the same 104 columns, the first one too (it starts at the indent)
    return first + textwrap.fill(doc, width=104, initial_indent=indent, subsequent_indent=indent)[column:] \
        if doc else f"  {text}"


def _as_override(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(_as_override(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _agent_help(overrides: list[str]) -> str:
    """The hyperparameters of the agent an `agent=NAME [env=NAME] ...` command line would train."""
    cfg = load_config(overrides)
    schema = type(cfg.agent)
    where = Path(inspect.getsourcefile(schema) or "").relative_to(Path(rlgen.__file__).parent.parent)
    tuned = {(a, e): source for a, e, source in tuned_pairs()}.get((cfg.agent.name, cfg.env.name))
    head = [f"agent={cfg.agent.name}: {schema.__name__} in {where}; values for env={cfg.env.name}"
            + (f", tuned ({tuned}; rlgen/conf/tuned/{cfg.agent.name}_{cfg.env.name}.yaml)" if tuned else
               ", its defaults (no tuned values for this pair)"), ""]
    tail = ["", "--cfg prints the whole composed config; python -m rlgen.train --help, every other setting"]
    return "\n".join(head + _field_lines("agent.", schema, cfg.agent)[1:] + tail)  # [1:]: name is agent=NAME


OPTIONS = ("-m", "--multirun", "--cfg", "--tuned", "-h", "--help")


def _help(argv: list[str]) -> str:
    """--tuned: the tuned pairs; --help with agent=NAME: that agent's hyperparameters; else the usage."""
    if "--tuned" in argv:
        return _tuned_list()
    chosen = [a for a in argv if a not in OPTIONS]
    if any(a.startswith("agent=") for a in chosen):
        return _agent_help(chosen)
    agents, envs = list_choices()
    settings = "\n".join(_field_lines("", TrainConfig, None)[2:])  # [2:]: agent and env are above
    return HELP.format(agents=", ".join(agents), envs=", ".join(envs), settings=settings)


def _without_cfg_part(argv: list[str]) -> list[str]:
    """Hydra apps take `--cfg job|all|hydra`; rlgen's config is the job's, and there is no Hydra one."""
    if "--cfg" not in argv or argv.index("--cfg") + 1 == len(argv):
        return argv
    i = argv.index("--cfg") + 1
    if argv[i] == "hydra":
        raise UserError("--cfg hydra: rlgen runs no Hydra app, so there is no Hydra config; --cfg prints rlgen's")
    return argv[:i] + argv[i + 1:] if argv[i] in ("job", "all") else argv


def _tuned_list() -> str:
    pairs = [(f"agent={a} env={e}", source) for a, e, source in tuned_pairs()]
    width = max(len(pair) for pair, _ in pairs) + 2
    lines = ["(agent, env) pairs with tuned hyperparameters, from rlgen/conf/tuned/<agent>_<env>.yaml:"]
    return "\n".join(lines + [f"  {pair:<{width}}{source}" for pair, source in pairs])


@cli_main
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help", "--tuned") for a in argv):
        print(_help(argv))
        return 0
    multirun = any(a in ("-m", "--multirun") for a in argv)
    show_cfg = "--cfg" in argv
    argv = _without_cfg_part(argv)
    overrides = [a for a in argv if a not in OPTIONS]
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise UserError(f"unknown option {flags[0]}{did_you_mean(flags[0], OPTIONS)}; options: {', '.join(OPTIONS)}"
                        f" (settings are key=value: python -m rlgen.train --help)")
    jobs = expand_overrides(overrides, multirun)
    from rlgen.trainer import resume_config

    configs = [
        resume_config(job) if any(o.startswith("resume=") for o in job) else load_config(job) for job in jobs
    ]
    if show_cfg:
        from rlgen.compose import to_yaml

        for cfg in configs:
            print(to_yaml(cfg))
        return 0
    if multirun and len({c.run_dir for c in configs if c.run_dir}) < sum(1 for c in configs if c.run_dir):
        raise UserError("run_dir is the same for several jobs of the sweep; drop it or sweep it too")
    from rlgen.seed_groups import train_seeds

    code = 0
    for i, cfg in enumerate(configs):
        if len(configs) > 1:
            print(f"[{i + 1}/{len(configs)}] agent={cfg.agent.name} env={cfg.env.name} seed={cfg.seed}"
                  + (f" seeds={cfg.seeds}" if cfg.seeds > 1 else ""))
        outcomes = train_seeds(cfg)
        stopped = None
        for outcome in outcomes:
            if outcome.note is not None:
                # exit 0: the run is as asked, as after SB3's learn() asked for no more steps; and a job
                # scheduler re-running the same resume command (SLURM --requeue) must not see it fail
                print(outcome.note)
            elif outcome.error is not None:
                print(f"error: {outcome.error}", file=sys.stderr)
                code = 1
            else:
                _report(outcome.summary, outcome.run_dir)
                if outcome.summary["status"] == "interrupted" and stopped is None:
                    stopped = outcome
        if stopped is not None:
            stopped_by = signal.Signals[stopped.summary.get("stopped_by", "SIGINT")]
            print(f"interrupted by {stopped_by.name} at step {stopped.summary['total_steps']}; continue with: "
                  f"python -m rlgen.train resume={stopped.run_dir}{_rest_of(cfg, len(outcomes), stopped.run_dir)}")
            return 128 + stopped_by  # the shell's status of a process the signal ended: 130, 143
    return code


def _rest_of(cfg: TrainConfig, n_outcomes: int, stopped: Path) -> str:
    """After a stop signal, what the resume command leaves to do: nothing for a group's run (resuming it
    resumes the group), the seeds not started yet when seeds=S trained one after another."""
    from rlgen.seed_groups import GROUP_FILE

    if (stopped / GROUP_FILE).is_file():
        return " (the runs of its group with it)"
    left, first = cfg.seeds - n_outcomes, cfg.seed + n_outcomes
    if cfg.resume is not None or left <= 0:
        return ""
    if left == 1:
        return f"; seed {first} was not started (train it with seed={first})"
    return f"; seeds {first}..{first + left - 1} were not started (train them with seed={first} seeds={left})"


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
