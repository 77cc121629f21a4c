"""The report of a suite scored by alignment (`metric: alignment`; benchmarks/suites/alignment.yaml): language
models aligned by several methods, judged on the hidden gold reward against KL(policy || SFT).

A label is `<method>_<knob>` (dpo_b0.1: DPO, beta 0.1); every evaluation of every run is a point (sqrt KL,
gold). Per method: the frontier, the best configuration, Gao et al. 2022's forms fitted to its points, its
cost; best-of-n (measured once per seed, in every run's rlhf_curves.json) is one more method. From the run
directories alone: REPORT.md, frontier.png, direct.png (direct methods along training), results.json.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from rlgen import benchstats as bs
from rlgen.benchgen import _fmt, _policies_md
from rlgen.benchreport import _header, _machine_section, report_info, save_report
from rlgen.benchsuite import Job, Suite, base
from rlgen.rlhf.best_of_n import best_of_n_kl

Records = list[dict[str, Any]]
Series = dict[str, Any]
"""one label's evaluations: gold and kl (seeds, checkpoints), sft (seeds,), seeds, at (checkpoints,)"""
BEST_OF_N = "best-of-n"
GRID_POINTS = 101
FRONTIER_ZOOM = 4.0
"""the frontier panel's largest sqrt KL (16 nats): the frontiers rise well within it"""

# -- pure functions ---------------------------------------------------------------------------------


def method_of(label: str) -> str:
    """dpo_b0.1 -> dpo, drgrpo_b0 -> drgrpo; a label without a knob is its own method."""
    return label.rsplit("_", 1)[0]


def frontier(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """f(g) = max{y_i : x_i <= g} at every g of the grid (nan below the smallest x): the best score
    reachable within a budget of x, non-decreasing in g by construction."""
    x, y, grid = (np.asarray(a, dtype=float) for a in (x, y, grid))
    if x.size == 0:
        return np.full(grid.shape, np.nan)
    order = np.argsort(x, kind="stable")
    best = np.maximum.accumulate(y[order])
    i = np.searchsorted(x[order], grid, side="right") - 1
    return np.where(i >= 0, best[np.maximum(i, 0)], np.nan)


def gao_features(d: np.ndarray, form: str) -> np.ndarray:
    """(points, 2) columns of the gold-reward gain in sqrt KL d, linear in (alpha, beta), no intercept
    since R(0) = 0 (Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization", sec. 1):
    rl: R = d (alpha - beta log d); bon: R = d (alpha - beta d)."""
    d = np.asarray(d, dtype=float)
    if form == "bon":
        return np.stack([d, -d * d], axis=1)
    if form == "rl":
        d_log_d = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)  # d log d -> 0 as d -> 0
        return np.stack([d, -d_log_d], axis=1)
    raise ValueError(f"form must be rl or bon, got {form!r}")


def fit_gao(d: np.ndarray, gain: np.ndarray, form: str) -> dict[str, float] | None:
    """Least-squares (alpha, beta) of a Gao et al. form and its R^2 (1 - residual / total sum of squares
    about the mean); None when fewer than two points are away from d = 0 (nothing to fit)."""
    a, r = gao_features(d, form), np.asarray(gain, dtype=float)
    if np.count_nonzero(a[:, 0] > 0) < 2:
        return None
    (alpha, beta), *_ = np.linalg.lstsq(a, r, rcond=None)
    total = float(((r - r.mean()) ** 2).sum())
    residual = float(((r - a @ [alpha, beta]) ** 2).sum())
    return {"alpha": float(alpha), "beta": float(beta), "r2": 1.0 - residual / total if total > 0 else float("nan"),
            "points": int(r.size)}


def gao_curve(d: np.ndarray, fit: dict[str, float], form: str) -> np.ndarray:
    return gao_features(d, form) @ np.array([fit["alpha"], fit["beta"]])


def best_configuration(golds: dict[str, np.ndarray]) -> tuple[str, int]:
    """The (label, checkpoint index) whose gold, a (seeds, checkpoints) matrix per label, has the highest
    mean over seeds; the first in order on a tie."""
    cells = [(label, i) for label, g in golds.items() for i in range(g.shape[1])]
    return max(cells, key=lambda c: golds[c[0]][:, c[1]].mean())


