"""Generation (SPEC §training): greedy, temperature, top-k, seeded draws,
the block_size window, errors.

Oracles: a hand-built "successor" model whose next-token distribution is
known in closed form (derivation in `successor_model`), and a naive Python
loop re-deriving each sampled token from the logits with SPEC §training's rule.
"""
from __future__ import annotations

import inspect
import math
import os
import warnings

import numpy as np
import pytest

from conformance.tolerances import LOGITS_RTOL, SAMPLE_FREQ_SIGMAS

V = 8  # vocab = n_embd, so a token's embedding can be one-hot
SUCC = [3, 0, 5, 7, 1, 2, 6, 4]  # a permutation: the model's favourite successor of each token


def successor_model(impl, scale, block_size=4):
    """A model that is exactly a bigram table, built by hand.

    Position embeddings, q/k/v/out and fc1/fc2 weights and every bias are 0, so
    each block adds 0 to the residual (attention output is out.weight @ (probs @ v)
    with v = 0; the MLP output is fc2.weight @ gelu(.) = 0). The residual is the
    one-hot embedding e_t. The final LayerNorm (gamma 1, beta 0) maps it to
    a*e_t + b*1 with a = 1/sqrt(var + 1e-5), var = (1/C)(1 - 1/C), and
    output_weight = scale * P with P[t, SUCC[t]] = 1 gives
    logits_j = scale*a*[j == SUCC[t]] + scale*b: every other logit is the same
    number (bitwise: each is one product), so
    p(SUCC[t]) = e^{scale a / temp} / (e^{scale a / temp} + V - 1),
    and the rest share 1 - p equally.
    """
    config = impl.Config(vocab_size=V, n_embd=V, n_heads=2, n_layers=1, block_size=block_size)
    params = impl.Params(config)
    params["token_embedding"] = np.eye(V, dtype=np.float32)
    for name in ("blocks.0.ln1.gamma", "blocks.0.ln2.gamma", "ln_final.gamma"):
        params[name] = 1.0
    w = np.zeros((V, V), dtype=np.float32)
    w[np.arange(V), SUCC] = scale
    params["output_weight"] = w
    return params


def ln_gain():
    var = (1 / V) * (1 - 1 / V)
    return 1 / math.sqrt(var + 1e-5)


def p_successor(scale, temperature):
    e = math.exp(scale * ln_gain() / temperature)
    return e / (e + V - 1)


def test_greedy_follows_the_successor_chain_past_block_size(impl):
    """Temperature 0: always the argmax, SUCC[t]. 20 new tokens with block_size 4
    also shows the context window slides (a forward over > block_size tokens is an error)."""
    params = successor_model(impl, scale=5.0)
    out = impl.generate(params, np.array([2, 6]), 20, temperature=0.0)
    want = [2, 6]
    for _ in range(20):
        want.append(SUCC[want[-1]])
    assert out.dtype.kind == "i"
    assert out.tolist() == want


def tie_model(impl, scale=5.0):
    """A model whose greedy choice is always an exact tie (built like
    successor_model: every block adds exactly 0, the final LayerNorm maps the
    one-hot e_t to a e_t + b 1 with b < 0): output_weight = -scale * I, one
    non-zero weight per column, so logit_j = -scale * (a + b) for j = t and
    -scale * b > 0 for every j != t. The seven equal maxima are one product
    each, equal bits in any summation order: SPEC §generation's rule picks the lowest
    id among them, 0 (or 1 after token 0)."""
    params = successor_model(impl, scale=1.0)
    params["output_weight"] = np.float32(-scale) * np.eye(V, dtype=np.float32)
    return params


def test_greedy_ties_go_to_the_lowest_id(impl):
    """Seven tied maxima at every step: greedy alternates 0, 1, 0, 1 (the
    lowest id that is not the current token), and so does top_k=1 sampling
    (its stable sort keeps the lowest id too). A rule taking the last maximum
    would give 7, 6, 7, ..."""
    params = tie_model(impl)
    logits, _, _ = impl.forward(params, np.array([[5, 0]]))
    for t, row in zip((5, 0), logits[0]):
        assert np.count_nonzero(row == row.max()) == V - 1, f"test setup: not a {V - 1}-way tie after {t}: {row}"
    want = [5] + [0, 1] * 6
    assert impl.generate(params, np.array([5]), 12, temperature=0.0).tolist() == want
    assert impl.generate(params, np.array([5]), 12, temperature=0.7, top_k=1, seed=2).tolist() == want


