"""The `feste` command line: one argparse parser; each subcommand is a module of
`feste.commands` (SPEC §command-line).

    feste corpus [--corpus FILE]
    feste tokenizer [--corpus FILE] [--vocab-size 512] [--out tokenizer.json [--overwrite]]
    feste demo [--steps N] [--corpus FILE] [--impl NAME] [--run-dir DIR]
    feste train [--preset tiny] [--steps N] [--lr X] ... [--resume CKPT]
    feste generate CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]
    feste inspect CKPT
    feste export CKPT OUT_DIR [--overwrite]
    feste import HF_DIR OUT.ckpt [--overwrite]
    feste plot RUN_DIR [--out PNG [--overwrite]]
    feste bench [--impl NAME] [--components] [--out DIR [--overwrite]] [-- PYTEST_ARGS]
    feste vectors build|check DIR [--overwrite]
    feste --version

`main(argv=None)` runs a subcommand and turns the project's errors into one
line on stderr and a non-zero exit code, never a traceback. To add a
subcommand: a module in `feste/commands/` with `add_parser(sub)` (which sets
`func=run`) and `run(args) -> int`, listed in `feste.commands.COMMANDS`; add
any new error type to `USER_ERRORS`. The parsers' shared behaviour (one-line
usage errors, negative numbers as values, suggestions for unknown flags, the
policy for outputs the user names) is in `feste.common`.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from feste.accumulate import ProcessFailed
from reference.corpus import CorpusError
from feste.rundir import RunDirError
from feste.trainer import StopSignals, TrainingDiverged

from .commands import COMMANDS
from .distributed import LaunchError
from .common import (  # noqa: F401 - re-exported: the names scripts and tests use
    EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, IMPL_NAMES_NEEDED, OneLineParser, SubcommandAction, VersionAction,
    default_impl_name, load_impl,
)

# The project's error types: their message is the whole story for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (CorpusError, ValueError, OSError, TrainingDiverged, RunDirError,
                                                ProcessFailed, LaunchError)
QUIET_HELP = "no progress bars (they are shown only when stderr is a terminal anyway)"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="feste", description="Train GPT-2-style models on Shakespeare (feste-spec).")
    parser.add_argument("-q", "--quiet", action="store_true", help=QUIET_HELP)
    parser.add_argument("--version", action=VersionAction,
                        help="print the package version and, one line each, the implementations "
                             "(reference, fast, torch_impl) and whether they are available here; then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser,
                                action=SubcommandAction)
    for command in COMMANDS:
        command.add_parser(sub)
    for p in sub.choices.values():  # global flags are accepted after the subcommand too
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help=QUIET_HELP)
    return parser


def describe_error(exc: BaseException) -> str:
    """The one-line message of a user-facing error; an OSError names its file
    ("runs/x/latest.ckpt: No space left on device")."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        names = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else f"{exc.filename}"
        return f"{names}: {exc.strerror}"
    return str(exc)


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again
    (the Python documentation's recipe for SIGPIPE, signal module notes)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (tests): nothing to flush later
        pass


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except BrokenPipeError:  # `feste --help | head`, `feste --version | head -1`
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    # progress bars only for a person watching: not with -q, not into a file or pipe
    args.progress = not args.quiet and sys.stderr.isatty()

    def one_line_warning(message, category, filename, lineno, file=None, line=None):
        print(f"feste {args.command}: warning: {message}", file=sys.stderr)

    try:
        # a warning is a one-line notice, never Python's source dump; SIGTERM, like SIGINT, stops any
        # command with one line and 128 + the signal (StopSignals: feste.trainer.TrainingInterrupted)
        with warnings.catch_warnings(), StopSignals():
            warnings.showwarning = one_line_warning
            return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`feste inspect CKPT | head`): not an error of ours
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except USER_ERRORS as exc:
        print(f"feste {args.command}: error: {describe_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError as exc:
        print(f"feste {args.command}: error: out of memory ({exc or 'MemoryError'})", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:  # a TrainingInterrupted says which signal, where, and its exit code
        print(f"feste {args.command}: {exc or 'interrupted'}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("FESTE_DEBUG") == "1":
            raise
        print(f"feste {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set FESTE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
