"""Wall-clock speed of PPO and DQN on CartPole-v1: SB3, rlgen one seed per process, rlgen seed groups.

Variants, all with the tuned CartPole configs (RL Zoo's; agent=sb3_* uses the same values), one torch
thread, eval_every=0 (one final 10-episode evaluation, the same for all) and progress=false:

- sb3:     agent=sb3_ppo / sb3_dqn, one process per seed, seeds one after another;
- single:  agent=ppo / dqn, one process per seed, seeds one after another;
- groupS:  agent=ppo / dqn seeds=S: seeds 0..S-1 in one process (PPO: one stacked update for all;
           DQN: each seed's own updates, in lockstep).

Each process is timed from outside (startup included); its summary.json wall_seconds and the child's
CPU seconds are kept too. The variants' jobs are spread over the pair's timeline, so that all see the
same machine load: on a shared machine only ratios measured side by side mean anything.

Also: PPO's update arithmetic against this core's single-thread matrix-product rate ("the limit"),
the cost of the tuned periodic evaluation (eval_every=5000 against 0, alternating), and whether the
S=16 group learns as the 16 single runs of the same seeds do (solve rate and IQM, 95% bootstrap).

Every finished job is stored in results.json at once and a re-run skips the jobs stored there (--redo
runs the selected ones again), so an interrupted benchmark is continued by starting it again.

    python benchmarks/speed.py [--pairs ppo dqn] [--variants sb3 single group] [--seeds ...] [--groups ...]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import rlgen
from rlgen.benchstats import bootstrap_ci, iqm
from rlgen.compose import load_config

PAIRS = {"ppo": ("ppo", "sb3_ppo"), "dqn": ("dqn", "sb3_dqn")}
VARIANTS = ("sb3", "single", "group")
COMMON = ["env=CartPole", "progress=false", "torch_threads=1"]
SOLVED = 475.0  # CartPole-v1's reward_threshold
TARGETS = {"ppo": {"single": 3.0, "sb3": 6.0}, "dqn": {"single": 2.0}}  # group of 8 vs each, in seed-steps/s
EVAL_TARGET = 1.1


@dataclass(frozen=True)
class Job:
    """One timed process: `agent` on `seeds` (more than one: a group) with `overrides`."""

    key: str
    agent: str
    seeds: tuple[int, ...]
    overrides: tuple[str, ...] = ("eval_every=0",)


def speed_lanes(pair: str, variants: list[str], seeds: list[int], sb3_seeds: list[int],
                groups: list[int]) -> dict[str, list[Job]]:
    ours, theirs = PAIRS[pair]
    lanes = {"sb3": [Job(f"{pair}/sb3/{s}", theirs, (s,)) for s in sb3_seeds],
             "single": [Job(f"{pair}/single/{s}", ours, (s,)) for s in seeds],
             "group": [Job(f"{pair}/group{n}", ours, tuple(range(n))) for n in groups]}
    return {v: lanes[v] for v in variants}


def spread(lanes: dict[str, list[Job]]) -> list[Job]:
    """All lanes' jobs in one order that spreads each lane evenly over the whole run: a job is placed
    at the middle of its share of its lane's seeds, so every lane sees the load of the whole run."""
    placed = []
    for jobs in lanes.values():
        total, before = sum(len(j.seeds) for j in jobs), 0
        for j in jobs:
            placed.append(((before + len(j.seeds) / 2) / total, j))
            before += len(j.seeds)
    return [j for _, j in sorted(placed, key=lambda p: p[0])]


