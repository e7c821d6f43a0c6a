"""Dropout (SPEC §dropout): the generator, the mask layout, the sites.

Oracles that do not go through the implementation: the Random123 known-answer
vectors for Philox4x32-10; a pure-Python Philox and a loop transcription of
the counter layout (conformance/naive_model.py); the binomial law of the keep
rate and of the agreement between independent masks; the loop model with
dropout at the four sites; exact properties (p = 0 and no key give the model
without dropout bit for bit; a part of a batch with its row offset draws the
whole batch's masks). Finite differences with dropout: test_gradcheck.py;
agreement with the reference: test_agreement.py; thread counts: test_determinism.py;
training and resume: test_train.py.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import reference
from conformance import naive_model as naive
from conformance.assertions import assert_bitwise, assert_scaled_max
from conformance.cases import KAT
from conformance.test_model import params_for, tokens_for
from conformance.tolerances import BATCH_F32_RTOL, DROPOUT_RATE_SIGMAS, ORACLE_F32_RTOL, ORACLE_F64_RTOL

# a model small enough for the loop oracle, with sizes that are not multiples of 4
ODD = reference.Config(vocab_size=13, n_embd=6, n_heads=3, n_layers=2, block_size=7, dropout_rate=0.3)


def u32(values) -> np.ndarray:
    return np.array(values, dtype=np.uint32)


def ctx(impl, **kw) -> dict:
    return {"impl": impl.name, **kw}


def model(impl, config):
    return impl.Config(**{f: getattr(config, f) for f in (
        "vocab_size", "n_embd", "n_heads", "n_layers", "block_size", "dropout_rate")})


# --- the generator ------------------------------------------------------------------
def test_scalar_oracle_known_answers():
    """The loop oracle itself reproduces Random123's vectors (so it can judge layouts)."""
    for counter, key, want in KAT:
        assert naive.philox4x32_scalar(counter, key) == want


def test_philox_known_answers(impl):
    """philox4x32 on the three known-answer vectors, one call and one at a time."""
    counters, keys, want = (u32([case[i] for case in KAT]) for i in range(3))
    got = np.asarray(impl.philox4x32(counters, keys))
    assert got.dtype == np.uint32 and got.shape == (3, 4), f"{impl.name}: {got.dtype} {got.shape}"
    assert_bitwise("philox4x32 known answers", got, want, ctx(impl))
    for counter, key, out in KAT:
        assert_bitwise("philox4x32 one vector", np.asarray(impl.philox4x32(u32(counter), u32(key))), u32(out))


def test_philox_matches_scalar_oracle_and_broadcasts(impl):
    """Random counters and keys, a [3, 5, 4] batch against one key and against
    a key per row, versus the pure-Python Philox."""
    rng = np.random.default_rng(4)
    counters = rng.integers(0, 2**32, size=(3, 5, 4), dtype=np.uint64).astype(np.uint32)
    keys = rng.integers(0, 2**32, size=(3, 1, 2), dtype=np.uint64).astype(np.uint32)
    got = np.asarray(impl.philox4x32(counters, keys))
    want = u32([[naive.philox4x32_scalar(counters[i, j], keys[i, 0]) for j in range(5)] for i in range(3)])
    assert_bitwise("philox4x32 broadcast", got, want, ctx(impl))
    one = np.asarray(impl.philox4x32(counters, keys[0, 0]))
    assert_bitwise("philox4x32 one key", one[0], want[0], ctx(impl))



