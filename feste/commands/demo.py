"""`feste demo`: the seed's "Training Infrastructure Demonstration", run for real (SPEC §command-line)."""
from __future__ import annotations

import math
import sys

import numpy as np

from reference.config import preset
from reference.data import TextDataLoader
from reference.params import n_params
from feste.rundir import LOG_NAME
from reference.tokenizer import N_BYTES, Tokenizer
from feste.trainer import TrainingInterrupted, TrainSettings, train

from ..common import (
    EXIT_ERROR, NON_NEGATIVE, POSITIVE, add_corpus_option, add_impl_option, corpus_source, load_impl, one_line_errors,
)
from .train import stopped_line

DEMO_RULE = "=" * 70
DEMO_STEPS = 600  # about two minutes here with fast (measured 300 steps in 51 s on the shared 2-core machine)
DEMO_LR = 2e-3  # peak learning rate of the demo run (warmup: a tenth of the steps)
# SPEC §model: at init the loss is ln V plus ~sigma^2/2 (0.026 for C = 128):
# the demo's check mark uses the conformance suite's BASELINE_ABS bound.
DEMO_BASELINE_TOLERANCE = 0.15


def run(args) -> int:
    """The seed's "Training Infrastructure Demonstration", run for real."""
    impl = load_impl(args.impl)
    vocab, T, B = 512, 64, 16
    print(DEMO_RULE)
    print("  Training Infrastructure Demonstration")
    print(DEMO_RULE)
    print()
    warmup = getattr(impl, "warmup", None)  # compiled implementations (fast) prepare their kernels
    if callable(warmup):
        print(f"Compiling {impl.__name__} kernels (first run only; cached on disk after)...", flush=True)
        print(f"  ✓ Kernels ready in {warmup():.1f} s")
        print()
    source, data = corpus_source(args)
    print(f"Training BPE tokenizer on {'Shakespeare' if args.corpus is None else source}...")
    print(f"  Initial vocab: {N_BYTES} (byte-level)")
    print(f"  Target vocab: {vocab}")
    print(f"  Training with {vocab - N_BYTES} merges...", flush=True)
    tokenizer_cls = getattr(impl, "Tokenizer", Tokenizer)
    tokenizer = tokenizer_cls.train(data, vocab, progress=args.progress)
    print(f"  ✓ Tokenizer trained with {tokenizer.vocab_size} tokens")
    print()

    print("Creating data loader...")
    tokens = np.asarray(tokenizer.encode(data), dtype=np.int64)
    loader = TextDataLoader(tokens, T, B)
    print(f"  Total tokens: {tokens.size:,}")
    print(f"  Sequence length: {T}")
    print(f"  Batch size: {B}")
    print(f"  Training examples: {loader.num_windows(validation=False):,}")
    print(f"  Validation examples: {loader.num_windows(validation=True):,}")
    print("  ✓ Data loader created")
    print()

    print("Computing baseline loss...")
    config = preset("tiny")
    params = impl.init_params(config, seed=args.seed)
    x, y = loader.next_batch()
    _, loss, _ = impl.forward(params, x, y)
    expected = math.log(vocab)
    print(f"  Random predictions on vocab_size={vocab}")
    print(f"  Expected loss: ~{expected:.2f} (ln({vocab}))")
    print(f"  Actual loss: {loss:.4f}")
    print(f"  Perplexity: {math.exp(loss):.1f}")
    baseline_ok = abs(loss - expected) <= DEMO_BASELINE_TOLERANCE
    print(f"  {'✓ Baseline computed correctly' if baseline_ok else f'✗ Baseline is {loss - expected:+.3f} away from ln({vocab})'}")
    print()

    steps = args.steps
    settings = TrainSettings(preset="tiny", vocab_size=vocab, batch_size=B, seq_len=T, max_steps=steps,
                             lr=DEMO_LR, warmup_steps=max(1, steps // 10), eval_interval=max(1, steps // 5),
                             sample_interval=max(1, steps // 5), checkpoint_interval=0, seed=args.seed,
                             run_dir=args.run_dir, corpus=args.corpus)  # run.json: what `train --resume` reads
    print(f"Training the tiny model ({n_params(config):,} parameters, impl {impl.__name__}) for {steps} steps:")
    try:
        result = train(settings, tokens=tokens, tokenizer=tokenizer, impl=impl, progress=args.progress)
    except TrainingInterrupted as exc:
        print(stopped_line("demo", exc, impl), file=sys.stderr, flush=True)
        return exc.exit_code
    print()
    print(f"Training log saved to: {result.run_dir / LOG_NAME}")
    sample = result.history[-1]["sample"] if result.history else ""
    print("Sample:")
    for line in sample.splitlines() or [""]:
        print(f"  {line}")
    print(f"Checkpoint saved to: {result.checkpoints['final']}")
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    learned = last < first
    if baseline_ok and learned:
        print(f"✓ All infrastructure components working (validation loss {first:.2f} -> {last:.2f})")
        return 0
    print(f"✗ Something is off: baseline {'ok' if baseline_ok else 'off'}, validation loss {first:.2f} -> {last:.2f}")
    return EXIT_ERROR


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser("demo", help="the seed's training infrastructure demonstration, for real",
                        description="Train the tokenizer (vocab 512), build the loader (T 64, B 16), check the "
                                    "baseline loss of a fresh tiny model, train it for a few minutes, sample."))
    add_corpus_option(p)
    p.add_argument("--steps", type=POSITIVE, default=DEMO_STEPS, metavar="N",
                   help=f"training steps (default {DEMO_STEPS}, about two minutes with fast)")
    p.add_argument("--run-dir", metavar="DIR", default=None,
                   help="run directory, new or empty (default: a new runs/tiny-YYYYmmdd-HHMMSS)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, metavar="S", help="seed of init, batches, samples (default 0)")
    add_impl_option(p)
    p.set_defaults(func=run)
