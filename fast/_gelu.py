"""GELU kernels: the formula once, and every pass that applies it (SPEC §model and §fast-model).

The tanh-approximation GELU (SPEC §model) is written here once, in three inlined
helpers: `gelu_tanh_arg` (u = gc (v + ga v^3)), `gelu_from_tanh` (0.5 v
(1 + tanh u)) and `gelu_slope_from_tanh` (its derivative). Every GELU pass
of fast calls them: the batched forward and backward below and the one-row
GELU of generation (fast/generate.py). Each batched pass is one kernel for
both dtypes: `tanh_of` picks the tanh by the data's type when Numba compiles
it (float32 data the rational `tanh_rational`, float64 data np.tanh). The
constants come in as arguments in the data's dtype; `half`, `one`, `three`
are exact, so float32 data stays float32.

Parallel split: one row per prange iteration; the backward fused with the fc1
bias gradient owns chunks of ROW_CHUNK rows and sums its partials in chunk
order (fast/_colsum.py).

Dimension legend: N rows (B*T), F = width of a row (4C in the model).
"""
from __future__ import annotations

import numpy as np
from numba import prange
from numba.core import types
from numba.extending import overload

from ._colsum import chunk_sums_into
from ._numba import kernel

# float32 tanh as a rational function: Eigen's generic_fast_tanh_float (odd
# degree-13 numerator, even degree-6 denominator, input clamped to +-7.9053).
# Pure arithmetic, so the GELU loops vectorise (8x faster than libm tanhf
# here); max relative error 2.6e-7 over the float32 range (TANH_F32_REL,
# checked in tests/fast_internals/test_fast_kernels.py). float64 data uses np.tanh. Each
# kernel reads the tuple once, before its loop, and hands it to the inlined
# helpers: written inline as np.float32(...) calls inside the loop the
# coefficients stop LLVM vectorising.
TANH_F32 = tuple(np.float32(v) for v in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,  # a13 .. a1
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03,  # b6 .. b0
    7.90531110763549805))  # clamp


@kernel(tolerant=True, inline=True)
def tanh_rational(u, coeffs):
    """tanh(u) as the odd rational p(u^2) u / q(u^2), u clamped to [-cl, cl];
    `coeffs` is TANH_F32 (a13 .. a1, b6 .. b0, cl). Inlined, so the callers'
    loops vectorise. Twin: np.tanh in reference gelu_forward (to TANH_F32_REL)."""
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl = coeffs
    u = min(max(u, -cl), cl)
    u2 = u * u
    p = u2 * a13 + a11
    p = u2 * p + a9
    p = u2 * p + a7
    p = u2 * p + a5
    p = u2 * p + a3
    p = u2 * p + a1
    q = u2 * b6 + b4
    q = u2 * q + b2
    q = u2 * q + b0
    return u * p / q


@kernel(tolerant=True, inline=True)
def gelu_tanh_arg(v, gc, ga):
    """u = gc (v + ga v^3), the argument of tanh in GELU (gc = sqrt(2/pi), ga = 0.044715).
    Twin: the `u = ...` line of reference gelu_forward."""
    return gc * (v + ga * v * v * v)


@kernel(tolerant=True, inline=True)
def gelu_from_tanh(v, th, half, one):
    """gelu(v) = half v (one + th), th = tanh(gelu_tanh_arg(v)). Twin: reference gelu_forward."""
    return half * v * (one + th)


@kernel(tolerant=True, inline=True)
def gelu_slope_from_tanh(v, th, gc, ga, half, one, three):
    """d gelu / dv = half (one + th) + half v (one - th^2) gc (one + three ga v^2),
    th = tanh(gelu_tanh_arg(v)). Twin: reference gelu_backward."""
    du = gc * (one + three * ga * v * v)
    return half * (one + th) + half * v * (one - th * th) * du


@kernel(tolerant=True)
def tanh_f32(u):
    """The float32 rational tanh of one value (for tests; the GELU kernels inline it).
    Twin: np.tanh."""
    return tanh_rational(u, TANH_F32)