def test_philox_broadcasts_the_keys_leading_axes_too(impl):
    """SPEC §dropout: counters [..., 4] and keys [..., 2] broadcast against each
    other, whichever has the longer leading shape: one counter under three keys
    gives three outputs, and counters [2, 1, 4] under keys [3, 2] give [2, 3, 4],
    each the pure-Python Philox of its pair."""
    rng = np.random.default_rng(5)
    counters = rng.integers(0, 2**32, size=(2, 1, 4), dtype=np.uint64).astype(np.uint32)
    keys = rng.integers(0, 2**32, size=(3, 2), dtype=np.uint64).astype(np.uint32)
    got = np.asarray(impl.philox4x32(counters, keys))
    want = u32([[naive.philox4x32_scalar(counters[i, 0], keys[j]) for j in range(3)] for i in range(2)])
    assert got.shape == (2, 3, 4), f"{impl.name}: shape {got.shape}, expected (2, 3, 4)"
    assert_bitwise("philox4x32 keys broadcast over counters", got, want, ctx(impl))
    one = np.asarray(impl.philox4x32(counters[0, 0], keys))
    assert one.shape == (3, 4), f"{impl.name}: one counter under 3 keys gave shape {one.shape}"
    assert_bitwise("philox4x32 one counter, three keys", one, want[0], ctx(impl))

@pytest.mark.parametrize("counter, key", [
    (np.zeros(4, dtype=np.int64), np.zeros(2, dtype=np.uint32)),
    (np.zeros(4, dtype=np.uint32), np.zeros(3, dtype=np.uint32)),
    (np.zeros(3, dtype=np.uint32), np.zeros(2, dtype=np.uint32)),
])
def test_philox_rejects_bad_arrays(impl, counter, key):
    with pytest.raises(ValueError, match="counter|key"):
        impl.philox4x32(counter, key)


# --- the layout -----------------------------------------------------------------------
LAYOUT_CASES = [  # seed, step, layer, site, shape, p, row_offset
    (0, 0, 0, 0, (2, 3, 6), 0.3, 0),
    (7, 12, 1, 1, (2, 3, 5, 5), 0.5, 0),
    (2**40 + 3, 2**32 - 1, 2, 2, (1, 4, 9), 0.1, 5),
    (123456789, 99, 3, 3, (3, 2, 7), 0.9, 65530),
    (1, 5, 0, 1, (1, 2, 3, 3), 0.25, 2),
    (9, 3, 1, 1, (2, 2, 3, 6), 0.4, 0),  # site 1 with J != T: the layout gives every J its words
]


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=[f"site{c[3]}-{i}" for i, c in enumerate(LAYOUT_CASES)])
def test_dropout_mask_follows_the_spec_layout(impl, case):
    """dropout_mask against the loop transcription of SPEC §dropout (counter
    (j // 4, t + 2^16 h, b + 2^16 (4 l + site), step), key = the seed's two
    words, word j % 4, kept iff >= floor(float32(p) 2^32)): seeds above
    2^32, the last step, a row offset near 2^16, vectors not multiples of 4."""
    seed, step, layer, site, shape, p, row_offset = case
    got = np.asarray(impl.dropout_mask(seed, step, layer, site, shape, p, row_offset))
    assert got.dtype == np.bool_ and got.shape == shape, f"{impl.name}: {got.dtype} {got.shape}"
    want = naive.dropout_keep(seed, step, layer, site, shape, p, row_offset)
    assert_bitwise("dropout mask", got, want, ctx(impl, seed=seed, step=step, layer=layer, site=site, p=p))


def test_a_word_equal_to_the_threshold_is_kept(impl):
    """Kept means word >= threshold, not >: find an element whose word has
    its low 8 bits zero, so w / 2^32 is a float32 p with threshold exactly w;
    at that p the element is kept, at the next multiple of 2^8 it is dropped.
    One such element for each of the four words of a Philox output (j mod 4),
    in a whole group of four and in the last, shorter group of a vector of 67
    (an implementation may treat each of these words in its own place)."""
    shape = (16, 256, 67)
    found = {}
    for b, t in np.ndindex(*shape[:2]):
        for j in (*range(4), 64, 65, 66):
            place = ("tail" if j >= 64 else "group", j % 4)
            if place in found:
                continue
            word = naive.dropout_word(11, 3, 1, 2, b, t, 0, j)
            if word % 256 == 0 and 0 < word < 2**32 - 256:
                found[place] = ((b, t, j), word)
        if len(found) == 7:
            break
    assert len(found) == 7, f"no word with its low 8 bits zero in some place among 4096: {sorted(found)}"
    for place, (index, word) in sorted(found.items()):
        p = word / 2**32
        assert float(np.float32(p)) == p
        assert impl.dropout_mask(11, 3, 1, 2, shape, p)[index], \
            f"{impl.name}: word == threshold {word} at {index} (word {place[1]} of its Philox output) was dropped"
        assert not impl.dropout_mask(11, 3, 1, 2, shape, (word + 256) / 2**32)[index]


