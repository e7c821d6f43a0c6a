"""Matmuls for the training step: BLAS gemm on Numba's threads, in launches
cut by shape (SPEC §parallel-split).

A launch is a set of independent products (`Product`), or chains of products
summed into one output (`Chain`: out = a1 @ b1 + a2 @ b2 + ..., gemm with
beta = 1 after the first), run by one Numba parallel region (`_gemm_lanes`)
that calls OpenBLAS's C entry point directly. The region has `LANES` (2)
parallel iterations, the lanes; each lane runs its list of gemm calls in
order, every call a single-threaded sgemm (dgemm for float64) whichever
thread runs it. The lanes are planned from the shapes alone: the products
are dealt to the lanes largest first (each to the lane with the least work
so far), and while the busiest lane has more than `SLACK` above the mean,
the largest product is cut in two (a 2-D product or chain along its longer
output axis, at a multiple of `CUT_ALIGN`; a batched one between matrices).
So two products of equal work (a weight gradient and its input gradient)
run whole, one per lane, and a lone product in two halves. The cuts, hence
the bytes, do not depend on any thread setting (tests/fast_internals/test_fast_numba.py checks it across
NUMBA_NUM_THREADS and OPENBLAS_NUM_THREADS): one thread runs both lanes, two
threads one each. Few, large calls: at one thread a product runs as one or
two sgemm calls, near the rate of a single call (blocks of 256 rows cost
5-8% against it), and two threads have equal work.

Causal attention products (`causal=`, CAUSAL_KINDS) skip the triangle the
mask zeroes, in row blocks of CAUSAL_ROWS and matrix blocks of BATCH_BLOCK.

OpenBLAS is told to use one thread per calling thread
(`openblas_set_num_threads_local`, OpenBLAS >= 0.3.27, a per-thread setting
that leaves NumPy's global one alone), inside the region for the workers and
by `single_threaded_blas` for the calling thread's own small products.

The gemm function reaches the kernel as an argument (a ctypes function
object), not as a global, so the kernel stays in Numba's disk cache. Its
pointer parameters are declared as 64-bit integers (the same calling
convention as pointers on the 64-bit platforms NumPy ships OpenBLAS for),
so the kernel takes a table of calls. Without the OpenBLAS library NumPy
ships (another BLAS), every product is a plain `np.matmul`.
"""
from __future__ import annotations

import ctypes
import glob
import os
from typing import NamedTuple

import numpy as np
from numba import prange

from ._numba import kernel

LANES = 2  # parallel iterations of a launch: this machine's 2 cores (a constant, not the thread count)
SLACK = 0.05  # a lane may carry this much more than the mean work before a product is cut
CUT_ALIGN = 64  # 2-D products are cut at multiples of this many rows or columns
MAX_PIECES = 16  # at most this many pieces per launch
BATCH_BLOCK = 8  # matrices per block of a causal attention product
CAUSAL_ROWS = 64  # rows per block of a causal attention product (the triangle is skipped per block)
MIN_WORK = 1 << 20  # launches with fewer multiply-adds (M*K*N summed) run as np.matmul calls
MIN_CUT = 1 << 20  # products with fewer multiply-adds are never cut

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enum values
# one row of a launch's call table: where and how to call gemm `count` times
# (the batch strides step the three addresses between calls, in bytes), and
# beta (0: out = a @ b, 1: out += a @ b)
_FIELDS = ("trans_a", "trans_b", "M", "N", "K", "lda", "ldb", "ldc", "a", "b", "c",
           "count", "stride_a", "stride_b", "stride_c", "beta")
_M, _N, _K, _COUNT = 2, 3, 4, 11


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
def _gemm_lanes(gemm, set_local, calls, starts, alpha, zero):
    """Each lane k (one parallel iteration) runs calls[starts[k]:starts[k + 1]]
    in order (fields `_FIELDS`; each row `count` gemm calls), BLAS single-threaded."""
    for k in prange(starts.shape[0] - 1):
        set_local(1)
        for c in range(starts[k], starts[k + 1]):
            row = calls[c]
            beta = alpha if row[15] else zero
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


def _ptr(x: np.ndarray) -> int:
    return x.__array_interface__["data"][0]


