"""Atomic file writes, the one way every file of the project is written
(checkpoints, tokenizer JSON, the corpus cache, run.json, a rewritten CSV log).

A write goes to a temporary file in the destination's directory, is flushed
and fsynced, then renamed over the destination (and the directory fsynced so
the rename is durable). A failure at any point, including an exception raised
by the chunk iterator mid-file, removes the temporary file and leaves the
previous destination untouched.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, data: bytes | Iterable[bytes]) -> None:
    """Write `data` (bytes, or an iterable of byte chunks streamed one by one)
    to `path` atomically. The file gets ordinary permissions (0666 & ~umask)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as f:
            for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
