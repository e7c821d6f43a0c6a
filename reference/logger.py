"""The CSV logs of a run (SPEC §csv-log).

training_log.csv, one row per evaluation (the seed's columns, then grad_norm):
    step,elapsed_seconds,learning_rate,train_loss,val_loss,train_perplexity,val_perplexity,sample,grad_norm
    200,5400.00,0.000060,5.8900,5.9100,361.41,368.71,"He said ""hi"" twice",0.8123

The sample is always quoted with inner quotes doubled (RFC 4180), so samples
may hold commas and newlines; control characters (a model early in training
samples NUL and escape bytes) are escaped so that the file stays text:
`\\` for a backslash, `\\xHH` for every other C0/C1 control character except
newline and tab (`escape_sample`; `read_log` undoes it).

steps.csv, one row per training step (SPEC §csv-log):
    step,elapsed_seconds,learning_rate,train_loss,grad_norm,tokens_per_second
    17,4.210,0.001,5.9123001,0.81234567,3821.4

Every row is flushed as it is written, so a crashed run keeps its logs. A
resumed run first drops the rows of the steps it will redo (`truncate_from`).
"""
from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from .atomic_io import atomic_write, with_filename
from .input_checks import check_regular, open_regular

CSV_COLUMNS = ("step", "elapsed_seconds", "learning_rate", "train_loss", "val_loss",
               "train_perplexity", "val_perplexity", "sample", "grad_norm")
CSV_HEADER = ",".join(CSV_COLUMNS)
STEP_COLUMNS = ("step", "elapsed_seconds", "learning_rate", "train_loss", "grad_norm", "tokens_per_second")
STEP_HEADER = ",".join(STEP_COLUMNS)

# C0 and C1 control characters (Unicode category Cc) except tab and newline, and the backslash itself
_ESCAPED = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\\]")
_ESCAPE = re.compile(r"\\(\\|x[0-9a-f]{2})")


def perplexity(loss: float) -> float:
    """exp(loss); +inf when it overflows, nan for nan."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def escape_sample(text: str) -> str:
    """`text` with `\\` -> `\\\\` and each control character other than tab and newline
    -> `\\xHH` (two lower-case hex digits): "a\\x00b" is written a\\x00b."""
    return _ESCAPED.sub(lambda m: "\\\\" if m[0] == "\\" else f"\\x{ord(m[0]):02x}", text)


def unescape_sample(text: str) -> str:
    """The inverse of `escape_sample`."""
    return _ESCAPE.sub(lambda m: "\\" if m[1] == "\\" else chr(int(m[1][1:], 16)), text)


def format_log_row(step: int, elapsed: float, lr: float, train_loss: float, val_loss: float,
                   sample: str, grad_norm: float) -> str:
    """One CSV row, without the line ending:
    `{step},{elapsed:.2f},{lr:.6f},{train:.4f},{val:.4f},{exp(train):.2f},{exp(val):.2f},"{sample}",{grad_norm:.4f}`
    with the sample's control characters escaped (`escape_sample`) and every `"` doubled."""
    _check_step(step)
    if not isinstance(sample, str):
        raise ValueError(f"format_log_row: sample must be a str, got {type(sample).__name__}")
    quoted = '"' + escape_sample(sample).replace('"', '""') + '"'
    return (f"{step},{float(elapsed):.2f},{float(lr):.6f},{float(train_loss):.4f},{float(val_loss):.4f},"
            f"{perplexity(float(train_loss)):.2f},{perplexity(float(val_loss)):.2f},{quoted},{float(grad_norm):.4f}")


def format_step_row(step: int, elapsed: float, lr: float, train_loss: float, grad_norm: float,
                    tokens_per_second: float) -> str:
    """One steps.csv row: `{step},{elapsed:.3f},{lr:.8g},{train:.8g},{grad_norm:.8g},{tokens_per_second:.1f}`
    (nan and inf as Python writes them)."""
    _check_step(step)
    return (f"{step},{float(elapsed):.3f},{float(lr):.8g},{float(train_loss):.8g},{float(grad_norm):.8g},"
            f"{float(tokens_per_second):.1f}")


def _check_step(step) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"format_log_row: step must be a non-negative int, got {step!r}")


