"""`feste train`: train or resume a model with every knob on the command line (SPEC section 7.4)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from reference.rundir import LOG_NAME, RUN_JSON, STEPS_NAME, read_run_json
from reference.train import TrainSettings, train

from ..common import (
    NON_NEGATIVE, POSITIVE, add_impl_option, check_file, float_range, int_at_least, load_impl, one_line_errors,
)
from ..corpus import fetch_corpus

# flag, TrainSettings field, argparse type, help (the default is appended from TrainSettings)
TRAIN_FLAGS = [
    ("--preset", "preset", str, "model preset: tiny, small or medium (SPEC section 2)"),
    ("--n-embd", "n_embd", POSITIVE, "embedding width C (overrides the preset)"),
    ("--n-heads", "n_heads", POSITIVE, "attention heads, must divide C (overrides the preset)"),
    ("--n-layers", "n_layers", POSITIVE, "transformer blocks L (overrides the preset)"),
    ("--block-size", "block_size", POSITIVE, "longest context in tokens (overrides the preset)"),
    ("--vocab-size", "vocab_size", int_at_least(256), "BPE vocabulary to train, and the model's V"),
    ("--dropout", "dropout", float_range(0.0, 1.0), "dropout rate p at GPT-2's four sites, training steps only "
                                                    "(SPEC 2.7); fixed for the run's life"),
    ("--corpus", "corpus", str, "a UTF-8 text file instead of the cached Shakespeare corpus"),
    ("--val-fraction", "val_fraction", float_range(0.0, 1.0, low_open=True), "fraction of tokens held out for validation"),
    ("--batch-size", "batch_size", POSITIVE, "sequences per batch B"),
    ("--seq-len", "seq_len", POSITIVE, "tokens per sequence T (<= block size)"),
    ("--steps", "max_steps", NON_NEGATIVE, "number of AdamW updates (the schedule spans them)"),
    ("--stop-at", "stop_at", NON_NEGATIVE, "stop after this many updates as if interrupted (resume later)"),
    ("--lr", "lr", float_range(0.0), "peak learning rate"),
    ("--warmup", "warmup_steps", NON_NEGATIVE, "linear warmup steps from lr 0"),
    ("--schedule", "schedule", str, "after warmup: constant or cosine"),
    ("--min-lr", "min_lr", float_range(0.0), "floor of the cosine schedule"),
    ("--clip", "grad_clip", float_range(0.0, low_open=True), "clip the global gradient norm to this"),
    ("--weight-decay", "weight_decay", float_range(0.0), "AdamW decoupled weight decay (2-D weights only)"),
    ("--beta1", "beta1", float_range(0.0, 1.0), "AdamW first-moment decay"),
    ("--beta2", "beta2", float_range(0.0, 1.0), "AdamW second-moment decay"),
    ("--eps", "eps", float_range(0.0, low_open=True), "AdamW epsilon"),
    ("--eval-interval", "eval_interval", POSITIVE, "evaluate, log and print every N steps"),
    ("--eval-batches", "eval_batches", POSITIVE, "validation set: the first N*B sequential windows"),
    ("--sample-interval", "sample_interval", POSITIVE, "log a generated sample every M steps"),
    ("--sample-tokens", "sample_tokens", POSITIVE, "tokens per logged sample"),
    ("--prompt", "sample_prompt", str, "prompt of the logged samples"),
    ("--temperature", "sample_temperature", float_range(0.0), "sampling temperature of the logged samples (0 = greedy)"),
    ("--top-k", "sample_top_k", POSITIVE, "top-k of the logged samples"),
    ("--checkpoint-interval", "checkpoint_interval", NON_NEGATIVE, "write latest.ckpt every K steps (0 = never)"),
    ("--patience", "patience", POSITIVE, "stop after this many evaluations without a new best"),
    ("--seed", "seed", NON_NEGATIVE, "seed of the init, the batches and the samples"),
    ("--run-dir", "run_dir", str, "directory for run.json, the logs and the checkpoints; a new run refuses a "
                                  "non-empty one it did not create (see --overwrite)"),
    ("--resume", "resume", str, "continue the run this training checkpoint came from: its run directory (or "
                                "--run-dir) must hold the run's run.json, whose settings are the defaults; "
                                "settings that would change the model, data or batch order are refused"),
    ("--overwrite", "overwrite", bool, "let a new run replace the run files (run.json, logs, checkpoints) of a "
                                       "non-empty --run-dir"),
]


def settings_from_args(args, **overrides) -> TrainSettings:
    """TrainSettings from the flags given. With --resume CKPT the original run's
    settings (run.json in --run-dir, else beside the checkpoint) are the base,
    without its stop_at, so `feste train --resume DIR/latest.ckpt` continues the
    same run; flags given explicitly override them (the trainer refuses those
    that would change the run, SPEC section 7.3)."""
    values = {}
    if args.resume is not None:
        run_dir = Path(args.run_dir) if args.run_dir is not None else Path(args.resume).parent
        if (run_dir / RUN_JSON).exists():  # else the trainer says that it is missing
            saved = read_run_json(run_dir)["settings"]
            known = {f.name for f in dataclasses.fields(TrainSettings)} - {"run_dir", "resume", "overwrite", "stop_at"}
            values.update({k: v for k, v in saved.items() if k in known})
    values.update({field: getattr(args, field) for _, field, _, _ in TRAIN_FLAGS if getattr(args, field) is not None})
    values.update(overrides)
    return TrainSettings(**values)


def run(args) -> int:
    """Train (or resume) a model with every knob on the command line."""
    impl = load_impl(args.impl)
    settings = settings_from_args(args)
    if settings.resume is not None:
        check_file(settings.resume, "checkpoint")
    settings.validate()
    if settings.corpus is not None:
        check_file(settings.corpus, "corpus")
    else:
        fetch_corpus(progress=args.progress)  # the trainer reads the cached copy

    print(f"feste train: impl {impl.__name__}", flush=True)
    result = train(settings, impl=impl, progress=args.progress)
    print(f"Stopped at step {result.step} ({result.stop_reason}); best validation loss "
          f"{result.best_val_loss:.4f} at step {result.best_val_step}")
    print(f"Training log: {result.run_dir / LOG_NAME} (every step: {result.run_dir / STEPS_NAME})")
    for kind, path in result.checkpoints.items():
        print(f"Checkpoint ({kind}): {path}")
    return 0


def add_parser(sub) -> None:
    defaults = TrainSettings()
    p = one_line_errors(sub.add_parser("train", help="train or resume a model with every knob",
                        description="Train a GPT-2-style model (SPEC section 7). Writes run.json, "
                                    "training_log.csv and best/latest/final training checkpoints to --run-dir."))
    none_means = {"n_embd": "the preset's", "n_heads": "the preset's", "n_layers": "the preset's",
                  "block_size": "the preset's", "corpus": "the cached Shakespeare corpus", "stop_at": "--steps",
                  "patience": "never stop early", "resume": "start fresh",
                  "run_dir": "a new runs/<preset>-<YYYYmmdd-HHMMSS>; with --resume the checkpoint's directory"}
    str_metavars = {"corpus": "FILE", "run_dir": "DIR", "resume": "CKPT", "sample_prompt": "TEXT"}
    for flag, field, kind, text in TRAIN_FLAGS:
        choices = {"preset": ["tiny", "small", "medium"], "schedule": ["constant", "cosine"]}.get(field)
        default = getattr(defaults, field)
        shown = none_means.get(field, "all tokens") if default is None else repr(default) if kind is str else default
        metavar = None if choices else str_metavars.get(field, "N" if kind in (POSITIVE, NON_NEGATIVE) or
                                                         field == "vocab_size" else "X")
        if kind is bool:
            p.add_argument(flag, dest=field, action="store_true", default=None, help=text)
            continue
        p.add_argument(flag, dest=field, type=kind, default=None, choices=choices, metavar=metavar,
                       help=f"{text} (default: {shown})")
    add_impl_option(p)
    p.set_defaults(func=run)
