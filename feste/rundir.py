"""Run directories: a directory belongs to one run (SPEC §run-directories).

A run directory holds RUN_FILES (run.json, the two CSV logs, best/latest/final
checkpoints) and the lock file `.lock`. `RunDir.claim` is the only way the
trainer gets one:

- a new run takes a directory it creates itself (by default
  `runs/<preset>-<YYYYmmdd-HHMMSS>`, `-2`, `-3`, ... appended when that name
  is taken, so two runs started in the same second get two directories), or
  an existing empty one; a non-empty directory it did not create is refused
  unless `overwrite`, which deletes the RUN_FILES found there first (other
  files are left alone);
- a resumed run takes the directory of its own run, which must exist;
- either way the directory is locked for the whole run (below), and the
  temporary files a killed write left there (`.NAME.XXXXXXXX.tmp` for NAME in
  RUN_FILES, reference.atomic_io) are removed, and only those.

The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` on `.lock`, which then holds the
holder's pid, host and start time (written once the claim has succeeded: a
refused trainer leaves `.lock` as it was, so it names the real holder). flock rather than the `filelock` package:
it is the standard library (the core install stays numpy, numba, tqdm), the
kernel drops the lock when its process dies however it dies (kill -9 leaves
no stale lock to break by hand; filelock's Unix lock is this same flock call),
and filelock's other backends serve Windows, which this POSIX-only project
(mmap, fchmod, fsync of directories) does not run on. On Linux, flock on NFS
is mapped to POSIX byte-range locks, so it also holds between machines
sharing a directory; a file system with no locking at all is refused
(`RunDirError`) rather than run unlocked. The lock file stays after the run
(deleting a lock file is what makes lock-file schemes racy); it is not
"content" when deciding whether a directory is empty.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from reference.atomic_io import remove_stale_temps
from reference.input_checks import strict_json

RUN_JSON, LOG_NAME, STEPS_NAME = "run.json", "training_log.csv", "steps.csv"
BEST, LATEST, FINAL = "best.ckpt", "latest.ckpt", "final.ckpt"
RUN_FILES = (RUN_JSON, LOG_NAME, STEPS_NAME, BEST, LATEST, FINAL)  # what a run writes, and what --overwrite deletes
LOCK_NAME = ".lock"
DEFAULT_PARENT = "runs"  # new runs go to runs/<preset>-<YYYYmmdd-HHMMSS> unless a directory is named


class RunDirError(RuntimeError):
    """The run directory cannot be used: another trainer holds it, it belongs to
    another run, it is missing, or it cannot be locked. The message says what to do."""


def new_run_dir(preset: str, parent=DEFAULT_PARENT) -> Path:
    """Create and return `parent/<preset>-<YYYYmmdd-HHMMSS>` (local time), or the
    first free `...-2`, `...-3`: the directory is created exclusively (mkdir),
    so concurrent runs can never be handed the same one."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while True:
        path = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            n += 1
            continue
        return path


def _holder_text(fd: int) -> str:
    """'pid P on HOST, started T' from the lock file's content (retried briefly:
    the holder writes it just after locking)."""
    for _ in range(20):
        try:
            raw = os.pread(fd, 4096, 0)
            doc = strict_json(raw) if raw else None
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict) and {"pid", "host", "started"} <= set(doc):
            return f"pid {doc['pid']} on {doc['host']}, started {doc['started']}"
        time.sleep(0.01)
    return "holder unknown"


def _not_empty(path: Path) -> str | None:
    """Why a new run may not take the existing directory `path` (None: it may)."""
    entries = sorted(e for e in os.listdir(path) if e != LOCK_NAME)
    if not entries:
        return None
    shown = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
    checkpoints = [path / name for name in (LATEST, FINAL, BEST) if (path / name).is_file()]
    resume = ""
    if (path / RUN_JSON).is_file() and checkpoints:  # the run's newest checkpoint: the one a resume wants
        resume = f", continue that run with --resume {max(checkpoints, key=lambda p: p.stat().st_mtime_ns)}"
    return (f"run directory {path} is not empty ({shown}) and a new run never writes into another "
            f"run's directory: name a new --run-dir (or none, for a new one under runs/){resume}, or pass "
            "--overwrite to replace its run files")


