"""Citations of SPEC.md are by anchor (`SPEC §trainer`), never by number.

Every `§name` anywhere in the repository's text files must be an anchor of
SPEC.md (`<a id="name"></a>` above a heading), and no file may cite SPEC by
section number (`SPEC 7.3`, `SPEC section 7.3`, `section 7.3`): numbers move
when sections are added or reordered, names do not, so a citation can never
silently point at another section.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT = re.compile(r"\.(py|md|sh|rs|toml|txt|json)$|^\.ci/run$")
NUMERIC = re.compile(r"SPEC(?:\.md)?(?:'s)?\s+(?:sections?\s+)?\d|\b[Ss]ections?\s+\d")
CITATION = re.compile(r"§([a-z0-9-]+)")


def tracked_text_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout ({exc}): the citations are checked where the sources are tracked")
    return [ROOT / f for f in out.split() if TEXT.search(f) and (ROOT / f).is_file()]


def anchors() -> set[str]:
    return set(re.findall(r'^<a id="([a-z0-9-]+)"></a>$', (ROOT / "SPEC.md").read_text(encoding="utf-8"), re.M))


def test_every_heading_of_spec_has_an_anchor():
    lines = (ROOT / "SPEC.md").read_text(encoding="utf-8").splitlines()
    bare = [line for i, line in enumerate(lines) if re.match(r"#{2,3} \d", line)
            and not (i and re.fullmatch(r'<a id="[a-z0-9-]+"></a>', lines[i - 1]))]
    assert not bare, f"SPEC headings without an anchor line above them: {bare}"


def test_every_citation_names_an_anchor_and_none_a_number():
    known = anchors()
    unknown, numeric = [], []
    for path in tracked_text_files():
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            where = f"{path.relative_to(ROOT)}:{lineno}"
            if path.name == "test_spec_refs.py":  # this file's examples
                continue
            unknown += [f"{where}: §{name}" for name in CITATION.findall(line) if name not in known]
            if NUMERIC.search(line):
                numeric.append(f"{where}: {line.strip()[:100]}")
    assert not unknown, "citations of SPEC anchors that do not exist:\n" + "\n".join(unknown[:30])
    assert not numeric, "SPEC cited by section number (cite SPEC §name):\n" + "\n".join(numeric[:30])


def test_the_check_can_fail():
    """The two patterns catch what they are for (hand-made lines)."""
    assert NUMERIC.search("see SPEC section 7.3") and NUMERIC.search("(SPEC 2.7)") and NUMERIC.search("section 4")
    assert not NUMERIC.search("SPEC §trainer") and not NUMERIC.search("SPEC's rule")
    assert CITATION.findall("SPEC §no-such-anchor") == ["no-such-anchor"] and "no-such-anchor" not in anchors()
