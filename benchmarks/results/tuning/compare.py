"""Two configs' runs on the same seeds: IQM of the final evaluation with 95% bootstrap intervals, the
probability of improvement and its permutation test (rlgen/benchstats.py), and their evaluation curves.

    python benchmarks/results/tuning/compare.py NAME=DIR NAME=DIR [--out FIGURE.png]

Each DIR holds one run directory per seed (python -m rlgen.train seeds=5 run_dir=DIR: DIR/seed<k>).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from rlgen.benchstats import bootstrap_ci, iqm, permutation_pvalue, probability_of_improvement


def final_returns(folder: Path) -> tuple[list[str], np.ndarray]:
    runs = sorted(folder.glob("seed*"), key=lambda p: int(p.name[4:]))
    return [r.name for r in runs], np.array([json.loads((r / "summary.json").read_text())["eval_mean_return"]
                                             for r in runs])


def curves(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for run in sorted(folder.glob("seed*")):
        with open(run / "eval.csv") as f:
            rows = list(csv.DictReader(f))
        out.append((np.array([float(r["step"]) for r in rows]), np.array([float(r["mean_return"]) for r in rows])))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs=2, help="NAME=DIR")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    groups = {name: Path(folder) for name, _, folder in (g.partition("=") for g in args.groups)}
    scores = {}
    print("| config | seeds | final evaluation per seed | IQM | 95% interval |")
    print("| --- | --- | --- | --- | --- |")
    for name, folder in groups.items():
        seeds, x = final_returns(folder)
        scores[name] = x
        lo, hi = bootstrap_ci(x)
        print(f"| {name} | {', '.join(s[4:] for s in seeds)} | {', '.join(f'{v:.1f}' for v in x)} | "
              f"{iqm(x):.1f} | [{lo:.1f}, {hi:.1f}] |")
    (a, x), (b, y) = scores.items()
    print(f"\nP({a} > {b}) = {probability_of_improvement(x, y):.2f}, permutation test p = "
          f"{permutation_pvalue(x, y):.3f} (two-sided, exact over the splits of the runs)")
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for k, (name, folder) in enumerate(groups.items()):
            for i, (steps, ret) in enumerate(curves(folder)):
                ax.plot(steps, ret, color=f"C{k}", alpha=0.6, label=name if i == 0 else None)
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation mean return")
        ax.legend(loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.out, dpi=100)


if __name__ == "__main__":
    main()
