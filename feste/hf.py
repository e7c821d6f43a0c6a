"""Hugging Face interop: a checkpoint as a `GPT2LMHeadModel` directory and back (SPEC §hugging-face).

    export_hf(checkpoint_or_path, out_dir, overwrite=False) -> list of written paths
    import_hf(directory) -> Checkpoint          (inference checkpoint: no optimizer state)

The directory holds `model.safetensors` (float32 tensors in GPT-2's names and
layouts, written with the `safetensors` library), `config.json` (GPT2Config
with untied output weights) and, when the checkpoint has a tokenizer,
`tokenizer.json` (the `tokenizers` library's format: a BPE model over GPT-2's
byte-to-unicode alphabet with no regex pre-splitting, which encodes exactly
like SPEC §tokenizer) and `tokenizer_config.json` (so `transformers` loads it as
a fast tokenizer). `tensor_map` below is the whole mapping, used both ways.
Import also reads a tied model (GPT2Config's default, how published GPT-2s are
stored): our output layer becomes a copy of the token embedding.

Only `safetensors` is needed at run time (the `interop` extra); it is imported
here and nowhere else. `tokenizers`, `transformers` and `torch` are what the
tests load our files with.

Dimension legend: V vocab, C n_embd, L n_layers, NH n_heads.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reference.atomic_io import atomic_write, current_umask, with_filename
from reference.input_checks import read_regular, strict_json
from reference.checkpoint import Checkpoint, format_f32, load_checkpoint
from reference.config import Config
from reference.params import Params, param_table
from reference.tokenizer import N_BYTES, Tokenizer, byte_token_string

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
# GPT-2's own (slow) tokenizer files: a vocabulary and merges used with its regex pre-tokenizer
GPT2_TOKENIZER_FILES = ("vocab.json", "merges.txt")
# tokenizer classes for which transformers rebuilds GPT-2's regex pre-tokenizer over tokenizer.json
GPT2_TOKENIZER_CLASSES = ("GPT2Tokenizer", "GPT2TokenizerFast")
# what feste cannot represent yet, said in every refusal of a GPT-2 tokenizer
GPT2_TOKENIZER_REASON = ("GPT-2's own tokenizer, which splits the text with a regex before merging; feste's "
                         "byte-level BPE merges over the whole text (SPEC §tokenizer), so it cannot represent this "
                         "tokenizer (supporting it is a later step)")
EXPORT_FILES = (MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE)

ACTIVATION = "gelu_new"  # GPT-2's tanh GELU, SPEC §forward
# the same tanh formula under transformers' other name; accepted on import
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh")
LAYER_NORM_EPSILON = 1e-5

# transformers' GPT2Config defaults for the keys import reads: a config.json
# that omits a key means this value (transformers fills it the same way)
GPT2_DEFAULTS = {
    "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None,
    "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1,
    "layer_norm_epsilon": 1e-5, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
    "add_cross_attention": False, "tie_word_embeddings": True,
}
# causal-mask buffers that older transformers versions saved beside the
# weights; transformers itself ignores them on load, and so do we
IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")
BASE_PREFIX = "transformer."  # GPT2LMHeadModel's names; a bare GPT2Model file omits it


class HFFormatError(ValueError):
    """A Hugging Face directory that feste cannot read or write; names the file and the reason."""

    def __init__(self, path, message: str):
        self.path = str(path)
        super().__init__(f"{path}: {message}")


class InteropMissing(ImportError, ValueError):
    """The interop extra (safetensors) is not installed: an ImportError, which it is, and a
    ValueError, so the command line and the trainer report it as a user error in one line."""


def _safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise InteropMissing("the Hugging Face format needs the safetensors package: "
                             "pip install 'feste-spec[interop]' (or pip install safetensors)") from None
    return safetensors


# --- the tensor mapping (SPEC §hf-tensors) -----------------------------------------
@dataclass(frozen=True)
class TensorMap:
    """One GPT-2 tensor and the feste parameter(s) it holds.

    `ours` is one name, or three (q, k, v) fused along the last axis as GPT-2's
    Conv1D c_attn holds them ([C, 3C] weight: columns 0..C-1 are q, then k, then v;
    [3C] bias likewise). `transpose`: the GPT-2 tensor is ours transposed
    (lm_head is an nn.Linear, [V, C]; our output_weight is [C, V])."""

    hf_name: str  # without the "transformer." prefix for the base model's tensors
    ours: tuple[str, ...]
    transpose: bool = False

    def shape(self, shapes: dict[str, tuple[int, ...]]) -> tuple[int, ...]:
        first = shapes[self.ours[0]]
        if self.transpose:
            return first[::-1]
        return first[:-1] + (first[-1] * len(self.ours),)

    def to_hf(self, params: Params) -> np.ndarray:
        if self.transpose:
            return np.ascontiguousarray(params[self.ours[0]].T)
        return np.concatenate([params[name] for name in self.ours], axis=-1)

    def to_ours(self, tensor: np.ndarray, params: Params) -> None:
        if self.transpose:
            params[self.ours[0]] = tensor.T
            return
        for name, part in zip(self.ours, np.split(tensor, len(self.ours), axis=-1)):
            params[name] = part


def tensor_map(config: Config) -> list[TensorMap]:
    """Every GPT-2 tensor of GPT2LMHeadModel in our parameter-table order."""
    rows = [TensorMap("wte.weight", ("token_embedding",)), TensorMap("wpe.weight", ("position_embedding",))]
    for i in range(config.n_layers):
        h, b = f"h.{i}.", f"blocks.{i}."
        rows += [
            TensorMap(h + "ln_1.weight", (b + "ln1.gamma",)),
            TensorMap(h + "ln_1.bias", (b + "ln1.beta",)),
            TensorMap(h + "attn.c_attn.weight", (b + "q.weight", b + "k.weight", b + "v.weight")),
            TensorMap(h + "attn.c_attn.bias", (b + "q.bias", b + "k.bias", b + "v.bias")),
            TensorMap(h + "attn.c_proj.weight", (b + "out.weight",)),
            TensorMap(h + "attn.c_proj.bias", (b + "out.bias",)),
            TensorMap(h + "ln_2.weight", (b + "ln2.gamma",)),
            TensorMap(h + "ln_2.bias", (b + "ln2.beta",)),
            TensorMap(h + "mlp.c_fc.weight", (b + "fc1.weight",)),
            TensorMap(h + "mlp.c_fc.bias", (b + "fc1.bias",)),
            TensorMap(h + "mlp.c_proj.weight", (b + "fc2.weight",)),
            TensorMap(h + "mlp.c_proj.bias", (b + "fc2.bias",)),
        ]
    rows += [TensorMap("ln_f.weight", ("ln_final.gamma",)), TensorMap("ln_f.bias", ("ln_final.beta",)),
             TensorMap("lm_head.weight", ("output_weight",), transpose=True)]
    return rows


def full_name(row: TensorMap) -> str:
    """The name in GPT2LMHeadModel's state dict (base-model tensors under "transformer.")."""
    return row.hf_name if row.hf_name.startswith("lm_head.") else BASE_PREFIX + row.hf_name


