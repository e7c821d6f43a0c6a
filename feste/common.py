"""What the subcommands share: the implementation choice, argument types with
range checks, one-line usage errors, the corpus source, file checks."""
from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import math
import os
import platform
import re
import sys
from pathlib import Path

from reference.input_checks import check_regular
from reference.corpus import read_corpus_file

from .corpus import fetch_corpus

EXIT_ERROR = 1  # a user-facing error (bad input, missing file, offline)
EXIT_INTERNAL = 2  # an unexpected exception: a bug (FESTE_DEBUG=1 shows the traceback)
EXIT_INTERRUPTED = 130

# --- implementation choice (train, demo, generate) --------------------------------
IMPL_NAMES_NEEDED = ("init_params", "adamw_init", "forward", "backward", "clip_grad_norm", "learning_rate",
                     "adamw_step", "generate")


# The implementations this project ships: (module, the library it runs on, the extra that installs it)
IMPLEMENTATIONS = (("reference", "numpy", None), ("fast", "numba", None), ("torch_impl", "torch", "torch"))


def _import_impl(name: str):
    """(the module, None) if `name` imports and has the training names, else (None, why not)."""
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any failure to import is reported as one line
        return None, f"cannot import module {name!r}: {exc}"
    missing = [n for n in IMPL_NAMES_NEEDED if not hasattr(module, n)]
    if missing:
        return None, f"the module lacks {', '.join(missing)} (SPEC §contract)"
    return module, None


def default_impl_name() -> str:
    """`fast` when it imports (and has the training names), else `reference`."""
    return "fast" if _import_impl("fast")[0] is not None else "reference"


def load_impl(name: str | None):
    """The implementation module named by --impl (reference, fast or a dotted path)."""
    name = name or default_impl_name()
    module, problem = _import_impl(name)
    if module is None:
        raise ValueError(f"--impl {name}: {problem}")
    return module


def version_lines() -> list[str]:
    """What `feste --version` prints: the package's version, then one line per
    implementation this project ships, saying whether it is available here."""
    from . import __version__

    def installed(dist: str) -> str:
        try:
            return f"{dist} {importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            return dist

    default = default_impl_name()
    lines = [f"feste-spec {__version__} (Python {platform.python_version()})"]
    for name, library, extra in IMPLEMENTATIONS:
        module, problem = _import_impl(name)
        if module is None:
            hint = f" (pip install 'feste-spec[{extra}]')" if extra else ""
            lines.append(f"{name}: not available: {problem}{hint}")
            continue
        version = getattr(module, "__version__", "")
        lines.append(f"{name} {version}".rstrip() + f": available ({installed(library)})"
                     + (", the default --impl" if name == default else ""))
    return lines


class VersionAction(argparse.Action):
    """`--version`: print `version_lines()` on stdout and exit 0 (like argparse's
    "version" action, whose text is fixed when the parser is built)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print("\n".join(version_lines()), flush=True)
        parser.exit(0)


def add_impl_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", metavar="NAME", default=None,
                   help="implementation: 'reference', 'fast' or a dotted module path "
                        "(default: fast if it imports, else reference)")


# A negative number as an option's value. argparse's own pattern knows only -5 and
# -.5, so `--lr -1e-3` was read as an unknown flag and `--lr` as missing its value;
# with this one the value reaches the option's range check. (No feste option
# looks like a negative number, which argparse requires for this to apply.)
NEGATIVE_NUMBER = re.compile(r"-((\d+\.?\d*|\.\d+)(e[-+]?\d+)?|inf|infinity|nan)\Z", re.IGNORECASE)  # .match: whole


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit 2),
    `PROG: error: MESSAGE (see PROG --help)`, instead of argparse's usage
    block: long option lists would bury the message. `feste` and every
    subcommand parser are of this class (cli.build_parser). Negative numbers
    in any notation are values (`--lr -1e-3`), never flags."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str):
        if message.startswith("the following arguments are required"):
            # argparse says this before it gets to unknown flags: `feste --verison` would not name the typo
            unknown = [a for a in self._parsing if a.startswith("-") and not NEGATIVE_NUMBER.match(a)
                       and a.split("=", 1)[0] not in self._option_string_actions]
            if unknown:
                message += f"; unrecognized arguments: {' '.join(unknown)}{self._did_you_mean(unknown)}"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    _parsing: list[str] = []  # the arguments parse_args is reading (for error's suggestions)

    def parse_args(self, args=None, namespace=None):
        """argparse's, with a suggestion for an unknown flag (`--lrr`: did you mean --lr?)."""
        self._parsing = [str(a) for a in (sys.argv[1:] if args is None else args)]
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}{self._did_you_mean(extras)}")
        return namespace

    def _did_you_mean(self, extras: list[str]) -> str:
        """"; did you mean --X?" for the first unknown flag close to one of this parser's
        (difflib, as Python 3.14's suggest_on_error does for choices), else ""."""
        flags = [flag for action in self._actions for flag in action.option_strings]
        for arg in extras:
            if arg.startswith("-") and not NEGATIVE_NUMBER.match(arg):
                close = difflib.get_close_matches(arg.split("=", 1)[0], flags, n=1)
                if close:
                    return f"; did you mean {close[0]}?"
        return ""

    def _check_value(self, action, value):
        """argparse's check of a choice, with a suggestion (`feste trian`: did you mean 'train'?)."""
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            close = difflib.get_close_matches(str(value), [str(c) for c in action.choices or ()], n=1)
            if not close or "mean" in exc.message:  # Python 3.14+ may already suggest one
                raise
            raise argparse.ArgumentError(action, f"{exc.message}; did you mean {close[0]!r}?") from None


