"""FESTE_CKPT version 1 checkpoints, byte-compatible with Feste (SPEC §checkpoint).

Layout (all integers little-endian; a tensor is u32 ndim, ndim x u32 dims,
u32 numel, numel x f32):

    b"FESTE_CKPT" u8 version=1
    u32 len, config JSON
    token_embedding, position_embedding, u32 n_blocks, 16 tensors per block,
    ln_final.gamma, ln_final.beta, output_weight
    u8 has_optimizer [u64 step, f32 beta1, f32 beta2, f32 eps, m/v tensors]
    u8 has_tokenizer [u32 len, tokenizer JSON]
    u32 len, metadata JSON {"step":N,"best_val_loss":X,"best_val_step":N}

Reading walks the whole file first, checking every length against the bytes
that remain and every tensor shape against the config, and only then
allocates and copies: a malformed file raises `CheckpointError` (naming the
byte offset and what was expected) and nothing is half-loaded. Files are
memory-mapped, so reading never needs more memory than the tensors it returns.
Writing streams to a temporary file in the same directory, flushes, fsyncs
and renames over the target: a failed write leaves the previous file intact.
"""
from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from .atomic_io import atomic_write
from .input_checks import open_regular, strict_json
from .config import Config
from .optim import AdamWState
from .params import BLOCK_TENSORS, Params, n_params, param_table

