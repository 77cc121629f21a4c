"""The report of a suite scored by alignment (`metric: alignment`; benchmarks/suites/alignment.yaml): language
models aligned by several methods, judged on the hidden gold reward against KL(policy || SFT), with the
statistics of rlgen/alignstats.py. From the run directories alone: REPORT.md, frontier.png, direct.png (direct
methods along training), results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlgen import benchstats as bs
from rlgen.alignstats import (
    BEST_OF_N,
    FIXED_SQRT_KL,
    Records,
    Series,
    by_method,
    conclusion,
    cost_row,
    frontier_at,
    gao_curve,
    load_runs,
    method_fit,
    method_of,
    method_row,
    points,
    seed_frontiers,
)
from rlgen.benchgen import _fmt, _policies_md
from rlgen.benchreport import _header, _machine_section, report_info, save_report
from rlgen.benchsuite import Job, Suite, base

GRID_POINTS = 101
FRONTIER_ZOOM = 4.0
"""the frontier panel's largest sqrt KL (16 nats): the frontiers rise well within it"""

# -- figures ----------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(methods: dict[str, dict[str, Series]], fits: dict[str, Any], grid: np.ndarray, sft: float,
                  path: Path) -> None:
    """frontier.png: (a) every evaluation point and each method's frontier (mean over seeds, 95% bootstrap
    band), best-of-n's curve; (b) the gain over SFT gold with Gao et al.'s fitted forms, dashed."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5), dpi=110)
    band = [sft, sft]  # the range of the frontiers' bands, which the left panel shows
    for k, (method, labels) in enumerate(methods.items()):
        color = "black" if method == BEST_OF_N else f"C{k % 10}"  # best-of-n comes last
        d, gold, gain = points(labels)
        if method == BEST_OF_N:
            (v,) = labels.values()
            mean, lo, hi = bs.curve_band(v["gold"])
            x = np.sqrt(v["kl"][0])
            ax.plot(x, mean, "-o", ms=3, color=color, label=f"{method} (n={len(v['seeds'])})")
        else:
            ax.scatter(d, gold, s=10, color=color, alpha=0.3, linewidths=0)
            curves = seed_frontiers(labels, grid)
            x = grid[grid <= d.max()]
            mean, lo, hi = (c[: len(x)] for c in bs.curve_band(curves))
            ax.plot(x, mean, color=color, label=f"{method} (n={len(curves)})")
        ax.fill_between(x, lo, hi, color=color, alpha=0.15, linewidth=0)
        band = [min(band[0], float(np.nanmin(lo))), max(band[1], float(np.nanmax(hi)))]
        bx.scatter(d, gain, s=10, color=color, alpha=0.3, linewidths=0)
        if fits.get(method):
            dd = np.linspace(0, d.max(), 100)
            form = "bon" if method == BEST_OF_N else "rl"
            bx.plot(dd, gao_curve(dd, fits[method], form), "--", color=color, label=method)
    ax.axhline(sft, color="gray", linestyle=":", label="SFT gold")
    bx.axhline(0, color="gray", linestyle=":")
    # the frontiers rise within a few sqrt-nats; points far out (collapsed policies) are in the right panel
    ax.set_xlim(0, min(float(grid[-1]), FRONTIER_ZOOM) or 1.0)
    ax.set_ylim(band[0] - 0.5, band[1] + 0.2)
    ax.set(xlabel="sqrt(KL to SFT) [sqrt(nats)]", ylabel="gold reward",
           title="frontier: best gold within a KL budget (mean over seeds, 95% band)")
    bx.set(xlabel="sqrt(KL to SFT) [sqrt(nats)]", ylabel="gold reward - SFT gold",
           title="Gao et al. 2022 forms, least squares (dashed)")
    for a in (ax, bx):
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_direct(methods: dict[str, dict[str, Series]], sft: float, path: Path) -> None:
    """direct.png: gold (top) and KL (bottom) against gradient steps, one line per knob value (mean over
    seeds, 95% bootstrap band): over-optimisation along training (Rafailov et al. 2024)."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(methods), figsize=(4.5 * len(methods), 6.5), dpi=110, squeeze=False,
                             sharex="col")
    for col, (method, labels) in enumerate(methods.items()):
        for k, (label, v) in enumerate(labels.items()):
            # KL from the SFT start (0); SFT gold is a line, not a first point: another sample than the evaluations'
            kl = np.hstack([np.zeros((len(v["seeds"]), 1)), v["kl"]])
            for row, at, values in ((0, v["at"], v["gold"]), (1, np.r_[0.0, v["at"]], kl)):
                mean, lo, hi = bs.curve_band(values)
                axes[row, col].plot(at, mean, color=f"C{k}", label=f"{label} (n={len(v['seeds'])})")
                axes[row, col].fill_between(at, lo, hi, color=f"C{k}", alpha=0.2, linewidth=0)
        axes[0, col].axhline(sft, color="gray", linestyle=":", label="SFT gold")
        axes[0, col].set(title=method, ylabel="gold reward")
        axes[1, col].set(xlabel="gradient steps", ylabel="KL to SFT [nats]")
        axes[0, col].legend(fontsize=7)
        for a in axes[:, col]:
            a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the report -------------------------------------------------------------------------------------