class SubcommandAction(argparse._SubParsersAction):
    """The subcommand's parser parses the rest as a whole (`parse_args`, not argparse's
    `parse_known_args`), so an unknown flag after a subcommand is that subcommand's error:
    `feste train: error: unrecognized arguments: --lrr 1; did you mean --lr? (see feste
    train --help)`, not `feste`'s. Use as `add_subparsers(action=SubcommandAction)`."""

    def __call__(self, parser, namespace, values, option_string=None):
        name, arg_strings = values[0], values[1:]
        if self.dest is not argparse.SUPPRESS:
            setattr(namespace, self.dest, name)
        sub = self.choices[name]  # argparse checked the name against the choices
        for key, value in vars(sub.parse_args(arg_strings)).items():
            setattr(namespace, key, value)


def one_line_errors(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give an existing parser OneLineParser's one-line usage errors (subcommand
    parsers already have them: they are made as OneLineParser)."""
    p.error = OneLineParser.error.__get__(p)
    return p


# --- argument types: range checks with one-line errors ----------------------------
def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def float_range(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            lo = f"{'(' if low_open else '['}{low}"
            hi = f"{high if high is not None else 'inf'}{')' if high_open or high is None else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {lo}, {hi}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


POSITIVE = int_at_least(1)
NON_NEGATIVE = int_at_least(0)


# --- corpus and files -------------------------------------------------------------
def add_corpus_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", metavar="FILE", default=None,
                   help="a UTF-8 (or raw bytes) text file instead of the cached Shakespeare corpus")


def corpus_source(args) -> tuple[str, bytes]:
    """(description, bytes) of --corpus FILE, else the cached/fetched Shakespeare."""
    if args.corpus is not None:
        return str(args.corpus), read_corpus_file(args.corpus)
    path = fetch_corpus(progress=args.progress)
    return str(path), read_corpus_file(path)


OVERWRITE_HELP = "replace an existing output (without it, an output that exists is refused)"


def add_overwrite_option(p: argparse.ArgumentParser, help: str = OVERWRITE_HELP) -> None:
    p.add_argument("--overwrite", action="store_true", help=help)


def check_output(path, overwrite: bool, what: str = "--out", directory: bool = False) -> Path:
    """The one policy for an output the user names (SPEC §command-line), checked
    before any work: an output that exists is refused unless `overwrite` (the
    message names the path and --overwrite). A file output must not be a
    directory, nor a FIFO, device or socket (even with `overwrite`: the
    rename that writes a file would replace it); its directory must exist and be writable. A directory
    output (`directory=True`) may be new, which creates it, or empty; with
    `overwrite`, a non-empty one is written into. ValueError otherwise."""
    path = Path(path)
    if directory:
        if os.path.lexists(path) and not path.is_dir():
            raise ValueError(f"{what} {path} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not overwrite:
            raise ValueError(f"{what} {path} exists and is not empty (--overwrite writes into it, "
                             "replacing the files of the same names)")
        where = Path(os.path.abspath(path))
        while not os.path.lexists(where):  # the nearest existing ancestor: the new directories go there
            where = where.parent
        if not where.is_dir():
            raise ValueError(f"{what} {path}: {where} is not a directory")
    else:
        if path.is_dir():
            raise ValueError(f"{what} {path} is a directory; give the file to write")
        if path.exists():  # never replaced, even with overwrite: a rename would swap out /dev/null
            check_regular(path, what)
        if os.path.lexists(path) and not overwrite:
            raise ValueError(f"{what} {path} exists (--overwrite replaces it)")
        where = path.parent
        if not where.is_dir():
            raise ValueError(f"{what} {path}: directory {where} does not exist")
    if not os.access(where, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: cannot write in {where} (permission denied)")
    return path


def check_file(path, what: str) -> Path:
    """`path` if it is a regular file; else ValueError saying it is missing, a
    directory, a FIFO, a device... (readers check again on the opened file)."""
    check_regular(path, what)
    return Path(path)