def conclusion(rows: Records) -> str:
    """What the best-gold table says, in words, from its numbers."""
    ranked = sorted(rows, key=lambda r: -r["gold"])
    if not ranked:
        return "No method has a completed run yet."
    top = ranked[0]
    text = (f"{top['method']} reaches the highest gold reward, {top['gold']:.3f} [{top['ci'][0]:.3f}, "
            f"{top['ci'][1]:.3f}], at sqrt KL {top['sqrt_kl']:.2f}"
            + (f" (n = {top['at']:.0f})" if top["method"] == BEST_OF_N else f" ({top['label']})"))
    if len(ranked) > 1:
        nxt = ranked[1]
        text += (f"; the next is {nxt['method']}, {nxt['gold']:.3f} [{nxt['ci'][0]:.3f}, {nxt['ci'][1]:.3f}] at "
                 f"sqrt KL {nxt['sqrt_kl']:.2f}: ")
        # the top's mean is the larger, so the intervals overlap when its lower end is below the next's upper
        text += ("the intervals overlap, so these seeds do not separate the two" if top["ci"][0] <= nxt["ci"][1]
                 else "the intervals do not overlap")
    every = [r["method"] for r in ranked if r["above_sft"] == r["n"]]
    text += (f". {len(every)} of {len(ranked)} methods beat their seeds' SFT gold on every seed at their best "
             f"configuration" + (f" ({', '.join(every)})." if every else "."))
    return text


# -- reading the runs -------------------------------------------------------------------------------


def _read_points(run_dir: Path) -> dict[str, np.ndarray]:
    with open(run_dir / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("step", "gold_reward", "kl")}


def _sft_gold(summary: dict[str, Any]) -> float:
    """The SFT policy's gold on the evaluation's own prompts and noise (the paired baseline of every
    evaluation of the run), or, from a run that lacks it, on the samples of its labelled pairs."""
    paired = summary.get("gold_reward_sft_eval")
    return float(paired if paired is not None else summary["gold_reward_sft"])


def load_runs(records: Records) -> Records:
    """The completed runs with every evaluation's step, gold reward and KL (eval.csv), their seed's
    best-of-n curve (rlhf_curves.json) and final samples (rlhf_summary.json)."""
    runs = []
    for r in (r for r in records if r["status"] == "completed"):
        d = Path(r["run_dir"])
        curves, summary = (json.loads((d / f).read_text()) for f in ("rlhf_curves.json", "rlhf_summary.json"))
        runs.append({**_read_points(d), "label": r["agent"], "method": method_of(r["agent"]), "seed": r["seed"],
                     "sft": _sft_gold(r), "best_of_n": curves.get("best_of_n", []),
                     "samples": summary.get("samples_final", []), "record": r,
                     "train_seconds": summary.get("stage_seconds", {}).get("training")})
    return runs


def label_series(runs: Records) -> dict[str, Series]:
    """Per label, its seeds' evaluations aligned by row (cut to the shortest run)."""
    out = {}
    for label in dict.fromkeys(r["label"] for r in runs):
        mine = sorted((r for r in runs if r["label"] == label), key=lambda r: r["seed"])
        n = min(len(r["gold_reward"]) for r in mine)
        if n:
            out[label] = {"gold": np.stack([r["gold_reward"][:n] for r in mine]),
                          "kl": np.maximum(np.stack([r["kl"][:n] for r in mine]), 0.0),
                          "sft": np.array([r["sft"] for r in mine]), "seeds": [r["seed"] for r in mine],
                          "at": mine[0]["step"][:n]}
    return out


def best_of_n_series(runs: Records) -> Series | None:
    """Best-of-n of every seed (the same in each run of that seed: it comes with the seed's reward model);
    its KL is the analytic log n - (n - 1)/n (rlgen/rlhf/best_of_n.py), checkpoints are the values of n."""
    first = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        if r["best_of_n"]:
            first.setdefault(r["seed"], r)
    if not first:
        return None
    n = min(len(r["best_of_n"]) for r in first.values())
    ns = np.array([b["n"] for b in next(iter(first.values()))["best_of_n"][:n]])
    gold = np.array([[b["gold"] for b in r["best_of_n"][:n]] for r in first.values()])
    return {"gold": gold, "kl": np.tile(best_of_n_kl(ns), (len(first), 1)),
            # best-of-1 is the SFT policy on the very samples best-of-n picks from: its paired baseline
            "sft": gold[:, 0] if ns[0] == 1 else np.array([r["sft"] for r in first.values()]),
            "seeds": list(first), "at": ns}


