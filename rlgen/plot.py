"""python -m rlgen.plot RUN_OR_PARENT [RUN_OR_PARENT ...] [metric=eval/mean_return] [out=plot.png] [x=step]

Learning curves of run directories, given or found under the folders given (a run directory holds
config.yaml and eval.csv or progress.csv): one panel per env, one curve per agent in it, the mean over
its seeds with a 95% bootstrap band, the statistics of the benchmark reports (rlgen/benchstats.py curve_band). Seeds
whose points lie at different steps are interpolated onto the first seed's steps (runs in path
order), up to where the shortest run ends, as the benchmark reports align them (benchreport._aligned).

The paths are positional; everything else is the house grammar, key=value (rlgen/cli.py).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from rlgen.benchreport import _aligned
from rlgen.benchstats import curve_band
from rlgen.checkpoint import one_line, write_atomic
from rlgen.cli import parse_settings
from rlgen.config import check_choice
from rlgen.errors import UserError, cli_main, unknown
from rlgen.trainer import unwritable

COMMAND = "python -m rlgen.plot RUN_OR_PARENT [RUN_OR_PARENT ...]"
DEFAULT_OUT = "plot.png"
EVAL = "eval/"
"""metric=eval/<column> reads eval.csv; any other metric is a column of progress.csv"""
XS = ("step", "episodes")
LOGS = ("eval.csv", "progress.csv")


@dataclass
class PlotSettings:
    """Draw the learning curves of the run directories under RUN_OR_PARENT (a run directory, or a folder
    holding runs) into one PNG: per (agent, env), the mean over its seeds and a 95% bootstrap band."""

    metric: str = "eval/mean_return"
    """eval/<column> for a column of eval.csv (mean_return, std_return, success_rate, ...), else a column
    of progress.csv (train/entropy, train/loss, rollout/ep_rew_mean, ...)"""
    out: str | None = None
    """the PNG to write, replaced if it exists; unset: plot.png, which is never replaced"""
    x: str = "step"
    """the x-axis: step (environment steps) or episodes (training episodes finished by then)"""

    def __post_init__(self) -> None:
        check_choice("x", self.x, XS)
        if self.out is not None and not self.out.endswith(".png"):
            raise UserError(f"out= names a .png file, got '{self.out}'")


@dataclass
class Curve:
    run_dir: Path
    agent: str
    env: str
    x: np.ndarray
    y: np.ndarray


def split_argv(argv: list[str]) -> tuple[list[Path], list[str]]:
    """(paths, settings): a flag, key=value or a setting's bare name is for parse_settings (which answers
    each mistake), any other token a path; a token that names an existing file or folder is a path."""
    names = [f.name for f in fields(PlotSettings)]
    paths, settings = [], []
    for token in argv:
        setting = token.startswith("-") or (("=" in token or token in names) and not Path(token).exists())
        (settings if setting else paths).append(token)
    return [Path(p) for p in paths], settings


def find_runs(paths: list[Path]) -> list[Path]:
    """The run directories at or under each path, in path order, each once."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            raise UserError(f"no such run directory or folder '{path}'")
        if not path.is_dir():
            raise UserError(f"{path} is a file; name a run directory or a folder holding runs")
        candidates = [path] if is_run(path) else sorted(c.parent for c in path.rglob("config.yaml"))
        found.update({c.resolve(): None for c in candidates if is_run(c)})
    if not found:
        raise UserError(f"no run directories under {', '.join(map(str, paths))} (a run directory holds config.yaml "
                        f"and {' or '.join(LOGS)})")
    return list(found)


def is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file() and any((path / log).is_file() for log in LOGS)


def run_names(run_dir: Path) -> tuple[str, str]:
    """(agent, env) short names, read from config.yaml as written (no agent module is imported)."""
    try:
        cfg = OmegaConf.load(run_dir / "config.yaml")
        return str(cfg.agent.name), str(cfg.env.name)
    except Exception as err:  # YAML and OmegaConf errors alike: the file is not what rlgen wrote
        raise UserError(f"{run_dir / 'config.yaml'} is damaged or not an rlgen config ({one_line(err)})") from None


