"""Exact comparison of nested states (checkpoints, state_dicts) and a check that two share no memory."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

byte_bounds = getattr(getattr(np.lib, "array_utils", None), "byte_bounds", None) or np.byte_bounds  # numpy < 2


def assert_same(a: Any, b: Any, path: str = "") -> None:
    """a and b are equal exactly: same types, dict keys (and their types), dtypes, shapes and bits
    (nan equals nan, -0.0 differs from 0.0). A plain dict and an OrderedDict count as the same."""
    where = path or "/"
    if isinstance(a, dict) and isinstance(b, dict):
        assert [(type(k), k) for k in a] == [(type(k), k) for k in b], f"keys differ at {where}"
        for k in a:
            assert_same(a[k], b[k], f"{path}/{k}")
        return
    assert type(a) is type(b), f"{type(a).__name__} != {type(b).__name__} at {where}"
    if isinstance(a, list | tuple):
        assert len(a) == len(b), f"lengths differ at {where}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}/{i}")
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{a.dtype}{a.shape} != {b.dtype}{b.shape} at {where}"
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), f"values differ at {where}"
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{a.dtype}{a.shape} != {b.dtype}{b.shape} at {where}"
        assert torch.equal(_bytes(a), _bytes(b)), f"values differ at {where}"
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b)), \
            f"{a!r} != {b!r} at {where}"
    else:
        assert a == b, f"{a!r} != {b!r} at {where}"


def _bytes(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8) if flat.numel() else torch.empty(0, dtype=torch.uint8)


def buffers(state: Any) -> Iterator[tuple[int, int]]:
    """(start, end) addresses of the memory behind every non-empty array and tensor in `state`."""
    if isinstance(state, dict):
        for v in state.values():
            yield from buffers(v)
    elif isinstance(state, list | tuple):
        for v in state:
            yield from buffers(v)
    elif isinstance(state, np.ndarray) and state.nbytes:
        yield byte_bounds(state)
    elif isinstance(state, torch.Tensor) and state.untyped_storage().nbytes():
        storage = state.untyped_storage()
        yield storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def assert_no_shared_memory(a: Any, b: Any) -> None:
    """No array or tensor of `a` overlaps in memory with one of `b`."""
    ours = list(buffers(a))
    for start, end in buffers(b):
        assert not any(s < end and start < e for s, e in ours), "the two states share memory"