def hf_state_dict(params: Params) -> dict[str, np.ndarray]:
    """Our float32 parameters as GPT2LMHeadModel's state dict (numpy arrays)."""
    return {full_name(row): row.to_hf(params) for row in tensor_map(params.config)}


# --- config.json (SPEC §hf-config) ---------------------------------------------
def _f32_number(x: float) -> float:
    """The float32 value as the shortest decimal that reads back to it (0.1, not 0.10000000149)."""
    return float(format_f32(np.float32(x)))


def hf_config(config: Config) -> dict:
    """config.json for GPT2LMHeadModel holding exactly our model."""
    rate = _f32_number(config.dropout_rate)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": 4 * config.n_embd,
        "activation_function": ACTIVATION,
        "layer_norm_epsilon": LAYER_NORM_EPSILON,
        "resid_pdrop": rate,
        "embd_pdrop": rate,
        "attn_pdrop": rate,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        "use_cache": True,
        "dtype": "float32",
    }


def _read_json_object(path: Path, what: str) -> dict:
    if not path.exists():
        raise HFFormatError(path, f"missing: a Hugging Face GPT-2 directory needs {what}")
    try:  # a regular file (a FIFO would block), strict JSON (duplicate keys, NaN, deep nesting refused)
        doc = strict_json(read_regular(path, what))
    except json.JSONDecodeError as exc:
        raise HFFormatError(path, f"malformed JSON: {exc}") from None
    except ValueError as exc:
        raise HFFormatError(path, f"cannot read {what}: {exc}") from None
    if not isinstance(doc, dict):
        raise HFFormatError(path, f"must hold a JSON object, got {type(doc).__name__}")
    return doc


