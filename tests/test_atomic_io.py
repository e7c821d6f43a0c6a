"""Atomic writes and the litter a killed write leaves: `reference.atomic_io` (SPEC §checkpoint,
§run-directories, §corpus, §command-line).

Every file the project writes goes to `.NAME.XXXXXXXX.tmp` in the destination's
directory, created exclusively with ordinary permissions, then is renamed over
the destination; a failure removes the temporary file, leaves the previous
file untouched and names the destination (never the temporary file);
`remove_stale_temps` deletes exactly the temporary files of given names.
Application infrastructure, so tested here in-process: the mutation target
`reference` runs this file (a subprocess would not see mutmut's mutants);
tests/test_robustness.py runs the same rules through the `feste` command line.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import time
from pathlib import Path

import pytest

from reference import atomic_io
from reference.atomic_io import atomic_write, current_umask, remove_stale_temps


def temp_name_re(name: str) -> re.Pattern:
    """SPEC §run-directories: `.NAME.XXXXXXXX.tmp`, eight lower-case hex digits (written
    here from SPEC, not taken from atomic_io.TEMP_PATTERN)."""
    return re.compile(r"\." + re.escape(name) + r"\.[0-9a-f]{8}\.tmp")


def _chunks(payload: bytes):
    yield payload[:3]
    yield b""
    yield payload[3:]


FORMS = {"bytes": bytes, "bytearray": bytearray, "memoryview": memoryview, "list of chunks": lambda b: [b[:5], b[5:]],
         "generator": _chunks}


@pytest.mark.parametrize("form", FORMS)
def test_a_write_replaces_the_file_whole_with_ordinary_permissions(tmp_path, umask, form):
    """SPEC §checkpoint: the destination ends up holding exactly the data (given as bytes or
    streamed as chunks), with the permissions a plain open gives (0666 & ~umask), and
    nothing else is left in the directory."""
    path = tmp_path / "out.bin"
    path.write_bytes(b"the previous content, longer than the new one")
    os.chmod(path, 0o600)
    payload = b"new \x00\xff content"
    atomic_write(path, FORMS[form](payload))
    assert path.read_bytes() == payload
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path)) == ["out.bin"]


def test_a_bare_file_name_is_written_in_the_working_directory(tmp_path, monkeypatch):
    """A destination given as a bare name (`--out tok.json`) is written, through its
    temporary file, in the working directory."""
    monkeypatch.chdir(tmp_path)
    atomic_write("tok.json", b"{}")
    atomic_write(Path("tok.json"), b"[]")
    assert sorted(os.listdir(tmp_path)) == ["tok.json"] and (tmp_path / "tok.json").read_bytes() == b"[]"


def test_the_write_goes_to_a_named_temporary_file_beside_the_destination(tmp_path, monkeypatch):
    """SPEC §checkpoint, §run-directories: while the data is written, the destination still
    holds the previous file, and the data goes to one `.NAME.XXXXXXXX.tmp` in the
    destination's directory (not the working directory), which the rename then removes."""
    run = tmp_path / "run"
    run.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = run / "latest.ckpt"
    path.write_bytes(b"previous")
    seen = {}

    def chunks():
        yield b"first half, "
        seen["run"] = sorted(os.listdir(run))
        seen["elsewhere"] = os.listdir(elsewhere)
        seen["destination"] = path.read_bytes()
        yield b"second half"

    atomic_write(path, chunks())
    temps = [n for n in seen["run"] if n != "latest.ckpt"]
    assert len(temps) == 1 and temp_name_re("latest.ckpt").fullmatch(temps[0]), seen
    assert seen["elsewhere"] == [] and seen["destination"] == b"previous"
    assert path.read_bytes() == b"first half, second half" and os.listdir(run) == ["latest.ckpt"]


def test_a_taken_temporary_name_is_drawn_again_and_the_other_file_left_alone(tmp_path, monkeypatch):
    """SPEC §checkpoint: the temporary file is created exclusively; a name another writer
    holds is drawn again, and that writer's file is not touched."""
    drawn = iter(["0a1b2c3d", "0a1b2c3d", "5e6f7a8b"])
    monkeypatch.setattr(atomic_io.secrets, "token_hex", lambda n: next(drawn))
    other = tmp_path / ".out.bin.0a1b2c3d.tmp"
    other.write_bytes(b"another writer's data")
    atomic_write(tmp_path / "out.bin", b"mine")
    assert (tmp_path / "out.bin").read_bytes() == b"mine"
    assert other.read_bytes() == b"another writer's data"
    assert sorted(os.listdir(tmp_path)) == [".out.bin.0a1b2c3d.tmp", "out.bin"]


class Interrupted(Exception):
    pass


def test_a_failure_mid_write_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """SPEC §checkpoint: an exception while the data is produced (the caller's), while it is
    written or synced (a full disk), or at the rename (the destination is a directory)
    removes the temporary file and leaves the previous file untouched. The caller's
    exception comes out as itself; an OSError names the destination, never the temporary
    file (SPEC §command-line: `runs/x/latest.ckpt: No space left on device`), keeping its
    type and errno."""
    path = tmp_path / "latest.ckpt"
    path.write_bytes(b"previous")

    def chunks_then(exc):
        yield b"part"
        raise exc

    for raised in (Interrupted("stop"), OSError("a caller's OSError without errno")):
        with pytest.raises(type(raised)) as info:
            atomic_write(path, chunks_then(raised))
        assert info.value is raised
    assert sorted(os.listdir(tmp_path)) == ["latest.ckpt"] and path.read_bytes() == b"previous"

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as m:
        m.setattr(atomic_io.os, "fsync", full)
        with pytest.raises(OSError) as info:
            atomic_write(path, b"new content")
    assert type(info.value) is OSError and info.value.errno == errno.ENOSPC
    assert info.value.strerror == os.strerror(errno.ENOSPC) and info.value.filename == str(path)
    assert str(info.value) == f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}: '{path}'"
    assert sorted(os.listdir(tmp_path)) == ["latest.ckpt"] and path.read_bytes() == b"previous"

    blocked = tmp_path / "blocked"
    (blocked / "inside").mkdir(parents=True)
    with pytest.raises(IsADirectoryError) as info:
        atomic_write(blocked, b"data")
    assert info.value.errno == errno.EISDIR and info.value.filename == str(blocked)
    assert sorted(os.listdir(tmp_path)) == ["blocked", "latest.ckpt"] and os.listdir(blocked) == ["inside"]


