"""checkpoint.json: the run's counters at its last checkpoint (what rlgen.run.Run.state writes), written
last so that it never names a step whose other parts are missing, and checked when it is read back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlgen.checkpoint import one_line
from rlgen.errors import UserError


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


STATE_CHECKS: dict[str, Any] = {
    "num_steps": _count, "next_eval": _count, "n_resumes": _count, "wall_seconds": _number,
    "cpu_seconds": _number, "solved_at": lambda v: v is None or _count(v),
    "last_eval": lambda v: v is None or (isinstance(v, list) and len(v) == 2 and all(map(_number, v))),
    "best_eval": lambda v: v is None or (isinstance(v, list) and len(v) == 2 and _number(v[0]) and _count(v[1])),
}
"""what Run.state writes to checkpoint.json"""


def read_run_state(run_dir: Path) -> dict[str, Any]:
    """checkpoint.json, the run's counters at its last checkpoint; a UserError if it is damaged."""
    path = Path(run_dir) / "checkpoint.json"
    try:
        state = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:  # ValueError: also invalid UTF-8
        raise UserError(f"{path} is damaged ({one_line(err)}); the run cannot be resumed from it") from None
    if not isinstance(state, dict) or "num_steps" not in state:
        raise UserError(f"{path} is damaged (it is not a run's checkpoint.json); the run cannot be resumed from it")
    for key, valid in STATE_CHECKS.items():
        if key in state and not valid(state[key]):
            raise UserError(f"{path} is damaged ({key} is {repr(state[key])[:40]}); the run cannot be resumed from it")
    return state
