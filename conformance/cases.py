"""Inputs that reach where defects hide: the blind-spot classes (STYLE "Where defects hide").

A check at initialisation cannot see a dropped bias (every bias is 0, every
gamma 1); a size that is a multiple of every block cannot see a lost tail; a
tame magnitude cannot see a wrong max-subtraction start; one call cannot see
state that leaks into the next. The families that compare implementations,
check gradients or check layers against oracles take their parameters and
sizes from here:

- `moved(params, seed)`: every tensor away from its init (biases and betas
  drawn, gammas away from 1, weights perturbed);
- `sharp(params, seed)`: `moved`, plus every attention score and every
  logit pushed far below zero, with spreads of a few units: a softmax whose
  running max starts at 0 instead of at the first score underflows there to
  0 / 0 or log 0, while the true softmax stays well conditioned (the loss is
  tens of nats, not a difference of hundreds);
- `BLOCKED` and `BLOCKED_BT`: a config and batch past every block and chunk
  of fast (SPEC §parallel-split) without being a multiple of any;
- `SAME_COUNT`: configs with one parameter count and different layouts;
- `model_case(impl, ...)`: a small model moved off its init, with tokens
  and targets, for properties that compare calls of one implementation
  (thread counts, repeated calls);
- `MULTI_CHUNK` and `flat_params(impl, seed, scale)`: a parameter buffer of
  two whole `FAST_FLAT_CHUNK` chunks and a partial third, filled at random;
- `exact_logits(dtype)`: logits of magnitude 4000 whose loss terms are exact
  integers, so the mean loss is known exactly;
- `KAT`: Random123's known answers of Philox4x32-10.

Nothing here imports pytest: the vector generator (conformance/vectors/build.py)
takes its inputs from here and runs on the core install.
"""
from __future__ import annotations

import math

import numpy as np

# fast's fixed sizes (SPEC §parallel-split, fast/_blas.py, fast/_colsum.py, fast/_numba.py,
# fast/generate.py): the sizes below are chosen against these.
FAST_CUT_ALIGN = 64  # a GEMM launch cuts 2-D products at multiples of this many rows or columns
FAST_BATCH_BLOCK = 8  # matrices per block of a batched product
FAST_ROW_CHUNK = 64  # rows per column-sum chunk; weight rows per chunk of a one-row product
FAST_FLAT_CHUNK = 1 << 15  # elements per chunk of the flat-buffer kernels (norm, clip, AdamW)

# V 67, C 72, NH 6 (hs 12), L 2, block_size 160, at B 3, T 101: B*T = 303 rows
# (GEMM launches cut them at 192 + 111, and fc1's and fc2's outputs in rows
# and columns into pieces of uneven sizes; five 64-row chunks, the last
# partial), B*NH = 18 attention matrices (three 8-matrix blocks, the last
# partial), fc1/fc2 products of 303 x 72 x 288 (above fast's cut size), weight
# gradients of 72 rows, one-row products over 72
# and 288 weight rows (1.125 and 4.5 chunks of 64), and 147,600 parameters
# (4.5 flat chunks). No size is a power of two.
BLOCKED = dict(vocab_size=67, n_embd=72, n_heads=6, n_layers=2, block_size=160)
BLOCKED_BT = (3, 101)

# Configs with the same parameter count (the count ignores n_heads, and
# V*C + block_size*C + C*V is 2VC + block_size*C): a cache keyed by the count,
# or by (C, L), hands one config's buffers to another.
SAME_COUNT = [
    dict(vocab_size=20, n_embd=24, n_heads=4, n_layers=2, block_size=16),
    dict(vocab_size=20, n_embd=24, n_heads=6, n_layers=2, block_size=16),  # other heads
    dict(vocab_size=24, n_embd=24, n_heads=4, n_layers=2, block_size=8),  # 2*24 + 8 = 2*20 + 16
]


def _draw_like(params, rng, which: str, std: float):
    for name in params.names():
        view = params[name]
        if which == "vectors" and view.ndim == 1:
            view += rng.normal(0.0, std, view.shape).astype(view.dtype)
        elif which == "matrices" and view.ndim == 2:
            view *= (1.0 + rng.normal(0.0, std, view.shape)).astype(view.dtype)


def moved(params, seed: int, std: float = 0.1):
    """`params` (changed in place and returned) away from the GPT-2 init:
    every bias, beta and gamma moved by N(0, std^2) (so no bias is 0 and no
    gamma is 1), every weight matrix scaled elementwise by 1 + N(0, std^2)."""
    rng = np.random.default_rng([seed, 11])
    _draw_like(params, rng, "vectors", std)
    _draw_like(params, rng, "matrices", std)
    return params


# Where `sharp` puts the scores and logits. float32 exp underflows below
# -103.9 and overflows above 88.7; float64 at -745 and 709.8: the offsets are
# past the float32 limits (float64 is exercised by the layer tests).
SHARP_SCORE_OFFSET = -130.0  # mean attention score of every row, every block
SHARP_QK_GAIN = 4.0  # q and k weights scaled up: the token-dependent part of the scores, and of their gradients
SHARP_LOGIT_OFFSET = -200.0  # mean logit
SHARP_LOGIT_SPREAD = 10.0  # standard deviation of the logits around it


