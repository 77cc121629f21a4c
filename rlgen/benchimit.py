"""The report of a suite scored by imitation (`metric: imitation`; benchmarks/suites/imitation.yaml):
GAIL against behavioural cloning and the expert, from 1, 4 and 10 expert trajectories, and DPPO against
the diffusion policy it starts from.

Roles come from each label's base agent: the expert (a run that others build on, trained with the env's
tuned config), gail and bc (built on the expert; the number of trajectories is each run's
`demo_episodes`), diffusion (an imitation start) and dppo (built on a start: each run is paired with
its start's run of the same seed). Returns are also given normalised, 0 for a uniformly random policy
and 1 for the expert's final evaluation: (R - random) / (expert - random), the score Ho & Ermon 2016
(fig. 1) plot. From the run directories alone: REPORT.md, imitation_<env>.png, curves_<env>.png and
results.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rlgen import benchstats as bs
from rlgen.benchreport import _aligned, _header, _machine_section, _with_ci, report_info, save_report
from rlgen.benchsuite import Job, Suite, base

Records = list[dict[str, Any]]
TARGET = 0.95
"""the fraction of the expert's (normalised) return a run must reach"""
RANDOM_EPISODES = 100
"""episodes of a uniformly random policy that fix each env's 0"""
DPPO_GAIN = 0.20
"""the rise in success rate over its start that counts a DPPO run as improved"""


def _done(records: Records, label: str, env: str) -> Records:
    return [r for r in records if r["agent"] == label and r["env"] == env and r["status"] == "completed"]


def random_return(job: Job) -> float:
    """The mean return of a uniformly random policy on a job's env (its config), seeded."""
    from rlgen.compose import load_config
    from rlgen.evaluation import evaluate_episodes
    from rlgen.trainer import env_spaces

    cfg = load_config(job.overrides)
    _, space = env_spaces(cfg)
    rng = np.random.default_rng(0)
    draw = (lambda n: rng.integers(0, space.n, n)) if hasattr(space, "n") else (
        lambda n: rng.uniform(space.low, space.high, (n, *space.shape)).astype(np.float32))
    return float(evaluate_episodes(lambda obs: draw(len(obs)), cfg.env, RANDOM_EPISODES, seed=0,
                                   one_hot=False).returns.mean())


def _row(label: str, method: str, runs: Records, score: str, expert: float | None, zero: float | None
         ) -> dict[str, Any]:
    values = np.array([r[score] for r in runs])
    row: dict[str, Any] = {"label": label, "method": method, "n": len(runs), "iqm": bs.iqm(values),
                           "ci": bs.bootstrap_ci(values), "scores": values.tolist(),
                           "trajectories": runs[0].get("demo_episodes"), "budget": runs[0]["budget"],
                           "wall": float(np.mean([r["wall_seconds"] for r in runs])),
                           "wall_max": float(max(r["wall_seconds"] for r in runs))}
    if expert is not None and zero is not None and expert != zero:
        normalised = (values - zero) / (expert - zero)
        row.update(normalised=normalised.tolist(), normalised_iqm=bs.iqm(normalised),
                   normalised_ci=bs.bootstrap_ci(normalised), reached=int((normalised >= TARGET).sum()))
    return row


def imitation_table(suite: Suite, jobs: list[Job], records: Records, env: str, labels: list[str]
                    ) -> dict[str, Any] | None:
    """The expert, and a row per gail / bc label with runs on `env`, its returns raw and normalised."""
    experts = [r for label in labels if _role(suite, label) == "expert" for r in _done(records, label, env)]
    learners = [label for label in labels if _role(suite, label) in ("gail", "bc") and _done(records, label, env)]
    if not learners:
        return None
    expert = float(np.mean([r["eval_mean_return"] for r in experts])) if experts else None
    zero = random_return(next(j for j in jobs if j.agent == learners[0] and j.env == env))
    rows = [_row(label, _role(suite, label), _done(records, label, env), "eval_mean_return", expert, zero)
            for label in learners]
    rows.sort(key=lambda r: (r["method"] != "gail", r["trajectories"] or 0))
    return {"expert": expert, "expert_runs": [r["run_dir"] for r in experts], "random": zero, "rows": rows}


