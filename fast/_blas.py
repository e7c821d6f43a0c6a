"""Matmuls for the training step: BLAS sgemm, split by fixed row blocks (SPEC 10.2).

OpenBLAS's own thread pool busy-waits between calls; on a 2-core machine
shared with Numba kernels (and with other processes) that waiting thread
takes the core the next Numba kernel needs: a tiny training step measured
4-7x slower with two BLAS threads than with one. So `fast` calls BLAS with
one thread per calling thread (`openblas_set_num_threads_local`, OpenBLAS
>= 0.3.27, a per-thread setting that leaves NumPy's global one alone) and
parallelises a large product itself: the output rows (columns, for the
one-row products of generation) are cut into `PARTS` fixed blocks, one computed on the calling thread and the others on
helper threads (NumPy releases the GIL in matmul). Each output element is
one single-threaded sgemm's dot product whichever block it is in, so the
bytes do not depend on the number of threads (test_fast checks it across
NUMBA_NUM_THREADS and OPENBLAS_NUM_THREADS). Without that OpenBLAS entry
point (another BLAS) every product is one plain `np.matmul`.
"""
from __future__ import annotations

import ctypes
import glob
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PARTS = 2  # fixed row blocks per large product (the machine has 2 cores; never the thread count)
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


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=PARTS - 1, thread_name_prefix="fast-blas",
                                       initializer=_one_thread_blas)
        return _pool


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
    products split into PARTS fixed blocks of output rows (2-D) or of the
    leading batch axis (batched), computed concurrently."""
    if _set_local is None:
        return np.matmul(a, b, out=out)
    if out.ndim == 1 and a.ndim == 1 and b.ndim == 2:  # vector @ matrix: one row
        matmul_into(a.reshape(1, -1), b, out.reshape(1, -1))
        return out
    if out.ndim == 2:
        M, K = a.shape
        N = b.shape[1]
        if M * K * N < MIN_WORK_SMALL or (M >= 2 * PARTS and M * K * N < MIN_WORK):
            return np.matmul(a, b, out=out)
        if M >= 2 * PARTS:  # blocks of output rows
            cuts = [M * i // PARTS for i in range(PARTS + 1)]
            parts = [(a[cuts[i]:cuts[i + 1]], b, out[cuts[i]:cuts[i + 1]]) for i in range(PARTS)]
        else:  # a few rows (generation): blocks of output columns
            cuts = [N * i // PARTS for i in range(PARTS + 1)]
            parts = [(a, b[:, cuts[i]:cuts[i + 1]], out[:, cuts[i]:cuts[i + 1]]) for i in range(PARTS)]
    else:
        lead = out.shape[:-2]
        G = int(np.prod(lead))
        M, N = out.shape[-2:]
        K = a.shape[-1]
        if G < PARTS or G * M * K * N < MIN_WORK:
            return np.matmul(a, b, out=out)
        a3 = a.reshape((G,) + a.shape[-2:])  # views: a, b, out are C-ordered over their leading axes
        b3 = b.reshape((G,) + b.shape[-2:])
        o3 = out.reshape((G, M, N))
        if not (np.shares_memory(o3, out) and o3.base is not None):
            return np.matmul(a, b, out=out)
        cuts = [G * i // PARTS for i in range(PARTS + 1)]
        parts = [(a3[cuts[i]:cuts[i + 1]], b3[cuts[i]:cuts[i + 1]], o3[cuts[i]:cuts[i + 1]]) for i in range(PARTS)]
    futures = [_executor().submit(np.matmul, x, y, out=o) for x, y, o in parts[1:]]
    x, y, o = parts[0]
    np.matmul(x, y, out=o)
    for f in futures:
        f.result()
    return out