def test_a_missing_directory_is_an_error_naming_the_destination(tmp_path):
    """SPEC §command-line: an OSError names the user's path, never the temporary file beside it."""
    path = tmp_path / "no such dir" / "out.bin"
    with pytest.raises(FileNotFoundError) as info:
        atomic_write(path, b"data")
    assert info.value.errno == errno.ENOENT and info.value.filename == str(path)
    assert os.listdir(tmp_path) == []


def test_current_umask_reads_the_umask_and_leaves_it(tmp_path):
    """SPEC §checkpoint: what `feste export` gives its directory (0777 & ~umask) comes from
    the process umask, read without changing it."""
    previous = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert current_umask() == 0o027
        path = tmp_path / "after"
        with open(path, "w"):
            pass
        assert stat.S_IMODE(path.stat().st_mode) == 0o640  # the umask still in force
    finally:
        os.umask(previous)


# --- what a killed write leaves ---------------------------------------------------------------------
def _touch(path: Path, data: bytes = b"litter", age: float = 0.0) -> Path:
    path.write_bytes(data)
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path


def test_stale_temporary_files_of_the_given_names_go_and_nothing_else(tmp_path, monkeypatch):
    """SPEC §run-directories: exactly the `.NAME.XXXXXXXX.tmp` of the given names are removed
    and returned (the trainer prints `removed NAME` for each); the destinations, other names,
    other patterns, a directory or a symbolic link of a temporary file's name stay, and
    so does the working directory's litter."""
    run = tmp_path / "run"
    run.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _touch(cwd / ".latest.ckpt.0a1b2c3d.tmp")
    litter = [_touch(run / n) for n in (".latest.ckpt.0a1b2c3d.tmp", ".latest.ckpt.ffffffff.tmp",
                                        ".best.ckpt.12345678.tmp", ".log.csv.00000000.tmp")]
    keep = [_touch(run / n) for n in ("latest.ckpt", ".latest.ckpt.tmp", ".notes.0a1b2c3d.tmp", "x.tmp",
                                      "latest.ckpt.0a1b2c3d.tmp", ".latest.ckpt.0A1B2C3D.tmp",
                                      ".latest.ckpt.0a1b2c3.tmp", ".latest.ckpt.0a1b2c3d0.tmp",
                                      ".latest.ckpt.0a1b2c3d.tmp.bak")]
    (run / ".best.ckpt.0a1b2c3d.tmp").mkdir()
    (run / ".best.ckpt.99999999.tmp").symlink_to(run / "latest.ckpt")
    removed = remove_stale_temps(run, ["latest.ckpt", "best.ckpt", "log.csv"])
    assert sorted(removed) == sorted(litter) and all(isinstance(p, Path) for p in removed)
    assert not any(p.exists() for p in litter)
    assert all(p.read_bytes() == b"litter" for p in keep)
    assert (run / ".best.ckpt.0a1b2c3d.tmp").is_dir() and (run / ".best.ckpt.99999999.tmp").is_symlink()
    assert (cwd / ".latest.ckpt.0a1b2c3d.tmp").exists()
    assert remove_stale_temps(run, ["latest.ckpt"]) == []
    assert remove_stale_temps(run, []) == [] and len(os.listdir(run)) == len(keep) + 2


def test_with_an_age_only_older_temporary_files_go(tmp_path):
    """SPEC §corpus: in the corpus cache (no lock) a temporary file is removed only once it
    is an hour old, so a fetch in progress elsewhere keeps its file."""
    old = _touch(tmp_path / ".cache.txt.0a1b2c3d.tmp", age=7200)
    recent = [_touch(tmp_path / ".cache.txt.11111111.tmp", age=3000), _touch(tmp_path / ".cache.txt.22222222.tmp")]
    assert remove_stale_temps(tmp_path, ["cache.txt"], older_than=3600) == [old]
    assert all(p.exists() for p in recent) and not old.exists()
    assert remove_stale_temps(tmp_path, ["cache.txt"], older_than=3600) == []


def test_a_temporary_file_removed_meanwhile_by_another_process_is_skipped(tmp_path, monkeypatch):
    """SPEC §corpus: the cache directory has no lock, so two processes may clean it at once;
    a file the other one removes first is skipped, and the rest are still removed (and
    only those this call removed are returned)."""
    litter = [_touch(tmp_path / f".cache.txt.{i:08x}.tmp") for i in range(4)]
    real_unlink = os.unlink
    lost = []

    def unlink(path, *args, **kwargs):
        if not lost:  # the other process removes this one first
            lost.append(Path(path))
            real_unlink(path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(atomic_io.os, "unlink", unlink)
    removed = remove_stale_temps(tmp_path, ["cache.txt"])
    monkeypatch.undo()
    assert len(lost) == 1 and sorted(removed + lost) == sorted(litter)
    assert os.listdir(tmp_path) == []
