"""The one place that decides how `fast` kernels are compiled (SPEC section 10).

Every kernel in `fast/` is decorated with `kernel(...)` from here, so the
compilation policy is one line to read and one line to change:

- `cache=True` always: compiled machine code is stored next to the source
  (or in NUMBA_CACHE_DIR) and reused by later processes. Numba invalidates the
  cache per source file, so each kernel keeps its callees in its own file.
- `fastmath` is OFF by default. Kernels whose results must be bitwise equal to
  `reference` (AdamW, clipping, tokenizer, sampling) never get it: with it
  LLVM may contract `a*b + c` into one FMA, or reorder sums, and the last bit
  changes.
- `tolerant=True` sets `TOLERANT_FASTMATH`, used only by kernels the
  conformance suite checks to a tolerance (layers, loss: SPEC section 8). It
  allows reassociation (vectorised reductions), contraction into FMA and
  reciprocal approximations. Not `nsz` (signed-zero freedom): with it and
  `reassoc`, Numba's parallel kernels ran differently rounded code when
  freshly compiled than when loaded from the disk cache, so the process
  that compiled them and later ones disagreed in the last bits (test_fast
  checks both give the same bytes). It never includes
  `nnan`/`ninf`: -inf is a real value in the causal mask and a NaN loss must
  stay NaN so training can stop with a clear message. `afn` (approximate
  libm functions) is left out too: exp and tanh keep full accuracy.
- Parallel kernels split work by output ownership or by fixed-size chunks,
  never by `numba.get_num_threads()`, and never use `prange` reductions
  (whose combination order follows the thread split). So results do not
  depend on the thread count; `conformance/test_fast.py` checks it.
"""
from __future__ import annotations

import os

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

# Flags LLVM may use in kernels checked to a tolerance (never nnan / ninf / afn, nor nsz: above).
TOLERANT_FASTMATH = frozenset({"contract", "reassoc", "arcp"})

# Fixed chunk length for elementwise and reduction kernels over flat buffers:
# chunk boundaries (hence float64 partial sums) depend only on the data size.
CHUNK = 1 << 15


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
        return numba.njit(**options)(f)

    return wrap(fn) if fn is not None else wrap


def num_threads() -> int:
    """Threads Numba uses now (for reports; never used to split work)."""
    return int(numba.get_num_threads())
