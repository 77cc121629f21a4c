"""A new user's mistakes, tried as a user would: each command runs in a fresh process, in a folder
that holds only a file and a run in the way (IN_THE_WAY), and must end with exit status 2 and one
line on stderr (no traceback), leaving nothing else behind and no file of the repository changed.

    python benchmarks/new_user.py [--out benchmarks/results/new_user]

The commands are mistakes of every kind users make on a first day: typos in names and settings,
values of the wrong type or out of range, files that are missing, damaged or in the way, agents on
envs they cannot handle, forms of the grammar rlgen does not take.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T, E, B, G = "rlgen.train", "rlgen.evaluate", "rlgen.bench", "rlgen.bandit_testbed"
MISTAKES: list[tuple[str, list[str]]] = [
    # names
    (T, ["agent=ppp"]), (T, ["agent=PPO"]), (T, ["env=Cartpole"]), (T, ["env=CartPole-v9"]),
    (T, ["env=mymodule:MyEnv-v0"]), (T, ["env=nosuchmodule:Foo-v0"]), (T, ["agent=ppo", "agent.learnin_rate=1e-3"]),
    (T, ["sed=3"]), (T, ["total_step=100"]), (T, ["agent=dqn", "agent.net_arc=[64]"]), (T, ["env.sizee=3"]),
    (E, ["rn=x"]), (E, ["run=x", "checkpoint=best_model"]), (E, ["run=x", "checkpoint=final"]), (B, ["smok"]),
    (B, ["smoke", "worker=2"]), (G, ["problem=10"]), (G, ["agents=ucbb"]),
    # types and grammar
    (T, ["seed=abc"]), (T, ["total_steps=1.5"]), (T, ["progress=ture"]), (T, ["progress=yes"]),
    (T, ["agent=ppo", "agent.n_steps=many"]), (T, ["agent=ppo", "agent.net_arch=64"]), (T, ["ppo"]),
    (T, ["--agent=ppo"]), (T, ["agent=ppo,dqn"]), (T, ["-m", "seed=range(0,3,0)"]), (T, ["hydra.run.dir=x"]),
    (T, ["--cfg", "hydra"]), (E, ["run=x", "episodes=abc"]), (E, ["run=x", "video=ture"]),
    (B, ["smoke", "report_only=ture"]), (B, ["smoke", "seeds=two"]), (B, ["seeds=2"]), (G, ["--problems", "10"]),
    (G, ["problems=ten"]),
    # values out of range
    (T, ["seed=-1"]), (T, ["total_steps=0"]), (T, ["total_steps=-5"]), (T, ["eval_episodes=0"]),
    (T, ["eval_every=-1"]), (T, ["torch_threads=0"]), (T, ["agent=ppo", "agent.gamma=1.5"]),
    (T, ["agent=dqn", "agent.gamma=-0.1"]), (T, ["agent=ppo", "agent.learning_rate=-3e-4"]),
    (T, ["agent=ppo", "agent.learning_rate=1e300"]), (T, ["agent=ppo", "agent.clip_range=0"]),
    (T, ["agent=ppo", "agent.n_envs=0"]), (T, ["agent=dqn", "agent.exploration_fraction=2"]),
    (T, ["agent=q_learning", "env=CliffWalking", "agent.epsilon=1.5"]),
    (T, ["agent=q_learning", "env=CliffWalking", "agent.alpha=0"]),
    (T, ["agent=rlhf", "env=TextPreference", "agent.n_embd=65"]), (T, ["agent=ppo", "agent.net_arch=[0]"]),
    (T, ["agent=sql", "env=CartPole", "agent.ent_coef=0"]), (T, ["agent=ppo", "agent.activation=sigmoidd"]),
    (T, ["agent=value_iteration", "env=GridWorld4x4", "env.rewards={X:1}"]),
    (T, ["agent=value_iteration", "env=Maze", "env.size=-3"]), (E, ["run=x", "episodes=0"]),
    (B, ["smoke", "budget_scale=2"]), (B, ["smoke", "workers=-1"]), (B, ["smoke", "backend=slurm"]),
    (G, ["problems=0"]), (G, ["steps=-1"]), (G, ["kind=gauss"]),
    # agents on envs they cannot handle
    (T, ["agent=dqn", "env=Pendulum"]), (T, ["agent=sb3_dqn", "env=Pendulum"]),
    (T, ["agent=value_iteration", "env=Blackjack-v1"]), (T, ["agent=value_iteration", "env=CartPole"]),
    (T, ["agent=q_learning", "env=CartPole"]), (T, ["agent=ucb", "env=GridWorld4x4"]),
    (T, ["agent=rlhf", "env=CartPole"]), (T, ["agent=mc_exploring_starts", "env=Blackjack-v1"]),
    (T, ["agent=sb3_dqn", "agent.double_q=true"]), (T, ["agent=ppo", "env=CartPole", "agent.use_sde=true"]),
    (T, ["agent=sb3_a2c", "env=Acrobot", "agent.use_sde=true"]),
    (T, ["agent=ppo", "env=Pendulum", "agent.sde_sample_freq=0"]),
    # files missing, damaged or in the way
    (T, ["resume=nowhere"]), (T, ["resume=."]), (E, ["run=nowhere"]), (E, []), (E, ["run=."]),
    (T, ["run_dir=afile"]), (T, ["runs_root=afile"]), (T, ["run_dir=afile/sub"]),
    (T, ["agent=policy_evaluation", "env=GridWorld4x4", "agent.policy=missing.npy"]),
    (B, ["nosuchsuite.yaml"]), (G, ["out=afile/sub"]),
    # policies learned from demonstrations
    (T, ["agent=ibc", "env=CartPole"]), (T, ["agent=diffusion", "env=Pendulum", "expert=nowhere"]),
    (T, ["agent=gail", "env=CartPole", "expert=nowhere"]), (T, ["agent=ppo", "env=CartPole", "expert=runs"]),
    (T, ["agent=gail", "env=FrozenLake-v1"]), (T, ["agent=gail", "agent.reward=airll"]),
    (T, ["agent=gail", "agent.disc_updates=0"]), (T, ["agent=gail", "env=CartPole", "init=runs"]),
    (T, ["agent=bc", "env=MountainCarContinuous-v0"]), (E, ["run=x", "demos=out.txt"]),
    (T, ["agent=diffusion", "env=Avoid", "agent.sampler=ddmp"]),
    (T, ["agent=ibc", "env=Avoid", "agent.inference=mcmc"]),
    (T, ["agent=diffusion", "env=Particle", "agent.sampling_steps=500"]),
    (T, ["agent=bc", "env=Particle", "env.dim=1"]),
    (T, ["agent=diffusion", "env=Avoid", "agent.horizon=2", "agent.execute=3"]),
    (T, ["agent=mdn", "env=Step", "eval_deterministic=maybe"]),
    # aligning a language model
    (T, ["agent=dpo", "env=TextPreference", "agent.beta=0"]), (T, ["agent=ipo", "env=TextPreference", "agent.beta=-1"]),
    (T, ["agent=grpo", "env=TextPreference", "agent.group_size=1"]),
    (T, ["agent=grpo", "env=TextPreference", "agent.loss=drgrpo"]),
    (T, ["agent=rloo", "env=TextPreference", "agent.group_size=3"]), (T, ["agent=kto", "env=CartPole"]),
    (B, ["alignment", "agents=dpo"]), (T, ["agent=dpo", "env=TextPreference", "env.max_len=20"]),
    # seeds trained together
    (T, ["seeds=0"]), (T, ["seeds=abc"]), (T, ["seeds=1.5"]),
    (T, ["seed=2147483647", "seeds=2"]), (T, ["resume=run-1", "seeds=3"]), (T, ["seeds=3", "run_dir=group"]),
    (T, ["agent=q_learning", "env=FrozenLake", "seeds=3", "run_dir=group"]), (T, ["seeds=2", "run_dir=run-1"]),
    # policy gradients (A2C, REINFORCE) and observation / reward normalisation
    (T, ["agent=a2c", "agent.clip_obs=0"]), (T, ["agent=reinforce", "agent.baseline=maybe"]),
    (T, ["agent=reinforce", "agent.gae_lambda=0.95"]), (T, ["agent=a2c", "agent.rms_prop_eps=0"]),
    (T, ["agent=gail", "env=CartPole", "agent.normalize_obs=true"]),
    (T, ["agent=ppo", "env=CarRacing-v3", "agent.normalize_obs=true"]),
    # learning curves (python -m rlgen.plot); the Python API's mistakes raise UserError (tests/test_api.py)
    ("rlgen.plot", []), ("rlgen.plot", ["nowhere"]), ("rlgen.plot", ["."]), ("rlgen.plot", ["run-1"]),
    ("rlgen.plot", [".", "--metric", "train/loss"]), ("rlgen.plot", [".", "metric"]),
    ("rlgen.plot", [".", "x=time"]), ("rlgen.plot", [".", "out=curves.jpg"]), ("rlgen.plot", ["afile"]),
    # hyperparameter studies (rlgen.tune) and their tuned files
    *[("rlgen.tune", args) for args in (
        ["agent=ppx", "env=Acrobot"], ["agent=ppo", "env=Acrobt"], ["agent=ppo", "env=Acrobot", "space=ppp"],
        ["agent=ppo", "env=Acrobot", "n_trials=0"], ["agent=ppo", "env=Acrobot", "n_trials=-3"],
        ["agent=ppo", "env=Acrobot", "storage=postgresq://x/y"],
        ["agent=ppo", "env=Acrobot", "storage=sqlite:///afile/study.db"],
        ["agent=ppo", "env=Acrobot", "space=./afile"], ["agent=q_learning", "env=CliffWalking"],
        ["agent=ppo", "env=Acrobot", "workers=0"], ["agent=ppo", "env=Acrobot", "agent.n_stepz=64"],
        ["agent=ppo", "env=Acrobot", "n_trial=5"])],
    (T, ["agent=ppo", "env=Acrobot", "tuned=nowhere.yaml"]), (T, ["agent=ppo", "tuned=afile"]),
]
IN_THE_WAY = {"afile": "in the way\n", "run-1/summary.json": '{"status": "completed"}\n',
              "group/seed1/summary.json": '{"status": "completed"}\n'}
"""what each command's folder holds: a file, a run, and a run where run_dir=group seeds=3 puts seed 1's"""


def try_one(module: str, args: list[str], repo: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in IN_THE_WAY.items():
            Path(tmp, name).parent.mkdir(parents=True, exist_ok=True)
            Path(tmp, name).write_text(text)
        env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp, capture_output=True, text=True,
                             env=env, timeout=300, check=False)
        lines = out.stderr.strip().splitlines()
        placed = {Path(name) for name in IN_THE_WAY} | {parent for name in IN_THE_WAY for parent in Path(name).parents}
        left = sorted(str(p.relative_to(tmp)) for p in Path(tmp).rglob("*") if p.relative_to(tmp) not in placed)
        return {"command": f"python -m {module} {' '.join(args)}", "exit": out.returncode,
                "stderr_lines": len(lines), "line": lines[-1] if lines else "", "left_behind": left,
                "traceback": "Traceback" in out.stderr, "seconds": round(time.perf_counter() - start, 1),
                "ok": out.returncode == 2 and len(lines) == 1 and not left and "Traceback" not in out.stderr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/new_user"))
    args = parser.parse_args()
    repo = Path(__file__).resolve().parents[1]
    status_before = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    results = [try_one(module, cmd, repo) for module, cmd in MISTAKES]
    status_after = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout
    ok = sum(r["ok"] for r in results)
    lines = ["# A new user's mistakes", "", f"Command: `python benchmarks/new_user.py` ({time.strftime('%Y-%m-%d')}).",
             "Each command runs in a fresh process in a folder holding only a file and a run in the way; it passes "
             "when it exits with status 2 and one line on stderr, without a traceback, leaving nothing behind.", "",
             f"**{ok} of {len(results)}** mistakes give one clear line and exit 2 "
             f"({100 * ok / len(results):.0f}%); repository files changed: "
             f"{'none' if status_before == status_after else 'YES'}.", "",
             "| command | exit | stderr lines | left behind | the line |", "|---|---|---|---|---|"]
    for r in results:
        mark = "" if r["ok"] else " **(fails)**"
        left = ", ".join(r["left_behind"]) or "-"
        lines.append(f"| `{r['command']}`{mark} | {r['exit']} | {r['stderr_lines']} | {left}"
                     f" | {r['line'].replace('|', '/')[:160]} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text("\n".join(lines) + "\n")
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines[:8]))


if __name__ == "__main__":
    main()