def dppo_table(suite: Suite, records: Records, env: str, labels: list[str]) -> list[dict[str, Any]]:
    """Per dppo label on `env`: its runs' success beside their starts' (same seed), the gain per seed."""
    out = []
    for label in labels:
        variant = suite.variants.get(label)
        if _role(suite, label) != "dppo" or variant is None or not variant.builds_on:
            continue
        tuned = {r["seed"]: r for r in _done(records, label, env)}
        starts = {r["seed"]: r for r in _done(records, variant.builds_on, env)}
        seeds = sorted(set(tuned) & set(starts))
        if not seeds:
            continue
        before = np.array([starts[s]["success_rate"] for s in seeds])
        after = np.array([tuned[s]["success_rate"] for s in seeds])
        out.append({"label": label, "start": variant.builds_on, "seeds": seeds, "before": before.tolist(),
                    "after": after.tolist(), "gain": (after - before).tolist(),
                    "before_iqm": bs.iqm(before), "before_ci": bs.bootstrap_ci(before),
                    "after_iqm": bs.iqm(after), "after_ci": bs.bootstrap_ci(after),
                    "improved": int(((after - before) >= DPPO_GAIN - 1e-9).sum()),
                    "start_wall": float(np.mean([starts[s]["wall_seconds"] for s in seeds])),
                    "wall": float(np.mean([tuned[s]["wall_seconds"] for s in seeds])),
                    "wall_max": float(max(tuned[s]["wall_seconds"] for s in seeds)),
                    "budget": tuned[seeds[0]]["budget"]})
    return out


def _role(suite: Suite, label: str) -> str:
    """expert (a label others build on, by a reward learner), or the base agent's name."""
    agent = base(suite, label)
    built_on = {v.builds_on for v in suite.variants.values() if v.builds_on and base(suite, v.agent) in ("gail", "bc")}
    return "expert" if label in built_on else agent


# -- figures ------------------------------------------------------------------------------------------


def plot_imitation(table: dict[str, Any], env: str, path: Path) -> bool:
    """Normalised return against the number of expert trajectories, GAIL and BC, IQM with 95% interval."""
    rows = [r for r in table["rows"] if "normalised_iqm" in r]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=110)
    for i, method in enumerate(("gail", "bc")):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["trajectories"])
        if not mine:
            continue
        x = [r["trajectories"] for r in mine]
        lo, hi = zip(*(r["normalised_ci"] for r in mine), strict=True)
        ax.plot(x, [r["normalised_iqm"] for r in mine], "o-", color=f"C{i}", label=method.upper())
        ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.2, linewidth=0)
    ax.axhline(1.0, color="gray", linestyle="--", label=f"expert ({table['expert']:.1f})")
    ax.axhline(TARGET, color="gray", linestyle=":", label=f"{TARGET:.0%} of the expert")
    ax.axhline(0.0, color="black", linewidth=0.8, label=f"random ({table['random']:.1f})")
    ax.set_xscale("log")
    ax.set_xticks(sorted({r["trajectories"] for r in rows}), labels=map(str, sorted({r["trajectories"] for r in rows})))
    _save(fig, ax, path, "expert trajectories", "normalised return (IQM over seeds)",
          f"{env}: imitation from few trajectories")
    return True


def plot_curves(records: Records, env: str, labels: list[str], path: Path) -> bool:
    """The env's true return (never seen by GAIL) along training, per gail label: mean and 95% band."""
    labels = [label for label in labels if _done(records, label, env)]
    if not labels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=110)
    for i, label in enumerate(labels):
        runs = [r for r in _done(records, label, env) if len(r["curve"][0])]
        if not runs:
            continue
        x, curves = _aligned([r["curve"] for r in runs])
        mean, lo, hi = bs.curve_band(curves)
        ax.plot(x, mean, color=f"C{i}", label=f"{label} (n={len(curves)})")
        ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.2, linewidth=0)
    _save(fig, ax, path, "environment steps", "evaluation return (the env's)",
          f"{env}: GAIL's true return while it learns from the discriminator")
    return True


