"""Deep soft Q-learning against DQN on CartPole-v1: same run of the script, same seeds, same budget.

    python benchmarks/sql_vs_dqn.py [--seeds 0 1 2 3 4] [--arms dqn sql sql_auto]

Each (arm, seed) is one ordinary training run with the tuned config (tuned/dqn_CartPole.yaml and
tuned/sql_CartPole.yaml share every DQN hyperparameter and the 50k-step budget; SQL replaces
epsilon-greedy by the Boltzmann policy and the max by the soft maximum). Runs go one at a time, arms
interleaved seed by seed (so timings stay comparable), and a finished run is not run again. The
report gives, per seed, the final evaluation mean (10 deterministic episodes) and the first evaluation step
at which the mean reached CartPole's threshold of 475, plus the evaluation curves.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

ARMS: dict[str, list[str]] = {
    "dqn": ["agent=dqn"],
    "sql": ["agent=sql"],  # fixed temperature (tuned/sql_CartPole.yaml)
    "sql_auto": ["agent=sql", "agent.auto_ent_coef=true"],  # temperature tuned toward a target entropy
}


def run(arm: str, seed: int, root: Path) -> dict:
    run_dir = root / arm / f"seed{seed}"
    if not (run_dir / "summary.json").exists():
        if run_dir.exists():  # an interrupted run: start it again from scratch
            shutil.rmtree(run_dir)
        cmd = [sys.executable, "-m", "rlgen.train", *ARMS[arm], "env=CartPole", f"seed={seed}",
               f"run_dir={run_dir}", "progress=false"]
        print(" ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    with open(run_dir / "eval.csv") as f:
        summary["curve"] = [(int(float(r["step"])), float(r["mean_return"])) for r in csv.DictReader(f)]
    summary["arm"] = arm
    return summary


def report(rows: list[dict], arms: list[str], seeds: list[int]) -> list[str]:
    threshold = rows[0]["reward_threshold"]
    lines = ["# SQL vs DQN on CartPole-v1", "",
             f"Command: `python benchmarks/sql_vs_dqn.py --seeds {' '.join(map(str, seeds))} --arms {' '.join(arms)}`",
             f"Budget {rows[0]['budget_steps']} env steps per run; evaluation: 10 deterministic episodes every "
             f"2500 steps; threshold {threshold}. Same machine, same script run, one run at a time.", "",
             *(f"- `{arm}`: `{' '.join(ARMS[arm])} env=CartPole` (tuned config)" for arm in arms), "",
             "| arm | seed | final eval mean | steps to 475 | best eval | wall s |", "|---|---|---|---|---|---|"]
    for r in rows:
        best = max(m for _, m in r["curve"])
        lines.append(f"| {r['arm']} | {r['seed']} | {r['eval_mean_return']:.1f} +- {r['eval_std_return']:.1f} "
                     f"| {r['solved_at_step']} | {best:.1f} | {r['wall_seconds']:.0f} |")
    lines += ["", "| arm | final eval >= 475 | reached 475 at some evaluation | median steps to 475 |",
              "|---|---|---|---|"]
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        final = sum(r["eval_mean_return"] >= threshold for r in mine)
        hit = sorted(r["solved_at_step"] for r in mine if r["solved_at_step"] is not None)
        median = hit[len(hit) // 2] if hit else None
        lines.append(f"| {arm} | {final} of {len(mine)} | {len(hit)} of {len(mine)} | {median} |")
    return lines


def plot(rows: list[dict], arms: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(arms), figsize=(4.5 * len(arms), 3.4), sharey=True)
    for ax, arm in zip(list(getattr(axes, "flat", [axes])), arms, strict=True):
        for r in (r for r in rows if r["arm"] == arm):
            steps, means = zip(*r["curve"], strict=True)
            ax.plot(steps, means, label=f"seed {r['seed']}", lw=1.2)
        ax.axhline(rows[0]["reward_threshold"], color="grey", ls="--", lw=0.8)
        ax.set_title(arm)
        ax.set_xlabel("env steps")
    axes_list = list(getattr(axes, "flat", [axes]))
    axes_list[0].set_ylabel("eval mean return")
    axes_list[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", default=["dqn", "sql"], choices=list(ARMS))
    parser.add_argument("--runs", type=Path, default=Path("runs/sql_vs_dqn"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sql_vs_dqn"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[str, int], dict] = {}
    for seed in args.seeds:  # arms interleaved, so that a change in the machine's load falls on all alike
        for arm in args.arms:
            done[arm, seed] = run(arm, seed, args.runs)
            rows = [done[a, s] for a in args.arms for s in args.seeds if (a, s) in done]
            write(rows, args, complete=len(done) == len(args.arms) * len(args.seeds))


def write(rows: list[dict], args: argparse.Namespace, complete: bool) -> None:
    """The report so far (rewritten after every run, so an interrupted benchmark still reports)."""
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, args.arms, args.out / "curves.png")
    lines = report(rows, args.arms, args.seeds)
    if not complete:
        lines += ["", f"**Partial:** {len(rows)} of {len(args.arms) * len(args.seeds)} runs done."]
    (args.out / "REPORT.md").write_text("\n".join(lines) + "\n\n![eval curves](curves.png)\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
