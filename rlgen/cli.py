"""One grammar for the command lines: `key=value` settings, typed by a dataclass schema.

    python -m rlgen.<command> key=value key=value ...

A value is typed by its field through OmegaConf structured configs: int, float, str, a boolean
(`true` or `false`, nothing else), `X | None` (`key=null` for none) and lists, written
comma-separated without brackets (`agents=ppo,dqn`; `agents=` is the empty list): commas need no
quoting in any shell, while zsh reads `[a,b]` as a glob. Each setting is given at most once.

Every mistake (a token without `=`, an unknown or repeated setting, a value of the wrong type, a
missing required setting, a range check in the schema's `__post_init__`) is a UserError: one line.
`-h` / `--help` prints a usage text built from the schema: its docstring, and per field the type,
the default and the docstring written under the field.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
import textwrap
import types
from typing import Any, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from rlgen.errors import UserError, did_you_mean

T = TypeVar("T")

LISTS = "lists are comma-separated (a,b), booleans true or false, null clears an optional setting"


def parse_settings(argv: list[str], schema: type[T], command: str) -> T:
    """The schema's instance for `argv` (key=value tokens); `-h`/`--help` prints the usage and exits 0."""
    if "-h" in argv or "--help" in argv:
        print(usage(schema, command))
        sys.exit(0)
    names = [f.name for f in dataclasses.fields(schema)]
    given: dict[str, str] = {}
    for token in argv:
        key, sep, value = token.partition("=")
        if token.startswith("-"):
            raise _flag_error(token, names)
        if not sep and token in names:
            hint = type_name(get_type_hints(schema)[token])
            raise UserError(f"setting '{token}' has no value: write {token}=<{hint}>")
        if not sep:
            raise UserError(f"'{token}' is not a setting: write key=value; settings: {', '.join(names)}")
        if key not in names:
            raise UserError(f"unknown setting '{key}'{did_you_mean(key, names)}; settings: {', '.join(names)}")
        if key in given:
            raise UserError(f"setting '{key}' given twice ({key}={given[key]} and {token}); give it once")
        given[key] = value
    return build_settings(schema, given)


def build_settings(schema: type[T], given: dict[str, str]) -> T:
    """The schema's instance with the fields in `given` (field name -> text) converted to their types."""
    cfg = OmegaConf.structured(schema)
    hints = get_type_hints(schema)
    for key, text in given.items():
        try:
            cfg[key] = _value(key, text, hints[key])
        except OmegaConfBaseException as err:
            raise UserError(explain_config_error(err)) from None
    missing = [f for f in dataclasses.fields(schema) if f.name in OmegaConf.missing_keys(cfg)]
    if missing:
        f = missing[0]
        doc = field_docs(schema)[1].get(f.name)
        raise UserError(f"missing setting {f.name}=<{type_name(hints[f.name])}>" + (f": {doc}" if doc else ""))
    return cast(T, OmegaConf.to_object(cfg))  # builds the dataclass: its __post_init__ checks ranges


def explain_config_error(err: Exception) -> str:
    """OmegaConf's multi-line errors, folded into one line a user can act on."""
    cause = err.__cause__ or err
    lines = [ln.strip() for ln in str(cause).splitlines() if ln.strip()]
    key = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("full_key:")), None)
    first = lines[0] if lines else type(cause).__name__
    return f"{key}: {first}" if key else first


def _value(key: str, text: str, hint: Any) -> Any:
    """The text as OmegaConf should receive it: None, a list of texts, or the text itself."""
    inner = _optional_of(hint)
    if inner is not None:
        if text == "null":
            return None
        hint = inner
    if get_origin(hint) is list:
        if text.startswith("["):
            raise UserError(f"{key}: write a list comma-separated without brackets, e.g. {key}=a,b")
        items = text.split(",") if text else []
        for item in items:
            _check_bool(key, item, get_args(hint)[0])
        return items
    _check_bool(key, text, hint)
    return text


def _check_bool(key: str, text: str, hint: Any) -> None:
    # OmegaConf also takes yes/no/on/off/1/0; one spelling per value keeps `report_only=ture` or
    # `video=yes` from being read as something the user did not write
    if hint is bool and text.lower() not in ("true", "false"):
        raise UserError(f"{key}: Value '{text}' is not a valid bool: write true or false")


def _optional_of(hint: Any) -> Any | None:
    """X for `X | None`, else None."""
    if get_origin(hint) in (Union, types.UnionType):
        rest = [a for a in get_args(hint) if a is not type(None)]
        if len(rest) == 1 and len(get_args(hint)) == 2:
            return rest[0]
    return None


def _flag_error(token: str, names: list[str]) -> UserError:
    """`--steps 1000` or `--steps=1000`: the old flag form, answered with the key=value form."""
    name, _, value = token.lstrip("-").partition("=")
    name = name.replace("-", "_")
    if name in names:
        return UserError(f"'{token}' is a flag; settings are key=value: write {name}={value or '<value>'}")
    return UserError(f"'{token}' is a flag; settings are key=value{did_you_mean(name, names)}; "
                     f"settings: {', '.join(names)}")


def type_name(hint: Any) -> str:
    """`int`, `list[str]`, `float | None`: the type as a user reads it."""
    if get_origin(hint) in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(hint))
    if get_origin(hint) is list:
        return f"list[{type_name(get_args(hint)[0])}]"
    if hint is type(None):
        return "None"
    return getattr(hint, "__name__", str(hint))


def field_docs(schema: type) -> tuple[str, dict[str, str]]:
    """(class docstring, {field: the docstring written under it}), read from the source of the
    schema and of its dataclass bases; nothing when the source cannot be read."""
    class_doc, docs = "", {}
    for klass in reversed(schema.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        node = next(n for n in tree.body if isinstance(n, ast.ClassDef))
        class_doc = ast.get_docstring(node) or ""
        for stmt, after in zip(node.body, node.body[1:], strict=False):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[stmt.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return class_doc, docs


def _default(f: dataclasses.Field) -> str:
    """' = <default>' as it would be written on the command line, or ' (required)'."""
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    elif f.default is dataclasses.MISSING or f.default == MISSING:
        return " (required)"
    else:
        value = f.default
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, list):
        text = ",".join(str(v) for v in value)
    else:
        text = "null" if value is None else str(value)
    return f" = {text}"


def usage(schema: type, command: str) -> str:
    class_doc, docs = field_docs(schema)
    hints = get_type_hints(schema)
    lines = [f"usage: {command} [key=value ...]", ""]
    if class_doc:
        lines += [class_doc, ""]
    lines.append("settings:")
    for f in dataclasses.fields(schema):
        lines.append(f"  {f.name}: {type_name(hints[f.name])}{_default(f)}")
        if f.name in docs:
            lines += textwrap.wrap(docs[f.name], width=100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join([*lines, "", LISTS])
