"""The CSV training log (SPEC §training).

Oracle: rows typed out by hand (the derivation of each number is next to it)
and Python's csv module as an independent parser of the quoting.
"""
from __future__ import annotations

import csv
import io
import math

import pytest

HEADER = "step,elapsed_seconds,learning_rate,train_loss,val_loss,train_perplexity,val_perplexity,sample,grad_norm"


def test_header_is_exact(impl):
    assert impl.CSV_HEADER == HEADER


# loss ln(512) = 6.238324625 -> "6.2383", perplexity exp(ln 512) = 512 -> "512.00";
# ln(100) = 4.605170186 -> "4.6052", perplexity "100.00"; ln(20) = 2.995732274 -> "2.9957", "20.00";
# lr 6e-5 with 6 decimals -> "0.000060"; 3e-4 -> "0.000300"; 0 -> "0.000000";
# elapsed 5400 -> "5400.00"; 62.694 -> "62.69"; grad norm 1.23456 -> "1.2346" (4 decimals), 0.5 -> "0.5000".
ROWS = [
    ((0, 62.694, 0.0, math.log(512), math.log(512), "", 0.5),
     '0,62.69,0.000000,6.2383,6.2383,512.00,512.00,"",0.5000'),
    ((200, 5400.0, 6e-5, math.log(100), math.log(512), "To be, or not to be", 1.23456),
     '200,5400.00,0.000060,4.6052,6.2383,100.00,512.00,"To be, or not to be",1.2346'),
    ((1000, 27000.0, 3e-4, math.log(20), math.log(100), 'He said "hi"', 0.0),
     '1000,27000.00,0.000300,2.9957,4.6052,20.00,100.00,"He said ""hi""",0.0000'),
]


@pytest.mark.parametrize("args, want", ROWS)
def test_format_log_row_exact(impl, args, want):
    assert impl.format_log_row(*args) == want


def test_overflowing_perplexity_is_inf(impl):
    """exp(1000) overflows a double: the perplexity column says inf, no exception."""
    row = impl.format_log_row(5, 1.0, 1e-3, 1000.0, 3.0, "x", 2.0)
    assert row == '5,1.00,0.001000,1000.0000,3.0000,inf,20.09,"x",2.0000'


@pytest.mark.parametrize("sample", ['a "quoted", word', 'line one\nline two', '""', 'comma,comma', "ünïcödé ✓"])
def test_sample_quoting_round_trips_through_csv_module(impl, sample):
    row = impl.format_log_row(3, 0.5, 1e-3, 1.0, 2.0, sample, 0.25)
    fields = next(csv.reader(io.StringIO(row + "\n")))
    assert len(fields) == 9
    assert fields[7] == sample


@pytest.mark.parametrize("step", [-1, 1.5, 2.0, True, "3", None])
def test_format_log_row_rejects_bad_step(impl, step):
    """SPEC §contract-errors: step not an int >= 0 (a bool is not an int there)."""
    with pytest.raises(ValueError, match="step"):
        impl.format_log_row(step, 0.0, 0.0, 1.0, 1.0, "", 0.0)


@pytest.mark.parametrize("sample", [None, b"bytes", 3])
def test_format_log_row_rejects_a_sample_that_is_not_text(impl, sample):
    """SPEC §contract-errors: the sample is a str."""
    with pytest.raises(ValueError, match="sample"):
        impl.format_log_row(1, 0.0, 0.0, 1.0, 1.0, sample, 0.0)


def test_logger_writes_header_and_flushes_each_row(impl, tmp_path):
    path = tmp_path / "training_log.csv"
    logger = impl.TrainingLogger(path)
    try:
        assert path.read_text() == HEADER + "\n"
        logger.log(*ROWS[0][0])
        # flushed: visible to another reader before close
        assert path.read_text() == HEADER + "\n" + ROWS[0][1] + "\n"
        logger.log(*ROWS[1][0])
        assert path.read_text() == HEADER + "\n" + ROWS[0][1] + "\n" + ROWS[1][1] + "\n"
    finally:
        logger.close()


