"""The k-armed testbed (Sutton & Barto Section 2.3): many independent bandit problems at once.

    python -m rlgen.bandit_testbed [problems=2000] [steps=1000] [k=10] [kind=gaussian] [seed=0] [out=.]
        [agents=epsilon_greedy:epsilon=0,epsilon_greedy:epsilon=0.1,ucb:c=2,gradient_bandit:alpha=0.1:baseline=false]

Each agent's rule (rlgen/agents/bandit.py) holds (problems, k) arrays, so one numpy step advances all
problems together; the result is the average reward and the % of optimal pulls at each step, over
problems, as in S&B Figures 2.2-2.5.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from rlgen.agents import AGENTS, agent_class
from rlgen.agents.bandit import BanditRule
from rlgen.cli import build_settings, parse_settings
from rlgen.config import check_seed
from rlgen.errors import UserError, cli_main, did_you_mean, unknown

COMMAND = "python -m rlgen.bandit_testbed"
BANDIT_AGENTS = ("epsilon_greedy", "ucb", "gradient_bandit", "thompson_sampling")
DEFAULT_AGENTS = ("epsilon_greedy:epsilon=0", "epsilon_greedy:epsilon=0.01", "epsilon_greedy:epsilon=0.1")
KINDS = ("gaussian", "bernoulli", "nonstationary")
SPEC = "name:field=value[:field=value ...]"


@dataclass
class Curves:
    label: str
    reward: np.ndarray
    """(steps,) reward at each step, averaged over problems"""
    optimal: np.ndarray
    """(steps,) fraction of problems pulling an optimal arm at each step"""
    seconds: float


def parse_agent(spec: str) -> tuple[type[BanditRule], Any, str]:
    """'ucb:c=1:alpha=0.1' -> (rule class, typed config, label)."""
    name, *items = spec.split(":")
    registered = [a for a in BANDIT_AGENTS if a in AGENTS]
    if "=" in name:
        raise UserError(f"'{spec}' is not an agent spec: write {SPEC}, agents separated by commas")
    if name not in registered:
        raise unknown("bandit agent", name, registered)
    cls = agent_class(name)
    names = [f.name for f in fields(cls.Config) if f.name != "name"]
    values: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if key in values:
            raise UserError(f"agent '{spec}': field '{key}' given twice")
        if not sep or key not in names:
            raise UserError(f"agent '{spec}': {name} has no field '{key}'{did_you_mean(key, names)}; "
                            f"fields: {', '.join(names)}; write {SPEC}")
        values[key] = value
    try:
        config = build_settings(cls.Config, values)
    except UserError as err:
        raise UserError(f"agent '{spec}': {err}") from None
    return cls.Rule, config, spec


@dataclass
class BanditTestbedSettings:
    """The k-armed testbed (Sutton & Barto Section 2.3): every agent on the same bandit problems;
    prints each agent's average reward and % optimal action and plots both against steps to
    <out>/testbed.png (S&B Figures 2.2-2.5)."""

    problems: int = 2000
    """independent bandit problems, run at once"""
    steps: int = 1000
    """pulls per problem"""
    k: int = 10
    """arms per problem"""
    kind: str = "gaussian"
    """gaussian (q* ~ N(0, 1), rewards N(q*, 1)) | bernoulli (q* ~ U(0, 1)) | nonstationary (q* from 0,
    random walks, S&B Exercise 2.5)"""
    seed: int = 0
    """seeds the agents; the problems come from seed + 1, the same for every agent"""
    agents: list[str] = field(default_factory=lambda: list(DEFAULT_AGENTS))
    """agent specs name:field=value[:field=value], e.g. ucb:c=2 or gradient_bandit:alpha=0.1:baseline=false"""
    out: str = "."
    """directory testbed.png is written to (made if missing)"""

    def __post_init__(self) -> None:
        for name in ("problems", "steps", "k"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        if self.kind not in KINDS:
            raise unknown("kind", self.kind, KINDS)
        check_seed(seed=self.seed)
        if not self.agents:
            raise UserError(f"agents is empty: give at least one agent spec ({SPEC}), e.g. agents=ucb:c=2")
        for spec in self.agents:
            parse_agent(spec)


def output_dir(path: Path) -> Path:
    """`path` as a directory this process can write to, made if missing: checked before the
    computation, so a typo in out= costs nothing."""
    if path.suffix == ".png" and not path.is_dir():
        raise UserError(f"out={path} names a file: out is the directory testbed.png is written to")
    if path.exists() and not path.is_dir():
        raise UserError(f"out={path} is not a directory: give the directory testbed.png is written to")
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as err:
        raise UserError(f"out={path} is not a writable directory ({err.strerror})") from None
    return path


def run_testbed(spec: str, problems: int = 2000, steps: int = 1000, k: int = 10, kind: str = "gaussian",
                seed: int = 0) -> Curves:
    """One agent on `problems` bandits for `steps` pulls each (rewards N(q*, 1) with q* ~ N(0, 1);
    bernoulli: q* ~ U(0, 1); nonstationary: q* from 0 with N(0, 0.01^2) walks, S&B Exercise 2.5)."""
    rule_cls, config, label = parse_agent(spec)
    rng = np.random.default_rng(seed)
    env_rng = np.random.default_rng(seed + 1)  # same problems for every agent of a comparison
    if kind == "gaussian":
        q = env_rng.normal(0, 1, (problems, k))
    elif kind == "bernoulli":
        q = env_rng.uniform(0, 1, (problems, k))
    else:
        q = np.zeros((problems, k))
    rule = rule_cls(problems, k, config, rng)
    rows = np.arange(problems)
    reward, optimal = np.zeros(steps), np.zeros(steps)
    t0 = time.perf_counter()
    for t in range(steps):
        arms = rule.select()
        if kind == "bernoulli":
            r = (env_rng.random(problems) < q[rows, arms]).astype(float)
        else:
            r = q[rows, arms] + env_rng.normal(0, 1, problems)
        optimal[t] = (q[rows, arms] == q.max(axis=1)).mean()
        reward[t] = r.mean()
        rule.update(arms, r)
        if kind == "nonstationary":
            q += env_rng.normal(0, 0.01, q.shape)
    return Curves(label, reward, optimal, time.perf_counter() - t0)


def plot(curves: list[Curves], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for c in curves:
        top.plot(np.arange(1, len(c.reward) + 1), c.reward, lw=1, label=c.label)
        bottom.plot(np.arange(1, len(c.optimal) + 1), 100 * c.optimal, lw=1, label=c.label)
    top.set_ylabel("average reward")
    bottom.set_ylabel("% optimal action")
    bottom.set_xlabel("steps")
    top.set_title(title, fontsize=10)
    top.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@cli_main
def main(argv: list[str]) -> int:
    opts = parse_settings(argv, BanditTestbedSettings, COMMAND)
    path = output_dir(Path(opts.out)) / "testbed.png"
    curves = []
    t0 = time.perf_counter()
    for spec in opts.agents:
        c = run_testbed(spec, opts.problems, opts.steps, opts.k, opts.kind, opts.seed)
        curves.append(c)
        print(f"{c.label:40s} mean reward {c.reward.mean():.3f}  last-100 reward {c.reward[-100:].mean():.3f}  "
              f"% optimal (last 100) {100 * c.optimal[-100:].mean():5.1f}  {c.seconds:.2f}s")
    print(f"total {time.perf_counter() - t0:.2f}s for {len(curves)} agents x {opts.problems} problems "
          f"x {opts.steps} steps")
    plot(curves, path, f"{opts.k}-armed testbed ({opts.kind}), {opts.problems} problems")
    print(f"plot: {path}")
    return 0


if __name__ == "__main__":
    main()
