"""Gradient norm, clipping, AdamW and the learning-rate schedule (SPEC §optimiser).

Independent oracles: math.fsum norms, a per-element scalar loop that follows
the SPEC's AdamW order with NumPy float32 scalars (bitwise), closed-form
first-step and bias-correction values, a hand-written decay list, a float64
textbook AdamW over many steps, a NumPy float32 statement of the order over a
buffer of several of fast's chunks (conformance/cases.py MULTI_CHUNK), and the
seed's learning-rate table.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

from conformance import strategies as sts
from conformance.assertions import assert_allclose_rel, assert_bitwise, assert_rel_norm
from conformance import cases
from conformance.cases import flat_params
from conformance.tolerances import ADAMW_F64_RTOL, ADAMW_SIGN_STEP_RTOL, GRAD_NORM_RTOL

# V, C, NH, L, block_size: small enough for scalar Python loops over every element
SMALL = dict(vocab_size=7, n_embd=4, n_heads=2, n_layers=2, block_size=3)

# Written by hand from SPEC §optimiser, not read from the parameter table.
DECAYED_SUFFIXES = ("q.weight", "k.weight", "v.weight", "out.weight", "fc1.weight", "fc2.weight")


def _is_decayed(name: str) -> bool:
    return name == "output_weight" or (name.startswith("blocks.") and name.split(".", 2)[2] in DECAYED_SUFFIXES)


def _params(impl, seed=0, dtype=np.float32):
    """init_params of `dtype`; an implementation without float64 is skipped
    (SPEC §numerics: only the reference must run in float64)."""
    config = impl.Config(**SMALL)
    params = impl.init_params(config, seed=seed, dtype=dtype)
    if params.data.dtype != dtype:
        pytest.skip(f"{impl.name} does not run in {np.dtype(dtype).name}")
    return params


def _small_params(impl, seed):
    """Every weight ~N(0, 0.02^2), LayerNorm gammas included: keeps ulp(p) / lr
    small so the rounding of `p - update` stays inside ADAMW_SIGN_STEP_RTOL."""
    config = impl.Config(**SMALL)
    rng = np.random.default_rng(seed)
    return impl.Params(config, (rng.standard_normal(impl.n_params(config)) * 0.02).astype(np.float32))


def _grads_like(impl, params, seed, scale=1.0, min_abs=0.0):
    """Gradients of the params' dtype (float64 ones use all 53 bits)."""
    F = params.data.dtype.type
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(params.data.size).astype(F) * F(scale)
    if min_abs:
        g = np.where(np.abs(g) < min_abs, np.copysign(F(min_abs), g), g).astype(F)
    return impl.Params(params.config, g)


# --- gradient norm and clipping -----------------------------------------------
def test_grad_norm_matches_fsum(impl):
    """sqrt(sum g^2) accumulated in float64 (SPEC §optimiser) vs an exactly-rounded math.fsum."""
    params = _params(impl)
    grads = _grads_like(impl, params, seed=1, scale=3.0)
    want = math.sqrt(math.fsum(float(x) * float(x) for x in grads.data))
    got = impl.grad_norm(grads)
    assert isinstance(got, float)
    assert_allclose_rel("grad_norm", got, want, GRAD_NORM_RTOL, {"impl": impl.name})


def test_grad_norm_hand_value(impl):
    """Gradients 3 and 4 in two tensors, zero elsewhere: norm 5 exactly."""
    grads = impl.Params(impl.Config(**SMALL))
    grads["token_embedding"][0, 0] = 3.0
    grads["output_weight"][1, 2] = -4.0
    assert impl.grad_norm(grads) == 5.0


def test_clip_below_threshold_leaves_grads(impl):
    params = _params(impl)
    grads = _grads_like(impl, params, seed=2, scale=1e-3)
    before = grads.data.copy()
    norm = impl.clip_grad_norm(grads, max_norm=1.0)
    want = math.sqrt(math.fsum(float(x) ** 2 for x in before))
    assert norm < 1.0
    assert_allclose_rel("pre-clip norm", norm, want, GRAD_NORM_RTOL)
    assert_bitwise("grads below max_norm", grads.data, before)


