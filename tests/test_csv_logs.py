"""The CSV logs as the application uses them (SPEC §csv-log): reading them back
(`reference.logger.read_log`, `read_steps`), the elapsed time a resumed run goes
on from (`last_elapsed`), UTF-8 whatever the locale, write errors naming the
file, and closing.

None of this is in the implementation contract (the trainer and `feste plot`
use it), so it is tested here, in-process, and not by the conformance suite.
Oracle: rows typed out by hand, and the samples the logger was given.
"""
from __future__ import annotations

import locale
import os
import resource
import signal
from pathlib import Path

import pytest

from reference.logger import CSV_HEADER, STEP_HEADER, StepLogger, TrainingLogger, read_log, read_steps

# every escape SPEC §csv-log defines, and the characters that stay: a backslash (\\), NUL, ESC, DEL,
# a C1 control (U+0085), CR (not a line end inside a sample), newline and tab, quotes, non-ASCII text;
# ESC (0x1b) and 0x85 catch a hex digit read in the wrong base or from the wrong place
SAMPLES = ["a\x00b", "\x1b[31mred\x1b[0m", "del\x7f", "c1\x85", "cr\r\nlf", "tab\there", r"C:\dir",
           r"\x00 is not NUL", "\\\\", 'q"\x01"', "ünïcödé ✓ \ufffd", ""]


def test_read_log_gives_back_what_the_logger_was_given(tmp_path):
    """SPEC §csv-log: read_log undoes escape_sample, so the samples come back as generated;
    step is an int, every other number a float (as rounded in the file)."""
    path = tmp_path / "training_log.csv"
    with TrainingLogger(path) as logger:
        for i, sample in enumerate(SAMPLES):
            logger.log(10 * i, 1.5 + i, 3e-4, 2.0 + i / 8, 2.5, sample, 0.25)
    rows = read_log(path)
    assert [r["sample"] for r in rows] == SAMPLES
    assert [r["step"] for r in rows] == [10 * i for i in range(len(SAMPLES))]
    assert all(type(r["step"]) is int for r in rows)
    first = rows[0]
    assert list(first) == CSV_HEADER.split(",")
    assert first == {"step": 0, "elapsed_seconds": 1.5, "learning_rate": 0.0003, "train_loss": 2.0,
                     "val_loss": 2.5, "train_perplexity": 7.39, "val_perplexity": 12.18, "sample": "a\x00b",
                     "grad_norm": 0.25}
    assert all(type(v) is float for k, v in first.items() if k not in ("step", "sample"))


def test_read_steps_gives_back_the_rows_of_steps_csv(tmp_path):
    """SPEC §csv-log: steps.csv rows read back, step an int and the rest floats."""
    path = tmp_path / "steps.csv"
    with StepLogger(path) as logger:
        logger.log(0, 0.5, 1e-3, 6.25, 0.75, 1024.0)
        logger.log(1, 1.25, float("nan"), float("inf"), 0.5, 0.0)
    rows = read_steps(path)
    assert path.read_text(encoding="utf-8") == STEP_HEADER + "\n0,0.500,0.001,6.25,0.75,1024.0\n1,1.250,nan,inf,0.5,0.0\n"
    assert len(rows) == 2 and list(rows[0]) == STEP_HEADER.split(",")
    assert rows[0] == {"step": 0, "elapsed_seconds": 0.5, "learning_rate": 0.001, "train_loss": 6.25,
                       "grad_norm": 0.75, "tokens_per_second": 1024.0}
    assert type(rows[1]["step"]) is int and rows[1]["step"] == 1
    assert rows[1]["train_loss"] == float("inf") and rows[1]["learning_rate"] != rows[1]["learning_rate"]


@pytest.mark.parametrize("locale_while", ["writing", "reading"])
def test_logs_are_utf8_whatever_the_locale(tmp_path, locale_while):
    """SPEC §csv-log: the file is UTF-8 text; a logger or reader that took the locale's
    encoding would fail (or garble the sample) under the C locale, whose encoding is ASCII."""
    path = tmp_path / "training_log.csv"
    saved = locale.setlocale(locale.LC_CTYPE)
    try:
        if locale_while == "writing":
            locale.setlocale(locale.LC_CTYPE, "C")
        with TrainingLogger(path) as logger:
            logger.log(0, 1.0, 1e-3, 2.0, 2.0, "ünïcödé ✓", 0.5)
        locale.setlocale(locale.LC_CTYPE, "C")
        rows = read_log(path)
    finally:
        locale.setlocale(locale.LC_CTYPE, saved)
    assert path.read_bytes().decode("utf-8").endswith(',"ünïcödé ✓",0.5000\n')
    assert rows[0]["sample"] == "ünïcödé ✓"