MAGIC = b"FESTE_CKPT"
VERSION = 1
CONFIG_FIELDS = ("vocab_size", "n_embd", "n_heads", "n_layers", "block_size", "dropout_rate")
METADATA_FIELDS = ("step", "best_val_loss", "best_val_step")
U64_MAX = 2**64 - 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or written: malformed bytes (with the
    byte `offset` where reading stopped), an unreadable file, or an invalid
    `Checkpoint` object."""

    def __init__(self, message: str, offset: int | None = None, path=None):
        self.offset = offset
        self.path = None if path is None else str(path)
        prefix = f"{path}: " if path is not None else ""
        where = f"at byte offset {offset}: " if offset is not None else ""
        super().__init__(f"{prefix}{where}{message}")


def default_metadata() -> dict:
    return {"step": 0, "best_val_loss": math.inf, "best_val_step": 0}


@dataclass
class Checkpoint:
    """Everything a FESTE_CKPT file holds.

    `optimizer` is None for an inference-only checkpoint; `tokenizer` (a
    `Tokenizer`, written as its JSON) is optional; `metadata` has exactly the
    keys step (completed training steps), best_val_loss (float, +inf when
    unknown) and best_val_step.
    """

    config: Config
    params: Params  # float32, params.config == config
    optimizer: AdamWState | None = None
    tokenizer: object | None = None
    metadata: dict = field(default_factory=default_metadata)

    @property
    def kind(self) -> str:
        return "training" if self.optimizer is not None else "inference"


# --- serde_json-compatible float formatting --------------------------------
def format_f32(x) -> str:
    """`x` rounded to float32, written like serde_json (ryu's f32 `format`):
    the shortest decimal that round-trips through float32, then
    0 <= exponent and at most 13 integer digits: "12340000000.0", "0.0", "1.0";
    up to 13 integer digits with a fraction: "4.123", "12.5";
    1e-6 <= |x| < 1: "0.000001", "0.001234";
    otherwise scientific, no "+" and no padding: "1e-7", "1.5e-7", "1e30", "3.4028235e38".
    Non-finite values have no JSON form (callers write null)."""
    value = np.float32(x)
    if not np.isfinite(value):
        raise ValueError(f"format_f32: {x!r} is not finite")
    sign = "-" if np.signbit(value) else ""
    if value == 0:
        return sign + "0.0"
    # shortest round-trip digits (Dragon4 "unique" mode): d.ddde[+-]XX
    mantissa, exponent = np.format_float_scientific(abs(value), unique=True, trim="-").split("e")
    digits = mantissa.replace(".", "")
    length = len(digits)
    kk = int(exponent) + 1  # 10^(kk-1) <= |x| < 10^kk
    k = kk - length  # |x| = digits * 10^k
    if 0 <= k and kk <= 13:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= 13:
        text = digits[:kk] + "." + digits[kk:]
    elif -6 < kk <= 0:
        text = "0." + "0" * (-kk) + digits
    elif length == 1:
        text = f"{digits}e{kk - 1}"
    else:
        text = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + text


def config_to_json(config: Config) -> str:
    """`{"vocab_size":512,...,"dropout_rate":0.0}`: no spaces, Config field order."""
    parts = [f'"{name}":{getattr(config, name)}' for name in CONFIG_FIELDS[:-1]]
    parts.append(f'"dropout_rate":{format_f32(config.dropout_rate)}')
    return "{" + ",".join(parts) + "}"


def metadata_to_json(metadata: dict) -> str:
    """`{"step":N,"best_val_loss":X,"best_val_step":N}`; a non-finite loss is `null`."""
    _check_metadata(metadata)
    loss = np.float32(metadata["best_val_loss"])
    loss_text = format_f32(loss) if np.isfinite(loss) else "null"
    return (f'{{"step":{int(metadata["step"])},"best_val_loss":{loss_text},'
            f'"best_val_step":{int(metadata["best_val_step"])}}}')


def _check_metadata(metadata, reading: bool = False) -> float:
    """Validate the metadata (SPEC §checkpoint): exactly the three keys, step and
    best_val_step ints in [0, 2^64) with best_val_step <= step, best_val_loss a
    number >= 0 (+inf: none yet). Returns best_val_loss rounded to float32. Writing
    accepts any non-finite value (written null, read back +inf); reading takes
    null as +inf and refuses a number that is not a finite float32 (1e39)."""
    if not isinstance(metadata, dict) or set(metadata) != set(METADATA_FIELDS):
        got = sorted(metadata) if isinstance(metadata, dict) else type(metadata).__name__
        raise CheckpointError(f"metadata must have exactly the keys {', '.join(METADATA_FIELDS)}; got {got}")
    for key in ("step", "best_val_step"):
        value = metadata[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= U64_MAX:
            raise CheckpointError(f"metadata {key} must be an int in [0, 2^64), got {value!r}")
    if metadata["best_val_step"] > metadata["step"]:
        raise CheckpointError(f"metadata best_val_step {metadata['best_val_step']} must not exceed step "
                              f"{metadata['step']} (the best was measured during the steps the file holds)")
    loss = metadata["best_val_loss"]
    if reading and loss is None:
        return math.inf
    if isinstance(loss, bool) or not isinstance(loss, (int, float, np.integer, np.floating)):
        raise CheckpointError(f"metadata best_val_loss must be a number{' or null' if reading else ''}, got {loss!r}")
    try:
        exact = float(loss)
    except OverflowError:  # an integer beyond the double range
        exact = math.inf if loss > 0 else -math.inf
    with np.errstate(over="ignore"):
        rounded = float(np.float32(exact))
    if reading and not math.isfinite(rounded):  # 1e39, 1e400: a number in the file must be a finite float32
        shown = loss if not isinstance(loss, int) or abs(loss) < 10**20 else f"an integer of {len(str(abs(loss)))} digits"
        raise CheckpointError(f"metadata best_val_loss {shown} is beyond the float32 range (max 3.4028235e38); "
                              "an unknown best is written null")
    if rounded < 0 and math.isfinite(rounded):  # (writing: nan, -inf and +inf are written null)
        raise CheckpointError(f"metadata best_val_loss must be >= 0 (a cross-entropy), got {loss!r}")
    return rounded


# --- writing -----------------------------------------------------------------
def optimizer_order(config: Config) -> list[tuple[str, str]]:
    """(moment, parameter name) pairs in file order (SPEC §checkpoint step 4):
    each group's m tensors, then the same group's v tensors."""
    groups = [["token_embedding", "position_embedding"]]
    for i in range(config.n_layers):
        block = [f"blocks.{i}.{suffix}" for suffix in BLOCK_TENSORS]
        groups += [block[0:2], block[2:10], block[10:12], block[12:16]]
    groups.append(["ln_final.gamma", "ln_final.beta", "output_weight"])
    return [(moment, name) for group in groups for moment in ("m", "v") for name in group]


def _tensor_chunks(array: np.ndarray) -> Iterator[bytes]:
    dims = array.shape
    yield struct.pack(f"<I{len(dims)}II", len(dims), *dims, array.size)
    yield np.ascontiguousarray(array, dtype="<f4").tobytes()


def _validate(checkpoint: Checkpoint) -> None:
    if not isinstance(checkpoint, Checkpoint):
        raise CheckpointError(f"expected a Checkpoint, got {type(checkpoint).__name__}")
    config, params = checkpoint.config, checkpoint.params
    if not isinstance(config, Config):
        raise CheckpointError(f"checkpoint.config must be a Config, got {type(config).__name__}")
    if not isinstance(params, Params) or params.config != config:
        raise CheckpointError("checkpoint.params must be a Params built for checkpoint.config")
    if params.dtype != np.float32:
        raise CheckpointError(f"checkpoint params must be float32 (the file stores f32), got {params.dtype}")
    state = checkpoint.optimizer
    if state is not None:
        for name in ("m", "v"):
            moment = getattr(state, name)
            if not isinstance(moment, Params) or moment.config != config or moment.dtype != np.float32:
                raise CheckpointError(f"optimizer.{name} must be a float32 Params for checkpoint.config")
        if isinstance(state.step, bool) or not isinstance(state.step, (int, np.integer)) \
                or not 0 <= state.step <= U64_MAX:
            raise CheckpointError(f"optimizer.step must be an int in [0, 2^64), got {state.step!r}")
    _check_metadata(checkpoint.metadata)
    _check_values(checkpoint)


def _chunks(checkpoint: Checkpoint) -> Iterator[bytes]:
    """The file, piece by piece (so saving never holds a second copy in memory)."""
    _validate(checkpoint)
    config, params = checkpoint.config, checkpoint.params
    yield MAGIC + struct.pack("<B", VERSION)
    config_json = config_to_json(config).encode("utf-8")
    yield struct.pack("<I", len(config_json)) + config_json
    for spec in params.table:
        if spec.name == "blocks.0.ln1.gamma":  # u32 n_blocks precedes the blocks (n_layers >= 1)
            yield struct.pack("<I", config.n_layers)
        yield from _tensor_chunks(params[spec.name])
    state = checkpoint.optimizer
    if state is None:
        yield b"\x00"
    else:
        yield b"\x01" + struct.pack("<Q", int(state.step))
        yield np.array([state.beta1, state.beta2, state.eps], dtype="<f4").tobytes()
        moments = {"m": state.m, "v": state.v}
        for moment, name in optimizer_order(config):
            yield from _tensor_chunks(moments[moment][name])
    if checkpoint.tokenizer is None:
        yield b"\x00"
    else:
        text = checkpoint.tokenizer.to_json().encode("utf-8")
        yield b"\x01" + struct.pack("<I", len(text)) + text
    meta = metadata_to_json(checkpoint.metadata).encode("utf-8")
    yield struct.pack("<I", len(meta)) + meta


def checkpoint_to_bytes(checkpoint: Checkpoint) -> bytes:
    """The FESTE_CKPT v1 bytes of `checkpoint`."""
    return b"".join(_chunks(checkpoint))


def save_checkpoint(path, checkpoint: Checkpoint) -> None:
    """Write `checkpoint` to `path` atomically: temp file in the same directory,
    flush, fsync, rename over `path` (then fsync the directory)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError("is a directory, not a checkpoint file", path=path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise CheckpointError(f"directory {directory} does not exist", path=path)
    atomic_write(path, _chunks(checkpoint))


# --- reading -----------------------------------------------------------------
class _Reader:
    """A cursor over the file bytes; every read checks what remains first."""

    def __init__(self, buffer, path=None):
        self.buf = buffer
        self.size = len(buffer)
        self.pos = 0
        self.path = path

    def error(self, message: str, offset: int | None = None) -> CheckpointError:
        return CheckpointError(message, self.pos if offset is None else offset, self.path)

    def take(self, n: int, what: str) -> int:
        """Reserve n bytes for `what`; returns their start offset."""
        remaining = self.size - self.pos
        if n > remaining:
            raise self.error(f"expected {what} ({n} bytes) but only {remaining} bytes remain (truncated file?)")
        start = self.pos
        self.pos += n
        return start

    def bytes(self, n: int, what: str) -> bytes:
        start = self.take(n, what)
        return bytes(self.buf[start:start + n])

    def unpack(self, fmt: str, what: str):
        start = self.take(struct.calcsize(fmt), what)
        return struct.unpack_from(fmt, self.buf, start)

    def flag(self, what: str) -> bool:
        start = self.pos
        (value,) = self.unpack("<B", what)
        if value not in (0, 1):
            raise self.error(f"expected {what} to be 0 or 1, got {value}", start)
        return value == 1

    def tensor(self, name: str, shape: tuple[int, ...], config: Config) -> tuple[int, int]:
        """Check one tensor header against the expected shape; returns (data offset, numel)."""
        start = self.pos
        (ndim,) = self.unpack("<I", f"the ndim of tensor {name}")
        if ndim != len(shape):
            raise self.error(f"tensor {name}: expected ndim {len(shape)} for shape {shape} "
                             f"(from the config {config_to_json(config)}), got {ndim}", start)
        dims_at = self.pos
        dims = self.unpack(f"<{ndim}I", f"the {ndim} dims of tensor {name}")
        if tuple(dims) != tuple(shape):
            raise self.error(f"tensor {name}: expected shape {shape} (from the config "
                             f"{config_to_json(config)}), got {tuple(dims)}", dims_at)
        numel_at = self.pos
        (numel,) = self.unpack("<I", f"the numel of tensor {name}")
        if numel != math.prod(shape):
            raise self.error(f"tensor {name}: numel {numel} contradicts its shape {shape} "
                             f"(expected {math.prod(shape)})", numel_at)
        data_at = self.take(4 * numel, f"the {numel} f32 values of tensor {name}")
        return data_at, numel

    def json(self, what: str):
        (length,) = self.unpack("<I", f"the u32 length of the {what} JSON")
        start = self.take(length, f"the {what} JSON")
        try:
            return strict_json(bytes(self.buf[start:start + length])), start
        except ValueError as exc:
            raise self.error(f"invalid {what} JSON ({length} bytes): {exc}", start) from None


def _parameter_header_bytes(config: Config) -> int:
    """u32 n_blocks plus every tensor header (4 * (2 + ndim) bytes), in O(1)."""
    return 4 + 16 + 16 + config.n_layers * (6 * 16 + 10 * 12) + 12 + 12 + 16  # 2-D: 16, 1-D: 12


def _parameter_section_bytes(config: Config) -> int:
    """Exact size of the parameter section, in O(1): headers plus 4 * n_params."""
    return _parameter_header_bytes(config) + 4 * n_params(config)


def _config_from_json(doc, reader: _Reader, at: int) -> Config:
    if not isinstance(doc, dict):
        raise reader.error(f"config JSON must be an object, got {type(doc).__name__}", at)
    missing = [k for k in CONFIG_FIELDS if k not in doc]
    unknown = [k for k in doc if k not in CONFIG_FIELDS]
    if missing or unknown:
        raise reader.error(f"config JSON must have exactly the fields {', '.join(CONFIG_FIELDS)}; "
                           f"missing {missing}, unknown {unknown}", at)
    for key in CONFIG_FIELDS[:-1]:
        if isinstance(doc[key], bool) or not isinstance(doc[key], int):
            raise reader.error(f"config {key} must be an integer, got {doc[key]!r}", at)
    rate = doc["dropout_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise reader.error(f"config dropout_rate must be a number, got {rate!r}", at)
    try:
        return Config(**{k: doc[k] for k in CONFIG_FIELDS[:-1]}, dropout_rate=float(np.float32(rate)))
    except ValueError as exc:
        raise reader.error(f"invalid config: {exc}", at) from None


def _metadata_from_json(doc, reader: _Reader, at: int) -> dict:
    if not isinstance(doc, dict) or set(doc) != set(METADATA_FIELDS):
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise reader.error(f"metadata JSON must have exactly the keys {', '.join(METADATA_FIELDS)}; got {got}", at)
    metadata = {"step": doc["step"], "best_val_loss": doc["best_val_loss"], "best_val_step": doc["best_val_step"]}
    try:
        metadata["best_val_loss"] = _check_metadata(metadata, reading=True)
    except CheckpointError as exc:
        raise reader.error(str(exc), at) from None
    return metadata


@dataclass
class _Layout:
    """Where everything is, found by a validating pass that allocates nothing big."""

    config: Config
    tensors: dict[str, tuple[int, int]]  # name -> (data offset, numel)
    moments: dict[tuple[str, str], tuple[int, int]] | None
    optimizer_header: tuple[int, float, float, float] | None  # step, beta1, beta2, eps
    tokenizer: object | None
    metadata: dict
    sections: list[tuple[str, int, int]]  # (section, start offset, length in bytes)


def _parse_layout(buffer, path=None) -> _Layout:
    r = _Reader(buffer, path)
    sections = []

    def section(name, start):
        sections.append((name, start, r.pos - start))

    magic = r.bytes(len(MAGIC), f"the magic {MAGIC!r}")
    if magic != MAGIC:
        raise r.error(f"expected the magic {MAGIC!r}, got {magic!r}: not a FESTE_CKPT file", 0)
    (version,) = r.unpack("<B", "the u8 format version")
    if version != VERSION:
        raise r.error(f"unsupported format version {version}: this reader supports version {VERSION}",
                      len(MAGIC))
    section("header", 0)

    start = r.pos
    doc, at = r.json("config")
    config = _config_from_json(doc, r, at)
    section("config", start)

    start = r.pos
    remaining = r.size - r.pos
    if _parameter_header_bytes(config) > remaining:
        # checked before building the parameter table, whose length grows with
        # n_layers: a few bytes claiming 10^9 layers must not allocate anything
        raise r.error(f"the config {config_to_json(config)} needs {_parameter_section_bytes(config)} bytes "
                      f"of parameters but only {remaining} bytes remain (truncated file or wrong config)")
    table = param_table(config)
    shapes = {spec.name: spec.shape for spec in table}
    tensors = {}
    for spec in table:
        if spec.name == "blocks.0.ln1.gamma":  # u32 n_blocks precedes the blocks (n_layers >= 1)
            blocks_at = r.pos
            (n_blocks,) = r.unpack("<I", "the u32 number of blocks")
            if n_blocks != config.n_layers:
                raise r.error(f"expected n_blocks = n_layers = {config.n_layers} from the config, got {n_blocks}",
                              blocks_at)
        tensors[spec.name] = r.tensor(spec.name, spec.shape, config)
    section("parameters", start)

    start = r.pos
    moments = None
    optimizer_header = None
    if r.flag("the u8 has_optimizer flag"):
        (step,) = r.unpack("<Q", "the u64 optimizer step")
        betas_at = r.pos
        beta1, beta2, eps = (float(x) for x in r.unpack("<3f", "f32 beta1, beta2, eps"))
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0 and math.isfinite(eps) and eps > 0.0):
            raise r.error(f"invalid optimizer hyperparameters beta1={beta1}, beta2={beta2}, eps={eps} "
                          "(expected 0 <= beta < 1, eps > 0)", betas_at)
        optimizer_header = (step, beta1, beta2, eps)
        moments = {}
        for moment, name in optimizer_order(config):
            moments[(moment, name)] = r.tensor(f"{moment}[{name}]", shapes[name], config)
    section("optimizer", start)

    start = r.pos
    tokenizer = None
    if r.flag("the u8 has_tokenizer flag"):
        (length,) = r.unpack("<I", "the u32 length of the tokenizer JSON")
        at = r.take(length, "the tokenizer JSON")
        from .tokenizer import Tokenizer  # the tokenizer module is only needed here

        try:
            tokenizer = Tokenizer.from_json(bytes(buffer[at:at + length]))
        except ValueError as exc:
            raise r.error(f"invalid tokenizer JSON ({length} bytes): {exc}", at) from None
        if tokenizer.vocab_size > config.vocab_size:
            raise r.error(f"tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
                          f"{config.vocab_size}", at)
    section("tokenizer", start)

    start = r.pos
    doc, at = r.json("metadata")
    metadata = _metadata_from_json(doc, r, at)
    section("metadata", start)

    if r.pos != r.size:
        raise r.error(f"expected the end of the file after the metadata, found {r.size - r.pos} more bytes")
    return _Layout(config, tensors, moments, optimizer_header, tokenizer, metadata, sections)


def _first_invalid(values: np.ndarray, nonnegative: bool = False) -> int | None:
    """Flat index of the first value that is not finite (or negative, with
    `nonnegative`: AdamW's v is a mean of squares), or None if all are valid."""
    ok = np.isfinite(values)  # (numel,)
    if nonnegative:
        ok &= values >= 0  # -0.0 passes
    return None if ok.all() else int(np.argmin(ok))


def _describe_invalid(label: str, array: np.ndarray, index: int, nonnegative: bool) -> str:
    where = tuple(int(i) for i in np.unravel_index(index, array.shape))
    want = "finite and >= 0 (a second moment)" if nonnegative else "finite"
    return f"tensor {label} holds {float(array.flat[index])!r} at index {where} (element {index}): every value must be {want}"


def _check_values(checkpoint: Checkpoint) -> None:
    """CheckpointError naming the tensor and index of the first non-finite value
    (or negative v); one float64 sum per buffer when all is well."""
    buffers = [("", checkpoint.params, False)]
    if checkpoint.optimizer is not None:
        buffers += [("m", checkpoint.optimizer.m, False), ("v", checkpoint.optimizer.v, True)]
    for moment, buffer, nonnegative in buffers:
        if math.isfinite(float(np.sum(buffer.data, dtype=np.float64))) and \
                (not nonnegative or buffer.data.size == 0 or buffer.data.min() >= 0):
            continue
        for spec in buffer.table:
            index = _first_invalid(buffer[spec.name].ravel(), nonnegative)
            if index is not None:
                label = f"{moment}[{spec.name}]" if moment else spec.name
                raise CheckpointError(_describe_invalid(label, buffer[spec.name], index, nonnegative))


def _fill(buffer, target: Params, offsets: dict, moment: str = "", path=None) -> None:
    """Copy each tensor from the file into `target`, refusing non-finite values
    (and negative ones in v) with the byte offset of the first one."""
    nonnegative = moment == "v"
    for name, (at, numel) in offsets.items():
        view = target.data[target.offset(name):target.offset(name) + numel]
        view[:] = np.frombuffer(buffer, dtype="<f4", count=numel, offset=at)
        index = _first_invalid(view, nonnegative)
        if index is not None:
            label = f"{moment}[{name}]" if moment else name
            raise CheckpointError(_describe_invalid(label, target[name], index, nonnegative), at + 4 * index, path)


def _build(buffer, layout: _Layout, path=None) -> Checkpoint:
    params = Params(layout.config)
    _fill(buffer, params, layout.tensors, path=path)
    state = None
    if layout.moments is not None:
        m, v = Params(layout.config), Params(layout.config)
        _fill(buffer, m, {name: loc for (mom, name), loc in layout.moments.items() if mom == "m"}, "m", path)
        _fill(buffer, v, {name: loc for (mom, name), loc in layout.moments.items() if mom == "v"}, "v", path)
        step, beta1, beta2, eps = layout.optimizer_header
        state = AdamWState(m=m, v=v, step=step, beta1=beta1, beta2=beta2, eps=eps)
    return Checkpoint(layout.config, params, state, layout.tokenizer, layout.metadata)


def checkpoint_from_bytes(data) -> Checkpoint:
    """Parse FESTE_CKPT v1 bytes; raises CheckpointError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CheckpointError(f"checkpoint data must be bytes, got {type(data).__name__}")
    layout = _parse_layout(data)
    return _build(data, layout)


def _open_regular(path: Path):
    """The checkpoint file opened for reading, if it is a regular file (a FIFO or
    device is refused without blocking); CheckpointError naming the path otherwise."""
    def error(message: str) -> CheckpointError:
        exc = CheckpointError(message)
        exc.path = str(path)
        return exc

    return open_regular(path, "checkpoint", error)


def read_checkpoint(path) -> tuple[Checkpoint, list[tuple[str, int, int]], int]:
    """(checkpoint, sections as (name, offset, length), file size): the whole
    file validated. `load_checkpoint` is this without the layout."""
    path = Path(path)
    f, size = _open_regular(path)
    with f:
        if size == 0:
            raise CheckpointError(f"expected the magic {MAGIC!r} but the file is empty", 0, path)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            layout = _parse_layout(mapped, path)
            checkpoint = _build(mapped, layout, path)
    return checkpoint, layout.sections, size


def load_checkpoint(path) -> Checkpoint:
    """Read and validate a FESTE_CKPT v1 file (memory-mapped; see the module doc)."""
    return read_checkpoint(path)[0]