def test_clip_at_threshold_leaves_grads(impl):
    """Four gradients of 0.5: sum of squares 1.0 exactly, so norm == max_norm: no clip (norm > max_norm only)."""
    grads = impl.Params(impl.Config(**SMALL))
    grads.data[[0, 5, 17, 40]] = 0.5
    before = grads.data.copy()
    norm = impl.clip_grad_norm(grads, max_norm=1.0)
    assert norm == 1.0
    assert_bitwise("grads at max_norm", grads.data, before)


@pytest.mark.parametrize("max_norm", [1.0, 0.25, 3.0])
def test_clip_above_threshold_scales_by_float32_ratio(impl, max_norm):
    params = _params(impl)
    grads = _grads_like(impl, params, seed=3, scale=2.0)
    before = grads.data.copy()
    want_norm = math.sqrt(math.fsum(float(x) ** 2 for x in before))
    assert want_norm > max_norm
    norm = impl.clip_grad_norm(grads, max_norm=max_norm)
    assert_allclose_rel("pre-clip norm", norm, want_norm, GRAD_NORM_RTOL)
    scale = np.float32(max_norm / norm)
    assert_bitwise("clipped grads", grads.data, before * scale, {"max_norm": max_norm})
    after = math.sqrt(math.fsum(float(x) ** 2 for x in grads.data))
    # scale is max_norm/norm rounded to float32, and each product is rounded:
    # the post-clip norm is max_norm to float32 precision.
    assert abs(after - max_norm) <= 4 * np.finfo(np.float32).eps * max_norm


def test_clip_default_max_norm_is_one(impl):
    """SPEC §contract and §optimiser: `clip_grad_norm(grads)` clips at max_norm 1.0: gradients of
    norm above 1 are scaled by F(1 / norm)."""
    grads = _grads_like(impl, _params(impl), seed=4, scale=2.0)
    before = grads.data.copy()
    norm = impl.clip_grad_norm(grads)
    assert norm > 1.0
    assert_bitwise("grads clipped at the default max_norm", grads.data, before * np.float32(1.0 / norm))


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_clip_rejects_bad_max_norm(impl, bad):
    grads = impl.Params(impl.Config(**SMALL))
    with pytest.raises(ValueError, match="max_norm"):
        impl.clip_grad_norm(grads, max_norm=bad)


# --- AdamW: per-element scalar oracle -------------------------------------------
def _adamw_scalar_oracle(p, g, m, v, t, lr, b1, b2, eps, wd, decayed):
    """SPEC §optimiser element by element, NumPy scalars of the parameter dtype
    F (float32, or float64 throughout for float64 params), no arrays.

    Returns new (p, m, v) arrays of that dtype. Deliberately a Python loop over
    elements: independent of any vectorised implementation.
    """
    f = p.dtype.type
    lr_f, b1_f, b2_f, eps_f, wd_f = f(lr), f(b1), f(b2), f(eps), f(wd)
    decay = f(1.0 - float(lr_f) * float(wd_f))
    omb1, omb2 = f(1.0 - float(b1_f)), f(1.0 - float(b2_f))
    bc1, bc2 = f(1.0 - float(b1_f) ** t), f(1.0 - float(b2_f) ** t)
    p, m, v = p.copy(), m.copy(), v.copy()
    for i in range(p.size):
        pi, gi, mi, vi = p[i], g[i], m[i], v[i]
        if decayed[i]:
            pi = pi * decay
        mi = b1_f * mi + omb1 * gi
        vi = b2_f * vi + omb2 * gi * gi
        mhat = mi / bc1
        vhat = vi / bc2
        pi = pi - lr_f * mhat / (np.sqrt(vhat) + eps_f)
        assert type(pi) is f and type(mi) is f and type(vi) is f
        p[i], m[i], v[i] = pi, mi, vi
    return p, m, v


