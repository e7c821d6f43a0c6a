"""Model-level forward/backward (SPEC §model) against independent oracles:
a pure-Python loop model (conformance/naive_model.py), the baseline loss at
init derived from the init statistics, exact properties (causality, batch
independence, zero-by-symmetry gradients), float32 against float64, and the
bad-input errors. Finite differences: test_gradcheck.py."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

import reference
from conformance import naive_model as naive
from conformance.assertions import assert_bitwise, assert_rel_norm, assert_scaled_max
from conformance.tolerances import (
    BASELINE_ABS,
    BASELINE_EXCESS_PER_C,
    BASELINE_EXPECTED_ABS,
    BATCH_F32_RTOL,
    BATCH_F64_RTOL,
    F32_VS_F64_GRAD_REL_NORM,
    F32_VS_F64_LOGITS_RTOL,
    INIT_STAT_SIGMAS,
    ORACLE_F32_RTOL,
    ORACLE_F64_RTOL,
    ZERO_GRAD_F64_REL,
)

SMALL = reference.Config(vocab_size=11, n_embd=8, n_heads=2, n_layers=2, block_size=8)
DTYPES = [np.float32, np.float64]
DT_IDS = ["f32", "f64"]
# the baseline needs N = B*T positions for the mean of -z_target (std sigma/sqrt(N),
# sigma = sqrt(0.0004 C) = 0.45 for medium) to sit well inside 0.03: N = 4096
# puts 0.03 at 4.3 standard errors for medium, 8.6 for tiny.
BASELINE_B, BASELINE_T = 16, 256
PRESET_PARAMS = [  # small and medium take 10-50 s in reference: full suite only
    pytest.param("tiny"),
    pytest.param("small", marks=pytest.mark.slow),
    pytest.param("medium", marks=pytest.mark.slow),
]


def params_for(impl, config, dtype, seed=0, std=None):
    """Init params of `dtype`; skip an implementation without float64 (only the
    reference must run in float64, SPEC §numerics). With `std`, every tensor
    is redrawn N(0, std^2) and gammas 1 + N(0, std^2), to exercise the
    nonlinearities instead of the near-linear GPT-2 init."""
    params = impl.init_params(config, seed=seed, dtype=dtype)
    if params.data.dtype != dtype:
        pytest.skip(f"{impl.name} does not run in {np.dtype(dtype).name}")
    if std is not None:
        rng = np.random.default_rng(seed + 1000)
        params.data[:] = rng.normal(0.0, std, params.data.size).astype(dtype)
        for name in params.names():
            if name.endswith(".gamma"):
                params[name] += dtype(1.0)
    return params


def tokens_for(config, B, T, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, config.vocab_size, (B, T)), rng.integers(0, config.vocab_size, (B, T))


# --- shapes, dtypes, the naive model ------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_forward_backward_shapes_and_dtypes(impl, dtype):
    params = params_for(impl, SMALL, dtype)
    tokens, targets = tokens_for(SMALL, 3, 5)
    logits, loss, cache = impl.forward(params, tokens, targets)
    assert isinstance(logits, np.ndarray) and logits.shape == (3, 5, SMALL.vocab_size)
    assert logits.dtype == dtype, f"{impl.name}: logits dtype {logits.dtype}, params are {np.dtype(dtype)}"
    assert isinstance(loss, float) and math.isfinite(loss)
    logits_only, no_loss, _ = impl.forward(params, tokens)
    assert no_loss is None, f"{impl.name}: forward without targets must return loss None"
    assert_bitwise("logits without targets", logits_only, logits, {"impl": impl.name})
    grads = impl.backward(params, cache)
    assert grads.data.dtype == dtype, f"{impl.name}: gradients dtype {grads.data.dtype}, params are {np.dtype(dtype)}"
    assert grads.names() == params.names()
    for name in params.names():
        assert grads[name].shape == params[name].shape, name
        assert np.all(np.isfinite(grads[name])), f"{name} has non-finite gradients"


@pytest.mark.parametrize("token_dtype, target_dtype", [("int32", "uint16"), (">i4", ">u8"), ("uint8", ">i2")])
def test_int32_and_int64_tokens_agree(impl, token_dtype, target_dtype):
    """SPEC §errors: ids of any integer dtype and byte order are read as their
    values: the logits and loss of int64 ids, bit for bit."""
    params = params_for(impl, SMALL, np.float32)
    tokens, targets = tokens_for(SMALL, 2, 4)
    a = impl.forward(params, tokens.astype(np.int64), targets.astype(np.int64))
    b = impl.forward(params, tokens.astype(token_dtype), targets.astype(target_dtype))
    assert_bitwise("logits", b[0], a[0], {"impl": impl.name, "ids": (token_dtype, target_dtype)})
    assert a[1] == b[1]


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_forward_matches_naive_loop_model(impl, dtype):
    """Logits and loss against conformance/naive_model.model_forward, a
    position-by-position Python-float transcription of SPEC §config."""
    config = reference.Config(vocab_size=7, n_embd=6, n_heads=3, n_layers=2, block_size=5)
    params = params_for(impl, config, dtype, seed=3, std=0.3)
    tokens, targets = tokens_for(config, 2, 5, seed=3)
    logits, loss, _ = impl.forward(params, tokens, targets)
    want_logits = naive.model_forward({n: params[n] for n in params.names()}, config, tokens)
    want_loss, _ = naive.cross_entropy(want_logits, targets.tolist())
    rtol = ORACLE_F64_RTOL if dtype == np.float64 else ORACLE_F32_RTOL
    ctx = {"impl": impl.name, "dtype": np.dtype(dtype).name}
    assert_scaled_max("logits", logits, want_logits, rtol, ctx)
    assert_scaled_max("loss", np.array(loss), np.array(want_loss), rtol, ctx)


# --- baseline loss at init ------------------------------------------------------------------
def baseline_expected(config) -> float:
    """ln V + sigma^2 / 2, sigma^2 = 0.0004 C (SPEC §numerics): at init the
    final LayerNorm output has unit-variance entries (gamma 1, beta 0) and the
    output weights std 0.02, so each logit is ~N(0, 0.0004 C); for lognormal
    terms E[log sum_v exp z_v] ~ ln V + sigma^2 / 2 and E[z_target] = 0."""
    return math.log(config.vocab_size) + BASELINE_EXCESS_PER_C * config.n_embd


@pytest.mark.parametrize("preset_name", PRESET_PARAMS)
def test_baseline_loss_random_tokens(impl, preset_name):
    config = impl.preset(preset_name)
    params = impl.init_params(config, seed=0)
    tokens, targets = tokens_for(config, BASELINE_B, BASELINE_T, seed=1)
    _, loss, _ = impl.forward(params, tokens, targets)
    ctx = f"[impl={impl.name}, preset={preset_name}, B={BASELINE_B}, T={BASELINE_T}, seed=0]"
    ln_v = math.log(config.vocab_size)
    assert abs(loss - ln_v) <= BASELINE_ABS, f"loss at init {loss:.4f}, ln V = {ln_v:.4f} {ctx}"
    want = baseline_expected(config)
    assert abs(loss - want) <= BASELINE_EXPECTED_ABS, (
        f"loss at init {loss:.4f}, expected ln V + 0.0002 C = {want:.4f} {ctx}")


def corpus_windows(data: bytes, B: int, T: int):
    """B windows spread evenly over the corpus, as a byte-level token stream
    (ids 0..255 < V = 512: the reference Tokenizer is not used here, so the
    check does not depend on BPE training; SPEC §numerics)."""
    ids = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    if ids.size < T + 1:
        pytest.fail(f"corpus has {ids.size} bytes, fewer than T + 1 = {T + 1}")
    starts = np.linspace(0, ids.size - T - 1, B).astype(np.int64)
    x = np.stack([ids[s:s + T] for s in starts])
    y = np.stack([ids[s + 1:s + T + 1] for s in starts])
    return x, y


def check_corpus_baseline(impl, preset_name: str, data: bytes) -> None:
    """On real text the targets crowd onto few ids, so the loss's excess
    lse - z_target carries the noise of mean z_target, whose standard error
    over the init draw is up to sigma sqrt(sum_c f_c^2) (f_c: target frequencies;
    0.054 for tiny on bytes, more than the brief's 0.03). Hence:
    |loss - ln V| <= 0.15; the target-free part, mean log-sum-exp of the logits,
    within 0.03 of ln V + sigma^2/2; and mean z_target within INIT_STAT_SIGMAS
    standard errors of 0 (SPEC §numerics)."""
    config = impl.preset(preset_name)
    params = impl.init_params(config, seed=0)
    x, y = corpus_windows(data, BASELINE_B, BASELINE_T)
    logits, loss, _ = impl.forward(params, x, y)
    ctx = f"[impl={impl.name}, preset={preset_name}, byte tokens, B={BASELINE_B}, T={BASELINE_T}]"
    ln_v = math.log(config.vocab_size)
    assert abs(loss - ln_v) <= BASELINE_ABS, f"loss at init {loss:.4f}, ln V = {ln_v:.4f} {ctx}"
    z = logits.astype(np.float64)  # (B, T, V)
    zmax = z.max(axis=-1, keepdims=True)
    lse = float((np.log(np.exp(z - zmax).sum(axis=-1)) + zmax[..., 0]).mean())
    want = baseline_expected(config)
    assert abs(lse - want) <= BASELINE_EXPECTED_ABS, (
        f"mean log-sum-exp of the logits at init {lse:.4f}, expected ln V + 0.0002 C = {want:.4f} {ctx}")
    z_target = float(np.take_along_axis(z, y[..., None], axis=-1).mean())
    freq = np.bincount(y.ravel(), minlength=config.vocab_size) / y.size
    stderr = math.sqrt(2 * BASELINE_EXCESS_PER_C * config.n_embd * float((freq ** 2).sum()))
    assert abs(z_target) <= INIT_STAT_SIGMAS * stderr, (
        f"mean target logit at init {z_target:.4f}, standard error {stderr:.4f} {ctx}")


@pytest.mark.corpus
@pytest.mark.parametrize("preset_name", PRESET_PARAMS)
def test_baseline_loss_corpus_tokens(impl, preset_name, corpus_bytes):
    check_corpus_baseline(impl, preset_name, corpus_bytes)


# --- exact properties ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_causality_bit_for_bit(impl, dtype):
    """Changing the token at position t0 leaves logits at positions < t0
    identical bit for bit (future attention weights are exactly 0, and every
    other operation is per position), and changes the logits at t0."""
    params = params_for(impl, SMALL, dtype, std=0.3)
    tokens, _ = tokens_for(SMALL, 2, 7, seed=5)
    t0 = 4
    changed = tokens.copy()
    changed[:, t0:] = (tokens[:, t0:] + 1 + np.arange(7 - t0)) % SMALL.vocab_size
    a, _, _ = impl.forward(params, tokens)
    b, _, _ = impl.forward(params, changed)
    assert_bitwise("logits before the change", b[:, :t0], a[:, :t0], {"impl": impl.name, "t0": t0})
    assert not np.array_equal(a[:, t0], b[:, t0]), "changing a token did not change its own logits"


# Batch independence on a batch large enough to meet fast's blocks (SPEC §parallel-split):
# B*T = 390 rows is more than one 256-row GEMM block and not a multiple of the
# 64-row chunks, B*NH = 12 attention matrices more than one 8-matrix batch,
# and the products are above the size fast splits; the row alone (130 rows)
# is cut differently (column blocks). V, C and T are no powers of two.
BATCH_CONFIG = reference.Config(vocab_size=67, n_embd=48, n_heads=4, n_layers=2, block_size=130)
BATCH_B, BATCH_T = 3, 130


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
def test_batch_independence(impl, dtype):
    """Row b of a batch equals that row run alone, to the summation-order
    budget of the dtype (BATCH_F32_RTOL, BATCH_F64_RTOL; max|a - b| / max|b|):
    not bit for bit, because the batch is one [B*T, C] product and the row a
    [T, C] one, and BLAS chooses kernel, blocking and accumulation order by
    shape and CPU (SPEC §tolerances says why). A leak between rows moves the
    logits by orders of magnitude more (the catalogue's `batch-rows-leak`).
    Drawn parameters: no bias is 0, no gamma 1."""
    config = BATCH_CONFIG
    params = params_for(impl, config, dtype, std=0.3)
    tokens, _ = tokens_for(config, BATCH_B, BATCH_T, seed=6)
    batch, _, _ = impl.forward(params, tokens)
    limit = BATCH_F64_RTOL if dtype == np.float64 else BATCH_F32_RTOL
    for b in range(tokens.shape[0]):
        alone, _, _ = impl.forward(params, tokens[b:b + 1])
        ctx = {"impl": impl.name, "row": b, "dtype": np.dtype(dtype).name, "B": BATCH_B, "T": BATCH_T}
        assert_scaled_max("logits row alone vs in batch", alone[0], batch[b], limit, ctx)


def test_float32_agrees_with_float64(impl):
    """The same (float32-drawn) params run in float32 and widened to float64:
    logits and every gradient tensor agree to the section-8 budgets (k.bias,
    zero in exact arithmetic, is checked by test_k_bias_gradient_is_zero)."""
    config = impl.preset("tiny")
    p32 = impl.init_params(config, seed=0, dtype=np.float32)
    p64 = p32.astype(np.float64)
    tokens, targets = tokens_for(config, 2, 64, seed=7)
    l32, _, c32 = impl.forward(p32, tokens, targets)
    try:
        l64, _, c64 = impl.forward(p64, tokens, targets)
    except (TypeError, ValueError) as exc:
        pytest.skip(f"{impl.name} does not run in float64: {exc}")
    ctx = {"impl": impl.name, "preset": "tiny", "B": 2, "T": 64}
    assert_scaled_max("logits f32 vs f64", l32, l64, F32_VS_F64_LOGITS_RTOL, ctx)
    g32, g64 = impl.backward(p32, c32), impl.backward(p64, c64)
    for name in p32.names():
        if not name.endswith(".k.bias"):
            assert_rel_norm(f"grad {name} f32 vs f64", g32[name], g64[name], F32_VS_F64_GRAD_REL_NORM, ctx)


def test_k_bias_gradient_is_zero(impl):
    """A bias b on k adds q_t . b to every score of row t; softmax ignores a
    per-row constant, so dL/d(k.bias) = 0 in exact arithmetic. In float64 its
    norm stays within ZERO_GRAD_F64_REL of the k.weight gradient's."""
    config = reference.Config(vocab_size=13, n_embd=12, n_heads=3, n_layers=2, block_size=9)
    params = params_for(impl, config, np.float64, std=0.3)
    tokens, targets = tokens_for(config, 3, 9, seed=8)
    grads = impl.backward(params, impl.forward(params, tokens, targets)[2])
    for i in range(config.n_layers):
        kb = float(np.linalg.norm(grads[f"blocks.{i}.k.bias"]))
        kw = float(np.linalg.norm(grads[f"blocks.{i}.k.weight"]))
        assert kw > 0 and kb <= ZERO_GRAD_F64_REL * kw, (
            f"{impl.name}: ||d blocks.{i}.k.bias|| = {kb:.3e} vs ||d k.weight|| = {kw:.3e}")


def test_forward_backward_leave_params_alone_and_repeat(impl):
    params = params_for(impl, SMALL, np.float32, std=0.3)
    before = params.data.copy()
    tokens, targets = tokens_for(SMALL, 2, 6, seed=9)
    _, _, cache = impl.forward(params, tokens, targets)
    g1 = impl.backward(params, cache)
    g2 = impl.backward(params, cache)
    assert_bitwise("params after forward+backward", params.data, before, {"impl": impl.name})
    assert_bitwise("gradients of a second backward on the same cache", g2.data, g1.data, {"impl": impl.name})


# --- bad input ------------------------------------------------------------------------------
def _bad_cases():
    V, bs = SMALL.vocab_size, SMALL.block_size
    ok = np.zeros((2, 3), dtype=np.int64)
    return [
        ("id-equals-V", np.array([[0, V]]), None, "tokens"),
        ("id-negative", np.array([[-1, 0]]), None, "tokens"),
        ("T-over-block", np.zeros((1, bs + 1), dtype=np.int64), None, "block_size"),
        ("float-ids", np.zeros((1, 3)), None, "tokens"),
        ("rank-1", np.zeros(3, dtype=np.int64), None, "tokens"),
        ("rank-3", np.zeros((1, 2, 3), dtype=np.int64), None, "tokens"),
        ("empty", np.zeros((1, 0), dtype=np.int64), None, "tokens"),
        ("list-ids", [[0, 1]], None, "tokens"),
        ("target-V", ok, np.full((2, 3), V), "targets"),
        ("target-shape", ok, np.zeros((2, 2), dtype=np.int64), "targets"),
        ("target-float", ok, np.zeros((2, 3)), "targets"),
    ]


@pytest.mark.parametrize("tokens, targets, names", [c[1:] for c in _bad_cases()], ids=[c[0] for c in _bad_cases()])
def test_bad_tokens_name_the_argument(impl, tokens, targets, names):
    """SPEC §errors: ValueError naming the argument (and the limit it broke)."""
    params = impl.init_params(SMALL, seed=0)
    with pytest.raises(ValueError, match=names):
        impl.forward(params, tokens, targets)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_params_are_named(impl, value):
    params = impl.init_params(SMALL, seed=0)
    params["blocks.1.fc2.bias"][3] = value
    with pytest.raises(ValueError, match=r"blocks\.1\.fc2\.bias"):
        impl.forward(params, *tokens_for(SMALL, 1, 4))


@pytest.mark.parametrize("which", ["tokens", "targets"])
@pytest.mark.parametrize("bad, at", [(11, (1, 2)), (-1, (0, 3)), (-7, (1, 0)), (99, (0, 0))])
def test_bad_ids_are_named_with_their_index(impl, which, bad, at):
    """SPEC §errors: a token or target id outside [0, V) is a ValueError naming the
    argument (as a word), the id and its index (a tuple, as numpy prints one). V = 11; one bad id
    among valid ones, so the index is that of the bad id and of no other."""
    params = impl.init_params(SMALL, seed=0)
    ids = {"tokens": np.array([[0, 5, 1, 2], [3, 4, 10, 0]]), "targets": np.array([[1, 2, 3, 4], [5, 6, 7, 8]])}
    ids[which][at] = bad
    with pytest.raises(ValueError) as info:
        impl.forward(params, ids["tokens"], ids["targets"])
    message = str(info.value)
    named = re.search(rf"(?<!\w){which}(?!\w)", message)  # the argument, as a word
    assert named and re.search(rf"(?<![\w-]){bad}(?!\w)", message) and str(at) in message, (
        f"{which} id {bad} at {at}: {message}")


@pytest.mark.parametrize("name, index", [("blocks.1.q.weight", (2, 5)), ("token_embedding", (10, 0)),
                                         ("ln_final.beta", (7,))])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_params_are_named_with_index_and_value(impl, name, index, value):
    """SPEC §errors: a non-finite parameter is a ValueError naming the tensor, the index
    (a tuple) and the value (nan, inf or -inf), for any tensor of the table."""
    params = impl.init_params(SMALL, seed=0)
    params[name][index] = value
    with pytest.raises(ValueError) as info:
        impl.forward(params, *tokens_for(SMALL, 1, 4))
    message = str(info.value)
    assert name in message and str(index) in message, message
    assert re.search(rf"(?<![\w-]){re.escape(str(value))}\b", message), f"{value} not in: {message}"


def test_backward_refuses_a_foreign_cache_or_params(impl):
    """SPEC §errors: backward refuses a cache its forward did not return (naming
    `cache`) and params that are not a Params or not of the forward's config and dtype
    (naming `params`); the gradients of a good call are unchanged afterwards."""
    params = impl.init_params(SMALL, seed=0)
    x, y = tokens_for(SMALL, 2, 3)
    _, _, cache = impl.forward(params, x, y)
    want = impl.backward(params, cache).data.copy()
    other = reference.Config(vocab_size=11, n_embd=8, n_heads=2, n_layers=1, block_size=8)
    for bad_cache in ({}, "cache", None, [cache]):
        with pytest.raises(ValueError, match="cache"):
            impl.backward(params, bad_cache)
    for bad_params in (params.data, impl.init_params(other, seed=0), params.astype(np.float64)):
        with pytest.raises(ValueError, match="params"):
            impl.backward(bad_params, cache)
    assert_bitwise("gradients after refused calls", impl.backward(params, cache).data, want, {"impl": impl.name})


def test_params_must_be_params(impl):
    params = impl.init_params(SMALL, seed=0)
    with pytest.raises(ValueError, match="params"):
        impl.forward(params.data, np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="params"):
        impl.forward(_float16_params(params), np.zeros((1, 2), dtype=np.int64))


def _float16_params(params):
    """A Params-shaped object holding float16 (Params itself refuses to build one)."""
    half = params.copy()
    half.data = params.data.astype(np.float16)
    return half


def test_backward_needs_a_loss(impl):
    params = impl.init_params(SMALL, seed=0)
    _, _, cache = impl.forward(params, np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="targets"):
        impl.backward(params, cache)
