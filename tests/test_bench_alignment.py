"""The alignment suite and its report: the frontier, Gao et al.'s fits, the best configuration, and a
report written from synthetic run directories through `python -m rlgen.bench ... report_only=true`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import in_process
from hypothesis import given, settings
from hypothesis import strategies as st

from rlgen import alignstats as ba
from rlgen import bench
from rlgen import benchstats as bs
from rlgen.benchsuite import Options, find_suite, load_suite, plan
from rlgen.rlhf.best_of_n import best_of_n_kl

floats = st.floats(-10, 10, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5, allow_nan=False), floats), min_size=1, max_size=30),
       st.lists(st.floats(-1, 6, allow_nan=False), min_size=1, max_size=30))
def test_the_frontier_is_the_best_within_each_budget_and_never_decreases(points, grid):
    x, y = np.array(points).T
    grid = np.sort(grid)
    f = ba.frontier(x, y, grid)
    brute = [max((b for a, b in points if a <= g), default=np.nan) for g in grid]
    np.testing.assert_array_equal(f, brute)
    seen = f[~np.isnan(f)]
    assert np.all(np.diff(seen) >= 0)
    assert np.all(np.isnan(f) == (grid < x.min()))  # nan only below every point


def test_the_frontier_by_hand():
    f = ba.frontier([0.0, 0.5, 1.0, 2.0], [0.1, 0.4, 0.2, 0.3], [0.0, 0.4, 0.5, 1.5, 3.0])
    np.testing.assert_array_equal(f, [0.1, 0.1, 0.4, 0.4, 0.4])
    assert np.isnan(ba.frontier([], [], [1.0])).all()


@pytest.mark.parametrize("form, alpha, beta", [("rl", 1.3, 0.4), ("rl", 0.2, -0.1), ("bon", 0.9, 0.25)])
def test_the_gao_fit_recovers_the_coefficients_of_exact_data(form, alpha, beta):
    d = np.linspace(0.0, 3.0, 25)
    log_d = np.log(np.where(d > 0, d, 1.0))
    gain = d * (alpha - beta * (log_d if form == "rl" else d))  # Gao et al. 2022, sec. 1, written out
    fit = ba.fit_gao(d, gain, form)
    assert fit["alpha"] == pytest.approx(alpha, abs=1e-10) and fit["beta"] == pytest.approx(beta, abs=1e-10)
    assert fit["r2"] == pytest.approx(1.0) and fit["points"] == 25
    np.testing.assert_allclose(ba.gao_curve(d, fit, form), gain, atol=1e-10)
    noisy = ba.fit_gao(d, gain + np.random.default_rng(0).normal(0, 0.1, d.size), form)
    assert 0 < noisy["r2"] < 1


def test_the_gao_fit_needs_two_points_away_from_the_origin_and_a_known_form():
    assert ba.fit_gao(np.array([0.0, 0.0, 1.0]), np.array([0.0, 0.1, 0.5]), "rl") is None
    assert ba.gao_features(np.array([0.0]), "rl").tolist() == [[0.0, 0.0]]  # d log d -> 0, no nan
    with pytest.raises(ValueError, match="form must be rl or bon"):
        ba.gao_features(np.array([1.0]), "ppo")


def test_the_bootstrap_band_of_seed_frontiers_contains_their_mean():
    rng = np.random.default_rng(1)
    grid = np.linspace(0, 2, 30)
    curves = np.array([ba.frontier(np.r_[0, rng.uniform(0, 2, 12)], rng.normal(0, 1, 13), grid) for _ in range(5)])
    mean, lo, hi = bs.curve_band(curves)
    np.testing.assert_allclose(mean, curves.mean(0))
    assert np.all(lo <= mean + 1e-12) and np.all(mean <= hi + 1e-12) and np.all(np.diff(mean) >= -1e-12)


def test_the_best_configuration_is_the_highest_mean_over_seeds_not_the_highest_single_run():
    golds = {"a_1": np.array([[0.0, 0.9], [0.0, -0.5]]),  # the single best value, mean 0.2
             "a_2": np.array([[0.1, 0.3, 0.35], [0.2, 0.4, 0.3]]),  # means 0.15, 0.35, 0.325
             "a_3": np.array([[0.35], [0.35]])}  # ties with a_2's best: the first in order wins
    assert ba.best_configuration(golds) == ("a_2", 1)
    assert ba.best_configuration({"x": np.array([[1.0, 2.0]])}) == ("x", 1)


def test_a_method_is_the_label_without_its_knob():
    assert [ba.method_of(s) for s in ("dpo_b0.1", "drgrpo_b0", "rlhf_c0.02", "rloo")] == ["dpo", "drgrpo", "rlhf",
                                                                                          "rloo"]


def _row(method, gold, ci, above=2, n=2):
    return {"method": method, "label": method + "_x", "gold": gold, "ci": ci, "sqrt_kl": 1.0, "above_sft": above,
            "n": n, "at": 16}


def test_the_conclusion_is_read_from_the_numbers():
    apart = ba.conclusion([_row("dpo", 0.3, [0.25, 0.35]), _row("rlhf", 0.5, [0.45, 0.55], above=1)])
    assert apart.startswith("rlhf reaches the highest gold reward, 0.500 [0.450, 0.550]")
    assert "the next is dpo, 0.300" in apart and "the intervals do not overlap" in apart
    assert "1 of 2 methods beat their seeds' SFT gold on every seed at their best configuration (dpo)" in apart
    close = ba.conclusion([_row("dpo", 0.3, [0.2, 0.46]), _row("rlhf", 0.5, [0.45, 0.55])])
    assert "the intervals overlap, so these seeds do not separate the two" in close
    bon = ba.conclusion([_row("dpo", 0.3, [0.2, 0.4]), _row("best-of-n", 0.6, [0.5, 0.7])])
    assert bon.startswith("best-of-n reaches the highest gold reward, 0.600 [0.500, 0.700], at sqrt KL 1.00 (n = 16);")
    assert ba.conclusion([]) == "No method has a completed run yet."


def test_the_alignment_suite_plans_every_method_at_three_knob_values():
    suite = load_suite(find_suite("alignment"))
    jobs = plan(suite, Options(), Path("/tmp/never-written"))
    methods = {}
    for j in jobs:
        methods.setdefault(ba.method_of(j.agent), set()).add(j.agent)
    assert set(methods) == {"rlhf", "dpo", "ipo", "kto", "grpo", "dapo", "drgrpo", "rloo"}
    assert all(len(labels) == 3 for labels in methods.values()) and len(jobs) == 24 * 5
    for j in jobs:
        tokens = j.overrides[0] in ("agent=rlhf", "agent=grpo", "agent=rloo")
        every = [o for o in j.overrides if o.startswith("eval_every=")][-1]
        assert every == f"eval_every={j.budget // 20}" and (j.budget > 10_000) == tokens
    dapo = next(j for j in jobs if j.agent == "dapo_b0.2")
    assert {"agent=grpo", "agent.loss=dapo", "agent.beta=0.2"} <= set(dapo.overrides)
    rlhf = next(j for j in jobs if j.agent == "rlhf_c0.2")
    assert {"agent.kl.adaptive=false", "agent.kl.kl_coef=0.2"} <= set(rlhf.overrides)


# -- a report from synthetic run directories ---------------------------------------------------------

SUITE = """\
name: align_tiny
agents: [rlhf_c0.05, dpo_b0.1, dpo_b0.5, grpo_b0]
envs: [TextPreference]
variants:
  rlhf_c0.05: {agent: rlhf, overrides: [agent.kl.adaptive=false, agent.kl.kl_coef=0.05]}
  dpo_b0.1: {agent: dpo, overrides: [agent.beta=0.1]}
  dpo_b0.5: {agent: dpo, overrides: [agent.beta=0.5]}
  grpo_b0: {agent: grpo, overrides: [agent.beta=0]}