def test_mask_depends_only_on_row_position_and_element(impl):
    """The mask of (b, t, j) is the same in a smaller batch, a shorter
    sequence, and in a part of the batch passed with its row offset."""
    big = np.asarray(impl.dropout_mask(5, 7, 1, 2, (6, 9, 10), 0.4))
    assert_bitwise("prefix", np.asarray(impl.dropout_mask(5, 7, 1, 2, (2, 4, 10), 0.4)), big[:2, :4])
    assert_bitwise("row offset", np.asarray(impl.dropout_mask(5, 7, 1, 2, (3, 9, 10), 0.4, 3)), big[3:])
    att = np.asarray(impl.dropout_mask(5, 7, 1, 1, (4, 3, 9, 9), 0.4))
    part = np.asarray(impl.dropout_mask(5, 7, 1, 1, (2, 3, 5, 5), 0.4, 1))
    assert_bitwise("attention part", part, att[1:3, :, :5, :5])


def binomial_check(name: str, count: int, n: int, q: float, context: dict) -> None:
    sigma = math.sqrt(n * q * (1.0 - q))
    assert abs(count - n * q) <= DROPOUT_RATE_SIGMAS * sigma, (
        f"{name}: {count} of {n}, expected {n * q:.1f} +- {DROPOUT_RATE_SIGMAS} x {sigma:.1f} {context}")


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_keep_rate_is_binomial(impl, p):
    """The kept fraction of each site's mask, within DROPOUT_RATE_SIGMAS
    standard errors of q = 1 - floor(p 2^32) / 2^32."""
    q = 1.0 - math.floor(float(np.float32(p)) * 2**32) / 2**32
    for site, shape in ((0, (8, 64, 130)), (1, (4, 4, 64, 64)), (3, (8, 64, 130))):
        keep = np.asarray(impl.dropout_mask(3, 1, 0 if site == 0 else 2, site, shape, p))
        binomial_check(f"kept elements of site {site}", int(keep.sum()), keep.size, q, ctx(impl, p=p, site=site))


def test_masks_of_different_steps_layers_sites_and_rows_are_independent(impl):
    """Two masks that ought to be independent agree on a fraction q^2 + (1-q)^2
    of their elements (binomial); a mask reused across steps, layers, sites,
    seeds, heads or rows agrees everywhere."""
    p, shape = 0.5, (8, 32, 64)
    q = 0.5
    agree = q * q + (1 - q) * (1 - q)
    base = np.asarray(impl.dropout_mask(1, 10, 1, 2, shape, p))
    others = {"step": (1, 11, 1, 2), "layer": (1, 10, 2, 2), "site": (1, 10, 1, 3), "seed": (2, 10, 1, 2)}
    for what, (seed, step, layer, site) in others.items():
        other = np.asarray(impl.dropout_mask(seed, step, layer, site, shape, p))
        binomial_check(f"agreement across {what}", int((other == base).sum()), base.size, agree, ctx(impl))
    binomial_check("agreement across rows", int((base[0] == base[1]).sum()), base[0].size, agree, ctx(impl))
    att = np.asarray(impl.dropout_mask(1, 10, 1, 1, (2, 2, 48, 48), p))
    binomial_check("agreement across heads", int((att[:, 0] == att[:, 1]).sum()), att[:, 0].size, agree, ctx(impl))


