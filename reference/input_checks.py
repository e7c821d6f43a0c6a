"""Reading untrusted input: regular files only, strict JSON (SPEC §checkpoint, §tokenizer, §corpus, §run-directories).

Every file the project reads (checkpoint, tokenizer JSON, corpus, run.json)
is opened through `open_regular`: the open itself cannot block (O_NONBLOCK,
so a FIFO with no writer does not hang), and the check that it is a regular
file is made on the opened descriptor (fstat), so nothing can swap the file
between the check and the read. Directories, FIFOs, sockets and devices
(`/dev/zero` would never end) are refused with a message naming the path.

Every JSON document goes through `strict_json`: duplicate keys, the
non-standard constants NaN/Infinity and nesting deep enough to exhaust
Python's recursion limit are errors (ValueError), not silent "last wins"
or a RecursionError.
"""
from __future__ import annotations

import json
import os
import stat
from typing import BinaryIO, Callable

# what each st_mode is called in messages
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """'a directory', 'a FIFO (named pipe)', ... for a non-regular st_mode; 'a regular file' otherwise."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def check_regular(path, what: str, error: Callable[[str], Exception] = ValueError) -> int:
    """Size in bytes of `path` if it is a regular file (after following symlinks), else `error(message)`.
    Only stats the path: for early, cheap checks; readers use `open_regular`."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file")
    return st.st_size


def open_regular(path, what: str, error: Callable[[str], Exception] = ValueError) -> tuple[BinaryIO, int]:
    """(binary file, size) of `path` opened for reading, if it is a regular file;
    else `error(message naming the path and what it is)`. Never blocks on a FIFO."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist") from None
    except OSError as exc:  # EACCES, ENXIO (a socket), ELOOP, ...
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    # outside the try: once the file object owns fd, it alone closes it (an interrupt landing
    # after fdopen used to close fd twice, the second time as EBADF or someone else's descriptor)
    return os.fdopen(fd, "rb"), st.st_size


def read_regular(path, what: str, error: Callable[[str], Exception] = ValueError,
                 max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file; with `max_bytes`, a larger file is `error(...)`
    before anything is read (and a file that grows past the limit while being read too)."""
    f, size = open_regular(path, what, error)
    with f:
        if max_bytes is not None and size > max_bytes:
            raise error(f"{what} {path} is {size:,} bytes, more than the limit of {max_bytes:,} bytes")
        try:
            data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as exc:
            raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise error(f"{what} {path} grew past the limit of {max_bytes:,} bytes while being read")
    return data


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicates(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen.add(key)
    return dict(pairs)


def strict_json(text: str | bytes):
    """json.loads, except that duplicate keys, NaN/Infinity and nesting too deep
    for the parser raise ValueError (a json.JSONDecodeError for malformed text).
    Bytes must be UTF-8 (else ValueError)."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not valid UTF-8: {exc}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except RecursionError:
        raise ValueError("nested too deeply (arrays or objects inside each other beyond the parser's "
                         "recursion limit)") from None
