"""Run directories in process (feste/rundir.py, SPEC §run-directories).

The CLI's side of these rules (two real trainers, signals, a resumed run
pointed at another run) is in test_robustness.py; here the rules are
checked on `RunDir` itself, with the lock held by this process through a
second open file description (flock locks belong to the open file, so a
second `open` + `flock` in one process conflicts exactly as another
process would).
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import re
import socket
import stat
from pathlib import Path

import pytest

from feste import rundir
from feste.rundir import LOCK_NAME, RUN_FILES, RunDir, RunDirError, new_run_dir


@pytest.fixture
def fixed_clock(monkeypatch):
    """time.strftime frozen, as for runs started within one second."""
    monkeypatch.setattr(rundir.time, "strftime", lambda fmt, *a: "20260102-030405")


def test_new_runs_in_one_second_get_their_own_directories(tmp_path, fixed_clock):
    """`<preset>-<YYYYmmdd-HHMMSS>`, then `-2`, `-3`, ... when the name is
    taken; the parent (here two levels that do not exist yet) is created."""
    parent = tmp_path / "a" / "runs"
    got = [new_run_dir("tiny", parent) for _ in range(3)]
    assert [p.name for p in got] == ["tiny-20260102-030405", "tiny-20260102-030405-2", "tiny-20260102-030405-3"]
    assert all(p.is_dir() and p.parent == parent for p in got)
    assert sorted(os.listdir(parent)) == sorted(p.name for p in got)


def test_the_default_name_is_the_preset_and_the_local_time(tmp_path):
    got = new_run_dir("small", tmp_path)
    assert re.fullmatch(r"small-\d{8}-\d{6}", got.name), got.name


@pytest.mark.parametrize("n_entries, shown, more", [(1, 1, False), (6, 6, False), (7, 6, True), (9, 6, True)])
def test_a_non_empty_directory_is_refused_naming_it_its_entries_and_the_ways_out(tmp_path, n_entries, shown, more):
    """SPEC §run-directories: the refusal names the directory, up to six of
    its entries (then "...") and the ways out (not --resume: the directory
    holds no run), and creates no lock file."""
    run_dir = tmp_path / "t1"
    run_dir.mkdir()
    names = [f"f{i}.txt" for i in range(n_entries)]
    for name in names:
        (run_dir / name).write_text("x")
    with pytest.raises(RunDirError) as info:
        RunDir.claim(run_dir, "tiny")
    listed = ", ".join(names[:shown]) + (", ..." if more else "")
    assert str(info.value) == refusal(run_dir, listed)
    assert sorted(os.listdir(run_dir)) == names, "a refused claim changed the directory"


def refusal(run_dir, listed: str, resume: str = "") -> str:
    """SPEC §run-directories' text of the refusal of a non-empty directory."""
    return (f"run directory {run_dir} is not empty ({listed}) and a new run never writes into another run's "
            f"directory: name a new --run-dir (or none, for a new one under runs/)"
            + (f", continue that run with --resume {resume}" if resume else "")
            + ", or pass --overwrite to replace its run files")


def test_a_directory_holding_a_run_is_refused_suggesting_its_newest_checkpoint(tmp_path):
    """SPEC §run-directories: a directory holding a run (its run.json and a
    checkpoint) is refused too, and the refusal names the --resume that
    continues it, with the run's newest checkpoint; without a checkpoint, none."""
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    (run_dir / "run.json").write_text("{}")
    with pytest.raises(RunDirError) as info:
        RunDir.claim(run_dir, "tiny")
    assert str(info.value) == refusal(run_dir, "run.json")
    for age, name in enumerate(("best.ckpt", "final.ckpt", "latest.ckpt")):
        (run_dir / name).write_bytes(b"x")
        os.utime(run_dir / name, ns=(10**18 + age, 10**18 + age))
    os.utime(run_dir / "best.ckpt", ns=(2 * 10**18, 2 * 10**18))  # written last
    with pytest.raises(RunDirError) as info:
        RunDir.claim(run_dir, "tiny")
    assert str(info.value) == refusal(run_dir, "best.ckpt, final.ckpt, latest.ckpt, run.json", run_dir / "best.ckpt")


def test_an_unreadable_run_json_is_named(tmp_path):
    """A resumed run reads its run.json; one that is not JSON is a RunDirError
    naming the file."""
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunDirError, match=re.escape(str(tmp_path / "run.json"))):
        rundir.read_run_json(tmp_path)