def seed_frontiers(labels: dict[str, Series], grid: np.ndarray) -> np.ndarray:
    """(seeds, grid): each seed's frontier over all the method's knob values and checkpoints, starting from
    the SFT policy itself (KL 0, its gold), where every method starts."""
    sft = {s: g for v in labels.values() for s, g in zip(v["seeds"], v["sft"], strict=True)}
    curves = []
    for seed in sorted(sft):
        mine = [(v, v["seeds"].index(seed)) for v in labels.values() if seed in v["seeds"]]
        x = np.concatenate([[0.0], *(np.sqrt(v["kl"][i]) for v, i in mine)])
        y = np.concatenate([[sft[seed]], *(v["gold"][i] for v, i in mine)])
        curves.append(frontier(x, y, grid))
    return np.array(curves)


def method_row(method: str, labels: dict[str, Series]) -> dict[str, Any]:
    """The method's best configuration, its interval over seeds and how many seeds beat their SFT there."""
    label, i = best_configuration({k: v["gold"] for k, v in labels.items()})
    v = labels[label]
    gold, kl = v["gold"][:, i], v["kl"][:, i]
    ever = {s for w in labels.values() for s, g, sft in zip(w["seeds"], w["gold"], w["sft"], strict=True)
            if (g > sft).any()}
    return {"method": method, "label": label, "checkpoint": i, "at": float(v["at"][i]), "n": len(gold),
            "gold": float(gold.mean()), "ci": bs.bootstrap_ci(gold, statistic=np.mean),
            "kl": float(kl.mean()), "sqrt_kl": float(np.sqrt(kl.mean())), "above_sft": int((gold > v["sft"]).sum()),
            "ever_above_sft": len(ever), "seeds": len({s for w in labels.values() for s in w["seeds"]})}


FIXED_SQRT_KL = (0.5, 1.0, 1.5, 2.0, 3.0)
"""where the frontiers are compared in a table"""


def frontier_at(labels: dict[str, Series], xs: tuple[float, ...] = FIXED_SQRT_KL) -> list[list[float] | None]:
    """Per sqrt KL x: the method's frontier there, mean over seeds and 95% band, as [mean, lo, hi]; None
    past the largest sqrt KL any of its points reached (the frontier only stays flat there)."""
    reached = max(float(np.sqrt(v["kl"]).max()) for v in labels.values())
    mean, lo, hi = bs.curve_band(seed_frontiers(labels, np.array(xs)))
    return [[float(m), float(a), float(b)] if x <= reached else None
            for x, m, a, b in zip(xs, mean, lo, hi, strict=True)]


def points(labels: dict[str, Series]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of a method: sqrt KL, gold, and gold - that seed's SFT gold."""
    vs = list(labels.values())
    return (np.concatenate([np.sqrt(v["kl"]).ravel() for v in vs]), np.concatenate([v["gold"].ravel() for v in vs]),
            np.concatenate([(v["gold"] - v["sft"][:, None]).ravel() for v in vs]))


def method_fit(method: str, labels: dict[str, Series]) -> dict[str, float] | None:
    d, _, gain = points(labels)
    return fit_gao(d, gain, "bon" if method == BEST_OF_N else "rl")


def cost_row(method: str, runs: Records, unit: str) -> dict[str, Any]:
    """Means over the method's runs; generated tokens from the summary, else the budget when it counts them."""
    recs = [{**r["record"], "train": r["train_seconds"]} for r in runs if r["method"] == method]

    def mean(key: str) -> float | None:
        values = [r[key] for r in recs if r.get(key) is not None]
        return float(np.mean(values)) if values and len(values) == len(recs) else None

    tokens = mean("generated_tokens")
    if tokens is None and unit == "generated tokens":
        tokens = mean("budget")
    return {"method": method, "runs": len(recs), "unit": unit, "budget": mean("budget"), "wall": mean("wall_seconds"),
            "train": mean("train"), "cpu": mean("cpu_seconds"), "tokens": tokens, "peak_mb": mean("peak_rss_mb")}


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


def by_method(runs: Records) -> dict[str, dict[str, Series]]:
    """method -> label -> its series, in the suite's order; best-of-n last."""
    methods: dict[str, dict[str, Series]] = {}
    for label, v in label_series(runs).items():
        methods.setdefault(method_of(label), {})[label] = v
    bon = best_of_n_series(runs)
    return methods | ({BEST_OF_N: {BEST_OF_N: bon}} if bon is not None else {})


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
