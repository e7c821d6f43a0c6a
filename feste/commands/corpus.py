"""`feste corpus [--corpus FILE]`: fetch and cache Shakespeare, or describe a file."""
from __future__ import annotations

from ..common import add_corpus_option
from ..corpus import describe_corpus, fetch_corpus


def _fmt_chars(n_chars) -> str:
    return f"{n_chars:,}" if n_chars is not None else "n/a (not valid UTF-8)"


def run(args) -> int:
    """Fetch and cache the Shakespeare corpus (or describe --corpus FILE)."""
    path = args.corpus if args.corpus is not None else fetch_corpus(progress=args.progress)
    info = describe_corpus(path)
    print(f"path:       {info.path}")
    print(f"bytes:      {info.n_bytes:,}")
    print(f"characters: {_fmt_chars(info.n_chars)}")
    print(f"sha256:     {info.sha256}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("corpus", help="download and cache the Shakespeare corpus; print its size and sha256")
    add_corpus_option(p)
    p.set_defaults(func=run)
