"""Fixtures the suite's tests share (registered by the plugin)."""
from __future__ import annotations

import io
import os
import sys

import pytest

from conformance.selection import Implementation

REQUIRE_CORPUS_ENV = "FESTE_REQUIRE_CORPUS"


@pytest.fixture(scope="session")
def ref():
    """The reference implementation, for cross-implementation agreement tests."""
    import reference

    return Implementation("reference", reference)


@pytest.fixture(scope="session")
def corpus_bytes() -> bytes:
    """The cached Shakespeare corpus; tests needing it are marked `corpus`.

    Without a cache the test is skipped with the reason, unless
    FESTE_REQUIRE_CORPUS=1 (CI sets it after `feste corpus`), when it fails.
    """
    try:
        from reference.corpus import cached_corpus_path
    except ImportError as exc:
        path, message = None, f"no corpus support ({exc})"
    else:
        path = cached_corpus_path()
        message = "Shakespeare corpus not cached: run `feste corpus` first"
    if path is None or not path.exists():
        if os.environ.get(REQUIRE_CORPUS_ENV) == "1":
            pytest.fail(message + f" ({REQUIRE_CORPUS_ENV}=1)")
        pytest.skip(message)
    return path.read_bytes()


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self):
        return True


def terminal_stderr(monkeypatch, terminal: bool = True) -> io.StringIO:
    """sys.stderr replaced (until the test ends) by a fresh buffer that says it is a
    terminal (or, with terminal=False, that it is not one: a stderr redirected to a
    file or a pipe), and tqdm's TQDM_* defaults cleared: what a progress bar draws
    there is in the buffer's getvalue()."""
    for name in [n for n in os.environ if n.startswith("TQDM_")]:  # tqdm reads defaults (delay...) from these
        monkeypatch.delenv(name)
    buffer = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    return buffer


def run_feste(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `feste ARGV` run in process (the application's
    tests and the vector set's): argparse's usage errors, which exit through
    SystemExit, give their exit code."""
    from feste import cli

    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
