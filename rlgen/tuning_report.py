"""What a hyperparameter study leaves (python -m rlgen.tune): the best trial as a tuned file for
`python -m rlgen.train tuned=PATH`, and a report (REPORT.md, history.png) of the study so far."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Protocol

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from rlgen.checkpoint import write_text_atomic
from rlgen.tuning_space import SearchSpace, config_value


class Job(Protocol):
    """What the report needs to know of the study's job (rlgen.tune.Job)."""

    study: str
    storage: str
    base: Any
    """the TrainConfig every trial starts from"""
    overrides: list[str]
    space: SearchSpace
    settings: Any
    """the tuner's settings (its seed)"""

IMPORTANCE = "PED-ANOVA (optuna.importance.PedAnovaImportanceEvaluator, Optuna's default)"
"""fANOVA, RL Zoo's choice, fits scikit-learn's random forests, which rlgen does not depend on"""


def tuned_values(trial: FrozenTrial, job: Job) -> dict[str, Any]:
    """The trial's agent hyperparameters that differ from the pair's config: those fixed on the command
    line and those sampled (after the space's constraints), {field: value}."""
    fixed = [o.partition("=")[0].lstrip("+") for o in job.overrides if o.startswith(("agent.", "+agent.", "++agent."))]
    values = {key: config_value(job.base, key) for key in fixed} | trial.user_attrs["config"]
    return {key.removeprefix("agent."): value for key, value in values.items()}


def write_tuned(study: optuna.Study, job: Job, path: Path, trial: FrozenTrial | None = None) -> None:
    """A completed trial (default: the best) as a tuned file: what it is for, where it comes from, its values."""
    t = trial or study.best_trial
    done = sorted((tr.value for tr in study.trials if tr.state == TrialState.COMPLETE), reverse=True)
    header = [
        f"# Tuned by python -m rlgen.tune: trial {t.number} of study {job.study} ({job.storage}), number "
        f"{done.index(t.value) + 1} of its {len(done)} completed trials",
        f"# value {t.value:.4g}: the mean return of its final evaluation after {job.base.total_steps} env steps "
        f"(seed {job.settings.seed + t.number}); run {t.user_attrs.get('run_dir')}",
        f"# python -m rlgen.train agent={job.base.agent.name} env={job.base.env.name} tuned={path}",
    ]
    node = {"tuned_for": {"agent": job.base.agent.name, "env": job.base.env.name, "study": job.study,
                          "storage": job.storage, "trial": t.number, "value": float(t.value),
                          "total_steps": job.base.total_steps},
            "agent": tuned_values(t, job)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "\n".join(header) + "\n" + yaml.safe_dump(node, sort_keys=False))


def _count(study: optuna.Study, state: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=[state]))


def importances(study: optuna.Study) -> dict[str, float] | str:
    """Each searched parameter's share of the variance of the completed trials' values, or why not."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "too few trials: importances will be equal" is no answer
        try:
            return optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator())
        except (ValueError, RuntimeError, UserWarning) as err:  # too few completed trials, or all alike
            return f"not computed: {' '.join(str(err).split())}"


def write_report(study: optuna.Study, job: Job, folder: Path, best: Path) -> None:
    """REPORT.md and history.png in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    plot_history(study.trials, folder / "history.png")
    t = study.best_trial
    states = {s.name.lower(): _count(study, s) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    lines = [
        f"# Study {job.study}", "",
        f"- storage: `{job.storage}`; search space: `{job.space.source}` "
        f"({', '.join(p.name for p in job.space.params)})",
        f"- every trial: `{' '.join(o for o in job.overrides if not o.startswith('progress='))}`, "
        f"seed = {job.settings.seed} + trial number; value = mean return of the final evaluation",
        f"- trials: {', '.join(f'{n} {s}' for s, n in states.items())} (failed: interrupted or refused, not counted)",
        "", "## Best trial", "",
        f"Trial {t.number}: value {t.value:.2f}, run `{t.user_attrs.get('run_dir')}`; tuned file `{best}`.", "",
        "| key | value |", "| --- | --- |",
        *[f"| agent.{k} | {v} |" for k, v in tuned_values(t, job).items()],
        "", "## Parameter importances", "",
        f"{IMPORTANCE}, over the completed trials (of the sampled values, before constraints):", "",
    ]
    found = importances(study)
    lines += [found] if isinstance(found, str) else ["| parameter | importance |", "| --- | --- |",
                                                     *[f"| {k} | {v:.3f} |" for k, v in found.items()]]
    lines += ["", "## Optimisation history", "", "![history](history.png)", "", "## Trials", "",
              "| trial | state | value | last reported | run |", "| --- | --- | --- | --- | --- |"]
    for tr in study.trials:
        value = f"{tr.value:.2f}" if tr.state == TrialState.COMPLETE else ""
        last = f"{tr.intermediate_values[max(tr.intermediate_values)]:.2f}" if tr.intermediate_values else ""
        lines.append(f"| {tr.number} | {_state(tr)} | {value} | {last} | `{tr.user_attrs.get('run_dir', '')}` |")
    write_text_atomic(folder / "REPORT.md", "\n".join(lines) + "\n")


def _state(trial: FrozenTrial) -> str:
    if trial.user_attrs.get("interrupted"):
        return "interrupted"
    if "failure" in trial.user_attrs:
        return "pruned (diverged)"
    return trial.state.name.lower()


def plot_history(trials: list[FrozenTrial], path: Path) -> None:
    """Each completed trial's value, each pruned trial's last reported evaluation, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter([t.number for t in done], [t.value for t in done], label="completed: final evaluation", zorder=3)
    ax.scatter([t.number for t in pruned], [t.intermediate_values[max(t.intermediate_values)] for t in pruned],
               marker="x", color="grey", label="pruned: last evaluation reported")
    best, xs, ys = float("-inf"), [], []
    for t in done:
        best = max(best, t.value)
        xs.append(t.number)
        ys.append(best)
    ax.step(xs, ys, where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("mean return")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8)  # below: no point hidden
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