@pytest.mark.parametrize("layer, site, shape, row_offset", [
    (1, 2, (1, 2**16, 1), 0),  # T = 2^16
    (1, 1, (1, 2**16, 1, 1), 0),  # NH = 2^16
    (1, 3, (2, 1, 1), 2**16 - 2),  # row_offset + B = 2^16
    (2**14 - 1, 3, (1, 2, 3), 0),  # the last layer: 4 l + 3 = 2^16 - 1
    (0, 0, (1, 2, 2**16 + 1), 0),  # C is limited by 2^34 only, not by T's 2^16
    (1, 2, (1, 1, 2**16 + 1), 0),
], ids=["T", "NH", "rows", "layer", "C-embedding", "C"])
def test_dropout_mask_accepts_the_layout_limits(impl, layer, site, shape, row_offset):
    """SPEC §dropout: T <= 2^16, NH <= 2^16, row_offset + B <= 2^16, layer < 2^14 and a last
    axis C below 2^34 are allowed (the limits themselves included): the mask comes back
    with the shape asked for."""
    assert np.asarray(impl.dropout_mask(1, 2, layer, site, shape, 0.5, row_offset)).shape == shape


@pytest.mark.parametrize("args, word", [
    ((0, 0, 0, 0, (1, 2, 3), -0.1), r"\bp\b"),
    ((0, 0, 0, 0, (1, 2, 3), 1.0), r"\bp\b"),
    ((0, 0, 0, 0, (1, 2, 3), float("nan")), r"\bp\b"),
    ((0, 0, 0, 0, (1, 2, 3), 0.999999999), r"\bp\b"),  # rounds to float32 1.0
    ((0, 0, 0, 0, (1, 2, 3), False), r"\bp\b"),  # a bool is not a number
    ((0, 0, 0, 0, (1, 2, 3), "0.5"), r"\bp\b"),
    ((0, 0, 0, 4, (1, 2, 3), 0.1), "site"),
    ((0, 0, 1, 0, (1, 2, 3), 0.1), "layer"),
    ((0, 0, 0, 1, (1, 2, 3), 0.1), "shape"),
    ((0, 0, 0, 2, (1, 2, 3, 3), 0.1), "shape"),
    ((-1, 0, 0, 0, (1, 2, 3), 0.1), "seed"),
    ((2**64, 0, 0, 0, (1, 2, 3), 0.1), "seed"),
    ((0, 2**32, 0, 0, (1, 2, 3), 0.1), "step"),
    ((0, 0, 0, 0, (2, 2, 3), 0.1, 2**16 - 1), "row_offset"),
    ((0, 0, 0, 0, (2, 2, 3), 0.1, -1), "row_offset"),
    ((0, 0, 0, 2, (2, 1, 3), 0.1, 2**16 - 1), "row_offset"),  # B = 2 rows from 2^16 - 1
    ((0, 0, 0, 2, (1, 2**16 + 1, 3), 0.1), "shape"),  # T above 2^16 (SPEC §dropout's limits)
    ((0, 0, 0, 1, (1, 2**16 + 1, 2, 2), 0.1), "shape"),  # NH above 2^16
    ((0, 0, 0, 1, (1, 2, 2**16 + 1, 2**16 + 1), 0.1), "shape"),  # T above 2^16, site 1
    ((0, 0, 0, 1, (1, 1, 2**16 + 1, 2), 0.1), "shape"),  # T above 2^16 (not [B, NH, T, T] either)
    ((0, 0, 0, 3, (1, 2, 2**34), 0.1), "shape"),  # C not below 2^34
    ((0, 0, -1, 2, (1, 2, 3), 0.1), "layer"),
    ((0, 0, 2**14, 2, (1, 2, 3), 0.1), "layer"),
    ((0, 0, 0, 2, (1, 0, 3), 0.1), "shape"),
    ((0, 0, 0, 2, (1, 2.0, 3), 0.1), "shape"),
    ((0, 0, 0, 2, (1, True, 3), 0.1), "shape"),
])
def test_dropout_mask_rejects_bad_arguments(impl, args, word):
    with pytest.raises(ValueError, match=word):
        impl.dropout_mask(*args)


