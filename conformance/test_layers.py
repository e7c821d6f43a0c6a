"""Layer forward/backward pairs (SPEC §forward, §backward) against independent
oracles: pure-Python loops with full Jacobians (conformance/naive_model.py),
hand-derived values, and exact properties (causal zeros, dtype preservation).
Finite-difference checks of the same pairs live in test_gradcheck.py."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from conformance import naive_model as naive
from conformance.cases import exact_logits
from conformance.assertions import assert_allclose_rel, assert_bitwise
from conformance.tolerances import ORACLE_F32_RTOL, ORACLE_F64_RTOL

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: ORACLE_F32_RTOL, np.float64: ORACLE_F64_RTOL}


def assert_close(name, got, want, rtol, context=None):
    """max |got - want| / max |want| <= rtol (the ORACLE_* metric)."""
    want = np.asarray(want, dtype=np.float64)
    scale = float(np.abs(want).max()) if want.size else 1.0
    assert_allclose_rel(name, got, want, rtol, context, atol=scale if scale > 0 else 1.0)


def randn(rng, *shape, dtype=np.float64, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def check_dtype(impl, name, arr, dtype):
    assert isinstance(arr, np.ndarray) and arr.dtype == dtype, (
        f"{impl.name}: {name} has dtype {getattr(arr, 'dtype', type(arr))}, expected {np.dtype(dtype)} "
        "(SPEC §numerics: the dtype follows the inputs)")


# --- layernorm -----------------------------------------------------------------------
def test_layernorm_hand_example(impl):
    """x = [1, 2, 3, 4]: mean 2.5, biased variance (2.25 + 0.25 + 0.25 + 2.25)/4 = 1.25,
    rstd = 1/sqrt(1.25 + 1e-5); with gamma = [1, 2, 1, 1], beta = [0, 0, 0, 1]:
    out = [-1.5 r, -1 r, 0.5 r, 1.5 r + 1]."""
    x = np.array([[1.0, 2.0, 3.0, 4.0]])
    gamma = np.array([1.0, 2.0, 1.0, 1.0])
    beta = np.array([0.0, 0.0, 0.0, 1.0])
    r = 1.0 / math.sqrt(1.25 + 1e-5)
    out, _ = impl.layernorm_forward(x, gamma, beta)
    assert_close("layernorm out", out, [[-1.5 * r, -1.0 * r, 0.5 * r, 1.5 * r + 1.0]], ORACLE_F64_RTOL)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_layernorm_matches_naive_loops(impl, dtype):
    rng = np.random.default_rng(1)
    B, T, C = 2, 3, 5
    x = randn(rng, B, T, C, dtype=dtype, scale=2.0) + dtype(0.5)
    gamma = randn(rng, C, dtype=dtype) + dtype(1.0)
    beta = randn(rng, C, dtype=dtype)
    dout = randn(rng, B, T, C, dtype=dtype)
    out, cache = impl.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = impl.layernorm_backward(dout, cache)
    for name, arr in (("out", out), ("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta)):
        check_dtype(impl, f"layernorm {name}", arr, dtype)

    X, G, Bt, D = (naive.tolist(a) for a in (x, gamma, beta, dout))
    want_out = [[naive.layernorm_row(X[b][t], G, Bt) for t in range(T)] for b in range(B)]
    want_dx = [[None] * T for _ in range(B)]
    want_dgamma, want_dbeta = [0.0] * C, [0.0] * C
    for b in range(B):
        for t in range(T):
            dxr, dgr, dbr = naive.layernorm_row_backward(D[b][t], X[b][t], G)
            want_dx[b][t] = dxr
            want_dgamma = [s + g for s, g in zip(want_dgamma, dgr)]
            want_dbeta = [s + g for s, g in zip(want_dbeta, dbr)]
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_close("layernorm out", out, want_out, RTOL[dtype], ctx)
    assert_close("layernorm dx", dx, want_dx, RTOL[dtype], ctx)
    assert_close("layernorm dgamma", dgamma, want_dgamma, RTOL[dtype], ctx)
    assert_close("layernorm dbeta", dbeta, want_dbeta, RTOL[dtype], ctx)


# --- linear --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_matches_naive_loops(impl, dtype, bias):
    rng = np.random.default_rng(2)
    B, T, n_in, n_out = 2, 3, 4, 5
    x = randn(rng, B, T, n_in, dtype=dtype)
    w = randn(rng, n_in, n_out, dtype=dtype)
    b = randn(rng, n_out, dtype=dtype) if bias else None
    dout = randn(rng, B, T, n_out, dtype=dtype)
    out, cache = impl.linear_forward(x, w, b)
    dx, dw, db = impl.linear_backward(dout, cache)
    X, W, D = naive.tolist(x), naive.tolist(w), naive.tolist(dout)
    Bv = naive.tolist(b) if bias else None
    want_out = [[naive.linear_row(X[bb][t], W, Bv) for t in range(T)] for bb in range(B)]
    # dx[b,t,i] = sum_j dout[b,t,j] w[i,j]; dw[i,j] = sum_{b,t} x[b,t,i] dout[b,t,j]; db[j] = sum dout[b,t,j]
    want_dx = [[[sum(D[bb][t][j] * W[i][j] for j in range(n_out)) for i in range(n_in)]
                for t in range(T)] for bb in range(B)]
    want_dw = [[sum(X[bb][t][i] * D[bb][t][j] for bb in range(B) for t in range(T)) for j in range(n_out)]
               for i in range(n_in)]
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    check_dtype(impl, "linear out", out, dtype)
    assert_close("linear out", out, want_out, RTOL[dtype], ctx)
    assert_close("linear dx", dx, want_dx, RTOL[dtype], ctx)
    assert_close("linear dw", dw, want_dw, RTOL[dtype], ctx)
    if bias:
        want_db = [sum(D[bb][t][j] for bb in range(B) for t in range(T)) for j in range(n_out)]
        assert_close("linear db", db, want_db, RTOL[dtype], ctx)
    else:
        assert db is None, f"{impl.name}: linear_backward must return db=None when the forward had no bias"


# --- gelu ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_gelu_matches_formula_and_derivative(impl, dtype):
    """Values on a grid against math.tanh; the derivative against the
    hand-derived sech^2 form (naive_model.gelu_derivative); gelu(0) = 0 exactly."""
    x = np.linspace(-6.0, 6.0, 49).astype(dtype).reshape(7, 7)
    dout = np.random.default_rng(3).standard_normal(x.shape).astype(dtype)
    out, cache = impl.gelu_forward(x)
    dx = impl.gelu_backward(dout, cache)
    check_dtype(impl, "gelu out", out, dtype)
    check_dtype(impl, "gelu dx", dx, dtype)
    xs = naive.tolist(x)
    want = [[naive.gelu(v) for v in row] for row in xs]
    want_dx = [[d * naive.gelu_derivative(v) for d, v in zip(drow, row)] for drow, row in zip(naive.tolist(dout), xs)]
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_close("gelu out", out, want, RTOL[dtype], ctx)
    assert_close("gelu dx", dx, want_dx, RTOL[dtype], ctx)
    zero, _ = impl.gelu_forward(np.zeros((1, 1), dtype=dtype))
    assert zero[0, 0] == 0.0


# --- embedding -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_embedding_sums_rows_and_scatters_gradients(impl, dtype):
    """out[b, t] = wte[tok] + wpe[t]; with token 3 at three positions its
    gradient row is the sum of those three dout rows; rows of unused tokens and
    position rows >= T are exactly zero."""
    rng = np.random.default_rng(4)
    V, block, C = 6, 5, 3
    wte = randn(rng, V, C, dtype=dtype)
    wpe = randn(rng, block, C, dtype=dtype)
    tokens = np.array([[3, 1, 3], [0, 3, 5]])
    B, T = tokens.shape
    out, cache = impl.embedding_forward(tokens, wte, wpe)
    dout = randn(rng, B, T, C, dtype=dtype)
    dwte, dwpe = impl.embedding_backward(dout, cache)
    check_dtype(impl, "embedding out", out, dtype)
    check_dtype(impl, "dwte", dwte, dtype)
    check_dtype(impl, "dwpe", dwpe, dtype)
    want = [[[float(wte[tokens[b, t], c]) + float(wpe[t, c]) for c in range(C)] for t in range(T)] for b in range(B)]
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_close("embedding out", out, want, RTOL[dtype], ctx)
    D = naive.tolist(dout)
    want_dwte = [[0.0] * C for _ in range(V)]
    want_dwpe = [[0.0] * C for _ in range(block)]
    for b in range(B):
        for t in range(T):
            for c in range(C):
                want_dwte[tokens[b, t]][c] += D[b][t][c]
                want_dwpe[t][c] += D[b][t][c]
    assert_close("dwte", dwte, want_dwte, RTOL[dtype], ctx)
    assert_close("dwpe", dwpe, want_dwpe, RTOL[dtype], ctx)
    assert not dwte[[2, 4]].any(), "rows of tokens that never occur must have zero gradient"
    assert not dwpe[T:].any(), "position rows >= T must have zero gradient"


# --- attention -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_single_head_attention_matches_naive_loops(impl, dtype):
    rng = np.random.default_rng(5)
    B, T, C = 2, 5, 3
    q, k, v, dout = (randn(rng, B, T, C, dtype=dtype) for _ in range(4))
    out, cache = impl.attention_forward(q, k, v, 1)
    dq, dk, dv = impl.attention_backward(dout, cache)
    for name, arr in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        check_dtype(impl, f"attention {name}", arr, dtype)
    want = {"out": [], "dq": [], "dk": [], "dv": []}
    for b in range(B):
        Q, K, Vv, D = (naive.tolist(a[b]) for a in (q, k, v, dout))
        want["out"].append(naive.attention_head(Q, K, Vv)[0])
        gq, gk, gv = naive.attention_head_backward(D, Q, K, Vv)
        want["dq"].append(gq)
        want["dk"].append(gk)
        want["dv"].append(gv)
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    for name, got in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        assert_close(f"attention {name}", got, want[name], RTOL[dtype], ctx)


def test_multi_head_attention_is_per_head_attention(impl):
    """Head h reads and writes columns h*hs:(h+1)*hs; scale 1/sqrt(hs), not 1/sqrt(C)."""
    rng = np.random.default_rng(6)
    B, T, NH, hs = 2, 4, 3, 2
    q, k, v = (randn(rng, B, T, NH * hs) for _ in range(3))
    out, _ = impl.attention_forward(q, k, v, NH)
    want = naive.attention(naive.tolist(q), naive.tolist(k), naive.tolist(v), NH)
    assert_close("attention out", out, want, ORACLE_F64_RTOL, {"impl": impl.name, "n_heads": NH})


def test_attention_uniform_scores_average_the_past(impl):
    """q = 0 makes every score 0, so p[t, u] = 1/(t+1) for u <= t and
    y[t] = mean(v[0..t]); y[0] = v[0] exactly (p[0, 0] = exp(0)/exp(0) = 1)."""
    rng = np.random.default_rng(7)
    B, T, C = 1, 6, 4
    q = np.zeros((B, T, C))
    k, v = randn(rng, B, T, C), randn(rng, B, T, C)
    out, _ = impl.attention_forward(q, k, v, 2)
    want = np.cumsum(v, axis=1) / np.arange(1, T + 1)[None, :, None]
    assert_close("attention out", out, want, ORACLE_F64_RTOL, {"impl": impl.name})
    assert_bitwise("attention out[:, 0]", out[:, 0], v[:, 0], {"impl": impl.name})


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_attention_future_gets_exactly_zero_weight(impl, dtype):
    """Replacing k and v at positions > t0 by huge values leaves outputs at
    positions <= t0 bit for bit (probability exactly 0, not 1e-9-small; future
    scores of ~1e12 would survive a -1e9 sentinel), and the
    gradients reaching k, v at positions > t0 from dout at positions <= t0 are exactly 0."""
    rng = np.random.default_rng(8)
    B, T, C, t0 = 2, 7, 4, 3
    q, k, v = (randn(rng, B, T, C, dtype=dtype) for _ in range(3))
    out, _ = impl.attention_forward(q, k, v, 2)
    k2, v2 = k.copy(), v.copy()
    k2[:, t0 + 1:] = dtype(1e12)
    v2[:, t0 + 1:] = dtype(-3e4)
    out2, _ = impl.attention_forward(q, k2, v2, 2)
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_bitwise("attention out[:, :t0+1]", out2[:, :t0 + 1], out[:, :t0 + 1], ctx)
    dout = np.zeros((B, T, C), dtype=dtype)
    dout[:, :t0 + 1] = randn(rng, B, t0 + 1, C, dtype=dtype)
    _, cache = impl.attention_forward(q, k, v, 2)
    dq, dk, dv = impl.attention_backward(dout, cache)
    assert not dk[:, t0 + 1:].any() and not dv[:, t0 + 1:].any(), (
        f"{impl.name}: gradient leaked from positions <= {t0} into future k or v")


# --- cross-entropy --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_cross_entropy_uniform_logits(impl, dtype):
    """Equal logits give p = 1/V everywhere: loss = ln V and
    dlogits = (1/V - onehot) / (B*T), for any constant (here 7.25)."""
    B, T, V = 2, 3, 5
    logits = np.full((B, T, V), 7.25, dtype=dtype)
    targets = np.array([[0, 4, 2], [1, 1, 3]])
    loss, cache = impl.cross_entropy_forward(logits, targets)
    dlogits = impl.cross_entropy_backward(cache)
    check_dtype(impl, "dlogits", dlogits, dtype)
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_close("loss", np.array(loss), np.array(math.log(V)), RTOL[dtype], ctx)
    want = np.full((B, T, V), 1.0 / V)
    want[np.arange(B)[:, None], np.arange(T)[None, :], targets] -= 1.0
    assert_close("dlogits", dlogits, want / (B * T), RTOL[dtype], ctx)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_cross_entropy_matches_naive_loops(impl, dtype):
    rng = np.random.default_rng(9)
    B, T, V = 3, 2, 7
    logits = randn(rng, B, T, V, dtype=dtype, scale=3.0)
    targets = rng.integers(0, V, (B, T))
    loss, cache = impl.cross_entropy_forward(logits, targets)
    dlogits = impl.cross_entropy_backward(cache)
    want_loss, want_d = naive.cross_entropy(naive.tolist(logits), targets.tolist())
    assert isinstance(loss, float), f"{impl.name}: loss must be a Python float, got {type(loss).__name__}"
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_close("loss", np.array(loss), np.array(want_loss), RTOL[dtype], ctx)
    assert_close("dlogits", dlogits, want_d, RTOL[dtype], ctx)


@pytest.mark.parametrize("id_dtype", ["int8", "uint8", ">i2", "<u2", ">i4", ">u4", "<i8", ">u8"])
def test_ids_of_any_integer_dtype_and_byte_order(impl, id_dtype):
    """SPEC §errors: token and target ids may be of any integer dtype, signed or
    unsigned, of any width and either byte order (data read from a file may be
    big-endian), and are read as their values: embedding_forward and
    cross_entropy_forward give the bytes int64 ids give."""
    rng = np.random.default_rng(12)
    B, T, V, C = 2, 3, 100, 4
    wte, wpe = randn(rng, V, C, dtype=np.float32), randn(rng, T, C, dtype=np.float32)
    logits = randn(rng, B, T, V, dtype=np.float32, scale=2.0)
    tokens, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    targets[0, 0] = V - 1  # the largest id int8 holds here
    ctx = {"impl": impl.name, "ids": id_dtype}
    want, _ = impl.embedding_forward(tokens, wte, wpe)
    got, _ = impl.embedding_forward(tokens.astype(id_dtype), wte, wpe)
    assert_bitwise("embedding out", got, want, ctx)
    want_loss, want_cache = impl.cross_entropy_forward(logits, targets)
    got_loss, got_cache = impl.cross_entropy_forward(logits, targets.astype(id_dtype))
    assert got_loss == want_loss, f"{impl.name}: loss {got_loss!r} with {id_dtype} targets, {want_loss!r} with int64"
    assert_bitwise("dlogits", impl.cross_entropy_backward(got_cache), impl.cross_entropy_backward(want_cache), ctx)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_cross_entropy_is_stable_for_huge_logits(impl, dtype):
    """Max subtraction: logits [1e4, 1e4 + 1] (exact in float32; exp(1e4)
    overflows both dtypes) with target 0 give z - max = [-1, 0], so
    loss = log(e^-1 + 1) + 1 = log(1 + e) and dlogits = [1/(1+e) - 1, e/(1+e)]."""
    logits = np.array([[[1e4, 1e4 + 1.0]]], dtype=dtype)
    loss, cache = impl.cross_entropy_forward(logits, np.array([[0]]))
    dlogits = impl.cross_entropy_backward(cache)
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    e = math.e
    assert math.isfinite(loss) and np.all(np.isfinite(dlogits))
    assert_close("loss", np.array(loss), np.array(math.log(1.0 + e)), RTOL[dtype], ctx)
    assert_close("dlogits", dlogits, [[[1.0 / (1.0 + e) - 1.0, e / (1.0 + e)]]], RTOL[dtype], ctx)


# --- adversarial softmax magnitudes (a blind-spot class) -------------------------------
def exact_scores_qkv(kind: str, dtype, B=2, T=6, NH=2):
    """q, k, v [B, T, NH*4] whose scores are exact in float32: head size 4
    (scale 1/2), integer entries, so every q.k is an integer below 2^24 and
    s = q.k / 2 is exact in both dtypes; only the softmax rounds. Per head:
    q_t = (40, r) and k_u = (c_u, s_u) with r, s small integers, and
    - "negative": c_u = -40: every score near -800 (a running max that starts
      at 0 instead of at the first score makes every exp underflow: 0/0);
    - "positive": c_u = +40: every score near +800 (exp without the max
      subtracted overflows);
    - "diagonal": c_u = 40 u: each row's last unmasked score (the diagonal)
      is 800 above the one before it (a max taken over all but the last
      position overflows)."""
    rng = np.random.default_rng({"negative": 1, "positive": 2, "diagonal": 3}[kind])
    hs = 4
    q = rng.integers(-2, 3, (B, T, NH, hs)).astype(np.float64)
    k = rng.integers(-2, 3, (B, T, NH, hs)).astype(np.float64)
    q[..., 0] = 40.0
    c = {"negative": np.full(T, -40.0), "positive": np.full(T, 40.0), "diagonal": 40.0 * np.arange(T)}[kind]
    k[..., 0] = c[None, :, None]
    v = rng.standard_normal((B, T, NH, hs))
    return tuple(a.reshape(B, T, NH * hs).astype(dtype) for a in (q, k, v))


@pytest.mark.parametrize("kind", ["negative", "positive", "diagonal"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_attention_at_adversarial_magnitudes_matches_naive_loops(impl, dtype, kind):
    """Scores of +-800 and a diagonal 800 above the rest of its row (exact
    inputs, exact_scores_qkv): forward and backward against the float64 loop
    oracle, which subtracts each row's true maximum. Finite and equal to the
    oracle within the usual budget."""
    q, k, v = exact_scores_qkv(kind, dtype)
    NH = 2
    dout = np.random.default_rng(4).standard_normal(q.shape).astype(dtype)
    out, cache = impl.attention_forward(q, k, v, NH)
    dq, dk, dv = impl.attention_backward(dout, cache)
    B, T, C = q.shape
    hs = C // NH
    want = {name: np.zeros((B, T, C)) for name in ("out", "dq", "dk", "dv")}
    for b in range(B):
        for h in range(NH):
            cols = slice(h * hs, (h + 1) * hs)
            Q, K, Vv, D = (naive.tolist(a[b, :, cols]) for a in (q, k, v, dout))
            want["out"][b, :, cols] = naive.attention_head(Q, K, Vv)[0]
            for name, g in zip(("dq", "dk", "dv"), naive.attention_head_backward(D, Q, K, Vv)):
                want[name][b, :, cols] = g
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name, "scores": kind}
    for name, got in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        assert_close(f"attention {name}", got, want[name], RTOL[dtype], ctx)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_cross_entropy_mean_is_accumulated_in_float64(impl, dtype):
    """SPEC §forward: the per-position terms in the logits dtype, their mean in
    float64. On exact_logits every term is an exact integer and the mean is
    exactly representable, so the loss must equal it exactly (any order of a
    float64 sum of integers below 2^53 is exact); a float32 sum of these 2^16
    terms (about 4e7, past 2^24) is not. The logits are of magnitude 4000,
    both signs: max subtraction must be there and start from a score."""
    logits, targets, want = exact_logits(dtype)
    loss, cache = impl.cross_entropy_forward(logits, targets)
    assert loss == want, (f"{impl.name}: mean loss {loss!r}, exactly {want!r} "
                          f"(difference {loss - want:.3e}; SPEC §forward: float64 mean)")
    dlogits = impl.cross_entropy_backward(cache)
    N = targets.size
    onehot = np.zeros(logits.shape)
    onehot[0, np.arange(N), targets[0]] = 1.0
    p = (logits == logits.max(axis=-1, keepdims=True)).astype(np.float64)  # softmax: 1 at the max, < 1e-47 elsewhere
    assert_close("dlogits", dlogits, (p - onehot) / N, RTOL[dtype], {"impl": impl.name})


# --- the layer functions past fast's blocks (a blind-spot class) ---------------------------
# B 3, T 101, C 72, 4C 288, NH 6, V 67 (conformance.cases.BLOCKED): 303 rows, more
# than one 256-row GEMM block, five 64-row column-sum chunks (the last partial),
# 18 attention matrices (8 + 8 + 2), products above fast's split size. The
# oracle is the same formulas in float64 NumPy, vectorised here (pure-Python
# loops of this size would take minutes): it shares no code, no blocking and
# no summation order with an implementation.
def test_layers_past_fast_blocks_match_float64_formulas(impl):
    from conformance.cases import BLOCKED, BLOCKED_BT

    rng = np.random.default_rng(21)
    (B, T), C, V, NH = BLOCKED_BT, BLOCKED["n_embd"], BLOCKED["vocab_size"], BLOCKED["n_heads"]
    F, hs = 4 * C, C // NH
    f32 = lambda *s, scale=1.0: (rng.standard_normal(s) * scale).astype(np.float32)  # noqa: E731
    x, dout_c, dout_f = f32(B, T, C), f32(B, T, C), f32(B, T, F)
    gamma, beta = 1 + f32(C, scale=0.3), f32(C, scale=0.3)
    w, b = f32(C, F, scale=0.1), f32(F, scale=0.3)
    q, k, v = f32(B, T, C), f32(B, T, C), f32(B, T, C)
    tokens = rng.integers(0, V, (B, T))
    wte, wpe = f32(V, C), f32(BLOCKED["block_size"], C)
    logits, targets = f32(B, T, V, scale=3.0), rng.integers(0, V, (B, T))
    X, G, Bt, W, Bb, D, DF = (a.astype(np.float64) for a in (x, gamma, beta, w, b, dout_c, dout_f))
    ctx = {"impl": impl.name, "B": B, "T": T, "C": C}
    check = lambda name, got, want: assert_close(name, got, want, ORACLE_F32_RTOL, ctx)  # noqa: E731

    # layernorm: out = xhat gamma + beta; dx = rstd (g - mean g - xhat mean(g xhat)), g = dout gamma
    out, cache = impl.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = impl.layernorm_backward(dout_c, cache)
    mean = X.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((X - mean) ** 2).mean(-1, keepdims=True) + 1e-5)
    xhat = (X - mean) * rstd
    g = D * G
    check("layernorm out", out, xhat * G + Bt)
    check("layernorm dx", dx, rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True)))
    check("layernorm dgamma", dgamma, (D * xhat).sum((0, 1)))
    check("layernorm dbeta", dbeta, D.sum((0, 1)))

    # linear: out = x w + b; dx = dout w^T; dw = sum x^T dout; db = sum dout
    out, cache = impl.linear_forward(x, w, b)
    dx, dw, db = impl.linear_backward(dout_f, cache)
    check("linear out", out, np.einsum("btc,cf->btf", X, W) + Bb)
    check("linear dx", dx, np.einsum("btf,cf->btc", DF, W))
    check("linear dw", dw, np.einsum("btc,btf->cf", X, DF))
    check("linear db", db, DF.sum((0, 1)))

    # attention, per head: p = causal softmax(q k^T / sqrt(hs)), y = p v, and its backward
    out, cache = impl.attention_forward(q, k, v, NH)
    dq, dk, dv = impl.attention_backward(dout_c, cache)
    Qh, Kh, Vh, Dh = (a.astype(np.float64).reshape(B, T, NH, hs).transpose(0, 2, 1, 3) for a in (q, k, v, dout_c))
    s = np.einsum("bhtd,bhud->bhtu", Qh, Kh) / math.sqrt(hs)
    s = np.where(np.tril(np.ones((T, T), dtype=bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    dp = np.einsum("bhtd,bhud->bhtu", Dh, Vh)
    ds = p * (dp - (dp * p).sum(-1, keepdims=True))
    merge = lambda a: a.transpose(0, 2, 1, 3).reshape(B, T, C)  # noqa: E731
    check("attention out", out, merge(np.einsum("bhtu,bhud->bhtd", p, Vh)))
    check("attention dq", dq, merge(np.einsum("bhtu,bhud->bhtd", ds, Kh) / math.sqrt(hs)))
    check("attention dk", dk, merge(np.einsum("bhtu,bhtd->bhud", ds, Qh) / math.sqrt(hs)))
    check("attention dv", dv, merge(np.einsum("bhtu,bhtd->bhud", p, Dh)))

    # gelu and its derivative (tanh approximation)
    out, cache = impl.gelu_forward(x)
    dx = impl.gelu_backward(dout_c, cache)
    u = math.sqrt(2 / math.pi) * (X + 0.044715 * X ** 3)
    th = np.tanh(u)
    check("gelu out", out, 0.5 * X * (1 + th))
    check("gelu dx", dx, D * (0.5 * (1 + th) + 0.5 * X * (1 - th ** 2) * math.sqrt(2 / math.pi)
                              * (1 + 3 * 0.044715 * X ** 2)))

    # embedding: rows summed; gradients scattered by token id and by position
    out, cache = impl.embedding_forward(tokens, wte, wpe)
    dwte, dwpe = impl.embedding_backward(dout_c, cache)
    check("embedding out", out, wte.astype(np.float64)[tokens] + wpe.astype(np.float64)[:T])
    want_dwte = np.zeros((V, C))
    np.add.at(want_dwte, tokens.reshape(-1), D.reshape(-1, C))
    want_dwpe = np.zeros(wpe.shape)
    want_dwpe[:T] = D.sum(0)
    check("dwte", dwte, want_dwte)
    check("dwpe", dwpe, want_dwpe)

    # cross-entropy over 303 rows
    loss, cache = impl.cross_entropy_forward(logits, targets)
    dlogits = impl.cross_entropy_backward(cache)
    Z = logits.astype(np.float64)
    zmax = Z.max(-1, keepdims=True)
    lse = np.log(np.exp(Z - zmax).sum(-1)) + zmax[..., 0]
    probs = np.exp(Z - lse[..., None])
    onehot = np.zeros(Z.shape)
    np.put_along_axis(onehot, targets[..., None], 1.0, axis=-1)
    check("loss", np.array(loss), np.array((lse - np.take_along_axis(Z, targets[..., None], -1)[..., 0]).mean()))
    check("dlogits", dlogits, (probs - onehot) / (B * T))


# --- bad input --------------------------------------------------------------------------
F = np.zeros((2, 3, 4))


@pytest.mark.parametrize("call, names", [
    (lambda m: m.layernorm_forward(F, np.ones(5), np.zeros(5)), "gamma"),
    (lambda m: m.layernorm_forward(F.astype(np.int64), np.ones(4), np.zeros(4)), "x"),
    (lambda m: m.layernorm_forward(F, np.ones(4, dtype=np.float32), np.zeros(4)), "gamma"),
    (lambda m: m.linear_forward(F, np.zeros((5, 2))), "w"),
    (lambda m: m.linear_forward(F, np.zeros((4, 2)), np.zeros(3)), "b"),
    (lambda m: m.linear_forward(F, np.zeros(4)), "w"),
    (lambda m: m.attention_forward(F, F, F, 3), "n_heads"),
    (lambda m: m.attention_forward(F, F, F, 0), "n_heads"),
    (lambda m: m.attention_forward(F, F[:, :2], F, 2), "k"),
    (lambda m: m.attention_forward(F[0], F[0], F[0], 2), "q"),
    (lambda m: m.gelu_forward(np.zeros(3, dtype=np.int32)), "x"),
    (lambda m: m.embedding_forward(np.array([[0, 6]]), np.zeros((6, 4)), np.zeros((8, 4))), "tokens"),
    (lambda m: m.embedding_forward(np.array([[0, -1]]), np.zeros((6, 4)), np.zeros((8, 4))), "tokens"),
    (lambda m: m.embedding_forward(np.zeros((1, 9), dtype=np.int64), np.zeros((6, 4)), np.zeros((8, 4))), "T"),
    (lambda m: m.embedding_forward(np.zeros((1, 2)), np.zeros((6, 4)), np.zeros((8, 4))), "tokens"),
    (lambda m: m.cross_entropy_forward(F, np.array([[0, 1, 4], [0, 0, 0]])), "targets"),
    (lambda m: m.cross_entropy_forward(F, np.array([[0, 1], [0, 0]])), "targets"),
    (lambda m: m.cross_entropy_forward(F, np.zeros((2, 3))), "targets"),
    (lambda m: m.cross_entropy_forward(F[0], np.zeros((2, 3), dtype=np.int64)), "logits"),
    (lambda m: m.layernorm_forward(F, np.ones(4), np.zeros(5)), "beta"),
    (lambda m: m.attention_forward(F, F, F[:, :, :2], 2), "v"),
    (lambda m: m.embedding_forward(np.array([[0, 1]]), np.zeros((6, 4)), np.zeros((8, 5))), "wpe"),
    (lambda m: m.embedding_forward([[0, 1]], np.zeros((6, 4)), np.zeros((8, 4))), "tokens"),
    (lambda m: m.embedding_forward(np.zeros(3, dtype=np.int64), np.zeros((6, 4)), np.zeros((8, 4))), "tokens"),
    (lambda m: m.embedding_forward(np.zeros((1, 0), dtype=np.int64), np.zeros((6, 4)), np.zeros((8, 4))), "tokens"),
], ids=["ln-gamma-shape", "ln-int-x", "ln-mixed-dtype", "lin-w-rows", "lin-b-shape", "lin-w-rank",
        "attn-nh-divides", "attn-nh-zero", "attn-k-shape", "attn-rank", "gelu-int", "emb-id-V",
        "emb-id-neg", "emb-T-block", "emb-float-ids", "ce-target-V", "ce-target-shape",
        "ce-float-targets", "ce-logits-rank", "ln-beta-shape", "attn-v-shape", "emb-width",
        "emb-list-ids", "emb-rank-1", "emb-empty"])
def test_bad_layer_input_names_the_argument(impl, call, names):
    """SPEC §errors: ValueError whose message names the offending argument, as a word."""
    with pytest.raises(ValueError) as info:
        call(impl)
    assert _names(str(info.value), names), f"the message does not name {names}: {info.value}"


@pytest.mark.parametrize("bad, at", [(7, (1, 2)), (-1, (0, 3)), (-7, (1, 0)), (99, (0, 0))])
def test_embedding_names_the_bad_id_and_its_index(impl, bad, at):
    """SPEC §errors: a token id outside [0, V) is a ValueError naming tokens, the id
    and its index (a tuple, as numpy prints one). One bad id among valid ones, V = 6."""
    tokens = np.array([[0, 5, 1, 2], [3, 4, 5, 0]])
    tokens[at] = bad
    with pytest.raises(ValueError) as info:
        impl.embedding_forward(tokens, np.zeros((6, 4)), np.zeros((8, 4)))
    message = str(info.value)
    assert _names(message, "tokens"), message
    assert _names(message, str(bad)) and str(at) in message, f"id {bad} at {at}: {message}"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_layernorm_linear_gelu_take_x_of_any_rank(impl, dtype):
    """SPEC §model (contract table): layernorm_forward and linear_forward act on the last
    axis of an x of any rank >= 1 ([..., C]), gelu_forward elementwise on any shape; a
    single row [C] gives the values of that row in a batched [2, 3, 2, C] call, and its
    backward the gradients of a batched call whose dout is zero elsewhere."""
    rng = np.random.default_rng(11)
    C = 5
    x = randn(rng, 2, 3, 2, C, dtype=dtype)
    gamma, beta = randn(rng, C, dtype=dtype) + dtype(1), randn(rng, C, dtype=dtype)
    w, b = randn(rng, C, 3, dtype=dtype), randn(rng, 3, dtype=dtype)
    row = (1, 2, 0)
    rtol = RTOL[dtype]
    # layernorm
    out4, cache4 = impl.layernorm_forward(x, gamma, beta)
    out1, cache1 = impl.layernorm_forward(x[row], gamma, beta)
    assert out1.shape == (C,)
    assert_close("layernorm of one row", out1, out4[row], rtol)
    dout4 = np.zeros_like(out4)
    dout4[row] = randn(rng, C, dtype=dtype)
    grads4, grads1 = impl.layernorm_backward(dout4, cache4), impl.layernorm_backward(dout4[row], cache1)
    assert grads1[0].shape == (C,)
    for name, g1, g4 in zip(("dx", "dgamma", "dbeta"), grads1, (grads4[0][row], grads4[1], grads4[2])):
        assert_close(f"layernorm {name} of one row", g1, g4, rtol)
    # linear
    out4, cache4 = impl.linear_forward(x, w, b)
    out1, cache1 = impl.linear_forward(x[row], w, b)
    assert out1.shape == (3,)
    assert_close("linear of one row", out1, out4[row], rtol)
    dout4 = np.zeros_like(out4)
    dout4[row] = randn(rng, 3, dtype=dtype)
    grads4, grads1 = impl.linear_backward(dout4, cache4), impl.linear_backward(dout4[row], cache1)
    assert grads1[0].shape == (C,)
    for name, g1, g4 in zip(("dx", "dw", "db"), grads1, (grads4[0][row], grads4[1], grads4[2])):
        assert_close(f"linear {name} of one row", g1, g4, rtol)
    # gelu: elementwise, any shape (a 0-d array too)
    out4, _ = impl.gelu_forward(x)
    for part in (x[row], np.asarray(x[row + (3,)])):
        out, cache = impl.gelu_forward(part)
        assert out.shape == np.shape(part)
        assert impl.gelu_backward(np.ones_like(out), cache).shape == np.shape(part)
    assert_close("gelu of one row", impl.gelu_forward(x[row])[0], out4[row], rtol)


def _names(message: str, name: str) -> bool:
    """`name` occurs in `message` as a word (a one-letter argument such as `k` is not
    named by the `k` inside another word)."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


