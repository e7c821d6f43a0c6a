"""Expected failures: a file of test-id glob patterns
(docs/CHECKING_AN_IMPLEMENTATION.md "Expected failures") that an implementation knowingly fails; each matching
test becomes xfail(strict=True), and a pattern that matches nothing is
reported."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

EXPECTED_FAILURES_ENV = "FESTE_EXPECTED_FAILURES"


@dataclass
class ExpectedFailure:
    """One line of an expected-failures file."""

    pattern: str  # fnmatch glob over the test id
    reason: str
    source: str  # "FILE:LINE"
    matched: list[str] = field(default_factory=list)

    def matches(self, nodeid: str, filename: str) -> bool:
        regex = glob_regex(self.pattern)
        return any(regex.fullmatch(form) for form in id_forms(nodeid, filename))


def glob_regex(pattern: str) -> "re.Pattern[str]":
    """`*` matches any run of characters, `?` one character; everything else,
    brackets included, is literal (test ids are full of `[...]`, so fnmatch's
    character classes would silently match the wrong tests)."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def id_forms(nodeid: str, filename: str) -> tuple[str, str]:
    """The ids a pattern may be written against: pytest's node id (which
    depends on the rootdir and on how the suite was named on the command
    line), and the stable short id `test_x.py::test_y[impl-...]` built from
    the test file's base name, the same from the repository or via --pyargs."""
    return nodeid, f"{filename}::{nodeid.partition('::')[2]}"


def parse_expected_failures(path: str | os.PathLike) -> list[ExpectedFailure]:
    """Parse an expected-failures file (format in docs/CHECKING_AN_IMPLEMENTATION.md).

    Each non-blank line that is not a `#` comment holds one glob pattern over
    test ids, optionally followed by `# reason`. A pattern may not contain
    whitespace. Raises ValueError naming the file and line for a bad line and
    OSError (FileNotFoundError) for a missing file.
    """
    path = Path(path)
    entries = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text, _, reason = raw.partition("#")
        pattern = text.strip()
        if not pattern:
            continue
        if len(pattern.split()) != 1:
            raise ValueError(f"{path}:{lineno}: expected one test-id pattern (no spaces) "
                             f"optionally followed by '# reason', got {raw.strip()!r}")
        entries.append(ExpectedFailure(pattern, reason.strip() or "listed as an expected failure",
                                       f"{path}:{lineno}"))
    return entries


def expected_failure_files(config) -> list[str]:
    files = config.getoption("--expected-failures")
    if not files:
        env = os.environ.get(EXPECTED_FAILURES_ENV, "").strip()
        files = [env] if env else []
    return files
