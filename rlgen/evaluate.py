"""python -m rlgen.evaluate run=<run dir> [episodes=20] [checkpoint=best] [video=true] [seed=0] [deterministic=true]
[demos=FILE]

Loads a run's checkpoint (its last; with checkpoint=best, that of its best training evaluation), plays
`episodes` evaluation episodes and prints their mean and spread; with video=true it also records the
first `video_episodes` of them to <run dir>/videos/; with demos=FILE.npz it writes that many episodes
of the policy as demonstrations (expert= of gail and bc). `python -m rlgen.evaluate --help` lists every
setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import MISSING

from rlgen.cli import parse_settings
from rlgen.config import check_choice, check_seed
from rlgen.errors import UserError, cli_main

COMMAND = "python -m rlgen.evaluate"
CHECKPOINTS = ("last", "best")


@dataclass
class EvaluateSettings:
    """Load a run's checkpoint, play evaluation episodes and print their mean and spread; the result
    is also written to <run>/evaluation.json."""

    run: str = MISSING
    """the run directory a training run wrote"""
    episodes: int = 20
    """evaluation episodes, played at once (one env each)"""
    checkpoint: str = "last"
    """which policy: last (where training stopped, checkpoint/) or best (the training evaluation with the
    highest mean return, checkpoint_best/)"""
    video: bool = False
    """also record the first video_episodes episodes to <run>/videos/"""
    video_episodes: int = 1
    """episodes to record when video=true"""
    seed: int = 0
    """seeds the evaluation envs (video: episode i is seeded with seed + i)"""
    deterministic: bool = True
    """act greedily (false: sample actions from the policy)"""
    demos: str | None = None
    """also write the episodes as demonstrations to this .npz file (played one after another from
    seed; for expert= of gail or bc): every observation and action, and each episode's return"""
    trust_checkpoint: bool = False
    """load a checkpoint whose file format can run code when read (pickle); only for runs you trust"""

    def __post_init__(self) -> None:
        if self.episodes <= 0:
            raise UserError(f"episodes must be positive, got {self.episodes}")
        if self.video_episodes <= 0:
            raise UserError(f"video_episodes must be positive, got {self.video_episodes}")
        check_seed(seed=self.seed)
        check_choice("checkpoint", self.checkpoint, CHECKPOINTS)
        if self.demos is not None and not self.demos.endswith(".npz"):
            raise UserError(f"demos= names a .npz file, got '{self.demos}'")


def record_video(agent, cfg, run_dir: Path, episodes: int, seed: int, deterministic: bool) -> Path:
    import os

    import gymnasium as gym

    from rlgen.envs import env_masks, make_env
    from rlgen.evaluation import reads_masks

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # render off-screen: no display is needed
    env = make_env(cfg.env, render_mode="rgb_array", one_hot=agent.one_hot)
    if "rgb_array" not in (env.metadata.get("render_modes") or []):
        raise UserError(f"env {cfg.env.id} has no rgb_array rendering, so no video can be made")
    folder = run_dir / "videos"
    env = gym.wrappers.RecordVideo(env, str(folder), episode_trigger=lambda i: i < episodes, disable_logger=True)
    policy = agent.episode_policy(deterministic)
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i)
        if hasattr(policy, "reset"):  # a policy that remembers the episode (action chunks)
            policy.reset()
        done = False
        while not done:
            mask = env_masks(env, info) if reads_masks(policy) else None  # a policy that honours the env's masks
            action = policy(np.asarray(obs)[None], *(() if mask is None else (mask,)))[0]
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
    env.close()
    return folder


def refuse_to_overwrite(path: Path) -> None:
    """A file the user has is never replaced; its folder must be writable."""
    from rlgen.trainer import unwritable

    if path.exists():
        raise UserError(f"demos={path} exists already; name a new file (nothing is overwritten)")
    if (why := unwritable(path.parent)) is not None:
        raise UserError(f"demos={path} cannot be written: {why}")


@cli_main
def main(argv: list[str]) -> int:
    opts = parse_settings(argv, EvaluateSettings, COMMAND)
    run_dir = Path(opts.run)
    from rlgen.evaluation import evaluate_episodes
    from rlgen.trainer import load_trained, unwritable

    if run_dir.is_dir() and (why := unwritable(run_dir)) is not None:  # evaluation.json (and videos) go there
        raise UserError(f"evaluation.json cannot be written: {why}; copy the run to a writable place")
    if opts.demos is not None:
        refuse_to_overwrite(Path(opts.demos))
    cfg, agent = load_trained(run_dir, trust=opts.trust_checkpoint, checkpoint=opts.checkpoint)

    policy = agent.episode_policy(opts.deterministic)
    measured = evaluate_episodes(policy, cfg.env, opts.episodes, opts.seed, one_hot=agent.one_hot)
    returns, lengths = measured.returns, measured.lengths
    result = {"episodes": len(returns), "mean_return": float(returns.mean()), "std_return": float(returns.std()),
              "mean_length": float(lengths.mean()), "seed": opts.seed, "deterministic": opts.deterministic,
              "checkpoint": opts.checkpoint, "checkpoint_step": agent.num_steps, **measured.rates()}
    which = "best checkpoint" if opts.checkpoint == "best" else "checkpoint"
    print(f"{cfg.agent.name} on {cfg.env.id} ({which} at step {agent.num_steps}): return "
          f"{result['mean_return']:.2f} +- {result['std_return']:.2f} over {len(returns)} episodes"
          + "".join(f", {name.replace('_', ' ')} {value:.2f}" for name, value in measured.rates().items()))
    if opts.video:
        folder = record_video(agent, cfg, run_dir, opts.video_episodes, opts.seed, opts.deterministic)
        result["videos"] = sorted(p.name for p in folder.glob("*.mp4"))
        print(f"video: {', '.join(str(folder / v) for v in result['videos'])}")
    if opts.demos is not None:
        from rlgen.demos import policy_demonstrations

        demos = policy_demonstrations(agent.episode_policy(opts.deterministic), cfg.env.id, opts.episodes, opts.seed,
                                      agent.one_hot, **cfg.env.kwargs)
        demos.save(Path(opts.demos))
        result["demos"] = opts.demos
        print(f"demonstrations: {demos.n_episodes} episodes, {len(demos.obs)} steps, mean return "
              f"{demos.returns.mean():.2f} -> {opts.demos}")
    (run_dir / "evaluation.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    main()