def sharp(params, seed: int):
    """`moved(params)`, then adversarial softmax magnitudes (in place; returned).

    Attention: every block's q and k biases get a common direction e per
    head, bq_h = a e, bk_h = -a e with a^2 / sqrt(hs) = -SHARP_SCORE_OFFSET,
    so every score of a row is shifted by SHARP_SCORE_OFFSET while the
    token-dependent part (weights of std ~0.02) moves scores by a few units.
    (Large positive scores are the layer tests' business: with a positive
    shift the float32 gradient of q is dominated by the rounding of a * sum_u
    ds = 0, ~4e-5 relative in either implementation, too close to the
    section-8 budget to compare implementations by.)
    Logits: the final LayerNorm's beta is 1 + small and output_weight gets
    SHARP_LOGIT_OFFSET / C added to every entry, so each logit is shifted by
    ~SHARP_LOGIT_OFFSET (the LayerNorm output sums to ~0, so the constant part
    adds ~nothing else), and its other part is scaled to a spread of
    SHARP_LOGIT_SPREAD: the loss is tens of nats, its float32 rounding
    relative to it small."""
    moved(params, seed)
    config = params.config
    C, NH, L = config.n_embd, config.n_heads, config.n_layers
    hs = C // NH
    a = math.sqrt(-SHARP_SCORE_OFFSET * math.sqrt(hs))
    e = np.tile(np.full(hs, 1.0 / math.sqrt(hs)), NH).astype(params.dtype)  # [C], unit per head
    for i in range(L):
        params[f"blocks.{i}.q.bias"] += params.dtype.type(a) * e
        params[f"blocks.{i}.k.bias"] -= params.dtype.type(a) * e
        for name in ("q.weight", "k.weight"):
            params[f"blocks.{i}.{name}"] *= params.dtype.type(SHARP_QK_GAIN)
    params["ln_final.beta"] += params.dtype.type(1.0)
    w = params["output_weight"]  # [C, V]
    w *= params.dtype.type(SHARP_LOGIT_SPREAD / (float(np.std(w)) * math.sqrt(C)))
    w += params.dtype.type(SHARP_LOGIT_OFFSET / C)
    return params


# V, C, NH, L, block_size of `model_case`: T = 19 rows per sequence, 24 positions
MODEL = dict(vocab_size=53, n_embd=32, n_heads=4, n_layers=2, block_size=24)


def model_case(impl, seed=5, B=3, T=19, dropout_rate=0.0):
    """(params, tokens, targets): `MODEL` (with `dropout_rate`) initialised
    with `seed` and perturbed by N(0, 0.05^2), and [B, T] tokens and targets."""
    config = impl.Config(**MODEL, dropout_rate=dropout_rate)
    params = impl.init_params(config, seed=seed)
    rng = np.random.default_rng(seed)
    params.data[:] += (rng.standard_normal(params.data.size) * 0.05).astype(np.float32)
    tokens = rng.integers(0, config.vocab_size, size=(B, T))
    targets = rng.integers(0, config.vocab_size, size=(B, T))
    return params, tokens, targets


# V, C, NH, L, block_size: 66,624 parameters, two chunks of FAST_FLAT_CHUNK elements and a partial third
MULTI_CHUNK = dict(vocab_size=96, n_embd=48, n_heads=4, n_layers=2, block_size=16)
# P = 2V + T + 25 + 2 = 32769 = 2^15 + 1 (C = 1): one element longer than a multiple of every
# power of two up to 2^15, so a split into blocks of any of those sizes has a last block of
# one element (a ceiling division off by one loses exactly that element)
ONE_PAST = dict(vocab_size=16370, n_embd=1, n_heads=1, n_layers=1, block_size=2)


def flat_params(impl, seed, scale=1.0, spec=MULTI_CHUNK):
    """A Params of `spec` (MULTI_CHUNK) filled with N(0, scale^2) float32 values (parameters or gradients)."""
    config = impl.Config(**spec)
    rng = np.random.default_rng(seed)
    data = (rng.standard_normal(impl.n_params(config)) * scale).astype(np.float32)
    return impl.Params(config, data)


# Random123's kat_vectors, the three "philox4x32 10" lines (SPEC §dropout): counter, key, output
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def exact_logits(dtype, N=1 << 16, V=3, seed=0):
    """Logits [1, N, V] and targets whose per-position losses are exact
    integers, so the mean loss is known exactly. Row r has its maximum m_r
    (an integer near -4000 in half the rows, near +4000 in the others) at
    one column; every other entry is m_r - d with d an integer in [110, 3000],
    so exp(z - m_r) is below 1.7e-48: the log-sum-exp is log(1 + ...) = 0
    exactly in float32 and float64 alike, and the loss term is m_r - z_target,
    an exact integer (0 when the target is the maximum). N = 2^16: the mean is
    the float64 sum over 2^16, exact. A float32 accumulation of the ~4e7 sum
    (above 2^24) rounds; huge |logits| also catch a max subtraction that is
    missing (overflow) or starts at 0 (underflow to log 0)."""
    rng = np.random.default_rng(seed)
    m = rng.integers(3000, 5000, N) * np.where(np.arange(N) % 2 == 0, -1, 1)  # (N,)
    d = rng.integers(110, 3001, (N, V))  # (N, V)
    top = rng.integers(0, V, N)
    d[np.arange(N), top] = 0
    logits = (m[:, None] - d).astype(dtype)[None]  # (1, N, V), exact integers
    targets = rng.integers(0, V, N)
    terms = d[np.arange(N), targets]  # m - z_target
    return logits, targets[None], math.fsum(terms.tolist()) / N