def eval_jobs(reps: int) -> list[Job]:
    """PPO's tuned command as it is (eval_every 5000) and with eval_every=0, alternating who goes first."""
    jobs = []
    for r in range(reps):
        two = [Job(f"eval/tuned/{r}", "ppo", (r,), ()), Job(f"eval/none/{r}", "ppo", (r,))]
        jobs += two if r % 2 == 0 else two[::-1]
    return jobs


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_job(job: Job, tmp: Path) -> dict:
    """Runs `job` in a fresh process: its time from outside, its results from its run directories."""
    base = tmp / job.key.replace("/", "-")
    if len(job.seeds) > 1:  # a group puts seed k's run in <run_dir>/seed<k>
        where = [f"seeds={len(job.seeds)}", f"run_dir={base}"]
    else:
        where = [f"run_dir={base}/seed{job.seeds[0]}"]
    cmd = [sys.executable, "-m", "rlgen.train", f"agent={job.agent}", f"seed={job.seeds[0]}", *COMMON, *where,
           *job.overrides]
    load, cpu0, t0 = os.getloadavg()[0], _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed with status {done.returncode}: {done.stderr.strip()[-2000:]}")
    summaries = [json.loads((base / f"seed{s}" / "summary.json").read_text()) for s in job.seeds]
    return {"agent": job.agent, "seeds": list(job.seeds), "process_seconds": seconds, "cpu_seconds": cpu,
            "summary_wall_seconds": summaries[0]["wall_seconds"], "steps": [s["total_steps"] for s in summaries],
            "returns": [s["eval_mean_return"] for s in summaries], "loadavg_before": load,
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - seconds))}


def matmul_rate(n: int, k: int, m: int, trials: int = 5) -> float:
    """Best single-thread float32 rate of torch.mm of (n, k) by (k, m), in FLOP/s (2nkm per product)."""
    torch.set_num_threads(1)
    a, b, out = torch.randn(n, k), torch.randn(k, m), torch.empty(n, m)
    flop = 2 * n * k * m
    reps = max(3, round(2e10 / flop))
    torch.mm(a, b, out=out)
    best = math.inf
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return flop * reps / best


def ppo_update_flops() -> dict:
    """FLOPs of all minibatch steps of one tuned PPO CartPole run, from its config: per Linear layer
    2 * rows * in * out forward and twice that backward (input and weight gradients, one product of that
    size each); biases, activations, the loss and Adam are elementwise and left out."""
    cfg = load_config(["agent=ppo", "env=CartPole"])
    a = cfg.agent
    env = gym.make(cfg.env.id)
    obs, actions = env.observation_space.shape[0], int(env.action_space.n)
    rollouts = math.ceil(cfg.total_steps / a.rollout_size)  # the loop collects whole rollouts
    minibatches = math.ceil(a.rollout_size / a.batch_size)
    rows = min(a.batch_size, a.rollout_size)
    macs = sum(i * o for head in (actions, 1)  # policy and value network, each [obs, *net_arch, head]
               for i, o in zip([obs, *a.net_arch], [*a.net_arch, head], strict=True))
    forward = 2 * rows * macs
    steps = rollouts * a.n_epochs * minibatches
    return {"rollouts": rollouts, "n_epochs": a.n_epochs, "minibatches": minibatches, "rows": rows,
            "layers": f"{obs}-{'-'.join(map(str, a.net_arch))}-{{{actions},1}}", "steps": steps,
            "forward_flop": forward, "step_flop": 3 * forward, "total_flop": steps * 3 * forward}


# -- analysis: results.json's jobs -> the numbers of the report ------------------------------------


def variant_stats(records: list[dict]) -> dict:
    """Per seed and per second over a variant's jobs: a group's times are shared by its S seeds."""
    n = sum(len(r["seeds"]) for r in records)
    seconds, cpu = sum(r["process_seconds"] for r in records), sum(r["cpu_seconds"] for r in records)
    steps = sum(sum(r["steps"]) for r in records)
    return {"seeds": [s for r in records for s in r["seeds"]], "returns": [x for r in records for x in r["returns"]],
            "steps_per_seed": steps / n, "process_s_per_seed": seconds / n, "cpu_s_per_seed": cpu / n,
            "summary_s_per_seed": sum(r["summary_wall_seconds"] for r in records) / n,
            "seed_steps_per_s": steps / seconds, "cpu_seed_steps_per_s": steps / cpu,
            "loadavg": [min(r["loadavg_before"] for r in records), max(r["loadavg_before"] for r in records)]}