def test_logger_writes_the_header_to_an_empty_file(impl, tmp_path):
    """SPEC §csv-log: a new or empty file gets the header."""
    path = tmp_path / "training_log.csv"
    path.write_bytes(b"")
    with impl.TrainingLogger(path) as logger:
        logger.log(*ROWS[0][0])
    assert path.read_text() == HEADER + "\n" + ROWS[0][1] + "\n"


@pytest.mark.parametrize("content", [b"\n", b"s", HEADER[:-1].encode() + b"\n"])
def test_logger_refuses_a_short_file_that_is_not_a_log(impl, tmp_path, content):
    """SPEC §csv-log: an existing non-empty file whose header does not match (even one byte
    long) is a ValueError naming the file, and is left as it was."""
    path = tmp_path / "training_log.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="training_log.csv"):
        impl.TrainingLogger(path)
    assert path.read_bytes() == content


def test_logger_appends_to_existing_log(impl, tmp_path):
    path = tmp_path / "training_log.csv"
    with impl.TrainingLogger(path) as logger:
        logger.log(*ROWS[0][0])
    with impl.TrainingLogger(path) as logger:
        logger.log(*ROWS[1][0])
    assert path.read_text() == HEADER + "\n" + ROWS[0][1] + "\n" + ROWS[1][1] + "\n"


def test_logger_truncate_from_drops_later_rows_verbatim(impl, tmp_path):
    """A resumed run (checkpoint after 200 steps) drops rows 200.. and keeps row 0
    byte for byte (its perplexity was computed from the unrounded loss)."""
    path = tmp_path / "training_log.csv"
    unrounded = (0, 1.0, 0.0, 6.23838, 6.23838, 'multi\nline "sample"', 0.5)
    with impl.TrainingLogger(path) as logger:
        first = logger.log(*unrounded)
        for args, _ in ROWS[1:]:
            logger.log(*args)
    with impl.TrainingLogger(path, truncate_from=200) as logger:
        logger.log(*ROWS[1][0])
    assert path.read_text() == HEADER + "\n" + first + "\n" + ROWS[1][1] + "\n"


def test_logger_refuses_a_fifo_instead_of_blocking(impl, tmp_path):
    """Opening a FIFO for appending blocks until a reader comes: refused first."""
    import os

    fifo = tmp_path / "training_log.csv"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        impl.TrainingLogger(fifo)


def test_logger_rejects_foreign_file_and_directory(impl, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="other.csv"):
        impl.TrainingLogger(other)
    assert other.read_text() == "a,b,c\n1,2,3\n"
    with pytest.raises(ValueError, match="directory"):
        impl.TrainingLogger(tmp_path)


# control characters in samples (hostile input): escaped so the log stays text
# NUL -> \x00, ESC -> \x1b, DEL -> \x7f, U+0085 (a C1 control) -> \x85, CR -> \x0d, a backslash -> \\;
# newline and tab stay as they are (inside the quotes), and so does U+FFFD.
ESCAPES = [
    ("a\x00b", r"a\x00b"), ("\x1b[31mred\x1b[0m", r"\x1b[31mred\x1b[0m"), ("del\x7f", r"del\x7f"),
    ("c1\x85", r"c1\x85"), ("cr\r\nlf", "cr\\x0d\nlf"), ("tab\there", "tab\there"), (r"C:\dir", r"C:\\dir"),
    (r"\x00 is not NUL", r"\\x00 is not NUL"), ("\ufffd", "\ufffd"), ('q"\x01"', 'q""\\x01""'),
]


@pytest.mark.parametrize("sample, written", ESCAPES)
def test_control_characters_in_samples_are_escaped(impl, sample, written):
    row = impl.format_log_row(1, 0.5, 1e-3, 1.0, 2.0, sample, 0.25)
    assert row == f'1,0.50,0.001000,1.0000,2.0000,2.72,7.39,"{written}",0.2500'
    field = next(csv.reader(io.StringIO(row + "\n")))[7]
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7f <= ord(c) <= 0x9f for c in field)
    # the documented inverse: \\ -> \, \xHH -> chr(0xHH)
    import re
    assert re.sub(r"\\(\\|x[0-9a-f]{2})", lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), field) == sample
