"""Checkpoints are data, not code: the state serializer round-trips every kind it holds exactly and
returns fresh memory; a crafted, damaged, foreign or old checkpoint is refused with one line (exit 2
from the CLIs) and nothing in it runs."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_user_error, train_run
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from state_compare import assert_no_shared_memory, assert_same

from rlgen.checkpoint import LEGACY_FILE, STATE_FILE, TENSORS_FILE, load_state, save_state
from rlgen.errors import UserError


class Payload:
    """Unpickling this creates `marker` (a directory): a stand-in for what a crafted checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_the_payload_is_live_when_unpickled(tmp_path):
    """So that 'the marker was never created' below means the payload was never unpickled."""
    pickle.loads(pickle.dumps(Payload(tmp_path / "a")))
    torch.save({"num_steps": Payload(tmp_path / "b")}, tmp_path / LEGACY_FILE)
    torch.load(tmp_path / LEGACY_FILE, weights_only=False)
    assert (tmp_path / "a").exists() and (tmp_path / "b").exists()


# -- the serializer ----------------------------------------------------------------------------------


def every_kind() -> dict:
    rng = np.random.default_rng(0)
    rng.random(3)
    adam = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))])
    adam.param_groups[0]["params"][0].grad = torch.ones(3)
    adam.step()
    return {
        "int": 7, "big": 2**130, "negative big": -(2**100), "float": 0.1, "nan": float("nan"), "inf": float("inf"),
        "-inf": float("-inf"), "-0": -0.0, "str": "héllo", "bytes": b"\x00\xff", "none": None, "bools": [True, False],
        "tuple": (1, (2.5, "x"), []), 3: "an int key", "__looks_like_a_marker": {"__tuple__": 1},
        "pcg64": rng.bit_generator.state, "mt19937": np.random.RandomState(0).get_state(),
        "adam": adam.state_dict(), "ordered": OrderedDict(w=torch.ones(2)),
        "f64 transposed": np.arange(6.0).reshape(2, 3).T, "bool array": np.array([True, False]),
        "uint64": np.array([2**64 - 1], dtype=np.uint64), "int8": np.array([-128, 127], dtype=np.int8),
        "float16": np.array([1.5, np.nan, -np.inf], dtype=np.float16), "complex128": np.array([1 + 2j, -3j]),
        "complex64": np.array([1 + 2j], dtype=np.complex64), "long double": np.array([1.25], dtype=np.longdouble),
        "big-endian": np.array([1, 2], dtype=">i4"), "empty": np.zeros((0, 3)), "0-d": np.array(4.5),
        "np scalars": [np.float32(1.5), np.float64(2.5), np.int64(-3), np.uint8(255), np.bool_(True)],
        "torch rng": torch.get_rng_state(), "tensor 0-d": torch.tensor(3), "empty tensor": torch.zeros(0, 2),
        "bfloat16": torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "complex tensor": torch.tensor([1 + 1j]),
        "complex128 tensor": torch.tensor([1 - 1j], dtype=torch.complex128),
        "non-contiguous tensor": torch.arange(12.0).reshape(3, 4).t(), "tied": [torch.ones(2)] * 2,
    }


def test_every_kind_round_trips_exactly_in_fresh_memory(tmp_path):
    state = every_kind()
    save_state(tmp_path / "ck", state)
    loaded = load_state(tmp_path / "ck")
    assert_same(state, loaded)
    assert_no_shared_memory(state, loaded)
    loaded["tied"][0] += 1  # the same tensor twice in what was saved is two tensors in what is loaded
    assert loaded["tied"][1].tolist() == [1.0, 1.0]
    assert_same(load_state(tmp_path / "ck"), state)  # loading twice gives the same, apart again
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [STATE_FILE, TENSORS_FILE]


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                                   torch.uint16, torch.uint32, torch.uint64, torch.float16, torch.bfloat16,
                                   torch.float32, torch.float64, torch.complex64, torch.complex128,
                                   torch.float8_e4m3fn, torch.float8_e5m2])
def test_tensors_of_every_dtype_round_trip(tmp_path, dtype):
    state = {"t": torch.arange(6.0).reshape(2, 3).to(dtype), "scalar": torch.tensor(1.0).to(dtype)}
    save_state(tmp_path / "ck", state)
    assert_same(load_state(tmp_path / "ck"), state)


keys = st.one_of(st.text(max_size=6), st.integers(-(2**70), 2**70))
arrays = hnp.arrays(st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                              hnp.floating_dtypes(), hnp.complex_number_dtypes()),
                    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3))
leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), st.binary(max_size=8),
                   arrays, arrays.map(lambda a: torch.from_numpy(a.astype(a.dtype.newbyteorder("="))).clone()))