def _decay_flags(params):
    flags = np.zeros(params.data.size, dtype=bool)
    for name in params.names():
        if _is_decayed(name):
            start = params.offset(name)
            flags[start:start + params[name].size] = True
    return flags


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("hyper", [
    dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1),
    dict(lr=3e-4, beta1=0.8, beta2=0.999, eps=1e-6, weight_decay=0.0),
    dict(lr=0.1, beta1=0.0, beta2=0.5, eps=1e-3, weight_decay=0.3),
])
def test_adamw_bitwise_vs_scalar_loop(impl, hyper, dtype):
    """Five steps with fresh gradients each step, bit for bit against the scalar
    oracle, in float32 and in float64 (SPEC §optimiser: float64 params use float64
    throughout, by the same rules; the square root is correctly rounded in both)."""
    params = _params(impl, seed=4, dtype=dtype)
    state = impl.adamw_init(params)
    flags = _decay_flags(params)
    p, m, v = params.data.copy(), np.zeros_like(params.data), np.zeros_like(params.data)
    for t in range(1, 6):
        grads = _grads_like(impl, params, seed=100 + t, scale=0.1)
        p, m, v = _adamw_scalar_oracle(p, grads.data, m, v, t, hyper["lr"], hyper["beta1"],
                                       hyper["beta2"], hyper["eps"], hyper["weight_decay"], flags)
        impl.adamw_step(params, grads, state, **hyper)
        ctx = {"impl": impl.name, "t": t, "dtype": np.dtype(dtype).name, **hyper}
        assert state.step == t
        assert_bitwise("params", params.data, p, ctx)
        assert_bitwise("m", state.m.data, m, ctx)
        assert_bitwise("v", state.v.data, v, ctx)


def test_adamw_defaults_are_spec_values(impl):
    """beta1 0.9, beta2 0.95, eps 1e-8, weight_decay 0.1 (SPEC §optimiser): defaults == explicit."""
    a, b = _params(impl, seed=5), _params(impl, seed=5)
    sa, sb = impl.adamw_init(a), impl.adamw_init(b)
    grads = _grads_like(impl, a, seed=6)
    impl.adamw_step(a, grads, sa, 1e-3)
    impl.adamw_step(b, grads, sb, 1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1)
    assert_bitwise("params", a.data, b.data)
    assert (sa.beta1, sa.beta2, sa.eps) == (float(np.float32(0.9)), float(np.float32(0.95)), float(np.float32(1e-8)))


def test_adamw_init_is_zero(impl):
    params = _params(impl)
    state = impl.adamw_init(params)
    assert state.step == 0
    assert state.m.data.shape == params.data.shape and state.m.dtype == params.dtype
    assert not state.m.data.any() and not state.v.data.any()
    assert state.m.data is not state.v.data and state.m.data is not params.data


# --- AdamW: closed forms ----------------------------------------------------------
def test_first_step_moves_by_lr_sign_g(impl):
    """From m = v = 0 at t = 1: m = (1-b1) g, v = (1-b2) g^2, bias corrections
    divide exactly those factors out, so mhat = g, vhat = g^2 and the update is
    lr * g / (|g| + eps) = lr * sign(g) (|g| >= 1e-2 >> eps). Weight decay 0
    here; the decayed case is checked below."""
    lr = 1e-3
    params = _small_params(impl, seed=7)
    before = params.data.astype(np.float64)
    grads = _grads_like(impl, params, seed=8, min_abs=1e-2)
    state = impl.adamw_init(params)
    impl.adamw_step(params, grads, state, lr, weight_decay=0.0)
    moved = (before - params.data.astype(np.float64)) / lr
    assert_allclose_rel("(p0 - p1) / lr", moved, np.sign(grads.data).astype(np.float64),
                        ADAMW_SIGN_STEP_RTOL, {"impl": impl.name})


def test_first_step_with_decay_closed_form(impl):
    """Decayed tensors: p1 = p0 (1 - lr wd) - lr sign(g); others p1 = p0 - lr sign(g)."""
    lr, wd = 1e-2, 0.5
    params = _small_params(impl, seed=9)
    before = params.data.astype(np.float64)
    grads = _grads_like(impl, params, seed=10, min_abs=1e-2)
    state = impl.adamw_init(params)
    impl.adamw_step(params, grads, state, lr, weight_decay=wd)
    flags = _decay_flags(params)
    want = np.where(flags, before * (1 - lr * wd), before) - lr * np.sign(grads.data)
    moved = (before - params.data.astype(np.float64)) / lr
    want_moved = (before - want) / lr
    assert_allclose_rel("(p0 - p1) / lr", moved, want_moved, ADAMW_SIGN_STEP_RTOL, {"impl": impl.name})