def tied_embeddings(doc: dict) -> bool:
    """Whether config.json ties the output layer to wte (absent means true, as in GPT2Config)."""
    return doc.get("tie_word_embeddings", GPT2_DEFAULTS["tie_word_embeddings"]) is True


def config_from_hf(doc: dict, path="config.json") -> Config:
    """Our Config from a GPT-2 config.json, or HFFormatError naming the first key that does not fit.
    A tied model (`tie_word_embeddings`, true when absent) fits: see read_hf_tensors."""
    def get(key):
        return doc.get(key, GPT2_DEFAULTS[key])

    def fail(message):
        raise HFFormatError(path, message)

    if doc.get("model_type") != "gpt2":
        fail(f"model_type is {doc.get('model_type')!r}, expected 'gpt2' (feste's model is GPT-2)")
    for key in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
        value = get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            fail(f"{key} must be a positive integer, got {value!r}")
    C = get("n_embd")
    if get("n_inner") not in (None, 4 * C):
        fail(f"n_inner is {get('n_inner')!r}; feste's MLP is 4 * n_embd = {4 * C} wide")
    if get("activation_function") not in TANH_GELU_NAMES:
        fail(f"activation_function is {get('activation_function')!r}; feste's model uses the tanh GELU "
             f"({' or '.join(TANH_GELU_NAMES)})")
    eps = get("layer_norm_epsilon")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps != LAYER_NORM_EPSILON:
        fail(f"layer_norm_epsilon is {eps!r}; feste's LayerNorm uses {LAYER_NORM_EPSILON}")
    if get("scale_attn_weights") is not True:
        fail("scale_attn_weights is false; feste's attention scales by 1/sqrt(head size)")
    if get("scale_attn_by_inverse_layer_idx") is not False:
        fail("scale_attn_by_inverse_layer_idx is true; feste's attention has no per-layer scale")
    if get("add_cross_attention") is not False:
        fail("add_cross_attention is true; feste's model has no cross-attention")
    if not isinstance(get("tie_word_embeddings"), bool):
        fail(f"tie_word_embeddings must be true or false, got {get('tie_word_embeddings')!r}")
    rates = {key: get(key) for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    for key, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            fail(f"{key} must be a number, got {rate!r}")
    if len({float(np.float32(r)) for r in rates.values()}) != 1:
        fail(f"the dropout rates differ ({', '.join(f'{k} {v}' for k, v in rates.items())}); "
             "feste has one dropout_rate for all of GPT-2's dropout sites")
    try:
        return Config(vocab_size=get("vocab_size"), n_embd=C, n_heads=get("n_head"), n_layers=get("n_layer"),
                      block_size=get("n_positions"), dropout_rate=float(np.float32(rates["resid_pdrop"])))
    except ValueError as exc:
        fail(str(exc))


# --- tokenizer.json (SPEC §hf-tokenizer) ---------------------------------------------
def byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves,
    the other 68 bytes map to U+0100 onwards, in byte order."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
            *range(ord("\u00ae"), ord("\u00ff") + 1)]
    table, extra = {}, 0
    for b in range(N_BYTES):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(N_BYTES + extra)
            extra += 1
    return table


BYTE_TO_UNICODE = byte_to_unicode()
UNICODE_TO_BYTE = {c: b for b, c in BYTE_TO_UNICODE.items()}
BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def _hf_token(token: bytes) -> str:
    return "".join(BYTE_TO_UNICODE[b] for b in token)


def hf_tokenizer(tokenizer: Tokenizer) -> dict:
    """tokenizer.json: our merges as a `tokenizers` BPE model (SPEC §hf-tokenizer)."""
    strings = [_hf_token(tokenizer.token_bytes(i)) for i in range(tokenizer.vocab_size)]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": dict(BYTE_LEVEL),
        "post_processor": None,
        "decoder": dict(BYTE_LEVEL),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {s: i for i, s in enumerate(strings)},
            "merges": [[strings[a], strings[b]] for a, b in tokenizer.merges],
        },
    }


def hf_tokenizer_config(config: Config) -> dict:
    """tokenizer_config.json: the generic fast tokenizer over tokenizer.json as written.
    (transformers' GPT2Tokenizer class would rebuild GPT-2's regex pre-tokenizer.)"""
    return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config.block_size,
            "clean_up_tokenization_spaces": False, "added_tokens_decoder": {}}