@pytest.mark.parametrize("kw, word", [
    (dict(seed=-1, step=0), "seed"), (dict(seed=2**64, step=0), "seed"), (dict(seed=0.5, step=0), "seed"),
    (dict(seed=0, step=-1), "step"), (dict(seed=0, step=2**32), "step"), (dict(seed=0, step=True), "step"),
    (dict(seed=0, step=0, row_offset=2**16), "row_offset"),
])
def test_dropout_key_is_validated(impl, kw, word):
    with pytest.raises(ValueError, match=word):
        impl.DropoutKey(**kw)


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5, float("nan"), float("inf"), 0.999999999, 1e39,
                                  False, True, "0.1", None])
def test_config_refuses_bad_rates(impl, rate):
    """SPEC §contract-errors: a rate whose float32 rounding is outside [0, 1) (1e39 rounds to
    inf), NaN, or not a number (a bool is not one, nor a numeric string) is a ValueError
    naming dropout_rate."""
    with pytest.raises(ValueError, match="dropout_rate"):
        impl.Config(dropout_rate=rate)


def test_config_rate_is_its_float32_value(impl):
    """Config stores the float32 rate (what the checkpoint holds), so a
    resumed run draws the same masks and scale."""
    assert impl.Config(dropout_rate=0.1).dropout_rate == float(np.float32(0.1))
    assert impl.Config(dropout_rate=0.1) == impl.Config(dropout_rate=float(np.float32(0.1)))


# --- the model's sites ------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_forward_with_dropout_matches_the_loop_model(impl, dtype):
    """Logits and loss with dropout against the loop model of
    naive_model.model_forward, whose masks come from the loop layout and the
    pure-Python Philox and whose scale is F(1 / (1 - p)): every site, its
    layer, its mask and its scale. Perturbed parameters (std 0.3), T = 7 and
    C = 6 (vectors not multiples of 4), p = 0.3."""
    config = ODD
    params = params_for(impl, model(impl, config), dtype, seed=5, std=0.3)
    tokens, targets = tokens_for(config, 2, 7, seed=5)
    key = impl.DropoutKey(seed=9, step=4)
    logits, loss, _ = impl.forward(params, tokens, targets, dropout=key)
    scale = float(np.dtype(dtype).type(naive.dropout_scale64(config.dropout_rate)))
    tensors = {n: params[n] for n in params.names()}
    want = naive.model_forward(tensors, config, tokens, dropout=(9, 4, scale))
    want_loss, _ = naive.cross_entropy(want, targets.tolist())
    rtol = ORACLE_F64_RTOL if dtype == np.float64 else ORACLE_F32_RTOL
    context = ctx(impl, dtype=np.dtype(dtype).name, p=config.dropout_rate, seed=9, step=4)
    assert_scaled_max("logits with dropout", logits, want, rtol, context)
    assert_scaled_max("loss with dropout", np.array(loss), np.array(want_loss), rtol, context)
    # the loop model without dropout differs: the masks really act
    plain = naive.model_forward(tensors, config, tokens)
    assert np.max(np.abs(np.asarray(plain) - np.asarray(want))) > 1e-3


def _step(impl, params, tokens, targets, dropout=None):
    if dropout is None:
        logits, loss, cache = impl.forward(params, tokens, targets)
    else:
        logits, loss, cache = impl.forward(params, tokens, targets, dropout=dropout)
    return np.array(logits), loss, impl.backward(params, cache).data.copy()


def test_rate_zero_is_the_model_without_dropout_bitwise(impl):
    """p = 0 with a key: logits, loss and every gradient byte equal the call without a key."""
    config = model(impl, ODD).replace(dropout_rate=0.0)
    params = params_for(impl, config, np.float32, seed=6, std=0.3)
    tokens, targets = tokens_for(config, 3, 7, seed=6)
    plain = _step(impl, params, tokens, targets)
    keyed = _step(impl, params, tokens, targets, impl.DropoutKey(1, 2))
    for name, a, b in zip(("logits", "loss", "gradients"), keyed, plain):
        assert_bitwise(f"{name} at p = 0", np.asarray(a), np.asarray(b), ctx(impl))