ATTN = np.zeros((2, 3, 4))  # [B, T, C] float64

# Every float array argument of a layer function: (function, good arguments by name,
# argument order, the rank each must have (None: any rank >= 1, "any": any rank at all)).
LAYER_CALLS = {
    "layernorm_forward": (dict(x=ATTN, gamma=np.ones(4), beta=np.zeros(4)), dict(x=None, gamma=1, beta=1)),
    "linear_forward": (dict(x=ATTN, w=np.zeros((4, 5)), b=np.zeros(5)), dict(x=None, w=2, b=1)),
    "attention_forward": (dict(q=ATTN, k=ATTN, v=ATTN, n_heads=2), dict(q=3, k=3, v=3)),
    "gelu_forward": (dict(x=ATTN), dict(x="any")),
    "embedding_forward": (dict(tokens=np.zeros((2, 3), dtype=np.int64), wte=np.zeros((6, 4)), wpe=np.zeros((8, 4))),
                          dict(wte=2, wpe=2)),
    "cross_entropy_forward": (dict(logits=np.zeros((2, 3, 6)), targets=np.zeros((2, 3), dtype=np.int64)),
                              dict(logits=3)),
}


def _bad_array_cases():
    """(function, argument, kind, bad value): not an ndarray, an integer array, another
    rank, and (for every float argument but the first) float32 among float64 inputs."""
    for function, (args, ranks) in LAYER_CALLS.items():
        for i, (name, rank) in enumerate(ranks.items()):
            good = args[name]
            yield function, name, "list", good.tolist()
            yield function, name, "int", good.astype(np.int64)
            if rank is None:
                yield function, name, "rank0", np.array(1.0)
            elif rank != "any":
                yield function, name, "rank+1", good[None]
                yield function, name, "rank-1", good[0]
            if i > 0:
                yield function, name, "float32", good.astype(np.float32)


