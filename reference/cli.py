"""The `feste` command line: one argparse parser, one function per subcommand.

    feste corpus [--corpus FILE]
    feste tokenizer [--corpus FILE] [--vocab-size 512] [--out tokenizer.json]
    feste demo [--steps N] [--corpus FILE] [--impl NAME] [--run-dir DIR]
    feste train [--preset tiny] [--steps N] [--lr X] ... [--resume CKPT]
    feste generate CKPT [--prompt TEXT] [--tokens N] [--temperature T] [--top-k K] [--seed S]
    feste inspect CKPT
    feste plot RUN_DIR [--out PNG]

`main(argv=None)` runs a subcommand and turns the project's errors into one
line on stderr and a non-zero exit code, never a traceback. To add a
subcommand: write `cmd_NAME(args) -> int`, register it in `build_parser`
with `set_defaults(func=cmd_NAME)`, and add any new error type to
`USER_ERRORS`.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from .config import preset
from .corpus import CorpusError, describe_corpus, fetch_corpus, read_corpus_file
from .params import n_params
from .train import TrainingDiverged

EXIT_ERROR = 1  # a user-facing error (bad input, missing file, offline)
EXIT_INTERNAL = 2  # an unexpected exception: a bug (FESTE_DEBUG=1 shows the traceback)
EXIT_INTERRUPTED = 130

# The project's error types: their message is the whole story for the user.
USER_ERRORS: tuple[type[BaseException], ...] = (CorpusError, ValueError, OSError, TrainingDiverged)


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
    if args.out is not None and not Path(args.out).resolve().parent.is_dir():
        raise ValueError(f"--out {args.out}: directory {Path(args.out).parent} does not exist")
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


# --- implementation choice (train, demo, generate) --------------------------------
IMPL_NAMES_NEEDED = ("init_params", "adamw_init", "forward", "backward", "clip_grad_norm", "learning_rate",
                     "adamw_step", "generate")


def default_impl_name() -> str:
    """`fast` when it imports (and has the training names), else `reference`."""
    try:
        module = importlib.import_module("fast")
    except Exception:  # noqa: BLE001 - any failure to import fast means: use the reference
        return "reference"
    return "fast" if all(hasattr(module, n) for n in IMPL_NAMES_NEEDED) else "reference"


def load_impl(name: str | None):
    """The implementation module named by --impl (reference, fast or a dotted path)."""
    name = name or default_impl_name()
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - reported as one line
        raise ValueError(f"--impl {name}: cannot import module {name!r}: {exc}") from None
    missing = [n for n in IMPL_NAMES_NEEDED if not hasattr(module, n)]
    if missing:
        raise ValueError(f"--impl {name}: the module lacks {', '.join(missing)} (SPEC section 1)")
    return module


def _one_line_errors(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Usage errors of this subcommand as one line on stderr (exit 2) instead of
    argparse's full usage block: long option lists would bury the message."""
    def error(message: str):
        p.exit(2, f"{p.prog}: error: {message} (see {p.prog} --help)\n")

    p.error = error
    return p


def _add_impl_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--impl", metavar="NAME", default=None,
                   help="implementation: 'reference', 'fast' or a dotted module path "
                        "(default: fast if it imports, else reference)")


