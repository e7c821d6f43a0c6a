"""float64 backward against finite differences (SPEC §numerics and §tolerances).

The oracle is the implementation's own *forward* loss, differentiated
numerically with the fourth-order central stencil
    (L(x-2h) - 8 L(x-h) + 8 L(x+h) - L(x+2h)) / (12 h),   h = FD_STEP,
so the analytic backward is checked against something it does not share.
Relative error per coordinate: |a - n| / max(|a|, |n|, FD_ABS_FLOOR) <= FD_REL.

The parameters are not the GPT-2 init (std 0.02 makes most gradients tiny
and the model nearly linear): every tensor is drawn N(0, 0.2^2), gammas
1 + N(0, 0.2^2), so every nonlinearity (softmax, LayerNorm, GELU) is exercised
and most gradients sit well above the floor.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings

from conformance import strategies
from conformance.tolerances import FD_ABS_FLOOR, FD_REL, FD_STEP
import reference

GRADCHECK_STD = 0.2  # spread of the gradcheck parameters (see module docstring)
COORDS_PER_TENSOR = 3  # the largest |gradient| plus random coordinates
# Step halvings when the first estimate disagrees (see fd_agrees): h/8 keeps
# the stencil's rounding error 1.5 eps |L| / h below ~1e-10.
FD_REFINEMENTS = 3


def fd_derivative(loss_fn, arr: np.ndarray, idx: tuple, h: float = FD_STEP) -> float:
    """Fourth-order central difference of loss_fn() in arr[idx] (restored after)."""
    old = arr[idx]
    values = []
    for step in (-2, -1, 1, 2):
        arr[idx] = old + step * h
        values.append(loss_fn())
    arr[idx] = old
    return (values[0] - 8.0 * values[1] + 8.0 * values[2] - values[3]) / (12.0 * h)


def rel_error(analytic: float, numeric: float) -> float:
    return abs(analytic - numeric) / max(abs(analytic), abs(numeric), FD_ABS_FLOOR)


def fd_agrees(loss_fn, arr: np.ndarray, idx: tuple, analytic: float) -> tuple[bool, float]:
    """Does a finite-difference estimate of dL/darr[idx] agree with `analytic`?

    First the stencil at h = FD_STEP. Where the loss curves on a scale near h
    (LayerNorm over C = 2 nearly equal inputs has features of width
    sqrt(1e-5) = 3e-3), its truncation error h^4 |L5| / 30 can exceed FD_REL;
    then the step is halved up to FD_REFINEMENTS times, each time also trying
    the Richardson extrapolation (16 D(h/2) - D(h)) / 15 (sixth order). Every
    estimate is an oracle of the same derivative, more accurate than the
    first; the tolerance is never widened. Returns (agrees, last estimate)."""
    h = FD_STEP
    previous = fd_derivative(loss_fn, arr, idx, h)
    if rel_error(analytic, previous) <= FD_REL:
        return True, previous
    for _ in range(FD_REFINEMENTS):
        h /= 2
        current = fd_derivative(loss_fn, arr, idx, h)
        extrapolated = (16.0 * current - previous) / 15.0
        if rel_error(analytic, current) <= FD_REL or rel_error(analytic, extrapolated) <= FD_REL:
            return True, current
        previous = current
    return False, extrapolated


def float64_params_or_skip(impl, config, seed):
    params = impl.init_params(config, seed=seed, dtype=np.float64)
    if params.data.dtype != np.float64:
        pytest.skip(f"{impl.name} does not run in float64 (SPEC §numerics: only required of reference)")
    rng = np.random.default_rng(seed)
    params.data[:] = rng.normal(0.0, GRADCHECK_STD, params.data.size)
    for name in params.names():
        if name.endswith(".gamma"):
            params[name] += 1.0
    return params


def sample_coords(rng, grad: np.ndarray, name: str, tokens: np.ndarray) -> list[tuple]:
    """The coordinate of largest |gradient| plus random ones; for the embeddings
    the random rows are ones the batch reaches (used tokens, positions < T),
    plus one unreached row, whose gradient must be exactly 0."""
    coords = [tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(grad))), grad.shape))]
    if name == "token_embedding":
        used = np.unique(tokens)
        rows = list(rng.choice(used, size=COORDS_PER_TENSOR - 1))
        unused = np.setdiff1d(np.arange(grad.shape[0]), used)
        if unused.size:
            rows.append(int(rng.choice(unused)))
        coords += [(int(r), int(rng.integers(grad.shape[1]))) for r in rows]
    elif name == "position_embedding":
        T = tokens.shape[1]
        rows = list(rng.integers(0, T, size=COORDS_PER_TENSOR - 1))
        if T < grad.shape[0]:
            rows.append(int(rng.integers(T, grad.shape[0])))
        coords += [(int(r), int(rng.integers(grad.shape[1]))) for r in rows]
    else:
        coords += [tuple(int(rng.integers(s)) for s in grad.shape) for _ in range(COORDS_PER_TENSOR - 1)]
    return coords


# Drawn models per run: each costs ~150 forwards (every tensor, three coordinates,
# a four-point stencil), so the quick loop draws QUICK_FD_EXAMPLES of them and
# the full suite as many as the hypothesis profile asks (dev 25, ci 60).
QUICK_FD_EXAMPLES = 5
FD_RUNS = [pytest.param(QUICK_FD_EXAMPLES, id="quick"), pytest.param(None, id="full", marks=pytest.mark.slow)]


def _examples(n):
    """`settings(max_examples=n)` for the quick run, the profile's own count otherwise."""
    return settings(max_examples=n) if n is not None else (lambda f: f)


