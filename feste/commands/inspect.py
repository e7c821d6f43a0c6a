"""`feste inspect CKPT`: validate a whole checkpoint and describe it (SPEC section 4)."""
from __future__ import annotations

import math

from reference.checkpoint import MAGIC, VERSION, config_to_json, read_checkpoint
from reference.params import n_params

from ..common import check_file, one_line_errors


def run(args) -> int:
    """Describe a checkpoint after validating the whole file."""
    path = check_file(args.checkpoint, "checkpoint")
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


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser("inspect", help="validate a checkpoint and describe it",
                        description="Read and validate the whole checkpoint; print its header, config, "
                                    "parameter count, sections, step, metadata and file size."))
    p.add_argument("checkpoint", metavar="CKPT", help="a FESTE_CKPT file")
    p.set_defaults(func=run)
