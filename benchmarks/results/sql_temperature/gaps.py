"""Action gaps of trained soft Q-networks, and the entropy of the Boltzmann policy they give at a few
temperatures: why a temperature must be chosen relative to the gaps, not to the scale of Q.

    python benchmarks/results/sql_temperature/gaps.py RUN_DIR [RUN_DIR ...]

States: those the run's greedy policy visits in 5 episodes, and 5,000 drawn uniformly from the
observation box (when it is bounded). Gap: the largest Q(s, .) minus the second largest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rlgen.envs import make_env
from rlgen.trainer import load_trained

TEMPERATURES = (0.05, 0.005, 0.001)


def boltzmann_entropy(q: np.ndarray, ent_coef: float) -> float:
    """Mean entropy of softmax(Q / ent_coef) over the rows of q, in nats (float64: tiny temperatures)."""
    z = q.astype(np.float64) / ent_coef
    z -= z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-(np.exp(log_p) * log_p).sum(axis=1).mean())


def visited_states(agent, env, episodes: int = 5) -> np.ndarray:
    states = []
    for k in range(episodes):
        obs, _ = env.reset(seed=100 + k)
        done = False
        while not done:
            states.append(obs)
            obs, _, terminated, truncated, _ = env.step(int(agent.act(obs[None])[0]))
            done = terminated or truncated
    return np.asarray(states, dtype=np.float32)


def main(runs: list[str]) -> None:
    for run in runs:
        cfg, agent = load_trained(Path(run))
        env = make_env(cfg.env)
        low, high = env.observation_space.low, env.observation_space.high
        sets = {"visited": visited_states(agent, env)}
        if np.all(np.isfinite(low) & np.isfinite(high)):
            sets["box"] = np.random.default_rng(0).uniform(low, high, size=(5000, len(low))).astype(np.float32)
        for name, states in sets.items():
            q = np.sort(agent.q_values(states), axis=1)
            gap = q[:, -1] - q[:, -2]
            entropies = ", ".join(f"H at {t:g}: {boltzmann_entropy(q, t):.3f}" for t in TEMPERATURES)
            print(f"{run} | {name} ({len(states)} states) | mean Q {q.mean():.1f} | gap median "
                  f"{np.median(gap):.4f} [p25 {np.percentile(gap, 25):.4f}, p75 {np.percentile(gap, 75):.4f}] "
                  f"| {entropies}")
        env.close()


if __name__ == "__main__":
    main(sys.argv[1:])
