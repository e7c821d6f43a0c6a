"""fast's kernels against independent oracles (SPEC §tokenizer, §training, §tolerances and §fast).

Its float32 tanh and exp against float64 NumPy on dense grids, its causal
attention products against full NumPy products, its KV-cache decode steps
against full forwards, its parallel encoding against a plain-loop encoder,
and its generation's parallel one-row products against their serial form
and across thread counts.
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

from conformance import cases
from conformance.assertions import assert_allclose_rel, assert_scaled_max
from conformance.cases import model_case
from conformance.threads import all_threads, numba_threads
from conformance.tolerances import EXP_F32_REL, EXP_F32_SUBNORMAL_ABS, LOGITS_RTOL, TANH_F32_REL
from fast_support import check_found_gemms_multiply

numba = pytest.importorskip("numba")


def test_float32_rational_tanh_accuracy():
    """fast's float32 tanh (fast/_gelu.py tanh_f32) against float64 np.tanh
    on a dense grid over [-12, 12] and near 0: relative error <= TANH_F32_REL."""
    from fast._gelu import tanh_f32

    @numba.njit
    def run(x, out):
        for i in range(x.shape[0]):
            out[i] = tanh_f32(x[i])

    x = np.concatenate([np.linspace(-12, 12, 400_001), np.geomspace(1e-30, 1e-2, 2001),
                        -np.geomspace(1e-30, 1e-2, 2001), [0.0]]).astype(np.float32)
    got = np.empty_like(x)
    run(x, got)
    want = np.tanh(x.astype(np.float64))
    assert_allclose_rel("tanh_f32", got, want, TANH_F32_REL, atol=1e-30)


def test_float32_exp_accuracy():
    """fast's float32 exp for x <= 0 (fast/_softmax.py: the attention softmax's and the loss's), in its
    vectorised loop, against float64 np.exp: relative error <= EXP_F32_REL on a
    dense sample of [-87.33, 0] (and every float32 in [-1, -0.5), one binade);
    subnormal results within EXP_F32_SUBNORMAL_ABS; below -104 and -inf give 0, NaN stays NaN."""
    from fast._softmax import EXP_F32, exp_f32_into

    binade = (np.arange(np.float32(-1.0).view(np.int32), np.float32(-0.5).view(np.int32), -1,
                        dtype=np.int64).astype(np.int32).view(np.float32))
    x = np.concatenate([np.linspace(-87.33, 0, 1_000_003), -np.geomspace(1e-30, 1e-2, 2001), [0.0, -0.0],
                        binade]).astype(np.float32)
    got = np.empty_like(x)
    exp_f32_into(x, EXP_F32, got)
    assert_allclose_rel("exp_f32", got, np.exp(x.astype(np.float64)), EXP_F32_REL, atol=0.0)
    sub = np.linspace(-103.9, -87.34, 100_001).astype(np.float32)
    got = np.empty_like(sub)
    exp_f32_into(sub, EXP_F32, got)
    worst = np.abs(got.astype(np.float64) - np.exp(sub.astype(np.float64))).max()
    assert worst <= EXP_F32_SUBNORMAL_ABS, f"exp_f32 subnormal range: abs error {worst:.3e}"
    special = np.array([-np.inf, -200.0, -104.5, np.nan], dtype=np.float32)
    got = np.empty_like(special)
    exp_f32_into(special, EXP_F32, got)
    assert got[:3].tolist() == [0.0, 0.0, 0.0] and np.isnan(got[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_attention_products(dtype):
    """fast._blas.matmul_into(..., causal=KIND) against NumPy's full products on what
    the causal mask keeps: scores (q k^T) on u <= t, and p v / p^T dy with p zero
    past the diagonal, for a T no row block divides and a batch no batch block divides."""
    from fast._blas import CAUSAL_ROWS, matmul_into

    B, NH, T, hs = 2, 3, CAUSAL_ROWS * 3 + 11, 24
    rng = np.random.default_rng(5)
    q, k, v, dy = (rng.standard_normal((B, NH, T, hs)).astype(dtype) for _ in range(4))
    keep = np.tril(np.ones((T, T), dtype=bool))
    scores = np.full((B, NH, T, T), np.nan, dtype=dtype)
    matmul_into(q, k.transpose(0, 1, 3, 2), scores, causal="scores")
    want = q.astype(np.float64) @ k.transpose(0, 1, 3, 2).astype(np.float64)
    assert_scaled_max("scores", np.where(keep, scores, 0), np.where(keep, want, 0), LOGITS_RTOL)
    p = np.where(keep, rng.random((B, NH, T, T)), 0).astype(dtype)
    y = np.empty((B, NH, T, hs), dtype=dtype)
    matmul_into(p, v, y, causal="lower")
    assert_scaled_max("p @ v", y, p.astype(np.float64) @ v, LOGITS_RTOL)
    dv = np.empty_like(y)
    matmul_into(p.transpose(0, 1, 3, 2), dy, dv, causal="upper")
    assert_scaled_max("p^T @ dy", dv, p.transpose(0, 1, 3, 2).astype(np.float64) @ dy, LOGITS_RTOL)
    with pytest.raises(ValueError, match="causal must be one of"):
        matmul_into(p, v, y, causal="diagonal")


def test_matmul_plans_are_kept_per_causal_kind():
    """fast._blas keeps each launch's plan by what decides it (SPEC §parallel-split:
    the plan is a pure function of the operands' addresses, shapes and strides,
    and of the causal kind): the same arrays multiplied with a causal kind and
    then whole get the whole product, not the triangle of the earlier plan.
    Small integers in float64: every sum exact."""
    from fast._blas import CAUSAL_ROWS, MIN_WORK, matmul_into

    G, T, hs = (2, 3), CAUSAL_ROWS * 2 + 5, 24
    assert 6 * T * T * hs >= MIN_WORK  # planned for OpenBLAS, not handed to np.matmul
    rng = np.random.default_rng(3)
    r = rng.integers(-4, 5, G + (T, T)).astype(np.float64)  # not lower-triangular
    v = rng.integers(-4, 5, G + (T, hs)).astype(np.float64)
    y = np.empty(G + (T, hs))
    matmul_into(r, v, y, causal="lower")  # plans the lower triangle (r is not zero past it: y is not r @ v)
    matmul_into(r, v, y)
    assert np.array_equal(y, r @ v), "the whole product after a causal one on the same arrays"
    r[...] = np.tril(r)
    matmul_into(r, v, y, causal="lower")
    assert np.array_equal(y, r @ v), "the causal product after a whole one on the same arrays"


def test_address_keyed_plans_are_kept_per_launch_role_and_dtype(monkeypatch):
    """matmuls_into without a caller's key keeps each launch's plan by the
    operands' dtype, addresses, shapes and strides (SPEC §parallel-split), and
    by their roles: a different launch, the same three arrays as a Chain
    instead of a Product (Chain(X, ((Y, Z),)) computes X = Y Z where
    Product(X, Y, Z) computed Z = X Y), and operands at the same addresses,
    shapes and strides read as another dtype (a float32 view of the bytes of
    a float64 operand) each get their own plan, computed with their own
    operands. A Chain of two pairs sums both products. Products above
    MIN_WORK (planned for OpenBLAS); small integers, so every sum is exact."""
    import fast._blas as fb

    monkeypatch.setattr(fb, "_PLANS", {})  # a fresh cache: nothing planned before
    n = 128
    assert n ** 3 >= fb.MIN_WORK
    rng = np.random.default_rng(8)
    small = lambda dtype, *s: rng.integers(-4, 5, s).astype(dtype)  # noqa: E731
    X, Y, Z, W = (small(np.float64, n, n) for _ in range(4))
    fb.matmul_into(X, Y, Z)
    assert np.array_equal(Z, X @ Y), "the first launch"
    out = np.full((n, n), np.nan)
    fb.matmul_into(Y, W, out)
    assert np.array_equal(out, Y @ W), "a second launch on other operands"
    want = Y @ Z
    fb.matmuls_into((fb.Chain(X, ((Y, Z),)),))
    assert np.array_equal(X, want), "the same arrays as a Chain, in other roles"
    want = Y @ W + Z @ W
    fb.matmuls_into((fb.Chain(out, ((Y, W), (Z, W))),))
    assert np.array_equal(out, want), "a Chain of two pairs"
    words = small(np.float32, n, 2 * n)  # float32 small integers, n x 2n
    a64, a32 = words.view(np.float64), words[:, ::2]  # the same address, shape and strides
    assert (a64.__array_interface__["data"][0], a64.shape, a64.strides) == (
        a32.__array_interface__["data"][0], a32.shape, a32.strides)
    fb.matmul_into(a64, W, out)
    fb.matmul_into(a32, W, out)
    assert np.array_equal(out, a32.astype(np.float64) @ W), "float32 operands where float64 ones were planned"


def test_address_keyed_plan_cache_is_bounded(monkeypatch):
    """fast/_blas.py keeps plans by the operands' addresses, shapes and strides,
    "bounded: cleared when full": launches on ever new operands (here 3
    _PLANS_MAX of them, each of another shape) never hold much more than
    _PLANS_MAX plans (a training loop's launches are far fewer; a program
    multiplying new arrays for ever must not grow the cache for ever)."""
    import fast._blas as fb

    monkeypatch.setattr(fb, "_PLANS", {})
    most = 0
    for n in range(1, 3 * fb._PLANS_MAX + 1):
        a = np.ones((1, n))
        fb.matmul_into(a, np.ones((n, 1)), np.empty((1, 1)))
        most = max(most, len(fb._PLANS))
    assert most <= fb._PLANS_MAX + 1, f"the cache held {most} plans, _PLANS_MAX is {fb._PLANS_MAX}"


def test_launches_of_2_20_multiply_adds_run_on_the_openblas_lanes(monkeypatch):
    """SPEC §parallel-split: BLAS (OpenBLAS's gemm, on the lanes of one Numba
    parallel region) does every matmul; launches under 2^20 multiply-adds in
    all are np.matmul calls. A product of 2^21 multiply-adds runs on the lanes,
    one of 2^19 through np.matmul, in both dtypes, each giving a @ b."""
    import fast._blas as fb

    if fb._OPENBLAS is None:
        pytest.skip("no OpenBLAS entry point: every product is np.matmul")
    ran = []
    run, numpy_ = fb._run, fb._numpy
    monkeypatch.setattr(fb, "_run", lambda plan: ran.append("lanes") or run(plan))
    monkeypatch.setattr(fb, "_numpy", lambda products: ran.append("np.matmul") or numpy_(products))
    monkeypatch.setattr(fb, "_PLANS", {})
    rng = np.random.default_rng(10)
    for dtype in (np.float32, np.float64):
        for m in (128, 32):  # 128 * 128 * 128 = 2^21, 32 * 128 * 128 = 2^19
            a, b = (rng.integers(-4, 5, s).astype(dtype) for s in ((m, 128), (128, 128)))
            assert np.array_equal(fb.matmul_into(a, b, np.empty((m, 128), dtype=dtype)), a @ b)
    assert ran == ["lanes", "np.matmul"] * 2, ran


def test_openblas_entry_points_are_found_and_multiply():
    """fast's products call the OpenBLAS NumPy ships (fast/_blas.py's docstring;
    without it every product is np.matmul): when NumPy's BLAS is OpenBLAS its
    thread setting and its sgemm and dgemm are found, and a launch through each
    gemm computes a @ b (small integers: exact)."""
    import fast._blas as fb

    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    if "openblas" not in str(blas.get("name", "")).lower():
        pytest.skip(f"NumPy's BLAS is {blas.get('name')!r}, not OpenBLAS: fast multiplies with np.matmul")
    found = fb._load_openblas()
    assert found is not None, "NumPy's OpenBLAS not found"
    check_found_gemms_multiply(found, seed=1)


def test_blas_warm_up_multiplies_a_valid_product_per_dtype(monkeypatch):
    """fast.warmup compiles the BLAS launch for float32 and float64 (fast/_blas.py
    `warm`) with one real product each: its operands multiply (a's columns are
    b's rows, out is a's rows by b's columns), so OpenBLAS runs it."""
    import fast._blas as fb

    if fb._OPENBLAS is None:
        pytest.skip("no OpenBLAS entry point: warm has nothing to compile")
    planned = []
    real_plan = fb._plan

    def plan(products, dtype):
        planned.append([(p.a.shape, p.b.shape, p.out.shape) for p in products] + [np.dtype(dtype)])
        return real_plan(products, dtype)

    monkeypatch.setattr(fb, "_plan", plan)
    fb.warm()
    assert [entry[-1] for entry in planned] == [np.float32, np.float64]
    for *shapes, dtype in planned:
        for a, b, out in shapes:
            assert len(a) == len(b) == len(out) == 2 and a[1] == b[0] and out == (a[0], b[1]), (a, b, out, dtype)



def test_single_threaded_blas_restores_the_callers_blas_threads():
    """fast/_blas.py: `single_threaded_blas` gives the calling thread's BLAS calls one
    thread and on exit restores the setting the caller had: OpenBLAS's
    openblas_set_num_threads_local, as the loader declares it, returns the
    per-thread setting it replaces, which is what the context restores."""
    import fast._blas as fb

    if fb._OPENBLAS is None:
        pytest.skip("no OpenBLAS entry point: single_threaded_blas has no thread setting to change")
    found = fb._load_openblas()
    assert found is not None, "NumPy's OpenBLAS not found"
    set_local = found[0]
    outer = set_local(2)
    try:
        assert isinstance(outer, int), f"the thread setting returned {outer!r}, not the setting it replaced"
        assert set_local(2) == 2
        with fb.single_threaded_blas():
            assert set_local(1) == 1, "inside the context: one BLAS thread"
        assert set_local(2) == 2, "after the context: the caller's two BLAS threads again"
    finally:
        if isinstance(outer, int):
            set_local(outer)


def test_single_threaded_blas_without_openblas_changes_nothing(monkeypatch):
    """fast/_blas.py: without NumPy's OpenBLAS entry point (another BLAS) every
    product is np.matmul, and `single_threaded_blas`, which fast's forward,
    backward and generation enter, has no thread setting to change: it
    enters and leaves without a call."""
    import fast._blas as fb

    monkeypatch.setattr(fb, "_set_local", None)
    with fb.single_threaded_blas() as ctx:
        assert ctx.prev is None
    a = np.arange(6.0).reshape(2, 3)
    with fb.single_threaded_blas():
        assert np.array_equal(fb.matmul_into(a, a.T, np.empty((2, 2))), a @ a.T)


@pytest.mark.parametrize("lead", [(3,), (2, 3), (2, 1, 2)], ids=["3d", "4d", "5d"])
def test_causal_products_take_any_leading_axes_and_refuse_other_shapes(lead):
    """fast._blas.matmul_into's docstring: `causal` is for batched products of
    T x T attention matrices, over any leading axes: with one, two or three
    leading axes the scores are NumPy's on what the mask keeps, and p v and
    p^T dy (p lower-triangular) NumPy's whole products, over two row blocks; a
    2-D product, a scores output of T x (T + 1), and a T x (T + 1) left operand
    of a "lower" product are refused (ValueError naming causal) before any work.
    Small integers: every sum exact."""
    from fast._blas import CAUSAL_ROWS, matmul_into

    T, hs = CAUSAL_ROWS + 9, 4
    rng = np.random.default_rng(6)
    q, k = rng.integers(-4, 5, lead + (T, hs)).astype(np.float64), rng.integers(-4, 5, lead + (hs, T)).astype(np.float64)
    keep = np.tril(np.ones((T, T), dtype=bool))
    scores = np.full(lead + (T, T), np.nan)
    matmul_into(q, k, scores, causal="scores")
    assert np.array_equal(np.where(keep, scores, 0), np.where(keep, q @ k, 0)), lead
    p = np.where(keep, rng.integers(-4, 5, lead + (T, T)), 0).astype(np.float64)
    y = np.full(lead + (T, hs), np.nan)
    matmul_into(p, q, y, causal="lower")
    assert np.array_equal(y, p @ q), f"p v, leading axes {lead}"
    pt = np.swapaxes(p, -1, -2)
    matmul_into(pt, q, y, causal="upper")
    assert np.array_equal(y, pt @ q), f"p^T dy, leading axes {lead}"
    wide = rng.integers(-4, 5, lead + (hs, T + 1)).astype(np.float64)
    refused = {
        "2-D": (q.reshape(-1, T, hs)[0], k.reshape(-1, hs, T)[0], np.empty((T, T)), "scores"),
        "scores T x (T + 1)": (q, wide, np.empty(lead + (T, T + 1)), "scores"),
        "lower T x (T + 1)": (q @ wide, rng.random(lead + (T + 1, hs)), np.empty(lead + (T, hs)), "lower"),
    }
    for name, (a, b, out, kind) in refused.items():
        out[...] = -7.0
        with pytest.raises(ValueError, match="causal="):
            matmul_into(a, b, out, causal=kind)
        assert np.all(out == -7.0), f"{name}: written before the refusal"


# --- generation ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["moved", "sharp"])
def test_kv_cache_logits_match_full_forward(kind):
    """Each KV-cache decode step gives the logits of a full forward over the
    same prefix (LOGITS_RTOL, SPEC §tolerances): the cache is an optimisation,
    not a different model. On conformance.cases.BLOCKED (weights of 72 and
    288 rows: partial 64-row chunks in the one-row products) with parameters
    moved off the init, and with every attention score near -130 (`sharp`:
    a decode softmax whose max starts at 0 underflows there)."""
    import fast
    from fast.generate import _Decoder

    config = fast.Config(**cases.BLOCKED)
    params = getattr(cases, kind)(fast.init_params(config, seed=5), seed=5)
    seq = np.random.default_rng(5).integers(0, config.vocab_size, 20)
    decoder = _Decoder(params)
    got = [decoder.prefill(seq[:4]).copy()]
    for n in range(4, seq.size):
        got.append(decoder.step(int(seq[n])).copy())
    for j, n in enumerate(range(4, seq.size + 1)):
        want, _, _ = fast.forward(params, seq[None, :n])
        assert_scaled_max(f"logits at position {n - 1}", got[j], want[0, -1], LOGITS_RTOL, {"n": n, "params": kind})


def test_generation_parallel_products_thread_count_independent(monkeypatch):
    """Generation's one-row products in their parallel form (forced on the small
    test model: fixed row chunks) give the same logits and ids with 1 thread and
    with all, and the same as the serial form."""
    import fast

    gen = importlib.import_module("fast.generate")
    params, tokens, _ = model_case(fast)
    results = []
    for parallel_min in (0, 1 << 62):
        monkeypatch.setattr(gen, "PARALLEL_MIN", parallel_min)
        for n in (1, all_threads()):
            with numba_threads(n):
                decoder = gen._Decoder(params)
                logits = [decoder.prefill(tokens[0, :4]).copy()]
                logits += [decoder.step(int(t)).copy() for t in tokens[0, 4:12]]
                greedy = gen.generate(params, tokens[0, :5], 10, temperature=0.0)
                results.append((np.stack(logits).tobytes(), greedy.tolist()))
    assert all(r == results[0] for r in results)


def test_generation_steps_on_the_cache_while_the_sequence_fits_then_slides(monkeypatch):
    """SPEC §kv-cache: the prompt runs once through the prefill; while the sequence
    fits in block_size, every later token is one cached decode step at the next
    position (the context of block_size tokens included: it still fits); once it is
    longer, every token re-runs the prefill on the last block_size tokens. Counted
    through the decoder's two entry points on a generate that crosses block_size,
    greedy and sampled alike, with the windows the prefills get."""
    import fast

    gen = importlib.import_module("fast.generate")
    params, tokens, _ = model_case(fast)
    block_size, P, n_tokens = params.config.block_size, 5, 24
    calls = []
    real_prefill, real_step = gen._Decoder.prefill, gen._Decoder.step

    def prefill(self, context):
        calls.append(("prefill", context.tolist()))
        return real_prefill(self, context)

    def step(self, token):
        calls.append(("step", self.S, token))
        return real_step(self, token)

    monkeypatch.setattr(gen._Decoder, "prefill", prefill)
    monkeypatch.setattr(gen._Decoder, "step", step)
    for temperature in (0.0, 1.0):
        calls.clear()
        ids = gen.generate(params, tokens[0, :P], n_tokens, temperature=temperature, seed=3).tolist()
        want = [("prefill", ids[:P])]
        want += [("step", n - 1, ids[n - 1]) for n in range(P + 1, block_size + 1)]
        want += [("prefill", ids[n - block_size:n]) for n in range(block_size + 1, P + n_tokens)]
        assert calls == want, f"temperature {temperature}: decoder calls {calls}"


# --- optimiser --------------------------------------------------------------------
def test_sum_of_squares_chunks_cover_the_buffer():
    """fast.optim sums the squares of the flat gradient buffer in fixed chunks of
    CHUNK elements (SPEC §optimiser's float64 norm): every element counts, for
    sizes on both sides of a chunk boundary (a last chunk of one element, an
    exactly full one, one element short). Small integers: every sum is exact."""
    from fast._numba import CHUNK
    from fast.optim import sum_of_squares

    rng = np.random.default_rng(4)
    for size in (1, 7, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1, 3 * CHUNK - 1):
        g = rng.integers(-3, 4, size).astype(np.float32)
        g[-1] = 5.0  # the last element always counts
        want = float(np.sum(g.astype(np.int64) ** 2))
        assert sum_of_squares(g) == want, size


# --- tokenizer -------------------------------------------------------------------
def _naive_encode(data: bytes, merges) -> list[int]:
    """SPEC §tokenizer encoding as a plain loop (oracle): each merge in learned
    order, left to right, no overlap."""
    ids = list(data)
    for k, (a, b) in enumerate(merges):
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                out.append(256 + k)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64])
def test_encoding_pieces_cut_at_safe_points_are_exact(monkeypatch, piece):
    """fast encodes pieces cut where no token can span the cut, in parallel;
    with tiny pieces (many cuts) the ids still equal the plain-loop oracle."""
    import fast.tokenizer as ft

    text = b"aaab aaaab abab aab  the then there their theirs\n" * 5 + bytes(range(250, 256)) * 3
    tok = ft.Tokenizer.train(text, 290)
    other = b"theirs aaaaab then abab the\n\xff\xfe" * 7
    monkeypatch.setattr(ft, "PIECE", piece)
    for data in (text, other):
        assert tok.encode(data).tolist() == _naive_encode(data, tok.merges), f"piece={piece}"