def test_bias_correction_keeps_step_size_constant(impl):
    """With a constant gradient g: m_t = (1 - b1^t) g and v_t = (1 - b2^t) g^2
    exactly (geometric sums), so mhat = g, vhat = g^2 at every t and every step
    moves by lr * sign(g). Without bias correction the first step would be
    (1-b1)/sqrt(1-b2) = 0.447 lr: the check fails if a correction is missing."""
    lr = 1e-3
    params = _small_params(impl, seed=11)
    grads = _grads_like(impl, params, seed=12, min_abs=1e-2)
    state = impl.adamw_init(params)
    for t in range(1, 8):
        before = params.data.astype(np.float64)
        impl.adamw_step(params, grads, state, lr, weight_decay=0.0)
        moved = (before - params.data.astype(np.float64)) / lr
        assert_allclose_rel("(p_{t-1} - p_t) / lr", moved, np.sign(grads.data).astype(np.float64),
                            ADAMW_SIGN_STEP_RTOL, {"impl": impl.name, "t": t})


# (0.1, 0.3): float32(1 - f64(lr) f64(wd)) = 0.96999997 but 1 - lr*wd evaluated in
# float32 arithmetic gives 0.97, so this pair checks the single rounding of SPEC §optimiser.
@pytest.mark.parametrize("lr, wd", [(0.01, 0.1), (0.1, 0.3)])
def test_decay_mask_tensor_by_tensor(impl, lr, wd):
    """Zero gradients: m = v = 0 so the Adam term is exactly 0 (0 / (0 + eps));
    decayed tensors are multiplied by float32(1 - lr wd), the rest are untouched.
    Decayed = q, k, v, out, fc1, fc2 weights and the output projection (hand list)."""
    params = _params(impl, seed=13)
    before = params.copy()
    grads = params.zeros_like()
    state = impl.adamw_init(params)
    impl.adamw_step(params, grads, state, lr, weight_decay=wd)
    decay = np.float32(1.0 - float(np.float32(lr)) * float(np.float32(wd)))
    names = params.names()
    assert sum(_is_decayed(n) for n in names) == 6 * SMALL["n_layers"] + 1
    for name in names:
        want = before[name] * decay if _is_decayed(name) else before[name]
        assert_bitwise(name, params[name], want, {"impl": impl.name, "decayed": _is_decayed(name)})


def _adamw_f64(p, grads_seq, lr, b1, b2, eps, wd, decayed):
    """Textbook decoupled AdamW (Loshchilov & Hutter) in float64."""
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads_seq, start=1):
        p = np.where(decayed, p * (1.0 - lr * wd), p)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        p = p - lr * (m / (1.0 - b1 ** t)) / (np.sqrt(v / (1.0 - b2 ** t)) + eps)
    return p


def test_adamw_many_steps_vs_float64(impl):
    """100 float32 steps vs the float64 textbook recurrence on the same
    (float32-representable) hyperparameters and gradients: per tensor
    ||p32 - p64|| / ||p64|| within ADAMW_F64_RTOL (errors add up ~ steps * 2^-24)."""
    f = lambda x: float(np.float32(x))  # noqa: E731 - hyperparameters as float32 values
    lr, b1, b2, eps, wd = f(2e-3), f(0.9), f(0.95), f(1e-8), f(0.1)
    params = _params(impl, seed=14)
    p64 = params.data.astype(np.float64)
    state = impl.adamw_init(params)
    grads_seq = []
    for t in range(100):
        grads = _grads_like(impl, params, seed=1000 + t, scale=0.05)
        grads_seq.append(grads.data.astype(np.float64))
        impl.adamw_step(params, grads, state, lr, beta1=b1, beta2=b2, eps=eps, weight_decay=wd)
    want = impl.Params(params.config, _adamw_f64(p64, grads_seq, lr, b1, b2, eps, wd, _decay_flags(params)))
    for name in params.names():
        assert_rel_norm(name, params[name], want[name], ADAMW_F64_RTOL, {"impl": impl.name, "steps": 100})


