"""fast/_blas.py's launch plans against the rules SPEC §parallel-split states.

A plan is a table of gemm calls dealt to two lanes. Read back element by
element (each call row's output addresses), it must split the work by output
ownership: every element a product writes is written by exactly one call,
and every element of a chain by its pairs in order, all in one lane (two
lanes writing one element would race). Cuts split output rows or columns
only, a 2-D product's longer axis at a multiple of 64, a batched product
between matrices; a lone product runs in two halves, one per lane.

The plans are computed, not run: the tests hold wherever NumPy ships OpenBLAS
(elsewhere fast plans nothing and multiplies with np.matmul).
"""
from __future__ import annotations

import numpy as np
import pytest

fb = pytest.importorskip("fast._blas")

if fb._OPENBLAS is None:
    pytest.skip("no OpenBLAS entry point: every product is np.matmul, nothing is planned", allow_module_level=True)

FIELD = {name: i for i, name in enumerate(fb._FIELDS)}


def _writes(plan, out: np.ndarray):
    """Per call whose output starts in `out` (contiguous): (lane, beta, flat indices of
    `out` it writes, (M, N)), in each lane's order."""
    item = out.itemsize
    base = out.__array_interface__["data"][0]
    calls = []
    for lane in range(len(plan.starts) - 1):
        for row in plan.calls[plan.starts[lane]:plan.starts[lane + 1]]:
            if not base <= int(row[FIELD["c"]]) < base + out.nbytes:
                continue  # another product's call
            M, N, ldc = (int(row[FIELD[k]]) for k in ("M", "N", "ldc"))
            offsets = []
            for g in range(int(row[FIELD["count"]])):
                start = (int(row[FIELD["c"]]) - base + g * int(row[FIELD["stride_c"]])) // item
                offsets.append(start + (np.arange(M)[:, None] * ldc + np.arange(N)[None, :]).ravel())
            calls.append((lane, int(row[FIELD["beta"]]), np.concatenate(offsets), (M, N)))
    return calls


def _assert_owned(plan, out: np.ndarray, terms: int = 1, mask: np.ndarray | None = None):
    """Every element of `out` (or of `mask`'s True entries) is written by `terms` calls of
    one lane, the first with beta 0 (the rest add); no call writes outside `out`."""
    count = np.zeros(out.size, dtype=np.int64)
    lane_of = np.full(out.size, -1)
    first_beta = np.full(out.size, -1)
    for lane, beta, idx, _ in _writes(plan, out):
        assert idx.min() >= 0 and idx.max() < out.size, "a call writes outside the output"
        clash = (lane_of[idx] != -1) & (lane_of[idx] != lane)
        assert not clash.any(), f"{int(clash.sum())} elements written by both lanes"
        fresh = count[idx] == 0
        first_beta[idx[fresh]] = beta
        lane_of[idx] = lane
        np.add.at(count, idx, 1)
    kept = np.ones(out.size, dtype=bool) if mask is None else mask.ravel()
    assert np.all(count[kept] == terms) and np.all(count <= terms), (
        f"elements written {np.bincount(count).tolist()} times (index = times), each should be {terms}")
    assert np.all(first_beta[count > 0] == 0), "an element's first write adds to what was there"


def _loads(plan):
    """Multiply-adds per lane."""
    return [int(sum(int(r[FIELD["M"]]) * r[FIELD["N"]] * r[FIELD["K"]] * r[FIELD["count"]]
                    for r in plan.calls[plan.starts[k]:plan.starts[k + 1]])) for k in range(len(plan.starts) - 1)]


