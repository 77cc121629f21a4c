"""The completed runs a report records, kept across machines.

A report's results.json holds every completed run's record: its figures and its evaluation curve, the
fingerprint of the config it was trained with and the package versions it ran on. When the same suite
runs again with the same report directory, a job that has no run directory in the log directory but
a record there, with the same config and the same versions, counts as done, as a completed run
directory does: its record goes into the new report as it was. So a suite that takes longer than one
machine's life goes on where it stopped, wherever its report is, and a run changes only when its config,
rlgen's version or a package it runs on does (`reuse=false` runs them all again).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from rlgen.benchsuite import Job


def fingerprint(job: Job) -> str:
    """The job's composed config, hashed without where it is written: a path in the log directory (the
    run a job builds on, for one) is hashed relative to it."""
    logdir = Path(job.run_dir).parents[2]
    overrides = []
    for line in job.overrides:
        key, _, value = line.partition("=")
        if value.startswith(str(logdir)) and Path(value).is_relative_to(logdir):
            line = f"{key}=LOGDIR/{Path(value).relative_to(logdir)}"
        overrides.append(line)
    seeds = [o for o in overrides if o.startswith("seed=")]
    text = _config_text(tuple(o for o in overrides if o not in seeds)) + "".join(f"\n{o}" for o in seeds)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=256)
def _config_text(overrides: tuple[str, ...]) -> str:
    """The composed config's YAML (a suite's seeds of one agent and env share it: composed once)."""
    from rlgen.compose import load_config, to_yaml

    return to_yaml(load_config(list(overrides)))


def kept_records(out: Path, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """{run_dir: record} for the jobs with no run directory whose completed record in out/results.json
    has their config fingerprint and this machine's package versions, and carries its curve (a run
    directory, finished or not, is the run: it is resumed or read). A missing or unreadable results.json
    keeps nothing."""
    from rlgen.run import versions

    try:
        runs = json.loads((out / "results.json").read_text())["runs"]
        recorded = {(r["agent"], r["env"], r["seed"], r["budget"]): r for r in runs
                    if r.get("status") == "completed" and "curve" in r and "config" in r}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    here = versions()
    kept = {}
    for job in [j for j in jobs if not Path(j.run_dir).exists()]:
        rec = recorded.get((job.agent, job.env, job.seed, job.budget))
        if rec is not None and rec.get("versions") == here and rec["config"] == fingerprint(job):
            kept[job.run_dir] = rec | {"run_dir": job.run_dir, "kept": True}
    return kept