# --- argument types: range checks with one-line errors ----------------------------
def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def _float_range(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            lo = f"{'(' if low_open else '['}{low}"
            hi = f"{high if high is not None else 'inf'}{')' if high_open or high is None else ']'}"
            raise argparse.ArgumentTypeError(f"must be in {lo}, {hi}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


POSITIVE = _int_at_least(1)
NON_NEGATIVE = _int_at_least(0)

# flag, TrainSettings field, argparse type, help (the default is appended from TrainSettings)
TRAIN_FLAGS = [
    ("--preset", "preset", str, "model preset: tiny, small or medium (SPEC section 2)"),
    ("--n-embd", "n_embd", POSITIVE, "embedding width C (overrides the preset)"),
    ("--n-heads", "n_heads", POSITIVE, "attention heads, must divide C (overrides the preset)"),
    ("--n-layers", "n_layers", POSITIVE, "transformer blocks L (overrides the preset)"),
    ("--block-size", "block_size", POSITIVE, "longest context in tokens (overrides the preset)"),
    ("--vocab-size", "vocab_size", _int_at_least(256), "BPE vocabulary to train, and the model's V"),
    ("--corpus", "corpus", str, "a UTF-8 text file instead of the cached Shakespeare corpus"),
    ("--val-fraction", "val_fraction", _float_range(0.0, 1.0, low_open=True), "fraction of tokens held out for validation"),
    ("--batch-size", "batch_size", POSITIVE, "sequences per batch B"),
    ("--seq-len", "seq_len", POSITIVE, "tokens per sequence T (<= block size)"),
    ("--steps", "max_steps", NON_NEGATIVE, "number of AdamW updates (the schedule spans them)"),
    ("--stop-at", "stop_at", NON_NEGATIVE, "stop after this many updates as if interrupted (resume later)"),
    ("--lr", "lr", _float_range(0.0), "peak learning rate"),
    ("--warmup", "warmup_steps", NON_NEGATIVE, "linear warmup steps from lr 0"),
    ("--schedule", "schedule", str, "after warmup: constant or cosine"),
    ("--min-lr", "min_lr", _float_range(0.0), "floor of the cosine schedule"),
    ("--clip", "grad_clip", _float_range(0.0, low_open=True), "clip the global gradient norm to this"),
    ("--weight-decay", "weight_decay", _float_range(0.0), "AdamW decoupled weight decay (2-D weights only)"),
    ("--beta1", "beta1", _float_range(0.0, 1.0), "AdamW first-moment decay"),
    ("--beta2", "beta2", _float_range(0.0, 1.0), "AdamW second-moment decay"),
    ("--eps", "eps", _float_range(0.0, low_open=True), "AdamW epsilon"),
    ("--eval-interval", "eval_interval", POSITIVE, "evaluate, log and print every N steps"),
    ("--eval-batches", "eval_batches", POSITIVE, "validation set: the first N*B sequential windows"),
    ("--sample-interval", "sample_interval", POSITIVE, "log a generated sample every M steps"),
    ("--sample-tokens", "sample_tokens", POSITIVE, "tokens per logged sample"),
    ("--prompt", "sample_prompt", str, "prompt of the logged samples"),
    ("--temperature", "sample_temperature", _float_range(0.0), "sampling temperature of the logged samples (0 = greedy)"),
    ("--top-k", "sample_top_k", POSITIVE, "top-k of the logged samples"),
    ("--checkpoint-interval", "checkpoint_interval", NON_NEGATIVE, "write latest.ckpt every K steps (0 = never)"),
    ("--patience", "patience", POSITIVE, "stop after this many evaluations without a new best"),
    ("--seed", "seed", NON_NEGATIVE, "seed of the init, the batches and the samples"),
    ("--run-dir", "run_dir", str, "directory for run.json, training_log.csv and the checkpoints"),
    ("--resume", "resume", str, "continue from this training checkpoint; the settings default to those in "
                                "the run.json beside it (its run directory included)"),
]


def _settings_from_args(args, **overrides):
    """TrainSettings from the flags given. With --resume CKPT and a run.json beside
    the checkpoint, the original run's settings are the base (its run directory,
    no stop_at), so `feste train --resume DIR/final.ckpt` continues the same run;
    flags given explicitly still override them."""
    import dataclasses
    import json

    from .train import RUN_JSON, TrainSettings

    values = {}
    if args.resume is not None:
        run_json = Path(args.resume).parent / RUN_JSON
        if run_json.is_file():
            try:
                saved = json.loads(run_json.read_text(encoding="utf-8"))["settings"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{run_json}: cannot read the original run's settings: {exc}") from None
            known = {f.name for f in dataclasses.fields(TrainSettings)}
            values.update({k: v for k, v in saved.items() if k in known})
            values.update(run_dir=str(Path(args.resume).parent), stop_at=None)
    values.update({field: getattr(args, field) for _, field, _, _ in TRAIN_FLAGS if getattr(args, field) is not None})
    values.update(overrides)
    return TrainSettings(**values)


def _check_file(path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file")
    return path


def cmd_train(args) -> int:
    """Train (or resume) a model with every knob on the command line."""
    impl = load_impl(args.impl)
    settings = _settings_from_args(args)
    if settings.resume is not None:
        _check_file(settings.resume, "checkpoint")
    settings.validate()
    if settings.corpus is not None:
        _check_file(settings.corpus, "corpus")
    from .train import train

    print(f"feste train: impl {impl.__name__}, run directory {settings.run_dir}", flush=True)
    result = train(settings, impl=impl, progress=not args.quiet)
    print(f"Stopped at step {result.step} ({result.stop_reason}); best validation loss "
          f"{result.best_val_loss:.4f} at step {result.best_val_step}")
    print(f"Training log: {Path(settings.run_dir) / 'training_log.csv'}")
    for kind, path in result.checkpoints.items():
        print(f"Checkpoint ({kind}): {path}")
    return 0


def cmd_generate(args) -> int:
    """Generate text from a checkpoint (its tokenizer encodes the prompt)."""
    from .checkpoint import load_checkpoint

    impl = load_impl(args.impl)
    path = _check_file(args.checkpoint, "checkpoint")
    checkpoint = load_checkpoint(path)
    if checkpoint.tokenizer is None:
        raise ValueError(f"checkpoint {path} has no tokenizer: cannot encode the prompt")
    prompt = checkpoint.tokenizer.encode(args.prompt)
    if len(prompt) == 0:
        raise ValueError("--prompt is empty: give at least one character")
    ids = impl.generate(checkpoint.params, prompt, args.tokens, args.temperature, args.top_k, args.seed)
    print(checkpoint.tokenizer.decode(ids))
    return 0


def cmd_inspect(args) -> int:
    """Describe a checkpoint after validating the whole file."""
    from .checkpoint import MAGIC, VERSION, config_to_json, read_checkpoint
    from .params import n_params

    path = _check_file(args.checkpoint, "checkpoint")
    checkpoint, sections, size = read_checkpoint(path)
    config, state, meta = checkpoint.config, checkpoint.optimizer, checkpoint.metadata
    parts = ["parameters"] + (["optimizer state"] if state else []) + (["tokenizer"] if checkpoint.tokenizer else [])
    print(f"file:        {path} ({size:,} bytes)")
    print(f"format:      {MAGIC.decode()} version {VERSION} (valid: every section read and checked)")
    print(f"kind:        {checkpoint.kind} ({', '.join(parts)})")
    print(f"config:      {config_to_json(config)}")
    print(f"parameters:  {n_params(config):,} in {len(checkpoint.params.table)} tensors")
    print("sections:")
    for name, offset, length in sections:
        detail = ""
        if name == "optimizer":
            detail = (f"AdamW step {state.step}, beta1 {state.beta1:.6g}, beta2 {state.beta2:.6g}, eps {state.eps:.6g}"
                      if state else "absent")
        elif name == "tokenizer":
            detail = f"{checkpoint.tokenizer.vocab_size} tokens" if checkpoint.tokenizer else "absent"
        print(f"  {name:<11} offset {offset:>11,}  {length:>11,} bytes  {detail}".rstrip())
    best = meta["best_val_loss"]
    best_text = f"{best:.4f} at step {meta['best_val_step']}" if math.isfinite(best) else "none recorded"
    print(f"step:        {meta['step']}")
    print(f"best val:    {best_text}")
    return 0


def _schedule_from_run_json(run_dir: Path, last_step: int):
    """(steps, lr) of every step up to the last logged one, from the run's
    settings; None when run.json is missing or unreadable (the plot then shows
    the logged learning rates only)."""
    import json

    from .optim import learning_rate

    try:
        s = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["settings"]
        steps = list(range(last_step + 1))
        lrs = [learning_rate(k, s["lr"], s["warmup_steps"], s["max_steps"], s["schedule"], s["min_lr"])
               for k in steps]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return steps, lrs


def cmd_plot(args) -> int:
    """Plot train/validation loss and the learning rate of a run against the step."""
    from .logger import read_log

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist or is not a directory")
    log_path = _check_file(run_dir / "training_log.csv", "training log")
    rows = read_log(log_path)
    if not rows:
        raise ValueError(f"{log_path} has no rows to plot")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("plotting needs matplotlib: pip install 'feste-spec[plot]'") from None
    out = Path(args.out) if args.out else run_dir / "loss.png"
    steps = [r["step"] for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1])
    ax_loss.plot(steps, [r["train_loss"] for r in rows], marker="o", label="train loss")
    ax_loss.plot(steps, [r["val_loss"] for r in rows], marker="s", label="validation loss")
    ax_loss.set_ylabel("cross-entropy (nats)")
    ax_loss.set_title(f"{run_dir.name}: loss against step")
    ax_loss.grid(True, alpha=0.3)
    ax_loss.legend()
    schedule = _schedule_from_run_json(run_dir, steps[-1])
    if schedule is not None:  # the whole schedule, not just the logged steps
        ax_lr.plot(*schedule, color="tab:green", label="learning rate (run.json schedule)")
    ax_lr.plot(steps, [r["learning_rate"] for r in rows], "o", color="tab:green", label="logged")
    ax_lr.set_xlabel("step")
    ax_lr.set_ylabel("learning rate")
    ax_lr.grid(True, alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)
    print(f"Plot saved to: {out}")
    return 0


# --- demo -------------------------------------------------------------------------
DEMO_RULE = "=" * 70
DEMO_STEPS = 600  # about two minutes here with fast (measured 300 steps in 51 s on the shared 2-core machine)
DEMO_LR = 2e-3  # peak learning rate of the demo run (warmup: a tenth of the steps)
# SPEC section 2: at init the loss is ln V plus ~sigma^2/2 (0.026 for C = 128):
# the demo's check mark uses the conformance suite's BASELINE_ABS bound.
DEMO_BASELINE_TOLERANCE = 0.15


def cmd_demo(args) -> int:
    """The seed's "Training Infrastructure Demonstration", run for real."""
    from .data import TextDataLoader
    from .tokenizer import N_BYTES, Tokenizer
    from .train import TrainSettings, train

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
    source, data = _corpus_source(args)
    print(f"Training BPE tokenizer on {'Shakespeare' if args.corpus is None else source}...")
    print(f"  Initial vocab: {N_BYTES} (byte-level)")
    print(f"  Target vocab: {vocab}")
    print(f"  Training with {vocab - N_BYTES} merges...", flush=True)
    tokenizer_cls = getattr(impl, "Tokenizer", Tokenizer)
    tokenizer = tokenizer_cls.train(data, vocab, progress=not args.quiet)
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

    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / time.strftime("training_%Y%m%d_%H%M%S")
    steps = args.steps
    settings = TrainSettings(preset="tiny", vocab_size=vocab, batch_size=B, seq_len=T, max_steps=steps,
                             lr=DEMO_LR, warmup_steps=max(1, steps // 10), eval_interval=max(1, steps // 5),
                             sample_interval=max(1, steps // 5), checkpoint_interval=0, seed=args.seed,
                             run_dir=str(run_dir))
    print(f"Training the tiny model ({n_params(config):,} parameters, impl {impl.__name__}) for {steps} steps:")
    result = train(settings, tokens=tokens, tokenizer=tokenizer, impl=impl, progress=not args.quiet)
    print()
    print(f"Training log saved to: {run_dir / 'training_log.csv'}")
    sample = result.history[-1]["sample"] if result.history else ""
    print("Sample:")
    for line in sample.splitlines() or [""]:
        print(f"  {line}")
    print(f"Checkpoint saved to: {result.checkpoints['final']}")
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    learned = steps == 0 or last < first
    if baseline_ok and learned:
        print(f"✓ All infrastructure components working (validation loss {first:.2f} -> {last:.2f})")
        return 0
    print(f"✗ Something is off: baseline {'ok' if baseline_ok else 'off'}, validation loss {first:.2f} -> {last:.2f}")
    return EXIT_ERROR


def cmd_bench(args) -> int:
    """`feste bench ARGS`: benchmarks/report.py ARGS (the seed's table; SPEC section 9)."""
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "report.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: `feste bench` needs a source checkout "
                                "(pip install -e .) because the benchmarks are not installed")
    extra = [f"--impl={name}" for name in args.impl or []]
    extra += [f"--{flag.replace('_', '-')}={getattr(args, flag)}" for flag in
              ("out", "json", "baseline", "min_rounds", "max_time", "threads") if getattr(args, flag) is not None]
    extra += ["--components"] if args.components else []
    pytest_args = [a for a in args.pytest_args if a != "--"]
    extra += ["--", *pytest_args] if pytest_args else []
    import subprocess

    return subprocess.call([sys.executable, str(script), *extra])


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

    p = _one_line_errors(sub.add_parser("demo", help="the seed's training infrastructure demonstration, for real",
                       description="Train the tokenizer (vocab 512), build the loader (T 64, B 16), check the "
                                   "baseline loss of a fresh tiny model, train it for a few minutes, sample."))
    _add_corpus_option(p)
    p.add_argument("--steps", type=NON_NEGATIVE, default=DEMO_STEPS, metavar="N",
                   help=f"training steps (default {DEMO_STEPS}, about two minutes with fast)")
    p.add_argument("--run-dir", metavar="DIR", default=None,
                   help="run directory (default runs/training_YYYYmmdd_HHMMSS)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, metavar="S", help="seed of init, batches, samples (default 0)")
    _add_impl_option(p)
    p.set_defaults(func=cmd_demo)

    from .train import TrainSettings

    defaults = TrainSettings()
    p = _one_line_errors(sub.add_parser("train", help="train or resume a model with every knob",
                       description="Train a GPT-2-style model (SPEC section 7). Writes run.json, "
                                   "training_log.csv and best/latest/final training checkpoints to --run-dir."))
    none_means = {"n_embd": "the preset's", "n_heads": "the preset's", "n_layers": "the preset's",
                  "block_size": "the preset's", "corpus": "the cached Shakespeare corpus", "stop_at": "--steps",
                  "patience": "never stop early", "resume": "start fresh"}
    str_metavars = {"corpus": "FILE", "run_dir": "DIR", "resume": "CKPT", "sample_prompt": "TEXT"}
    for flag, field, kind, text in TRAIN_FLAGS:
        choices = {"preset": ["tiny", "small", "medium"], "schedule": ["constant", "cosine"]}.get(field)
        default = getattr(defaults, field)
        shown = none_means.get(field, "all tokens") if default is None else repr(default) if kind is str else default
        metavar = None if choices else str_metavars.get(field, "N" if kind in (POSITIVE, NON_NEGATIVE) or
                                                         field == "vocab_size" else "X")
        p.add_argument(flag, dest=field, type=kind, default=None, choices=choices, metavar=metavar,
                       help=f"{text} (default: {shown})")
    _add_impl_option(p)
    p.set_defaults(func=cmd_train)

    p = _one_line_errors(sub.add_parser("generate", help="generate text from a checkpoint",
                       description="Generate text from a checkpoint; its tokenizer encodes the prompt."))
    p.add_argument("checkpoint", metavar="CKPT", help="a FESTE_CKPT file with a tokenizer")
    p.add_argument("--prompt", default="To be, or not to be", help="text to continue (default: %(default)r)")
    p.add_argument("--tokens", type=NON_NEGATIVE, default=100, metavar="N", help="new tokens (default 100)")
    p.add_argument("--temperature", type=_float_range(0.0), default=0.8, metavar="T",
                   help="sampling temperature, 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=POSITIVE, default=None, metavar="K",
                   help="sample only from the K most likely tokens (default: all)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, metavar="S", help="sampling seed (default 0)")
    _add_impl_option(p)
    p.set_defaults(func=cmd_generate)

    p = _one_line_errors(sub.add_parser("inspect", help="validate a checkpoint and describe it",
                       description="Read and validate the whole checkpoint; print its header, config, "
                                   "parameter count, sections, step, metadata and file size."))
    p.add_argument("checkpoint", metavar="CKPT", help="a FESTE_CKPT file")
    p.set_defaults(func=cmd_inspect)

    p = _one_line_errors(sub.add_parser(
        "plot", help="plot a run's loss and learning rate against step (needs matplotlib)",
                       description="Write a PNG of train and validation loss and the learning rate against "
                                   "step from RUN_DIR/training_log.csv. Needs the optional 'plot' extra."))
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory holding training_log.csv")
    p.add_argument("--out", metavar="PNG", default=None, help="output file (default RUN_DIR/loss.png)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("bench", help="benchmark the training step of every implementation (the seed's table)",
                       description="Run benchmarks/report.py: training-step benchmarks over the nine cells, "
                                   "printed in the seed's layout with % of matmul peak and speedups; "
                                   "writes runs/bench/report.md (and report.png with the 'plot' extra).")
    p.add_argument("--impl", action="append", metavar="NAME", help="implementation (repeatable; default: all)")
    p.add_argument("--out", metavar="DIR", help="output directory (default runs/bench)")
    p.add_argument("--json", metavar="FILE", help="render an existing pytest-benchmark JSON instead of running")
    p.add_argument("--baseline", metavar="NAME", help="speedups relative to this implementation (default reference)")
    p.add_argument("--min-rounds", type=POSITIVE, metavar="N", help="pytest-benchmark minimum rounds")
    p.add_argument("--max-time", type=float, metavar="S", help="pytest-benchmark max time per benchmark")
    p.add_argument("--threads", type=POSITIVE, metavar="N",
                   help="BLAS and Numba threads (default: all; 1 is far less noisy on a loaded machine)")
    p.add_argument("--components", action="store_true", help="where the time goes: components at medium size")
    p.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS", help="passed to pytest, e.g. -- -k tiny")
    p.set_defaults(func=cmd_bench)
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