def write_report(suite: Suite, jobs: list[Job], records: Records, out: Path, logdir: Path, absent: list[str],
                 cut: bool, command: str, failures: Records) -> Path:
    """From the records rlgen.benchreport.collect made of `jobs`: tables, figures, results.json, REPORT.md."""
    from rlgen.agents import agent_class

    out.mkdir(parents=True, exist_ok=True)
    runs = load_runs(records)
    methods = by_method(runs)
    units = {method_of(j.agent): getattr(agent_class(base(suite, j.agent)), "step_unit", "steps") for j in jobs}
    sft = float(np.mean(list({r["seed"]: r["sft"] for r in runs}.values()))) if runs else float("nan")
    top = max((float(np.sqrt(v["kl"]).max()) for labels in methods.values() for v in labels.values()), default=0.0)
    grid = np.linspace(0.0, top or 1.0, GRID_POINTS)
    fits = {m: method_fit(m, labels) for m, labels in methods.items()}
    frontiers = {m: dict(zip(("mean", "lo", "hi"), (c.tolist() for c in bs.curve_band(seed_frontiers(labels, grid))),
                             strict=True)) for m, labels in methods.items() if m != BEST_OF_N}
    direct = {m: labels for m, labels in methods.items() if units.get(m) == "gradient steps"}
    figures = {"frontier": bool(methods), "direct": bool(direct)}
    if methods:
        plot_frontier(methods, fits, grid, sft, out / "frontier.png")
    if direct:
        plot_direct(direct, sft, out / "direct.png")
    rows = [method_row(m, labels) for m, labels in methods.items()]
    samples = {}
    for row in (r for r in rows if r["method"] != BEST_OF_N):
        first = min((r for r in runs if r["label"] == row["label"]), key=lambda r: r["seed"])
        samples[row["method"]] = {"label": row["label"], "seed": first["seed"], "samples": first["samples"][:3]}
    trained = [r for r in records if r["status"] == "completed"]
    info = report_info(suite, records, absent, cut, command, failures) | {
            "sft_gold": sft, "best": rows, "fits": fits,
            "at_fixed_kl": {"sqrt_kl": list(FIXED_SQRT_KL), **{m: frontier_at(v) for m, v in methods.items()}},
            "conclusion": conclusion(rows), "frontier": {"sqrt_kl": grid.tolist(), **frontiers},
            "best_of_n": {k: np.asarray(v).tolist() for k, v in methods[BEST_OF_N][BEST_OF_N].items()}
            if BEST_OF_N in methods else None,
            "costs": [cost_row(m, runs, units.get(m, "steps")) for m in methods if m != BEST_OF_N],
            "samples": samples, "figures": figures,
            "train_seconds_total": float(sum(r["wall_seconds"] for r in trained))}
    return save_report(out, info, render(suite, info, str(logdir)))


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in rows)]


def _best_md(rows: Records) -> list[str]:
    head = ["method", "best configuration", "at", "gold [95% CI]", "KL", "sqrt KL", "above own SFT gold there",
            "above it at some point"]
    return _table(head, [[r["method"], r["label"], f"n = {r['at']:.0f}" if r["method"] == BEST_OF_N
                          else f"step {r['at']:,.0f} (eval {r['checkpoint'] + 1})",
                          f"{r['gold']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]", f"{r['kl']:.3f}",
                          f"{r['sqrt_kl']:.2f}", f"{r['above_sft']} of {r['n']}",
                          f"{r['ever_above_sft']} of {r['seeds']}"]
                         for r in rows])


def _fixed_kl_md(at: dict[str, Any]) -> list[str]:
    xs = at["sqrt_kl"]
    rows = [[m, *("-" if c is None else f"{c[0]:.2f} [{c[1]:.2f}, {c[2]:.2f}]" for c in cells)]
            for m, cells in at.items() if m != "sqrt_kl"]
    return _table(["method", *(f"sqrt KL {x:g} (KL {x * x:g})" for x in xs)], rows)


def _fits_md(fits: dict[str, Any]) -> list[str]:
    return _table(["method", "form", "alpha", "beta", "R^2", "points"], [
        [m, "d (alpha - beta d)" if m == BEST_OF_N else "d (alpha - beta log d)",
         *([f"{f['alpha']:.3f}", f"{f['beta']:.3f}", f"{f['r2']:.2f}", str(f["points"])] if f else ["-"] * 4)]
        for m, f in fits.items()])


