"""The run: its directory, its logs, evaluation, checkpoints and interruption.

The training loops (rlgen/loops.py) talk to the run through `make_envs` (training envs, wrapped so
that every finished episode is recorded here), `log(step, stats)` and `tick(step)` (which evaluates,
checkpoints and reports whether to go on); agents with stages of their own (RLHF) add `episodes`.
The run's directory, logs, CSVs and checkpoint files are written here, once, for every agent; an
agent adds only its own artifacts at the end (`write_artifacts`).

The run needs little from its agent, and says so in `Learner`: it never imports the agents.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from rlgen.best_checkpoint import promote_best, settle_best, stage_best
from rlgen.checkpoint import damaged, existing_dir, load_state, save_state, write_json_atomic
from rlgen.config import TrainConfig
from rlgen.csvlog import CsvLog
from rlgen.envs import EpisodeStats, make_env, make_vec_env, reward_threshold
from rlgen.envs.model import require_model
from rlgen.envs.snapshot import env_state, set_env_state
from rlgen.evaluation import Evaluation, evaluate_episodes, evaluate_together, final_metrics, policy_picture
from rlgen.mdp import TabularModel
from rlgen.progress import ProgressBar


class Learner(Protocol):
    """What a run needs from its agent."""

    one_hot: bool
    """the agent sees discrete observations one-hot encoded"""

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray: ...

    def episode_policy(self, deterministic: bool = True) -> Callable[[np.ndarray], np.ndarray]: ...

    def save(self, path: Path) -> None: ...

    def evaluation_extras(self) -> dict[str, float]: ...


class Diverged(Exception):
    """A loss or statistic became NaN or infinite."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""Ctrl-C, and what SLURM, Kubernetes and Docker send before they kill a job"""


EvaluationHook = Callable[[int, float], bool]
"""called after each periodic evaluation with (step, mean return); False stops the run as "pruned" (a
hyperparameter study's pruner, rlgen/tune.py)"""