def _interval(scores: np.ndarray, statistic) -> dict:
    lo, hi = bootstrap_ci(scores, statistic)
    return {"value": float(statistic(scores)), "ci": [lo, hi]}


def equivalence(singles: dict, group: dict) -> dict:
    """Solve rate and IQM of the final return, 95% stratified-bootstrap intervals (rlgen.benchstats),
    for the single runs and the group of the same seeds; overlap: the two intervals share a point."""
    by_seed = dict(zip(singles["seeds"], singles["returns"], strict=True))
    out = {}
    for name, returns in (("single", [by_seed[s] for s in group["seeds"]]), ("group", group["returns"])):
        r = np.asarray(returns, dtype=float)
        out[name] = {"n": len(r), "solve_rate": _interval((r >= SOLVED).astype(float), np.mean),
                     "iqm": _interval(r, iqm)}
    for metric in ("solve_rate", "iqm"):
        (a, b), (c, d) = out["single"][metric]["ci"], out["group"][metric]["ci"]
        out[f"{metric}_overlap"] = a <= d and c <= b
    return out


def analyse_pair(pair: str, jobs: dict[str, dict], limit: dict | None) -> dict | None:
    names = {key.split("/")[1] for key in jobs if key.startswith(f"{pair}/")}
    groups = sorted((n for n in names if n.startswith("group")), key=lambda n: int(n[5:]))
    variants = {n: variant_stats([r for k, r in jobs.items() if k.split("/")[:2] == [pair, n]])
                for n in ["sb3", "single", *groups] if n in names}
    if not variants:
        return None
    for name in groups:
        g = variants[name]
        for base in ("single", "sb3"):
            if base in variants:
                g[f"vs_{base}"] = g["seed_steps_per_s"] / variants[base]["seed_steps_per_s"]
                g[f"cpu_vs_{base}"] = g["cpu_seed_steps_per_s"] / variants[base]["cpu_seed_steps_per_s"]
    if pair == "ppo" and limit is not None:
        for name in ("single", *groups):
            if name in variants:
                v = variants[name]
                v["limit_percent"] = {rate: 100 * limit["flops"]["total_flop"] / r / v["process_s_per_seed"]
                                      for rate, r in limit["rates"].items()}
    out = {"variants": variants}
    if groups and "single" in variants and set(variants[groups[-1]]["seeds"]) <= set(variants["single"]["seeds"]):
        out["equivalence"] = {"group_size": int(groups[-1][5:])} | equivalence(variants["single"], variants[groups[-1]])
    return out


def analyse_eval(jobs: dict[str, dict]) -> dict | None:
    runs = {arm: [r for k, r in sorted(jobs.items()) if k.startswith(f"eval/{arm}/")] for arm in ("tuned", "none")}
    if not runs["tuned"] or not runs["none"]:
        return None
    out = {}
    for measure in ("process_seconds", "cpu_seconds"):
        t, n = ([r[measure] for r in runs[arm]] for arm in ("tuned", "none"))
        out[measure] = {"tuned": t, "none": n, "ratio_of_medians": float(np.median(t) / np.median(n))}
    return out


def analyse(results: dict) -> dict:
    jobs, limit = results["jobs"], results.get("limit")
    return {"pairs": {p: a for p in PAIRS if (a := analyse_pair(p, jobs, limit)) is not None},
            "eval_overhead": analyse_eval(jobs)}


# -- the report ------------------------------------------------------------------------------------

NOTES = "<!-- notes below this line are kept when benchmarks/speed.py rewrites this file -->"


def _label(pair: str, name: str) -> str:
    return {"sb3": f"SB3 ({PAIRS[pair][1]})", "single": "rlgen single"}.get(name, f"rlgen seeds={name[5:]}")


