"""`feste tokenizer`: train the BPE tokenizer on the corpus and report its compression."""
from __future__ import annotations

import time

from reference.tokenizer import N_BYTES, Tokenizer

from ..common import add_corpus_option, add_overwrite_option, check_output, corpus_source, int_at_least


def run(args) -> int:
    """Train the BPE tokenizer on the corpus and report its compression."""
    if args.out is not None:  # before the training, which takes minutes
        check_output(args.out, args.overwrite)
    source, data = corpus_source(args)
    print(f"Training BPE tokenizer on {source}...")
    print(f"  Initial vocab: {N_BYTES} (byte-level)")
    print(f"  Target vocab: {args.vocab_size}")
    print(f"  Training with {args.vocab_size - N_BYTES} merges...", flush=True)
    t0 = time.perf_counter()
    tokenizer = Tokenizer.train(data, args.vocab_size, progress=args.progress)
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


def add_parser(sub) -> None:
    p = sub.add_parser("tokenizer", help="train the BPE tokenizer on the corpus and report statistics")
    add_corpus_option(p)
    p.add_argument("--vocab-size", type=int_at_least(N_BYTES), default=512, metavar="N",
                   help=f"target vocabulary, at least the {N_BYTES} byte tokens (default 512)")
    p.add_argument("--out", metavar="FILE", default=None,
                   help="write the tokenizer JSON here (a new file unless --overwrite; checked before training)")
    add_overwrite_option(p, "replace --out if it exists")
    p.set_defaults(func=run)
