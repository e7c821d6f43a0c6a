"""The CSV training log (SPEC section 7).

One row per evaluation step:
    step,elapsed_seconds,learning_rate,train_loss,val_loss,train_perplexity,val_perplexity,sample,grad_norm
    200,5400.00,0.000060,5.8900,5.9100,361.41,368.71,"He said ""hi"" twice",0.8123

The sample is always quoted with inner quotes doubled (RFC 4180), so samples
may hold commas and newlines; `read_log` parses the file back with the csv
module. Every row is flushed as it is written, so a crashed run keeps its log.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from ._atomic import atomic_write

CSV_COLUMNS = ("step", "elapsed_seconds", "learning_rate", "train_loss", "val_loss",
               "train_perplexity", "val_perplexity", "sample", "grad_norm")
CSV_HEADER = ",".join(CSV_COLUMNS)


def perplexity(loss: float) -> float:
    """exp(loss); +inf when it overflows, nan for nan."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf


def format_log_row(step: int, elapsed: float, lr: float, train_loss: float, val_loss: float,
                   sample: str, grad_norm: float) -> str:
    """One CSV row, without the line ending:
    `{step},{elapsed:.2f},{lr:.6f},{train:.4f},{val:.4f},{exp(train):.2f},{exp(val):.2f},"{sample}",{grad_norm:.4f}`
    with every `"` in the sample doubled."""
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"format_log_row: step must be a non-negative int, got {step!r}")
    if not isinstance(sample, str):
        raise ValueError(f"format_log_row: sample must be a str, got {type(sample).__name__}")
    quoted = '"' + sample.replace('"', '""') + '"'
    return (f"{step},{float(elapsed):.2f},{float(lr):.6f},{float(train_loss):.4f},{float(val_loss):.4f},"
            f"{perplexity(float(train_loss)):.2f},{perplexity(float(val_loss)):.2f},{quoted},{float(grad_norm):.4f}")


def _read_records(path: Path) -> list[tuple[dict, list[str]]]:
    """(parsed row, raw fields) per record; validates the header and every field."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or ",".join(header) != CSV_HEADER:
            raise ValueError(f"{path}: not a training log: the first line must be {CSV_HEADER!r}")
        records = []
        for number, fields in enumerate(reader, start=1):
            if len(fields) != len(CSV_COLUMNS):
                raise ValueError(f"{path}: row {number} has {len(fields)} fields, expected {len(CSV_COLUMNS)}")
            try:
                row = {k: (v if k == "sample" else int(v) if k == "step" else float(v))
                       for k, v in zip(CSV_COLUMNS, fields)}
            except ValueError as exc:
                raise ValueError(f"{path}: row {number}: {exc}") from None
            records.append((row, fields))
    return records


def read_log(path) -> list[dict]:
    """The rows of a training log as dicts (numbers as float, step as int, sample as str)."""
    return [row for row, _ in _read_records(Path(path))]


class TrainingLogger:
    """Appends rows to a CSV log, flushing each one.

    A new (or empty) file gets the header. An existing log is appended to
    (its header must match). `truncate_from=N` first drops every row with
    step >= N (rewriting the file atomically): a run resumed from a checkpoint
    taken after N steps re-logs those steps itself, so the log reads as if the
    run had never stopped.
    """

    def __init__(self, path, truncate_from: int | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"training log {self.path} is a directory")
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            records = _read_records(self.path)  # validates the header and every row
            if truncate_from is not None and any(row["step"] >= truncate_from for row, _ in records):
                self._rewrite([fields for row, fields in records if row["step"] < truncate_from])
        self._file = open(self.path, "a", newline="", encoding="utf-8")
        if not exists:
            self._file.write(CSV_HEADER + "\n")
            self._file.flush()

    def _rewrite(self, kept: list[list[str]]) -> None:
        """Header plus the kept rows, their fields verbatim (the sample re-quoted)."""
        text = io.StringIO()
        text.write(CSV_HEADER + "\n")
        for fields in kept:
            sample = '"' + fields[7].replace('"', '""') + '"'
            text.write(",".join(fields[:7] + [sample, fields[8]]) + "\n")
        atomic_write(self.path, text.getvalue().encode("utf-8"))

    def log(self, step: int, elapsed: float, lr: float, train_loss: float, val_loss: float,
            sample: str, grad_norm: float) -> str:
        """Write and flush one row; returns it."""
        row = format_log_row(step, elapsed, lr, train_loss, val_loss, sample, grad_norm)
        self._file.write(row + "\n")
        self._file.flush()
        return row

    def last_elapsed(self) -> float:
        """elapsed_seconds of the last row (0.0 for an empty log): a resumed run continues from it."""
        self._file.flush()
        rows = read_log(self.path)
        return rows[-1]["elapsed_seconds"] if rows else 0.0

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> "TrainingLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