def _save(fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str, title: str) -> None:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# -- the report -----------------------------------------------------------------------------------------


def write_report(suite: Suite, jobs: list[Job], records: Records, out: Path, logdir: Path, absent: list[str],
                 cut: bool, command: str, failures: Records) -> Path:
    """From the records rlgen.benchreport.collect made of `jobs`: tables, figures, results.json, REPORT.md."""
    out.mkdir(parents=True, exist_ok=True)
    envs = list(dict.fromkeys(j.env for j in jobs))
    labels = list(dict.fromkeys(j.agent for j in jobs))
    imitation = {env: t for env in envs if (t := imitation_table(suite, jobs, records, env, labels)) is not None}
    figures = {env: plot_imitation(t, env, out / f"imitation_{env}.png") for env, t in imitation.items()}
    gail = [label for label in labels if _role(suite, label) == "gail"]
    curves = {env: plot_curves(records, env, gail, out / f"curves_{env}.png") for env in imitation}
    dppo = {env: rows for env in envs if (rows := dppo_table(suite, records, env, labels))}
    done = [r for r in records if r["status"] == "completed"]
    info = report_info(suite, records, absent, cut, command, failures) | {
        "imitation": imitation, "figures": figures, "curves": curves, "dppo": dppo,
        "run_seconds_total": float(sum(r["wall_seconds"] for r in done)),
        "run_seconds_max": float(max((r["wall_seconds"] for r in done), default=0.0))}
    return save_report(out, info, render(suite, info, str(logdir)))


def _imitation_md(env: str, table: dict[str, Any], figure: bool, curves: bool) -> list[str]:
    expert = "-" if table["expert"] is None else f"{table['expert']:.1f}"
    lines = ["", f"### {env}", "", f"Expert (final evaluation): {expert}; uniformly random policy: "
             f"{table['random']:.1f} (mean of {RANDOM_EPISODES} episodes).", ""]
    if figure:
        lines += [f"![{env}](imitation_{env}.png)", ""]
    head = ("| method | trajectories | runs | return IQM [95% CI] | normalised IQM [95% CI] | normalised per seed "
            f"| seeds >= {TARGET:.0%} | steps | s per run (max) |")
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in table["rows"]:
        has = "normalised_iqm" in r
        cells = [r["method"].upper(), str(r["trajectories"]), str(r["n"]), _with_ci(r["iqm"], r["ci"], "return"),
                 _with_ci(r["normalised_iqm"], r["normalised_ci"], "return") if has else "-",
                 " ".join(f"{x:.2f}" for x in r["normalised"]) if has else "-",
                 f"{r['reached']}/{r['n']}" if has else "-", f"{r['budget']:,}",
                 f"{r['wall']:.0f} ({r['wall_max']:.0f})"]
        lines.append("| " + " | ".join(cells) + " |")
    if curves:
        lines += ["", f"![{env} curves](curves_{env}.png)"]
    return lines


def _dppo_md(env: str, rows: list[dict[str, Any]]) -> list[str]:
    lines = ["", f"### {env}", "",
             "| fine-tuned | start | runs | start success IQM [95% CI] | DPPO success IQM [95% CI] | start per seed "
             f"| DPPO per seed | seeds gaining >= {DPPO_GAIN * 100:.0f} points | steps | s per run (max) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append("| " + " | ".join([
            r["label"], r["start"], str(len(r["seeds"])), _with_ci(r["before_iqm"], r["before_ci"], "return"),
            _with_ci(r["after_iqm"], r["after_ci"], "return"), " ".join(f"{x:.2f}" for x in r["before"]),
            " ".join(f"{x:.2f}" for x in r["after"]), f"{r['improved']}/{len(r['seeds'])}", f"{r['budget']:,}",
            f"{r['wall']:.0f} ({r['wall_max']:.0f})"]) + " |")
    return lines