def _ratio(v: dict, base: str) -> str:
    return f"**{v[f'vs_{base}']:.2f}x** ({v[f'cpu_vs_{base}']:.2f}x)" if f"vs_{base}" in v else "-"


def speed_table(pair: str, a: dict) -> list[str]:
    variants = a["variants"]
    lines = [f"## {pair.upper()}", "",
             "| variant | seeds | steps / seed | process s / seed | summary wall s / seed | CPU s / seed "
             "| seed-steps/s | vs single (by CPU) | vs SB3 (by CPU) | load avg |", "|---" * 10 + "|"]
    for name, v in variants.items():
        lines.append(f"| {_label(pair, name)} | {len(v['seeds'])} | {v['steps_per_seed']:.0f} "
                     f"| {v['process_s_per_seed']:.2f} "
                     f"| {v['summary_s_per_seed']:.2f} | {v['cpu_s_per_seed']:.2f} | {v['seed_steps_per_s']:,.0f} "
                     f"| {_ratio(v, 'single')} | {_ratio(v, 'sb3')} | {v['loadavg'][0]:.1f}-{v['loadavg'][1]:.1f} |")
    lines += ["", "| variant | final eval return per seed (seed order) | mean | solved (>= 475) |", "|---|---|---|---|"]
    for name, v in variants.items():
        r = [x for _, x in sorted(zip(v["seeds"], v["returns"], strict=True))]
        lines.append(f"| {_label(pair, name)} | {', '.join(f'{x:.0f}' for x in r)} | {np.mean(r):.1f} "
                     f"| {sum(x >= SOLVED for x in r)}/{len(r)} |")
    return [*lines, ""]


def limit_section(limit: dict, ppo: dict) -> list[str]:
    f, rates = limit["flops"], limit["rates"]
    peak, small = rates["mm_1024x1024x1024"], rates["mm_256x64x64"]
    load = f", load average {limit['loadavg_before']:.1f} before" if "loadavg_before" in limit else ""
    lines = ["## The limit (PPO's update arithmetic)", "",
             f"Update FLOPs of one run, from the config: {f['rollouts']} rollouts x {f['n_epochs']} epochs x "
             f"{f['minibatches']} minibatch = {f['steps']} steps, each forward and backward through the "
             f"{f['layers']} MLPs on {f['rows']} rows: forward 2 x rows x in x out per Linear = "
             f"{f['forward_flop'] / 1e6:.2f} MFLOP, backward twice that (input and weight gradients): "
             f"{f['step_flop'] / 1e6:.2f} MFLOP a step, **{f['total_flop'] / 1e9:.1f} GFLOP a run** (biases, "
             "activations, loss and Adam left out: elementwise).", "",
             f"This core's single-thread float32 torch.mm: {peak / 1e9:.1f} GFLOP/s for 1024x1024 @ 1024x1024, "
             f"{small / 1e9:.1f} GFLOP/s for 256x64 @ 64x64 (best of 5{load}). The limit per seed: "
             f"{f['total_flop'] / peak:.2f} s at the large product's rate, {f['total_flop'] / small:.2f} s at "
             "the small one's.", "",
             "| variant | process s / seed | % of the limit (1024 rate) | % of the limit (256x64 rate) |",
             "|---|---|---|---|"]
    for name, v in ppo["variants"].items():
        if "limit_percent" in v:
            p = v["limit_percent"]
            lines.append(f"| {name} | {v['process_s_per_seed']:.2f} | {p['mm_1024x1024x1024']:.1f}% "
                         f"| {p['mm_256x64x64']:.1f}% |")
    return [*lines, ""]


