"""The `feste` command line: one argparse parser, one function per subcommand.

    feste corpus [--corpus FILE]
    feste tokenizer [--corpus FILE] [--vocab-size 512] [--out tokenizer.json]

`main(argv=None)` runs a subcommand and turns the project's errors into one
line on stderr and a non-zero exit code, never a traceback. To add a
subcommand: write `cmd_NAME(args) -> int`, register it in `build_parser`
with `set_defaults(func=cmd_NAME)`, and add any new error type to
`USER_ERRORS`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .corpus import CorpusError, describe_corpus, fetch_corpus, read_corpus_file

EXIT_ERROR = 1  # a user-facing error (bad input, missing file, offline)
EXIT_INTERNAL = 2  # an unexpected exception: a bug (FESTE_DEBUG=1 shows the traceback)
EXIT_INTERRUPTED = 130

# The project's error types: their message is the whole story for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (CorpusError, ValueError, OSError)


def _corpus_source(args) -> tuple[str, bytes]:
    """(description, bytes) of --corpus FILE, else the cached/fetched Shakespeare."""
    if args.corpus is not None:
        return str(args.corpus), read_corpus_file(args.corpus)
    path = fetch_corpus(progress=not args.quiet)
    return str(path), read_corpus_file(path)


def _fmt_chars(n_chars) -> str:
    return f"{n_chars:,}" if n_chars is not None else "n/a (not valid UTF-8)"


# --- subcommands ----------------------------------------------------------------
def cmd_corpus(args) -> int:
    """Fetch and cache the Shakespeare corpus (or describe --corpus FILE)."""
    path = args.corpus if args.corpus is not None else fetch_corpus(progress=not args.quiet)
    info = describe_corpus(path)
    print(f"path:       {info.path}")
    print(f"bytes:      {info.n_bytes:,}")
    print(f"characters: {_fmt_chars(info.n_chars)}")
    print(f"sha256:     {info.sha256}")
    return 0


def cmd_tokenizer(args) -> int:
    """Train the BPE tokenizer on the corpus and report its compression."""
    from .tokenizer import N_BYTES, Tokenizer

    if args.vocab_size < N_BYTES:
        raise ValueError(f"--vocab-size must be at least {N_BYTES}, got {args.vocab_size}")
    source, data = _corpus_source(args)
    print(f"Training BPE tokenizer on {source}...")
    print(f"  Initial vocab: {N_BYTES} (byte-level)")
    print(f"  Target vocab: {args.vocab_size}")
    print(f"  Training with {args.vocab_size - N_BYTES} merges...", flush=True)
    t0 = time.perf_counter()
    tokenizer = Tokenizer.train(data, args.vocab_size, progress=not args.quiet)
    t1 = time.perf_counter()
    ids = tokenizer.encode(data)
    t2 = time.perf_counter()
    if tokenizer.vocab_size < args.vocab_size:
        print(f"  (the corpus ran out of pairs after {len(tokenizer.merges)} merges)")
    print(f"  Tokenizer trained with {tokenizer.vocab_size} tokens")
    print(f"  Corpus: {len(data):,} bytes")
    print(f"  Tokens: {ids.size:,}")
    ratio = len(data) / ids.size if ids.size else float("nan")
    print(f"  Compression: {ratio:.3f} bytes/token")
    print(f"  Time: train {t1 - t0:.2f} s, encode {t2 - t1:.2f} s")
    if args.out is not None:
        tokenizer.save(args.out)
        print(f"  Saved: {args.out}")
    return 0


# --- parser ---------------------------------------------------------------------
def _add_corpus_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--corpus", metavar="FILE", default=None,
                   help="a UTF-8 (or raw bytes) text file instead of the cached Shakespeare corpus")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feste", description="Train GPT-2-style models on Shakespeare (feste-spec).")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("corpus", help="download and cache the Shakespeare corpus; print its size and sha256")
    _add_corpus_option(p)
    p.set_defaults(func=cmd_corpus)

    p = sub.add_parser("tokenizer", help="train the BPE tokenizer on the corpus and report statistics")
    _add_corpus_option(p)
    p.add_argument("--vocab-size", type=int, default=512, metavar="N", help="target vocabulary (default 512)")
    p.add_argument("--out", metavar="FILE", default=None, help="write the tokenizer JSON here")
    p.set_defaults(func=cmd_tokenizer)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"feste {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"feste {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("FESTE_DEBUG") == "1":
            raise
        print(f"feste {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set FESTE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