def test_a_dominant_product_cut_again_and_again_keeps_one_writer_per_element():
    """A wide product with a small one beside it: the wide one is cut along its
    columns, and its pieces again (while the lanes' work differs by more than
    5%); every output element still has one writer, and the small product's too."""
    big = np.empty((96, 96 * 64), dtype=np.float32)  # 96 rows: columns are the longer axis
    a, b = np.empty((96, 256), dtype=np.float32), np.empty((256, big.shape[1]), dtype=np.float32)
    small_out = np.empty((96, 384), dtype=np.float32)
    sa, sb = np.empty((96, 256), dtype=np.float32), np.empty((256, 384), dtype=np.float32)
    plan = fb._plan((fb.Product(a, b, big), fb.Product(sa, sb, small_out)), np.dtype(np.float32))
    assert plan is not None and len(plan.calls) >= 5, "the wide product cut more than twice"
    _assert_owned(plan, big)
    _assert_owned(plan, small_out)


def test_a_chain_cut_keeps_each_elements_terms_in_one_lane():
    """A chain out = a1 @ b1 + a2 @ b2 + a3 @ b3 alone in its launch is cut into
    halves; each element gets its three terms from one lane, the first one written."""
    out = np.empty((2048, 320), dtype=np.float32)
    pairs = tuple((np.empty((2048, 320), dtype=np.float32), np.empty((320, 320), dtype=np.float32)) for _ in range(3))
    plan = fb._plan((fb.Chain(out, pairs),), np.dtype(np.float32))
    assert plan is not None and all(load > 0 for load in _loads(plan))
    _assert_owned(plan, out, terms=3)


@pytest.mark.parametrize("rows, cols", [(256, 1024), (1024, 256), (64, 640), (640, 128)])
def test_a_lone_2d_product_runs_in_two_halves_cut_at_a_multiple_of_64(rows, cols):
    """SPEC §parallel-split: a lone 2-D product is cut in two along its longer
    output axis at a multiple of 64 rows or columns, one half per lane (sizes
    whose half is such a multiple)."""
    K = 2 ** 20 // min(rows, cols) + 1  # above MIN_CUT
    a, b = np.empty((rows, K), dtype=np.float32), np.empty((K, cols), dtype=np.float32)
    out = np.empty((rows, cols), dtype=np.float32)
    plan = fb._plan((fb.Product(a, b, out),), np.dtype(np.float32))
    assert plan is not None and list(np.diff(plan.starts)) == [1, 1], "two calls, one per lane"
    _assert_owned(plan, out)
    n = max(rows, cols)
    first = _writes(plan, out)[0][3]
    cut = first[0] if rows >= cols else first[1]
    assert cut % fb.CUT_ALIGN == 0 and cut == n // 2, (cut, n)


def test_a_lone_batched_product_runs_in_two_halves_between_matrices():
    """SPEC §parallel-split: a batched product is cut between matrices; alone in
    its launch, 8 equal matrices run as 4 and 4, one half per lane."""
    a = np.empty((8, 128, 128), dtype=np.float32)
    b = np.empty((8, 128, 128), dtype=np.float32)
    out = np.empty((8, 128, 128), dtype=np.float32)
    plan = fb._plan((fb.Product(a, b, out),), np.dtype(np.float32))
    assert plan is not None
    assert [int(plan.calls[k, FIELD["count"]]) for k in range(len(plan.calls))] == [4, 4]
    assert list(np.diff(plan.starts)) == [1, 1]
    _assert_owned(plan, out)


def test_a_lone_causal_matrix_runs_its_row_blocks_on_both_lanes():
    """A causal product of one T x T matrix with two row blocks (CAUSAL_ROWS < T
    <= 2 CAUSAL_ROWS), alone in its launch, is cut between its blocks: both lanes
    work, and each element the mask keeps has one writer."""
    T, hs = 2 * fb.CAUSAL_ROWS, 160
    q = np.empty((1, 1, T, hs), dtype=np.float32)
    k = np.empty((1, 1, hs, T), dtype=np.float32)
    scores = np.empty((1, 1, T, T), dtype=np.float32)
    plan = fb._plan((fb.Product(q, k, scores, "scores"),), np.dtype(np.float32))
    assert plan is not None and all(load > 0 for load in _loads(plan)), _loads(plan)
    _assert_owned(plan, scores, mask=np.tril(np.ones((T, T), dtype=bool)))
