"""A report's comparisons and per-env tables from made-up run records: all runs of each side are used,
one Holm family over every row and measure, the area under the curve beside the final return."""

from __future__ import annotations

import numpy as np
import pytest

from rlgen import benchstats as bs
from rlgen.benchcompare import comparisons, comparisons_md
from rlgen.benchreport import env_table
from rlgen.benchsuite import Suite

STEPS = [0.0, 500.0, 1000.0]


def _run(agent: str, env: str, seed: int, curve: list[float]) -> dict:
    return {"agent": agent, "env": env, "seed": seed, "budget": 1000, "status": "completed",
            "eval_mean_return": curve[-1], "solved_at_step": None, "wall_seconds": 1.0, "steps_per_second": 1e3,
            "peak_rss_mb": 100.0, "reward_threshold": None, "curve": [STEPS, curve]}


@pytest.fixture
def suite() -> Suite:
    return Suite(name="t", agents=["ppo", "sb3_ppo"], envs=["A", "B"], pairs={"ppo": "sb3_ppo"})


@pytest.fixture
def records() -> list[dict]:
    """Env A: ours 10 seeds, all finishing above SB3's 10 but learning later (lower curve early);
    env B: ours 4 seeds against SB3's 6, the same finals, interleaved."""
    runs = [_run("ppo", "A", s, [0.0, 10.0 + s, 100.0 + s]) for s in range(10)]
    runs += [_run("sb3_ppo", "A", s, [0.0, 80.0 + s, 90.0 - s]) for s in range(10)]
    runs += [_run("ppo", "B", s, [0.0, 5.0, float(2 * s)]) for s in range(4)]
    runs += [_run("sb3_ppo", "B", s, [0.0, 5.0, float(2 * s + 1)]) for s in range(6)]
    return runs


def test_every_run_counts_and_one_holm_family_decides(suite, records):
    rows = comparisons(suite, records, ["A", "B"])
    assert [(r["env"], r["n_ours"], r["n_baseline"]) for r in rows] == [("A", 10, 10), ("B", 4, 6),
                                                                         ("all envs", 14, 16)]
    finals = {(a, e): np.array([r["eval_mean_return"] for r in records if r["agent"] == a and r["env"] == e])
              for a in ("ppo", "sb3_ppo") for e in ("A", "B")}
    aucs = {(a, e): np.array([bs.normalised_auc(*r["curve"]) for r in records if r["agent"] == a and r["env"] == e])
            for a in ("ppo", "sb3_ppo") for e in ("A", "B")}
    tests = []
    for row, envs in zip(rows, [["A"], ["B"], ["A", "B"]], strict=True):
        for measure, scores in (("final", finals), ("auc", aucs)):
            x, y = [scores[("ppo", e)] for e in envs], [scores[("sb3_ppo", e)] for e in envs]
            got = row[measure]
            assert got["poi"] == pytest.approx(bs.probability_of_improvement(x, y))
            assert got["p"] == pytest.approx(bs.permutation_pvalue(x, y))
            tests.append(got)
    # A: ours above in every final (p = 2 / C(20, 10)), below in every AUC; the family holds 3 x 2 tests
    assert rows[0]["final"]["p"] == pytest.approx(2 / 184_756)
    np.testing.assert_allclose([t["p_holm"] for t in tests], bs.holm([t["p"] for t in tests]))
    assert [(rows[0][m]["verdict"], rows[1][m]["verdict"]) for m in ("final", "auc")] == [
        ("better", "matches"), ("worse", "matches")]


def test_the_report_states_the_family_and_the_procedure(suite, records):
    rows = comparisons(suite, records, ["A", "B"])
    lines = comparisons_md("return", rows)
    text = "\n".join(lines)
    assert "family holds **6 comparisons** (3 rows, each testing final return and AUC)" in text
    assert "Holm 1979" in text and "permutation test" in text
    final, auc = rows[0]["final"], rows[0]["auc"]
    row = next(ln for ln in lines if ln.startswith("| ppo | sb3_ppo | A |"))
    assert row.startswith(f"| ppo | sb3_ppo | A | 10 / 10 | {final['poi']:.2f} [{final['poi_ci'][0]:.2f}, "
                          f"{final['poi_ci'][1]:.2f}] | 1.1e-05 | 6.5e-05 | **better** | {auc['poi']:.2f}")
    assert "**rlgen's ppo is worse than SB3's sb3_ppo on A in AUC**" in text


def test_env_table_reports_auc_and_best_return(suite, records):
    rows = {r["agent"]: r for r in env_table(suite, records, "A", ["ppo", "sb3_ppo"])}
    sb3 = [r for r in records if r["agent"] == "sb3_ppo" and r["env"] == "A"]
    aucs = np.array([bs.normalised_auc(*r["curve"]) for r in sb3])
    assert rows["sb3_ppo"]["auc_iqm"] == pytest.approx(bs.iqm(aucs))
    assert rows["sb3_ppo"]["auc_ci"] == bs.bootstrap_ci(aucs)
    # SB3's runs peak mid-training (80 + s) above their final return (90 - s) for s > 5
    assert rows["sb3_ppo"]["best_iqm"] == pytest.approx(bs.iqm(np.maximum(80 + np.arange(10), 90 - np.arange(10))))
    assert rows["sb3_ppo"]["best_iqm"] > rows["sb3_ppo"]["iqm"]
