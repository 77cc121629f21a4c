"""python -m rlgen.bench <suite> [key=value ...] -> benchmarks/results/<suite>/REPORT.md

A suite (benchmarks/suites/<suite>.yaml) is agents x envs x seeds x budgets. Every run is one
ordinary training run in its own process, written under one log directory
(`<logdir>/<env>/<agent>/seed<k>`), so `tensorboard --logdir <logdir>` overlays ours and SB3's.
A run whose summary.json says "completed" is not run again; one that was interrupted is resumed
from its checkpoint; nor is one the report already at `out` records as completed with the same config
and package versions (rlgen.benchkeep: a suite goes on where it stopped on another machine). The report
is then written from the run directories and those records, and never replaces a report with more
completed runs unless force=true. `python -m rlgen.bench --help` lists the settings.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rlgen import benchalign, benchgen, benchimit
from rlgen.benchkeep import kept_records
from rlgen.benchreport import collect, write_report
from rlgen.benchsuite import Job, Options, Suite, find_suite, known_suites, load_suite, plan, suite_agents
from rlgen.cli import parse_settings, usage
from rlgen.errors import UserError, cli_main

REPORTS = {"success": benchgen.write_report, "alignment": benchalign.write_report,
           "imitation": benchimit.write_report}
"""the report writer of a suite's metric, when not the classic one (rlgen.benchreport)"""


def _status(run_dir: Path) -> dict[str, Any] | None:
    from rlgen.run import read_json

    path = run_dir / "summary.json"
    return read_json(path) if path.is_file() else None


def pending(jobs: list[Job], kept: dict[str, dict[str, Any]]) -> list[Job]:
    """The jobs whose run directory does not hold a completed run of the same budget, and which the
    report does not keep (rlgen.benchkeep)."""
    todo = []
    for job in jobs:
        summary = _status(Path(job.run_dir))
        done = summary is not None and summary["status"] == "completed"
        if not done and job.run_dir not in kept:  # kept: a record and no run directory
            todo.append(job)
        elif done and summary["budget_steps"] != job.budget:
            raise UserError(f"{job.run_dir} holds a completed run of {summary['budget_steps']} steps, the "
                            f"suite asks for {job.budget}; pick another logdir=")
    return todo


def evaluate_run(job: Job) -> dict[str, Any]:
    """An evaluation-only job: the model of the completed run at job.source, loaded as rlgen.evaluate
    loads it, built with the job's overrides and evaluated; its summary.json is the source's (training
    time, budget) with the evaluation's figures, and says which run it evaluated."""
    from rlgen.checkpoint import write_json_atomic, write_text_atomic
    from rlgen.compose import load_config, to_yaml
    from rlgen.evaluation import evaluate_episodes, final_metrics
    from rlgen.trainer import build_agent

    source, run_dir = Path(job.source), Path(job.run_dir)
    trained = _status(source)
    if trained is None or trained["status"] != "completed":
        raise RuntimeError(f"the run it evaluates, {source}, has not completed")
    cfg = load_config([*job.overrides, f"run_dir={run_dir}"])
    agent = build_agent(cfg)
    agent.load(source / "checkpoint")
    t0 = time.perf_counter()
    policy = agent.episode_policy(cfg.eval_deterministic)
    result = evaluate_episodes(policy, cfg.env, cfg.eval_episodes, cfg.seed, agent.one_hot)
    figures = {"eval_mean_return": float(result.returns.mean()), "eval_std_return": float(result.returns.std()),
               **result.rates(), "action_latency_ms": result.act_ms,
               **final_metrics(agent.act, cfg.env, cfg.seed, agent.one_hot)}
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
    row = {"step": agent.num_steps, "mean_return": figures["eval_mean_return"],
           "std_return": figures["eval_std_return"], "n_episodes": len(result.returns)}
    write_text_atomic(run_dir / "eval.csv", ",".join(row) + "\n" + ",".join(map(str, row.values())) + "\n")
    summary = {**trained, **figures, "evaluated_from": str(source), "evaluation_overrides": job.overrides,
               "evaluation_seconds": time.perf_counter() - t0}
    write_json_atomic(run_dir / "summary.json", summary)
    return summary


