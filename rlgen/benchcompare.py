"""Ours against a baseline, in a suite's report: per (pair, env) and over all envs, for the final score
and (return suites) the area under the evaluation curve, the probability of improvement with its
interval, a permutation p-value, its Holm adjustment over the whole report, and the verdict.

Seeds are not paired (the test is unpaired), so each side keeps all its runs: ours and the baseline
may have different numbers of seeds, in each env and over all envs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlgen import benchstats as bs
from rlgen.benchsuite import Suite

SCORE = {"return": "eval_mean_return", "dp_error": "policy_gap"}
"""a completed run's final score in each suite metric"""
MEASURES = {"return": {"final": "final return", "auc": "AUC"}, "dp_error": {"final": "policy gap"}}
"""per suite metric, the measures a comparison tests and what a report calls them"""

Records = list[dict[str, Any]]

VERDICT_METHOD = [
    "- Verdicts: the p-value is exact (every split of each env's runs between the two agents counted, "
    f"ties as one half) where that is cheap, else from {bs.PERMUTATIONS:,} random splits as (b + 1) / (m + 1) "
    "(Phipson & Smyth 2010). No split of n_x against n_y runs gives less than 2 / C(n_x + n_y, n_x): 0.0079 for 5 "
    "against 5, 1.1e-5 for 10 against 10, while Holm's first threshold is 0.05 divided by the family's "
    "size, so one env's rows with 5 runs a side can reach a verdict only late in Holm's sequence (when they "
    "cannot at all, they read too few runs). The test "
    "is calibrated for \"both agents' runs come from one distribution\" "
    "(benchmarks/results/calibration/RESULTS.md); with equal P(ours > SB3) but unequal spreads it can still "
    "reject.",
]


def run_scores(metric: str, run: dict[str, Any]) -> dict[str, float]:
    """The measures a comparison tests, higher is better: the final score (a policy gap negated) and,
    for return suites, the normalised area under the run's evaluation curve."""
    if metric == "dp_error":
        return {"final": -run[SCORE[metric]]}
    return {"final": run[SCORE[metric]], "auc": bs.normalised_auc(*run["curve"])}


def _test(x: list[np.ndarray], y: list[np.ndarray]) -> dict[str, Any]:
    """One comparison over the given tasks (one array of runs per task and side)."""
    return {"poi": bs.probability_of_improvement(x, y), "poi_ci": bs.probability_of_improvement_ci(x, y),
            "p": bs.permutation_pvalue(x, y)}


def comparisons(suite: Suite, final: Records, envs: list[str]) -> Records:
    """For each pair of the suite: one row per env where both agents have runs, and one over those envs
    when there are several (envs as tasks, runs permuted within each env). Verdicts from Holm's
    correction over every row's every measure: the report is one family."""
    rows = []
    for ours, theirs in suite.pairs.items():
        per_env = {}
        for env in envs:
            x = [run_scores(suite.metric, r) for r in final if r["agent"] == ours and r["env"] == env]
            y = [run_scores(suite.metric, r) for r in final if r["agent"] == theirs and r["env"] == env]
            if x and y:
                per_env[env] = (x, y)
        tasks = [(env, [env]) for env in per_env] + ([("all envs", list(per_env))] if len(per_env) > 1 else [])
        for name, group in tasks:
            row: dict[str, Any] = {"ours": ours, "baseline": theirs, "env": name,
                                   "n_ours": sum(len(per_env[e][0]) for e in group),
                                   "n_baseline": sum(len(per_env[e][1]) for e in group)}
            smallest = bs.smallest_pvalue([(len(per_env[e][0]), len(per_env[e][1])) for e in group])
            for m in MEASURES[suite.metric]:
                x = [np.array([s[m] for s in per_env[e][0]]) for e in group]
                y = [np.array([s[m] for s in per_env[e][1]]) for e in group]
                row[m] = _test(x, y) | {"smallest_p": smallest}
            rows.append(row)
    tests = [row[m] for row in rows for m in MEASURES[suite.metric]]
    pvalues = [t["p"] for t in tests]
    calls = bs.verdicts([t["poi"] for t in tests], pvalues, smallest=[t["smallest_p"] for t in tests])
    for t, adjusted, verdict in zip(tests, bs.holm(pvalues), calls, strict=True):
        t.update(p_holm=float(adjusted), verdict=verdict)
    return rows


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def comparisons_md(metric: str, rows: Records) -> list[str]:
    """The report's verdict section: the family and the procedure in a sentence, the table, and a line
    for every verdict of worse."""
    measures = MEASURES[metric]
    family = len(rows) * len(measures)
    names = " and ".join(measures.values())
    count = f"{len(rows)} row{'s' * (len(rows) != 1)}"
    head = "| ours | SB3 | env | runs (ours / SB3) |"
    for name in measures.values():
        head += f" {name}: P(ours > SB3) [95% CI] | p | Holm p | verdict |"
    lines = ["", "## Verdicts: ours against Stable-Baselines3", "",
             f"This report's family holds **{family} comparisons** ({count}, each testing {names}). Each is a "
             "two-sided permutation test of P(ours > SB3) = 1/2 (Wilcoxon-Mann-Whitney statistic, runs "
             "permuted between the two agents within each env; Good 2005), corrected with Holm's method over "
             f"all {family} (Holm 1979): **better** or **worse** only when the Holm-adjusted p is below 0.05, "
             "which keeps the chance of any false verdict in this report at 5%; **too few runs** where no outcome "
             "of that many runs could have been called (its smallest possible p is not below 0.05 divided by "
             "the comparisons left uncalled, the best threshold Holm could give it); else **matches**. "
             "P(ours > SB3) and its 95% bootstrap interval (Agarwal et al. 2021) say how large a difference is.",
             "", head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        cells = [row["ours"], row["baseline"], row["env"], f"{row['n_ours']} / {row['n_baseline']}"]
        for m in measures:
            t = row[m]
            lo, hi = t["poi_ci"]
            cells += [f"{t['poi']:.2f} [{lo:.2f}, {hi:.2f}]", _p(t["p"]), _p(t["p_holm"]), f"**{t['verdict']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    for row in rows:
        for m in measures:
            t = row[m]
            if t["verdict"] == "worse":
                lines.append(f"\n**rlgen's {row['ours']} is worse than SB3's {row['baseline']} on {row['env']} "
                             f"in {measures[m]}** (P(ours > SB3) = {t['poi']:.2f}, Holm-adjusted "
                             f"p = {_p(t['p_holm'])}).")
    return lines
