"""The best checkpoint: beside a run's last checkpoint/, checkpoint_best/ holds the policy of its evaluation
with the highest mean return (RL Zoo's best_model), and best.json inside names that evaluation's step and
mean return.

Keeping a new best takes two steps around the write of checkpoint.json (rlgen/run.py: Run.checkpoint):
`stage_best` copies the checkpoint just saved, whole, beside the best; once checkpoint.json names it,
`promote_best` swaps it in. On resuming, `settle_best` finishes a swap that a crash cut short after checkpoint.json was
written, or drops it if the crash came before: the best checkpoint and the run's record of it never disagree.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rlgen.checkpoint import replace_dir_atomic, swap_dir, write_json_atomic

BEST_CHECKPOINT = "checkpoint_best"
STAGED = "checkpoint_best.next"
"""a new best checkpoint, complete, until the checkpoint.json that names it is written"""


def stage_best(run_dir: Path, best: tuple[float, int]) -> None:
    """Copy the run's last checkpoint, the policy of the evaluation `best` = (mean return, step), to STAGED."""
    last = run_dir / "checkpoint"

    def fill(tmp: Path) -> None:
        shutil.copytree(last, tmp, dirs_exist_ok=True)
        write_json_atomic(tmp / "best.json", {"step": best[1], "mean_return": best[0]})

    replace_dir_atomic(run_dir / STAGED, fill)


def promote_best(run_dir: Path) -> None:
    """The staged checkpoint becomes the best one (checkpoint.json names it now)."""
    swap_dir(run_dir / STAGED, run_dir / BEST_CHECKPOINT)


def settle_best(run_dir: Path, best: tuple[float, int] | None) -> None:
    """On resuming from a checkpoint.json whose best evaluation is `best`: a staged checkpoint of that
    evaluation is promoted, any other dropped."""
    staged = run_dir / STAGED
    if not staged.is_dir():
        return
    try:
        mark = json.loads((staged / "best.json").read_text())
        named = best is not None and (mark["mean_return"], mark["step"]) == tuple(best)
    except (OSError, ValueError, KeyError, TypeError):
        named = False
    if named:
        promote_best(run_dir)
    else:
        shutil.rmtree(staged)