seeds: [0, 1]
metric: alignment
steps: {rlhf: 3000, grpo: 3000, dpo: 30}
"""
SFT = {0: -0.1, 1: 0.05}
ALPHA, BETA = 0.8, 0.3  # the PPO runs' gold follows Gao et al.'s RL form exactly
BON = (0.6, 0.2)


def _gain_rl(d):
    return d * (ALPHA - BETA * np.log(d))


def _eval_rows(label: str, seed: int) -> tuple[list[int], list[float], list[float]]:
    if label == "rlhf_c0.05":
        kl = [0.25, 1.0, 2.25]
        return [1000, 2000, 3000], kl, [SFT[seed] + _gain_rl(np.sqrt(k)) for k in kl]
    if label == "dpo_b0.1":  # rises then falls: the best mean is its second checkpoint, 0.5 above SFT
        return [10, 20, 30], [0.1 * (seed + 1), 0.5, 1.2], [SFT[seed] + 0.2, SFT[seed] + 0.5, SFT[seed] - 0.1]
    if label == "dpo_b0.5":
        return [10, 20, 30], [0.05, 0.1, 0.2], [SFT[seed] + 0.1, SFT[seed] + 0.2, SFT[seed] + 0.3]
    return [1500, 3000], [0.2, 0.3], [SFT[seed] - 0.05, SFT[seed] + 0.02 * (seed - 0.5)]


def _run_dir(path: Path, label: str, seed: int) -> None:
    path.mkdir(parents=True)
    steps, kl, gold = _eval_rows(label, seed)
    rows = ["step,mean_return,std_return,n_episodes,gold_reward,proxy_reward,kl"]
    rows += [f"{s},0.0,0.0,4,{float(g)!r},0.0,{k!r}" for s, g, k in zip(steps, gold, kl, strict=True)]
    (path / "eval.csv").write_text("\n".join(rows) + "\n")
    tokens = label.startswith("dpo")
    summary = {"status": "completed", "eval_mean_return": 0.0, "solved_at_step": None, "reward_threshold": None,
               "wall_seconds": 10.0 + seed, "cpu_seconds": 9.0, "steps_per_second": 1.0, "total_steps": steps[-1],
               "versions": {"rlgen": "0.1.0"}, "gold_reward_sft": SFT[seed], "gold_reward_final": gold[-1]}
    (path / "summary.json").write_text(json.dumps(summary))
    (path / "bench.json").write_text(json.dumps({"peak_rss_mb": 300.0 + 100 * tokens}))
    ns = [1, 2, 4, 8, 16]
    d = np.sqrt(best_of_n_kl(np.array(ns)))
    bon = [{"n": n, "kl": float(best_of_n_kl(n)), "proxy": 0.0, "gold": SFT[seed] + float(x * (BON[0] - BON[1] * x))}
           for n, x in zip(ns, d, strict=True)]
    (path / "rlhf_curves.json").write_text(json.dumps({"rl": [], "best_of_n": bon}))
    samples = [f"<bos> {label} seed {seed} sample {i} <eos>" for i in range(8)]
    (path / "rlhf_summary.json").write_text(json.dumps({"samples_final": samples,
                                                                "stage_seconds": {"training": 4.0 + seed}}))


def test_the_report_from_run_directories(tmp_path, capsys):
    suite, logdir, out = tmp_path / "suite.yaml", tmp_path / "runs", tmp_path / "report"
    suite.write_text(SUITE)
    for label in ("rlhf_c0.05", "dpo_b0.1", "dpo_b0.5", "grpo_b0"):
        for seed in (0, 1):
            if (label, seed) != ("grpo_b0", 1):  # a missing run: listed, the rest reported
                _run_dir(logdir / "TextPreference" / label / f"seed{seed}", label, seed)
    done = in_process(bench.main, capsys)(str(suite), "report_only=true", f"logdir={logdir}", f"out={out}")
    assert done.returncode == 0, done.stderr
    report, results = (out / "REPORT.md").read_text(), json.loads((out / "results.json").read_text())
    for png in ("frontier.png", "direct.png"):
        assert (out / png).stat().st_size > 20_000 and f"]({png})" in report

    best = {r["method"]: r for r in results["best"]}
    assert list(best) == ["rlhf", "dpo", "grpo", "best-of-n"]
    dpo = best["dpo"]
    assert (dpo["label"], dpo["checkpoint"], dpo["at"], dpo["n"]) == ("dpo_b0.1", 1, 20, 2)
    assert dpo["gold"] == pytest.approx(np.mean(list(SFT.values())) + 0.5) and dpo["kl"] == pytest.approx(0.5)
    assert dpo["above_sft"] == 2 and dpo["ever_above_sft"] == 2 and dpo["ci"][0] <= dpo["gold"] <= dpo["ci"][1]
    grpo = best["grpo"]
    assert (grpo["n"], grpo["seeds"], grpo["above_sft"], grpo["ever_above_sft"]) == (1, 1, 0, 0)
    assert best["best-of-n"]["at"] == 16 and best["rlhf"]["label"] == "rlhf_c0.05"
    assert "| dpo | dpo_b0.1 | step 20 (eval 2) |" in report and "| 2 of 2 | 2 of 2 |" in report

    # Gao et al.'s coefficients come back from points that follow the forms exactly
    fits = results["fits"]
    assert fits["rlhf"]["alpha"] == pytest.approx(ALPHA) and fits["rlhf"]["beta"] == pytest.approx(BETA)
    assert [fits["best-of-n"][k] for k in ("alpha", "beta")] == pytest.approx(list(BON))
    assert f"| rlhf | d (alpha - beta log d) | {ALPHA:.3f} | {BETA:.3f} | 1.00 | 6 |" in report

    # the frontier: on the common grid, never decreasing, from the SFT gold at KL 0 to the best point
    front = results["frontier"]
    mean = np.array(front["dpo"]["mean"])
    assert front["sqrt_kl"][0] == 0 and np.all(np.diff(mean) >= -1e-12)
    assert mean[0] == pytest.approx(np.mean(list(SFT.values())))
    assert mean[-1] == pytest.approx(dpo["gold"])
    assert np.all(np.array(front["dpo"]["lo"]) <= mean + 1e-12) and np.all(mean <= np.array(front["dpo"]["hi"]) + 1e-12)

    top = max(results["best"], key=lambda r: r["gold"])
    assert results["conclusion"].startswith(f"{top['method']} reaches the highest gold reward, {top['gold']:.3f}")
    assert results["conclusion"] in report
    costs = {c["method"]: c for c in results["costs"]}
    assert costs["dpo"]["tokens"] is None and costs["rlhf"]["tokens"] == 3000 and costs["dpo"]["peak_mb"] == 400
    assert costs["grpo"]["wall"] == 10.0 and costs["rlhf"]["wall"] == 10.5 and costs["rlhf"]["train"] == 4.5
    assert "| dpo | 4 | 30 gradient steps | 10 | 4 | 9 | - | 400 |" in report
    assert "- `<bos> dpo_b0.1 seed 0 sample 2 <eos>`" in report and "sample 3" not in report
    assert "**dpo_b0.5**: dpo, with `agent.beta=0.5`" in report
    assert "## Missing or failed runs" in report and "grpo_b0/seed1`: missing" in report


def test_the_frontier_at_fixed_kl_is_each_seeds_best_within_the_budget_and_stops_where_points_stop():
    # two seeds, one label, two checkpoints each: (KL, gold) = (0.25, 0.3), (1, 0.1) and (0.25, 0.5), (1, 0.9)
    labels = {"m_a": {"gold": np.array([[0.3, 0.1], [0.5, 0.9]]), "kl": np.array([[0.25, 1.0], [0.25, 1.0]]),
                      "sft": np.array([0.0, 0.0]), "seeds": [0, 1], "at": np.array([1, 2])}}
    at = ba.frontier_at(labels, (0.5, 1.0, 1.5))
    # sqrt KL 0.5: each seed's first point; 1.0: the best of both (0.3 and 0.9); 1.5: past every point
    assert at[0][0] == pytest.approx(0.4) and at[1][0] == pytest.approx(0.6) and at[2] is None
    assert at[1][1] <= 0.6 <= at[1][2] and (at[1][1], at[1][2]) == (pytest.approx(0.3), pytest.approx(0.9))