states = st.recursive(leaves, lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                                                      st.dictionaries(keys, inner, max_size=3)), max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(states)
def test_nested_states_round_trip_exactly(state):
    with tempfile.TemporaryDirectory() as tmp:
        save_state(Path(tmp) / "ck", state)
        loaded = load_state(Path(tmp) / "ck")
    assert_same(state, loaded)
    assert_no_shared_memory(state, loaded)


@pytest.mark.parametrize("value", [{1, 2}, np.array([object()]), np.array(["text"]), Payload(Path("x")), 1j])
def test_saving_what_a_checkpoint_cannot_hold_is_a_type_error_and_writes_nothing(tmp_path, value):
    with pytest.raises(TypeError, match="a checkpoint"):
        save_state(tmp_path / "ck", {"ok": 1, "bad": value})
    assert not (tmp_path / "ck").exists()


# -- damaged, foreign and old checkpoints --------------------------------------------------------------


def _rewrite_json(ck: Path, change) -> None:
    doc = json.loads((ck / STATE_FILE).read_text())
    change(doc)
    (ck / STATE_FILE).write_text(json.dumps(doc))


DAMAGE = {
    "no state.json": (lambda ck, m: (ck / STATE_FILE).unlink(), f"no {STATE_FILE}"),
    "no tensors file": (lambda ck, m: (ck / TENSORS_FILE).unlink(), f"no {TENSORS_FILE}"),
    "pickle as state.json": (lambda ck, m: (ck / STATE_FILE).write_bytes(pickle.dumps(Payload(m))), "not valid JSON"),
    "truncated state.json": (lambda ck, m: (ck / STATE_FILE).write_text((ck / STATE_FILE).read_text()[:40]),
                             "not valid JSON"),
    "pickle as tensors": (lambda ck, m: (ck / TENSORS_FILE).write_bytes(pickle.dumps(Payload(m))),
                          "not a valid safetensors file"),
    "truncated tensors": (lambda ck, m: (ck / TENSORS_FILE).write_bytes((ck / TENSORS_FILE).read_bytes()[:-7]),
                          "not a valid safetensors file"),
    "foreign json": (lambda ck, m: (ck / STATE_FILE).write_text('{"weights": [1, 2]}'), "layout"),
    "NaN literal": (lambda ck, m: (ck / STATE_FILE).write_text('{"format": NaN}'), "not valid JSON"),
    "newer format": (lambda ck, m: _rewrite_json(ck, lambda d: d.update(version=2)), "format version 2"),
    "unknown marker": (lambda ck, m: _rewrite_json(ck, lambda d: d["state"].update(x={"__pickle__": "gASV"})),
                       "unknown marker '__pickle__'"),
    "object dtype": (lambda ck, m: _rewrite_json(ck, lambda d: d["state"]["a"]["__ndarray__"].update(dtype="|O")),
                     "dtype '|O'"),
    "wrong shape": (lambda ck, m: _rewrite_json(ck, lambda d: d["state"]["a"]["__ndarray__"].update(shape=[4])),
                    "says"),
    "tensor named twice": (lambda ck, m: _rewrite_json(ck, lambda d: d["state"].update(b=d["state"]["a"])),
                           "named twice"),
    "tensor never named": (lambda ck, m: _rewrite_json(ck, lambda d: d["state"].pop("a")), "does not name"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_or_foreign_checkpoint_is_one_line_user_error(tmp_path, kind):
    damage, fragment = DAMAGE[kind]
    ck, marker = tmp_path / "ck", tmp_path / "marker"
    save_state(ck, {"a": np.arange(3.0), "n": 1})
    damage(ck, marker)
    with pytest.raises(UserError) as err:
        load_state(ck)
    message = str(err.value)
    assert message.startswith(f"checkpoint {ck} is damaged or not an rlgen checkpoint: ")
    assert fragment in message and "\n" not in message
    assert not marker.exists()


def test_an_old_pickle_checkpoint_loads_only_when_trusted(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    torch.save({"num_steps": 5, "V": np.zeros(3)}, ck / LEGACY_FILE)
    with pytest.raises(UserError, match="written by an older rlgen .* trust_checkpoint=true"):
        load_state(ck)
    assert load_state(ck, trust=True)["num_steps"] == 5


# -- through the command lines: nothing runs, one line, exit 2 ---------------------------------------------


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory) -> Path:
    return train_run(tmp_path_factory.mktemp("ck") / "run", "agent=q_learning", "env=GridWorld4x4",
                     "total_steps=300", "eval_every=0", "eval_episodes=1")


def _old_pickle(ck: Path, marker: Path) -> None:
    (ck / STATE_FILE).unlink()
    (ck / TENSORS_FILE).unlink()
    torch.save({"num_steps": Payload(marker)}, ck / LEGACY_FILE)


PLANTED = {
    "old pickle as agent.pt": (_old_pickle, "written by an older rlgen"),
    **{kind: DAMAGE[kind] for kind in ("pickle as tensors", "pickle as state.json", "truncated tensors",
                                       "truncated state.json")},
}


def _planted_copy(tabular_run: Path, tmp_path: Path, kind: str) -> tuple[Path, Path, str]:
    run = tmp_path / "run"
    shutil.copytree(tabular_run, run)
    plant, fragment = PLANTED[kind]
    plant(run / "checkpoint", tmp_path / "marker")
    return run, tmp_path / "marker", fragment


def _evaluate_in_process(capsys, *args: str):
    from conftest import Exit

    from rlgen.evaluate import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    captured = capsys.readouterr()
    return Exit(int(exit_.value.code or 0), captured.out, captured.err)


@pytest.mark.parametrize("kind", list(PLANTED))
def test_evaluate_and_resume_refuse_a_planted_checkpoint(tabular_run, tmp_path, kind, capsys, main_in_process):
    run, marker, fragment = _planted_copy(tabular_run, tmp_path, kind)
    assert_user_error(_evaluate_in_process(capsys, f"run={run}", "episodes=1"), fragment)
    assert_user_error(main_in_process(f"resume={run}"), fragment)
    assert not marker.exists()


@pytest.mark.parametrize("kind", [k for k in PLANTED if k != "old pickle as agent.pt"])
def test_resume_refuses_a_planted_env_state(tabular_run, tmp_path, kind, main_in_process):
    """The training envs' state (env_state/, read back on resume) is data too."""
    run = tmp_path / "run"
    shutil.copytree(tabular_run, run)
    assert (run / "env_state" / STATE_FILE).is_file()
    plant, fragment = PLANTED[kind]
    plant(run / "env_state", tmp_path / "marker")
    before = {p: p.read_bytes() for p in run.rglob("*.csv")}
    assert_user_error(main_in_process(f"resume={run}", "total_steps=600"), fragment)
    assert not (tmp_path / "marker").exists()
    assert {p: p.read_bytes() for p in run.rglob("*.csv")} == before


def test_the_python_m_commands_refuse_an_old_pickle(tabular_run, tmp_path):
    run, marker, fragment = _planted_copy(tabular_run, tmp_path, "old pickle as agent.pt")
    for command in (["rlgen.evaluate", f"run={run}", "episodes=1"], ["rlgen.train", f"resume={run}"]):
        out = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=120)
        assert_user_error(out, fragment, "trust_checkpoint=true")
    assert not marker.exists()


# -- what else rlgen reads from disk --------------------------------------------------------------------


def test_the_bench_report_refuses_a_pickled_npy_with_one_line(tmp_path, capsys):
    from rlgen import bench
    from rlgen.benchreport import tabular_metrics

    suite = tmp_path / "tiny.yaml"
    suite.write_text("name: tiny\nagents: [value_iteration]\nenvs: [GridWorld4x4]\nseeds: [0]\nsteps: {all: 5}\n"
                     "metric: dp_error\noverrides: {all: [eval_every=0, eval_episodes=1]}\n")
    args = [str(suite), "workers=1", f"logdir={tmp_path / 'runs'}", f"out={tmp_path / 'report'}"]
    with pytest.raises(SystemExit) as exit_:
        bench.main(args)
    assert exit_.value.code == 0
    [q_file] = (tmp_path / "runs").rglob("q_values.npy")
    marker = tmp_path / "marker"
    np.save(q_file, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="allow_pickle"):
        np.load(q_file)  # numpy's default already refuses
    with pytest.raises(UserError, match="q_values.npy|allow_pickle"):
        tabular_metrics(q_file.parent, 0.99)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        bench.main([*args, "report_only=true"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "allow_pickle=False" in err
    assert not marker.exists()


def test_a_planted_sft_cache_is_refused_by_train_and_not_run(tmp_path, main_in_process):
    from test_checkpoint_roundtrip import RLHF

    tiny = ["agent=rlhf", *RLHF, f"agent.cache_dir={tmp_path / 'cache'}", "progress=false", "eval_every=0",
            "eval_episodes=1"]
    assert main_in_process(*tiny, f"run_dir={tmp_path / 'first'}").returncode == 0
    [cache] = (tmp_path / "cache").glob("sft-*")
    assert sorted(p.name for p in cache.iterdir()) == [STATE_FILE, TENSORS_FILE]  # weights and stats as data
    marker = tmp_path / "marker"
    (cache / TENSORS_FILE).write_bytes(pickle.dumps(Payload(marker)))
    out = main_in_process(*tiny, f"run_dir={tmp_path / 'second'}")
    assert_user_error(out, f"checkpoint {cache} is damaged or not an rlgen checkpoint", "delete that SFT cache")
    assert not marker.exists()