def _assert_safe_cuts(cuts, data: bytes, inner, piece):
    """The cut points' promise: 0 first, N last, strictly increasing (no empty
    piece), every inner cut at a pair no token spans, pieces of at least
    `piece` bytes but the last."""
    cuts = cuts.tolist()
    assert cuts[0] == 0 and cuts[-1] == len(data), cuts
    assert all(lo < hi for lo, hi in zip(cuts, cuts[1:])), f"cuts not strictly increasing (an empty piece): {cuts}"
    assert all(not inner[data[c - 1], data[c]] for c in cuts[1:-1]), cuts
    assert all(hi - lo >= piece for lo, hi in zip(cuts[:-2], cuts[1:-1])), cuts


def test_safe_cuts_stay_inside_the_data():
    """fast/tokenizer.py `_safe_cuts`: the pieces it cuts are non-empty and
    it never reads past the end of the data. The data here is a view of a
    longer buffer whose next byte, read as the pair (data[N-1], next), is not
    inner: a scan that went one step past the end would cut an empty piece
    [N, N] there. Every pair inside the data is inner ("aa"), so the scan
    walks byte by byte up to the end."""
    import fast.tokenizer as ft

    inner = np.zeros((256, 256), dtype=np.bool_)
    inner[ord("a"), ord("a")] = True
    buffer = np.frombuffer(b"baaaaaab", dtype=np.uint8)
    data = buffer[:-1]
    for piece in (1, 2, 3, 6, 7):
        cuts = ft._safe_cuts(data, inner, piece)
        _assert_safe_cuts(cuts, data.tobytes(), inner, piece)
        assert cuts.tolist() == ([0, 1, 7] if piece == 1 else [0, 7]), (piece, cuts.tolist())
    rng = np.random.default_rng(3)
    tok = ft.Tokenizer.train(b"aaab aaaab abab aab the then there their\n" * 3, 280)
    inner = ft._inner_pairs(np.asarray(tok.merges, dtype=np.int32).reshape(-1, 2))
    for _ in range(20):
        buffer = rng.choice(np.frombuffer(b"ab thenir\n", dtype=np.uint8), size=int(rng.integers(2, 60)))
        data = buffer[:-1]
        for piece in (1, 2, 5):
            _assert_safe_cuts(ft._safe_cuts(data, inner, piece), data.tobytes(), inner, piece)


