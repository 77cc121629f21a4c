"""Every `python -m rlgen.train` command in README.md composes its config (`--cfg`, in-process), so a
README command cannot drift from the CLI. The README's Python files (a ```python block whose first
line is `# <name>.py...`) are written next to the commands first, as a reader would save them; its
other Python snippets are run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from conftest import Exit

README = Path(__file__).resolve().parent.parent / "README.md"
PREFIX = "python -m rlgen.train"
FILE_HEADER = re.compile(r"# ([\w.]+\.py)\b")
"""the first line of a Python block that is a file to save"""


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def readme_commands(text: str) -> list[str]:
    """The training commands of the README's code blocks, their trailing comments cut off. A command
    with a placeholder (`<run dir>`) names something only the reader has, and is left out."""
    commands = []
    for _, body in code_blocks(text):
        for line in body.splitlines():
            command = line.split(" #")[0].strip()
            if command.startswith(PREFIX) and "<" not in command:
                commands.append(command)
    return commands


def readme_files(text: str) -> dict[str, str]:
    """File name -> source for the README's Python files."""
    files = {}
    for language, body in code_blocks(text):
        named = FILE_HEADER.match(body)
        if language == "python" and named:
            files[named.group(1)] = body
    return files


@pytest.fixture
def readme_folder(tmp_path, monkeypatch):
    """A fresh working directory holding the README's Python files, importable from there; the
    modules and the env ids they register are forgotten afterwards, so no other test sees them."""
    files = readme_files(README.read_text())
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    registered = set(gym.registry)
    yield tmp_path
    for env_id in set(gym.registry) - registered:
        del gym.registry[env_id]
    for name in files:
        sys.modules.pop(Path(name).stem, None)


def test_the_readme_has_commands_and_files_to_check():
    commands = readme_commands(README.read_text())
    assert len(commands) >= 15, commands
    assert any(":" in c.split("env=")[-1].split()[0] for c in commands if "env=" in c), "no own-env command"
    assert "my_envs.py" in readme_files(README.read_text())


def test_comments_and_placeholders_are_not_part_of_a_command():
    text = "```\npython -m rlgen.train agent=ppo   # tuned\npython -m rlgen.train resume=<run dir>\n```\n"
    assert readme_commands(text) == ["python -m rlgen.train agent=ppo"]


@pytest.mark.parametrize("command", readme_commands(README.read_text()))
def test_every_readme_training_command_composes(command, readme_folder, main_in_process):
    out: Exit = main_in_process(*shlex.split(command)[len(PREFIX.split()):], "--cfg")
    assert out.returncode == 0, f"{command}\n{out.stderr}"
    assert out.stderr == "", out.stderr
    assert not any(readme_folder.glob("runs")), "--cfg must not start a run"


def readme_snippets(text: str) -> list[str]:
    """The README's Python code that is not a file to save: run as it is written."""
    return [body for language, body in code_blocks(text) if language == "python" and not FILE_HEADER.match(body)]


@pytest.mark.parametrize("snippet", readme_snippets(README.read_text()))
def test_every_readme_python_snippet_runs(snippet, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(README.parent), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
