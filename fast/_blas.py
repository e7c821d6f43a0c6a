"""Matmuls for the training step: BLAS gemm on Numba's threads, in fixed blocks (SPEC 10.2).

A large product is cut into blocks whose size depends on the shape only:
blocks of output rows (`ROW_BLOCK`), of output columns for few-row products
(`COL_BLOCK`, `COL_ALIGN`), or of the leading batch axis of batched products
(`BATCH_BLOCK`). Each block is one single-threaded sgemm (dgemm for float64)
whichever thread runs it, so the bytes do not depend on any thread setting
(test_fast checks it across NUMBA_NUM_THREADS and OPENBLAS_NUM_THREADS).

The blocks run inside one Numba parallel region (`_gemm_blocks`), which
calls OpenBLAS's C entry point directly: the same thread team as every other
`fast` kernel, so there is no second pool. (A Python thread pool was used
before: each product paid a wake-up of the pool thread, and OpenMP workers
waiting for the next kernel competed with it for the cores.) OpenBLAS is
told to use one thread per calling thread (`openblas_set_num_threads_local`,
OpenBLAS >= 0.3.27, a per-thread setting that leaves NumPy's global one
alone), inside the region for the workers and by `single_threaded_blas` for
the calling thread's own small products.

The gemm function reaches the kernel as an argument (a ctypes function
object), not as a global, so the kernel stays in Numba's disk cache. Its
pointer parameters are declared as 64-bit integers (the same calling
convention as pointers on the 64-bit platforms NumPy ships OpenBLAS for),
so the kernel takes a table of block addresses. Without the OpenBLAS
library NumPy ships (another BLAS), every product is one plain `np.matmul`.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np
from numba import prange

from ._numba import kernel

# Fixed block sizes: multiples of every sgemm micro-tile, large enough that a
# block's call overhead (~2 us) is small against its work.
ROW_BLOCK = 256  # output rows per block of a 2-D product
COL_BLOCK = 1024  # most output columns per block of a few-row product
COL_ALIGN = 64  # column blocks start at multiples of this (sgemv/sgemm column-group widths)
BATCH_BLOCK = 8  # matrices per block of a batched product (attention)
CAUSAL_ROWS = 64  # rows per block of a causal attention product (the triangle is skipped per block)
MIN_WORK = 1 << 21  # products with fewer multiply-adds (M*K*N) run as one call...
MIN_WORK_SMALL = 1 << 19  # ...except few-row products, split from this size

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enum values
# one row of the block table: where and how to call gemm `count` times
# (the batch strides step the three addresses between calls, in bytes)
_FIELDS = ("trans_a", "trans_b", "M", "N", "K", "lda", "ldb", "ldc", "a", "b", "c",
           "count", "stride_a", "stride_b", "stride_c")


def _load_openblas():
    """(set_num_threads_local, {dtype: gemm}) from the OpenBLAS NumPy ships, or None."""
    here = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/libscipy_openblas*.so*", "../numpy.libs/libopenblas*.so*",
                    ".libs/libscipy_openblas*.so*", ".libs/libopenblas*.so*"):
        for path in sorted(glob.glob(os.path.join(here, pattern))):
            try:
                lib = ctypes.CDLL(path)
                set_local = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(("openblas_set_num_threads_local", lib))
            except (OSError, AttributeError):
                continue
            gemms = {}
            # ILP64 builds (NumPy 2's scipy-openblas) suffix their symbols and take 64-bit sizes
            for prefix, suffix, size_t in (("scipy_", "64_", ctypes.c_int64), ("", "64_", ctypes.c_int64),
                                           ("", "", ctypes.c_int)):
                try:
                    for dtype, letter, real in ((np.float32, "s", ctypes.c_float), (np.float64, "d", ctypes.c_double)):
                        proto = ctypes.CFUNCTYPE(
                            None, ctypes.c_int, ctypes.c_int, ctypes.c_int, size_t, size_t, size_t, real,
                            ctypes.c_int64, size_t, ctypes.c_int64, size_t, real, ctypes.c_int64, size_t)
                        gemms[np.dtype(dtype)] = proto((f"{prefix}cblas_{letter}gemm{suffix}", lib))
                except AttributeError:
                    gemms = {}
                    continue
                return set_local, gemms
    return None


_OPENBLAS = _load_openblas() if ctypes.sizeof(ctypes.c_void_p) == 8 else None
_set_local = _OPENBLAS[0] if _OPENBLAS else None


@kernel(parallel=True)
def _gemm_blocks(gemm, set_local, table, alpha, beta):
    """Every block of `table` (one row per block, fields `_FIELDS`): its
    `count` gemm calls, one block per parallel iteration, BLAS single-threaded."""
    for k in prange(table.shape[0]):
        set_local(1)
        row = table[k]
        for g in range(row[11]):
            gemm(_ROW_MAJOR, row[0], row[1], row[2], row[3], row[4], alpha,
                 row[8] + g * row[12], row[5], row[9] + g * row[13], row[6], beta,
                 row[10] + g * row[14], row[7])


class single_threaded_blas:
    """Context: BLAS calls from this thread use one thread (restored on exit)."""

    def __enter__(self):
        self.prev = _set_local(1) if _set_local is not None else None
        return self

    def __exit__(self, *exc):
        if self.prev is not None:
            _set_local(self.prev)


def _layout(x: np.ndarray):
    """(transpose flag, leading dimension) of a 2-D view for row-major gemm, or None."""
    r, c = x.shape
    s0, s1 = x.strides
    item = x.itemsize
    if s0 % item or s1 % item or s0 < 0 or s1 < 0:
        return None
    s0, s1 = s0 // item, s1 // item
    if (s1 == 1 or c == 1) and (r == 1 or s0 >= max(c, 1)):
        return _NO_TRANS, s0 if r > 1 else max(c, 1)
    if (s0 == 1 or r == 1) and (c == 1 or s1 >= max(r, 1)):
        return _TRANS, s1 if c > 1 else max(r, 1)
    return None


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) blocks of `size` covering range(n); the last may be shorter."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _table(a2, b2, o2, cuts, axis: int, count: int = 1, batch_strides=(0, 0, 0)) -> np.ndarray | None:
    """The block table of out = a @ b (2-D views: one matrix of a batch) cut
    along `axis` of the output (0 rows, 1 columns) at `cuts`; None if a view
    has no gemm layout."""
    la, lb, lo = _layout(a2), _layout(b2), _layout(o2)
    if la is None or lb is None or lo is None or lo[0] != _NO_TRANS:
        return None
    M, K = a2.shape
    N = b2.shape[1]
    pa, pb, po = (x.__array_interface__["data"][0] for x in (a2, b2, o2))
    rows = []
    for i, j in cuts:
        if axis == 0:  # rows i:j of a and of out
            rows.append((la[0], lb[0], j - i, N, K, la[1], lb[1], lo[1],
                         pa + i * a2.strides[0], pb, po + i * o2.strides[0], count) + batch_strides)
        else:  # columns i:j of b and of out
            rows.append((la[0], lb[0], M, j - i, K, la[1], lb[1], lo[1],
                         pa, pb + i * b2.strides[1], po + i * o2.strides[1], count) + batch_strides)
    return np.array(rows, dtype=np.int64)


def _run(table: np.ndarray, dtype) -> None:
    gemm = _OPENBLAS[1][np.dtype(dtype)]
    one = dtype.type(1.0)
    _gemm_blocks(gemm, _set_local, table, one, dtype.type(0.0))


# Block tables by dtype and (address, shape, strides) of a, b and out: a table is a pure
# function of these, and a training loop multiplies the same workspace views
# every step, so it is built once. Bounded: cleared when full.
_TABLES: dict = {}
_TABLES_MAX = 4096


# Causal attention products over [..., T, T] matrices (SPEC 10.2): only what the
# causal mask keeps is computed, in blocks of CAUSAL_ROWS output rows [r0, r1):
#   "scores":  out[r0:r1, :r1] = a[r0:r1] @ b[:, :r1]   (q k^T, dy v^T: columns past the
#              block's last row are masked; they are left unwritten)
#   "lower":   out[r0:r1] = a[r0:r1, :r1] @ b[:r1]        (p v, ds k: a is 0 past the diagonal)
#   "upper":   out[r0:r1] = a[r0:r1, r0:] @ b[r0:]        (p^T dy, ds^T q: a^T is 0 before it)
CAUSAL_KINDS = ("scores", "lower", "upper")


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray, causal: str | None = None) -> np.ndarray:
    """out = a @ b (2-D, or batched over leading axes of a/b/out); large
    products cut into fixed-size blocks of output rows or columns (2-D) or
    of the leading batch axis (batched), computed on Numba's threads.
    `causal` (a CAUSAL_KINDS name, batched products of T x T attention
    matrices only) skips the triangle the causal mask zeroes."""
    dtype = out.dtype
    if causal is not None:
        return _causal_into(a, b, out, causal)
    if _OPENBLAS is None or dtype not in _OPENBLAS[1] or a.dtype != dtype or b.dtype != dtype:
        return np.matmul(a, b, out=out)
    key = (dtype.char,) + tuple((x.__array_interface__["data"][0], x.shape, x.strides) for x in (a, b, out))
    table = _TABLES.get(key)
    if table is None:
        table = _plan(a, b, out)
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.clear()
        _TABLES[key] = table
    if table is False:  # not worth splitting, or no gemm layout
        return np.matmul(a, b, out=out)
    _run(table, dtype)
    return out


def _plan(a: np.ndarray, b: np.ndarray, out: np.ndarray):
    """The block table of out = a @ b, or False when it is one np.matmul call."""
    if 0 in a.shape or 0 in b.shape or 0 in out.shape:
        return False
    if out.ndim == 1 and a.ndim == 1 and b.ndim == 2:  # vector @ matrix: one row
        return _plan(a.reshape(1, -1), b, out.reshape(1, -1))
    table = None
    if out.ndim == 2 and a.ndim == 2 and b.ndim == 2:
        M, K = a.shape
        N = b.shape[1]
        if M * K * N < MIN_WORK_SMALL or (M > ROW_BLOCK and M * K * N < MIN_WORK):
            return False
        if M > ROW_BLOCK:  # blocks of output rows
            table = _table(a, b, out, _blocks(M, ROW_BLOCK), axis=0)
        else:  # a few rows: blocks of output columns
            # memory-bound matrix-vector work: wide blocks stream best, but at
            # least two so that a product worth splitting always runs in parallel
            width = min(COL_BLOCK, -(-N // (2 * COL_ALIGN)) * COL_ALIGN)
            table = _table(a, b, out, _blocks(N, width), axis=1)
    elif out.ndim > 2 and a.shape[:-2] == b.shape[:-2] == out.shape[:-2]:
        lead = out.shape[:-2]
        G = int(np.prod(lead))
        M, N = out.shape[-2:]
        K = a.shape[-1]
        if G <= BATCH_BLOCK or G * M * K * N < MIN_WORK:
            return False
        # one batch stride per operand: the leading axes must collapse into one
        # without a copy (a copy has its own data pointer)
        views = [x.reshape((G,) + x.shape[-2:]) for x in (a, b, out)]
        if all(v.__array_interface__["data"][0] == x.__array_interface__["data"][0]
               for v, x in zip(views, (a, b, out))):
            a3, b3, o3 = views
            parts = [_table(a3[i], b3[i], o3[i], [(0, M)], axis=0, count=j - i,
                            batch_strides=(a3.strides[0], b3.strides[0], o3.strides[0]))
                     for i, j in _blocks(G, BATCH_BLOCK)]
            if all(t is not None for t in parts):
                table = np.concatenate(parts)
    return False if table is None else table


def _causal_into(a, b, out, kind: str) -> np.ndarray:
    """matmul_into(a, b, out, causal=kind): see CAUSAL_KINDS."""
    if kind not in CAUSAL_KINDS:
        raise ValueError(f"causal must be one of {CAUSAL_KINDS}, got {kind!r}")
    T = out.shape[-2]
    square = {"scores": out, "lower": a, "upper": a}[kind]
    if out.ndim < 3 or square.shape[-1] != T or square.shape[-2] != T:
        raise ValueError(f"causal={kind!r} needs batched [..., T, T] attention matrices, got a {a.shape}, "
                         f"b {b.shape}, out {out.shape}")
    dtype = out.dtype
    if _OPENBLAS is None or dtype not in _OPENBLAS[1] or a.dtype != dtype or b.dtype != dtype:
        return _causal_numpy(a, b, out, kind)
    key = ("causal", kind, dtype.char) + tuple((x.__array_interface__["data"][0], x.shape, x.strides)
                                               for x in (a, b, out))
    table = _TABLES.get(key)
    if table is None:
        table = _plan_causal(a, b, out, kind)
        if len(_TABLES) >= _TABLES_MAX:
            _TABLES.clear()
        _TABLES[key] = table
    if table is False:
        return _causal_numpy(a, b, out, kind)
    _run(table, dtype)
    return out


def _causal_cuts(T: int, kind: str):
    """Per row block [r0, r1): (a's rows, a's columns, b's rows, b's columns, out's columns) as slices."""
    full = slice(None)
    for r0, r1 in _blocks(T, CAUSAL_ROWS):
        rows = slice(r0, r1)
        if kind == "scores":
            yield rows, full, full, slice(0, r1), slice(0, r1)
        elif kind == "lower":
            yield rows, slice(0, r1), slice(0, r1), full, full
        else:
            yield rows, slice(r0, None), slice(r0, None), full, full


def _causal_numpy(a, b, out, kind: str) -> np.ndarray:
    """The causal blocks with np.matmul (no OpenBLAS entry point, or views without a gemm layout)."""
    for rows, acols, brows, bcols, ocols in _causal_cuts(out.shape[-2], kind):
        np.matmul(a[..., rows, acols], b[..., brows, bcols], out=out[..., rows, ocols])
    return out


def _plan_causal(a, b, out, kind: str):
    """The block table of a causal product: per block of BATCH_BLOCK matrices and
    CAUSAL_ROWS rows, one gemm per matrix; False when the views have no gemm layout."""
    if not (a.shape[:-2] == b.shape[:-2] == out.shape[:-2]):
        return False
    lead = out.shape[:-2]
    G = int(np.prod(lead))
    views = [x.reshape((G,) + x.shape[-2:]) for x in (a, b, out)]
    if not all(v.__array_interface__["data"][0] == x.__array_interface__["data"][0] for v, x in zip(views, (a, b, out))):
        return False
    a3, b3, o3 = views
    strides = (a3.strides[0], b3.strides[0], o3.strides[0])
    parts = []
    for i, j in _blocks(G, BATCH_BLOCK):
        for rows, acols, brows, bcols, ocols in _causal_cuts(out.shape[-2], kind):
            part = _table(a3[i][rows, acols], b3[i][brows, bcols], o3[i][rows, ocols], [(0, rows.stop - rows.start)],
                          axis=0, count=j - i, batch_strides=strides)
            if part is None:
                return False
            parts.append(part)
    return np.concatenate(parts)


def warm(dtypes=(np.float32, np.float64)) -> None:
    """Compile `_gemm_blocks` for each dtype (for fast.warmup)."""
    if _OPENBLAS is None:
        return
    for dtype in dtypes:
        # the table holds raw addresses: a, b and out must stay alive while it runs
        a, b, out = (np.ones((2 * ROW_BLOCK, 64), dtype=dtype), np.ones((64, 64), dtype=dtype),
                     np.empty((2 * ROW_BLOCK, 64), dtype=dtype))
        _run(_plan(a, b, out), np.dtype(dtype))
