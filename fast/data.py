"""Batches for training (SPEC §data).

Twin of `reference/data.py`. The split is two views and the sequential
loader walks them: nothing to optimise, so `train_val_split` and
`TextDataLoader` are the reference's. `random_batch`, called every training
step, gathers its B windows with one parallel kernel (one window per
iteration) into int64 arrays; the offsets are the reference's draw from
`default_rng([seed, step])`, so the batches are identical.

Dimension legend: n tokens, B batch size, T sequence length.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from reference.data import TextDataLoader, batch_offsets, train_val_split  # noqa: F401

from ._numba import kernel


@kernel(parallel=True)
def _gather_windows_into(tokens, offsets, x, y):
    """x[b] = tokens[o_b : o_b + T], y[b] = tokens[o_b + 1 : o_b + T + 1].
    Twin: reference.data._windows."""
    B, T = x.shape
    for b in prange(B):
        o = offsets[b]
        for t in range(T):
            x[b, t] = tokens[o + t]
            y[b, t] = tokens[o + t + 1]


def random_batch(tokens, batch_size, seq_len, seed, step):
    """(x, y) int64 [B, T] at offsets drawn for (seed, step) (SPEC §data),
    as reference.random_batch."""
    tokens, offsets = batch_offsets(tokens, batch_size, seq_len, seed, step)  # (n,), (B,)
    x = np.empty((offsets.size, int(seq_len)), dtype=np.int64)
    y = np.empty((offsets.size, int(seq_len)), dtype=np.int64)
    _gather_windows_into(np.ascontiguousarray(tokens), offsets, x, y)
    return x, y
