"""The RLHF run report: REPORT.md and rlhf.png in the run directory (and the figure in TensorBoard).

The figure is the over-optimisation picture of Gao et al. 2022 (fig. 1): gold and proxy reward
against sqrt(KL to the SFT policy), for RL (each PPO batch) and for best-of-n; next to it the reward
model's held-out accuracy beside the ceiling the label noise allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def plot(history: list[dict], info: dict[str, Any], summary: dict[str, Any], path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    over_optimisation(ax, history, info.get("best_of_n", []), summary["gold_reward_sft"])
    acc, ceil = summary["reward_model_accuracy"], summary["reward_model_noise_ceiling"]
    bx.bar(["RM held-out", "noise ceiling"], [acc, ceil], color=["tab:green", "gray"])
    bx.set_ylim(0.5, 1.0)
    bx.set_title("preference accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return fig


def over_optimisation(ax, history: list[dict], bon: list[dict], sft_gold: float, label: str = "") -> None:
    """Gold and proxy reward against sqrt(KL): RL batches as dots, best-of-n as lines."""
    history = [h for h in history if "rlhf/kl" in h]  # direct methods monitor only every monitor_every steps
    if history:
        x = np.sqrt(np.maximum([h["rlhf/kl"] for h in history], 0.0))
        for key, color in (("proxy", "tab:blue"), ("gold", "tab:orange")):
            y = [h[f"rlhf/{key}_reward"] for h in history]
            ax.plot(x, y, ".", color=color, alpha=0.4, label=f"RL {key}{label}")
    if bon:
        xb = np.sqrt([b["kl"] for b in bon])
        ax.plot(xb, [b["proxy"] for b in bon], "-o", color="tab:blue", label="best-of-n proxy")
        ax.plot(xb, [b["gold"] for b in bon], "-o", color="tab:orange", label="best-of-n gold")
    ax.axhline(sft_gold, color="gray", ls=":", label="SFT gold")
    ax.set_xlabel("sqrt(KL to SFT policy)  [sqrt(nats)]")
    ax.set_ylabel("reward (proxy: RM normalised on SFT samples)")
    ax.set_title("gold vs proxy reward")
    ax.legend(fontsize=8)


def markdown(summary: dict[str, Any], info: dict[str, Any], title: str = "RLHF run") -> str:
    secs, bon = summary["stage_seconds"], info.get("best_of_n", [])
    lines = [
        f"# {title}", "", "![gold and proxy reward against sqrt(KL)](rlhf.png)", "",
        "| figure | value |", "|---|---|",
        f"| reward model held-out accuracy | {summary['reward_model_accuracy']:.3f} |",
        f"| label-noise ceiling | {summary['reward_model_noise_ceiling']:.3f} |",
        f"| gold reward, SFT policy | {summary['gold_reward_sft']:.3f} |",
        f"| gold reward, final policy | {summary['gold_reward_final']:.3f} |",
        f"| proxy reward, final policy | {summary['proxy_reward_final']:.3f} |",
        f"| KL(final policy, SFT) [nats per review] | {summary['kl_final']:.3f} |",
        "", "| stage | seconds |", "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in secs.items()],
        "", "## Best-of-n (against the reward model)", "",
        "| n | KL | proxy | gold |", "|---|---|---|---|",
        *[f"| {b['n']} | {b['kl']:.2f} | {b['proxy']:.3f} | {b['gold']:.3f} |" for b in bon],
        "", "## Samples before (SFT)", "", *[f"- `{s}`" for s in info.get("samples_sft", [])],
        "", "## Samples after training", "", *[f"- `{s}`" for s in summary["samples_final"]], "",
    ]
    return "\n".join(lines)


def write_report(run_dir: Path, summary: dict[str, Any], history: list[dict], info: dict[str, Any],
                 tb=None, title: str = "RLHF run") -> None:
    fig = plot(history, info, summary, run_dir / "rlhf.png")
    if tb is not None:
        tb.add_figure("rlhf/over_optimisation", fig, close=False)
    import matplotlib.pyplot as plt

    plt.close(fig)
    (run_dir / "REPORT.md").write_text(markdown(summary, info, title))
