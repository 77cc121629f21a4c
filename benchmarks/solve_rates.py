"""How often rlgen's tuned agents solve their envs: one sweep per (agent, env) over seeds.

    python benchmarks/solve_rates.py ppo:CartPole dqn:CartPole ppo:Acrobot dqn:Acrobot [--seeds 0 1 2 3 4]

Each pair runs `python -m rlgen.train -m agent=A env=E seed=...` with the tuned config (RL Zoo's
budget); the table reports, per seed, the first evaluation step at or above the env's reward
threshold (solved_at_step) and the final evaluation return, read from each run's summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def sweep(agent: str, env: str, seeds: list[int], root: Path) -> list[dict]:
    seed_list = ",".join(map(str, seeds))
    subprocess.run([sys.executable, "-m", "rlgen.train", "-m", f"agent={agent}", f"env={env}", f"seed={seed_list}",
                    f"runs_root={root}", "progress=false"], check=True)
    summaries = [json.loads(p.read_text()) for p in sorted((root / env / agent).glob("*/summary.json"))]
    return sorted(summaries, key=lambda s: s["seed"])


def table(agent: str, env: str, rows: list[dict]) -> list[str]:
    threshold = rows[0]["reward_threshold"]
    solved = [r for r in rows if r["solved_at_step"] is not None]
    out = [f"### {agent} on {env} (threshold {threshold}, budget {rows[0]['budget_steps']} steps)", "",
           "| seed | solved at step | final eval return | wall s |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['seed']} | {r['solved_at_step']} | {r['eval_mean_return']:.1f} +- {r['eval_std_return']:.1f}"
                   f" | {r['wall_seconds']:.0f} |")
    out += ["", f"Solved on **{len(solved)} of {len(rows)}** seeds.", ""]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", help="agent:env, e.g. ppo:CartPole")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/solve"))
    parser.add_argument("--runs", type=Path, default=Path("runs/solve_rates"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for pair in args.pairs:
        agent, env = pair.split(":")
        rows = sweep(agent, env, args.seeds, args.runs / time.strftime("%Y%m%d-%H%M%S"))
        (args.out / f"{agent}_{env}.json").write_text(json.dumps(rows, indent=2) + "\n")
    seeds = " ".join(map(str, args.seeds))
    lines = ["# Solve rates of rlgen's tuned agents", "",
             f"Command: `python benchmarks/solve_rates.py {' '.join(args.pairs)} --seeds {seeds}`",
             "Evaluation: 10 deterministic episodes every `eval_every` steps (see the tuned config).", ""]
    for path in sorted(args.out.glob("*_*.json")):
        agent, env = path.stem.rsplit("_", 1)
        lines += table(agent, env, json.loads(path.read_text()))
    (args.out / "RESULTS.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
