"""A small safetensors writer and reader (SPEC §safetensors), so the core install
needs no extra package and the bytes are stable: sorted keys, no metadata,
tensors contiguous in key order, header padded with spaces to 8 bytes.

Format: u64 little-endian header length N, N bytes of JSON
`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}}`,
then the raw little-endian data (offsets relative to its start).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

DTYPES = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
          "U32": np.dtype("<u4"), "U8": np.dtype("u1"), "BOOL": np.dtype("?")}
NAMES = {np.dtype(v).str: k for k, v in DTYPES.items()}
NAMES[np.dtype("?").str] = "BOOL"


def dtype_name(dtype) -> str:
    """The safetensors name of a NumPy dtype ("F32", ...); ValueError for one SPEC §safetensors does not use."""
    key = np.dtype(dtype).newbyteorder("<").str if np.dtype(dtype).itemsize > 1 else np.dtype(dtype).str
    try:
        return NAMES[key]
    except KeyError:
        raise ValueError(f"dtype {np.dtype(dtype)} is not one of {', '.join(DTYPES)}") from None


def to_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """The safetensors bytes of `tensors` (name -> array), deterministic."""
    header: dict[str, dict] = {}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        kind = dtype_name(arr.dtype)
        raw = np.ascontiguousarray(arr, dtype=DTYPES[kind]).tobytes()
        header[name] = {"dtype": kind, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def write(path, tensors: dict[str, np.ndarray]) -> None:
    Path(path).write_bytes(to_bytes(tensors))


def from_bytes(data: bytes, source: str = "<bytes>") -> dict[str, np.ndarray]:
    """Parse any valid safetensors file; ValueError naming `source` and what is wrong."""
    if len(data) < 8:
        raise ValueError(f"{source}: {len(data)} bytes, too short for a safetensors header length")
    (n,) = struct.unpack_from("<Q", data, 0)
    if 8 + n > len(data):
        raise ValueError(f"{source}: header length {n} runs past the end of the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: header must be a JSON object")
    body = memoryview(data)[8 + n:]
    out: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            kind, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            dtype = DTYPES[kind]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: tensor {name!r}: bad header entry {entry!r} "
                             f"(dtype one of {', '.join(DTYPES)}, shape, data_offsets)") from None
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(body)) or end - begin != count * dtype.itemsize:
            raise ValueError(f"{source}: tensor {name!r}: data_offsets {[begin, end]} do not hold "
                             f"{count} {kind} values within the {len(body)} data bytes")
        out[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
    return out


def read(path) -> dict[str, np.ndarray]:
    return from_bytes(Path(path).read_bytes(), str(path))
