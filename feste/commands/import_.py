"""`feste import HF_DIR OUT.ckpt`: a Hugging Face GPT-2 directory as a checkpoint (SPEC §hugging-face)."""
from __future__ import annotations

from reference.checkpoint import save_checkpoint

from ..common import check_output, one_line_errors


def run(args) -> int:
    """Read HF_DIR (config.json, model.safetensors, optional tokenizer.json) and write an inference checkpoint."""
    from ..hf import import_hf  # needs safetensors (the interop extra)

    out = check_output(args.out, args.overwrite, "output")
    notes: list[str] = []
    checkpoint = import_hf(args.hf_dir, notes=notes)
    save_checkpoint(out, checkpoint)
    for note in notes:
        print(f"note: {note}")
    c = checkpoint.config
    tokens = f", tokenizer of {checkpoint.tokenizer.vocab_size} tokens" if checkpoint.tokenizer else ", no tokenizer"
    print(f"wrote {out} ({out.stat().st_size:,} bytes): V {c.vocab_size}, C {c.n_embd}, NH {c.n_heads}, "
          f"L {c.n_layers}, block_size {c.block_size}{tokens}")
    return 0


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser(
        "import", help="read a Hugging Face GPT-2 directory into a checkpoint",
        description="Read a Hugging Face GPT-2 directory (config.json, model.safetensors and, if present, "
                    "tokenizer.json) into an inference FESTE_CKPT: ours from `feste export`, or any float32 "
                    "GPT-2 of a shape feste's model holds (tanh GELU, a tokenizer of exactly the model's "
                    "vocab_size and no regex pre-tokenizer: GPT-2's own tokenizer is refused). A tied model "
                    "(tie_word_embeddings, GPT2Config's default) imports with its output layer a copy of the "
                    "token embedding, trained separately from then on. The first thing that does not fit is "
                    "reported. `feste train --init-from` fine-tunes the result (or HF_DIR itself). Needs the "
                    "interop extra; SPEC §hugging-face."))
    p.add_argument("hf_dir", metavar="HF_DIR", help="a Hugging Face GPT-2 model directory")
    p.add_argument("out", metavar="OUT.ckpt", help="the checkpoint file to write (new unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.ckpt if it exists")
    p.set_defaults(func=run)
