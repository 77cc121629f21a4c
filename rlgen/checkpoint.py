"""Atomic writes: a reader (or a crash) never sees a half-written file or checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary path beside `path`, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def replace_dir_atomic(path: Path, fill: Callable[[Path], None]) -> None:
    """Fill a fresh directory, then swap it for `path`: the old one stays whole until the new one is.

    A rename of a directory over an existing one is not atomic on POSIX, so the old one is first
    renamed aside (`<name>.old`); if we crash between the two renames, `load_dir` finds it there.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    old = path.with_name(path.name + ".old")
    try:
        fill(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def existing_dir(path: Path) -> Path | None:
    """The complete checkpoint directory at `path`, or the previous one a crash left aside."""
    path = Path(path)
    if path.is_dir():
        return path
    old = path.with_name(path.name + ".old")
    return old if old.is_dir() else None


# -- state as data: a nested state saved and loaded without executing anything --------------------

import numpy as np  # noqa: E402

STATE_JSON, TENSORS = "state.json", "tensors.npz"


def _encode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in value]}
    if isinstance(value, list):
        return [_encode(v, arrays) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: _encode(v, arrays) for k, v in value.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    return value


def _decode(value: Any, arrays: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    if isinstance(value, dict):
        if "__array__" in value:
            return np.array(arrays[value["__array__"]])
        if "__tuple__" in value:
            return tuple(_decode(v, arrays) for v in value["__tuple__"])
        if "__items__" in value:
            return {_decode(k, arrays): _decode(v, arrays) for k, v in value["__items__"]}
        return {k: _decode(v, arrays) for k, v in value.items()}
    return value


def save_state(path: Path, state: Any) -> None:
    arrays: dict[str, np.ndarray] = {}
    skeleton = _encode(state, arrays)

    def fill(tmp: Path) -> None:
        np.savez(tmp / TENSORS, **arrays)
        (tmp / STATE_JSON).write_text(json.dumps(skeleton))

    replace_dir_atomic(Path(path), fill)


def load_state(path: Path) -> Any:
    found = existing_dir(Path(path))
    if found is None:
        raise FileNotFoundError(f"no saved state in {path}")
    with np.load(found / TENSORS, allow_pickle=False) as arrays:
        return _decode(json.loads((found / STATE_JSON).read_text()), arrays)
