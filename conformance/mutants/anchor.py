"""Where a mutant applies: its snippet matched on code, never on comments.

A catalogue entry quotes the code it changes (`Mutant.original`). Comments
and trailing spaces are not part of that anchor: both the source and the
snippet are compared with every `#` comment and the spaces before it, and
trailing whitespace, removed, line by line. Editing a comment (in the source
or in the catalogue) therefore cannot break a mutant; changing the code it
quotes does, and the catalogue test says which entry to update.

Removing a comment never moves the code before it on its line, so a match in
the comment-free text is at the same line and column in the real source: a
snippet of whole lines replaces those lines (their comments go with them), a
snippet inside one line replaces just those characters.
"""
from __future__ import annotations

import io
import re
import tokenize


def _comment_columns(source: str) -> dict[int, int]:
    """{line index: column where its comment starts}, from Python's tokenizer
    (so a '#' inside a string is not a comment); a fragment that does not
    tokenize falls back to the first '#' outside simple quotes."""
    cols: dict[int, int] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                cols[tok.start[0] - 1] = tok.start[1]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        cols = {}
        for i, line in enumerate(source.split("\n")):
            m = re.match(r"""^((?:[^#'"]|'[^']*'|"[^"]*")*)#""", line)
            if m:
                cols[i] = len(m.group(1))
    return cols


def code_only(source: str) -> str:
    """`source` with comments and trailing whitespace removed; lines kept."""
    cols = _comment_columns(source)
    lines = source.split("\n")
    return "\n".join((line[:cols[i]] if i in cols else line).rstrip() for i, line in enumerate(lines))


def count(source: str, snippet: str) -> int:
    """How many times `snippet`'s code occurs in `source`'s code."""
    needle = code_only(snippet)
    return code_only(source).count(needle) if needle.strip() else 0


def apply(source: str, snippet: str, replacement: str) -> str:
    """`source` with the one occurrence of `snippet`'s code replaced by
    `replacement`; ValueError when it does not occur exactly once. A snippet
    that ends with a newline covers the rest of its last line (its comment
    too); one that does not ends where its code ends."""
    needle = code_only(snippet)
    haystack = code_only(source)
    n = haystack.count(needle) if needle.strip() else 0
    if n != 1:
        raise ValueError(f"the snippet's code occurs {n} times (must be exactly once)")
    at = haystack.index(needle)
    lines = source.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)

    def offset(line: int, col: int) -> int:
        return offsets[line] + col

    first = haystack.count("\n", 0, at)
    start = offset(first, at - (haystack.rfind("\n", 0, at) + 1))
    body = needle[:-1] if needle.endswith("\n") else needle
    last = first + body.count("\n")
    if needle.endswith("\n"):
        end = offset(last + 1, 0)  # through the end of the last line, its comment and newline
    else:
        end_col = len(body) - (body.rfind("\n") + 1) + (start - offsets[first] if last == first else 0)
        end = offset(last, end_col)
    return source[:start] + replacement + source[end:]
