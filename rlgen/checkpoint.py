"""Atomic writes (a reader, or a crash, never sees a half-written file or checkpoint), and
checkpoints saved as data: JSON and safetensors, never a pickle."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from rlgen.errors import UserError


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
    """Fill a fresh directory, then swap it for `path` (`swap_dir`): the old one stays whole until the
    new one is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        fill(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        swap_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def swap_dir(new: Path, path: Path) -> None:
    """Move the complete directory `new` to `path`, replacing what is there.

    A rename of a directory over an existing one is not atomic on POSIX, so the old one is first
    renamed aside (`<name>.old`); if we crash between the two renames, `existing_dir` finds it there.
    """
    old = path.with_name(path.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    if old.exists():
        shutil.rmtree(old)


def existing_dir(path: Path) -> Path | None:
    """The complete checkpoint directory at `path`, or the previous one a crash left aside."""
    path = Path(path)
    if path.is_dir():
        return path
    old = path.with_name(path.name + ".old")
    return old if old.is_dir() else None


# -- checkpoints: data, not code ------------------------------------------------------------------------
#
# A checkpoint directory holds state.json, the nested state (dicts, lists, numbers, strings) with
# one-key marker objects for what JSON cannot hold, and tensors.safetensors, every numpy array and
# torch tensor of it. Loading parses those two files and unpickles nothing: torch.load and pickle
# run whatever code a crafted file names (Python docs, pickle: "Never unpickle data that could have
# come from an untrusted source"), and an agent checkpoint is a file users share.

FORMAT, VERSION = "rlgen-state", 1
STATE_FILE, TENSORS_FILE, LEGACY_FILE = "state.json", "tensors.safetensors", "agent.pt"

# dtypes every safetensors >= 0.4 stores as they are; any other numeric dtype (wide unsigned ints,
# complex, long double, a non-native byte order, ...) is stored as its raw bytes (uint8) and viewed back
_SAFE_NUMPY = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64)
_SAFE_TORCH = (torch.bool, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.float16,
               torch.bfloat16, torch.float32, torch.float64)
_TORCH_DTYPES = {str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)}


class _Damaged(Exception):
    """What is wrong with a checkpoint's files (the reason in the user's one-line error)."""


def damaged(path: Path, why: str) -> UserError:
    return UserError(f"checkpoint {path} is damaged or not an rlgen checkpoint: {why}")


