"""The report of a suite scored by success (`metric: success`; benchmarks/suites/generative.yaml):
policies learned from demonstrations on tasks whose expert's action jumps or has several values.

Per task: a table of the success rate's IQM with a 95% stratified-bootstrap interval, mode coverage
(the fraction of episodes ending in each mode: Avoid's side, two-valued Step's branch), the error near
Step's jump against elsewhere (StepEnv.policy_metrics), training time and the milliseconds one action
takes for one observation; and a figure of every policy's behaviour beside the expert's, from the
checkpoint of each policy's first-seed run, loaded as rlgen.evaluate loads it. All from the run
directories alone: REPORT.md, policies_<task>.png and results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlgen import benchstats as bs
from rlgen.benchreport import _header, _machine_section, _with_ci, report_info, save_report
from rlgen.benchsuite import Job, Suite, base

Records = list[dict[str, Any]]


def _mean(runs: Records, key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def task_table(records: Records, env: str, agents: list[str]) -> Records:
    """One row per policy with completed runs on `env`: the statistics over its seeds."""
    rows = []
    for agent in agents:
        runs = [r for r in records if r["agent"] == agent and r["env"] == env and r["status"] == "completed"]
        if not runs:
            continue
        success = np.array([r["success_rate"] for r in runs])
        latencies = [r["action_latency_one_ms"] for r in runs if r.get("action_latency_one_ms") is not None]
        rows.append({
            "agent": agent, "n": len(runs), "budget": runs[0]["budget"], "iqm": bs.iqm(success),
            "ci": bs.bootstrap_ci(success), "scores": success.tolist(),
            "mode_fraction": _mean(runs, "mode_fraction"),
            "error_near_jump": _mean(runs, "error_near_jump"), "error_elsewhere": _mean(runs, "error_elsewhere"),
            "train_seconds": _mean(runs, "wall_seconds"), "train_cpu_seconds": _mean(runs, "cpu_seconds"),
            "ms_per_action": float(np.median(latencies)) if latencies else None,
            "evaluated_from_base": any(r.get("evaluated_from") for r in runs),
        })
    return rows


# -- figures ----------------------------------------------------------------------------------------


def policy_image(run_dir: Path, trained_in: Path | None = None) -> np.ndarray | None:
    """The env's policy picture (rlgen.evaluation.policy_picture) of a run's policy: its config and the
    checkpoint of the run that trained it (itself, unless it is an evaluation-only run)."""
    import torch

    from rlgen.evaluation import policy_picture
    from rlgen.trainer import build_agent, load_run_config

    cfg = load_run_config(run_dir)
    torch.set_num_threads(cfg.torch_threads)  # as the run acted: more threads only slow small networks down
    agent = build_agent(cfg)
    agent.load((trained_in or run_dir) / "checkpoint")
    return policy_picture(agent.episode_policy(cfg.eval_deterministic), cfg.env, cfg.seed, agent.one_hot)


def plot_task(records: Records, env: str, agents: list[str], path: Path) -> bool:
    """policies_<task>.png: each policy's picture (first seed) in a grid; False when there is none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for agent in agents:
        # a run kept from an earlier report has no checkpoint here (rlgen.benchkeep)
        runs = sorted((r for r in records if r["agent"] == agent and r["env"] == env and r["status"] == "completed"
                       and not r.get("kept")), key=lambda r: r["seed"])
        if runs:
            source = runs[0].get("evaluated_from")
            image = policy_image(Path(runs[0]["run_dir"]), Path(source) if source else None)
            if image is not None:
                panels.append((f"{agent}, seed {runs[0]['seed']} (success {runs[0]['success_rate']:.0%})", image))
    if not panels:
        return False
    cols = min(len(panels), 3 if panels[0][1].shape[1] < 500 else 2)
    rows = (len(panels) + cols - 1) // cols
    height, width = panels[0][1].shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * width / 80, rows * (height / 80 + 0.3)), dpi=80,
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, image) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(image)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# -- the report -------------------------------------------------------------------------------------