def eval_section(e: dict) -> list[str]:
    wall, cpu = e["process_seconds"], e["cpu_seconds"]
    lines = ["## Evaluation overhead (PPO, tuned eval_every=5000 and 10 episodes, against eval_every=0)", "",
             "Alternating, seed k for both of the k-th pair.", "",
             "| seed | tuned s (CPU s) | eval_every=0 s (CPU s) |", "|---|---|---|"]
    lines += [f"| {i} | {a:.2f} ({c:.2f}) | {b:.2f} ({d:.2f}) |" for i, (a, b, c, d)
              in enumerate(zip(wall["tuned"], wall["none"], cpu["tuned"], cpu["none"], strict=True))]
    verdict = "meets" if wall["ratio_of_medians"] <= EVAL_TARGET else "misses"
    return [*lines, "", f"Medians {np.median(wall['tuned']):.2f} s and {np.median(wall['none']):.2f} s: "
            f"**{wall['ratio_of_medians']:.3f}x** ({verdict} the target of at most {EVAL_TARGET}x); by CPU time "
            f"{cpu['ratio_of_medians']:.3f}x.", ""]


def _ci(x: dict, fmt: str) -> str:
    return f"{x['value']:{fmt}} [{x['ci'][0]:{fmt}}, {x['ci'][1]:{fmt}}]"


def equivalence_section(pairs: dict) -> list[str]:
    lines = ["## Batched seeds learn as single runs do", "",
             "Final eval return of the same seeds trained alone and in one group; 95% stratified-bootstrap "
             "intervals (rlgen.benchstats).", "",
             "| pair | runs | n | solve rate (>= 475) | IQM of the final return | intervals overlap (solve, IQM) |",
             "|---|---|---|---|---|---|"]
    for pair, a in pairs.items():
        e = a.get("equivalence")
        if e is None:
            continue
        for name in ("single", "group"):
            x = e[name]
            overlap = f"{e['solve_rate_overlap']}, {e['iqm_overlap']}" if name == "group" else ""
            runs = "single runs" if name == "single" else f"seeds={e['group_size']}"
            lines.append(f"| {pair} | {runs} | {x['n']} "
                         f"| {_ci(x['solve_rate'], '.2f')} | {_ci(x['iqm'], '.1f')} | {overlap} |")
    return [*lines, ""]


def targets_section(summary: dict) -> list[str]:
    lines = ["## Targets (group of 8, seed-steps/s by process wall time)", ""]
    for pair, bases in TARGETS.items():
        g = summary["pairs"].get(pair, {}).get("variants", {}).get("group8", {})
        for base, target in bases.items():
            if f"vs_{base}" in g:
                got = g[f"vs_{base}"]
                lines.append(f"- {pair.upper()} seeds=8 vs {base}: {got:.2f}x, target >= {target}x: "
                             f"{'met' if got >= target else 'not met'}")
    e = summary["eval_overhead"] and summary["eval_overhead"]["process_seconds"]
    if e:
        lines.append(f"- evaluation overhead: {e['ratio_of_medians']:.3f}x, target <= {EVAL_TARGET}x: "
                     f"{'met' if e['ratio_of_medians'] <= EVAL_TARGET else 'not met'}")
    return [*lines, ""]


def report(results: dict, notes: str) -> str:
    s, m = results["summary"], results["machine"]
    starts = sorted(r["started"] for r in results["jobs"].values()) or ["-"]
    loads = [r["loadavg_before"] for r in results["jobs"].values()] or [os.getloadavg()[0]]
    commits = sorted({r["commit"] for r in results["jobs"].values() if "commit" in r})
    measured = f"; rlgen at {', '.join(commits)}" if commits else ""
    lines = ["# Speed of seed groups: PPO and DQN on CartPole-v1", "",
             "Tuned CartPole configs (RL Zoo's; SB3 twins with the same values), one torch thread, eval_every=0 "
             "(one final 10-episode evaluation), progress=false. Times are whole processes, startup included; "
             "a group's time is shared by its seeds. Ratios are of seed-steps/s by process wall time, in "
             "brackets by the processes' CPU time (less sensitive to other load). Variants ran interleaved.", "",
             *[f"Command: `{c}`" for c in dict.fromkeys(results["commands"])], "",
             f"Machine: {m['cpus']} cores, {m['processor']}; Python {m['python']}, torch {m['torch']}; shared "
             f"with other jobs: 1-minute load average {min(loads):.1f}-{max(loads):.1f} before the jobs "
             f"(median {np.median(loads):.1f}); jobs from {starts[0]} to {starts[-1]}{measured}.", ""]
    for pair, a in s["pairs"].items():
        lines += speed_table(pair, a)
    if results.get("limit") and "ppo" in s["pairs"]:
        lines += limit_section(results["limit"], s["pairs"]["ppo"])
    if s["eval_overhead"] is not None:
        lines += eval_section(s["eval_overhead"])
    lines += equivalence_section(s["pairs"]) + targets_section(s)
    return "\n".join([*lines, NOTES, notes])


