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


BLAS_THREAD_ENVS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def worker_blas_threads(environ, cpus: int) -> int | None:
    """The BLAS threads of this pytest-xdist worker: the cores shared out among the
    workers, at least one; None outside a worker, or where the environment sets the
    BLAS thread count (the user's choice stands).

    Each worker is a process with its own BLAS thread pool, by default one thread per
    core: two workers on two cores ran four BLAS threads, whose waiting between calls
    took the cores from the other worker (reference's tests under `-n 2` used 2.4 times
    the CPU time of the same tests with one BLAS thread per worker). Only the worker's
    own pool is limited: a subprocess a test starts gets the environment's settings.
    Numba's threads likewise: worker_numba_threads."""
    return _worker_share(environ, cpus, BLAS_THREAD_ENVS)


def _worker_share(environ, total: int, chosen_by: tuple[str, ...]) -> int | None:
    """`total` threads divided by the pytest-xdist workers, at least one; None outside a
    worker or where one of the variables `chosen_by` is set (the user's choice stands)."""
    if not environ.get(XDIST_WORKER_ENV) or any(environ.get(v) for v in chosen_by):
        return None
    try:
        workers = max(1, int(environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
    except ValueError:
        workers = 1
    return max(1, total // workers)


def share_cores_among_workers() -> object | None:
    """In a pytest-xdist worker, limit the BLAS pool to worker_blas_threads (threadpoolctl,
    which sets the loaded BLAS library's own thread count); the limiter, or None."""
    threads = worker_blas_threads(os.environ, os.cpu_count() or 1)
    if threads is None:
        return None
    try:
        import numpy  # noqa: F401  (loads the BLAS library threadpoolctl acts on)
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with the test extra; without it the defaults stand
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def worker_numba_threads(environ, pool: int) -> int | None:
    """The Numba threads this pytest-xdist worker's tests run with by default: the
    pool divided by the workers, at least one; None outside a worker or where
    NUMBA_NUM_THREADS is set. The pool itself keeps every thread, so the suite's
    thread tests (conformance/threads.py) still compare one thread with all of them."""
    return _worker_share(environ, pool, ("NUMBA_NUM_THREADS",))


def share_numba_threads_among_workers() -> bool:
    """Once Numba has been imported (by an implementation: never by the suite first,
    since an implementation may configure Numba's threading layer before it starts),
    set this worker's default Numba thread count to worker_numba_threads. True once done."""
    import sys

    numba = sys.modules.get("numba")
    if numba is None:
        return False
    threads = worker_numba_threads(os.environ, numba.config.NUMBA_NUM_THREADS)
    if threads is not None and threads < numba.get_num_threads():
        numba.set_num_threads(threads)
    return True
