"""Column sums (bias gradients) and the bias add they differentiate (SPEC §model and §parallel-split).

Parallel split (never by thread count): fixed chunks of `ROW_CHUNK` rows
fill their own partial sums, which are then added in chunk order, serially,
after the parallel loop (one parallel region). The backward's other column
sums are taken in the pass that writes their input (fast/_layernorm.py,
fast/_gelu.py, fast/_attention.py), which owns chunks of rows too and ends
with `chunk_sums_into`.

Dimension legend: N rows (B*T), F = width of a row (C, 4C or V).
"""
from __future__ import annotations

from numba import prange

from ._numba import kernel

ROW_CHUNK = 64  # rows per parallel iteration of the column-sum kernels (fixed: thread-independent)


def n_row_chunks(N: int) -> int:
    """The number of ROW_CHUNK chunks of N rows (at least one): the rows of a partial-sums buffer."""
    return max(1, -(-N // ROW_CHUNK))


@kernel(tolerant=True, inline=True)
def chunk_sums_into(partial, n_chunks, out):
    """out[c] = partial[0, c] + partial[1, c] + ... in chunk order (serial; the
    tail of the column-sum kernels, after their parallel loop over chunks: a
    second parallel loop over the columns cost a second parallel region, whose
    start and join outweighed these n_chunks x F adds). Twin: the reference
    sums each column in one call (`.sum(axis=0)`)."""
    F = out.shape[0]
    for c in range(F):
        out[c] = partial[0, c]
    for ch in range(1, n_chunks):
        p = partial[ch]
        for c in range(F):
            out[c] += p[c]


@kernel(parallel=True, tolerant=True)
def colsum_into(d, rows, partial, out):
    """out[c] = sum over rows of d[r, c] (bias gradients): fixed chunks of
    `rows` rows fill their own partial row (partial [n_chunks, F]), then the
    partials are summed in chunk order, serially (one parallel region).
    Twin: `db = dout.sum(...)` in reference linear_backward."""
    N, F = d.shape
    n_chunks = (N + rows - 1) // rows
    for ch in prange(n_chunks):
        p = partial[ch]
        for c in range(F):
            p[c] = 0.0
        for r in range(ch * rows, min(ch * rows + rows, N)):
            for c in range(F):
                p[c] += d[r, c]
    chunk_sums_into(partial, n_chunks, out)


@kernel(parallel=True, tolerant=True)
def add_bias_into(a, bias):
    """a += bias, per row (after an sgemm). Twin: `out += b` in reference linear_forward."""
    N, F = a.shape
    for r in prange(N):
        for c in range(F):
            a[r, c] += bias[c]
