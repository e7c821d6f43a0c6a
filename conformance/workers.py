"""pytest-xdist workers: one Numba cache directory each (SPEC §fastmath).

`pyproject.toml` runs the suite over pytest-xdist workers (`-n auto`). Each
worker gets `NUMBA_CACHE_DIR/<worker id>` (else pytest's cache directory,
`.pytest_cache/d/numba/<worker id>`), set by the plugin's `pytest_configure`
before any implementation, hence Numba, is imported in that worker.
"""
from __future__ import annotations

import os
from pathlib import Path

XDIST_WORKER_ENV = "PYTEST_XDIST_WORKER"
NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"
WORKER_CACHE_ENV = "FESTE_NUMBA_CACHE_WORKER"  # the worker whose cache NUMBA_CACHE_DIR already is


def worker_numba_cache(environ, base: Path) -> str | None:
    """The Numba cache directory of this pytest-xdist worker: `<NUMBA_CACHE_DIR
    or base>/<worker id>`; None outside a worker or when already set for it.

    Numba's on-disk cache is safe for processes compiling the same signature
    (each file is written to a temporary name and renamed), but not for two
    processes adding different signatures of one function at once: both read
    the index, both take the next free data file name, and the last index
    written can point at the other's machine code. Workers run different tests,
    so they compile different signatures at the same time; a directory each
    cannot mix them. A worker id is stable (gw0, gw1, ...), so the next run
    loads what this one compiled."""
    worker = environ.get(XDIST_WORKER_ENV)
    if not worker or environ.get(WORKER_CACHE_ENV) == worker:
        return None
    return str(Path(environ.get(NUMBA_CACHE_ENV) or base) / worker)


def isolate_numba_cache(config) -> None:
    """In a pytest-xdist worker, point NUMBA_CACHE_DIR at the worker's own
    directory; elsewhere do nothing. Call before Numba is imported."""
    if worker_numba_cache(os.environ, Path()) is None:
        return
    cache = getattr(config, "cache", None)  # pytest's cache provider, unless -p no:cacheprovider
    if cache is not None:
        base = cache.mkdir("numba")
    else:
        import shutil
        import tempfile

        base = Path(tempfile.mkdtemp(prefix="feste-numba-"))
        config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))
    os.environ[NUMBA_CACHE_ENV] = worker_numba_cache(os.environ, base)
    os.environ[WORKER_CACHE_ENV] = os.environ[XDIST_WORKER_ENV]
