"""rlgen.bandit_testbed's command line: sizes, kinds, agent specs and out= are checked before any work."""

from __future__ import annotations

import pytest
from conftest import Exit, assert_user_error

from rlgen import bandit_testbed
from rlgen.agents.bandit import UCB, GradientBandit


@pytest.fixture
def testbed(capsys, monkeypatch):
    """The entry point, with run_testbed counting its calls: a mistake must cost no computation."""
    calls: list[str] = []
    real = bandit_testbed.run_testbed

    def counted(spec: str, *args, **kwargs):
        calls.append(spec)
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(bandit_testbed, "run_testbed", counted)

    def call(*argv: str) -> tuple[Exit, list[str]]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            bandit_testbed.main(list(argv))
        captured = capsys.readouterr()
        return Exit(int(exit_.value.code or 0), captured.out, captured.err), calls

    return call


@pytest.mark.parametrize("argv, message", [
    (["problems=0"], "problems must be positive, got 0"),
    (["steps=-5"], "steps must be positive, got -5"),
    (["k=0"], "k must be positive, got 0"),
    (["kind=gausian"], "unknown kind 'gausian' (did you mean 'gaussian'?); available: bernoulli, gaussian"),
    (["agents=epsilon_greedy:epsilon=0.1,usb:c=2"], "unknown bandit agent 'usb' (did you mean 'ucb'?)"),
    (["agents=ucb:c=1,alpha=0.1"], "'alpha=0.1' is not an agent spec: write name:field=value[:field=value ...]"),
    (["agents=ucb:cc=1"], "agent 'ucb:cc=1': ucb has no field 'cc' (did you mean 'c'?)"),
    (["agents=ucb:c=big"], "agent 'ucb:c=big': c: Value 'big' of type 'str' could not be converted to Float"),
    (["agents="], "agents is empty"),
    (["--problems", "10"], "'--problems' is a flag; settings are key=value: write problems=<value>"),
    (["--out=figs"], "write out=figs"),
])
def test_a_mistake_is_one_line_and_nothing_is_computed(testbed, argv, message):
    out, calls = testbed(*argv)
    assert_user_error(out, message)
    assert calls == [] and out.stdout == ""


def test_out_must_be_a_writable_directory_before_anything_is_computed(testbed, tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a directory")
    for out, message in [(a_file, "is not a directory"), (a_file / "figs", "is not a writable directory"),
                         (tmp_path / "testbed.png", "names a file: out is the directory testbed.png is written to")]:
        result, calls = testbed("problems=10", "steps=10", f"out={out}")
        assert_user_error(result, f"out={out}", message)
        assert calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_small_testbed_writes_its_plot_into_out(testbed, tmp_path):
    out, calls = testbed("problems=20", "steps=30", "k=4", "kind=bernoulli",
                         "agents=ucb:c=2,gradient_bandit:alpha=0.25:baseline=false", f"out={tmp_path / 'figs'}")
    assert out.returncode == 0 and out.stderr == ""
    assert calls == ["ucb:c=2", "gradient_bandit:alpha=0.25:baseline=false"]
    assert (tmp_path / "figs" / "testbed.png").stat().st_size > 10_000
    assert "nan" not in out.stdout.lower() and f"plot: {tmp_path / 'figs' / 'testbed.png'}" in out.stdout


def test_agent_spec_fields_keep_their_types():
    rule, config, label = bandit_testbed.parse_agent("gradient_bandit:alpha=0.25:baseline=false")
    assert rule is GradientBandit and label == "gradient_bandit:alpha=0.25:baseline=false"
    assert config.alpha == 0.25 and config.baseline is False
    rule, config, _ = bandit_testbed.parse_agent("ucb:c=1")
    assert rule is UCB and config.c == 1.0 and config.alpha == 0.0
