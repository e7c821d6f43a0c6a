"""Atomic file writes, the one way every file of the project is written
(checkpoints, tokenizer JSON, the corpus cache, run.json, a rewritten CSV log).

A write goes to a temporary file in the destination's directory, is flushed
and fsynced, then renamed over the destination (and the directory fsynced so
the rename is durable). A failure at any point, including an exception raised
by the chunk iterator mid-file, removes the temporary file and leaves the
previous destination untouched; an OSError names the destination.

The temporary file is `.NAME.XXXXXXXX.tmp` (NAME the destination's name,
XXXXXXXX eight lower-case hex digits): `TEMP_PATTERN`. Only a killed process
(kill -9, power loss) leaves one behind; `remove_stale_temps` deletes those of
given destination names, and nothing else, when their directory's owner
starts again (the trainer, holding its run directory's lock; SPEC §run-directories).
"""
from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import Iterable

TEMP_PATTERN = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp")  # full match on a file name


def current_umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_file(directory: Path, name: str) -> tuple[int, Path]:
    """A new, exclusively created `.NAME.XXXXXXXX.tmp` in `directory` (mode 0666 & ~umask)."""
    while True:
        tmp = directory / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue


def with_filename(exc: OSError, path) -> OSError:
    """`exc` with the destination as its file name ("[Errno 28] No space left on device: 'run/latest.ckpt'")."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def atomic_write(path, data: bytes | Iterable[bytes]) -> None:
    """Write `data` (bytes, or an iterable of byte chunks streamed one by one)
    to `path` atomically. The file gets ordinary permissions (0666 & ~umask)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = _temp_file(directory, path.name)
    except OSError as exc:
        raise with_filename(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in ([data] if isinstance(data, (bytes, bytearray, memoryview)) else data):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise with_filename(exc, path) from None
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


def remove_stale_temps(directory, names: Iterable[str], older_than: float | None = None) -> list[Path]:
    """Delete the temporary files `atomic_write` leaves when killed mid-write
    (`.NAME.XXXXXXXX.tmp` for NAME in `names`) from `directory`; nothing else is
    touched. The caller must be the only writer of those names (the trainer
    holds the run directory's lock), or pass `older_than` (seconds since the
    last modification), so that a write in progress elsewhere is left alone.
    Returns the paths removed."""
    names = set(names)
    removed = []
    now = time.time()
    for entry in os.scandir(directory):
        match = TEMP_PATTERN.fullmatch(entry.name)
        if match and match["name"] in names and entry.is_file(follow_symlinks=False) and (
                older_than is None or now - entry.stat(follow_symlinks=False).st_mtime > older_than):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed
