"""python -m rlgen.bench <suite> [backend=ray] [key=value ...] -> benchmarks/results/<suite>/REPORT.md

A suite (benchmarks/suites/<suite>.yaml) is agents x envs x seeds x budgets. Every run is one
ordinary training run in its own process, written under one log directory
(`<logdir>/<env>/<agent>/seed<k>`), so `tensorboard --logdir <logdir>` overlays ours and SB3's.
A run whose summary.json says "completed" is not run again; one that was interrupted is resumed
from its checkpoint. The report is then written from the run directories alone.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlgen.errors import UserError, cli_main, did_you_mean, unknown


@dataclass
class Suite:
    name: str = MISSING
    description: str = ""
    agents: list[str] = MISSING
    """agents that must be registered"""
    optional_agents: list[str] = field(default_factory=list)
    """agents included only when registered (being written); the report says which were absent"""
    envs: list[str] = MISSING
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    steps: dict[str, int] = field(default_factory=dict)
    """budget per "agent/env", "agent" or "env" (first match); default: the tuned total_steps"""
    step_sweep: dict[str, list[int]] = field(default_factory=dict)
    """budgets per "all", "agent", "env" or "agent/env" (last match): each (agent, env, seed) is run
    at every one of them, so error against steps is a curve of independent runs"""
    overrides: dict[str, list[str]] = field(default_factory=dict)
    """config overrides per "all", "agent", "env" or "agent/env", applied in that order"""
    exclude: list[str] = field(default_factory=list)
    """"agent/env" combinations not to run (an agent that cannot work on that env)"""
    pairs: dict[str, str] = field(default_factory=dict)
    """ours -> the SB3 agent it is compared with"""
    metric: str = "return"
    """return (final evaluation return) | dp_error (error to the dynamic-programming optimum)"""
    gamma: float = 0.99
    """dp_error: discount of the optimum when the agent's config has no gamma"""
    dp_tolerance: float = 0.01
    """dp_error: a run "reaches the threshold" at the first budget whose policy gap is below this"""
    runs_per_process: int = 1
    """runs done by one worker process before it is replaced: 1 measures each run's own peak memory;
    more saves the interpreter start-up (seconds) that dominates tiny tabular runs"""
    notes: list[str] = field(default_factory=list)
    """printed in the report (budget cuts and why)"""


@dataclass
class Options:
    """key=value options of the command line."""

    backend: str = "process"
    """process (a local pool) | ray"""
    workers: int = 0
    """parallel runs (0: every core)"""
    seeds: int = 0
    """run only the suite's first N seeds (0: all); the report is then marked as cut"""
    budget_scale: float = 1.0
    """multiply every budget (and eval interval) by this; below 1 the report is marked as cut"""
    evals: int = 0
    """evaluations per run, evenly spaced (0: every tuned eval_every steps)"""
    eval_episodes: int = 0
    """episodes per evaluation (0: the suite's); fewer marks the report as cut"""
    agents: str = ""
    """comma-separated subset of the suite's agents"""
    envs: str = ""
    """comma-separated subset of the suite's envs"""
    logdir: str = ""
    """where the runs go (default runs/bench/<suite>[-cut])"""
    out: str = ""
    """where the report goes (default benchmarks/results/<suite>[-cut])"""
    report_only: bool = False
    """write the report from the runs that exist, run nothing"""
    ray_address: str = ""
    """an existing Ray cluster to join (default: RAY_ADDRESS, else a local instance)"""

    @property
    def cut(self) -> bool:
        return self.seeds > 0 or self.budget_scale < 1.0 or self.eval_episodes > 0


@dataclass
class Job:
    agent: str
    env: str
    seed: int
    budget: int
    run_dir: str
    overrides: list[str]


BACKENDS = ("process", "ray")
METRICS = ("return", "dp_error")