@pytest.mark.parametrize("merges", [[(97, 97), (256, 98), (97, 98)], []])
@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"aab"])
def test_encoding_hook_on_the_shortest_texts(data, merges):
    """fast.tokenizer.apply_merges, the encoding hook of reference.Tokenizer
    (`_apply_merges(byte_ids: uint8[N], merges) -> int32[N']`), encodes as
    reference.tokenizer.apply_merges does on texts of zero, one, two and three
    bytes, which Tokenizer.encode itself answers without the hook below two,
    with merges and without (the hook's own answer: the bytes as int32 ids)."""
    import fast.tokenizer as ft
    import reference.tokenizer as rt

    ids = np.frombuffer(data, dtype=np.uint8)
    got = ft.apply_merges(ids, merges)
    assert got.dtype == np.int32 and got.tolist() == rt.apply_merges(ids, merges).tolist() == \
        _naive_encode(data, merges)


def test_tokenizer_hand_example():
    """The reference docstring's worked example (hand derivation in
    reference/tokenizer.py): "aaabdaaabac" -> merges (a,a), (a,b), (aa,ab)."""
    import fast

    tok = fast.Tokenizer.train(b"aaabdaaabac", 259)
    assert tok.merges == [(97, 97), (97, 98), (256, 257)]
    assert tok.encode(b"aaabdaaabac").tolist() == [258, 100, 258, 97, 99]


