"""Dropout masks from a counter-based generator (SPEC §dropout).

Dimension legend: B batch, T time, C n_embd, NH heads, L layers; G = groups
of four elements (one Philox output each) along a mask's last axis.

A mask is a pure function of (seed, step, layer, site, element): the key is
the run seed, the counter is built from the rest, so every implementation,
thread count and resumed run draws the same bits. Philox4x32-10 (Salmon et
al., SC'11) in vectorised NumPy: its 32 x 32 -> 64-bit products are done
exactly in uint64.

    counter = (floor(j / 4), t + 2^16 h, b + 2^16 (4 l + site), step)
    word    = philox4x32(counter, (seed mod 2^32, seed >> 32))[j mod 4]
    keep    = word >= floor(p * 2^32)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Philox4x32 round multipliers and Weyl key increments (Random123's PHILOX_M4x32_*, PHILOX_W32_*)
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10

# sites (SPEC §dropout): site number -> name; site 1 masks [B, NH, T, T], the others [B, T, C]
SITES = ("embedding", "attention", "attention_output", "mlp_output")
EMBEDDING, ATTENTION, ATTENTION_OUTPUT, MLP_OUTPUT = range(4)

FIELD = 1 << 16  # c1 = t + FIELD * h, c2 = b + FIELD * (4 * layer + site)
MASK32 = 0xFFFFFFFF


def philox4x32(counter, key):
    """Philox4x32-10: uint32 counters [..., 4] and keys [..., 2] (broadcast
    against each other) -> uint32 [..., 4].

    One round: (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0));
    the key is bumped by (W0, W1) mod 2^32 between rounds."""
    counter = np.asarray(counter)
    key = np.asarray(key)
    for name, a, n in (("counter", counter, 4), ("key", key, 2)):
        if a.dtype != np.uint32 or a.ndim < 1 or a.shape[-1] != n:
            raise ValueError(f"{name} must be a uint32 array [..., {n}], got dtype {a.dtype}, shape {a.shape}")
    c0, c1, c2, c3 = (counter[..., i].astype(np.uint64) for i in range(4))  # (...,) each, in uint64
    k0, k1 = (key[..., i].astype(np.uint64) for i in range(2))
    m0, m1, mask = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1), np.uint64(MASK32)
    w0, w1, shift = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1), np.uint64(32)
    for r in range(PHILOX_ROUNDS):
        if r > 0:  # bump the key between rounds
            k0 = (k0 + w0) & mask
            k1 = (k1 + w1) & mask
        p0 = m0 * c0  # exact: both factors < 2^32
        p1 = m1 * c2
        c0, c1, c2, c3 = (p1 >> shift) ^ c1 ^ k0, p1 & mask, (p0 >> shift) ^ c3 ^ k1, p0 & mask
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)  # (..., 4)


def check_rate(p, name: str = "dropout rate") -> float:
    """The dropout rate as its float32 value (SPEC §dropout), or ValueError naming
    `name`: a number whose float32 rounding lies in [0, 1) (NaN refused)."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number in [0, 1), got {p!r}")
    with np.errstate(over="ignore"):
        p32 = float(np.float32(p))
    if not 0.0 <= p32 < 1.0:  # False for NaN
        raise ValueError(f"{name} must be in [0, 1) after rounding to float32, got {p!r}")
    return p32


def dropout_threshold(p, name: str = "dropout rate") -> int:
    """floor(p * 2^32) for the float32 rate p: a word >= it is kept (a bad p: ValueError naming `name`)."""
    return math.floor(check_rate(p, name) * 2.0**32)  # exact: p has 24 significant bits


def dropout_scale(p, dtype=np.float32):
    """F(1 / (1 - p)): float64 arithmetic, one rounding to the dtype F."""
    return np.dtype(dtype).type(1.0 / (1.0 - check_rate(p)))


def _check_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value < high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}), got {value!r}")
    return int(value)


@dataclass(frozen=True)
class DropoutKey:
    """Which masks a training forward draws (SPEC §dropout): the run's seed, the
    training step, and the index in the step's whole batch of the first row
    of this call (non-zero only for part of a batch: a data-parallel rank or
    a gradient-accumulation micro-batch)."""

    seed: int  # the run seed: the Philox key, 0 <= seed < 2^64
    step: int  # training step, 0 <= step < 2^32
    row_offset: int = 0  # batch row of tokens[0], 0 <= row_offset < 2^16

    def __post_init__(self) -> None:
        _check_int("DropoutKey.seed", self.seed, 0, 2**64)
        _check_int("DropoutKey.step", self.step, 0, 2**32)
        _check_int("DropoutKey.row_offset", self.row_offset, 0, FIELD)