def _call(a2, b2, o2, beta: int, count: int = 1, batch_strides=(0, 0, 0)):
    """One call row for out = a @ b (+ out if beta) on 2-D views (one matrix of a
    batch: `count` matrices `batch_strides` bytes apart), or None without a gemm layout."""
    la, lb, lo = _layout(a2), _layout(b2), _layout(o2)
    if la is None or lb is None or lo is None or lo[0] != _NO_TRANS:
        return None
    M, K = a2.shape
    N = b2.shape[1]
    return (la[0], lb[0], M, N, K, la[1], lb[1], lo[1], _ptr(a2), _ptr(b2), _ptr(o2), count) + \
        tuple(batch_strides) + (beta,)


def _work(calls) -> int:
    return sum(c[_M] * c[_N] * c[_K] * c[_COUNT] for c in calls)


class Product(NamedTuple):
    """out = a @ b (2-D, or batched over the leading axes); `causal` a CAUSAL_KINDS name or None."""
    a: np.ndarray
    b: np.ndarray
    out: np.ndarray
    causal: str | None = None


class Chain(NamedTuple):
    """out = a1 @ b1 + a2 @ b2 + ... (2-D): the first product writes out, the rest add to it."""
    out: np.ndarray
    pairs: tuple  # ((a1, b1), (a2, b2), ...)


class _Job:
    """Part of a launch that one lane runs whole: its calls, their work, and how to cut it in two."""

    def __init__(self, calls, order, cut=None):
        self.calls, self.order, self.work, self._cut = calls, order, _work(calls), cut

    def cut(self):
        return None if self._cut is None or self.work < MIN_CUT else self._cut()


