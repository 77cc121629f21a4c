"""RLHF benchmark: the whole pipeline over several seeds, one run at a time, and its report.

    python benchmarks/rlhf/run.py [--seeds 0 1 2] [--low-kl 0.01] [--out benchmarks/results/rlhf]

Each run is `python -m rlgen.train agent=rlhf env=TextPreference seed=S` with its budget from
rlgen/conf/tuned/rlhf_TextPreference.yaml. The SFT cache starts empty, so the first run pays for
supervised pretraining and the others reuse it (the SFT model depends on the corpus and model
config, not on the run's seed: the seeds vary the preference labels, the reward model and RL).
One more run with a small fixed KL coefficient shows how far the proxy can be pushed past the
point where the gold reward stops following it. Writes REPORT.md, PNGs and results.json to --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rlgen.rlhf.report import over_optimisation

SUMMARY = ("gold_reward_sft", "gold_reward_final", "proxy_reward_final", "kl_final",
           "reward_model_accuracy", "reward_model_noise_ceiling")


def run_one(seed: int, run_dir: Path, cache: Path, extra: list[str], label: str) -> dict:
    cmd = [sys.executable, "-m", "rlgen.train", "agent=rlhf", "env=TextPreference", f"seed={seed}",
           f"run_dir={run_dir}", "progress=false", f"agent.cache_dir={cache}", *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    (run_dir / "command_seconds.txt").write_text(f"{time.perf_counter() - t0}\n")
    return load_run(seed, run_dir, cache, extra, label)


def load_run(seed: int, run_dir: Path, cache: Path, extra: list[str], label: str) -> dict:
    wall = float((run_dir / "command_seconds.txt").read_text())
    summary = json.loads((run_dir / "rlhf_summary.json").read_text())
    curves = json.loads((run_dir / "rlhf_curves.json").read_text())
    return {"seed": seed, "label": label, "overrides": extra, "wall_seconds": wall, **summary, "curves": curves}


def figures(runs: list[dict], low: dict | None, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs) + (low is not None), figsize=(5 * (len(runs) + 1), 4), sharey=True,
                             squeeze=False)  # one run (--seeds 0 --low-kl -1) still gives a row of axes
    for ax, r in zip(axes[0], runs + ([low] if low else []), strict=True):
        over_optimisation(ax, r["curves"]["rl"], r["curves"]["best_of_n"], r["gold_reward_sft"])
        ax.set_title(f"seed {r['seed']}, {r['label']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "over_optimisation.png", dpi=90)
    plt.close(fig)

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(runs))
    ax.bar(x - 0.2, [r["reward_model_accuracy"] for r in runs], 0.4, label="RM held-out accuracy")
    ax.bar(x + 0.2, [r["reward_model_noise_ceiling"] for r in runs], 0.4, color="gray", label="noise ceiling")
    ax.set_xticks(x, [f"seed {r['seed']}" for r in runs])
    ax.set_ylim(0.5, 1.0)
    ax.legend(fontsize=8)
    ax.set_title("reward model vs the label-noise ceiling")
    for r in runs + ([low] if low else []):
        steps = [h["step"] for h in r["curves"]["rl"]]
        tag = f"seed {r['seed']}" + (" low KL" if r is low else "")
        bx.plot(steps, [h["rlhf/gold_reward"] for h in r["curves"]["rl"]], label=f"gold, {tag}")
    bx.axhline(np.mean([r["gold_reward_sft"] for r in runs]), color="gray", ls=":", label="SFT gold")
    bx.set_xlabel("generated tokens (env steps)")
    bx.set_title("gold reward during RL")
    bx.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "reward_model_and_gold.png", dpi=90)
    plt.close(fig)


KL_BINS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, np.inf)


def kl_binned(runs: list[dict]) -> list[str]:
    """Mean gold (and proxy) reward of the RL batches whose KL falls in each bin."""
    bins = list(zip(KL_BINS[:-1], KL_BINS[1:], strict=True))
    lines = ["| run | " + " | ".join(f"KL {lo:g}-{hi:g}" for lo, hi in bins) + " |", "|" + "---|" * (len(bins) + 1)]
    for r in runs:
        cells = []
        for lo, hi in bins:
            hs = [h for h in r["curves"]["rl"] if lo <= h["rlhf/kl"] < hi]
            gold = np.mean([h["rlhf/gold_reward"] for h in hs]) if hs else np.nan
            proxy = np.mean([h["rlhf/proxy_reward"] for h in hs]) if hs else np.nan
            cells.append(f"{gold:.2f} ({proxy:.2f}, n={len(hs)})" if hs else "")
        lines.append(f"| seed {r['seed']}, {r['label']} | " + " | ".join(cells) + " |")
    return lines


def table(runs: list[dict]) -> list[str]:
    stages = list(runs[0]["stage_seconds"])
    head = ["seed", *SUMMARY, *[f"{s} s" for s in stages], "whole command s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = [f"{r['seed']} ({r['label']})"]
        cells += [f"{r[k]:.3f}" for k in SUMMARY] + [f"{r['stage_seconds'][s]:.0f}" for s in stages]
        lines.append("| " + " | ".join(cells + [f"{r['wall_seconds']:.0f}"]) + " |")
    return lines


def findings(runs: list[dict], low: dict | None) -> list[str]:
    """The figures a reader looks for, in sentences (computed, so they stay true on a re-run)."""
    bon = [max(r["curves"]["best_of_n"], key=lambda b: b["n"]) for r in runs]
    dips = [sum(h["rlhf/gold_reward"] < r["gold_reward_sft"] for h in r["curves"]["rl"][20:]) for r in runs]
    lines = [
        f"- Whole pipeline in one command with a cold SFT cache: {runs[0]['wall_seconds']:.0f} s "
        f"(stages: {', '.join(f'{k} {v:.0f} s' for k, v in runs[0]['stage_seconds'].items())}; the rest is "
        "start-up, evaluation and the report). The machine's 2 cores were shared with other jobs.",
        f"- Reward model held-out accuracy {np.mean([r['reward_model_accuracy'] for r in runs]):.3f} against a "
        f"label-noise ceiling of {np.mean([r['reward_model_noise_ceiling'] for r in runs]):.3f} (chance 0.5).",
        f"- RL (adaptive KL): gold reward {np.mean([r['gold_reward_final'] for r in runs]):.2f} "
        f"+- {np.std([r['gold_reward_final'] for r in runs]):.2f} against the SFT policy's "
        f"{np.mean([r['gold_reward_sft'] for r in runs]):.2f}, at KL {np.mean([r['kl_final'] for r in runs]):.1f} "
        f"nats (seeds {', '.join(str(r['seed']) for r in runs)}). Best-of-{bon[0]['n']} reaches gold "
        f"{np.mean([b['gold'] for b in bon]):.2f} at KL {bon[0]['kl']:.2f}.",
        f"- RL batches after the first 20 whose gold fell below the SFT policy's: {dips} per seed "
        "(short collapses, visible as dips in the right-hand figure, from which PPO recovers).",
    ]
    if low:
        peak = max(low["curves"]["rl"], key=lambda h: h["rlhf/gold_reward"])
        lines.append(
            f"- Over-optimisation, fixed KL coefficient {low['label'].split()[-1]}: the gold reward peaks at "
            f"{peak['rlhf/gold_reward']:.2f} (KL {peak['rlhf/kl']:.1f}) and ends at {low['gold_reward_final']:.2f} "
            f"at KL {low['kl_final']:.1f} while the proxy keeps rising to {low['proxy_reward_final']:.2f}: "
            "the policy learnt repetition, which the reward model (trained on SFT samples only) does not "
            "penalise and the hidden human does.")
    return lines


def report(runs: list[dict], low: dict | None, out: Path) -> str:
    def ms(key: str) -> str:
        v = np.array([r[key] for r in runs])
        return f"{v.mean():.3f} +- {v.std():.3f}"

    lines = [
        "# RLHF benchmark", "",
        f"{len(runs)} seeds of `python -m rlgen.train agent=rlhf env=TextPreference` (the first with a cold "
        "SFT cache), then one run with a small fixed KL coefficient.", "",
        *findings(runs, low), "",
        "| mean +- std over seeds | value |", "|---|---|",
        *[f"| {k} | {ms(k)} |" for k in SUMMARY], "",
        "## Runs", "", *table(runs + ([low] if low else [])), "",
        "## Gold reward (proxy, number of PPO batches) of RL against KL to the SFT policy [nats]", "",
        f"SFT policy: gold {ms('gold_reward_sft')}.", "", *kl_binned(runs + ([low] if low else [])), "",
        "![over-optimisation](over_optimisation.png)", "", "![reward model and gold](reward_model_and_gold.png)", "",
        "## Samples after RL (seed 0)", "", *[f"- `{s}`" for s in runs[0]["samples_final"]], "",
    ]
    if low:
        lines += ["## Samples after RL with the small fixed KL coefficient", "",
                  *[f"- `{s}`" for s in low["samples_final"]], ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--low-kl", type=float, default=0.01, help="fixed KL coefficient of the extra run (<0: skip)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/rlhf"))
    p.add_argument("--aggregate", type=Path, help="only rebuild the report from this earlier work directory")
    p.add_argument("overrides", nargs="*", help="key=value overrides for every run (e.g. a tiny budget)")
    args = p.parse_args()
    work = args.aggregate or Path(tempfile.mkdtemp(prefix="rlhf-bench-"))
    run = load_run if args.aggregate else run_one
    cache = work / "cache"
    runs = [run(s, work / f"seed{s}", cache, args.overrides, "adaptive KL") for s in args.seeds]
    low = None
    if args.low_kl >= 0:
        extra = ["agent.kl.adaptive=false", f"agent.kl.kl_coef={args.low_kl}"]
        low = run(args.seeds[0], work / "low_kl", cache, args.overrides + extra, f"fixed KL coef {args.low_kl}")
    args.out.mkdir(parents=True, exist_ok=True)
    figures(runs, low, args.out)
    (args.out / "REPORT.md").write_text(report(runs, low, args.out))
    slim = [{k: v for k, v in r.items() if k != "curves"} for r in runs + ([low] if low else [])]
    (args.out / "results.json").write_text(json.dumps(slim, indent=2) + "\n")
    print(f"wrote {args.out / 'REPORT.md'}; run directories in {work}")


if __name__ == "__main__":
    main()
