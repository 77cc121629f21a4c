"""The k-armed testbed (Sutton & Barto Section 2.3): many independent bandit problems at once.

    python -m rlgen.bandit_testbed [--problems 2000] [--steps 1000] [--kind gaussian] [--out testbed.png]
        [--agents "epsilon_greedy:epsilon=0" "epsilon_greedy:epsilon=0.1" "ucb:c=2" ...]

Each agent's rule (rlgen/agents/bandit.py) holds (problems, k) arrays, so one numpy step advances all
problems together; the result is the average reward and the % of optimal pulls at each step, over
problems, as in S&B Figures 2.2-2.5.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from rlgen.agents import AGENTS, agent_class
from rlgen.errors import UserError, cli_main, unknown

BANDIT_AGENTS = ("epsilon_greedy", "ucb", "gradient_bandit", "thompson_sampling")
DEFAULT_AGENTS = ("epsilon_greedy:epsilon=0", "epsilon_greedy:epsilon=0.01", "epsilon_greedy:epsilon=0.1")


@dataclass
class Curves:
    label: str
    reward: np.ndarray
    """(steps,) reward at each step, averaged over problems"""
    optimal: np.ndarray
    """(steps,) fraction of problems pulling an optimal arm at each step"""
    seconds: float


def parse_agent(spec: str):
    """'ucb:c=1,alpha=0.1' -> (rule class, typed config, label)."""
    name, _, args = spec.partition(":")
    if name not in BANDIT_AGENTS:
        raise unknown("bandit agent", name, [a for a in BANDIT_AGENTS if a in AGENTS])
    cls = agent_class(name)
    types = {f.name: f.type for f in fields(cls.Config)}
    values = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        if key not in types:
            raise UserError(f"{name} has no field '{key}'; fields: {', '.join(types)}")
        values[key] = {"bool": lambda v: v.lower() == "true", "str": str}.get(str(types[key]), float)(value)
    return cls.Rule, cls.Config(name=name, **values), spec


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
    parser = argparse.ArgumentParser(prog="python -m rlgen.bandit_testbed", description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--kind", choices=["gaussian", "bernoulli", "nonstationary"], default="gaussian")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agents", nargs="+", default=list(DEFAULT_AGENTS))
    parser.add_argument("--out", type=Path, default=Path("testbed.png"))
    args = parser.parse_args(argv)
    curves = []
    t0 = time.perf_counter()
    for spec in args.agents:
        c = run_testbed(spec, args.problems, args.steps, args.k, args.kind, args.seed)
        curves.append(c)
        print(f"{c.label:40s} mean reward {c.reward.mean():.3f}  last-100 reward {c.reward[-100:].mean():.3f}  "
              f"% optimal (last 100) {100 * c.optimal[-100:].mean():5.1f}  {c.seconds:.2f}s")
    print(f"total {time.perf_counter() - t0:.2f}s for {len(curves)} agents x {args.problems} problems "
          f"x {args.steps} steps")
    plot(curves, args.out, f"{args.k}-armed testbed ({args.kind}), {args.problems} problems")
    print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    main()
