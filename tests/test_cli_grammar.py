"""One key=value grammar for every command line: values typed by a dataclass, every mistake one line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from conftest import Exit, assert_user_error
from omegaconf import MISSING

from rlgen import bandit_testbed, bench, evaluate
from rlgen.cli import parse_settings
from rlgen.errors import UserError


@dataclass
class Schema:
    """A schema that uses every kind of value."""

    name: str = MISSING
    """required text"""
    seed: int = 0
    """an integer"""
    rate: float = 0.5
    flag: bool = False
    """a boolean, written
    over two lines"""
    label: str | None = None
    ids: list[int] = field(default_factory=lambda: [1, 2])

    def __post_init__(self) -> None:
        if self.rate > 1:
            raise UserError(f"rate must be <= 1, got {self.rate}")


def parse(*argv: str) -> Schema:
    return parse_settings(list(argv), Schema, "python -m rlgen.example")


def test_values_are_typed_by_the_schema():
    assert parse("name=a", "seed=3", "rate=1e-3", "flag=true", "label=x", "ids=4,5") == Schema(
        name="a", seed=3, rate=0.001, flag=True, label="x", ids=[4, 5])
    assert parse("name=a") == Schema(name="a")
    assert parse("name=a", "flag=False", "label=null", "ids=") == Schema(name="a", flag=False, label=None, ids=[])
    assert parse("ids=7", "name=a=b").ids == [7] and parse("name=a=b").name == "a=b"


@pytest.mark.parametrize("argv, message", [
    (["name=a", "seed"], "setting 'seed' has no value: write seed=<int>"),
    (["name=a", "bogus"], "'bogus' is not a setting: write key=value; settings: name, seed, rate, flag, label, ids"),
    (["name=a", "sead=1"],
     "unknown setting 'sead' (did you mean 'seed'?); settings: name, seed, rate, flag, label, ids"),
    (["name=a", "seed=abc"], "seed: Value 'abc' of type 'str' could not be converted to Integer"),
    (["name=a", "seed=1.5"], "seed: Value '1.5' of type 'str' could not be converted to Integer"),
    (["name=a", "rate=fast"], "rate: Value 'fast' of type 'str' could not be converted to Float"),
    (["name=a", "flag=ture"], "flag: Value 'ture' is not a valid bool: write true or false"),
    (["name=a", "flag=yes"], "flag: Value 'yes' is not a valid bool"),
    (["name=a", "flag=1"], "flag: Value '1' is not a valid bool"),
    (["seed=1"], "missing setting name=<str>: required text"),
    (["name=a", "seed=1", "seed=2"], "setting 'seed' given twice (seed=1 and seed=2)"),
    (["name=a", "ids=[1,2]"], "ids: write a list comma-separated without brackets, e.g. ids=a,b"),
    (["name=a", "ids=1,x"], "ids[1]: Value 'x' of type 'str' could not be converted to Integer"),
    (["name=a", "rate=2"], "rate must be <= 1, got 2.0"),
    (["name=a", "--seed", "3"], "'--seed' is a flag; settings are key=value: write seed=<value>"),
    (["name=a", "--seed=3"], "write seed=3"),
    (["--sed=3"], "'--sed=3' is a flag; settings are key=value (did you mean 'seed'?)"),
])
def test_every_mistake_is_one_line(argv, message):
    with pytest.raises(UserError, match=re.escape(message)) as err:
        parse(*argv)
    assert "\n" not in str(err.value)


def test_help_is_built_from_the_schema_and_its_docstrings(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("seed=abc", "--help")
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m rlgen.example [key=value ...]\n\nA schema that uses every kind of value.")
    for line in ["  name: str (required)\n      required text", "  seed: int = 0\n      an integer",
                 "  rate: float = 0.5\n  flag: bool = false\n      a boolean, written over two lines",
                 "  label: str | None = null", "  ids: list[int] = 1,2", "lists are comma-separated (a,b)"]:
        assert line in text


def call(main, capsys, *argv: str) -> Exit:
    """A command's entry point called in this process; any exception but its exit fails the test."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    captured = capsys.readouterr()
    return Exit(int(exit_.value.code or 0), captured.out, captured.err)