def test_tokenizer_bounds_its_vocabulary_before_any_work():
    """SPEC §tokenizer: fast bounds the vocabulary at 16,384 tokens; a larger
    vocab_size is a ValueError naming vocab_size, for training and for
    encoding with a loaded tokenizer, and the bound itself is accepted."""
    import fast

    assert fast.Tokenizer.train(b"a", 16_384).merges == []  # one byte: no pair, no merge, no error
    with pytest.raises(ValueError, match="vocab_size"):
        fast.Tokenizer.train(b"ab", 16_385)
    chain = [(97, 97)] + [(256 + k, 97) for k in range(16_384 - 257)]  # "aa", "aaa", ...: 16,384 tokens
    assert fast.Tokenizer(chain).encode(b"aaaa").tolist() == [256, 256]  # merges apply in learned order
    with pytest.raises(ValueError, match="vocab_size"):
        fast.Tokenizer(chain + [(16_383, 97)]).encode(b"aaaa")


@pytest.mark.parametrize("a_view", ["two columns apart", "two columns apart, column-major", "overlapping rows",
                                    "two overlapping columns", "rows at odd bytes", "columns at odd bytes"])
def test_matmul_into_multiplies_views_of_any_strides_as_numpy_does(a_view):
    """fast._blas.matmul_into on a left operand of unusual strides: two columns
    with a gap between them, in row-major memory (no gemm layout: np.matmul
    computes it) and in column-major memory (a transposed layout whose leading
    dimension is the column stride); overlapping rows or columns (sliding
    windows: a stride of one element, shorter than a row or column: no gemm
    layout); and strides that are not whole elements (a float64 view of a byte
    buffer whose rows, or columns, start 4 bytes off the 8-byte grid: no gemm
    layout). Products large enough to be planned for OpenBLAS; small
    integers, so every sum is exact."""
    from fast._blas import MIN_WORK, matmul_into

    rng = np.random.default_rng(9)
    for r in (2, 3, 5):
        k = 8
        if a_view == "two columns apart":
            a, k = rng.integers(-4, 5, (r, 4)).astype(np.float64)[:, ::2], 2  # strides (4, 2) elements
        elif a_view == "two columns apart, column-major":
            a, k = np.asfortranarray(rng.integers(-4, 5, (r, 4)).astype(np.float64))[:, ::2], 2  # (1, 2r)
        elif a_view == "overlapping rows":  # strides (1, 1) elements, rows of k
            a = np.lib.stride_tricks.sliding_window_view(rng.integers(-4, 5, r + k - 1).astype(np.float64), k)
        elif a_view == "two overlapping columns":  # strides (1, 1) elements, columns of r
            a, k = np.lib.stride_tricks.sliding_window_view(rng.integers(-4, 5, r + 1).astype(np.float64), r).T, 2
        else:
            strides = (8 * k + 4, 8) if a_view == "rows at odd bytes" else (12 * k, 12)
            buf = np.zeros(r * strides[0] + k * strides[1], dtype=np.uint8)
            a = np.ndarray((r, k), dtype=np.float64, buffer=buf, strides=strides)
            a[...] = rng.integers(-4, 5, (r, k))
        assert a.shape == (r, k)
        n = -(-MIN_WORK // (r * k))  # r * k * n >= MIN_WORK: planned
        b = rng.integers(-4, 5, (k, n)).astype(np.float64)
        out = np.full((r, n), np.nan)
        matmul_into(a, b, out)
        assert np.array_equal(out, np.array(a) @ b), (a_view, r, a.strides)


@pytest.mark.parametrize("a_view", ["padded", "every other column"])
def test_matmul_into_reads_and_writes_strided_views_as_numpy_does(a_view):
    """fast._blas.matmul_into (every matmul of fast) on views whose rows are
    padded (a slice of wider arrays), transposed views, and one-, two- and
    more-row operands: NumPy's products. `a` is also taken as every other
    column of a wider array, a view with no gemm layout for two rows or more
    (neither stride is one element: np.matmul computes the product, the
    other operands keep theirs). Small integers in float64 make every sum
    exact, so any order of summation gives the same bits."""
    from fast._blas import MIN_WORK, matmul_into

    rng = np.random.default_rng(0)
    wide = int(MIN_WORK ** 0.5) + 1  # r * k * n above MIN_WORK even for one row: OpenBLAS, not NumPy, computes it
    for r in (1, 2, 3, 5):
        for k, n in ((1, 4), (3, 1), (4, 6), (wide, wide), (1, wide * wide), (wide * wide, 1)):
            if a_view == "padded":
                a = rng.integers(-4, 5, (r, k + 3)).astype(np.float64)[:, :k]  # rows padded by 3
            else:
                a = rng.integers(-4, 5, (r, 2 * k)).astype(np.float64)[:, ::2]  # strides (2k, 2) elements
            b = rng.integers(-4, 5, (n, k)).astype(np.float64).T  # a transposed view
            out = np.full((r, n + 2), 7.0)[:, :n]  # rows padded by 2
            matmul_into(a, b, out)
            assert np.array_equal(out, a @ b), (r, k, n)
            assert np.all(out.base[:, n:] == 7.0), f"written past the view's rows {(r, k, n)}"


@pytest.mark.parametrize("lead", [(2,), (2, 3)])
def test_matmul_into_multiplies_a_batch_by_one_shared_matrix_as_numpy_does(lead):
    """fast._blas.matmul_into's docstring: out = a @ b, batched over leading
    axes. A batch of `a` against one 2-D `b` (NumPy's a @ b broadcasts b) is
    such a product: small and large (above MIN_WORK) alike give NumPy's
    result. Small integers in float64 make every sum exact."""
    from fast._blas import MIN_WORK, matmul_into

    rng = np.random.default_rng(1)
    for k, n in ((4, 5), (int(MIN_WORK ** 0.5) + 1, 8)):
        a = rng.integers(-4, 5, lead + (3, k)).astype(np.float64)
        b = rng.integers(-4, 5, (k, n)).astype(np.float64)
        out = np.empty(lead + (3, n))
        matmul_into(a, b, out)
        assert np.array_equal(out, a @ b), (lead, k, n)


@pytest.mark.parametrize("merges, bad", [
    ([(97, 256)], 0),  # token 256 is not defined before merge 0 makes it
    ([(97, 98), (300, 97)], 1),
    ([(97, 98), (-1, 97)], 1),
    ([(97, 98), (97, -1)], 1),
    ([(97, 98), (256, 258)], 1),
])
def test_encoding_hook_refuses_a_merge_naming_an_undefined_id(merges, bad):
    """SPEC §fast-tokenizer: fast.tokenizer.apply_merges checks the merges
    before any work, as Tokenizer does: merge k naming an id that is negative
    or not below 256 + k is a ValueError naming merge k."""
    from fast import tokenizer as ft

    with pytest.raises(ValueError, match=f"merge {bad} "):
        ft.apply_merges(np.frombuffer(b"abab", dtype=np.uint8), merges)