def check_mask_args(seed, step, layer, site, shape, row_offset=0) -> tuple[int, ...]:
    """Validate the arguments of `dropout_mask` (shared with fast); returns the shape."""
    DropoutKey(seed, step, row_offset)
    site = _check_int("site", site, 0, len(SITES))
    layer = _check_int("layer", layer, 0, FIELD // 4)
    if site == EMBEDDING and layer != 0:
        raise ValueError(f"the embedding site (0) has layer 0, got layer {layer}")
    shape = tuple(shape)
    rank = 4 if site == ATTENTION else 3
    if len(shape) != rank or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1
                                 for n in shape):
        what = "[B, NH, T, T]" if site == ATTENTION else "[B, T, C]"
        raise ValueError(f"shape of site {site} ({SITES[site]}) must be {what} of positive ints, got {shape}")
    B = shape[0]
    T, heads = (shape[2], shape[1]) if site == ATTENTION else (shape[1], 1)
    if row_offset + B > FIELD or T > FIELD or heads > FIELD or shape[-1] >= 2**34:
        raise ValueError(f"shape {shape} with row_offset {row_offset} exceeds the counter layout "
                         f"(row_offset + B, T, NH <= 2^16; last axis < 2^34)")
    return tuple(int(n) for n in shape)


def dropout_words(seed: int, step: int, layer: int, site: int, shape, row_offset: int = 0) -> np.ndarray:
    """The 32-bit word of every element of a site's mask (SPEC §dropout layout), uint32 of `shape`."""
    shape = check_mask_args(seed, step, layer, site, shape, row_offset)
    if site == ATTENTION:
        B, NH, T, J = shape
        h = np.arange(NH, dtype=np.uint64)[None, :, None, None]  # (1, NH, 1, 1)
        t = np.arange(T, dtype=np.uint64)[None, None, :, None]  # (1, 1, T, 1)
    else:
        B, T, J = shape
        h = np.zeros((1, 1, 1), dtype=np.uint64)  # (1, 1, 1)
        t = np.arange(T, dtype=np.uint64)[None, :, None]  # (1, T, 1)
    lead = (1,) * (len(shape) - 1)
    b = (row_offset + np.arange(B, dtype=np.uint64)).reshape((B,) + lead[1:] + (1,))  # (B, 1.., 1)
    G = -(-J // 4)
    g = np.arange(G, dtype=np.uint64).reshape(lead + (G,))  # (1.., G)
    c1 = t + np.uint64(FIELD) * h
    c2 = b + np.uint64(FIELD * (4 * layer + site))
    full = shape[:-1] + (G,)
    counter = np.stack([np.broadcast_to(g, full), np.broadcast_to(c1, full), np.broadcast_to(c2, full),
                        np.full(full, step, dtype=np.uint64)], axis=-1).astype(np.uint32)  # (..., G, 4)
    key = np.array([seed & MASK32, seed >> 32], dtype=np.uint32)  # (2,)
    words = philox4x32(counter, key)  # (..., G, 4): element j is word j % 4 of group j // 4
    return words.reshape(shape[:-1] + (4 * G,))[..., :J]


def dropout_mask(seed, step, layer, site, shape, p, row_offset=0):
    """Keep mask (bool, True = kept) of one site: shape [B, T, C] for sites 0
    (embedding, layer 0), 2 (attention output), 3 (MLP output); [B, NH, T, T]
    for site 1 (attention probabilities). An element is kept when its word
    is >= floor(p * 2^32), p rounded to float32 (SPEC §dropout)."""
    threshold = dropout_threshold(p, "p (the dropout rate)")
    return dropout_words(seed, step, layer, site, shape, row_offset) >= np.uint32(threshold)


def check_dropout_key(dropout) -> DropoutKey | None:
    """`forward`'s dropout argument: None or a DropoutKey (ValueError otherwise)."""
    if dropout is not None and not isinstance(dropout, DropoutKey):
        raise ValueError(f"dropout must be None or a DropoutKey(seed, step, row_offset), "
                         f"got {type(dropout).__name__}")
    return dropout


# --- applying a mask (the reference's site forward/backward) -------------------------
def dropout_forward(x, keep, scale):
    """x * scale where kept, +0 where dropped (SPEC §dropout)."""
    return np.where(keep, x * scale, x.dtype.type(0))


def dropout_backward(dout, keep, scale):
    """dout * scale where kept, +0 where dropped: the forward's mask."""
    return np.where(keep, dout * scale, dout.dtype.type(0))