COMMANDS = {"evaluate": evaluate.main, "bench": bench.main, "bandit_testbed": bandit_testbed.main}


@pytest.mark.parametrize("command, argv, message", [
    ("evaluate", ["run=r", "epsiodes=3"], "unknown setting 'epsiodes' (did you mean 'episodes'"),
    ("evaluate", ["run=r", "episodes=many"], "episodes: Value 'many' of type 'str' could not be converted"),
    ("evaluate", ["run=r", "video=yes"], "video: Value 'yes' is not a valid bool"),
    ("evaluate", ["run=r", "trust_checkpoint=ture"], "trust_checkpoint: Value 'ture' is not a valid bool"),
    ("evaluate", ["episodes=3"], "missing setting run=<str>: the run directory a training run wrote"),
    ("evaluate", ["runs/CartPole/ppo"], "'runs/CartPole/ppo' is not a setting: write key=value"),
    ("evaluate", ["run=r", "episodes=0"], "episodes must be positive, got 0"),
    ("evaluate", ["run=/no/such/run"], "no such run directory '/no/such/run'"),
    ("bench", ["smoke", "report_onyl=true"], "unknown setting 'report_onyl' (did you mean 'report_only'"),
    ("bench", ["smoke", "workers=two"], "workers: Value 'two' of type 'str' could not be converted to Integer"),
    ("bench", ["smoke", "report_only=ture"], "report_only: Value 'ture' is not a valid bool"),
    ("bench", ["smoke", "force=yes"], "force: Value 'yes' is not a valid bool"),
    ("bench", [], "the suite comes first: python -m rlgen.bench <suite> [key=value ...]; suites: "),
    ("bench", ["seeds=2"], "the suite comes first"),
    ("bench", ["smoke", "seeds"], "setting 'seeds' has no value: write seeds=<int>"),
    ("bench", ["smoke", "budget_scale=0"], "budget_scale must be in (0, 1], got 0.0"),
    ("bandit_testbed", ["problms=10"], "unknown setting 'problms' (did you mean 'problems'"),
    ("bandit_testbed", ["steps=1e3"], "steps: Value '1e3' of type 'str' could not be converted to Integer"),
    ("bandit_testbed", ["agents=gradient_bandit:baseline=yes"],
     "agent 'gradient_bandit:baseline=yes': baseline: Value 'yes' is not a valid bool"),
    ("bandit_testbed", ["kind"], "setting 'kind' has no value: write kind=<str>"),
    ("bandit_testbed", ["--problems", "2000"], "'--problems' is a flag; settings are key=value: write problems="),
])
def test_each_command_answers_a_mistake_with_one_line_and_exit_2(command, argv, message, capsys):
    assert_user_error(call(COMMANDS[command], capsys, *argv), message)


@pytest.mark.parametrize("command, lines", [
    ("evaluate", ["usage: python -m rlgen.evaluate [key=value ...]", "  run: str (required)",
                  "  trust_checkpoint: bool = false"]),
    ("bench", ["usage: python -m rlgen.bench <suite> [key=value ...]", "  force: bool = false",
               "  agents: list[str] = \n      a subset of the suite's agents", "\nsuites: ", "smoke"]),
    ("bandit_testbed", ["usage: python -m rlgen.bandit_testbed [key=value ...]", "  problems: int = 2000",
                        "  out: str = .\n      directory testbed.png is written to"]),
])
def test_each_command_prints_its_settings_on_help(command, lines, capsys):
    out = call(COMMANDS[command], capsys, "--help")
    assert out.returncode == 0 and out.stderr == ""
    for line in lines:
        assert line in out.stdout