# -- running ---------------------------------------------------------------------------------------


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo")
    models = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines()
              if ln.startswith("model name")] if cpuinfo.exists() else []
    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "processor": models[0] if models else platform.processor() or platform.machine()}


def code_version() -> str:
    """The commit of the rlgen measured (its subprocesses import the same), marked when rlgen/ differs from it."""
    root = Path(rlgen.__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    return (head + ("+changes" if git("status", "--porcelain", "--", "rlgen") else "")) if head else "unknown"


def save(results: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)  # atomic: an interrupted write leaves the last complete file


def run_jobs(jobs: list[Job], results: dict, path: Path, tmp: Path, redo: bool) -> None:
    commit = code_version()
    for job in jobs:
        if job.key in results["jobs"] and not redo:
            continue
        record = run_job(job, tmp) | {"commit": commit}
        results["jobs"][job.key] = record
        save(results, path)
        print(f"{job.key:16s} {record['process_seconds']:7.1f} s (load {record['loadavg_before']:.1f}), "
              f"returns {', '.join(f'{x:.0f}' for x in record['returns'])}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(16)), help="single runs' seeds")
    parser.add_argument("--sb3-seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16], help="group sizes (seeds 0..S-1)")
    parser.add_argument("--sections", nargs="+", default=["limit", "eval", "speed"], choices=["limit", "eval", "speed"])
    parser.add_argument("--eval-reps", type=int, default=3)
    parser.add_argument("--redo", action="store_true", help="run selected jobs even when results.json has them")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed")
    args = parser.parse_args()
    if any(n < 2 for n in args.groups):
        parser.error("--groups: a group has at least 2 seeds")
    return args


def main() -> None:
    args = parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if "jobs" not in results:  # none yet, or the earlier one-seed-per-process format
        results = {"jobs": {}, "commands": []}
    if not args.report_only:
        results["commands"].append(" ".join(["python benchmarks/speed.py", *sys.argv[1:]]))
        if "limit" in args.sections and (args.redo or "limit" not in results):
            load = os.getloadavg()[0]  # other load lowers the rates measured, so the limit is read beside it
            rates = {"mm_1024x1024x1024": matmul_rate(1024, 1024, 1024), "mm_256x64x64": matmul_rate(256, 64, 64)}
            results["limit"] = {"flops": ppo_update_flops(), "rates": rates, "loadavg_before": load}
            save(results, path)
        with tempfile.TemporaryDirectory() as tmp:
            if "eval" in args.sections:
                run_jobs(eval_jobs(args.eval_reps), results, path, Path(tmp), args.redo)
            if "speed" in args.sections:
                for pair in args.pairs:
                    lanes = speed_lanes(pair, args.variants, args.seeds, args.sb3_seeds, args.groups)
                    run_jobs(spread(lanes), results, path, Path(tmp), args.redo)
    results["machine"] = machine()
    results["summary"] = analyse(results)
    save(results, path)
    md = args.out / "RESULTS.md"
    old = md.read_text() if md.exists() else ""
    md.write_text(report(results, old.split(NOTES, 1)[1].lstrip("\n") if NOTES in old else "\n"))
    print(md.read_text())


if __name__ == "__main__":
    main()
