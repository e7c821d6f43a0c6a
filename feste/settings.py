"""A settings dataclass on the command line and in config files (SPEC §command-line).

The dataclass is the one description of its settings: each field's name gives
its flag (`max_steps` -> `--max-steps`), its annotation the type (int, float,
str, bool, optionally `| None`), its default the default, and the comment
after it on the same line the help text, read from the class's source:

    lr: float = 1e-3  # peak learning rate

Nothing is listed twice, so flags, config keys, help and defaults cannot
drift from the dataclass. A config file is TOML (`tomllib`) whose keys are
field names, or a JSON object of them; a JSON file with a "settings" object
(a run's run.json) gives that object.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import math
import textwrap
import tokenize
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from reference.input_checks import read_regular, strict_json

NONE_WORD = "none"  # on the command line (and as a config string) an optional field's None


@dataclass(frozen=True)
class SettingField:
    """One field of a settings dataclass, as the command line and config files see it."""

    name: str
    kind: type  # int, float, str or bool
    optional: bool  # `| None`: the value may be None
    default: object
    help: str  # the field's comment

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def field_comments(cls) -> dict[str, str]:
    """{field name: the comment after it on its line} from the class's source."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    body = ast.parse(source).body[0].body
    return {node.target.id: comments[node.end_lineno] for node in body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.end_lineno in comments}


def setting_fields(cls) -> list[SettingField]:
    """The fields of a settings dataclass, in order; TypeError for a field with no
    comment or a type the command line cannot hold (the dataclass is then wrong)."""
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    fields = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
            else (hint,)
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) != 1 or kinds[0] not in (int, float, str, bool):
            raise TypeError(f"{cls.__name__}.{f.name}: type {hint} is not int, float, str or bool (or | None)")
        if f.name not in comments:
            raise TypeError(f"{cls.__name__}.{f.name} has no comment: it is the field's help text")
        if f.default is dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has no default")
        fields.append(SettingField(f.name, kinds[0], len(kinds) < len(args), f.default, comments[f.name]))
    return fields


# --- values: from text (flags) and from config files ---------------------------------------
def parse_text(field: SettingField, text: str):
    """A flag's value: the field's type, or None for "none" when the field is optional."""
    if field.optional and text.lower() == NONE_WORD and field.kind is not str:
        return None
    if field.kind is int:
        try:
            return int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if field.kind is float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        return value
    return text


def check_value(field: SettingField, value, where: str):
    """A config file's value for `field`, type-checked (ints are accepted for floats;
    for an optional field, null or the string "none" is None). ValueError naming `where`."""
    if value is None or (field.optional and field.kind is not str and isinstance(value, str)
                         and value.lower() == NONE_WORD):
        if field.optional:
            return None
        raise ValueError(f"{where}: {field.name} cannot be none (expected {field.kind.__name__})")
    ok = {int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          str: isinstance(value, str), bool: isinstance(value, bool)}[field.kind]
    if not ok:
        raise ValueError(f"{where}: {field.name} must be {field.kind.__name__}"
                         f"{' or none' if field.optional else ''}, got {value!r}")
    return float(value) if field.kind is float else value


def read_config(path, cls, run_json_drops=frozenset()) -> dict:
    """{field: value} from a TOML file, or a JSON object (a run.json: its "settings",
    less the keys `run_json_drops`), every key a field of `cls` and every value of
    its type. ValueError naming the file and the key otherwise."""
    path = Path(path)
    data = read_regular(path, "config")  # a regular file: a FIFO or device would block or never end
    try:
        if path.suffix.lower() == ".json":
            doc = strict_json(data)  # duplicate keys, NaN and deep nesting are errors, as in run.json
            if isinstance(doc, dict) and isinstance(doc.get("settings"), dict):
                doc = {k: v for k, v in doc["settings"].items() if k not in run_json_drops}  # a run.json
        else:
            doc = tomllib.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"config {path}: nested too deeply") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:  # JSONDecodeError, UnicodeDecodeError, strict_json
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise ValueError(f"config {path}: not valid {kind}: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"config {path}: expected a table of settings, got {type(doc).__name__}")
    fields = {f.name: f for f in setting_fields(cls)}
    values = {}
    for key, value in doc.items():
        if key not in fields:
            near = [n for n in fields if n.replace("_", "") == key.replace("_", "").replace("-", "")]
            hint = f" (did you mean {near[0]}?)" if near else f"; known: {', '.join(fields)}"
            raise ValueError(f"config {path}: unknown setting {key!r}{hint}")
        values[key] = check_value(fields[key], value, f"config {path}")
    return values


# --- argparse ------------------------------------------------------------------------------
GIVEN = "given_settings"  # namespace attribute: {field: the flag it was given as}


def _mark_given(namespace, name: str, option_string: str) -> None:
    given = getattr(namespace, GIVEN, None)
    if given is None:
        given = {}
        setattr(namespace, GIVEN, given)
    given[name] = option_string


class _Store(argparse.Action):
    """store, and remember that the flag was given (its value may be None: "--top-k none")."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _mark_given(namespace, self.dest, option_string)


class _StoreBool(argparse.BooleanOptionalAction):
    def __call__(self, parser, namespace, values, option_string=None):
        super().__call__(parser, namespace, values, option_string)
        _mark_given(namespace, self.dest, option_string)


def _show(field: SettingField) -> str:
    if field.default is None:
        return NONE_WORD
    if field.kind is str:
        return repr(field.default)
    if field.kind is bool:
        return "on" if field.default else "off"
    return str(field.default)


def add_setting_arguments(parser: argparse.ArgumentParser, cls, aliases: dict | None = None,
                          metavars: dict | None = None, choices: dict | None = None) -> list[SettingField]:
    """One flag per field (default None; `given_values` lists the flags actually
    given, so files and earlier layers are overridden only by those). `aliases` adds older flag names
    ({"max_steps": ("--steps",)}); `metavars` and `choices` refine the display.
    Booleans get --name / --no-name."""
    aliases, metavars, choices = aliases or {}, metavars or {}, choices or {}
    fields = setting_fields(cls)
    known = {f.name for f in fields}
    for table in (aliases, metavars, choices):
        stray = set(table) - known
        if stray:
            raise TypeError(f"{cls.__name__} has no field(s) {sorted(stray)}")
    for field in fields:
        flags = [*aliases.get(field.name, ()), field.flag]
        accepts_none = "; accepts none" if field.optional and field.kind is not str else ""
        text = f"{field.help} (default: {_show(field)}{accepts_none})"
        if field.kind is bool:
            parser.add_argument(*flags, dest=field.name, action=_StoreBool, default=None,
                                help=text)
            continue
        metavar = metavars.get(field.name, None if field.name in choices else
                               {int: "N", float: "X", str: "TEXT"}[field.kind])
        parser.add_argument(*flags, dest=field.name, action=_Store, default=None, metavar=metavar,
                            choices=choices.get(field.name),
                            type=lambda s, f=field: parse_text(f, s), help=text)
    return fields


def given_values(args, fields: list[SettingField]) -> dict:
    """{field: value} of the flags given on the command line, in field order."""
    given = getattr(args, GIVEN, {})
    return {f.name: getattr(args, f.name) for f in fields if f.name in given}


def given_flags(args) -> dict[str, str]:
    """{field: the flag it was given as} ("--steps" or "--max-steps")."""
    return dict(getattr(args, GIVEN, {}))