def run_job(job: Job) -> dict[str, Any]:
    """Train one run (or evaluate one, for an evaluation-only job) in this (fresh) process and record its
    peak memory; never raises."""

    import torch

    from rlgen.compose import load_config
    from rlgen.trainer import load_run_config, train

    torch.set_num_threads(1)
    run_dir = Path(job.run_dir)
    t0 = time.perf_counter()
    try:
        if job.source:
            summary = evaluate_run(job)
        elif (run_dir / "checkpoint.json").is_file():
            cfg = load_run_config(run_dir)
            summary, _ = train(replace(cfg, resume=str(run_dir), total_steps=job.budget, progress=False))
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # started but never checkpointed: nothing worth keeping
            summary, _ = train(load_config([*job.overrides, f"run_dir={run_dir}"]))
    except Exception as err:  # a failed run is reported, and the rest of the suite goes on
        return _failed(job, err)
    _record(run_dir)
    return {"run_dir": job.run_dir, "status": summary["status"], "seconds": time.perf_counter() - t0}


def _failed(job: Job, err: Exception) -> dict[str, Any]:
    return {"run_dir": job.run_dir, "status": "failed", "error": f"{type(err).__name__}: {err}"}


def _record(run_dir: Path, group_size: int = 1) -> None:
    """bench.json: the peak memory of this process, which ran the run (with the others of its group, and,
    when the suite's runs_per_process > 1, a few before it; ru_maxrss is in KiB on Linux)."""
    import resource

    from rlgen.checkpoint import write_json_atomic

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json_atomic(run_dir / "bench.json", {"peak_rss_mb": peak_mb, "host": os.uname().nodename}
                      | ({"group_size": group_size} if group_size > 1 else {}))


def run_group(jobs: list[Job]) -> list[dict[str, Any]]:
    """The runs of consecutive seeds of one (agent, env, budget) trained as one group in this process
    (python -m rlgen.train seeds=S; `groups` chose them); resumed as a group if they were stopped as one,
    one by one if they were not trained together. Never raises. Each run's seconds are the group's
    divided by its seeds."""

    import torch

    from rlgen.compose import load_config
    from rlgen.seed_groups import read_group, train_seeds
    from rlgen.trainer import load_run_config

    if len(jobs) == 1:
        return [run_job(jobs[0])]
    torch.set_num_threads(1)
    dirs = [Path(j.run_dir) for j in jobs]
    t0 = time.perf_counter()
    try:
        if any((d / "checkpoint.json").is_file() for d in dirs):
            if {d.resolve() for d in read_group(dirs[0]) or []} != {d.resolve() for d in dirs}:
                return [run_job(j) for j in jobs]  # not stopped as this group: each goes on by itself
            cfg = load_run_config(dirs[0])
            outcomes = train_seeds(replace(cfg, resume=str(dirs[0]), total_steps=jobs[0].budget, progress=False))
        else:
            for d in dirs:
                if d.exists():
                    shutil.rmtree(d)  # started but never checkpointed: nothing worth keeping
            outcomes = train_seeds(load_config([*_without_seed(jobs[0].overrides), f"seed={jobs[0].seed}",
                                                f"seeds={len(jobs)}", f"run_dir={dirs[0].parent}"]))
    except Exception as err:  # a failed group is reported, and the rest of the suite goes on
        return [_failed(j, err) for j in jobs]
    seconds = (time.perf_counter() - t0) / len(jobs)
    results = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        if outcome.summary is None:
            results.append({"run_dir": job.run_dir, "status": "failed", "error": outcome.error or outcome.note})
            continue
        _record(Path(job.run_dir), len(jobs))
        results.append({"run_dir": job.run_dir, "status": outcome.summary["status"], "seconds": seconds})
    return results