def test_without_a_key_there_is_no_dropout(impl):
    """Evaluation, validation and generation call forward without a key: a
    config with p = 0.5 then gives exactly the bytes of the same parameters
    with p = 0 (logits, loss, gradients)."""
    config = model(impl, ODD).replace(dropout_rate=0.5)
    params = params_for(impl, config, np.float32, seed=7, std=0.3)
    zero = impl.Params(config.replace(dropout_rate=0.0), params.data.copy())
    tokens, targets = tokens_for(config, 2, 7, seed=7)
    got, want = _step(impl, params, tokens, targets), _step(impl, zero, tokens, targets)
    for name, a, b in zip(("logits", "loss", "gradients"), got, want):
        assert_bitwise(f"{name} without a key", np.asarray(a), np.asarray(b), ctx(impl))
    # ... whereas a key changes them, deterministically, and differently per step
    one = _step(impl, params, tokens, targets, impl.DropoutKey(0, 1))
    assert not np.array_equal(one[0], want[0]), f"{impl.name}: a DropoutKey with p = 0.5 changed nothing"
    assert_bitwise("same key twice", _step(impl, params, tokens, targets, impl.DropoutKey(0, 1))[2], one[2])
    two = _step(impl, params, tokens, targets, impl.DropoutKey(0, 2))
    assert not np.array_equal(one[0], two[0]), f"{impl.name}: steps 1 and 2 drew the same masks"


def test_generation_ignores_dropout(impl):
    """generate never drops: greedy and sampled ids with p = 0.5 equal those with p = 0."""
    config = model(impl, ODD).replace(dropout_rate=0.5)
    params = params_for(impl, config, np.float32, seed=8, std=0.3)
    zero = impl.Params(config.replace(dropout_rate=0.0), params.data.copy())
    prompt = np.array([1, 2, 3], dtype=np.int64)
    for temperature in (0.0, 1.0):
        got = np.asarray(impl.generate(params, prompt, 9, temperature=temperature, seed=3))
        want = np.asarray(impl.generate(zero, prompt, 9, temperature=temperature, seed=3))
        assert_bitwise(f"generated ids (temperature {temperature})", got, want, ctx(impl))


def test_part_of_a_batch_with_its_row_offset_draws_the_whole_batch_masks(impl):
    """Rows 2..3 of a batch of 4 run alone with row_offset 2 give the logits of
    those rows in the whole batch (SPEC §dropout; float32 within the batch
    independence budget of 2.5), and other offsets give other masks."""
    config = model(impl, ODD)
    params = params_for(impl, config, np.float32, seed=9, std=0.3)
    tokens, targets = tokens_for(config, 4, 7, seed=9)
    whole = impl.forward(params, tokens, targets, dropout=impl.DropoutKey(3, 5))[0]
    part = impl.forward(params, tokens[2:], targets[2:], dropout=impl.DropoutKey(3, 5, row_offset=2))[0]
    assert_scaled_max("rows 2..3 with row_offset 2", part, np.asarray(whole)[2:], BATCH_F32_RTOL, ctx(impl))
    wrong = impl.forward(params, tokens[2:], targets[2:], dropout=impl.DropoutKey(3, 5))[0]
    assert not np.allclose(np.asarray(wrong), np.asarray(whole)[2:]), f"{impl.name}: row_offset is ignored"


@pytest.mark.parametrize("bad", [(0, 1), "step 3", 3])
def test_forward_refuses_a_bad_dropout_argument(impl, bad):
    params = params_for(impl, model(impl, ODD), np.float32)
    tokens, targets = tokens_for(ODD, 1, 3)
    with pytest.raises(ValueError, match="dropout"):
        impl.forward(params, tokens, targets, dropout=bad)
