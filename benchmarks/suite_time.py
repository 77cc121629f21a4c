"""The time a suite's rlgen runs take now against an earlier rlgen, side by side on this machine.

For each (agent, env) of the suite, the same `python -m rlgen.bench <suite> agents=A envs=E ...` runs
once with the earlier rlgen (a git revision, checked out into a temporary worktree) and once with this
one, alternating which goes first, one worker each so neither shares the cores with the other. The
figure is the bench command's wall time; the suite's own budgets, scaled by --budget-scale for both.

    python benchmarks/suite_time.py --before 7255613 [--suite classic] [--agents ppo dqn sql]
        [--budget-scale 0.2] [--out benchmarks/results/suite_time]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def bench_seconds(tree: Path, work: Path, suite: str, agent: str, env: str, scale: float) -> float:
    """Wall seconds of one bench command run with the rlgen of `tree`."""
    cmd = [sys.executable, "-m", "rlgen.bench", suite, f"agents={agent}", f"envs={env}", f"budget_scale={scale}",
           "workers=1", f"logdir={work / 'runs'}", f"out={work / 'report'}", "force=true"]
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(cmd, cwd=tree, env=environment, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier rlgen's git revision")
    parser.add_argument("--suite", default="classic")
    parser.add_argument("--agents", nargs="+", default=["ppo", "dqn", "sql"])
    parser.add_argument("--envs", nargs="+", default=["CartPole", "Acrobot", "MountainCar", "LunarLander"])
    parser.add_argument("--budget-scale", type=float, default=0.2)
    parser.add_argument("--out", type=Path, default=HERE / "benchmarks" / "results" / "suite_time")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(old), args.before], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for i, (agent, env) in enumerate((a, e) for a in args.agents for e in args.envs):
                seconds = {}
                for which in (("before", "now") if i % 2 == 0 else ("now", "before")):
                    tree = old if which == "before" else HERE
                    seconds[which] = bench_seconds(tree, Path(tmp) / f"{which}-{agent}-{env}", args.suite, agent,
                                                   env, args.budget_scale)
                rows.append({"agent": agent, "env": env, **seconds})
                print(f"{agent} {env}: before {seconds['before']:.0f} s, now {seconds['now']:.0f} s "
                      f"({seconds['now'] / seconds['before']:.0%})", flush=True)
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(old)], check=False)
    write(args, rows)


def write(args: argparse.Namespace, rows: list[dict]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    before, now = sum(r["before"] for r in rows), sum(r["now"] for r in rows)
    meta = {"before": args.before, "suite": args.suite, "budget_scale": args.budget_scale,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_average_end": os.getloadavg()[0]}
    (args.out / "results.json").write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    lines = [f"# The {args.suite} suite's rlgen runs: now against rlgen {args.before}", "",
             f"Command: `python benchmarks/suite_time.py --before {args.before} --suite {args.suite} --agents "
             f"{' '.join(args.agents)} --budget-scale {args.budget_scale}`; {meta['date']}, {meta['cpus']} cores, "
             f"load average at the end {meta['load_average_end']:.2f}.", "",
             "Each row: the wall seconds of `python -m rlgen.bench <suite> agents=A envs=E budget_scale=F workers=1` "
             "with each rlgen, run one after the other (alternating which goes first).", "",
             "| agent | env | before s | now s | now / before |", "|---|---|---|---|---|"]
    lines += [f"| {r['agent']} | {r['env']} | {r['before']:.0f} | {r['now']:.0f} | {r['now'] / r['before']:.0%} |"
              for r in rows]
    lines += [f"| **all** | | **{before:.0f}** | **{now:.0f}** | **{now / before:.0%}** |", ""]
    (args.out / "RESULTS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