@pytest.mark.parametrize("examples", FD_RUNS)
def test_model_gradients_match_finite_differences(impl, examples):
    """Every parameter tensor, sampled coordinates, on small drawn configs.
    (The @given function is nested: hypothesis probes its arguments for mock
    attributes, which the `impl` wrapper would answer with a skip.)"""

    @_examples(examples)
    @given(case=strategies.config_and_batch())
    def check(case):
        check_model_gradients(impl, *case)

    check()


@pytest.mark.parametrize("examples", FD_RUNS)
def test_model_gradients_match_finite_differences_with_dropout(impl, examples):
    """The same with dropout on (SPEC §dropout): the masks are a fixed function of
    (seed, step), so the loss is a deterministic function of the parameters
    and the backward must use exactly the forward's masks at all four sites.
    p = 0.3 drops enough elements in these small models to be seen. Every run
    also checks one fixed model in which all four sites act: two heads and
    T > 1, so attention has probabilities to drop (with T = 1 each is 1 and
    its gradient is 0, whatever the mask)."""

    @_examples(examples)
    @given(case=strategies.config_and_batch())
    @example(case=(reference.Config(vocab_size=13, n_embd=8, n_heads=2, n_layers=1, block_size=8), 2, 7, 2024))
    def check(case):
        config, B, T, seed = case
        check_model_gradients(impl, config.replace(dropout_rate=0.3), B, T, seed,
                              dropout=impl.DropoutKey(seed=seed, step=seed % 1000))

    check()


def check_model_gradients(impl, config, B, T, seed, dropout=None):
    check_model_gradients_on(impl, float64_params_or_skip(impl, config, seed), B, T, seed, dropout)


def check_model_gradients_on(impl, params, B, T, seed, dropout=None):
    config = params.config
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, config.vocab_size, (B, T))
    targets = rng.integers(0, config.vocab_size, (B, T))
    extra = {} if dropout is None else {"dropout": dropout}
    _, _, cache = impl.forward(params, tokens, targets, **extra)
    grads = impl.backward(params, cache)
    assert grads.data.dtype == np.float64

    def loss_fn():
        return impl.forward(params, tokens, targets, **extra)[1]

    failures = []
    for name in params.names():
        for idx in sample_coords(rng, grads[name], name, tokens):
            analytic = float(grads[name][idx])
            ok, numeric = fd_agrees(loss_fn, params[name], idx, analytic)
            if not ok:
                failures.append(f"{name}{idx}: backward {analytic:.12e}, finite difference {numeric:.12e}, "
                                f"relative error {rel_error(analytic, numeric):.2e}")
    assert not failures, (
        f"{impl.name}: {len(failures)} gradient coordinates exceed FD_REL={FD_REL:g} "
        f"[config={config}, B={B}, T={T}, seed={seed}, dropout={dropout}]:\n" + "\n".join(failures[:20]))


# --- the layer pairs, every coordinate ------------------------------------------------
def check_all_coords(impl, label, loss_fn, inputs: dict, analytic: dict):
    failures = []
    for name, arr in inputs.items():
        for idx in np.ndindex(arr.shape):
            a = float(analytic[name][idx])
            ok, numeric = fd_agrees(loss_fn, arr, idx, a)
            if not ok:
                failures.append(f"{name}{idx}: backward {a:.12e}, finite difference {numeric:.12e}")
    assert not failures, f"{impl.name} {label}: gradients off by more than FD_REL={FD_REL:g}:\n" + "\n".join(failures[:20])


def projection_loss(rng, out_shape):
    """L(out) = sum(out * R): dL/dout = R, a dense random upstream gradient."""
    R = rng.standard_normal(out_shape)
    return R, lambda out: float(np.sum(out * R))