def read_columns(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def metrics_of(run_dir: Path) -> list[str]:
    """The metrics a run can plot: eval/<column> of eval.csv, and progress.csv's columns."""
    evals, _ = read_columns(run_dir / "eval.csv")
    progress, _ = read_columns(run_dir / "progress.csv")
    return [f"{EVAL}{c}" for c in evals if c != "step"] + [c for c in progress if c != "step"]


def read_curve(run_dir: Path, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """The metric's logged points (rows where it was not logged left out) against steps or episodes."""
    log, column = ("eval.csv", metric[len(EVAL):]) if metric.startswith(EVAL) else ("progress.csv", metric)
    _, rows = read_columns(run_dir / log)
    # "": not logged at that step; a row with missing fields (None) was cut short by a kill, and its last
    # value may be too: left out, as rlgen/csvlog.py leaves it out on resume
    points = [(r["step"], r[column]) for r in rows if r.get(column) not in ("", None) and None not in r.values()]
    try:
        steps, values = np.array(points, dtype=float).reshape(-1, 2).T
    except ValueError:
        raise UserError(f"{run_dir / log} is damaged: a step or {column} that is not a number") from None
    if x == "episodes":
        _, episodes = read_columns(run_dir / "episodes.csv")
        ended = np.sort([float(r["step"]) for r in episodes if r.get("step") not in ("", None)])
        if ended.size == 0:  # a planning agent's run: no episodes to count
            return np.empty(0), np.empty(0)
        steps = np.searchsorted(ended, steps, side="right").astype(float)  # episodes ended by each step
    return steps, values


def curves(runs: list[Path], metric: str, x: str) -> tuple[list[Curve], list[Path]]:
    """The runs' curves, and the runs left out for lacking the metric (or, for x=episodes, episodes); a
    metric no run has is a UserError."""
    has = {run: metrics_of(run) for run in runs}
    if not any(metric in names for names in has.values()):
        raise unknown("metric", metric, {m for names in has.values() for m in names})
    out, lacking = [], []
    for run in runs:
        steps, values = read_curve(run, metric, x) if metric in has[run] else (np.empty(0), np.empty(0))
        if values.size == 0:
            lacking.append(run)
            continue
        out.append(Curve(run, *run_names(run), steps, values))
    return out, lacking


def groups(found: list[Curve]) -> dict[tuple[str, str], list[Curve]]:
    by: dict[tuple[str, str], list[Curve]] = {}
    for c in found:
        by.setdefault((c.agent, c.env), []).append(c)
    return by


def draw(by: dict[tuple[str, str], list[Curve]], metric: str, x: str, out: Path) -> None:
    """One figure, one panel per env (returns of different envs share no scale): per agent, the mean
    over its runs and curve_band's 95% bootstrap band, each agent in one colour in every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(env for _, env in by))
    colour = {agent: f"C{i}" for i, agent in enumerate(dict.fromkeys(agent for agent, _ in by))}
    cols = min(len(envs), 3)
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 if cols == 1 else 4.6 * cols, 4.0 * rows), dpi=110,
                             squeeze=False)
    for ax, env in zip(axes.flat, envs, strict=False):
        for (agent, env_of), members in by.items():
            if env_of != env:
                continue
            grid, aligned = _aligned([[c.x, c.y] for c in members])
            mean, lo, hi = curve_band(aligned)
            style = "--" if agent.startswith("sb3_") else "-"
            marker = "o" if len(grid) == 1 else None  # a line through one point draws nothing
            ax.plot(grid, mean, style, color=colour[agent], marker=marker, label=f"{agent} (n={len(members)})")
            ax.fill_between(grid, lo, hi, color=colour[agent], alpha=0.2, linewidth=0)
        ax.set_title(env)
        ax.set_xlabel("environment steps" if x == "step" else "training episodes")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(envs):]:
        ax.set_visible(False)
    fig.suptitle(f"{metric}: mean over seeds, 95% bootstrap band", fontsize=10)
    fig.tight_layout()
    try:
        write_atomic(out, lambda tmp: fig.savefig(tmp, format="png"))
    except OSError as err:  # a place os.access allows but the file system refuses (read-only, /proc)
        raise UserError(f"out={out} cannot be written ({err.strerror or err})") from None
    finally:
        plt.close(fig)


def target(out: str | None) -> Path:
    """Where the picture goes: out= (replaced), else plot.png unless it exists; a UserError if unwritable."""
    path = Path(out or DEFAULT_OUT)
    if out is None and path.exists():
        raise UserError(f"{DEFAULT_OUT} exists already and is not replaced; name the file to write with out=PATH")
    if path.is_dir():
        raise UserError(f"out={path} is a directory; name a .png file")
    if (why := unwritable(path.parent)) is not None:
        raise UserError(f"out={path} cannot be written: {why}")
    return path


@cli_main
def main(argv: list[str]) -> int:
    paths, settings = split_argv(argv)
    opts = parse_settings(settings, PlotSettings, COMMAND)
    if not paths:
        raise UserError(f"name the runs to plot: {COMMAND} (a run directory, or a folder holding runs)")
    found, lacking = curves(find_runs(paths), opts.metric, opts.x)
    if not found:
        why = " and episodes to count for x=episodes (x=step counts env steps)" if opts.x == "episodes" else ""
        raise UserError(f"no run under {', '.join(map(str, paths))} logged values of {opts.metric}{why}")
    out = target(opts.out)
    by = groups(found)
    draw(by, opts.metric, opts.x, out)
    print(f"{out}: {opts.metric} of " + "; ".join(f"{agent} on {env} ({len(members)} run{'s' * (len(members) > 1)})"
                                                  for (agent, env), members in by.items()))
    if lacking:
        print(f"left out (no {opts.metric}{' or no episodes' if opts.x == 'episodes' else ''}): "
              f"{', '.join(map(str, lacking))}")
    return 0


if __name__ == "__main__":
    main()
