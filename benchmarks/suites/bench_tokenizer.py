"""Tokenizer throughput on the full Shakespeare corpus (SPEC §tokenizer targets).

- training to vocab 512 (256 merges) on the whole corpus: target <= 15 s;
- encoding the whole corpus with that tokenizer: target <= 5 s.

    feste corpus                                        # once: cache the corpus
    python -m pytest benchmarks/suites/bench_tokenizer.py      # every impl
    python -m pytest benchmarks/suites/bench_tokenizer.py --impl reference

Training takes seconds, so each benchmark is a few pedantic rounds of one
call. Every implementation is called once on a small input first, so Numba
compiles outside the timing. The targets are recorded in `extra_info`
(`target_seconds`, `within_target`), never asserted: timings on a shared
2-core machine are noisy. `extra_info` also records the corpus size, the
token count, the compression (bytes per token) and bytes/s.
"""
from __future__ import annotations

import pytest

from benchmarks.lib import accounting
from benchmarks.lib.timing import median_seconds

VOCAB = 512
TRAIN_TARGET_S = 15.0
ENCODE_TARGET_S = 5.0
ROUNDS = 3

_trained: dict[str, object] = {}  # impl name -> its tokenizer at VOCAB (trained once per session)


def _warm_up(impl, corpus_bytes: bytes):
    """Compile (fast) and touch every code path on a small slice, untimed."""
    small = impl.Tokenizer.train(corpus_bytes[:50_000], 300)
    small.encode(corpus_bytes[:50_000])


def _tokenizer(impl, corpus_bytes: bytes):
    if impl.name not in _trained:
        _trained[impl.name] = impl.Tokenizer.train(corpus_bytes, VOCAB)
    return _trained[impl.name]


def _record(benchmark, impl, what: str, corpus_bytes: bytes, n_tokens: int, target: float) -> None:
    nb, bl = accounting.numba_threads(), accounting.blas_threads()
    info = {
        "impl": impl.name, "component": what, "vocab_size": VOCAB,
        "threads": max(t for t in (nb, bl, 1) if t is not None), "numba_threads": nb,
        "corpus_bytes": len(corpus_bytes), "tokens": n_tokens,
        "bytes_per_token": len(corpus_bytes) / n_tokens, "target_seconds": target,
    }
    median = median_seconds(benchmark)
    if median:
        info["bytes_per_second"] = len(corpus_bytes) / median
        info["within_target"] = median <= target
    benchmark.extra_info.update(info)


@pytest.mark.corpus
def test_train_vocab_512(benchmark, impl, corpus_bytes):
    _warm_up(impl, corpus_bytes)
    tok = benchmark.pedantic(impl.Tokenizer.train, args=(corpus_bytes, VOCAB),
                             rounds=ROUNDS, iterations=1, warmup_rounds=0)
    assert tok.vocab_size == VOCAB
    _trained.setdefault(impl.name, tok)
    _record(benchmark, impl, "tokenizer.train", corpus_bytes, tok.encode(corpus_bytes).size, TRAIN_TARGET_S)


@pytest.mark.corpus
def test_encode_corpus(benchmark, impl, corpus_bytes):
    _warm_up(impl, corpus_bytes)
    tok = _tokenizer(impl, corpus_bytes)
    ids = benchmark.pedantic(tok.encode, args=(corpus_bytes,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert ids.size > 0
    _record(benchmark, impl, "tokenizer.encode", corpus_bytes, ids.size, ENCODE_TARGET_S)