def test_layernorm_gradients_fd(impl):
    rng = np.random.default_rng(11)
    x, gamma, beta = rng.standard_normal((2, 3, 5)), 1 + 0.3 * rng.standard_normal(5), rng.standard_normal(5)
    R, L = projection_loss(rng, x.shape)
    _, cache = impl.layernorm_forward(x, gamma, beta)
    dx, dgamma, dbeta = impl.layernorm_backward(R, cache)
    check_all_coords(impl, "layernorm", lambda: L(impl.layernorm_forward(x, gamma, beta)[0]),
                     {"x": x, "gamma": gamma, "beta": beta}, {"x": dx, "gamma": dgamma, "beta": dbeta})


def test_linear_gradients_fd(impl):
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    R, L = projection_loss(rng, (2, 3, 3))
    _, cache = impl.linear_forward(x, w, b)
    dx, dw, db = impl.linear_backward(R, cache)
    check_all_coords(impl, "linear", lambda: L(impl.linear_forward(x, w, b)[0]),
                     {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db})


@pytest.mark.parametrize("n_heads", [1, 2, 3])
def test_attention_gradients_fd(impl, n_heads):
    rng = np.random.default_rng(13 + n_heads)
    q, k, v = (rng.standard_normal((2, 4, 6)) for _ in range(3))
    R, L = projection_loss(rng, q.shape)
    _, cache = impl.attention_forward(q, k, v, n_heads)
    dq, dk, dv = impl.attention_backward(R, cache)
    check_all_coords(impl, f"attention (n_heads={n_heads})", lambda: L(impl.attention_forward(q, k, v, n_heads)[0]),
                     {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


def test_gelu_gradients_fd(impl):
    rng = np.random.default_rng(14)
    x = 2.0 * rng.standard_normal((3, 7))
    R, L = projection_loss(rng, x.shape)
    _, cache = impl.gelu_forward(x)
    dx = impl.gelu_backward(R, cache)
    check_all_coords(impl, "gelu", lambda: L(impl.gelu_forward(x)[0]), {"x": x}, {"x": dx})


def test_embedding_gradients_fd(impl):
    rng = np.random.default_rng(15)
    tokens = np.array([[1, 4, 1], [0, 1, 2]])
    wte, wpe = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    R, L = projection_loss(rng, (2, 3, 3))
    _, cache = impl.embedding_forward(tokens, wte, wpe)
    dwte, dwpe = impl.embedding_backward(R, cache)
    check_all_coords(impl, "embedding", lambda: L(impl.embedding_forward(tokens, wte, wpe)[0]),
                     {"wte": wte, "wpe": wpe}, {"wte": dwte, "wpe": dwpe})


def test_cross_entropy_gradients_fd(impl):
    rng = np.random.default_rng(16)
    logits = 2.0 * rng.standard_normal((2, 3, 6))
    targets = rng.integers(0, 6, (2, 3))
    _, cache = impl.cross_entropy_forward(logits, targets)
    dlogits = impl.cross_entropy_backward(cache)
    check_all_coords(impl, "cross-entropy", lambda: impl.cross_entropy_forward(logits, targets)[0],
                     {"logits": logits}, {"logits": dlogits})


@pytest.mark.parametrize("kind", ["negative", "diagonal"])
def test_attention_gradients_fd_at_adversarial_magnitudes(impl, kind):
    """Every coordinate of q, k, v where every score is near -800 or each
    diagonal score 800 above its row (test_layers.exact_scores_qkv): the
    float64 backward against finite differences of the forward."""
    from conformance.test_layers import exact_scores_qkv

    q, k, v = exact_scores_qkv(kind, np.float64, B=1, T=4)
    R, L = projection_loss(np.random.default_rng(17), q.shape)
    _, cache = impl.attention_forward(q, k, v, 2)
    dq, dk, dv = impl.attention_backward(R, cache)
    check_all_coords(impl, f"attention ({kind} scores)", lambda: L(impl.attention_forward(q, k, v, 2)[0]),
                     {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv})


@pytest.mark.slow
def test_model_gradients_fd_past_fast_blocks_away_from_init(impl):
    """The model's float64 backward against finite differences at
    conformance.cases.BLOCKED (B*T = 303 rows: past every block and chunk of
    fast, multiples of none), with parameters moved away from the init
    (no bias 0, no gamma 1) on top of the drawn gradcheck params."""
    from conformance import cases

    params = float64_params_or_skip(impl, impl.Config(**cases.BLOCKED), seed=5)
    cases.moved(params, seed=5)
    B, T = cases.BLOCKED_BT
    check_model_gradients_on(impl, params, B, T, seed=5)
