"""Wall-clock speed of rlgen's PPO and DQN against Stable-Baselines3, side by side in one run.

Each pair (ours, SB3) trains with identical hyperparameters (the tuned CartPole configs), budget
and seed through the same trainer; runs alternate ours/SB3 so both see the same machine load.
Evaluation happens once, at the end (eval_every=0), so the time is training time plus one
10-episode evaluation for both. The ratio reported is median(SB3 seconds) / median(ours).

    python benchmarks/speed.py [--seeds 0 1 2 3 4] [--pairs ppo dqn] [--out benchmarks/results/speed]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PAIRS = {"ppo": ("ppo", "sb3_ppo"), "dqn": ("dqn", "sb3_dqn")}


def run_one(agent: str, seed: int, workdir: Path) -> dict:
    run_dir = workdir / f"{agent}-{seed}"
    cmd = [sys.executable, "-m", "rlgen.train", f"agent={agent}", "env=CartPole", f"seed={seed}",
           f"run_dir={run_dir}", "eval_every=0", "progress=false", "torch_threads=1"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"agent": agent, "seed": seed, "wall_seconds": summary["wall_seconds"],
            "eval_mean_return": summary["eval_mean_return"], "total_steps": summary["total_steps"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in args.pairs:
            ours, theirs = PAIRS[pair]
            for seed in args.seeds:
                order = (ours, theirs) if seed % 2 == 0 else (theirs, ours)
                for agent in order:
                    row = run_one(agent, seed, Path(tmp))
                    rows.append(row)
                    print(f"{agent:8s} seed {seed}: {row['wall_seconds']:6.1f} s, "
                          f"eval return {row['eval_mean_return']:.1f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "machine": machine()}, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(report(rows, args.pairs, args.seeds))
    print((args.out / "RESULTS.md").read_text())


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(), "loadavg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def report(rows: list[dict], pairs: list[str], seeds: list[int]) -> str:
    lines = ["# Speed: rlgen against Stable-Baselines3 on CartPole-v1", "",
             "Same tuned hyperparameters (RL Zoo's), budget, seeds and trainer; runs alternate ours/SB3.",
             "Command: `python benchmarks/speed.py --seeds " + " ".join(map(str, seeds)) + "`", "",
             "| pair | budget | ours median s | SB3 median s | speed-up (SB3/ours) | ours returns | SB3 returns |",
             "|---|---|---|---|---|---|---|"]
    for pair in pairs:
        ours, theirs = PAIRS[pair]
        a = [r for r in rows if r["agent"] == ours]
        b = [r for r in rows if r["agent"] == theirs]
        ta, tb = statistics.median(r["wall_seconds"] for r in a), statistics.median(r["wall_seconds"] for r in b)
        ra = ", ".join(f"{r['eval_mean_return']:.0f}" for r in a)
        rb = ", ".join(f"{r['eval_mean_return']:.0f}" for r in b)
        lines.append(f"| {ours} vs {theirs} | {a[0]['total_steps']} | {ta:.1f} | {tb:.1f} | **{tb / ta:.2f}x** "
                     f"| {ra} | {rb} |")
    m = machine()
    lines += ["", f"Machine: {m['cpus']} cores ({m['processor']}), Python {m['python']}, torch {m['torch']}, "
              f"one torch thread per run; load average at the end {m['loadavg'][0]:.2f}; {m['date']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
