"""fast/layers.py's wrappers allocate what its kernels write (SPEC §fast).

Numba does not check bounds: a kernel handed a buffer smaller than it writes
corrupts memory instead of failing. The chunked column-sum kernels
(fast/_colsum.py, fast/_layernorm.py) write one partial row per chunk of
ROW_CHUNK rows (partial [n_chunks, F]): the wrappers must allocate
n_row_chunks(N) rows of the full width, whatever the ratio of rows to columns.
"""
from __future__ import annotations

import numpy as np


def test_chunk_kernels_get_a_partial_row_per_chunk_of_rows(monkeypatch):
    """linear_backward's bias gradient and layernorm_backward's dgamma and dbeta:
    on 3 chunks and 5 rows of 3 columns (more chunks than columns, a last chunk
    part full), each partial-sums buffer handed to a kernel is
    [n_row_chunks(N), F], and the sums are the column sums."""
    import fast
    import fast.layers as fl
    from fast._colsum import ROW_CHUNK, n_row_chunks

    seen = []
    colsum, ln_grads = fl.colsum_into, fl.layernorm_backward_grads_into

    def checked_colsum(d, rows, partial, out):
        seen.append(("colsum_into partial", partial.shape, (n_row_chunks(d.shape[0]), d.shape[1])))
        return colsum(d, rows, partial, out)

    def checked_ln_grads(**kw):
        for name in ("pg", "pb", "ps"):
            seen.append((f"layernorm {name}", kw[name].shape, (n_row_chunks(kw["x"].shape[0]), kw["x"].shape[1])))
        return ln_grads(**kw)

    monkeypatch.setattr(fl, "colsum_into", checked_colsum)
    monkeypatch.setattr(fl, "layernorm_backward_grads_into", checked_ln_grads)
    rng = np.random.default_rng(2)
    N, F = 3 * ROW_CHUNK + 5, 3
    small = lambda *s: rng.integers(-3, 4, s).astype(np.float32)  # noqa: E731  (exact sums)
    x, w, b, dout = small(N, F), small(F, F), small(F), small(N, F)
    _, cache = fast.linear_forward(x, w, b)
    _, _, db = fast.linear_backward(dout, cache)
    _, cache = fast.layernorm_forward(x, np.ones(F, np.float32), np.zeros(F, np.float32))
    _, _, dbeta = fast.layernorm_backward(dout, cache)
    assert [name for name, _, _ in seen] == ["colsum_into partial", "layernorm pg", "layernorm pb", "layernorm ps"]
    for name, got, want in seen:
        assert got == want, f"{name}: shape {got}, the kernel writes {want} (N {N}, F {F})"
    assert np.array_equal(db, dout.sum(0)) and np.array_equal(dbeta, dout.sum(0))