@pytest.mark.parametrize("kwargs, word", [
    (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"), (dict(lr=1e-3, beta1=1.0), "beta1"),
    (dict(lr=1e-3, beta2=-0.1), "beta2"), (dict(lr=1e-3, beta2=1.0), "beta2"), (dict(lr=1e-3, eps=0.0), "eps"),
    (dict(lr=1e-3, weight_decay=-0.5), "weight_decay"),
])
def test_adamw_rejects_bad_hyperparameters(impl, kwargs, word):
    params = _params(impl)
    state = impl.adamw_init(params)
    before = params.data.copy()
    with pytest.raises(ValueError, match=word):
        impl.adamw_step(params, params.zeros_like(), state, **kwargs)
    assert state.step == 0
    assert_bitwise("params after rejected step", params.data, before)


def test_adamw_rejects_mismatched_grads(impl):
    params = _params(impl)
    other = impl.init_params(impl.Config(**{**SMALL, "vocab_size": 9}))
    with pytest.raises(ValueError, match="grads"):
        impl.adamw_step(params, other, impl.adamw_init(params), 1e-3)


@pytest.mark.parametrize("moment", ["m", "v"])
@pytest.mark.parametrize("kind", ["size", "dtype"])
def test_adamw_rejects_a_state_of_another_model(impl, moment, kind):
    """SPEC §contract-errors: a state whose m or v differs from the params in size or dtype is
    refused, naming `state`, and nothing is modified."""
    params = _params(impl)
    state = impl.adamw_init(params)
    if kind == "size":
        bad = impl.adamw_init(impl.init_params(impl.Config(**{**SMALL, "vocab_size": 9})))
    else:
        bad = impl.adamw_init(params.astype(np.float64))
    setattr(state, moment, getattr(bad, moment))
    before = params.data.copy()
    with pytest.raises(ValueError, match="state"):
        impl.adamw_step(params, params.zeros_like(), state, 1e-3)
    assert state.step == 0
    assert_bitwise("params after rejected step", params.data, before)


# --- learning rate ----------------------------------------------------------------
def test_learning_rate_seed_table(impl):
    """The seed chapter's table: base 3e-4, 1000 warmup steps, lr = base * step / warmup:
    step 0 -> 0.000000, 200 -> 0.000060, ..., 1000 -> 0.000300."""
    for step, shown in [(0, "0.000000"), (200, "0.000060"), (400, "0.000120"),
                        (600, "0.000180"), (800, "0.000240"), (1000, "0.000300")]:
        assert f"{impl.learning_rate(step, 3e-4, 1000, 5000):.6f}" == shown


def test_learning_rate_warmup_exact(impl):
    """Warmup values in float64: base * step / warmup exactly as written."""
    for step in range(10):
        assert impl.learning_rate(step, 0.1, 10, 100) == 0.1 * step / 10
    assert impl.learning_rate(0, 0.1, 0, 100) == 0.1  # no warmup: base from step 0


def test_learning_rate_cosine_hand_values(impl):
    """Cosine from base at the end of warmup to min_lr at total_steps:
    warmup 10, total 110 -> progress 0.5 at step 60 gives (base + min) / 2."""
    base, low = 1e-3, 1e-4
    lr = lambda s: impl.learning_rate(s, base, 10, 110, schedule="cosine", min_lr=low)  # noqa: E731
    assert lr(10) == base
    assert lr(60) == pytest.approx((base + low) / 2, rel=1e-15)
    assert lr(35) == pytest.approx(low + 0.5 * (base - low) * (1 + math.cos(math.pi * 0.25)), rel=1e-15)
    assert lr(110) == low
    assert lr(10_000) == lr(110)  # clamped after total_steps


def test_learning_rate_cosine_edges(impl):
    """SPEC §optimiser: progress = (step - warmup) / max(1, total - warmup), min_lr from
    progress 1 on; so with one step after warmup, that step already gives min_lr.
    min_lr defaults to 0.0, and min_lr equal to base_lr is allowed (a constant rate)."""
    assert impl.learning_rate(3, 1e-3, 3, 4, schedule="cosine", min_lr=1e-4) == 1e-3
    assert impl.learning_rate(4, 1e-3, 3, 4, schedule="cosine", min_lr=1e-4) == 1e-4
    assert impl.learning_rate(1, 1e-3, 0, 1, schedule="cosine", min_lr=1e-4) == 1e-4
    assert impl.learning_rate(20, 1e-3, 0, 20, schedule="cosine") == 0.0
    assert [impl.learning_rate(s, 1e-3, 2, 9, schedule="cosine", min_lr=1e-3) for s in range(2, 12)] == [1e-3] * 10


def test_learning_rate_properties(impl):
    """Pure, within [0, base], non-decreasing in warmup, non-increasing after;
    constant schedule is exactly base after warmup."""
    learning_rate = impl.learning_rate

    @given(args=sts.schedule_args())
    def check(args):
        base, warmup, total, schedule, min_lr = args
        values = [learning_rate(s, base, warmup, total, schedule=schedule, min_lr=min_lr)
                  for s in range(total + 3)]
        again = [learning_rate(s, base, warmup, total, schedule=schedule, min_lr=min_lr)
                 for s in range(total + 3)]
        assert values == again
        assert all(0.0 <= x <= base for x in values)
        assert values[0] == (0.0 if warmup > 0 else base)
        assert all(a <= b for a, b in zip(values[:warmup + 1], values[1:warmup + 1]))
        tail = values[warmup:]
        assert all(a >= b for a, b in zip(tail, tail[1:]))
        assert tail[0] == base  # the end of warmup is base_lr exactly, for both schedules
        if schedule == "constant":
            assert all(x == base for x in tail)
        else:
            assert values[-1] == min_lr  # from total_steps on: min_lr exactly

    check()


@pytest.mark.parametrize("args, word", [
    ((-1, 1e-3, 0, 10), "step"), ((0, -1e-3, 0, 10), "base_lr"), ((0, 1e-3, -2, 10), "warmup_steps"),
    ((0, 1e-3, 0, -1), "total_steps"), ((1.5, 1e-3, 0, 10), "step"),
    ((0, 1e-3, True, 10), "warmup_steps"), ((0, 1e-3, 0, True), "total_steps"), ((True, 1e-3, 0, 10), "step"),
])
def test_learning_rate_rejects_bad_input(impl, args, word):
    with pytest.raises(ValueError, match=word):
        impl.learning_rate(*args)


def test_learning_rate_rejects_bad_schedule(impl):
    with pytest.raises(ValueError, match="schedule"):
        impl.learning_rate(0, 1e-3, 0, 10, schedule="linear")
    with pytest.raises(ValueError, match="min_lr"):
        impl.learning_rate(0, 1e-3, 0, 10, schedule="cosine", min_lr=1.0)


# --- buffers of several chunks (SPEC §parallel-split: fast's flat-buffer kernels work in chunks) ---------
def _adamw_numpy(p, g, m, v, mask, lr, b1, b2, eps, wd, t):
    """SPEC §optimiser in NumPy float32, written from the SPEC text (oracle)."""
    F = np.float32
    lr, b1, b2, eps, wd = F(lr), F(b1), F(b2), F(eps), F(wd)
    decay = F(1.0 - float(lr) * float(wd))
    omb1, omb2 = F(1.0 - float(b1)), F(1.0 - float(b2))
    bc1, bc2 = F(1.0 - float(b1) ** t), F(1.0 - float(b2) ** t)
    p = np.where(mask, p * decay, p)
    m = b1 * m + omb1 * g
    v = b2 * v + (omb2 * g) * g
    p = p - (lr * (m / bc1)) / (np.sqrt(v / bc2) + eps)
    return p, m, v


@pytest.mark.parametrize("spec", [cases.MULTI_CHUNK, cases.ONE_PAST], ids=["multi-chunk", "one-past-2^15"])
def test_adamw_bitwise_vs_numpy_float32_order_over_chunks(impl, spec):
    """Three AdamW steps over a buffer of several kernel chunks (and over one of
    2^15 + 1 elements, SPEC §optimiser: every element is updated) equal, bit for bit, a
    NumPy float32 statement of the SPEC §optimiser order."""
    params = flat_params(impl, 0, 0.05, spec)
    state = impl.adamw_init(params)
    p, m, v = params.data.copy(), state.m.data.copy(), state.v.data.copy()
    mask = params.decay_mask()
    for t in (1, 2, 3):
        grads = flat_params(impl, 10 + t, 0.3, spec)
        impl.adamw_step(params, grads, state, 3e-4)
        p, m, v = _adamw_numpy(p, grads.data, m, v, mask, 3e-4, 0.9, 0.95, 1e-8, 0.1, t)
        ctx = {"impl": impl.name, "t": t, "P": p.size}
        assert_bitwise("params", params.data, p, ctx)
        assert_bitwise("m", state.m.data, m, ctx)
        assert_bitwise("v", state.v.data, v, ctx)


def test_grad_norm_multi_chunk_matches_fsum(impl):
    """A norm over several chunks (fixed-chunk float64 partial sums) vs math.fsum."""
    grads = flat_params(impl, 3, 2.0)
    want = math.sqrt(math.fsum(float(x) * float(x) for x in grads.data))
    assert_allclose_rel("grad_norm", impl.grad_norm(grads), want, GRAD_NORM_RTOL, {"impl": impl.name})