def _chain_job(pairs, out, rows, cols, order):
    """The calls of out[rows, cols] = sum of a[rows] @ b[:, cols] (2-D), cut along
    the longer of the two ranges; None without a gemm layout."""
    (r0, r1), (c0, c1) = rows, cols
    calls = [_call(a[r0:r1], b[:, c0:c1], out[r0:r1, c0:c1], int(j > 0)) for j, (a, b) in enumerate(pairs)]
    if any(c is None for c in calls):
        return None

    def cut():
        n, lo = (r1 - r0, r0) if r1 - r0 >= c1 - c0 else (c1 - c0, c0)
        half = -(-n // 2)
        if n >= 2 * CUT_ALIGN:
            half = -(-half // CUT_ALIGN) * CUT_ALIGN
        if half >= n:
            return None
        mid = lo + half
        if r1 - r0 >= c1 - c0:
            return (_chain_job(pairs, out, (r0, mid), cols, order + (0,)),
                    _chain_job(pairs, out, (mid, r1), cols, order + (1,)))
        return (_chain_job(pairs, out, rows, (c0, mid), order + (0,)),
                _chain_job(pairs, out, rows, (mid, c1), order + (1,)))

    return _Job(calls, order, cut)


def _list_job(calls, order):
    """Independent calls (matrices of a batch), cut between them at half the work
    (a call row of several matrices is split between its matrices)."""
    def cut():
        total, acc = _work(calls), 0
        for i, c in enumerate(calls):
            w = _work([c])
            if 2 * (acc + w) >= total:
                per = w // c[_COUNT]
                k = min(c[_COUNT], max(0, round((total / 2 - acc) / per)))
                first, second = list(calls[:i]), list(calls[i + 1:])
                if k > 0:
                    first.append(c[:11] + (k,) + c[12:])
                if k < c[_COUNT]:
                    second.insert(0, c[:8] + (c[8] + k * c[12], c[9] + k * c[13], c[10] + k * c[14],
                                              c[_COUNT] - k) + c[12:])
                if not first or not second:
                    return None
                return _list_job(first, order + (0,)), _list_job(second, order + (1,))
            acc += w
        return None

    return _Job(calls, order, cut if len(calls) > 1 or calls[0][_COUNT] > 1 else None)


def _batch3(x: np.ndarray, G: int):
    """x viewed as [G, r, c] with one batch stride, or None (the leading axes do not collapse)."""
    v = x.reshape((G,) + x.shape[-2:])
    return v if _ptr(v) == _ptr(x) else None


def _batched_job(p: Product, order):
    """The job of a batched (and possibly causal) product, or None without a gemm layout."""
    a, b, out = p.a, p.b, p.out
    if not (a.shape[:-2] == b.shape[:-2] == out.shape[:-2]):
        return None
    G = int(np.prod(out.shape[:-2]))
    views = [_batch3(x, G) for x in (a, b, out)]
    if any(v is None for v in views):
        return None
    a3, b3, o3 = views
    strides = (a3.strides[0], b3.strides[0], o3.strides[0])
    T = out.shape[-2]
    cuts = [(slice(None),) * 5] if p.causal is None else list(_causal_cuts(T, p.causal))
    calls = []
    for i, j in _blocks(G, BATCH_BLOCK if p.causal is not None else G):
        for rows, acols, brows, bcols, ocols in cuts:
            c = _call(a3[i][rows, acols], b3[i][brows, bcols], o3[i][rows, ocols], 0, j - i, strides)
            if c is None:
                return None
            calls.append(c)
    return _list_job(calls, order)


def _jobs(products, order0: int = 0):
    """One job per Product or Chain, or None when some view has no gemm layout."""
    jobs = []
    for n, p in enumerate(products):
        order = (order0 + n,)
        if isinstance(p, Chain):
            M, N = p.out.shape
            job = _chain_job(p.pairs, p.out, (0, M), (0, N), order)
        elif p.out.ndim == 2 and p.a.ndim == 2 and p.b.ndim == 2 and p.causal is None:
            M, N = p.out.shape
            job = _chain_job(((p.a, p.b),), p.out, (0, M), (0, N), order)
        else:
            job = _batched_job(p, order)
        if job is None:
            return None
        jobs.append(job)
    return jobs


def _deal(jobs) -> list[list[_Job]]:
    """The jobs dealt to LANES lanes, largest first to the lane with the least work;
    while the busiest lane is more than SLACK above the mean, the largest job that
    can be cut is cut in two. Depends on the shapes only."""
    jobs = list(jobs)
    total = sum(j.work for j in jobs)
    while True:
        lanes, loads = [[] for _ in range(LANES)], [0] * LANES
        for job in sorted(jobs, key=lambda j: (-j.work, j.order)):
            k = loads.index(min(loads))
            lanes[k].append(job)
            loads[k] += job.work
        if max(loads) <= (1 + SLACK) * total / LANES or len(jobs) >= MAX_PIECES:
            break
        for job in sorted(jobs, key=lambda j: (-j.work, j.order)):
            halves = job.cut()
            if halves is not None and None not in halves:
                jobs.remove(job)
                jobs.extend(halves)
                break
        else:
            break
    return [sorted(lane, key=lambda j: j.order) for lane in lanes]


class _Plan(NamedTuple):
    calls: np.ndarray  # int64 [n, len(_FIELDS)]
    starts: np.ndarray  # int64 [LANES + 1]: lane k runs calls[starts[k]:starts[k + 1]]
    dtype: np.dtype


def _plan(products, dtype):
    """The launch of `products` (Product and Chain), or None: no OpenBLAS for
    this dtype, too little work to launch, or a view without a gemm layout."""
    if _OPENBLAS is None or dtype not in _OPENBLAS[1]:
        return None
    for p in products:
        arrays = (p.out,) + tuple(x for pair in p.pairs for x in pair) if isinstance(p, Chain) else p[:3]
        if any(x.dtype != dtype or 0 in x.shape for x in arrays):
            return None
    jobs = _jobs(products)
    if jobs is None or sum(j.work for j in jobs) < MIN_WORK:
        return None
    lanes = _deal(jobs)
    rows = [c for lane in lanes for job in lane for c in job.calls]
    starts = np.cumsum([0] + [sum(len(job.calls) for job in lane) for lane in lanes]).astype(np.int64)
    return _Plan(np.array(rows, dtype=np.int64).reshape(-1, len(_FIELDS)), starts, np.dtype(dtype))


def _run(plan: _Plan) -> None:
    gemm = _OPENBLAS[1][plan.dtype]
    _gemm_lanes(gemm, _set_local, plan.calls, plan.starts, plan.dtype.type(1.0), plan.dtype.type(0.0))


def _numpy(products) -> None:
    """The launch with np.matmul (no OpenBLAS entry point, small work, or views without a gemm layout)."""
    for p in products:
        if isinstance(p, Chain):
            (a, b), *rest = p.pairs
            np.matmul(a, b, out=p.out)
            for a, b in rest:
                np.add(p.out, a @ b, out=p.out)
        elif p.causal is not None:
            _causal_numpy(p.a, p.b, p.out, p.causal)
        else:
            np.matmul(p.a, p.b, out=p.out)


# Launch plans by the address, shape and strides of every operand (or by the
# caller's key, see matmuls_into): a plan is a pure function of these, and a
# training loop multiplies the same workspace views every step, so it is
# built once. Bounded: cleared when full.
_PLANS: dict = {}
_PLANS_MAX = 4096
_NUMPY = "numpy"  # a cached "run it with np.matmul" decision


def _address_key(products) -> tuple:
    key = []
    for p in products:
        arrays = (p.out,) + tuple(x for pair in p.pairs for x in pair) if isinstance(p, Chain) else p[:3]
        key.append((type(p).__name__, getattr(p, "causal", None), arrays[0].dtype.char)
                   + tuple((_ptr(x), x.shape, x.strides) for x in arrays))
    return tuple(key)


def matmuls_into(products, plans: dict | None = None, key=None) -> None:
    """Run `products` (Product and Chain; independent of each other: no output
    is another's input) in one launch. `plans` and `key`: where to keep the
    launch's plan and under which key, for a caller whose key determines the
    operands' addresses, shapes and strides (the model's workspace: a key per
    call site); without them the plan is kept by those addresses, shapes and strides."""
    for p in products:
        if not isinstance(p, Chain) and p.causal is not None:
            _check_causal(p)
    if plans is None or key is None:
        plans, key = _PLANS, _address_key(products)
    plan = plans.get(key)
    if plan is None:
        plan = _plan(products, (products[0].out).dtype) or _NUMPY
        if plans is _PLANS and len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        plans[key] = plan
    if plan is _NUMPY:
        _numpy(products)
    else:
        _run(plan)


# Causal attention products over [..., T, T] matrices (SPEC §parallel-split): only what the
# causal mask keeps is computed, in blocks of CAUSAL_ROWS output rows [r0, r1):
#   "scores":  out[r0:r1, :r1] = a[r0:r1] @ b[:, :r1]   (q k^T, dy v^T: columns past the
#              block's last row are masked; they are left unwritten)
#   "lower":   out[r0:r1] = a[r0:r1, :r1] @ b[:r1]        (p v, ds k: a is 0 past the diagonal)
#   "upper":   out[r0:r1] = a[r0:r1, r0:] @ b[r0:]        (p^T dy, ds^T q: a^T is 0 before it)
CAUSAL_KINDS = ("scores", "lower", "upper")


def _check_causal(p: Product) -> None:
    if p.causal not in CAUSAL_KINDS:
        raise ValueError(f"causal must be one of {CAUSAL_KINDS}, got {p.causal!r}")
    T = p.out.shape[-2]
    square = {"scores": p.out, "lower": p.a, "upper": p.a}[p.causal]
    if p.out.ndim < 3 or square.shape[-1] != T or square.shape[-2] != T:
        raise ValueError(f"causal={p.causal!r} needs batched [..., T, T] attention matrices, got a {p.a.shape}, "
                         f"b {p.b.shape}, out {p.out.shape}")


def matmul_into(a: np.ndarray, b: np.ndarray, out: np.ndarray, causal: str | None = None) -> np.ndarray:
    """out = a @ b (2-D, or batched over leading axes of a/b/out), one launch
    (see the module docstring). `causal` (a CAUSAL_KINDS name, batched
    products of T x T attention matrices only) skips the triangle the causal
    mask zeroes."""
    matmuls_into((Product(a, b, out, causal),))
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


def warm(dtypes=(np.float32, np.float64)) -> None:
    """Compile `_gemm_lanes` for each dtype (for fast.warmup)."""
    if _OPENBLAS is None:
        return
    for dtype in dtypes:
        # the plan holds raw addresses: a, b and out must stay alive while it runs
        a, b, out = (np.ones((512, 64), dtype=dtype), np.ones((64, 64), dtype=dtype),
                     np.empty((512, 64), dtype=dtype))
        _run(_plan((Product(a, b, out),), np.dtype(dtype)))
