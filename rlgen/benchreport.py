"""A suite's report, read from its run directories (and the records the report before it kept, rlgen.benchkeep):
REPORT.md, PNG figures and results.json, which holds every run's record with its evaluation curve.

Per env: learning curves (evaluation return against env steps, mean over seeds with a 95% bootstrap
band), a table (IQMs with 95% stratified-bootstrap intervals of the final return, of the area under
the evaluation curve and of the best evaluation; steps to the threshold, wall seconds, steps/s, peak
memory) and, for each (ours, SB3) pair, the verdicts of rlgen.benchcompare. Tabular suites report the
error to the dynamic-programming optimum instead of return.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from rlgen import benchstats as bs
from rlgen.benchcompare import SCORE, VERDICT_METHOD, comparisons, comparisons_md
from rlgen.benchkeep import fingerprint
from rlgen.benchsuite import Job, Suite
from rlgen.errors import UserError


def _read_eval(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(run_dir / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([float(r["step"]) for r in rows]), np.array([float(r["mean_return"]) for r in rows])


def tabular_metrics(run_dir: Path, default_gamma: float) -> dict[str, float]:
    """Error of a tabular run's q_values.npy (or values.npy) to the DP optimum of its env's model."""
    import gymnasium as gym

    from rlgen.envs import make_env
    from rlgen.envs.model import model_of
    from rlgen.trainer import load_run_config

    cfg = load_run_config(run_dir)
    env = make_env(cfg.env, one_hot=False)
    model = model_of(env)
    env.close()
    if model is None:
        raise ValueError(f"env {cfg.env.id} exposes no tabular model")
    gamma = float(getattr(cfg.agent, "gamma", default_gamma))
    q_file, v_file = run_dir / "q_values.npy", run_dir / "values.npy"
    try:  # allow_pickle=False (numpy's default, said aloud): a .npy of pickled objects is refused, not run
        q = np.load(q_file, allow_pickle=False) if q_file.is_file() else None
        v = np.load(v_file, allow_pickle=False) if q is None and v_file.is_file() else None
    except ValueError as err:
        raise UserError(f"cannot read the value arrays of {run_dir}: {err}") from None
    if q is None and v is None:
        raise ValueError(f"{run_dir} has neither q_values.npy nor values.npy")
    horizon = gym.spec(cfg.env.id).max_episode_steps or 10_000
    return bs.dp_errors(model, gamma, q_values=q, values=v, horizon=horizon)


def collect(suite: Suite, jobs: list[Job], kept: dict[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One record per job: its summary, peak memory, curve, config fingerprint and (tabular) DP errors;
    where the run directory holds no completed run, the record `kept` holds for it (rlgen.benchkeep), else
    status 'missing'."""
    kept = kept or {}
    records = []
    for job in jobs:
        run_dir = Path(job.run_dir)
        rec: dict[str, Any] = {"agent": job.agent, "env": job.env, "seed": job.seed, "budget": job.budget,
                               "run_dir": str(run_dir), "status": "missing"}
        summary_path = run_dir / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        if summary.get("status") != "completed" and job.run_dir in kept:
            records.append(kept[job.run_dir])
            continue
        if summary.get("status") == "completed":
            rec["config"] = fingerprint(job)
            keys = ("status", "eval_mean_return", "solved_at_step", "wall_seconds", "steps_per_second",
                    "total_steps", "reward_threshold", "versions")
            rec.update({k: summary[k] for k in keys})
            # every other figure the run reports (success rates, an env's measures of the policy, ...)
            rec.update({k: v for k, v in summary.items() if k not in rec and isinstance(v, int | float)
                        and not isinstance(v, bool)})
            group = int(summary.get("group_size", 1))
            if group > 1:  # trained with other seeds in one process: its share of the group's time
                rec["wall_seconds"] = summary["wall_seconds"] / group
                rec["steps_per_second"] = summary["steps_per_second"] * group
            if "evaluated_from" in summary:  # an evaluation-only run: the run whose model it evaluated
                rec["evaluated_from"] = summary["evaluated_from"]
            bench = run_dir / "bench.json"
            rec["peak_rss_mb"] = json.loads(bench.read_text())["peak_rss_mb"] if bench.is_file() else None
            rec["curve"] = [a.tolist() for a in _read_eval(run_dir)]
            if suite.metric == "dp_error":
                rec.update(tabular_metrics(run_dir, suite.gamma))
        records.append(rec)
    return records


# -- statistics per env -----------------------------------------------------------------------------