def test_greedy_ignores_seed_and_matches_top_k_1(impl):
    params = impl.init_params(impl.Config(vocab_size=13, n_embd=8, n_heads=2, n_layers=2, block_size=6), seed=3)
    prompt = np.array([1, 5, 7])
    greedy = impl.generate(params, prompt, 10, temperature=0.0, seed=0)
    assert impl.generate(params, prompt, 10, temperature=0.0, seed=99).tolist() == greedy.tolist()
    assert impl.generate(params, prompt, 10, temperature=1.3, top_k=1, seed=5).tolist() == greedy.tolist()


def _budget(logits) -> float:
    """The absolute slack SPEC §tolerances allows an implementation's logits:
    LOGITS_RTOL of their largest magnitude. generate may reach its logits by
    another path than forward (fast: a key/value cache), within that budget."""
    return LOGITS_RTOL * float(np.abs(logits).max())


def test_greedy_is_the_argmax_of_forward(impl):
    """Naive loop: re-run forward on the last block_size tokens and take the
    argmax; generate's token must be it, or a logit within the logits budget
    of it (generate need not reach its logits through forward: SPEC §tolerances). The
    run follows generate's own tokens."""
    config = impl.Config(vocab_size=13, n_embd=8, n_heads=2, n_layers=2, block_size=5)
    params = impl.init_params(config, seed=4)
    # random init gives nearly uniform logits; scale the output so the argmax is clear
    params["output_weight"] = params["output_weight"] * np.float32(50.0)
    out = impl.generate(params, np.array([0, 1, 2]), 12, temperature=0.0).tolist()
    assert out[:3] == [0, 1, 2] and len(out) == 15
    for n in range(3, 15):
        logits, _, _ = impl.forward(params, np.array(out[max(0, n - config.block_size):n])[None, :])
        row = logits[0, -1].astype(np.float64)
        best = int(np.argmax(row))
        assert out[n] == best or row[out[n]] >= row[best] - 2 * _budget(logits), (
            f"{impl.name}: step {n} chose {out[n]} (logit {row[out[n]]!r}), the argmax is {best} ({row[best]!r})")


def _naive_draws(logits_row, temperature, top_k, u, slack=0.0):
    """SPEC §training's rule with Python floats and a running sum (no numpy
    cumsum/searchsorted): the ids the rule may pick when every logit may be
    off by up to `slack` (0: exactly one id). An error of at most `slack` in
    each logit moves each weight w = exp((z - max z) / temperature), hence
    every running sum and the target u * total, by a factor within
    exp(+-2 slack / temperature); the candidates are the ids whose running
    sum crosses the target somewhere in that band. Top-k is applied to the
    logits as given (callers check that no k-th place is that close to a tie)."""
    values = [float(x) for x in logits_row]
    keep = list(range(len(values)))
    if top_k is not None:
        keep = sorted(keep, key=lambda i: (-values[i], i))[:top_k]
    z = [v / temperature if i in keep else -math.inf for i, v in enumerate(values)]
    top = max(z)
    w = [math.exp(x - top) if x != -math.inf else 0.0 for x in z]
    total = 0.0
    for x in w:
        total += x
    band = math.exp(4.0 * slack / temperature)
    low, high = u * total / band, u * total * band
    running, picks = 0.0, []
    for i, x in enumerate(w):
        before, running = running, running + x
        if x > 0.0 and running > low and before <= high:
            picks.append(i)
    assert picks, "no token selected"
    return picks


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.7, 3), (2.5, None), (1.0, 13), (0.9, 1)])
def test_sampling_rule_matches_naive_loop(impl, temperature, top_k):
    """Same seed -> the same u sequence (default_rng(seed).random(), one per token);
    each token re-derived from forward's float32 logits with the naive rule:
    exactly, or, where the draw falls within the logits budget of a boundary
    between two ids, one of those two (SPEC §tolerances: generate need not reach its
    logits through forward). The run follows generate's own tokens."""
    config = impl.Config(vocab_size=13, n_embd=8, n_heads=2, n_layers=2, block_size=6)
    params = impl.init_params(config, seed=5)
    params["output_weight"] = params["output_weight"] * np.float32(30.0)  # a non-trivial distribution
    seed = 1234
    out = impl.generate(params, np.array([4]), 40, temperature=temperature, top_k=top_k, seed=seed).tolist()
    rng = np.random.default_rng(seed)
    for n in range(1, 41):
        logits, _, _ = impl.forward(params, np.array(out[max(0, n - config.block_size):n])[None, :])
        row = logits[0, -1]
        if top_k is not None and top_k < row.size:
            ranked = np.sort(row.astype(np.float64))[::-1]
            assert ranked[top_k - 1] - ranked[top_k] > 2 * _budget(logits), "test setup: a near-tie at the top-k cut"
        picks = _naive_draws(row, temperature, top_k, rng.random(), slack=_budget(logits))
        assert out[n] in picks, f"{impl.name}: token {n} is {out[n]}, the rule gives {picks}"