class RunDir:
    """A locked run directory: `path`, and whether this run `created` it.
    Release the lock with `release()` (or use it as a context manager)."""

    def __init__(self, path: Path, created: bool, fd: int):
        self.path = path
        self.created = created
        self._fd = fd
        self.removed_temps: list[Path] = []

    @classmethod
    def claim(cls, path, preset: str, *, resume: bool = False, overwrite: bool = False) -> "RunDir":
        """Lock the run directory of a new run (`path` None: a new
        runs/<preset>-<time>) or of a resumed one; see the module docstring."""
        created = False
        if path is None:
            if resume:
                raise RunDirError("a resumed run needs its run directory")
            path, created = new_run_dir(preset), True
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run directory {path} exists and is not a directory")
        if resume and not path.is_dir():
            raise RunDirError(f"run directory {path} does not exist")
        if not path.exists():
            try:
                path.mkdir(parents=True)
                created = True
            except FileExistsError:  # created a moment ago by someone else: the lock decides
                pass
        if not resume and not created and not overwrite and not (path / LOCK_NAME).exists():
            refusal = _not_empty(path)  # refused before the lock file is created: nothing in it changes
            if refusal:
                raise RunDirError(refusal)
        run = cls(path, created, cls._lock(path))
        try:
            if not resume:
                run._check_empty(overwrite)
            run.removed_temps = remove_stale_temps(path, RUN_FILES)
            run._write_holder()  # only once the claim has succeeded: a refused trainer leaves .lock as it was
        except BaseException:
            run.abandon()  # a directory this claim created goes again
            raise
        return run

    @staticmethod
    def _lock(path: Path) -> int:
        lock_path = path / LOCK_NAME
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise RunDirError(f"cannot create the lock file {lock_path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder_text(fd) if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
            os.close(fd)
            if holder is not None:
                raise RunDirError(f"run directory {path} is in use by another trainer ({holder}); wait for it to "
                                  "finish or choose another --run-dir") from None
            raise RunDirError(f"cannot lock {lock_path}: {exc.strerror or exc} (the file system must support "
                              "flock so that two trainers cannot write one run directory)") from None
        return fd

    def _write_holder(self) -> None:
        """Write this process as the holder into the (locked) .lock file."""
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n"
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, info.encode("utf-8"), 0)
        except OSError:  # the lock is what matters; the holder text is a courtesy
            pass

    def _check_empty(self, overwrite: bool) -> None:
        if self.created:
            return
        if not overwrite:
            refusal = _not_empty(self.path)
            if refusal:
                raise RunDirError(refusal)
            return
        for name in RUN_FILES:
            try:
                (self.path / name).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise RunDirError(f"--overwrite: cannot delete {self.path / name}: {exc.strerror or exc}") from None

    def release(self) -> None:
        """Drop the lock (closing the descriptor); idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None  # forgotten first: an interrupt cannot make it closed twice
            os.close(fd)  # closing the last descriptor releases the flock

    def abandon(self) -> None:
        """Remove the directory again if this run created it and wrote nothing
        there (the lock file goes while still held), then release."""
        if self.created and self._fd is not None:
            try:
                if os.listdir(self.path) == [LOCK_NAME]:
                    (self.path / LOCK_NAME).unlink()
                    self.path.rmdir()
            except OSError:
                pass
        self.release()

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_run_json(run_dir) -> dict:
    """The run's run.json as a dict; RunDirError if it is missing or unreadable."""
    from reference.input_checks import read_regular

    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        raise RunDirError(f"{path} is missing: a resumed run continues the run its checkpoint came from, so "
                          "its run directory (the checkpoint's own, or --run-dir) must hold that run's run.json")
    try:
        doc = strict_json(read_regular(path, "run file", RunDirError, max_bytes=1 << 24))
    except ValueError as exc:
        raise RunDirError(f"{path}: not a readable run.json: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict) or not isinstance(doc.get("config"), dict):
        raise RunDirError(f"{path}: not a run.json (expected an object with 'settings' and 'config')")
    return doc