def _read_records(path: Path, columns: tuple[str, ...]) -> list[tuple[dict, list[str]]]:
    """(parsed row, raw fields) per record; validates the header and every field."""
    header_text = ",".join(columns)
    f, _ = open_regular(path, "log", ValueError)
    with io.TextIOWrapper(f, encoding="utf-8", newline="") as text:
        reader = csv.reader(text)
        try:
            header = next(reader, None)
            if header is None or ",".join(header) != header_text:
                raise ValueError(f"{path}: not a log of this kind: the first line must be {header_text!r}")
            records = []
            for number, fields in enumerate(reader, start=1):
                if len(fields) != len(columns):
                    raise ValueError(f"{path}: row {number} has {len(fields)} fields, expected {len(columns)}")
                try:
                    row = {k: (unescape_sample(v) if k == "sample" else int(v) if k == "step" else float(v))
                           for k, v in zip(columns, fields)}
                except ValueError as exc:
                    raise ValueError(f"{path}: row {number}: {exc}") from None
                records.append((row, fields))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: not a readable CSV log: {exc}") from None
    return records


def read_log(path) -> list[dict]:
    """The rows of a training log as dicts (numbers as float, step as int, sample as str, unescaped)."""
    return [row for row, _ in _read_records(Path(path), CSV_COLUMNS)]


def read_steps(path) -> list[dict]:
    """The rows of a steps.csv as dicts (step as int, the rest as float)."""
    return [row for row, _ in _read_records(Path(path), STEP_COLUMNS)]


class _CsvLog:
    """Appends rows to a CSV file with a fixed header, flushing each one; see TrainingLogger."""

    columns: tuple[str, ...] = ()

    def __init__(self, path, truncate_from: int | None = None):
        self.path = Path(path)
        if self.path.exists():  # appending to a FIFO would block, to a directory fail obscurely
            check_regular(self.path, "log")
        exists = self.path.exists() and self.path.stat().st_size > 0
        self._last_elapsed = 0.0  # elapsed_seconds of the last row
        if exists:
            records = _read_records(self.path, self.columns)  # validates the header and every row
            if truncate_from is not None and any(row["step"] >= truncate_from for row, _ in records):
                records = [(row, fields) for row, fields in records if row["step"] < truncate_from]
                self._rewrite([fields for _, fields in records])
            if records:
                self._last_elapsed = records[-1][0]["elapsed_seconds"]
        try:
            self._file = open(self.path, "a", newline="", encoding="utf-8")
        except OSError as exc:
            raise with_filename(exc, self.path) from None
        if not exists:
            self._write(",".join(self.columns) + "\n")

    def _rewrite(self, kept: list[list[str]]) -> None:
        """Header plus the kept rows, their fields verbatim (the sample re-quoted)."""
        text = io.StringIO()
        text.write(",".join(self.columns) + "\n")
        for fields in kept:
            text.write(",".join('"' + v.replace('"', '""') + '"' if k == "sample" else v
                                for k, v in zip(self.columns, fields)) + "\n")
        atomic_write(self.path, text.getvalue().encode("utf-8"))

    def _write(self, text: str) -> None:
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            raise with_filename(exc, self.path) from None

    def last_elapsed(self) -> float:
        """elapsed_seconds of the last row (0.0 for an empty log): a resumed run continues from it."""
        return self._last_elapsed

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TrainingLogger(_CsvLog):
    """Appends rows to the CSV training log, flushing each one.

    A new (or empty) file gets the header. An existing log is appended to
    (its header must match). `truncate_from=N` first drops every row with
    step >= N (rewriting the file atomically): a run resumed from a checkpoint
    taken after N steps re-logs those steps itself, so the log reads as if the
    run had never stopped.
    """

    columns = CSV_COLUMNS

    def log(self, step: int, elapsed: float, lr: float, train_loss: float, val_loss: float,
            sample: str, grad_norm: float) -> str:
        """Write and flush one row; returns it."""
        row = format_log_row(step, elapsed, lr, train_loss, val_loss, sample, grad_norm)
        self._write(row + "\n")
        self._last_elapsed = float(elapsed)
        return row


class StepLogger(_CsvLog):
    """steps.csv: one row per training step (same rules as TrainingLogger)."""

    columns = STEP_COLUMNS

    def log(self, step: int, elapsed: float, lr: float, train_loss: float, grad_norm: float,
            tokens_per_second: float) -> str:
        row = format_step_row(step, elapsed, lr, train_loss, grad_norm, tokens_per_second)
        self._write(row + "\n")
        self._last_elapsed = float(elapsed)
        return row
