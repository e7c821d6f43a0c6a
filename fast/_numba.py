"""The one place that decides how `fast` kernels are compiled (SPEC §fast).

Every kernel in `fast/` is decorated with `kernel(...)` from here, so the
compilation policy is one line to read and one line to change:

- `cache=True` always: compiled machine code is stored next to the source
  (or in NUMBA_CACHE_DIR) and reused by later processes. Numba invalidates a
  kernel's cache entry when the kernel's own file changes, but not when a
  kernel it calls (compiled into it) changes in another file: that process
  would load stale machine code. So every kernel's cache key here also
  holds a digest of the source files of the kernels it calls, transitively
  (`_CalleeAwareCache`), and kernels may call kernels of other files (the
  GELU formula of fast/_gelu.py, the chunk sums of fast/_colsum.py).
  Constants a kernel would read from another module's globals are not
  covered by that digest: they come in as arguments.
- `fastmath` is OFF by default. Kernels whose results must be bitwise equal to
  `reference` (AdamW, clipping, tokenizer, sampling) never get it: with it
  LLVM may contract `a*b + c` into one FMA, or reorder sums, and the last bit
  changes.
- `tolerant=True` sets `TOLERANT_FASTMATH`, used only by kernels the
  conformance suite checks to a tolerance (layers, loss: SPEC §tolerances). It
  allows reassociation (vectorised reductions), contraction into FMA and
  reciprocal approximations. Not `nsz` (signed-zero freedom): with it and
  `reassoc`, Numba's parallel kernels ran differently rounded code when
  freshly compiled than when loaded from the disk cache, so the process
  that compiled them and later ones disagreed in the last bits
  (tests/fast_internals/test_fast_numba.py checks both give the same bytes). It never includes
  `nnan`/`ninf`: -inf is a real value in the causal mask and a NaN loss must
  stay NaN so training can stop with a clear message. `afn` (approximate
  libm functions) is left out too: exp and tanh keep full accuracy.
- Parallel kernels split work by output ownership or by fixed-size chunks,
  never by `numba.get_num_threads()`, and never use `prange` reductions
  (whose combination order follows the thread split). So results do not
  depend on the thread count; conformance/test_determinism.py checks it.
"""
from __future__ import annotations

import hashlib
import os
from types import ModuleType

# How Numba's OpenMP workers wait between parallel regions. A sleeping
# worker costs a wake-up at every launch: ~55 us on this VM, against ~2 us
# for one still spinning, and generation launches ~25 regions per token
# (medium: 200 -> 290 tokens/s from this alone), a tiny training step ~130.
# Spinning for long (libgomp's default, ~3 ms) keeps a core busy well after
# the last kernel. So workers spin for GOMP_SPINCOUNT = 3000 pause loops
# (~80-100 us measured here: the gaps between consecutive kernels) and then
# sleep. Every matmul runs on these same workers (fast/_blas.py), so no other
# thread pool competes with them for the cores. Only a default: an explicit
# OMP_WAIT_POLICY or GOMP_SPINCOUNT wins. It must be set before Numba's
# OpenMP runtime loads (at the first parallel launch).
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "3000"

import numba  # noqa: E402
from numba.core.caching import FunctionCache  # noqa: E402
from numba.core.registry import CPUDispatcher  # noqa: E402

# Flags LLVM may use in kernels checked to a tolerance (never nnan / ninf / afn, nor nsz: above).
TOLERANT_FASTMATH = frozenset({"contract", "reassoc", "arcp"})

# Fixed chunk length for elementwise and reduction kernels over flat buffers:
# chunk boundaries (hence float64 partial sums) depend only on the data size.
CHUNK = 1 << 15


def callee_files(py_func) -> list[str]:
    """The source files of every Numba kernel `py_func` calls, transitively
    (its own file first): the globals its code names (or names as
    `module.attribute`) that are Numba dispatchers, and theirs."""
    files, seen, todo = [], set(), [py_func]
    while todo:
        func = todo.pop()
        if func in seen:
            continue
        seen.add(func)
        if func.__code__.co_filename not in files:
            files.append(func.__code__.co_filename)
        names = _code_names(func.__code__)
        for name in names:
            value = func.__globals__.get(name)
            candidates = [value]
            if isinstance(value, ModuleType):  # module.attribute
                candidates = [getattr(value, attr, None) for attr in names]
            todo.extend(c.py_func for c in candidates if isinstance(c, CPUDispatcher))
    return files


def _code_names(code) -> set[str]:
    """Global and attribute names used by `code` and the code objects nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _code_names(const)
    return names


def callee_digest(py_func) -> str:
    """SHA-256 of the sources of the files `py_func`'s callees live in (not its own
    file: Numba's cache checks that one by its timestamp), in sorted order: the walk
    follows sets of names, whose order changes with the process's hash seed, and a
    digest that changed from one process to the next would make every start a miss."""
    digest = hashlib.sha256()
    for path in sorted(callee_files(py_func)[1:]):
        with open(path, "rb") as f:
            source = f.read()
        digest.update(len(source).to_bytes(8, "little") + source)
    return digest.hexdigest()


class _CalleeAwareCache(FunctionCache):
    """Numba's on-disk cache, with the contents of the callees' source files in
    the index key: an entry compiled against an older version of any of them
    is a miss (compiled again), not stale code."""

    _callees = None

    def _index_key(self, sig, codegen):
        if self._callees is None:
            self._callees = callee_digest(self._py_func)
        return super()._index_key(sig, codegen) + (self._callees,)


def kernel(fn=None, *, parallel: bool = False, tolerant: bool = False, inline: bool = False):
    """`numba.njit` with the project policy: cached, fastmath off unless
    `tolerant` (then TOLERANT_FASTMATH), `parallel` for kernels using prange,
    `inline` for small helpers that must be inlined into their callers' loops
    (Numba IR inlining, so the loop still vectorises)."""
    options = dict(cache=True, parallel=parallel,
                   fastmath=set(TOLERANT_FASTMATH) if tolerant else False)
    if inline:
        options["inline"] = "always"

    def wrap(f):
        dispatcher = numba.njit(**options)(f)
        dispatcher._cache = _CalleeAwareCache(f)  # what enable_caching() set, with the callees' digest
        return dispatcher

    return wrap(fn) if fn is not None else wrap


def num_threads() -> int:
    """Threads Numba uses now (for reports; never used to split work)."""
    return int(numba.get_num_threads())
