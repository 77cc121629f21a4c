"""The statistics of the alignment benchmark, from its run directories: every evaluation of every run is a
point (sqrt KL(policy || SFT), gold reward); per method (a label is `<method>_<knob>`: dpo_b0.1 is DPO at beta
0.1) its frontier, best configuration, Gao et al. 2022's forms fitted to its points and cost; best-of-n
(measured once per seed, in every run's rlhf_curves.json) is one more method. rlgen/benchalign.py draws and
writes the report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from rlgen import benchstats as bs
from rlgen.rlhf.best_of_n import best_of_n_kl

Records = list[dict[str, Any]]
Series = dict[str, Any]
"""one label's evaluations: gold and kl (seeds, checkpoints), sft (seeds,), seeds, at (checkpoints,)"""
BEST_OF_N = "best-of-n"


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




def by_method(runs: Records) -> dict[str, dict[str, Series]]:
    """method -> label -> its series, in the suite's order; best-of-n last."""
    methods: dict[str, dict[str, Series]] = {}
    for label, v in label_series(runs).items():
        methods.setdefault(method_of(label), {})[label] = v
    bon = best_of_n_series(runs)
    return methods | ({BEST_OF_N: {BEST_OF_N: bon}} if bon is not None else {})
