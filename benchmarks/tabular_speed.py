"""Speed of the vectorised tabular code, written to benchmarks/results/tabular_speed/RESULTS.md.

    python benchmarks/tabular_speed.py [--size 1000] [--loop-size 51] [--out benchmarks/results/tabular_speed]

1. Value iteration on a size x size Maze (size 1000: 10^6 states) until the sup-norm change of a
   sweep is below 1e-6, gamma = 0.99; wall time of building the model and of the sweeps.
2. The same value iteration on a smaller maze, vectorised vs a plain per-state Python loop over
   the model (same sweeps, same answer), and their ratio.
3. The 10-armed testbed: 2000 problems x 1000 steps for epsilon = 0, 0.01, 0.1 (S&B Figure 2.2),
   with its plot.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from rlgen.bandit_testbed import DEFAULT_AGENTS, plot, run_testbed
from rlgen.envs.gridworld import MazeEnv
from rlgen.mdp import TabularModel, value_iteration


def loop_vi(model: TabularModel, gamma: float, tol: float) -> tuple[np.ndarray, int]:
    """The textbook per-state loop (S&B Section 4.4 pseudocode, synchronous), for the ratio only."""
    ns, p, r, term = (model.next_states.tolist(), model.probs.tolist(), model.rewards.tolist(),
                      model.terminated.tolist())
    S, A, K = model.next_states.shape
    v = [0.0] * S
    sweeps = 0
    while True:
        new = [0.0] * S
        delta = 0.0
        for s in range(S):
            best = -float("inf")
            for a in range(A):
                q = 0.0
                for k in range(K):
                    q += p[s][a][k] * (r[s][a][k] + (0.0 if term[s][a][k] else gamma * v[ns[s][a][k]]))
                best = max(best, q)
            new[s] = best
            delta = max(delta, abs(best - v[s]))
        v = new
        sweeps += 1
        if delta < tol:
            return np.array(v), sweeps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--loop-size", type=int, default=51)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tabular_speed"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    gamma, tol = 0.99, 1e-6
    load = os.getloadavg()[0]  # the machine may be shared: read the times with this in mind
    lines = ["# Tabular speed", "", f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"load average {load:.1f} at the start; Python {platform.python_version()}, numpy {np.__version__}, "
             "one process, one thread.", "",
             "Command: `python benchmarks/tabular_speed.py`", ""]

    t0 = time.perf_counter()
    model = MazeEnv(size=args.size).model
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    v, sweeps = value_iteration(model, gamma, tol)
    solve = time.perf_counter() - t0
    start = int(np.flatnonzero(model.initial)[0])
    free = int((MazeEnv(size=args.size).grid != "#").sum())
    print(f"maze {args.size}x{args.size}: {model.n_states} states, build {build:.2f}s, "
          f"value iteration {sweeps} sweeps in {solve:.2f}s, V(start) = {v[start]:.4f}")
    lines += ["## Value iteration on a maze", "",
              f"- Maze {args.size} x {args.size} = {model.n_states:,} states, 4 actions (gamma {gamma}, "
              f"stop when the sup-norm change of a sweep < {tol:g}); {free:,} of the states are free cells, "
              "the rest walls (absorbing states, value 0, which the vectorised sweep skips)",
              f"- model build: {build:.2f} s; value iteration: **{solve:.2f} s** for {sweeps} sweeps "
              f"({1000 * solve / sweeps:.1f} ms per sweep); V(start) = {v[start]:.4f}", ""]

    small = MazeEnv(size=args.loop_size).model
    t0 = time.perf_counter()
    v_vec, n_vec = value_iteration(small, gamma, tol)
    t_vec = time.perf_counter() - t0
    t0 = time.perf_counter()
    v_loop, n_loop = loop_vi(small, gamma, tol)
    t_loop = time.perf_counter() - t0
    assert n_vec == n_loop and np.allclose(v_vec, v_loop, atol=1e-9), "loop and vectorised disagree"
    print(f"maze {args.loop_size}x{args.loop_size}: vectorised {t_vec:.3f}s, per-state loop {t_loop:.2f}s, "
          f"ratio {t_loop / t_vec:.0f}x ({n_vec} sweeps each)")
    lines += [f"- Maze {args.loop_size} x {args.loop_size} = {small.n_states:,} states, {n_vec} sweeps: "
              f"vectorised {t_vec:.3f} s, plain per-state Python loop {t_loop:.2f} s: "
              f"**{t_loop / t_vec:.0f}x faster** (same values to 1e-9)", ""]

    curves = [run_testbed(spec, 2000, 1000) for spec in DEFAULT_AGENTS]
    total = sum(c.seconds for c in curves)
    plot(curves, args.out / "testbed.png", "10-armed testbed, 2000 problems (S&B Figure 2.2)")
    lines += ["## 10-armed testbed", "", f"2000 problems x 1000 steps per agent, all problems at once: "
              f"**{total:.2f} s** for the three agents.", "",
              "| agent | seconds | mean reward (all steps) | reward, last 100 steps | % optimal, last 100 steps |",
              "|---|---|---|---|---|"]
    for c in curves:
        print(f"{c.label}: {c.seconds:.2f}s, reward {c.reward.mean():.3f}, "
              f"optimal {100 * c.optimal[-100:].mean():.1f}%")
        lines.append(f"| {c.label} | {c.seconds:.2f} | {c.reward.mean():.3f} | {c.reward[-100:].mean():.3f} | "
                     f"{100 * c.optimal[-100:].mean():.1f} |")
    lines += ["", "![testbed](testbed.png)", ""]
    (args.out / "RESULTS.md").write_text("\n".join(lines))
    print(f"written {args.out / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
