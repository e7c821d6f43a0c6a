"""Embedding kernels: the gather of token and position rows and its
scatter-add backward (SPEC §model and §parallel-split).

Parallel split: the forward one row per prange iteration; the backward one
vocabulary row per iteration (its rows found by a counting sort, summed in
row order), then one position row: race-free by ownership.

Dimension legend: N rows (B*T), T time, C n_embd, V vocab.
"""
from __future__ import annotations

from numba import prange

from ._numba import kernel


@kernel(parallel=True, tolerant=True)
def embedding_forward_into(tokens, wte, wpe, T, out):
    """out[r] = wte[tokens[r]] + wpe[r % T]. Twin: reference embedding_forward."""
    N, C = out.shape
    for r in prange(N):
        tok = tokens[r]
        t = r % T
        for c in range(C):
            out[r, c] = wte[tok, c] + wpe[t, c]


@kernel
def bucket_rows(tokens, V, starts, rows):
    """Counting sort of the rows by token id: token v's rows, in increasing
    order, are rows[starts[v]:starts[v+1]]. Twin: the grouping by token that
    `np.add.at` does in reference embedding_backward."""
    starts[:] = 0
    for r in range(tokens.shape[0]):
        starts[tokens[r] + 1] += 1
    for v in range(V):
        starts[v + 1] += starts[v]
    fill = starts[:V].copy()
    for r in range(tokens.shape[0]):
        v = tokens[r]
        rows[fill[v]] = r
        fill[v] += 1


@kernel(parallel=True, tolerant=True)
def embedding_backward_into(dout, starts, rows, T, dwte, dwpe):
    """dwte[v] = sum of dout over v's rows (owned by v); dwpe[t] = sum over b
    of dout[b*T + t] (owned by t). Twin: reference embedding_backward."""
    N, C = dout.shape
    V = dwte.shape[0]
    for v in prange(V):
        for c in range(C):
            dwte[v, c] = 0.0
        for s in range(starts[v], starts[v + 1]):
            r = rows[s]
            for c in range(C):
                dwte[v, c] += dout[r, c]
    B = N // T
    for t in prange(dwpe.shape[0]):
        for c in range(C):
            dwpe[t, c] = 0.0
        if t < T:
            for b in range(B):
                for c in range(C):
                    dwpe[t, c] += dout[b * T + t, c]
