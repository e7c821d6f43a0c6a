"""References between the repository's documents resolve.

Citations of SPEC.md are by anchor (`SPEC §trainer`), never by number: every
`§name` anywhere in the repository's text files must be an anchor of SPEC.md
(`<a id="name"></a>` above a heading), and no file may cite SPEC by section
number (`SPEC 7.3`, `SPEC section 7.3`, `section 7.3`): numbers move when
sections are added or reordered, names do not, so a citation can never
silently point at another section.

Every relative link of a Markdown file (README.md, docs/*.md, ...) names a
file that exists, and its `#fragment`, if any, a heading or anchor of that
file: a document moved or renamed cannot leave a dead link behind.
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


# --- relative links of the Markdown files -----------------------------------------------------
LINK = re.compile(r"\[[^\]]*\]\(([^()\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def heading_slugs(text: str) -> set[str]:
    """The fragments a Markdown file offers: GitHub's slug of each heading
    (lower case, punctuation but `-` and `_` dropped, spaces as `-`) and every
    `<a id="...">`."""
    text = FENCE.sub("", text)
    slugs = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#{1,6} +(.+?) *$", text, re.M):
        slugs.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return slugs


def broken_links(path: Path, text: str) -> list[str]:
    """Each relative link of `text` (the Markdown file `path`) whose file or
    fragment does not exist, as "target: why"; links in code blocks and to
    other sites are not checked."""
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: another site
            continue
        file_part, _, fragment = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if file_part and not linked.exists():
            broken.append(f"{target}: no such file {linked}")
        elif fragment and linked.suffix == ".md" and fragment not in heading_slugs(
                linked.read_text(encoding="utf-8") if file_part else text):
            broken.append(f"{target}: no heading or anchor #{fragment} in {linked.name}")
    return broken


def test_every_relative_link_of_the_documents_resolves():
    documents = [p for p in tracked_text_files() if p.suffix == ".md"]
    assert ROOT / "README.md" in documents and any(p.parent == ROOT / "docs" for p in documents)
    broken = [f"{path.relative_to(ROOT)}: {why}" for path in documents
              for why in broken_links(path, path.read_text(encoding="utf-8"))]
    assert not broken, "links that lead nowhere:\n" + "\n".join(broken)


def test_the_link_check_can_fail(tmp_path):
    """A missing file, a missing heading and a link back to an existing one
    (hand-made files); code blocks and other sites are left alone."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "GUIDE.md").write_text("# A guide\n\n## Side by side (2026)\n")
    readme = tmp_path / "README.md"
    text = ("[ok](docs/GUIDE.md) [ok](docs/GUIDE.md#side-by-side-2026) [gone](docs/OLD.md) "
            "[no heading](docs/GUIDE.md#nowhere) [site](https://example.org/x.md) [self](#top)\n\n# Top\n\n"
            "```\n[in code](docs/NOT_CHECKED.md)\n```\n")
    assert broken_links(readme, text) == [
        f"docs/OLD.md: no such file {tmp_path / 'docs' / 'OLD.md'}",
        "docs/GUIDE.md#nowhere: no heading or anchor #nowhere in GUIDE.md"]
