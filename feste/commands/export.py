"""`feste export CKPT OUT_DIR`: a checkpoint as a Hugging Face GPT-2 directory (SPEC §hugging-face)."""
from __future__ import annotations

from ..common import check_file, check_output, one_line_errors


def run(args) -> int:
    """Write model.safetensors, config.json and (with a tokenizer) tokenizer.json + tokenizer_config.json."""
    from ..hf import export_hf  # needs safetensors (the interop extra)

    path = check_file(args.checkpoint, "checkpoint")
    check_output(args.out_dir, args.overwrite, "output directory", directory=True)
    written = export_hf(path, args.out_dir, overwrite=args.overwrite)
    for file in written:
        print(f"wrote {file} ({file.stat().st_size:,} bytes)")
    print(f"load it with transformers.AutoModelForCausalLM.from_pretrained({str(args.out_dir)!r})")
    return 0


def add_parser(sub) -> None:
    p = one_line_errors(sub.add_parser(
        "export", help="write a checkpoint as a Hugging Face GPT-2 directory (safetensors)",
        description="Write CKPT as a Hugging Face GPT2LMHeadModel directory: model.safetensors (GPT-2 tensor "
                    "names and layouts, float32, untied lm_head), config.json and, when the checkpoint has a "
                    "tokenizer, tokenizer.json (tokenizers' byte-level BPE, same ids as feste) and "
                    "tokenizer_config.json. Optimizer state and training metadata are not exported. "
                    "Needs the interop extra (pip install 'feste-spec[interop]'); SPEC §hugging-face."))
    p.add_argument("checkpoint", metavar="CKPT", help="a FESTE_CKPT file (training or inference)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory to write: new or empty unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the export's files in an existing OUT_DIR (other files are left alone)")
    p.set_defaults(func=run)