def conclusions(info: dict[str, Any]) -> list[str]:
    """What the numbers say, sentence by sentence: per env, the fewest trajectories from which GAIL and
    BC reach the target on 80% of the seeds (4 of 5), or their best, and DPPO's gain over its start."""
    lines = []
    for env, table in info["imitation"].items():
        for method in ("gail", "bc"):
            rows = [r for r in table["rows"] if r["method"] == method and "reached" in r]
            if not rows:
                continue
            ok = [r for r in rows if r["reached"] >= 0.8 * r["n"]]
            if ok:
                first = min(ok, key=lambda r: r["trajectories"])
                lines.append(f"- {env}: {method.upper()} reaches {TARGET:.0%} of the expert's normalised return on "
                             f"{first['reached']} of {first['n']} seeds from {_trajectories(first['trajectories'])}.")
            else:
                best = max(rows, key=lambda r: r["normalised_iqm"])
                lines.append(f"- {env}: {method.upper()} does not reach {TARGET:.0%} of the expert on 80% of the "
                             f"seeds from any number of trajectories tried (best: IQM {best['normalised_iqm']:.2f} "
                             f"from {_trajectories(best['trajectories'])}, {best['reached']} of {best['n']} seeds).")
    for env, rows in info["dppo"].items():
        for r in rows:
            lines.append(f"- {env}: DPPO ({r['label']}) takes the success rate from {r['before_iqm']:.2f} to "
                         f"{r['after_iqm']:.2f} (IQM); {r['improved']} of {len(r['seeds'])} seeds gain at least "
                         f"{DPPO_GAIN * 100:.0f} points.")
    return lines


def _trajectories(n: int) -> str:
    return f"{n} trajectory" if n == 1 else f"{n} trajectories"


METHOD = [
    "- Return: the final evaluation's mean return of each run (the env's reward, which GAIL never sees); "
    "normalised: (R - random) / (expert - random), the expert being its run's final evaluation.",
    "- IQM: mean of the middle 50% of runs; 95% interval: percentile bootstrap over seeds, 10,000 resamples "
    "(Agarwal et al. 2021).",
    "- Every GAIL and BC run of an env learns from the same expert run; a run's demonstrations are that "
    "expert's deterministic policy played for the given number of episodes from demo_seed 0 (so the 1 "
    "trajectory is the first of the 4, the 4 the first of the 10). BC trains on them offline (its steps "
    "are gradient steps); GAIL interacts with the env (env steps).",
    "- DPPO: the success rate of each run's final evaluation beside that of the diffusion run it started "
    "from (same seed), both over the same evaluation episodes.",
    "- s per run: wall seconds of one run (training and its evaluations, one process, one torch thread), "
    "mean over seeds, the slowest in brackets.",
]


def render(suite: Suite, info: dict[str, Any], logdir: str) -> str:
    lines = _header(suite, info, logdir)
    lines.append(f"- The runs took {info['run_seconds_total'] / 60:.1f} minutes of run time in all (one core "
                 f"each); the longest run took {info['run_seconds_max'] / 60:.1f} minutes.")
    lines += ["", "## Conclusions", "", *conclusions(info)]
    if info["imitation"]:
        lines += ["", "## GAIL, BC and the expert"]
        for env, table in info["imitation"].items():
            lines += _imitation_md(env, table, info["figures"].get(env, False), info["curves"].get(env, False))
    if info["dppo"]:
        lines += ["", "## DPPO against its imitation start"]
        for env, rows in info["dppo"].items():
            lines += _dppo_md(env, rows)
    lines += ["", "## Method", "", *METHOD]
    lines += _machine_section(info)
    return "\n".join(lines) + "\n"
