"""Reading untrusted files: `reference.input_checks` (SPEC §checkpoint, §tokenizer, §corpus).

Every file the project reads goes through these helpers: only a regular file
is read (a directory, FIFO, socket or device is refused with a message naming
the path and what it is, and a FIFO without a writer never blocks the open);
a size limit is checked against the file's size before anything is read, and
a file that grows past it while being read is refused too; JSON is strict
(duplicate keys, NaN/Infinity and nesting beyond the parser's recursion limit
are ValueErrors). Application infrastructure, so tested here in-process: the
mutation target `reference` runs this file (a subprocess would not see
mutmut's mutants); tests/test_robustness.py runs the same rules through the
`feste` command line.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import socket
import stat

import pytest

from reference import input_checks
from reference.input_checks import check_regular, file_kind, open_regular, read_regular, strict_json


class Refused(Exception):
    """The caller's error type: each helper raises what it is given (CheckpointError, CorpusError...)."""


def _size_by_check(path, what):
    return check_regular(path, what, Refused)


def _size_by_open(path, what):
    f, size = open_regular(path, what, Refused)
    with f:
        return size


def _size_by_read(path, what):
    return len(read_regular(path, what, Refused))


READERS = {"check_regular": _size_by_check, "open_regular": _size_by_open, "read_regular": _size_by_read}


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (instead of hanging) if the block takes longer: SIGALRM interrupts a blocked open.
    The handler is set here, whatever the disposition this process inherited, and restored."""
    def expired(signum, frame):
        raise TimeoutError(f"blocked for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def special_files(tmp_path, monkeypatch):
    """A directory, a FIFO with no writer, a character device and a listening socket, each
    with the name its message gives it. The socket is bound by a short relative name (a
    socket path is limited to about 100 bytes) from inside tmp_path."""
    monkeypatch.chdir(tmp_path)
    os.mkdir("dir")
    os.mkfifo("fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind("sock")
    sock.listen(1)
    yield {"dir": "a directory", "fifo": "a FIFO (named pipe)", "/dev/null": "a character device",
           "sock": "a socket"}
    sock.close()


@pytest.mark.parametrize("reader", READERS)
def test_only_a_regular_file_is_read_and_others_are_refused_naming_path_and_kind(special_files, reader):
    """SPEC §checkpoint, §tokenizer, §corpus: a directory, a FIFO, a socket or a device is
    refused with the caller's error type, naming the path and what it is, and the open of
    a FIFO with no writer does not block (it used to hang `feste inspect`). Opening a
    socket fails in the system (ENXIO), so the readers that open name that reason instead."""
    for path, kind in special_files.items():
        with deadline(10), pytest.raises(Refused) as info:
            READERS[reader](path, "input")
        message = str(info.value)
        if path == "sock" and reader != "check_regular":
            assert message == f"cannot read input sock: {os.strerror(errno.ENXIO)}", message
            continue
        assert message == f"input {path} is {kind}, not a regular file", (reader, message)


@pytest.mark.parametrize("reader", READERS)
def test_a_regular_file_is_read_with_its_size_through_a_symlink_too(tmp_path, reader):
    """The readers accept any regular file, including one reached through a symbolic link
    (the corpus may be a link into a data directory), and report its true size."""
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 3)
    link = tmp_path / "link.bin"
    link.symlink_to(path)
    assert READERS[reader](path, "input") == 768
    assert READERS[reader](link, "input") == 768


def test_open_regular_gives_the_bytes_in_binary_mode(tmp_path):
    """open_regular returns a binary file object over the whole file and its size."""
    path = tmp_path / "data.bin"
    payload = b"\x00\xffline\r\n" * 10
    path.write_bytes(payload)
    f, size = open_regular(path, "input", Refused)
    with f:
        assert isinstance(f, io.BufferedReader)
        assert size == len(payload) and f.read() == payload


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("case", ["missing", "under a file", "symlink loop"])
def test_a_path_that_cannot_be_opened_is_refused_naming_it_and_the_reason(tmp_path, reader, case):
    """A missing file says so; any other failure to open (here ENOTDIR, a path through a
    regular file, and ELOOP, a symbolic link to itself) is one line naming the path and the
    system's reason, in the caller's error type (never a bare OSError)."""
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    path, expected = {
        "missing": (tmp_path / "nothing.txt", "does not exist"),
        "under a file": (tmp_path / "file" / "child", os.strerror(errno.ENOTDIR)),
        "symlink loop": (tmp_path / "loop", os.strerror(errno.ELOOP)),
    }[case]
    with pytest.raises(Refused) as info:
        READERS[reader](path, "input")
    assert str(info.value) == (f"input {path} {expected}" if case == "missing"
                               else f"cannot read input {path}: {expected}"), str(info.value)


@pytest.mark.parametrize("mode, kind", [
    (stat.S_IFDIR | 0o755, "a directory"), (stat.S_IFIFO | 0o644, "a FIFO (named pipe)"),
    (stat.S_IFCHR | 0o666, "a character device"), (stat.S_IFBLK | 0o660, "a block device"),
    (stat.S_IFSOCK | 0o777, "a socket"),
])
def test_every_kind_of_special_file_has_its_name(mode, kind):
    """The names the refusals give (a block device cannot be made without privileges, so
    its name is checked on the mode)."""
    assert file_kind(mode) == kind


# --- size limits ------------------------------------------------------------------------------
def test_a_file_at_the_limit_is_read_whole_and_one_byte_more_is_refused_before_reading(tmp_path):
    """SPEC §corpus, §tokenizer: a file of at most the limit is read; a larger one is refused
    against its size before anything is read, with the message naming the size and the
    limit ("corpus file F is N bytes, more than the limit of L bytes")."""
    path = tmp_path / "corpus.txt"
    payload = bytes(range(250)) * 4  # 1000 bytes
    path.write_bytes(payload)
    assert read_regular(path, "corpus file", Refused, max_bytes=1000) == payload
    assert read_regular(path, "corpus file", Refused, max_bytes=1001) == payload
    assert read_regular(path, "corpus file", Refused) == payload  # no limit
    with pytest.raises(Refused) as info:
        read_regular(path, "corpus file", Refused, max_bytes=999)
    assert str(info.value) == f"corpus file {path} is 1,000 bytes, more than the limit of 999 bytes"


class GrowingFile(io.BytesIO):
    """A file whose size was taken (fstat) before it grew: what open_regular returns when
    another process appends while the reader opens it. Counts the bytes read."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size=-1):
        out = super().read(size)
        self.bytes_read += len(out)
        return out