def test_a_run_json_is_a_regular_file_of_at_most_16_mib(tmp_path):
    """SPEC §trainer: a run.json larger than 16 MiB is a RunDirError "run file F
    is N bytes, more than the limit of 16,777,216 bytes" (one of exactly 16 MiB
    is read), and one that is not a regular file is a RunDirError naming it."""
    path = tmp_path / "run.json"
    doc = b'{"settings": {}, "config": {}}'
    path.write_bytes(doc + b" " * ((1 << 24) - len(doc)))
    assert rundir.read_run_json(tmp_path) == {"settings": {}, "config": {}}
    path.write_bytes(doc + b" " * ((1 << 24) + 1 - len(doc)))
    with pytest.raises(RunDirError) as info:
        rundir.read_run_json(tmp_path)
    assert str(info.value) == f"run file {path} is 16,777,217 bytes, more than the limit of 16,777,216 bytes"
    path.unlink()
    path.mkdir()
    with pytest.raises(RunDirError) as info:
        rundir.read_run_json(tmp_path)
    assert str(path) in str(info.value) and "a directory" in str(info.value), info.value


def test_the_lock_file_alone_is_not_content(tmp_path):
    run_dir = tmp_path / "t1"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_text("")
    RunDir.claim(run_dir, "tiny").release()


def test_overwrite_deletes_the_run_files_and_nothing_else(tmp_path):
    run_dir = tmp_path / "t1"
    run_dir.mkdir()
    for name in (*RUN_FILES, "notes.txt"):
        (run_dir / name).write_text("old run")
    with RunDir.claim(run_dir, "tiny", overwrite=True) as run:
        assert not run.created
    assert sorted(os.listdir(run_dir)) == sorted([LOCK_NAME, "notes.txt"])


def test_a_run_file_overwrite_cannot_delete_refuses_the_run_naming_it(tmp_path):
    """SPEC §run-directories: "--overwrite: cannot delete DIR/NAME: REASON" (here
    best.ckpt is a directory, which unlink refuses whoever runs the test)."""
    run_dir = tmp_path / "t1"
    run_dir.mkdir()
    (run_dir / "best.ckpt").mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError) as info:
        RunDir.claim(run_dir, "tiny", overwrite=True)
    message = str(info.value)
    assert message.startswith(f"--overwrite: cannot delete {run_dir / 'best.ckpt'}: "), message
    assert os.strerror(errno.EISDIR) in message, message
    assert (run_dir / "best.ckpt").is_dir() and (run_dir / "notes.txt").read_text() == "mine"
    (run_dir / "best.ckpt").rmdir()
    RunDir.claim(run_dir, "tiny", overwrite=True).release()  # the refused claim released its lock


def test_the_lock_file_has_ordinary_permissions_and_is_not_inherited(tmp_path, umask):
    """SPEC §run-directories: .lock gets 0666 & ~umask, like every file of the
    run, and no process the trainer starts inherits its descriptor."""
    run_dir = tmp_path / "t1"
    with RunDir.claim(run_dir, "tiny"):
        assert stat.S_IMODE((run_dir / LOCK_NAME).stat().st_mode) == 0o666 & ~umask
        if not os.path.isdir("/proc/self/fd"):
            pytest.skip("no /proc/self/fd to find the lock's descriptor by")
        lock = os.stat(run_dir / LOCK_NAME)
        held = [int(fd) for fd in os.listdir("/proc/self/fd") if _is_file(f"/proc/self/fd/{fd}", lock)]
        assert held, "no descriptor of this process is open on .lock"
        assert not any(os.get_inheritable(fd) for fd in held)


