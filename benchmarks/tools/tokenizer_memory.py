"""Peak memory of training and applying the BPE tokenizer, per corpus byte (SPEC §tokenizer).

    python -m benchmarks.tools.tokenizer_memory                    # reference, 200 MB, vocab 512
    python -m benchmarks.tools.tokenizer_memory --mb 20 --impl fast

The corpus is the cached Shakespeare corpus (`feste corpus`) repeated and cut
to `--mb` million bytes. The measurement runs in a fresh subprocess
(`--child`), which imports the implementation, builds the corpus, then runs
`Tokenizer.train(corpus, vocab)` and `encode(corpus)`, reading the process's
high-water mark (`ru_maxrss`) before and after each. Prints one JSON line:
the peak of the whole process and the increments of train and encode, each
also divided by the corpus size (bytes per corpus byte).
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

from benchmarks.tools.memory import maxrss_bytes, run_fresh

def child(impl_name: str, n_bytes: int, vocab: int) -> dict:
    from reference.corpus import load_corpus

    impl = importlib.import_module(impl_name)
    source = load_corpus()
    corpus = (source * (n_bytes // len(source) + 1))[:n_bytes]
    del source
    before = maxrss_bytes()
    t0 = time.perf_counter()
    tokenizer = impl.Tokenizer.train(corpus, vocab)
    t1 = time.perf_counter()
    after_train = maxrss_bytes()
    ids = tokenizer.encode(corpus)
    t2 = time.perf_counter()
    after_encode = maxrss_bytes()
    n = len(corpus)
    return {
        "impl": impl_name, "corpus_bytes": n, "vocab": vocab, "tokens": int(ids.size),
        "process_peak_bytes": after_encode, "process_peak_per_byte": after_encode / n,
        "before_train_bytes": before,
        "train_increment_per_byte": (after_train - before) / n,
        "encode_increment_per_byte": (after_encode - before) / n,
        "train_seconds": t1 - t0, "encode_seconds": t2 - t1,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tools.tokenizer_memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", default="reference")
    p.add_argument("--mb", type=float, default=200.0, help="corpus size in millions of bytes (default 200)")
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    n_bytes = int(args.mb * 1e6)
    if args.child:
        print(json.dumps(child(args.impl, n_bytes, args.vocab)))
        return 0
    try:
        result = run_fresh("benchmarks.tools.tokenizer_memory",
                           ["--impl", args.impl, "--mb", args.mb, "--vocab", args.vocab])
    except RuntimeError as exc:
        print(f"tokenizer_memory: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