def tokenizer_from_hf(doc: dict, path="tokenizer.json") -> Tokenizer:
    """Our Tokenizer from a tokenizer.json that encodes as SPEC §tokenizer, or HFFormatError."""
    def fail(message):
        raise HFFormatError(path, message)

    model = doc.get("model")
    if not isinstance(model, dict) or model.get("type") != "BPE":
        got = model.get("type") if isinstance(model, dict) else model
        fail(f"model type is {got!r}; feste's tokenizer is byte-level BPE")
    if doc.get("normalizer") is not None:
        fail("has a normalizer; feste's BPE sees the text's UTF-8 bytes unchanged")
    pre = doc.get("pre_tokenizer")
    if isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex", True) is not False:
        fail(f"pre_tokenizer is ByteLevel with use_regex true: {GPT2_TOKENIZER_REASON}")
    if not _is_plain_byte_level(pre):
        fail(f"pre_tokenizer is {json.dumps(doc.get('pre_tokenizer'))}; feste's BPE needs ByteLevel with "
             "use_regex false and add_prefix_space false (its merges run over the whole text, with no pre-splitting)")
    if doc.get("added_tokens"):
        fail(f"has added (special) tokens {[t.get('content') for t in doc['added_tokens'] if isinstance(t, dict)]}; "
             "feste's vocabulary is the 256 bytes and the merges only")
    for key in ("truncation", "padding"):
        if doc.get(key) is not None:
            fail(f"{key} is set; encoding would not return every token")
    post = doc.get("post_processor")
    if post is not None and (not isinstance(post, dict) or post.get("type") != "ByteLevel"):
        fail(f"post_processor {json.dumps(post)} would change the ids (feste adds no special tokens)")
    decoder = doc.get("decoder")
    if decoder is not None and (not isinstance(decoder, dict) or decoder.get("type") != "ByteLevel"):
        fail(f"decoder is {json.dumps(decoder)}; a byte-level BPE decodes with ByteLevel")
    for key, allowed in (("dropout", (None, 0, 0.0)), ("byte_fallback", (None, False)),
                         ("ignore_merges", (None, False)), ("continuing_subword_prefix", (None, "")),
                         ("end_of_word_suffix", (None, ""))):
        if model.get(key, None) not in allowed:
            fail(f"BPE {key} is {model.get(key)!r}; feste's BPE needs {allowed[0]!r}")
    vocab, merges = model.get("vocab"), model.get("merges")
    if not isinstance(vocab, dict) or not isinstance(merges, list):
        fail("BPE model needs a 'vocab' object and a 'merges' list")

    def feste_string(token) -> str:
        if not isinstance(token, str) or token == "" or any(c not in UNICODE_TO_BYTE for c in token):
            fail(f"token {token!r} is not a string over GPT-2's byte alphabet: the vocabulary is not byte-level BPE")
        return "".join(byte_token_string(UNICODE_TO_BYTE[c]) for c in token)

    feste_vocab = {}
    for token, i in vocab.items():
        feste_vocab[feste_string(token)] = i
    feste_merges = []
    for k, entry in enumerate(merges):
        if isinstance(entry, str):  # the older "left right" form
            entry = entry.split(" ")
        if not isinstance(entry, list) or len(entry) != 2:
            fail(f"merge {k} must be a pair of tokens, got {entry!r}")
        feste_merges.append([feste_string(entry[0]), feste_string(entry[1])])
    try:
        return Tokenizer.from_json(json.dumps({"vocab": feste_vocab, "merges": feste_merges}))
    except ValueError as exc:
        fail(f"not feste's byte-level BPE (ids 0..255 the bytes in order, token 256+k = merge k): {exc}")


def _is_plain_byte_level(pre) -> bool:
    """ByteLevel without pre-splitting (trim_offsets only affects offsets, not ids)."""
    return (isinstance(pre, dict) and pre.get("type") == "ByteLevel" and pre.get("use_regex") is False
            and pre.get("add_prefix_space") is False)