class Run:
    LOG_EVERY = 1000  # env steps between writes of averaged training scalars
    last_evaluation: Evaluation | None = None
    on_evaluation: tuple[EvaluationHook, ...] = ()
    pruned = False

    def __init__(self, cfg: TrainConfig, run_dir: Path, agent: Learner, state: dict[str, Any] | None = None,
                 show_progress: bool = True):
        from torch.utils.tensorboard import SummaryWriter

        self.cfg = cfg
        self.dir = run_dir
        self.agent = agent
        self.envs: gym.vector.VectorEnv | None = None
        self.threshold = reward_threshold(cfg.env)
        # read everything that can be refused before any file of the run is opened for writing
        self.saved_envs = self._saved_env_state(int(state["num_steps"])) if state else None
        state = state or {}
        start = int(state.get("num_steps", 0))
        self.next_eval = int(state.get("next_eval", cfg.eval_every or cfg.total_steps))
        self.solved_at: int | None = state.get("solved_at")
        self.last_eval: tuple[float, float] | None = state.get("last_eval")
        best = state.get("best_eval")  # (mean return, step) of the best evaluation, kept in checkpoint_best/
        self.best_eval: tuple[float, int] | None = (float(best[0]), int(best[1])) if best else None
        self.best_unsaved: int | None = None  # the step of an evaluation that beat it, until checkpoint() keeps it
        if state:
            settle_best(run_dir, self.best_eval)
        self.wall_before = float(state.get("wall_seconds", 0.0))
        self.cpu_before = float(state.get("cpu_seconds", 0.0))
        self.n_resumes = int(state.get("n_resumes", -1)) + 1
        keep = start if state else None
        # resuming: TensorBoard drops the points at and after purge_step (its SessionLog.START; see
        # EventAccumulator._CheckForRestartAndMaybePurge), the CSVs those after the checkpoint's step
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if state else None)
        self.progress_csv = CsvLog(run_dir / "progress.csv", ["step"], keep)
        self.eval_csv = CsvLog(run_dir / "eval.csv", ["step", "mean_return", "std_return", "n_episodes"], keep)
        self.episodes_csv = CsvLog(run_dir / "episodes.csv", ["step", "return", "length"], keep)
        recent = self.episodes_csv.rows[-100:]
        self.recent_returns = deque((float(r["return"]) for r in recent), maxlen=100)
        self.recent_lengths = deque((int(r["length"]) for r in recent), maxlen=100)
        self.pending: dict[str, list[float]] = {}
        self.last_log = start
        self.start_step = start
        self.t0 = time.perf_counter()
        self.cpu0 = time.process_time()
        self.stop_requested = False
        self.stop_signal: signal.Signals | None = None
        self.previous_handlers: dict[signal.Signals, Any] = {}
        self.closed = False
        self.bar = ProgressBar(cfg.total_steps, start, enabled=cfg.progress and show_progress)

    # -- what agents call ---------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        """Env seed: the config's. A resumed run continues its envs where they stopped; if their state
        could not be saved (rlgen/envs/snapshot.py), the seed is shifted so it does not replay episodes."""
        return self.cfg.seed + 7919 * self.n_resumes

    @property
    def one_hot(self) -> bool:
        return self.agent.one_hot

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """One env, wrapped as the agent needs it (one-hot observations for deep agents)."""
        return make_env(self.cfg.env, render_mode=render_mode, one_hot=self.one_hot)

    def make_envs(self, n: int) -> tuple[EpisodeStats, Any]:
        """The training envs: n copies behind the vector API (NEXT_STEP autoreset) whose finished
        episodes are recorded here. A resumed run gets them back as they were at its checkpoint."""
        envs = EpisodeStats(make_vec_env(self.cfg.env, n, one_hot=self.one_hot), self.episodes, self.start_step)
        self.envs = envs
        obs, _ = envs.reset(seed=self.seed)  # first: a reset creates attributes (generators) restored below
        envs.action_space.seed(self.seed)
        if self.saved_envs is not None and set_env_state(envs, self.saved_envs):
            return envs, envs.last_obs
        if self.n_resumes:
            self.bar.note("env state not restorable: the resumed run starts new episodes")
        return envs, obs

    def tabular_model(self) -> TabularModel:
        """The env's transition model, for planning agents."""
        env = self.make_env()
        try:
            return require_model(env)
        finally:
            env.close()

    def log(self, step: int, stats: dict[str, float]) -> None:
        """Training scalars (tags as SB3 names them); averaged and written every LOG_EVERY steps (or the
        agent's log_every)."""
        for key, value in stats.items():
            value = float(value)
            if not math.isfinite(value):  # an undefined statistic is left out by its agent, not sent as NaN
                raise Diverged(f"{key} is {value} at step {step}")
            self.pending.setdefault(key, []).append(value)
        if step - self.last_log >= getattr(self.agent, "log_every", self.LOG_EVERY):  # LM agents count otherwise
            self.flush_logs(step)

    def episodes(self, step: int, returns: np.ndarray, lengths: np.ndarray) -> None:
        for ret, length in zip(np.asarray(returns, dtype=float), np.asarray(lengths, dtype=int), strict=True):
            self.episodes_csv.append({"step": step, "return": ret, "length": int(length)})
            self.recent_returns.append(ret)
            self.recent_lengths.append(int(length))

    def tick(self, step: int, evaluation: Evaluation | None = None) -> bool:
        """Called by the agent as it goes: evaluates (or takes the `evaluation` of the policy made for it,
        `evaluate_runs`) and checkpoints when due; False means stop."""
        if self.eval_due(step):
            while self.next_eval <= step:  # advanced first: the checkpoint records the next one due
                self.next_eval += self.cfg.eval_every or self.cfg.total_steps
            self.evaluate(step, evaluation)
            self.checkpoint(step)
            if not all([hook(step, self.last_eval[0]) for hook in self.on_evaluation]):
                self.pruned = self.stop_requested = True
        self.bar.update(step, self.recent_returns[-1] if self.recent_returns else None)
        return not self.stop_requested

    # -- what the trainer calls ---------------------------------------------------------------------

    def eval_due(self, step: int) -> bool:
        return step >= self.next_eval

    def evaluate(self, step: int, result: Evaluation | None = None) -> None:
        """Evaluate the policy (unless `result` is its evaluation, made with other runs') and record it."""
        policy = self.agent.episode_policy(self.cfg.eval_deterministic)
        if result is None:
            result = evaluate_episodes(policy, self.cfg.env, self.cfg.eval_episodes, self.cfg.seed, self.one_hot)
        returns = result.returns
        mean, std = float(returns.mean()), float(returns.std())
        self.last_eval = (mean, std)
        self.last_evaluation = result
        if self.best_eval is None or mean > self.best_eval[0]:
            self.best_eval, self.best_unsaved = (mean, step), step
        rates = result.rates()  # only for envs that report success (and mode) at episode ends
        rates |= self.agent.evaluation_extras()
        self.eval_csv.append({"step": step, "mean_return": mean, "std_return": std, "n_episodes": len(returns)}
                             | rates)
        self.eval_csv.flush()
        self.tb.add_scalar("eval/mean_reward", mean, step)
        self.tb.add_scalar("eval/std_reward", std, step)
        self.tb.add_scalar("eval/best_mean_reward", self.best_eval[0], step)
        for key, value in rates.items():
            self.tb.add_scalar(f"eval/{key}", value, step)
        if "success_rate" in rates:
            self.tb.add_scalar("eval/action_latency_ms", result.act_ms, step)
        picture = policy_picture(policy, self.cfg.env, self.cfg.seed, self.one_hot)
        if picture is not None:
            self.tb.add_image("eval/policy", picture, step, dataformats="HWC")
        if self.solved_at is None and self.threshold is not None and mean >= self.threshold:
            self.solved_at = step
        success = f", success {rates['success_rate']:.0%}" if "success_rate" in rates else ""
        self.bar.note(f"eval {mean:.1f}{success}")

    def flush_logs(self, step: int) -> None:
        """Write the averaged scalars at `step`: a progress.csv row and a TensorBoard point each. A step
        already written (a budget that ends on a logging boundary) gets only the scalars it lacks, so
        no curve has two points at one step."""
        row: dict[str, Any] = {}
        for key, values in self.pending.items():
            row[key] = float(np.mean(values))
        if self.recent_returns:
            row["rollout/ep_rew_mean"] = float(np.mean(self.recent_returns))
            row["rollout/ep_len_mean"] = float(np.mean(self.recent_lengths))
        row["time/fps"] = (step - self.start_step) / max(time.perf_counter() - self.t0, 1e-9)
        rows = self.progress_csv.rows
        if rows and int(float(rows[-1]["step"])) == step:
            row = {k: v for k, v in row.items() if rows[-1].get(k, "") == ""}
            if row:
                self.progress_csv.merge_last(row)
        else:
            self.progress_csv.append({"step": step, **row})
        for key, value in row.items():
            self.tb.add_scalar(key, value, step)
        self.pending.clear()
        self.last_log = step

    def checkpoint(self, step: int) -> None:
        """Agent state, the training envs' state and the run's own counters, each written atomically;
        checkpoint.json last, so it never names a step whose other parts are missing. After an evaluation
        that beat the best (always followed by the checkpoint at its step: tick, trainer.finish), the
        agent's checkpoint becomes the best one too, copied whole (the agent is not saved twice): staged
        before checkpoint.json, promoted after it (rlgen/best_checkpoint.py)."""
        self.agent.save(self.dir / "checkpoint")
        new_best = self.best_unsaved == step  # no learning since that evaluation: its policy is the one just saved
        if new_best:
            assert self.best_eval is not None
            stage_best(self.dir, self.best_eval)
            self.best_unsaved = None
        envs = env_state(self.envs) if self.envs is not None else None
        if envs is not None:
            save_state(self.dir / "env_state", {"step": step, "parts": envs})
        elif existing_dir(self.dir / "env_state") is not None:
            shutil.rmtree(existing_dir(self.dir / "env_state"))
        for log in (self.progress_csv, self.eval_csv, self.episodes_csv):
            log.flush()
        write_json_atomic(self.dir / "checkpoint.json", self.state(step))
        if new_best:
            promote_best(self.dir)

    def _saved_env_state(self, step: int) -> list[dict[str, Any]] | None:
        if existing_dir(self.dir / "env_state") is None:
            return None
        saved = load_state(self.dir / "env_state")
        parts = saved.get("parts") if isinstance(saved, dict) else None
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise damaged(self.dir / "env_state", "it holds no list of env states")
        return parts if saved.get("step") == step else None

    def state(self, step: int) -> dict[str, Any]:
        return {
            "num_steps": step,
            "next_eval": self.next_eval,
            "solved_at": self.solved_at,
            "last_eval": self.last_eval,
            "best_eval": self.best_eval,
            "wall_seconds": self.wall_seconds,
            "cpu_seconds": self.cpu_seconds,
            "n_resumes": self.n_resumes,
        }

    @property
    def wall_seconds(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    @property
    def cpu_seconds(self) -> float:
        """CPU time of this process: unlike wall time, barely affected by other load on the machine."""
        return self.cpu_before + time.process_time() - self.cpu0

    def summary(self, step: int, status: str) -> dict[str, Any]:
        mean, std = self.last_eval or (None, None)
        wall = self.wall_seconds
        return {
            "agent": self.cfg.agent.name,
            "env": self.cfg.env.name,
            "env_id": self.cfg.env.id,
            "seed": self.cfg.seed,
            "total_steps": step,
            "budget_steps": self.cfg.total_steps,
            "wall_seconds": wall,
            "cpu_seconds": self.cpu_seconds,
            "steps_per_second": step / wall if wall > 0 else None,
            "eval_mean_return": mean,
            "eval_std_return": std,
            "best_eval_mean_return": self.best_eval[0] if self.best_eval else None,
            "best_eval_step": self.best_eval[1] if self.best_eval else None,
            "reward_threshold": self.threshold,
            "solved_at_step": self.solved_at,
            "status": status,
            **({"stopped_by": self.stop_signal.name} if self.stop_signal is not None else {}),
            "versions": versions(),
        } | self._success_summary()

    def _success_summary(self) -> dict[str, Any]:
        """success_rate and mode_fraction of the last evaluation (from eval.csv, which a resumed run
        keeps) and the policy's action latency in it, for envs that report success; with the latency
        for one observation and the env's own measures of the policy (rlgen.evaluation.final_metrics)."""
        last = self.eval_csv.rows[-1] if self.eval_csv.rows else {}
        if last.get("success_rate", "") == "":
            return {}
        out = {key: float(last[key]) for key in ("success_rate", "mode_fraction") if last.get(key, "") != ""}
        latency = self.last_evaluation.act_ms if self.last_evaluation is not None else None
        return out | {"action_latency_ms": latency} | final_metrics(self.agent.act, self.cfg.env, self.cfg.seed,
                                                                    self.one_hot)

    def start_session(self, config_text: str, hparams: dict[str, Any]) -> None:
        """The config as text, and the session start of TensorBoard's HParams dashboard, at step 0.

        Only a session's start and end are written, into the run itself: the dashboard takes the run's
        own scalars as metrics (the last eval/mean_reward is the final evaluation), and its table from
        the session starts of every run. Not SummaryWriter.add_hparams, which writes each metric again
        at step 0 (a step that goes back reads as a restart), nor an experiment record, of which the
        dashboard reads one for all runs (tensorboard/plugins/hparams/backend_context.py)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        self.tb.add_text("hparams", "```yaml\n" + config_text + "```", 0)
        _, start, _ = hparams_summaries(hparams, {})
        self.tb.file_writer.add_summary(start, 0)

    def end_session(self, step: int) -> None:
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        _, _, end = hparams_summaries({}, {})
        self.tb.file_writer.add_summary(end, step)

    def close(self) -> None:
        """Idempotent: the trainer closes the run however learning ended."""
        if self.closed:
            return
        self.closed = True
        if self.envs is not None:
            self.envs.close()
        self.bar.close()
        self.tb.close()
        for log in (self.progress_csv, self.eval_csv, self.episodes_csv):
            log.close()
        for sig, previous in self.previous_handlers.items():
            signal.signal(sig, previous)

    def catch_interrupt(self) -> None:
        catch_interrupt([self])


def catch_interrupt(runs: list[Run]) -> None:
    """The first SIGINT or SIGTERM: each run finishes the current step, checkpoints and stops
    (`stop_signal` says which). A second one of either stops the process at once (the default action
    of a signal); the last checkpoint is whole, its files being written atomically. The first run's
    close() restores the handlers."""

    def handler(signum: int, frame: Any) -> None:
        for run in runs:
            run.stop_requested = True
            run.stop_signal = signal.Signals(signum)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    for sig in STOP_SIGNALS:
        runs[0].previous_handlers[sig] = signal.signal(sig, handler)


def evaluate_runs(runs: list[Run], step: int) -> dict[int, Evaluation]:
    """The evaluations due at `step` of runs on one env (the seeds of a group), made together in one
    vector env (evaluation.evaluate_together), keyed by id(run); each is the evaluation its run would
    make alone, which `Run.tick` then records."""
    due = [run for run in runs if run.eval_due(step)] if len(runs) > 1 else []
    if len(due) < 2:  # one run evaluates itself
        return {}
    cfg = due[0].cfg
    policies = [run.agent.episode_policy(cfg.eval_deterministic) for run in due]
    results = evaluate_together(policies, cfg.env, cfg.eval_episodes, [run.cfg.seed for run in due], due[0].one_hot)
    return {id(run): result for run, result in zip(due, results, strict=True)}


def versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("rlgen", "torch", "gymnasium", "stable-baselines3", "numpy", "hydra-core"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