def groups(jobs: list[Job], size: int) -> list[list[Job]]:
    """The jobs in units of work: runs of consecutive seeds of one agent, env, budget and overrides, at
    most `size` of them, together where the agent learns seeds in groups (Agent.learns_in_groups), alone
    otherwise and for runs that build on or evaluate others."""
    from rlgen.agents import agent_class
    from rlgen.compose import load_config

    units: list[list[Job]] = []
    for job in jobs:
        last = units[-1][-1] if units else None
        same = (last is not None and len(units[-1]) < size and not job.source and not job.after
                and (last.agent, last.env, last.budget, last.seed + 1) == (job.agent, job.env, job.budget, job.seed)
                and _without_seed(last.overrides) == _without_seed(job.overrides)
                and Path(last.run_dir).parent == Path(job.run_dir).parent
                and Path(job.run_dir).name == f"seed{job.seed}")  # where seeds=S with run_dir puts its runs
        if same and (len(units[-1]) > 1 or agent_class(load_config(job.overrides).agent.name).learns_in_groups()):
            units[-1].append(job)
        else:
            units.append([job])
    return units


def _without_seed(overrides: list[str]) -> list[str]:
    return [o for o in overrides if not o.startswith("seed=")]


def _log(done: int, total: int, result: dict[str, Any]) -> None:
    extra = result.get("error") or f"{result.get('seconds', 0):.0f} s"
    print(f"[{done}/{total}] {result['status']}: {result['run_dir']} ({extra})", flush=True)


def _worker(units: list[list[Job]], results: Any) -> None:
    """A spawned process: its units of work one after another; it stops at the first interrupted run."""
    for unit in units:
        unit_results = run_group(unit)
        for result in unit_results:
            results.put(result)
        if any(r["status"] == "interrupted" for r in unit_results):
            return


def run_local(units: list[list[Job]], workers: int, per_process: int) -> list[dict[str, Any]]:
    """Up to `workers` spawned processes at once, each running `per_process` units of work (1: a fresh
    process per run or group, so peak memory is its own). A hand-rolled pool: ProcessPoolExecutor's
    max_tasks_per_child can hang on Python 3.11 when a worker retires (CPython gh-115634)."""
    import multiprocessing as mp
    import queue

    jobs = [j for unit in units for j in unit]
    ctx = mp.get_context("spawn")
    results_q = ctx.Queue()
    chunks = [units[i:i + per_process] for i in range(0, len(units), per_process)]
    running: list[Any] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        while chunks or running or not results_q.empty():
            while chunks and len(running) < workers:
                running.append(ctx.Process(target=_worker, args=(chunks.pop(0), results_q)))
                running[-1].start()
            try:
                result = results_q.get(timeout=0.5)
                results[result["run_dir"]] = result
                _log(len(results), len(jobs), result)
            except queue.Empty:
                running = [p for p in running if p.is_alive()]
    except KeyboardInterrupt:
        # the workers got the Ctrl-C too and checkpoint their current run; start no new ones
        for p in running:
            p.join()
        raise UserError("interrupted: finished runs are kept and interrupted ones checkpointed; "
                        "the same command again resumes the suite") from None
    lost = {"status": "failed", "error": "its worker process died (out of memory?)"}
    return [results.get(j.run_dir, {"run_dir": j.run_dir, **lost}) for j in jobs]


