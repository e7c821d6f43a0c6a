"""`feste inspect CKPT [--json]`: validate a whole checkpoint and describe it (SPEC §checkpoint)."""
from __future__ import annotations

import json
import math

from reference.checkpoint import CONFIG_FIELDS, MAGIC, VERSION, config_to_json, read_checkpoint
from reference.params import n_params

from ..common import check_file, one_line_errors


def describe(path, checkpoint, sections, size) -> dict:
    """Everything `feste inspect` reports about a checkpoint `read_checkpoint(path)`
    returned, as a JSON-ready dict (SPEC §command-line)."""
    config, state, meta = checkpoint.config, checkpoint.optimizer, checkpoint.metadata
    best = meta["best_val_loss"]
    return {
        "file": str(path),
        "bytes": size,
        "format": MAGIC.decode(),
        "version": VERSION,
        "kind": checkpoint.kind,
        "config": {name: getattr(config, name) for name in CONFIG_FIELDS},
        "parameters": n_params(config),
        "tensors": len(checkpoint.params.table),
        "sections": [{"name": name, "offset": offset, "length": length} for name, offset, length in sections],
        "optimizer": None if state is None else {"step": state.step, "beta1": state.beta1, "beta2": state.beta2,
                                                 "eps": state.eps},
        "tokenizer": None if checkpoint.tokenizer is None else {"vocab_size": checkpoint.tokenizer.vocab_size},
        "metadata": {"step": meta["step"], "best_val_loss": best if math.isfinite(best) else None,
                     "best_val_step": meta["best_val_step"]},
    }


def run(args) -> int:
    """Describe a checkpoint after validating the whole file."""
    path = check_file(args.checkpoint, "checkpoint")
    checkpoint, sections, size = read_checkpoint(path)  # validates the whole file first
    info = describe(path, checkpoint, sections, size)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    state, meta = info["optimizer"], info["metadata"]
    parts = ["parameters"] + (["optimizer state"] if state else []) + (["tokenizer"] if info["tokenizer"] else [])
    print(f"file:        {path} ({info['bytes']:,} bytes)")
    print(f"format:      {info['format']} version {info['version']} (valid: every section read and checked)")
    print(f"kind:        {info['kind']} ({', '.join(parts)})")
    print(f"config:      {config_to_json(checkpoint.config)}")
    print(f"parameters:  {info['parameters']:,} in {info['tensors']} tensors")
    print("sections:")
    for section in info["sections"]:
        name, detail = section["name"], ""
        if name == "optimizer":
            detail = (f"AdamW step {state['step']}, beta1 {state['beta1']:.6g}, beta2 {state['beta2']:.6g}, "
                      f"eps {state['eps']:.6g}" if state else "absent")
        elif name == "tokenizer":
            detail = f"{info['tokenizer']['vocab_size']} tokens" if info["tokenizer"] else "absent"
        print(f"  {name:<11} offset {section['offset']:>11,}  {section['length']:>11,} bytes  {detail}".rstrip())
    best = meta["best_val_loss"]
    best_text = f"{best:.4f} at step {meta['best_val_step']}" if best is not None else "none recorded"
    print(f"step:        {meta['step']}")
    print(f"best val:    {best_text}")
    return 0


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser("inspect", help="validate a checkpoint and describe it",
                        description="Read and validate the whole checkpoint; print its header, config, "
                                    "parameter count, sections, step, metadata and file size."))
    p.add_argument("checkpoint", metavar="CKPT", help="a FESTE_CKPT file")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead (file, bytes, format, version, kind, config, parameters, "
                        "tensors, sections, optimizer, tokenizer, metadata; best_val_loss null when none)")
    p.set_defaults(func=run)