# --- export ---------------------------------------------------------------------------
def _json_bytes(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def export_files(checkpoint: Checkpoint) -> dict[str, bytes]:
    """The file name -> bytes of the Hugging Face directory for this checkpoint."""
    safetensors = _safetensors()
    files = {
        MODEL_FILE: safetensors.numpy.save(hf_state_dict(checkpoint.params), metadata={"format": "pt"}),
        CONFIG_FILE: _json_bytes(hf_config(checkpoint.config)),
    }
    if checkpoint.tokenizer is not None:
        files[TOKENIZER_FILE] = (json.dumps(hf_tokenizer(checkpoint.tokenizer), ensure_ascii=False,
                                            separators=(",", ":")) + "\n").encode("utf-8")
        files[TOKENIZER_CONFIG_FILE] = _json_bytes(hf_tokenizer_config(checkpoint.config))
    return files


def export_hf(checkpoint, out_dir, overwrite: bool = False) -> list[Path]:
    """Write `checkpoint` (a Checkpoint or a FESTE_CKPT path) as a Hugging Face
    GPT-2 directory. A new directory appears whole (written beside it, then
    renamed); an existing one must be empty unless `overwrite`, which replaces
    the export's files one by one (each atomically) and removes a stale
    tokenizer when the checkpoint has none. Returns the written paths."""
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = load_checkpoint(checkpoint)
    files = export_files(checkpoint)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise HFFormatError(out, "exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise HFFormatError(out, "directory exists and is not empty (overwrite replaces its export files)")
        for name in EXPORT_FILES:
            if name in files:
                atomic_write(out / name, files[name])
            elif (out / name).exists():
                (out / name).unlink()
        return [out / name for name in files]
    out.parent.mkdir(parents=True, exist_ok=True)
    # an error names the user's path, never the staging directory beside it
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise with_filename(exc, out) from None
    try:
        for name, data in files.items():
            try:
                atomic_write(staging / name, data)
            except OSError as exc:
                raise with_filename(exc, out / name) from None
        os.chmod(staging, 0o777 & ~current_umask())
        if out.is_dir():
            out.rmdir()  # empty
        os.replace(staging, out)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and staging.name in f"{exc.filename} {exc.filename2}":
            raise with_filename(exc, out) from None
        raise
    return [out / name for name in files]


# --- import ---------------------------------------------------------------------------
def _model_file(directory: Path) -> Path:
    path = directory / MODEL_FILE
    if path.is_file():
        return path
    others = [name for name in ("model.safetensors.index.json", "pytorch_model.bin") if (directory / name).exists()]
    hint = {"model.safetensors.index.json": "sharded safetensors are not supported: save with a larger "
                                            "max_shard_size",
            "pytorch_model.bin": "PyTorch pickles are not read: save with safe_serialization=True"}
    reason = f" ({'; '.join(f'{n} found: {hint[n]}' for n in others)})" if others else ""
    raise HFFormatError(path, f"missing: the weights must be one safetensors file{reason}")


TIED_PARTNER = {"wte.weight": "lm_head.weight", "lm_head.weight": "wte.weight"}


def read_hf_tensors(path: Path, config: Config, tied: bool = False, notes: list | None = None) -> Params:
    """The float32 parameters from model.safetensors, checked against `config`
    (every tensor present once, float32, of the shape the config implies, finite).

    `tied` (config.json's tie_word_embeddings): the file may hold only one of
    wte and lm_head, as transformers saves a tied model; the missing one is a
    copy of the other (our output_weight is then token_embedding.T, a parameter
    of its own from here on). With both present each is read as stored, as
    transformers does. `notes` (a list) receives one line saying what was copied."""
    safetensors = _safetensors()
    shapes = {spec.name: spec.shape for spec in param_table(config)}
    rows = tensor_map(config)
    try:
        handle = safetensors.safe_open(str(path), framework="numpy")
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise HFFormatError(path, f"not a readable safetensors file: {exc}") from None
    with handle as f:
        names = list(f.keys())
        by_short: dict[str, str] = {}
        for name in names:
            if name.endswith(IGNORED_SUFFIXES):
                continue
            short = name[len(BASE_PREFIX):] if name.startswith(BASE_PREFIX) else name
            if short in by_short:
                raise HFFormatError(path, f"tensor {short} is stored twice ({by_short[short]} and {name})")
            by_short[short] = name
        stored = dict(by_short)
        params = Params(config)
        for row in rows:
            name = by_short.pop(row.hf_name, None)
            if name is None and tied and TIED_PARTNER.get(row.hf_name) in stored:
                name = stored[TIED_PARTNER[row.hf_name]]  # the tied twin: the same [V, C] matrix
                if notes is not None:
                    notes.append(f"tied embeddings (tie_word_embeddings): {full_name(row)} is not stored, so it "
                                 f"is a copy of {name}; feste trains the output layer and the token embedding "
                                 "as separate parameters from here on")
            if name is None:
                what = (" (config.json has tie_word_embeddings false: an untied model stores its output layer)"
                        if row.hf_name == "lm_head.weight" else "")
                raise HFFormatError(path, f"missing tensor {full_name(row)}{what}")
            view = f.get_slice(name)
            dtype, shape = view.get_dtype(), tuple(view.get_shape())
            if dtype != "F32":
                raise HFFormatError(path, f"tensor {name} is {dtype}; feste's parameters are float32 (F32)")
            want = row.shape(shapes)
            if shape != want:
                raise HFFormatError(path, f"tensor {name} has shape {list(shape)}, but config.json implies "
                                          f"{list(want)} (vocab_size {config.vocab_size}, n_positions "
                                          f"{config.block_size}, n_embd {config.n_embd})")
            tensor = f.get_tensor(name)
            bad = np.flatnonzero(~np.isfinite(tensor))
            if bad.size:
                index = np.unravel_index(bad[0], tensor.shape)
                raise HFFormatError(path, f"tensor {name} holds {tensor[index]} at index {list(map(int, index))}; "
                                          "parameters must be finite")
            row.to_ours(tensor, params)
        if by_short:
            extra = next(iter(by_short.values()))
            raise HFFormatError(path, f"unexpected tensor {extra}: feste's GPT-2 has no such parameter")
    return params


def _check_tokenizer_class(directory: Path) -> None:
    """HFFormatError if tokenizer_config.json asks transformers for GPT-2's tokenizer class,
    which rebuilds GPT-2's regex pre-tokenizer over tokenizer.json (other ids than ours)."""
    path = directory / TOKENIZER_CONFIG_FILE
    if not path.exists():
        return
    doc = _read_json_object(path, "tokenizer_config.json")
    if doc.get("tokenizer_class") in GPT2_TOKENIZER_CLASSES:
        raise HFFormatError(path, f"tokenizer_class is {doc['tokenizer_class']!r}: transformers then encodes "
                                  f"with {GPT2_TOKENIZER_REASON}")


def import_hf(directory, notes: list | None = None) -> Checkpoint:
    """Read a Hugging Face GPT-2 directory as an inference Checkpoint (tokenizer
    included when tokenizer.json is there, and then of exactly the model's
    vocab_size). HFFormatError names the file and the first thing that does not
    fit. `notes` (a list) receives a line for what import did beyond copying
    (a tied model's copied output layer)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HFFormatError(directory, "not a directory (expected a Hugging Face GPT-2 model directory)")
    config_path = directory / CONFIG_FILE
    doc = _read_json_object(config_path, "config.json")
    config = config_from_hf(doc, config_path)
    params = read_hf_tensors(_model_file(directory), config, tied=tied_embeddings(doc), notes=notes)
    tokenizer = None
    tokenizer_path = directory / TOKENIZER_FILE
    if tokenizer_path.exists():
        _check_tokenizer_class(directory)
        tokenizer = tokenizer_from_hf(_read_json_object(tokenizer_path, "tokenizer.json"), tokenizer_path)
        if tokenizer.vocab_size != config.vocab_size:
            raise HFFormatError(tokenizer_path, f"has {tokenizer.vocab_size} tokens but config.json's vocab_size "
                                                f"is {config.vocab_size}: feste needs them equal (the model "
                                                "would produce ids the tokenizer cannot decode, or the tokenizer "
                                                "ids the model has no embedding for)")
    else:
        found = [name for name in GPT2_TOKENIZER_FILES if (directory / name).exists()]
        if found:
            raise HFFormatError(directory / found[0], f"{' and '.join(found)} without tokenizer.json: "
                                                      f"{GPT2_TOKENIZER_REASON}")
    return Checkpoint(config, params, tokenizer=tokenizer)


__all__ = ["HFFormatError", "export_hf", "import_hf", "export_files", "hf_state_dict", "hf_config",
           "hf_tokenizer", "hf_tokenizer_config", "config_from_hf", "tied_embeddings", "tokenizer_from_hf",
           "read_hf_tensors", "tensor_map", "TensorMap", "byte_to_unicode", "MODEL_FILE", "CONFIG_FILE", "TOKENIZER_FILE",
           "TOKENIZER_CONFIG_FILE"]