def tanh_of(u, coeffs):
    """tanh(u) in u's own precision, for kernels (Numba picks the form by u's type,
    at compile time): for float32 u the rational `tanh_rational` (`coeffs` = TANH_F32),
    for float64 u np.tanh (`coeffs` unused). So each GELU pass below is one kernel for both
    dtypes. Only this file's kernels call it: an overload is no Numba dispatcher, so the
    callee digest of fast/_numba.py would not see this file from a caller in another one.
    Twin: np.tanh in reference gelu_forward."""
    raise TypeError("tanh_of is compiled into Numba kernels only")


@overload(tanh_of, inline="always")
def _tanh_of(u, coeffs):
    if u == types.float32:
        return tanh_rational.py_func  # its body, inlined: the loop still vectorises
    return lambda u, coeffs: np.tanh(u)


@kernel(parallel=True, tolerant=True)
def bias_gelu_forward_into(h, bias, gc, ga, g):
    """h += bias (in place: h becomes the GELU input, kept for backward), then
    g = gelu(h). Twin: `linear_forward` (fc1's bias) then reference gelu_forward."""
    N, F = h.shape
    tanh_c = TANH_F32
    half = np.float32(0.5)  # exact constants: stay float32 for float32 data
    one = np.float32(1.0)
    for r in prange(N):
        hr = h[r]
        gr = g[r]
        for c in range(F):
            x = hr[c] + bias[c]
            hr[c] = x
            gr[c] = gelu_from_tanh(x, tanh_of(gelu_tanh_arg(x, gc, ga), tanh_c), half, one)


@kernel(parallel=True, tolerant=True)
def gelu_forward_into(x, gc, ga, out):
    """out = gelu(x), elementwise over rows. Twin: reference gelu_forward."""
    N, F = x.shape
    tanh_c = TANH_F32
    half = np.float32(0.5)
    one = np.float32(1.0)
    for r in prange(N):
        xr = x[r]
        orow = out[r]
        for c in range(F):
            v = xr[c]
            orow[c] = gelu_from_tanh(v, tanh_of(gelu_tanh_arg(v, gc, ga), tanh_c), half, one)


@kernel(tolerant=True, inline=True)
def gelu_backward_row_inplace(dr, xr, gc, ga, tanh_c, half, one, three):
    """dr = dr * gelu'(xr) on one row (tanh by `tanh_of`; `half`, `one`, `three` from the
    calling kernel, as for the formula's helpers). In place on purpose: with a separate
    output that may alias `d` (the backward pass reuses its buffer), LLVM's runtime
    overlap check fails and the loop runs scalar (measured 8x slower); one array read
    and written at the same index vectorises. Twin: reference gelu_backward."""
    for c in range(xr.shape[0]):
        v = xr[c]
        th = tanh_of(gelu_tanh_arg(v, gc, ga), tanh_c)
        dr[c] = dr[c] * gelu_slope_from_tanh(v, th, gc, ga, half, one, three)


@kernel(parallel=True, tolerant=True)
def gelu_backward_inplace(d, x, gc, ga):
    """d = d * gelu'(x), in place, one row per parallel iteration.
    Twin: reference gelu_backward."""
    tanh_c = TANH_F32
    half = np.float32(0.5)
    one = np.float32(1.0)
    three = np.float32(3.0)
    for r in prange(x.shape[0]):
        gelu_backward_row_inplace(d[r], x[r], gc, ga, tanh_c, half, one, three)


@kernel(parallel=True, tolerant=True)
def gelu_backward_colsum_inplace(d, x, gc, ga, rows, partial, db):
    """`gelu_backward_inplace` and the column sums of its result (the fc1
    bias gradient, fast/_colsum.py `colsum_into`) in one pass and one parallel
    region: fixed chunks of `rows` rows; partials summed in chunk order after the loop.
    Twin: reference gelu_backward, then fc1's `db` in linear_backward."""
    N, F = x.shape
    n_chunks = (N + rows - 1) // rows
    tanh_c = TANH_F32
    half = np.float32(0.5)
    one = np.float32(1.0)
    three = np.float32(3.0)
    for ch in prange(n_chunks):
        p = partial[ch]
        for c in range(F):
            p[c] = 0.0
        for r in range(ch * rows, min(ch * rows + rows, N)):
            dr = d[r]
            gelu_backward_row_inplace(dr, x[r], gc, ga, tanh_c, half, one, three)
            for c in range(F):
                p[c] += dr[c]
    chunk_sums_into(partial, n_chunks, db)
