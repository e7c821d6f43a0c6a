"""`feste generate CKPT`: text from a checkpoint (its tokenizer encodes the prompt)."""
from __future__ import annotations

import sys

from reference.checkpoint import load_checkpoint

from ..common import NON_NEGATIVE, POSITIVE, add_impl_option, check_file, float_range, load_impl, one_line_errors
from ..trainer import vocabulary_mismatch


def run(args) -> int:
    """Generate text from a checkpoint (its tokenizer encodes the prompt)."""
    impl = load_impl(args.impl)
    path = check_file(args.checkpoint, "checkpoint")
    checkpoint = load_checkpoint(path)
    if checkpoint.tokenizer is None:
        raise ValueError(f"checkpoint {path} has no tokenizer: cannot encode the prompt")
    mismatch = vocabulary_mismatch(checkpoint)
    if mismatch:  # refused before generating: the text would be lost at the decode
        raise ValueError(f"checkpoint {path}: {mismatch}")
    prompt = checkpoint.tokenizer.encode(args.prompt)
    if len(prompt) == 0:
        raise ValueError("--prompt is empty: give at least one character")
    block = checkpoint.config.block_size
    if len(prompt) > block:  # generate would cut it with a UserWarning: say it in one line instead
        print(f"feste generate: note: the prompt is {len(prompt)} tokens, more than the model's block_size "
              f"{block}: only its last {block} tokens are used", file=sys.stderr)
        prompt = prompt[-block:]
    ids = impl.generate(checkpoint.params, prompt, args.tokens, args.temperature, args.top_k, args.seed)
    print(checkpoint.tokenizer.decode(ids))
    return 0


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser("generate", help="generate text from a checkpoint",
                        description="Generate text from a checkpoint; its tokenizer encodes the prompt."))
    p.add_argument("checkpoint", metavar="CKPT", help="a FESTE_CKPT file with a tokenizer")
    p.add_argument("--prompt", default="To be, or not to be", help="text to continue (default: %(default)r)")
    p.add_argument("--tokens", type=NON_NEGATIVE, default=100, metavar="N", help="new tokens (default 100)")
    p.add_argument("--temperature", type=float_range(0.0), default=0.8, metavar="T",
                   help="sampling temperature, 0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=POSITIVE, default=None, metavar="K",
                   help="sample only from the K most likely tokens (default: all)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, metavar="S", help="sampling seed (default 0)")
    add_impl_option(p)
    p.set_defaults(func=run)