def find_suite(name: str) -> Path:
    """A path to a YAML file, or a suite name under benchmarks/suites (here or beside the package)."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise UserError(f"suite file '{name}' does not exist")
        return Path(name)
    beside_package = Path(__file__).resolve().parents[1]
    roots = [Path.cwd() / "benchmarks" / "suites", beside_package / "benchmarks" / "suites"]
    for root in roots:
        if (root / f"{name}.yaml").is_file():
            return root / f"{name}.yaml"
    known = sorted({p.stem for r in roots if r.is_dir() for p in r.glob("*.yaml")})
    raise unknown("suite", name, known)


def load_suite(path: Path) -> Suite:
    try:
        suite = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Suite), OmegaConf.load(path)))
    except OmegaConfBaseException as err:
        first = str(err).splitlines()[0]
        raise UserError(f"suite {path}: {first}") from None
    assert isinstance(suite, Suite)
    if suite.metric not in METRICS:
        raise UserError(f"suite {path}: metric must be one of {', '.join(METRICS)}, got '{suite.metric}'")
    return suite


def parse_options(args: list[str]) -> Options:
    names = [f.name for f in fields(Options)]
    opts = Options()
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise UserError(f"'{arg}' is not an option: write key=value (options: {', '.join(names)})")
        if key not in names:
            raise UserError(f"unknown option '{key}'{did_you_mean(key, names)}; options: {', '.join(names)}")
        kind = type(getattr(opts, key))
        try:
            parsed: Any = value.lower() in ("true", "1", "yes") if kind is bool else kind(value)
        except ValueError:
            raise UserError(f"option {key} takes a {kind.__name__}, got '{value}'") from None
        setattr(opts, key, parsed)
    if opts.backend not in BACKENDS:
        raise unknown("backend", opts.backend, BACKENDS)
    if not 0 < opts.budget_scale <= 1:
        raise UserError(f"budget_scale must be in (0, 1], got {opts.budget_scale}")
    if min(opts.workers, opts.seeds, opts.evals, opts.eval_episodes) < 0:
        raise UserError("workers, seeds, evals and eval_episodes must be >= 0")
    return opts


def _subset(chosen: str, available: list[str], kind: str) -> list[str]:
    if not chosen:
        return available
    picked = [c for c in chosen.split(",") if c]
    for c in picked:
        if c not in available:
            raise unknown(f"{kind} in this suite", c, available)
    return picked


def suite_agents(suite: Suite) -> tuple[list[str], list[str]]:
    """(agents to run, optional agents that are not registered yet)."""
    from rlgen.agents import AGENTS

    for name in suite.agents:
        if name not in AGENTS:
            raise unknown("agent", name, AGENTS)
    absent = [a for a in suite.optional_agents if a not in AGENTS]
    return suite.agents + [a for a in suite.optional_agents if a in AGENTS], absent


def _lookup(table: dict[str, Any], agent: str, env: str) -> list[Any]:
    return [table[k] for k in ("all", agent, env, f"{agent}/{env}") if k in table]


def plan(suite: Suite, opts: Options, logdir: Path) -> list[Job]:
    """One Job per (env, agent, budget, seed); budgets are the tuned config's unless the suite sets them."""
    from rlgen.compose import load_config

    agents = _subset(opts.agents, suite_agents(suite)[0], "agent")
    envs = _subset(opts.envs, suite.envs, "env")
    seeds = suite.seeds[: opts.seeds] if opts.seeds else suite.seeds
    jobs = []
    for env in envs:
        for agent in agents:
            if f"{agent}/{env}" in suite.exclude:
                continue
            extra = [o for group in _lookup(suite.overrides, agent, env) for o in group]
            base = load_config([f"agent={agent}", f"env={env}", *extra])
            budget = next(iter(reversed(_lookup(suite.steps, agent, env))), base.total_steps)
            sweep = _lookup(suite.step_sweep, agent, env)
            budgets = sweep[-1] if sweep else [budget]
            for steps in sorted({max(1, int(b * opts.budget_scale)) for b in budgets}):
                every = int(base.eval_every * opts.budget_scale) if base.eval_every else 0
                every = max(1, steps // opts.evals) if opts.evals else every
                episodes = [f"eval_episodes={opts.eval_episodes}"] if opts.eval_episodes else []
                for seed in seeds:
                    name = f"seed{seed}" if not sweep else f"steps{steps}-seed{seed}"
                    run_dir = logdir / env / agent / name
                    overrides = [f"agent={agent}", f"env={env}", *extra, f"seed={seed}",
                                 f"total_steps={steps}", f"eval_every={every}", *episodes, "progress=false"]
                    jobs.append(Job(agent, env, seed, steps, str(run_dir), overrides))
    return jobs


def _status(run_dir: Path) -> dict[str, Any] | None:
    from rlgen.run import read_json

    path = run_dir / "summary.json"
    return read_json(path) if path.is_file() else None


def pending(jobs: list[Job]) -> list[Job]:
    """The jobs whose run directory does not hold a completed run of the same budget."""
    todo = []
    for job in jobs:
        summary = _status(Path(job.run_dir))
        if summary is None or summary["status"] != "completed":
            todo.append(job)
        elif summary["budget_steps"] != job.budget:
            raise UserError(f"{job.run_dir} holds a completed run of {summary['budget_steps']} steps, the "
                            f"suite asks for {job.budget}; pick another logdir=")
    return todo


def run_job(job: Job) -> dict[str, Any]:
    """Train one run in this (fresh) process and record its peak memory; never raises."""
    import resource

    import torch

    from rlgen.checkpoint import write_json_atomic
    from rlgen.compose import load_config
    from rlgen.trainer import load_run_config, train

    torch.set_num_threads(1)
    run_dir = Path(job.run_dir)
    t0 = time.perf_counter()
    try:
        if (run_dir / "checkpoint.json").is_file():
            cfg = load_run_config(run_dir)
            cfg = replace(cfg, resume=str(run_dir), total_steps=job.budget, progress=False)
        else:
            if run_dir.exists():
                shutil.rmtree(run_dir)  # started but never checkpointed: nothing worth keeping
            cfg = load_config([*job.overrides, f"run_dir={run_dir}"])
        summary, _ = train(cfg)
    except Exception as err:  # a failed run is reported, and the rest of the suite goes on
        return {"run_dir": job.run_dir, "status": "failed", "error": f"{type(err).__name__}: {err}"}
    # ru_maxrss is in KiB on Linux: the peak of this process, which ran this job (and, when the suite's
    # runs_per_process > 1, a few before it)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_json_atomic(run_dir / "bench.json", {"peak_rss_mb": peak_mb, "host": os.uname().nodename})
    return {"run_dir": job.run_dir, "status": summary["status"], "seconds": time.perf_counter() - t0}


def _log(done: int, total: int, result: dict[str, Any]) -> None:
    extra = result.get("error") or f"{result.get('seconds', 0):.0f} s"
    print(f"[{done}/{total}] {result['status']}: {result['run_dir']} ({extra})", flush=True)


def _worker(jobs: list[Job], results: Any) -> None:
    """A spawned process: its jobs one after another; it stops at the first interrupted run."""
    for job in jobs:
        result = run_job(job)
        results.put(result)
        if result["status"] == "interrupted":
            return


def run_local(jobs: list[Job], workers: int, per_process: int) -> list[dict[str, Any]]:
    """Up to `workers` spawned processes at once, each running `per_process` jobs (1: a fresh process
    per run, so peak memory is that run's). A hand-rolled pool: ProcessPoolExecutor's
    max_tasks_per_child can hang on Python 3.11 when a worker retires (CPython gh-115634)."""
    import multiprocessing as mp
    import queue

    ctx = mp.get_context("spawn")
    results_q = ctx.Queue()
    chunks = [jobs[i:i + per_process] for i in range(0, len(jobs), per_process)]
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


def run_ray(jobs: list[Job], address: str, per_process: int) -> list[dict[str, Any]]:
    """The same jobs as Ray tasks: one CPU each, a worker process replaced after `per_process` tasks."""
    try:
        import ray
    except ImportError:
        raise UserError("backend=ray needs Ray: pip install 'rlgen[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                 log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_calls=per_process)(run_job)
    waiting = [remote.remote(job) for job in jobs]
    results = []
    while waiting:
        ready, waiting = ray.wait(waiting, num_returns=1)
        results.append(ray.get(ready[0]))
        _log(len(results), len(jobs), results[-1])
    return results


def run_suite(suite: Suite, opts: Options, logdir: Path, out: Path, command: str) -> tuple[Path, int]:
    """Run what is missing, then write the report; returns (REPORT.md, number of failed runs)."""
    from rlgen.benchreport import write_report

    jobs = plan(suite, opts, logdir)
    todo = [] if opts.report_only else pending(jobs)
    done = "report only" if opts.report_only else f"{len(jobs) - len(todo)} already done"
    print(f"suite {suite.name}: {len(jobs)} runs, {done}, logdir {logdir}", flush=True)
    results: list[dict[str, Any]] = []
    if todo and opts.backend == "ray":
        results = run_ray(todo, opts.ray_address, suite.runs_per_process)
    elif todo:
        results = run_local(todo, opts.workers or os.cpu_count() or 1, suite.runs_per_process)
    failed = [r for r in results if r["status"] != "completed"]
    report = write_report(suite, jobs, out, logdir, absent=suite_agents(suite)[1], cut=opts.cut,
                          command=command, failures=failed)
    return report, len(failed)


@cli_main
def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0] + "\n\noptions:")
        for f in fields(Options):
            print(f"  {f.name}={f.default!r}")
        return 0 if argv else 2
    suite = load_suite(find_suite(argv[0]))
    opts = parse_options(argv[1:])
    tag = suite.name + ("-cut" if opts.cut else "")
    logdir = Path(opts.logdir or Path("runs") / "bench" / tag)
    out = Path(opts.out or Path("benchmarks") / "results" / tag)
    command = "python -m rlgen.bench " + " ".join(argv)
    report, n_failed = run_suite(suite, opts, logdir, out, command)
    print(f"report: {report}")
    if n_failed:
        print(f"{n_failed} run(s) failed or were interrupted; see the report. The same command again "
              "retries them (finished runs are kept).", file=sys.stderr)
    return 1 if n_failed else 0


if __name__ == "__main__":
    main()
