"""Dropout in Numba: Philox4x32-10 masks and the kernels that apply them
(SPEC §dropout). Twin of `reference/dropout.py` (the layout and the
maths live there).

Every kernel that draws a mask lives in this file with the generator it
inlines (Numba's cache is invalidated per file). Masks are generated inside
the pass that touches the data (bias + dropout of a projection, dropout of
the embedding sum, of the attention probabilities) and parallel by output
ownership: one row (or one (batch, head)) per prange iteration, whose words
depend only on its own counters, so the bytes do not depend on the thread
count. Integer arithmetic only: no fastmath on the generator; the kernels
that also scale floats are exact single roundings (x * s), so they need no
tolerance either.

Dimension legend: B batch, T time, C n_embd, NH heads, N = B*T rows,
J = length of a mask vector (C, or the T key positions of site 1).
"""
from __future__ import annotations

import numpy as np
from numba import prange

from reference.dropout import DropoutKey  # noqa: F401  (re-exported: the key is data, nothing to optimise)
from reference.dropout import (ATTENTION, FIELD, MASK32, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1,
                               check_mask_args, dropout_threshold)

from ._numba import kernel

_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
_LOW = np.uint64(MASK32)
_S32 = np.uint64(32)


@kernel(inline=True)
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of one counter (uint64 words < 2^32): the four output
    words. Twin: reference.dropout.philox4x32."""
    for r in range(10):
        if r > 0:
            k0 = (k0 + _W0) & _LOW
            k1 = (k1 + _W1) & _LOW
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _LOW, (p0 >> _S32) ^ c3 ^ k1, p0 & _LOW
    return c0, c1, c2, c3


@kernel(inline=True)
def _keep_vector(keep, n, c1, c2, c3, k0, k1, thr):
    """keep[j] = word j of the vector with counters (j // 4, c1, c2, c3) >= thr, j < n (uint8)."""
    full = n // 4
    for g in range(full):
        w0, w1, w2, w3 = _philox4x32_10(np.uint64(g), c1, c2, c3, k0, k1)
        keep[4 * g] = w0 >= thr
        keep[4 * g + 1] = w1 >= thr
        keep[4 * g + 2] = w2 >= thr
        keep[4 * g + 3] = w3 >= thr
    if full * 4 < n:
        w0, w1, w2, w3 = _philox4x32_10(np.uint64(full), c1, c2, c3, k0, k1)
        j = 4 * full
        keep[j] = w0 >= thr
        if j + 1 < n:
            keep[j + 1] = w1 >= thr
        if j + 2 < n:
            keep[j + 2] = w2 >= thr


@kernel(parallel=True)
def _philox_rows(counter, key, out):
    """out[i] = philox4x32_10(counter[i], key[i]) for uint32 [n, 4] / [n, 2] rows."""
    for i in prange(counter.shape[0]):
        w0, w1, w2, w3 = _philox4x32_10(np.uint64(counter[i, 0]), np.uint64(counter[i, 1]),
                                        np.uint64(counter[i, 2]), np.uint64(counter[i, 3]),
                                        np.uint64(key[i, 0]), np.uint64(key[i, 1]))
        out[i, 0] = w0
        out[i, 1] = w1
        out[i, 2] = w2
        out[i, 3] = w3


@kernel(parallel=True)
def _mask_rows_into(keep, c1s, c2s, c3, k0, k1, thr):
    """keep[r] = the mask vector of row r (counters c1s[r], c2s[r], c3), one row per iteration."""
    J = keep.shape[1]
    for r in prange(keep.shape[0]):
        _keep_vector(keep[r], J, np.uint64(c1s[r]), np.uint64(c2s[r]), c3, k0, k1, thr)


# --- the model's sites -------------------------------------------------------------
@kernel(parallel=True)
def dropout_rows_inplace(x, bias, has_bias, T, c2, c3, k0, k1, thr, scale, keep):
    """Sites 0, 2, 3 on rows [N, C] (row r = b*T + t): keep[r] = mask of
    (t, b + c2), then x = (x [+ bias]) * scale where kept, 0 where dropped.
    Twin: reference dropout_forward after linear_forward's bias add (sites 2,
    3) or on the embedding sum (site 0, no bias)."""
    N, C = x.shape
    for r in prange(N):
        kr = keep[r]
        _keep_vector(kr, C, np.uint64(r % T), np.uint64(r // T) + c2, c3, k0, k1, thr)
        xr = x[r]
        if has_bias:
            for c in range(C):
                xr[c] = (xr[c] + bias[c]) * scale if kr[c] else 0.0
        else:
            for c in range(C):
                xr[c] = xr[c] * scale if kr[c] else 0.0


@kernel(parallel=True)
def dropout_backward_into(d, keep, scale, out):
    """out = d * scale where kept, 0 where dropped (the forward's mask), per row.
    Twin: reference dropout_backward."""
    N, C = d.shape
    for r in prange(N):
        kr, dr, orow = keep[r], d[r], out[r]
        for c in range(C):
            orow[c] = dr[c] * scale if kr[c] else 0.0


@kernel(parallel=True)
def attention_dropout_into(p, c2, c3, k0, k1, thr, scale, pd):
    """Site 1 on the probabilities p [B, NH, T, T]: pd = p * scale where
    kept, 0 where dropped; only u <= t draws words (p = 0 beyond). One
    (batch, head) per iteration (counters (u // 4, t + 2^16 h, b + c2, c3)).
    Twin: dropout_mask then dropout_forward on the probabilities in reference `_attention_forward`."""
    B, NH, T, _ = p.shape
    for bh in prange(B * NH):
        b = bh // NH
        h = bh % NH
        keep = np.empty(T, dtype=np.uint8)
        for t in range(T):
            _keep_vector(keep, t + 1, np.uint64(t) + np.uint64(FIELD) * np.uint64(h), np.uint64(b) + c2,
                         c3, k0, k1, thr)
            pr, dr = p[b, h, t], pd[b, h, t]
            for u in range(t + 1):
                dr[u] = pr[u] * scale if keep[u] else 0.0
            for u in range(t + 1, T):
                dr[u] = 0.0


@kernel(parallel=True)
def attention_dropout_backward_inplace(dp, pd, scale):
    """dp = dL/dpd -> dL/dp = dp * scale where kept, 0 where dropped, the
    mask read from pd: where p > 0, pd = p * scale (scale >= 1) is 0 exactly
    when dropped; where p = 0 the softmax backward gives ds = 0 whatever dp
    is (SPEC §dropout). One (batch, head) per iteration. Twin: reference dropout_backward."""
    B, NH, T, _ = dp.shape
    for bh in prange(B * NH):
        b = bh // NH
        h = bh % NH
        for t in range(T):
            dr, pr = dp[b, h, t], pd[b, h, t]
            for u in range(T):
                dr[u] = dr[u] * scale if pr[u] != 0.0 else 0.0


def key_words(seed: int) -> tuple:
    """The Philox key (k0, k1) of a seed, as uint64 words."""
    return np.uint64(seed & MASK32), np.uint64(seed >> 32)


def site_c2(row_offset: int, layer: int, site: int) -> np.uint64:
    """c2 of row 0 of a call: row_offset + 2^16 (4 layer + site) (SPEC §dropout)."""
    return np.uint64(row_offset + FIELD * (4 * layer + site))


# --- public functions (same signatures as reference.dropout) -------------------------
def philox4x32(counter, key):
    """Philox4x32-10 on uint32 counters [..., 4] and keys [..., 2] (broadcast) -> uint32 [..., 4]."""
    counter = np.asarray(counter)
    key = np.asarray(key)
    for name, a, n in (("counter", counter, 4), ("key", key, 2)):
        if a.dtype != np.uint32 or a.ndim < 1 or a.shape[-1] != n:
            raise ValueError(f"{name} must be a uint32 array [..., {n}], got dtype {a.dtype}, shape {a.shape}")
    lead = np.broadcast_shapes(counter.shape[:-1], key.shape[:-1])
    c = np.ascontiguousarray(np.broadcast_to(counter, lead + (4,))).reshape(-1, 4)
    k = np.ascontiguousarray(np.broadcast_to(key, lead + (2,))).reshape(-1, 2)
    out = np.empty_like(c)
    _philox_rows(c, k, out)
    return out.reshape(lead + (4,))


def dropout_mask(seed, step, layer, site, shape, p, row_offset=0):
    """Keep mask (bool, True = kept) of one site (SPEC §dropout; same contract as reference)."""
    shape = check_mask_args(seed, step, layer, site, shape, row_offset)
    thr = np.uint64(dropout_threshold(p, "p (the dropout rate)"))
    k0, k1 = key_words(seed)
    J = shape[-1]
    if site == ATTENTION:
        B, NH, T, _ = shape
        b, h, t = np.meshgrid(np.arange(B), np.arange(NH), np.arange(T), indexing="ij")
        c1 = (t + FIELD * h).reshape(-1)
        c2 = (b + row_offset + FIELD * (4 * layer + site)).reshape(-1)
    else:
        B, T, _ = shape
        b, t = np.meshgrid(np.arange(B), np.arange(T), indexing="ij")
        c1 = t.reshape(-1)
        c2 = (b + row_offset + FIELD * (4 * layer + site)).reshape(-1)
    keep = np.empty((c1.size, J), dtype=np.uint8)
    _mask_rows_into(keep, c1.astype(np.uint64), c2.astype(np.uint64), np.uint64(step), k0, k1, thr)
    return keep.reshape(shape).view(np.bool_)