def _final(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Completed runs at each (agent, env)'s largest budget."""
    done = [r for r in records if r["status"] == "completed"]
    top: dict[tuple[str, str], int] = {}
    for r in done:
        top[(r["agent"], r["env"])] = max(top.get((r["agent"], r["env"]), 0), r["budget"])
    return [r for r in done if r["budget"] == top[(r["agent"], r["env"])]]


Records = list[dict[str, Any]]


def _steps_to_threshold(suite: Suite, records: Records, agent: str, env: str) -> list[int | None]:
    mine = [r for r in records if r["agent"] == agent and r["env"] == env and r["status"] == "completed"]
    if suite.metric == "return":
        return [r["solved_at_step"] for r in _final(mine)]
    out = []
    for seed in sorted({r["seed"] for r in mine}):
        hits = [r["budget"] for r in mine if r["seed"] == seed and r["policy_gap"] <= suite.dp_tolerance]
        out.append(min(hits) if hits else None)
    return out


def env_table(suite: Suite, records: Records, env: str, agents: list[str]) -> Records:
    rows = []
    final = _final(records)
    for agent in agents:
        runs = [r for r in final if r["agent"] == agent and r["env"] == env]
        if not runs:
            continue
        scores = np.array([r[SCORE[suite.metric]] for r in runs])
        row: dict[str, Any] = {"agent": agent, "n": len(runs), "iqm": bs.iqm(scores),
                               "ci": bs.bootstrap_ci(scores), "scores": scores.tolist(),
                               "budget": runs[0]["budget"]}
        if suite.metric == "dp_error":
            errs = np.array([r["value_error"] for r in runs])
            row.update(value_error_iqm=bs.iqm(errs), value_error_ci=bs.bootstrap_ci(errs))
        else:  # sample efficiency, and what keeping each run's best checkpoint gives
            aucs = np.array([bs.normalised_auc(*r["curve"]) for r in runs])
            best = np.array([max(r["curve"][1]) for r in runs])
            row.update(auc_iqm=bs.iqm(aucs), auc_ci=bs.bootstrap_ci(aucs), best_iqm=bs.iqm(best),
                       best_ci=bs.bootstrap_ci(best))
        solved = [s for s in _steps_to_threshold(suite, records, agent, env) if s is not None]
        row.update(solved=len(solved), solved_median=float(np.median(solved)) if solved else None,
                   wall=float(np.mean([r["wall_seconds"] for r in runs])),
                   sps=float(np.mean([r["steps_per_second"] for r in runs])),
                   peak_mb=max((r["peak_rss_mb"] or 0.0) for r in runs))
        rows.append(row)
    return rows


# -- figures ----------------------------------------------------------------------------------------


def _aligned(curves: list[list[list[float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Seeds' (steps, returns) curves on the first seed's steps, up to the shortest curve."""
    end = min(c[0][-1] for c in curves)
    grid = np.array([s for s in curves[0][0] if s <= end])
    return grid, np.stack([np.interp(grid, c[0], c[1]) for c in curves])


def plot_env(suite: Suite, records: list[dict[str, Any]], env: str, agents: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    final = _final(records) if suite.metric == "return" else records
    for i, agent in enumerate(agents):
        runs = [r for r in final if r["agent"] == agent and r["env"] == env and r["status"] == "completed"]
        if not runs:
            continue
        style = "--" if agent.startswith("sb3_") else "-"
        color = f"C{i}"
        if suite.metric == "return":
            x, curves = _aligned([r["curve"] for r in runs])
        else:
            x = np.array(sorted({r["budget"] for r in runs}))
            seeds = sorted({r["seed"] for r in runs})
            by = {(r["seed"], r["budget"]): r["policy_gap"] for r in runs}
            seeds = [s for s in seeds if all((s, b) in by for b in x)]
            if not seeds:
                continue
            curves = np.array([[by[(s, b)] for b in x] for s in seeds])
        mean, lo, hi = bs.curve_band(curves)
        ax.plot(x, mean, style, color=color, label=f"{agent} (n={len(curves)})")
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
    threshold = next((r["reward_threshold"] for r in records
                      if r["env"] == env and r.get("reward_threshold") is not None), None)
    if suite.metric == "return" and threshold is not None:
        ax.axhline(threshold, color="gray", linestyle=":", label=f"threshold {threshold:g}")
    if suite.metric == "dp_error":
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=suite.dp_tolerance)  # gaps span orders of magnitude down to 0
        ax.set_ylim(0, max(3 * ax.get_ylim()[1], 10 * suite.dp_tolerance))
        ax.axhline(suite.dp_tolerance, color="gray", linestyle=":", label=f"tolerance {suite.dp_tolerance:g}")
    budget = "budget: env steps (value iteration: sweeps, policy iteration: improvements)"
    ax.set_xlabel("environment steps" if suite.metric == "return" else budget)
    ax.set_ylabel("evaluation return" if suite.metric == "return" else "policy gap to DP optimum")
    ax.set_title(f"{env}: mean over seeds, 95% bootstrap band")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the report -------------------------------------------------------------------------------------


def fmt(x: float | None, metric: str = "return") -> str:
    if x is None:
        return "-"
    return f"{x:.2f}" if metric == "return" else f"{x:.3g}"


def machine() -> dict[str, str]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), cpu)
    mem = "unknown"
    if Path("/proc/meminfo").is_file():
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 2**20:.1f} GiB"
    return {"os": platform.platform(), "cpu": cpu, "cores": str(os.cpu_count()), "memory": mem,
            "python": platform.python_version()}


def report_info(suite: Suite, records: Records, absent: list[str], cut: bool, command: str,
                failures: Records) -> dict[str, Any]:
    """What every report's results.json says of how it was made, and its run records."""
    return {"suite": suite.name, "cut": cut, "command": command, "metric": suite.metric,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "absent_agents": absent, "failures": failures,
            "runs": records}


def save_report(out: Path, info: dict[str, Any], text: str) -> Path:
    """results.json and REPORT.md in `out`; returns REPORT.md's path."""
    (out / "results.json").write_text(json.dumps(info, indent=1, default=float))
    report = out / "REPORT.md"
    report.write_text(text)
    return report


def write_report(suite: Suite, jobs: list[Job], records: Records, out: Path, logdir: Path, absent: list[str],
                 cut: bool, command: str, failures: Records) -> Path:
    """From the records collect() made of `jobs`: the statistics, REPORT.md, figures and results.json."""
    out.mkdir(parents=True, exist_ok=True)
    envs = list(dict.fromkeys(j.env for j in jobs))
    agents = list(dict.fromkeys(j.agent for j in jobs))
    tables = {env: env_table(suite, records, env, agents) for env in envs}
    for env in envs:
        if tables[env]:
            plot_env(suite, records, env, agents, out / f"curves_{env}.png")
    comps = comparisons(suite, _final(records), envs)
    info = report_info(suite, records, absent, cut, command, failures) | {"tables": tables, "comparisons": comps}
    return save_report(out, info, render(suite, info, str(logdir)))


def _versions(runs: list[dict[str, Any]]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    seen: dict[str, set[str]] = {}
    for r in runs:
        for k, v in (r.get("versions") or {}).items():
            seen.setdefault(k, set()).add(v)
    out = {k: ", ".join(sorted(v)) for k, v in seen.items()}
    for pkg in ("matplotlib", "ray"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _table_md(metric: str, rows: list[dict[str, Any]]) -> list[str]:
    name = "final return" if metric == "return" else "policy gap"
    head = f"| agent | runs | {name} IQM [95% CI] |"
    extra = {"dp_error": {"value_error": "value error"}, "return": {"auc": "AUC", "best": "best return"}}[metric]
    head += "".join(f" {label} IQM [95% CI] |" for label in extra.values())
    head += " reached threshold | median steps to threshold | wall s | steps/s | peak MB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["agent"], str(r["n"]), _with_ci(r["iqm"], r["ci"], metric)]
        cells += [_with_ci(r[f"{key}_iqm"], r[f"{key}_ci"], metric) for key in extra]
        med = f"{r['solved_median']:,.0f}" if r["solved_median"] is not None else "-"
        cells += [f"{r['solved']}/{r['n']}", med, f"{r['wall']:.1f}", f"{r['sps']:.0f}",
                  f"{r['peak_mb']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _with_ci(value: float, ci: tuple[float, float] | list[float], metric: str) -> str:
    return f"{fmt(value, metric)} [{fmt(ci[0], metric)}, {fmt(ci[1], metric)}]"


def _header(suite: Suite, info: dict[str, Any], logdir: str) -> list[str]:
    cut = " (CUT: fewer seeds or smaller budgets)" if info["cut"] else ""
    lines = [f"# Benchmark report: `{suite.name}`{cut}", "", suite.description.strip(), "",
             f"Produced by `{info['command']}` on {info['date']}. "
             f"Curves of every run side by side: `tensorboard --logdir {logdir}`.", ""]
    if info["cut"]:
        lines += ["> **This is a cut run** (seeds or budgets below the suite's): a check of the harness "
                  "and a first look, not the suite's result.", ""]
    lines += [f"- {n}" for n in suite.notes]
    if info["absent_agents"]:
        lines.append(f"- Not registered yet, so not run: {', '.join(info['absent_agents'])}.")
    kept = sum(bool(r.get("kept")) for r in info["runs"])
    if kept:
        lines.append(f"- {kept} of the runs were done before, possibly on another machine: their records (figures "
                     "and curves) come from the previous report's results.json, with the same config and package "
                     "versions; their run directories are not in the log directory.")
    missing = [r for r in info["runs"] if r["status"] != "completed"]
    if missing:
        lines.append(f"- **{len(missing)} run(s) missing or failed** (listed at the end); "
                     "the statistics use the rest.")
    return lines


def _env_sections(suite: Suite, info: dict[str, Any]) -> list[str]:
    lines = []
    for env, rows in info["tables"].items():
        if not rows:
            continue
        if info["metric"] == "return":
            threshold = next((r["reward_threshold"] for r in info["runs"] if r["env"] == env
                              and r.get("reward_threshold") is not None), None)
            what = f"threshold {threshold:g}" if threshold is not None else "no threshold"
        else:
            what = f"threshold: policy gap <= {suite.dp_tolerance:g}"
        lines += ["", f"## {env} ({what})", "", f"![{env}](curves_{env}.png)", ""]
        lines += _table_md(info["metric"], rows)
    return lines


METHOD = [
    "- IQM: mean of the middle 50% of runs; 95% interval: percentile stratified bootstrap over seeds, "
    "10,000 resamples (Agarwal et al. 2021, \"Deep RL at the Edge of the Statistical Precipice\").",
    "- Curve band: 95% percentile bootstrap of the mean over seeds at each evaluation step (or budget).",
    "- Wall seconds and steps/s are means over runs (one torch thread each). A run trained with other seeds "
    "in one process (seeds=S: rlgen's PPO, DQN and SQL, up to the bench's group=8 consecutive seeds) counts "
    "the group's wall time divided by its seeds, its steps/s that many times the group's; peak MB is the "
    "largest resident memory of a run's process (a group's for its runs).",
]
FINAL = {
    "return": ["- Final score: the mean return of the deterministic evaluation at the end of each run's "
               "budget.",
               "- AUC (sample efficiency): the area under a run's evaluation curve (trapezoid rule over its "
               "evaluation steps, from the first to the last) divided by that span: its mean evaluation "
               "return over training.",
               "- Best return: a run's highest evaluation, what keeping its best checkpoint gives (the "
               "highest of noisy evaluations, so a little above that checkpoint's true mean return).",
               "- Steps to threshold: the first evaluation at or above the env's threshold (Gymnasium's "
               "reward_threshold); the median is over the runs that reached it."],
    "dp_error": ["- Final score at the largest budget: policy gap = E_s0[V*(s0) - V^pi(s0)] for the greedy "
                 "policy of the learned values; value error = max_s |V(s) - V*(s)|; V* by value iteration "
                 "on the env's model.",
                 "- Steps to threshold: the smallest budget whose run has a policy gap within the tolerance."],
}


def _machine_section(info: dict[str, Any]) -> list[str]:
    lines = ["", "## Machine, versions, seeds", ""]
    lines += [f"- {k}: {v}" for k, v in info["machine"].items()]
    lines += [f"- {k}: {v}" for k, v in _versions(info["runs"]).items() if k != "python"]
    done = sum(r["status"] == "completed" for r in info["runs"])
    seeds = sorted({r["seed"] for r in info["runs"]})
    lines += [f"- seeds: {', '.join(map(str, seeds))}", f"- runs: {len(info['runs'])} ({done} completed)"]
    hours = sum(r["wall_seconds"] for r in info["runs"] if r["status"] == "completed") / 3600
    lines.append(f"- time: {hours:.2f} hours of wall time summed over the completed runs (a grouped run counted "
                 "at its share of its group's), on however many workers ran them side by side")
    missing = [r for r in info["runs"] if r["status"] != "completed"]
    if missing:
        errors = {f["run_dir"]: f.get("error", f["status"]) for f in info["failures"]}
        lines += ["", "## Missing or failed runs", ""]
        lines += [f"- `{r['run_dir']}`: {errors.get(r['run_dir'], r['status'])}" for r in missing]
    return lines


def render(suite: Suite, info: dict[str, Any], logdir: str) -> str:
    lines = _header(suite, info, logdir)
    if info["comparisons"]:
        lines += comparisons_md(info["metric"], info["comparisons"])
    lines += _env_sections(suite, info)
    lines += ["", "## Method", "", *FINAL[info["metric"]], *METHOD]
    if info["comparisons"]:
        lines += VERDICT_METHOD
    if suite.runs_per_process > 1:
        lines.append(f"- This suite runs {suite.runs_per_process} runs per worker process: peak MB is the "
                     "peak of the process up to that run.")
    lines += _machine_section(info)
    return "\n".join(lines) + "\n"