def _is_file(fd_link: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(fd_link)
    except OSError:  # a descriptor closed since the listing
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def test_a_lock_file_that_cannot_be_created_is_named(tmp_path):
    """SPEC §run-directories: "cannot create the lock file DIR/.lock: REASON"
    (here .lock is a directory, which open refuses whoever runs the test)."""
    run_dir = tmp_path / "t1"
    (run_dir / LOCK_NAME).mkdir(parents=True)
    with pytest.raises(RunDirError) as info:
        RunDir.claim(run_dir, "tiny")
    message = str(info.value)
    assert message.startswith(f"cannot create the lock file {run_dir / LOCK_NAME}: "), message
    assert os.strerror(errno.EISDIR) in message, message


def test_a_second_claim_names_the_holder_and_leaves_its_lock_file(tmp_path):
    """SPEC §run-directories: "in use by another trainer (pid P on H, started
    T)", new or resuming, and the .lock bytes still name the real holder."""
    run_dir = tmp_path / "t1"
    with RunDir.claim(run_dir, "tiny"):
        holder = json.loads((run_dir / LOCK_NAME).read_bytes())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        # the local time of the claim, ISO 8601 with its UTC offset
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", holder["started"]), holder
        started = datetime.datetime.strptime(holder["started"], "%Y-%m-%dT%H:%M:%S%z")
        assert started.utcoffset() == datetime.datetime.now().astimezone().utcoffset(), holder
        before = (run_dir / LOCK_NAME).read_bytes()
        for resume in (False, True):
            with pytest.raises(RunDirError) as info:
                RunDir.claim(run_dir, "tiny", resume=resume)
            assert (f"run directory {run_dir} is in use by another trainer (pid {os.getpid()} on "
                    f"{socket.gethostname()}, started {holder['started']})") in str(info.value)
            assert (run_dir / LOCK_NAME).read_bytes() == before
    RunDir.claim(run_dir, "tiny", resume=True).release()  # released: the directory can be taken again


@pytest.mark.parametrize("content", [b"", b'{"pid": 5}', b"[1, 2]", b"not json"],
                         ids=["empty", "partial", "not-an-object", "not-json"])
def test_a_holder_that_wrote_no_complete_record_is_unknown(tmp_path, content):
    """A lock held by a process that has not (or not fully) written its
    record: the refusal says "holder unknown" rather than failing."""
    run_dir = tmp_path / "t1"
    run_dir.mkdir()
    (run_dir / LOCK_NAME).write_bytes(content)
    with open(run_dir / LOCK_NAME, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunDirError, match=r"in use by another trainer \(holder unknown\);"):
            RunDir.claim(run_dir, "tiny")
    assert (run_dir / LOCK_NAME).read_bytes() == content


def test_a_directory_the_claim_created_and_never_wrote_to_is_removed_again(tmp_path, monkeypatch):
    """SPEC §run-directories: "A directory this call created and never wrote
    to ... is removed again"; one it did not create, or one with a run file
    in it, stays."""
    monkeypatch.chdir(tmp_path)
    created = tmp_path / "new"
    RunDir.claim(created, "tiny").abandon()
    assert not created.exists()

    existing = tmp_path / "empty"
    existing.mkdir()
    RunDir.claim(existing, "tiny").abandon()
    assert os.listdir(existing) == [LOCK_NAME]

    written = tmp_path / "written"
    run = RunDir.claim(written, "tiny")
    (written / "training_log.csv").write_text("step\n")
    run.abandon()
    assert sorted(os.listdir(written)) == sorted([LOCK_NAME, "training_log.csv"])

    default = RunDir.claim(None, "tiny")  # runs/<preset>-<time> under the working directory
    assert default.created and default.path.parent == Path("runs")
    default.abandon()
    assert not default.path.exists()

    run = RunDir.claim(tmp_path / "twice", "tiny")
    run.abandon()
    run.abandon()  # idempotent
    assert not (tmp_path / "twice").exists()


def test_a_resumed_run_needs_its_own_existing_directory(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        RunDir.claim(tmp_path / "gone", "tiny", resume=True)
    with pytest.raises(RunDirError, match="needs its run directory"):
        RunDir.claim(None, "tiny", resume=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is not a directory"):
        RunDir.claim(tmp_path / "file", "tiny")


@pytest.mark.parametrize("doc", [{"settings": {}}, {"config": {}}, {"settings": {}, "config": None}, [1, 2]],
                         ids=["no-config", "no-settings", "config-not-object", "not-an-object"])
def test_a_run_json_without_settings_and_config_objects_is_named(tmp_path, doc):
    """SPEC §run-directories: a resumed run reads its run.json, which must be an
    object holding the objects `settings` and `config`; anything else is a
    RunDirError naming the file."""
    (tmp_path / "run.json").write_text(json.dumps(doc))
    with pytest.raises(RunDirError, match=re.escape(str(tmp_path / "run.json")) + ": not a run.json"):
        rundir.read_run_json(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"settings": {}, "config": {}}))
    assert rundir.read_run_json(tmp_path) == {"settings": {}, "config": {}}


def test_a_file_system_without_locks_is_refused_not_reported_as_in_use(tmp_path, monkeypatch):
    """SPEC §run-directories: on a file system without locks (flock fails with
    ENOLCK, not EWOULDBLOCK) the run is refused, saying so, rather than run
    unlocked or reported as another trainer's."""
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    run_dir = tmp_path / "t1"
    run_dir.mkdir()
    with pytest.raises(RunDirError) as info:
        RunDir.claim(run_dir, "tiny")
    message = str(info.value)
    assert message.startswith(f"cannot lock {run_dir / LOCK_NAME}: {os.strerror(errno.ENOLCK)}"), message
    assert "the file system must support flock" in message and "in use" not in message, message