@pytest.mark.parametrize("function, name, kind, bad", [pytest.param(*case, id=f"{case[0]}-{case[1]}-{case[2]}")
                                                        for case in _bad_array_cases()])
def test_layer_functions_name_the_bad_array(impl, function, name, kind, bad):
    """SPEC §errors: a layer function (and cross_entropy_forward) given a float argument
    that is not an ndarray, not float32/float64, of the wrong rank, or of another dtype
    than the first float input raises a ValueError naming that argument as a word."""
    args = dict(LAYER_CALLS[function][0])
    args[name] = bad
    with pytest.raises(ValueError) as info:
        getattr(impl, function)(**args)
    assert _names(str(info.value), name), f"{function}({name}: {kind}): the message does not name {name}: {info.value}"


@pytest.mark.parametrize("n_heads", [True, 2.0, "2", None, np.float64(2.0), -2])
def test_attention_n_heads_must_be_an_int(impl, n_heads):
    """SPEC §errors: n_heads must be an int (bool refused, as everywhere in the
    contract: SPEC §contract-errors) that divides C; ValueError naming n_heads.
    Each of these values "divides" C = 4 in Python arithmetic (True == 1, 2.0)."""
    with pytest.raises(ValueError, match="n_heads"):
        impl.attention_forward(ATTN, ATTN, ATTN, n_heads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_functions_leave_their_inputs_unchanged(impl, dtype):
    """SPEC §model: every forward and backward returns new arrays and writes into
    none of its arguments (an implementation may work in place on its own
    buffers, never on the caller's: a caller may reuse dout for a second
    backward, as gradient checking does)."""
    rng = np.random.default_rng(7)
    B, T, C, V, NH = 2, 5, 8, 11, 2
    arr = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    x, gamma, beta, w, b = arr(B, T, C), arr(C), arr(C), arr(C, 3 * C), arr(3 * C)
    q, k, v, dout_c, dout_3c = arr(B, T, C), arr(B, T, C), arr(B, T, C), arr(B, T, C), arr(B, T, 3 * C)
    wte, wpe, logits = arr(V, C), arr(T, C), arr(B, T, V)
    tokens, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    inputs = dict(x=x, gamma=gamma, beta=beta, w=w, b=b, q=q, k=k, v=v, dout_c=dout_c, dout_3c=dout_3c,
                  wte=wte, wpe=wpe, logits=logits, tokens=tokens, targets=targets)
    before = {name: a.copy() for name, a in inputs.items()}
    _, cache = impl.layernorm_forward(x, gamma, beta)
    impl.layernorm_backward(dout_c, cache)
    _, cache = impl.linear_forward(x, w, b)
    impl.linear_backward(dout_3c, cache)
    _, cache = impl.gelu_forward(x)
    impl.gelu_backward(dout_c, cache)
    _, cache = impl.attention_forward(q, k, v, NH)
    impl.attention_backward(dout_c, cache)
    _, cache = impl.embedding_forward(tokens, wte, wpe)
    impl.embedding_backward(dout_c, cache)
    _, cache = impl.cross_entropy_forward(logits, targets)
    impl.cross_entropy_backward(cache)
    for name, a in inputs.items():
        assert_bitwise(f"argument {name!r} after the layer functions", a, before[name], {"impl": impl.name})


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_every_layer_output_has_the_inputs_dtype(impl, dtype):
    """SPEC §forward: every operation runs in the dtype of its float inputs and
    returns that dtype: each array a forward or backward of a layer pair returns
    (outputs and every gradient, the bias gradient too). Rows past one block of
    64 and widths that are not multiples of it, so chunked paths run too."""
    rng = np.random.default_rng(13)
    B, T, C, V, NH = 3, 45, 12, 7, 3
    arr = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    x, gamma, beta, w, b = arr(B, T, C), arr(C) + dtype(1), arr(C), arr(C, 2 * C), arr(2 * C)
    q, k, v, dout_c, dout_2c = arr(B, T, C), arr(B, T, C), arr(B, T, C), arr(B, T, C), arr(B, T, 2 * C)
    wte, wpe, logits = arr(V, C), arr(T, C), arr(B, T, V)
    tokens, targets = rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))
    got = {}
    got["layernorm out"], cache = impl.layernorm_forward(x, gamma, beta)
    got["layernorm dx"], got["layernorm dgamma"], got["layernorm dbeta"] = impl.layernorm_backward(dout_c, cache)
    for bias in (b, None):
        tag = "linear" if bias is not None else "linear without bias"
        got[f"{tag} out"], cache = impl.linear_forward(x, w, bias)
        got[f"{tag} dx"], got[f"{tag} dw"], db = impl.linear_backward(dout_2c, cache)
        if bias is not None:
            got[f"{tag} db"] = db
    got["gelu out"], cache = impl.gelu_forward(x)
    got["gelu dx"] = impl.gelu_backward(dout_c, cache)
    got["attention out"], cache = impl.attention_forward(q, k, v, NH)
    got["attention dq"], got["attention dk"], got["attention dv"] = impl.attention_backward(dout_c, cache)
    got["embedding out"], cache = impl.embedding_forward(tokens, wte, wpe)
    got["dwte"], got["dwpe"] = impl.embedding_backward(dout_c, cache)
    _, cache = impl.cross_entropy_forward(logits, targets)
    got["dlogits"] = impl.cross_entropy_backward(cache)
    for name, a in got.items():
        check_dtype(impl, name, a, dtype)