@pytest.mark.parametrize("temperature", [1.0, pytest.param(2.0, marks=pytest.mark.slow),
                                         pytest.param(0.5, marks=pytest.mark.slow)])
def test_sampling_frequencies_match_closed_form(impl, temperature):
    """scale = ln(7)/a makes p(SUCC[t]) exactly 1/2 at temperature 1
    (e^{ln 7} = 7 = V - 1); at temperature 2 it is sqrt7/(sqrt7 + 7) = 0.2743,
    at 0.5 it is 49/56 = 0.875. Count transitions t -> SUCC[t] over 1500 draws:
    within SAMPLE_FREQ_SIGMAS binomial standard errors."""
    scale = math.log(V - 1) / ln_gain()
    params = successor_model(impl, scale)
    n = 1500
    out = impl.generate(params, np.array([0]), n, temperature=temperature, seed=7).tolist()
    hits = sum(out[i + 1] == SUCC[out[i]] for i in range(n))
    p = p_successor(scale, temperature)
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) <= SAMPLE_FREQ_SIGMAS * sigma, (hits, n * p, sigma)


@pytest.mark.parametrize("top_k", [2, 3, 6])
def test_top_k_keeps_k_largest_with_lowest_id_ties(impl, top_k):
    """Successor model: SUCC[t] has the largest logit, the other 7 tie exactly.
    top_k keeps SUCC[t] and the top_k - 1 lowest ids that are not SUCC[t] (SPEC
    §generation: a stable sort of -logits); nothing else ever appears (an unstable
    sort keeps other tied ids: numpy's default sort does, past the first few).
    With e^{scale a} = 7 the kept ids have weights 7 and 1 each: a runner-up is
    drawn (top_k - 1)/(7 + top_k - 1) of the time (1/8 for top_k = 2)."""
    scale = math.log(V - 1) / ln_gain()
    params = successor_model(impl, scale)
    out = impl.generate(params, np.array([0]), 600, temperature=1.0, top_k=top_k, seed=11).tolist()
    seen_other = 0
    for t, nxt in zip(out, out[1:]):
        others = [j for j in range(V) if j != SUCC[t]][:top_k - 1]
        assert nxt == SUCC[t] or nxt in others, (t, nxt, others)
        seen_other += nxt in others
    n, p = 600, (top_k - 1) / (V - 1 + top_k - 1)
    assert abs(seen_other - n * p) <= SAMPLE_FREQ_SIGMAS * math.sqrt(n * p * (1 - p))


def test_low_temperature_with_large_logits_does_not_overflow(impl):
    """SPEC §generation: w = exp(z - max(z)), so the largest weight is exactly 1 however
    large z is. Successor model with scale 5 at temperature 0.01: z for SUCC[t] is
    5 a / 0.01 ~ 1500 (exp would overflow a double), every other weight underflows
    to 0, so the successor is drawn every time."""
    params = successor_model(impl, scale=5.0)
    out = impl.generate(params, np.array([0]), 20, temperature=0.01, seed=3).tolist()
    assert out == [0] + [SUCC[t] for t in out[:-1]], out


