"""Register rlgen's own envs with Gymnasium as `rlgen/<Name>-v0` (importing this module does it).

Time limits live here, not in the envs: a greedy policy that walks into a wall forever still ends.
"""

from __future__ import annotations

import gymnasium as gym

GRID = "rlgen.envs.gridworld:GridWorldEnv"
WINDY = {
    # Sutton & Barto Example 6.5: 7 x 10, wind strength per column, -1 per step until the goal
    "layout": ["..........", "..........", "..........", "S......G..", "..........", "..........",
               ".........."],
    "wind": [0, 0, 0, 1, 1, 1, 2, 2, 1, 0],
}

MASKED_ROOMS = [".....#...", ".....#.#.", "..S..#.#.", ".....#.#G", ".......#.", "####.###.", "........."]

ENVS: dict[str, tuple[str, dict, int | None]] = {
    # Example 4.1: terminal corners, -1 on every transition; every other cell is a start
    "GridWorld4x4": (GRID, {"layout": ["GSSS", "SSSS", "SSSS", "SSSG"]}, 200),
    # Example 6.6: -100 for stepping into the cliff, which sends the agent back to the start
    "CliffWalking": (GRID, {"layout": ["............", "............", "............", "SCCCCCCCCCCG"],
                            "rewards": {"C": -100.0}}, 500),
    "WindyGridworld": (GRID, WINDY, 1000),
    "WindyGridworldKings": (GRID, {**WINDY, "moves": 8}, 1000),  # Exercise 6.9
    "WindyGridworldStochastic": (GRID, {**WINDY, "moves": 8, "stochastic_wind": True}, 1000),  # Ex. 6.10
    # Example 6.2: start in the middle, +1 only on the right end; true values 1/6 ... 5/6
    "RandomWalk5": (GRID, {"layout": ["T..S..G"], "step_reward": 0.0, "rewards": {"G": 1.0}, "moves": 2}, 1000),
    # Example 7.1 / Figure 7.2: 19 states, -1 on the left end, +1 on the right
    "RandomWalk19": (GRID, {"layout": ["T" + "." * 9 + "S" + "." * 9 + "G"], "step_reward": 0.0,
                            "rewards": {"G": 1.0, "T": -1.0}, "moves": 2}, 1000),
    "Maze": ("rlgen.envs.gridworld:MazeEnv", {}, 10_000),
    # moves into walls and off the grid are masked (info["action_mask"], action_masks()), not bumped into;
    # the start's neighbourhood is open, so the first two steps of any policy are valid (check_env samples them)
    "MaskedGridWorld": ("rlgen.envs.gridworld:MaskedGridWorldEnv", {"layout": MASKED_ROOMS}, 100),
    "Bandit10": ("rlgen.envs.bandits:BanditEnv", {"k": 10}, 1000),
    "BanditBernoulli": ("rlgen.envs.bandits:BernoulliBanditEnv", {"k": 10}, 1000),
    "BanditNonstationary": ("rlgen.envs.bandits:NonstationaryBanditEnv", {"k": 10}, 1000),
    # imitation tasks with scripted experts (imitation_tasks.py); Particle's 50 steps are Florence et al.'s
    "Particle": ("rlgen.envs.imitation_tasks:ParticleEnv", {}, 50),
    "Avoid": ("rlgen.envs.imitation_tasks:AvoidEnv", {}, 100),
    "Step": ("rlgen.envs.imitation_tasks:StepEnv", {}, None),
}


def register_all() -> None:
    for name, (entry, kwargs, limit) in ENVS.items():
        env_id = f"rlgen/{name}-v0"
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=entry, kwargs=kwargs, max_episode_steps=limit)


register_all()