def _costs_md(costs: Records) -> list[str]:
    head = ["method", "runs", "budget", "wall s per run", "of which training", "CPU s per run", "generated tokens",
            "peak MB"]
    return _table(head, [[c["method"], str(c["runs"]), f"{_fmt(c['budget'], ',.0f')} {c['unit']}",
                          _fmt(c["wall"], ".0f"), _fmt(c["train"], ".0f"), _fmt(c["cpu"], ".0f"),
                          _fmt(c["tokens"], ",.0f"), _fmt(c["peak_mb"], ".0f")] for c in costs])


METHOD = [
    "- Points: every evaluation of every run: mean gold reward and KL(policy || SFT) in nats per completion of "
    "one completion for each evaluation prompt (the same prompts and sampling noise at every checkpoint of a "
    "seed). SFT gold: each run's SFT policy evaluated the same way before training (gold_reward_sft_eval), "
    "so that a gain is measured on the same prompts and noise; for best-of-n, best-of-1 on the same samples.",
    "- Frontier of a method, per seed: at each sqrt KL x, the best gold among its points with sqrt KL <= x over "
    "all its knob values and checkpoints, the SFT policy (KL 0) included; the line is the mean over seeds, "
    "the band a 95% percentile bootstrap of that mean over seeds. Best-of-n: the gold of the sample the reward "
    "model ranks first among n, with the analytic KL log n - (n - 1)/n (Stiennon et al. 2020, app. G.3).",
    "- Best configuration: the (knob value, checkpoint) with the highest mean gold over seeds, seeds aligned "
    "by evaluation row; its interval is a 95% percentile bootstrap of that mean over seeds (10,000 "
    "resamples). Picked as the best of many, it is an optimistic estimate of what that setting gives. "
    "\"Above own SFT gold there\": seeds whose gold at that configuration beats their SFT policy's; \"at some "
    "point\": seeds beating it at any knob value and checkpoint of the method.",
    "- Gao et al. 2022 (\"Scaling Laws for Reward Model Overoptimization\", sec. 1), fitted by least squares "
    "without intercept to every point (d = sqrt KL, R = gold - that seed's SFT gold): R = d (alpha - beta log d) "
    "for the trained methods, R = d (alpha - beta d) for best-of-n. R^2 is about the mean of R.",
    "- Direct methods: gold and KL along gradient steps (Rafailov et al. 2024, \"Scaling "
    "Laws for Reward Model Overoptimization in Direct Alignment Algorithms\").",
    "- Cost: means over a method's runs of wall and CPU seconds (one process, one torch thread; the SFT model "
    "and each seed's labels, reward model and best-of-n are made once and cached, in the time of the first run "
    "of that seed: \"of which training\" leaves them and the end-of-run report out), tokens "
    "generated for training (the budget of the methods that count them; the direct methods generate none), "
    "and the peak resident memory of the run's process.",
]


def render(suite: Suite, info: dict[str, Any], logdir: str) -> str:
    lines = _header(suite, info, logdir)
    lines.append(f"- The runs took {info['train_seconds_total'] / 60:.1f} minutes of run time in all (one core each).")
    lines += ["", "## What the frontier shows", "", info["conclusion"], ""]
    if info["figures"]["frontier"]:
        lines += ["![gold reward against sqrt KL](frontier.png)", "",
                  f"SFT gold (mean over seeds): {info['sft_gold']:.3f}.", ""]
    lines += ["## The frontiers at equal KL", "", "Best gold within each KL budget, mean over seeds [95% "
              "bootstrap interval]; '-' past the largest KL the method reached.", "",
              *_fixed_kl_md(info["at_fixed_kl"]), ""]
    lines += ["## Best gold per method", "", *_best_md(info["best"])]
    lines += ["", "## Gao et al. 2022 functional forms", "", *_fits_md(info["fits"])]
    if info["figures"]["direct"]:
        lines += ["", "## Direct alignment along training", "", "![gold and KL against gradient steps](direct.png)"]
    lines += ["", "## Cost per method", "", *_costs_md(info["costs"])]
    lines += ["", "## Samples", "", "Three final samples of the first seed's run of each method's best knob value "
              "(at the end of its budget, which may be past its best checkpoint)."]
    for method, s in info["samples"].items():
        lines += ["", f"**{method}** ({s['label']}, seed {s['seed']}):", "", *(f"- `{t}`" for t in s["samples"])]
    lines += _policies_md(suite, list(dict.fromkeys(r["agent"] for r in info["runs"])), [])
    lines += ["", "## Method", "", *METHOD]
    lines += _machine_section(info)
    return "\n".join(lines) + "\n"