def run_ray(units: list[list[Job]], address: str, per_process: int) -> list[dict[str, Any]]:
    """The same units of work as Ray tasks: one CPU each, a worker process replaced after `per_process`
    tasks."""
    try:
        import ray
    except ImportError:
        raise UserError("backend=ray needs Ray: pip install 'rlgen[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_calls=per_process)(run_group)
    waiting = [remote.remote(unit) for unit in units]
    total = sum(len(unit) for unit in units)
    results: list[dict[str, Any]] = []
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        for result in ray.get(ready[0]):
            results.append(result)
            _log(len(results), total, result)
    return results


def completeness(runs: list[dict[str, Any]]) -> tuple[int, int]:
    """(completed runs, missing or failed runs) of a report's run records."""
    done = sum(r["status"] == "completed" for r in runs)
    return done, len(runs) - done


def existing_completeness(out: Path) -> tuple[int, int] | None:
    """completeness() of the report already at `out`, read from its results.json; None when `out` holds
    no report. A REPORT.md without a readable results.json cannot be compared: a UserError."""
    results = out / "results.json"
    if not results.is_file() and not (out / "REPORT.md").is_file():
        return None
    try:
        return completeness(json.loads(results.read_text())["runs"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{out} holds a report whose results.json cannot be read, so it cannot be compared "
                        "with the new one; add force=true to replace it") from None


def check_not_less_complete(records: list[dict[str, Any]], out: Path) -> None:
    """A report is never replaced by one with fewer completed runs or more missing ones."""
    before = existing_completeness(out)
    done, missing = completeness(records)
    if before is not None and (done < before[0] or missing > before[1]):
        raise UserError(f"not replacing {out / 'REPORT.md'} ({before[0]} completed runs, {before[1]} missing) "
                        f"with a less complete report ({done} completed, {missing} missing); "
                        "add force=true to replace it anyway")


def run_suite(suite: Suite, opts: Options, logdir: Path, out: Path, command: str) -> tuple[Path, int]:
    """Run what is missing, then write the report; returns (REPORT.md, number of failed runs)."""
    jobs = plan(suite, opts, logdir)
    kept = kept_records(out, jobs) if opts.reuse else {}
    todo: list[Job] = []
    while not opts.report_only:  # a kept run that a run to do builds on or evaluates is needed whole: run it
        todo = pending(jobs, kept)
        needed = {j.after or j.source for j in todo} & kept.keys()
        if not needed:
            break
        kept = {d: r for d, r in kept.items() if d not in needed}
    done = "report only" if opts.report_only else f"{len(jobs) - len(todo)} already done"
    recorded = f" ({len(kept)} as recorded in {out / 'results.json'})" if kept else ""
    print(f"suite {suite.name}: {len(jobs)} runs, {done}{recorded}, logdir {logdir}", flush=True)
    results: list[dict[str, Any]] = []
    # training runs first, then those that build on them (an expert, a start), then the evaluation-only jobs
    # that load their models
    phases = ([j for j in todo if not j.source and not j.after], [j for j in todo if j.after],
              [j for j in todo if j.source])
    for phase in phases:
        units = groups(phase, opts.group)
        if phase and opts.backend == "ray":
            results += run_ray(units, opts.ray_address, suite.runs_per_process)
        elif phase:
            results += run_local(units, opts.workers or os.cpu_count() or 1, suite.runs_per_process)
    failed = [r for r in results if r["status"] != "completed"]
    records = collect(suite, jobs, kept)
    if not opts.force:
        check_not_less_complete(records, out)
    write = REPORTS.get(suite.metric, write_report)
    report = write(suite, jobs, records, out, logdir, absent=suite_agents(suite)[1], cut=opts.cut,
                   command=command, failures=failed)
    return report, len(failed)


@cli_main
def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(usage(Options, "python -m rlgen.bench <suite>") + f"\nsuites: {', '.join(known_suites())}")
        return 0
    if not argv or "=" in argv[0]:
        raise UserError("the suite comes first: python -m rlgen.bench <suite> [key=value ...]; "
                        f"suites: {', '.join(known_suites())}")
    opts = parse_settings(argv[1:], Options, f"python -m rlgen.bench {argv[0]}")
    suite = load_suite(find_suite(argv[0]))
    tag = suite.name + ("-cut" if opts.cut else "")
    logdir = Path(opts.logdir or Path("runs") / "bench" / tag)
    out = Path(opts.out or Path("benchmarks") / "results" / tag)
    command = "python -m rlgen.bench " + " ".join(argv)
    report, n_failed = run_suite(suite, opts, logdir, out, command)
    print(f"report written: {report}")
    if n_failed:
        print(f"{n_failed} run(s) failed or were interrupted; see the report. The same command again "
              "retries them (finished runs are kept).", file=sys.stderr)
    return 1 if n_failed else 0


if __name__ == "__main__":
    main()
