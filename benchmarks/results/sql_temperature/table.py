"""The table of RESULTS.md, from the run directories of the temperature study.

    python benchmarks/results/sql_temperature/table.py RUNS [--json results.json]

RUNS holds the directories <env>_<setting>[_<more seeds>] (e.g. MountainCar_fixed-0.005,
MountainCar_fixed-0.005_seeds3-5), each holding the seed0, seed1, ... that one
`python -m rlgen.train ... seeds=3 run_dir=RUNS/<that name>` wrote; a setting's row takes the seeds of all its
directories. Per setting: the final evaluation (10 deterministic episodes) of each seed, the mean of
each seed's last three evaluations (one evaluation is noisy), how many seeds end past the env's threshold
and how many pass it at some evaluation (and first where), how many of the evaluations of the second half
of training are past it (CartPole's returns swing between evaluations), and the policy's entropy
(train/entropy, the mean over the last 5% of training steps) with the final temperature.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

# MountainCar: reaching the flag at all (a mean over 10 episodes above -200: some episode ended before the
# time limit); the others: gymnasium's reward_threshold
THRESHOLDS = {"MountainCar": -200.0, "CartPole": 475.0, "Acrobot": -100.0, "LunarLander": 200.0}


def passes(env: str, value: float) -> bool:
    return value > THRESHOLDS[env] if env == "MountainCar" else value >= THRESHOLDS[env]


def read(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def seed_record(env: str, run: Path) -> dict:
    curve = [(int(r["step"]), float(r["mean_return"])) for r in read(run / "eval.csv")]
    progress = read(run / "progress.csv")
    last = int(progress[-1]["step"])
    tail = [float(r["train/entropy"]) for r in progress if int(r["step"]) >= 0.95 * last]
    return {"seed": run.name, "curve": curve, "final": curve[-1][1],
            "last3": sum(v for _, v in curve[-3:]) / len(curve[-3:]),
            "late_passes": [passes(env, v) for _, v in curve[len(curve) // 2:]],
            "first_pass": next((s for s, v in curve if passes(env, v)), None),
            "entropy_end": sum(tail) / len(tail), "ent_coef_end": float(progress[-1]["train/ent_coef"])}


def row(rec: dict) -> str:
    env, seeds = rec["env"], rec["seeds"]
    n, late = len(seeds), [s["late_passes"] for s in seeds]
    cells = [env, rec["setting"], ", ".join(s["seed"].removeprefix("seed") for s in seeds),
             ", ".join(f"{s['final']:.1f}" for s in seeds),
             f"{sum(s['last3'] for s in seeds) / n:.1f}",
             f"{sum(passes(env, s['final']) for s in seeds)}/{n}",
             f"{sum(s['first_pass'] is not None for s in seeds)}/{n}",
             f"{sum(map(sum, late))}/{sum(map(len, late))}",
             ", ".join("-" if s["first_pass"] is None else f"{s['first_pass'] / 1000:g}k" for s in seeds),
             f"{sum(s['entropy_end'] for s in seeds) / n:.3f}",
             ", ".join(f"{s['ent_coef_end']:.2g}" for s in seeds)]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", type=Path)
    parser.add_argument("--json", type=Path, help="also write every seed's evaluation curve here")
    args = parser.parse_args()
    records: dict[tuple[str, str], dict] = {}
    for group in sorted(p for p in args.runs.iterdir() if p.is_dir()):
        env, setting = group.name.split("_")[:2]
        rec = records.setdefault((env, setting), {"env": env, "setting": setting, "seeds": []})
        runs = [run for run in sorted(group.glob("seed*")) if (run / "summary.json").exists()]
        rec["seeds"] += [seed_record(env, run) for run in runs]
    print("| env | setting | seeds | final eval return per seed | mean of last 3 evals | final past threshold "
          "| past threshold at some eval | evals past it, second half | first eval past it "
          "| entropy at the end (nats) | final ent_coef |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    done = [rec for _, rec in sorted(records.items()) if rec["seeds"]]
    for rec in done:
        print(row(rec))
    if args.json:
        args.json.write_text(json.dumps(done, indent=1) + "\n")


if __name__ == "__main__":
    main()