def one_line(err: BaseException, limit: int = 200) -> str:
    """An exception's message on one line, cut to `limit` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def save_state(path: Path, state: Any) -> None:
    """Write `state` as a checkpoint directory (state.json + tensors.safetensors), atomically."""
    encoder = _Encoder()
    doc = {"format": FORMAT, "version": VERSION, "state": encoder.encode(state, "")}
    text = json.dumps(doc, allow_nan=False, indent=1) + "\n"  # before any file: a TypeError leaves none

    def fill(tmp: Path) -> None:
        save_file(encoder.tensors, tmp / TENSORS_FILE, metadata={"format": FORMAT})
        (tmp / STATE_FILE).write_text(text)

    replace_dir_atomic(Path(path), fill)


def load_state(path: Path, trust: bool = False) -> Any:
    """The state a checkpoint directory holds, in fresh memory; a UserError for anything rlgen did
    not write. A checkpoint of an older rlgen (a pickle) loads only with trust=True."""
    found = existing_dir(Path(path))
    if found is None:
        raise FileNotFoundError(f"no checkpoint in {path}")
    if not (found / STATE_FILE).is_file() and (found / LEGACY_FILE).is_file():
        return _load_legacy(path, found / LEGACY_FILE, trust)
    try:
        doc = _read_json(found / STATE_FILE)
        decoder = _Decoder(_read_tensors(found / TENSORS_FILE))
        state = decoder.decode(doc["state"])
        if decoder.unused():
            raise _Damaged(f"{TENSORS_FILE} holds entries {STATE_FILE} does not name ({decoder.unused()[0]!r}, ...)")
        return state
    except RecursionError:
        raise damaged(path, f"{STATE_FILE} is nested too deeply") from None
    except _Damaged as err:
        raise damaged(path, str(err)) from None


def _load_legacy(path: Path, file: Path, trust: bool) -> Any:
    if not trust:
        raise UserError(f"checkpoint {path} was written by an older rlgen (a pickle, which can run code when "
                        "loaded); re-train, or load it only if you trust its source with trust_checkpoint=true")
    try:
        return torch.load(file, weights_only=False)  # trusted by the user: a pickle may run code
    except Exception as err:  # unpickling fails in many ways; each means a damaged file
        raise damaged(path, f"{LEGACY_FILE} cannot be read ({one_line(err)})") from None


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise _Damaged(f"no {STATE_FILE}")
    try:
        doc = json.loads(file.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except ValueError as err:  # also UnicodeDecodeError, and NaN/Infinity (rlgen writes markers)
        raise _Damaged(f"{STATE_FILE} is not valid JSON ({one_line(err)})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "state" not in doc:
        raise _Damaged(f"{STATE_FILE} does not have rlgen's layout (format '{FORMAT}')")
    if doc.get("version") != VERSION:
        raise _Damaged(f"{STATE_FILE} has format version {doc.get('version')!r}; this rlgen reads {VERSION}")
    return doc


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _read_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise _Damaged(f"no {TENSORS_FILE}")
    try:
        with safe_open(file, framework="pt") as f:
            if (f.metadata() or {}).get("format") != FORMAT:
                raise _Damaged(f"{TENSORS_FILE} was not written by rlgen")
            return {name: f.get_tensor(name).clone() for name in f.keys()}  # clone: memory of our own
    except SafetensorError as err:
        raise _Damaged(f"{TENSORS_FILE} is not a valid safetensors file ({one_line(err)})") from None
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise _Damaged(f"{TENSORS_FILE} cannot be read ({one_line(err)})") from None


class _Encoder:
    """Nested state -> JSON-able document; arrays and tensors are set aside in `tensors`."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def encode(self, value: Any, path: str) -> Any:
        if isinstance(value, np.generic):  # before float: np.float64 is a float, and must stay np.float64
            return {"__npscalar__": self.array(np.asarray(value), path)}
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else {"__float__": repr(value)}  # 'nan', 'inf', '-inf'
        if isinstance(value, bytes):
            return {"__bytes__": base64.b64encode(value).decode("ascii")}
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{path}/{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{path}/{i}") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in value):
                return {k: self.encode(v, f"{path}/{k}") for k, v in value.items()}
            return {"__dict__": [[self.encode(k, path), self.encode(v, f"{path}/{k}")] for k, v in value.items()]}
        if isinstance(value, np.ndarray):
            return {"__ndarray__": self.array(value, path)}
        if isinstance(value, torch.Tensor):
            return {"__tensor__": self.tensor(value, path)}
        raise TypeError(f"a checkpoint cannot hold {type(value).__name__} (at {path or '/'})")

    def array(self, a: np.ndarray, path: str) -> dict[str, Any]:
        if a.dtype.kind not in "biufc" or a.dtype.shape != ():
            raise TypeError(f"a checkpoint holds numeric arrays only, not dtype {a.dtype} (at {path or '/'})")
        flat = np.ascontiguousarray(a).reshape(-1)
        if a.dtype.isnative and a.dtype.type in _SAFE_NUMPY:
            stored = torch.from_numpy(flat.copy()).reshape(a.shape)
        else:
            stored = torch.from_numpy(flat.view(np.uint8).copy())
        return self.store(stored, a.dtype.str, a.shape, path)

    def tensor(self, t: torch.Tensor, path: str) -> dict[str, Any]:
        t = t.detach().cpu().resolve_conj().resolve_neg()
        if t.layout != torch.strided:
            raise TypeError(f"a checkpoint holds dense tensors only, not {t.layout} (at {path or '/'})")
        if t.dtype in _SAFE_TORCH:  # clone: tensors sharing memory (tied or flattened weights) get their own
            stored = t.contiguous().clone()
        else:
            raw = t.contiguous().reshape(-1)
            stored = raw.view(torch.uint8).clone() if raw.numel() else torch.empty(0, dtype=torch.uint8)
        return self.store(stored, str(t.dtype).removeprefix("torch."), t.shape, path)

    def store(self, stored: torch.Tensor, dtype: str, shape: tuple[int, ...], path: str) -> dict[str, Any]:
        name = path.strip("/") or "."
        while name in self.tensors:
            name += "'"
        self.tensors[name] = stored
        return {"name": name, "dtype": dtype, "shape": list(shape)}


class _Decoder:
    """state.json's document + the tensors of tensors.safetensors -> the nested state."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.used: set[str] = set()

    def unused(self) -> list[str]:
        return sorted(set(self.tensors) - self.used)

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        markers = [k for k in node if k.startswith("__")]
        if not markers:
            return {k: self.decode(v) for k, v in node.items()}
        if len(node) != 1 or markers[0] not in self.MARKERS:
            raise _Damaged(f"{STATE_FILE} has an unknown marker {markers[0]!r}")
        return self.MARKERS[markers[0]](self, node[markers[0]])

    def float_(self, body: Any) -> float:
        if body not in ("nan", "inf", "-inf"):
            raise _Damaged(f"{STATE_FILE} has a float marker of {body!r}")
        return float(body)

    def bytes_(self, body: Any) -> bytes:
        try:
            return base64.b64decode(body, validate=True)
        except (TypeError, ValueError):
            raise _Damaged(f"{STATE_FILE} has bytes that are not base64") from None

    def tuple_(self, body: Any) -> tuple:
        return tuple(self.decode(self.expect(body, list, "tuple")))

    def dict_(self, body: Any) -> dict:
        out = {}
        for pair in self.expect(body, list, "dict"):
            if not isinstance(pair, list) or len(pair) != 2:
                raise _Damaged(f"{STATE_FILE} has a dict entry that is not a [key, value] pair")
            key, value = self.decode(pair[0]), self.decode(pair[1])
            try:
                out[key] = value
            except TypeError:
                raise _Damaged(f"{STATE_FILE} has a dict key of type {type(key).__name__}") from None
        return out

    def ndarray(self, body: Any) -> np.ndarray:
        stored, dtype_str, shape = self.entry(body)
        try:
            dtype = np.dtype(dtype_str)
        except TypeError:
            dtype = None
        if dtype is None or dtype.str != dtype_str or dtype.kind not in "biufc" or dtype.shape != ():
            raise _Damaged(f"{STATE_FILE} names an array dtype {dtype_str!r} rlgen does not write")
        if dtype.isnative and dtype.type in _SAFE_NUMPY:
            self.check(stored, torch.from_numpy(np.empty(0, dtype)).dtype, shape)
            return stored.numpy()
        self.check_raw(stored, dtype.itemsize, shape)
        return stored.numpy().view(dtype).reshape(shape)

    def npscalar(self, body: Any) -> np.generic:
        array = self.ndarray(body)
        if array.shape != ():
            raise _Damaged(f"{STATE_FILE} has a numpy scalar of shape {array.shape}")
        return array[()]

    def tensor(self, body: Any) -> torch.Tensor:
        stored, dtype_str, shape = self.entry(body)
        dtype = _TORCH_DTYPES.get(dtype_str)
        if dtype is None:
            raise _Damaged(f"{STATE_FILE} names a tensor dtype {dtype_str!r} this torch does not have")
        if dtype in _SAFE_TORCH:
            self.check(stored, dtype, shape)
            return stored
        self.check_raw(stored, torch.empty(0, dtype=dtype).element_size(), shape)
        if stored.numel() == 0:  # an empty byte tensor has no stride torch can reinterpret
            return torch.empty(shape, dtype=dtype)
        return stored.view(dtype).reshape(shape)

    def entry(self, body: Any) -> tuple[torch.Tensor, str, list[int]]:
        """(stored tensor, dtype, shape) of an array or tensor marker, each used once (no aliasing)."""
        if not isinstance(body, dict) or set(body) != {"name", "dtype", "shape"}:
            raise _Damaged(f"{STATE_FILE} has an array marker without exactly name, dtype and shape")
        name, dtype, shape = body["name"], body["dtype"], body["shape"]
        if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                  for n in shape):
            raise _Damaged(f"{STATE_FILE} has an array shape {shape!r}")
        if not isinstance(dtype, str) or name not in self.tensors or name in self.used:
            raise _Damaged(f"{STATE_FILE} names tensor {name!r}, missing from {TENSORS_FILE} or named twice")
        self.used.add(name)
        return self.tensors[name], dtype, shape

    @staticmethod
    def check(stored: torch.Tensor, dtype: torch.dtype, shape: list[int]) -> None:
        if stored.dtype != dtype or list(stored.shape) != shape:
            raise _Damaged(f"a tensor of {TENSORS_FILE} is {stored.dtype} {list(stored.shape)}, "
                           f"{STATE_FILE} says {dtype} {shape}")

    @staticmethod
    def check_raw(stored: torch.Tensor, itemsize: int, shape: list[int]) -> None:
        if stored.dtype != torch.uint8 or list(stored.shape) != [math.prod(shape) * itemsize]:
            raise _Damaged(f"a tensor of {TENSORS_FILE} does not hold the {shape} items {STATE_FILE} says")

    @staticmethod
    def expect(body: Any, kind: type, what: str) -> Any:
        if not isinstance(body, kind):
            raise _Damaged(f"{STATE_FILE} has a {what} marker whose body is not a {kind.__name__}")
        return body

    MARKERS: ClassVar[dict[str, Callable[[_Decoder, Any], Any]]] = {
        "__float__": float_, "__bytes__": bytes_, "__tuple__": tuple_, "__dict__": dict_,
        "__ndarray__": ndarray, "__npscalar__": npscalar, "__tensor__": tensor,
    }
