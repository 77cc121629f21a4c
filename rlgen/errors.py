"""User mistakes: one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Iterable
from functools import wraps


class UserError(Exception):
    """A mistake the user can fix; its message is the one line they will see."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the nearest valid names, or '' when nothing is close."""
    choices = sorted(choices)
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if not near:
        lowered = {c.lower(): c for c in choices}
        near = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.5)]
    return f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UserError:
    choices = sorted(choices)
    return UserError(f"unknown {kind} '{name}'{did_you_mean(name, choices)}; available: {', '.join(choices)}")


def cli_main(fn: Callable[[list[str]], int | None]) -> Callable[[list[str] | None], None]:
    """Run a CLI entry point: a UserError becomes one line on stderr and exit status 2."""

    @wraps(fn)
    def run(argv: list[str] | None = None) -> None:
        try:
            code = fn(sys.argv[1:] if argv is None else argv)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        except BrokenPipeError:
            # whoever read the output stopped (`| head`): no traceback, and none when Python flushes stdout
            # at exit either (the recipe of Python's signal module docs, "Note on SIGPIPE")
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        sys.exit(code or 0)

    return run