def write_report(suite: Suite, jobs: list[Job], records: Records, out: Path, logdir: Path, absent: list[str],
                 cut: bool, command: str, failures: Records) -> Path:
    """From the records rlgen.benchreport.collect made of `jobs`: tables, figures, results.json, REPORT.md."""
    out.mkdir(parents=True, exist_ok=True)
    envs = list(dict.fromkeys(j.env for j in jobs))
    agents = list(dict.fromkeys(j.agent for j in jobs))
    tables = {env: task_table(records, env, agents) for env in envs}
    figures = {env: plot_task(records, env, agents, out / f"policies_{env}.png") for env in envs if tables[env]}
    trained = [r for r in records if r["status"] == "completed" and not r.get("evaluated_from")]
    info = report_info(suite, records, absent, cut, command, failures) | {
        "tables": tables, "figures": figures, "train_seconds_total": float(sum(r["wall_seconds"] for r in trained))}
    return save_report(out, info, render(suite, info, str(logdir)))


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _table_md(rows: Records) -> list[str]:
    modes = any(r["mode_fraction"] is not None for r in rows)
    jump = any(r["error_near_jump"] is not None for r in rows)
    head = "| policy | runs | gradient steps | success IQM [95% CI] | success per seed |"
    head += " mode 0 / mode 1 |" * modes + " error near jump / elsewhere |" * jump
    head += " training s (CPU s) | ms per action |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        cells = [r["agent"], str(r["n"]), f"{r['budget']:,}", _with_ci(r["iqm"], r["ci"], "return"),
                 " ".join(f"{s:.2f}" for s in r["scores"])]
        if modes:
            m = r["mode_fraction"]
            cells.append("-" if m is None else f"{1 - m:.2f} / {m:.2f}")
        if jump:
            cells.append(f"{_fmt(r['error_near_jump'], '.3f')} / {_fmt(r['error_elsewhere'], '.3f')}")
        train = f"{_fmt(r['train_seconds'], '.0f')} ({_fmt(r['train_cpu_seconds'], '.0f')})"
        cells += [train + " *" * r["evaluated_from_base"], _fmt(r["ms_per_action"], ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _policies_md(suite: Suite, agents: list[str], envs: list[str]) -> list[str]:
    """What each label stands for where the suite sets more than the agent's or env's defaults."""
    lines = []
    for label in [*agents, *envs]:
        v = suite.variants.get(label)
        own = suite.overrides.get(label, [])
        if v is not None and v.evaluate_only:
            lines.append(f"- **{label}**: the models of the {v.agent} runs, acting with `{' '.join(v.overrides)}` "
                         "(no training of its own: its training time is theirs)")
        elif v is not None or own:
            settings = " ".join([*(v.overrides if v else []), *own])
            lines.append(f"- **{label}**: {base(suite, label)}, with `{settings}`")
    return ["", "## Policies and tasks", "", *lines] if lines else []


METHOD = [
    "- Success rate: the fraction of the final evaluation's episodes that succeeded (the env's "
    "`info[\"success\"]` at each episode's end), one number per run.",
    "- IQM: mean of the middle 50% of runs; 95% interval: percentile stratified bootstrap over seeds, "
    "10,000 resamples (Agarwal et al. 2021, \"Deep RL at the Edge of the Statistical Precipice\").",
    "- Modes: the fraction of the final evaluation's episodes that ended in each mode, mean over seeds "
    "(Avoid: 0 = passed the obstacle on the left, 1 = on the right, successful or not; two-valued Step: "
    "0 = nearest the upper correct action, 1 = its negative).",
    "- Error near the jump / elsewhere (Step): the mean distance of the action to the nearest correct "
    "action on a fixed grid of 401 observations, for |s| < 0.05 and for the rest; mean over seeds.",
    "- Training s: wall seconds of a run (training and its evaluations, one process, one torch thread), "
    "mean over seeds; CPU s beside it is barely affected by other load on the machine. * marks a policy "
    "evaluated from another policy's trained models.",
    "- ms per action: the median over seeds of each run's median wall time of 20 calls of the policy on "
    "one observation, after the final evaluation.",
    "- Figures: every policy's first-seed run, its checkpoint loaded as `python -m rlgen.evaluate` "
    "loads it, drawn by the env's policy picture (paths beside the expert's from the same starts; on "
    "Step, the action against the observation over the correct actions).",
]


def render(suite: Suite, info: dict[str, Any], logdir: str) -> str:
    lines = _header(suite, info, logdir)
    minutes = info["train_seconds_total"] / 60
    lines.append(f"- The training runs took {minutes:.1f} minutes of run time in all (one core each).")
    agents = list(dict.fromkeys(r["agent"] for r in info["runs"]))
    lines += _policies_md(suite, agents, list(info["tables"]))
    for env, rows in info["tables"].items():
        if not rows:
            continue
        lines += ["", f"## {env}", ""]
        if info["figures"].get(env):
            lines += [f"![{env}](policies_{env}.png)", ""]
        lines += _table_md(rows)
    lines += ["", "## Method", "", *METHOD]
    lines += _machine_section(info)
    return "\n".join(lines) + "\n"