def test_defaults_are_temperature_one_and_seed_zero(impl):
    """SPEC §generation's signature: temperature=1.0, top_k=None, seed=0."""
    params = successor_model(impl, scale=math.log(V - 1) / ln_gain())
    want = impl.generate(params, np.array([1]), 40, temperature=1.0, top_k=None, seed=0).tolist()
    assert impl.generate(params, np.array([1]), 40).tolist() == want
    assert want != impl.generate(params, np.array([1]), 40, seed=1).tolist()  # the seed matters
    assert want != impl.generate(params, np.array([1]), 40, temperature=2.0).tolist()  # and so does temperature


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_logits_are_refused(impl):
    """SPEC §generation: finite params whose logits overflow (weights near the float32
    limit) cannot be sampled: a ValueError naming logits, greedy or not."""
    params = successor_model(impl, scale=5.0)
    params["output_weight"] = np.float32(3e38)
    for temperature in (0.0, 1.0):
        with pytest.raises(ValueError, match="logits"):
            impl.generate(params, np.array([1]), 2, temperature=temperature)


def test_seeded_and_reproducible(impl):
    params = successor_model(impl, scale=math.log(V - 1) / ln_gain())
    a = impl.generate(params, np.array([1]), 60, seed=1)
    b = impl.generate(params, np.array([1]), 60, seed=1)
    c = impl.generate(params, np.array([1]), 60, seed=2)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()  # 60 fair coin flips agreeing: probability 2^-60


def test_returns_prompt_plus_new_tokens(impl):
    params = successor_model(impl, scale=5.0)
    out = impl.generate(params, [5, 2, 1], 0)
    assert out.tolist() == [5, 2, 1]
    out = impl.generate(params, np.array([5, 2, 1], dtype=np.int32), 3, temperature=0.0)
    assert out[:3].tolist() == [5, 2, 1] and len(out) == 6


def test_long_prompt_is_truncated_with_a_warning(impl):
    """SPEC §generation: a prompt longer than block_size is cut to its last block_size
    tokens with a UserWarning; one of block_size tokens is used whole, without a warning."""
    params = successor_model(impl, scale=5.0, block_size=4)
    prompt = np.array([0, 1, 2, 3, 4, 5])
    with pytest.warns(UserWarning, match="block_size"):
        out = impl.generate(params, prompt, 2, temperature=0.0)
    assert out.tolist() == [2, 3, 4, 5, SUCC[5], SUCC[SUCC[5]]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = impl.generate(params, prompt[2:], 1, temperature=0.0)
    assert out.tolist() == [2, 3, 4, 5, SUCC[5]]


# mutmut (conformance/mutation) calls every function of the module it mutates through a
# trampoline of its own: one more frame between the caller and the implementation
@pytest.mark.skipif("MUTANT_UNDER_TEST" in os.environ,
                    reason="under mutmut a trampoline frame stands between the caller and generate")
def test_long_prompt_warning_names_the_callers_line(impl):
    """SPEC §generation: the truncation warning is attributed to the line that called
    generate (the user's code, not the implementation's)."""
    params = successor_model(impl, scale=5.0, block_size=4)
    with pytest.warns(UserWarning, match="block_size") as record:
        line = inspect.currentframe().f_lineno + 1
        impl.generate(params, np.array([0, 1, 2, 3, 4, 5]), 1, temperature=0.0)
    assert [(w.filename, w.lineno) for w in record] == [(__file__, line)]


@pytest.mark.parametrize("kwargs, word", [
    (dict(prompt_ids=[]), "prompt_ids"),
    (dict(prompt_ids=[8]), "prompt_ids"),
    (dict(prompt_ids=[-1]), "prompt_ids"),
    (dict(prompt_ids=[0.5]), "prompt_ids"),
    (dict(prompt_ids=[[1, 2]]), "prompt_ids"),
    (dict(n_tokens=-1), "n_tokens"),
    (dict(n_tokens=True), "n_tokens"),
    (dict(n_tokens=2.0), "n_tokens"),
    (dict(temperature=-0.1), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=True), "temperature"),
    (dict(temperature="1.0"), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(top_k=V + 1), "top_k"),
    (dict(top_k=True), "top_k"),
    (dict(top_k=2.0), "top_k"),
    (dict(seed=-3), "seed"),
    (dict(seed=True), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(params=None), "params"),
    (dict(params={"token_embedding": np.zeros((V, V), dtype=np.float32)}), "params"),
])
def test_bad_arguments(impl, kwargs, word):
    """SPEC §generation: a bad argument is a ValueError naming it; integers and numbers
    are never bool (SPEC §contract-errors)."""
    args = dict(params=successor_model(impl, scale=5.0), prompt_ids=[1], n_tokens=3, temperature=1.0,
                top_k=None, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        impl.generate(**args)