@pytest.mark.parametrize("limit", [10, 1000])
def test_a_file_growing_past_the_limit_while_read_is_refused_reading_at_most_one_byte_more(
        tmp_path, monkeypatch, limit):
    """SPEC §corpus: a file that grows past the limit while it is read is refused (its size
    at the open was within the limit), and the reader holds at most the limit plus one byte
    (what it takes to see the growth), however much the file grew."""
    grown = GrowingFile(b"g" * (50 * limit))
    monkeypatch.setattr(input_checks, "open_regular", lambda path, what, error: (grown, limit))
    with pytest.raises(Refused) as info:
        read_regular(tmp_path / "corpus.txt", "corpus file", Refused, max_bytes=limit)
    assert str(info.value).startswith(f"corpus file {tmp_path / 'corpus.txt'} grew past the limit of {limit:,}")
    assert grown.bytes_read == limit + 1


def test_a_file_within_the_limit_after_the_open_is_read_whole(tmp_path, monkeypatch):
    """The read that checks for growth returns the whole file when it did not grow past the limit."""
    for stated, actual in ((5, 8), (8, 8), (8, 3)):
        data = GrowingFile(b"x" * actual)
        monkeypatch.setattr(input_checks, "open_regular", lambda path, what, error: (data, stated))
        assert read_regular(tmp_path / "f", "input", Refused, max_bytes=8) == b"x" * actual


def test_a_read_error_is_refused_naming_the_file_and_the_reason(tmp_path, monkeypatch):
    """An I/O error while reading (a failing disk) comes out as the caller's error naming the file."""
    class FailingFile(io.BytesIO):
        def read(self, size=-1):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    path = tmp_path / "corpus.txt"
    for limit in (None, 100):
        monkeypatch.setattr(input_checks, "open_regular", lambda path, what, error: (FailingFile(b"abc"), 3))
        with pytest.raises(Refused) as info:
            read_regular(path, "corpus file", Refused, max_bytes=limit)
        assert str(info.value) == f"cannot read corpus file {path}: {os.strerror(errno.EIO)}"


# --- strict JSON -------------------------------------------------------------------------------
@pytest.mark.parametrize("form", [str, lambda s: s.encode(), lambda s: bytearray(s.encode()),
                                  lambda s: memoryview(s.encode())], ids=["str", "bytes", "bytearray", "memoryview"])
def test_strict_json_reads_standard_json_from_text_or_utf8_bytes(form):
    """SPEC §tokenizer: the JSON readers take str or UTF-8 bytes; what standard JSON holds reads as json.loads does."""
    text = '{"vocab": {"<00>": 0, "caf\u00e9": 1}, "merges": [["a", "b"]], "x": [1.5, -2, null, true, {}]}'
    assert strict_json(form(text)) == json.loads(text)


@pytest.mark.parametrize("text, words", [
    ('{"a": 1, "a": 2}', ["duplicate key", "'a'"]),
    ('{"outer": {"k": 1, "j": 2, "k": 3}}', ["duplicate key", "'k'"]),
    ('[{"x": 0}, {"y": 1, "y": 1}]', ["duplicate key", "'y'"]),
    ('{"loss": NaN}', ["NaN"]),
    ('[Infinity]', ["Infinity"]),
    ('{"v": -Infinity}', ["-Infinity"]),
    ("[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, ["nested too deeply"]),
])
def test_strict_json_refuses_duplicates_non_standard_constants_and_deep_nesting(text, words):
    """SPEC §checkpoint, §tokenizer: duplicate keys (anywhere), NaN/Infinity and nesting
    beyond the parser's recursion limit are ValueErrors naming what is wrong (a silent "last
    wins", a float NaN, or a RecursionError otherwise)."""
    for form in (text, text.encode()):
        with pytest.raises(ValueError) as info:
            strict_json(form)
        assert not isinstance(info.value, json.JSONDecodeError), info.value
        assert all(word in str(info.value) for word in words), str(info.value)


def test_strict_json_refuses_bytes_that_are_not_utf8_and_malformed_text():
    """Bytes must be UTF-8 (ValueError saying so); malformed JSON is a json.JSONDecodeError
    (itself a ValueError)."""
    with pytest.raises(ValueError, match="UTF-8"):
        strict_json(b'{"a": "\xff"}')
    with pytest.raises(json.JSONDecodeError):
        strict_json('{"a": }')