@pytest.mark.parametrize("cls", [TrainingLogger, StepLogger])
def test_last_elapsed_is_where_a_resumed_run_goes_on(tmp_path, cls):
    """SPEC §trainer: on resume, elapsed_seconds goes on from the last kept row: last_elapsed() is 0.0 for
    a new log, the elapsed of the row just written, and after truncate_from the last kept row's."""
    path = tmp_path / "log.csv"
    args = (1e-3, 2.0, 2.0, "x", 0.5) if cls is TrainingLogger else (1e-3, 2.0, 0.5, 100.0)
    with cls(path) as logger:
        assert logger.last_elapsed() == 0.0
        for step, elapsed in ((0, 1.25), (1, 2.5), (2, 3.75)):
            logger.log(step, elapsed, *args)
            assert logger.last_elapsed() == elapsed
    with cls(path) as logger:
        assert logger.last_elapsed() == 3.75
    with cls(path, truncate_from=2) as logger:
        assert logger.last_elapsed() == 2.5
    with cls(path, truncate_from=0) as logger:
        assert logger.last_elapsed() == 0.0


ROW = '0,1.00,0.001000,2.0000,2.0000,7.39,7.39,"x",0.5000\n'
# (file content, what the message must also name besides the file)
NOT_LOGS = {
    "empty": (b"", "first line"),
    "foreign header": (b"a,b,c\n1,2,3\n", "first line"),
    "header only of steps.csv": ((STEP_HEADER + "\n").encode(), "first line"),
    "a row too short": ((CSV_HEADER + "\n" + ROW + "1,2.00\n").encode(), "row 2"),
    "a field not a number": ((CSV_HEADER + "\n" + ROW.replace("2.0000", "two", 1)).encode(), "row 1"),
    "a step not an integer": ((CSV_HEADER + "\n" + ROW + ROW.replace("0,", "1.5,", 1)).encode(), "row 2"),
    "not UTF-8": ((CSV_HEADER + "\n" + ROW.replace('"x"', '"\xff"')).encode("latin-1"), "readable"),
}


@pytest.mark.parametrize("content, names", NOT_LOGS.values(), ids=NOT_LOGS.keys())
def test_a_file_that_is_not_a_log_is_a_value_error_naming_it(tmp_path, content, names):
    """SPEC §csv-log: a file that is not a log of that kind is a ValueError naming the file
    (and, for a bad row, its number: the first row after the header is row 1)."""
    path = tmp_path / "training_log.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=names) as info:
        read_log(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", ["missing", "directory", "FIFO"])
def test_a_path_that_is_not_a_regular_file_is_a_value_error_naming_it(tmp_path, kind):
    """SPEC §csv-log: read_log and read_steps of a missing path, a directory or a FIFO (which
    would block) raise ValueError naming the path."""
    path = tmp_path / "steps.csv"
    if kind == "directory":
        path.mkdir()
    elif kind == "FIFO":
        os.mkfifo(path)
    for reader in (read_log, read_steps):
        with pytest.raises(ValueError, match="steps.csv"):
            reader(path)


def test_a_log_that_cannot_be_opened_is_an_oserror_naming_it(tmp_path):
    """SPEC §csv-log: opening the log for appending fails (its directory is missing):
    an OSError whose file name is the log's path."""
    path = tmp_path / "no_such_dir" / "training_log.csv"
    with pytest.raises(FileNotFoundError) as info:
        TrainingLogger(path)
    assert info.value.filename == str(path)


@pytest.mark.parametrize("cls", [TrainingLogger, StepLogger])
def test_a_failed_write_is_an_oserror_naming_the_log(tmp_path, cls):
    """SPEC §csv-log: a write that fails (here past the file size limit, EFBIG, as a full
    disk gives ENOSPC) raises an OSError naming the log file. SIGXFSZ is ignored for the
    test, so the write fails with an error instead of the signal ending the process."""
    path = tmp_path / "log.csv"
    logger = cls(path)
    args = (1e-3, 2.0, 2.0, "x" * 4096, 0.5) if cls is TrainingLogger else (1e-3, 2.0, 0.5, 1e300)
    saved_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 10, hard))
        with pytest.raises(OSError) as info:
            logger.log(0, 1.0, *args)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, saved_handler)
        logger.close()
    assert info.value.filename == str(path), info.value


def test_close_releases_the_file(tmp_path):
    """SPEC §csv-log: the logger holds its file open between rows; close() (and leaving a
    with block) releases the descriptor, and a second close is harmless."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("counting open descriptors needs /proc/self/fd (Linux)")
    before = len(list(fds.iterdir()))
    logger = TrainingLogger(tmp_path / "a.csv")
    assert len(list(fds.iterdir())) == before + 1
    logger.close()
    logger.close()  # a second close is harmless
    with StepLogger(tmp_path / "b.csv"):
        pass
    assert len(list(fds.iterdir())) == before
