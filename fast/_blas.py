"""Matmuls for the training step: BLAS sgemm, split by fixed row blocks (SPEC 10.2).

OpenBLAS's own thread pool busy-waits between calls; on a 2-core machine
shared with Numba kernels (and with other processes) that waiting thread
takes the core the next Numba kernel needs: a tiny training step measured
4-7x slower with two BLAS threads than with one. So `fast` calls BLAS with
one thread per calling thread (`openblas_set_num_threads_local`, OpenBLAS
>= 0.3.27, a per-thread setting that leaves NumPy's global one alone) and
parallelises a large product itself: the output rows (columns, for the
few-row products of generation; the leading batch axis, for batched products)
are cut into blocks whose size depends on the shape only (`ROW_BLOCK`,
`COL_BLOCK`, `BATCH_BLOCK`),
and the blocks are dealt round-robin to as many threads as Numba may use
(the calling thread plus a pool; NumPy releases the GIL in matmul). How the
output is cut depends only on its shape, never on the thread count, and each
block is one single-threaded sgemm, so the bytes are the same with 1 thread
or 64 (test_fast checks it across NUMBA_NUM_THREADS and OPENBLAS_NUM_THREADS).
Without that OpenBLAS entry point (another BLAS) every product is one plain
`np.matmul`.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Fixed block sizes: multiples of every sgemm micro-tile, large enough that a
# block's call overhead (~2 us) is small against its work.
ROW_BLOCK = 256  # output rows per block of a 2-D product
COL_BLOCK = 1024  # most output columns per block of a few-row product (generation)
COL_ALIGN = 64  # column blocks start at multiples of this (sgemv/sgemm column-group widths)
BATCH_BLOCK = 8  # matrices per block of a batched product (attention)
MIN_WORK = 1 << 21  # products with fewer multiply-adds (M*K*N) run as one call...
MIN_WORK_SMALL = 1 << 19  # ...except matrix-vector products (a few rows), split from this size


def _find_local_setter():
    here = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/libscipy_openblas*.so*", "../numpy.libs/libopenblas*.so*",
                    ".libs/libscipy_openblas*.so*", ".libs/libopenblas*.so*"):
        for path in glob.glob(os.path.join(here, pattern)):
            try:
                fn = ctypes.CDLL(path).openblas_set_num_threads_local
            except (OSError, AttributeError):
                continue
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            return fn
    return None


_set_local = _find_local_setter()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _one_thread_blas():
    if _set_local is not None:
        _set_local(1)


def _max_threads() -> int:
    try:
        import numba

        return max(1, int(numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        return os.cpu_count() or 1


def _threads() -> int:
    """Threads a product may use now: Numba's current setting (set_num_threads)."""
    try:
        import numba

        return max(1, int(numba.get_num_threads()))
    except ImportError:
        return os.cpu_count() or 1


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, _max_threads() - 1), thread_name_prefix="fast-blas",
                                       initializer=_one_thread_blas)
        return _pool


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) blocks of `size` covering range(n); the last may be shorter."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _matmul_blocks(parts) -> None:
    for x, y, o in parts:
        np.matmul(x, y, out=o)


def _run(parts) -> None:
    """Run the blocks, dealt round-robin to the calling thread and the pool."""
    workers = min(_threads(), len(parts))
    futures = [_executor().submit(_matmul_blocks, parts[w::workers]) for w in range(1, workers)]
    _matmul_blocks(parts[0::workers])
    for f in futures:
        f.result()


class single_threaded_blas:
    """Context: BLAS calls from this thread use one thread (restored on exit)."""

    def __enter__(self):
        self.prev = _set_local(1) if _set_local is not None else None
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            _set_local(self.prev)


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b (2-D, or batched over leading axes of a/b/out); large
    products cut into fixed-size blocks of output rows or columns (2-D) or
    of the leading batch axis (batched), computed concurrently."""
    if _set_local is None:
        return np.matmul(a, b, out=out)
    if out.ndim == 1 and a.ndim == 1 and b.ndim == 2:  # vector @ matrix: one row
        matmul_into(a.reshape(1, -1), b, out.reshape(1, -1))
        return out
    if out.ndim == 2:
        M, K = a.shape
        N = b.shape[1]
        if M * K * N < MIN_WORK_SMALL or (M > ROW_BLOCK and M * K * N < MIN_WORK):
            return np.matmul(a, b, out=out)
        if M > ROW_BLOCK:  # blocks of output rows
            parts = [(a[i:j], b, out[i:j]) for i, j in _blocks(M, ROW_BLOCK)]
        else:  # a few rows (generation): blocks of output columns
            # memory-bound matrix-vector work: wide blocks stream best, but at
            # least two so that a product worth splitting always runs in parallel
            width = min(COL_BLOCK, -(-N // (2 * COL_ALIGN)) * COL_ALIGN)
            parts = [(a, b[:, i:j], out[:, i:j]) for i, j in _blocks(N, width)]
    else:
        lead = out.shape[:-2]
        G = int(np.prod(lead))
        M, N = out.shape[-2:]
        K = a.shape[-1]
        if G <= BATCH_BLOCK or G * M * K * N < MIN_WORK:
            return np.matmul(a, b, out=out)
        a3 = a.reshape((G,) + a.shape[-2:])  # views: a, b, out are C-ordered over their leading axes
        b3 = b.reshape((G,) + b.shape[-2:])
        o3 = out.reshape((G, M, N))
        if not (np.shares_memory(o3, out) and o3.base is not None):
            return np.matmul(a, b, out=out)
        parts = [(a3[i:j], b3[i:j], o3[i:j]) for i, j in _blocks(G, BATCH_BLOCK)]
    if len(parts) == 1:
        x, y, o = parts[0]
        np.matmul(x, y, out=o)
    else:
        _run(parts)
    return out
