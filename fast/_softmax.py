"""Softmax kernels and the vectorised float32 exp (SPEC §model, §tolerances and §fast-model).

The causal softmax of attention's scores (its backward and the products
around it are in fast/_attention.py) and the fused softmax + cross-entropy +
its gradient of the loss, each one kernel for both dtypes: `exp_of` picks the
exp by the data's type when Numba compiles it (float32 data the vectorising
`exp_nonpositive`, float64 data np.exp: fast in float64 agrees with the
reference to ~1e-16). Both run one row per prange iteration (attention: one
(b, h) head) with float64 denominators; the float64 mean of the per-row
losses.

Dimension legend: B batch, T time, NH heads, V vocab, N = B*T rows.
"""
from __future__ import annotations

import numpy as np
from numba import prange
from numba.core import types
from numba.extending import overload

from ._numba import kernel

# float32 exp for x <= 0 (every argument here is z - max z): Cody-Waite
# reduction x = n ln2 + r with |r| <= ln2/2 (ln2 split in two parts, the first
# exact in float32), Cephes' degree-7 polynomial for exp(r) (1 + r + r^2 (...)),
# and 2^n put into the exponent bits in two steps (times 2^(n+64), then
# times 2^-64: exact for normal results, a second rounding for subnormal ones). Pure
# arithmetic and selects, so the row loops vectorise (libm expf is one call
# per element; the loss kernel is 3x faster on [1024, 512]). Max relative
# error against exp in float64, measured over every float32 in [-87.33, 0]:
# 3.0e-7 (about 2.5 ulp; tests/fast_internals/test_fast_kernels.py checks a dense sample
# against EXP_F32_REL). Below -87.33 the result is subnormal (absolute error
# <= 3 * 2^-149, two roundings), below -104 it is 0; -inf gives 0, NaN gives NaN.
EXP_F32 = tuple(np.float32(v) for v in (
    1.44269504088896341,  # log2(e)
    0.693359375, -2.12194440e-4,  # ln 2 = c1 + c2, c1 exact in float32
    1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
    -104.0))  # below: 0


@kernel(tolerant=True, inline=True)
def exp_nonpositive(x, coeffs):
    """exp(x) in float32 for x <= 0; `coeffs` is EXP_F32, an argument of the
    calling kernel (inlined into its loop, so the loop vectorises).
    Twin: np.exp in the reference's softmaxes (to EXP_F32_REL)."""
    log2e, c1, c2, p0, p1, p2, p3, p4, p5, lo = coeffs
    xc = max(x, lo)  # NaN stays NaN through the selects below
    n = np.floor(xc * log2e + np.float32(0.5))
    r = xc - n * c1
    r = r - n * c2
    q = p0 * r + p1
    q = q * r + p2
    q = q * r + p3
    q = q * r + p4
    q = q * r + p5
    q = q * (r * r) + r + np.float32(1.0)
    ni = np.int32(n) + np.int32(64 + 127)  # exponent field of 2^(n + 64), n in [-104, 0]
    e = q * np.int32(ni << 23).view(np.float32) * np.float32(5.421010862427522e-20)  # * 2^-64
    if x < lo:
        e = np.float32(0.0)
    if x != x:
        e = x
    return e


@kernel(tolerant=True)
def exp_f32_into(x, coeffs, out):
    """out[i] = exp(x[i]) for float32 x <= 0 (`coeffs`: EXP_F32), in a loop that vectorises as
    the softmax kernels' do (for tests: the machine code the loss runs, not a scalar stand-in).
    Twin: np.exp."""
    for i in range(x.shape[0]):
        out[i] = exp_nonpositive(x[i], coeffs)


def exp_of(x, coeffs):
    """exp(x) for x <= 0 in x's own precision, for kernels (Numba picks the form by x's
    type, at compile time): for float32 x `exp_nonpositive` (`coeffs` = EXP_F32), for
    float64 x np.exp (`coeffs` unused). So each softmax below is one kernel for both
    dtypes. Only this file's kernels call it: an overload is no Numba dispatcher, so the
    callee digest of fast/_numba.py would not see this file from a caller in another one.
    Twin: np.exp in the reference's softmaxes."""
    raise TypeError("exp_of is compiled into Numba kernels only")


@overload(exp_of, inline="always")
def _exp_of(x, coeffs):
    if x == types.float32:
        return exp_nonpositive.py_func  # its body, inlined: the loop still vectorises
    return lambda x, coeffs: np.exp(x)


@kernel(parallel=True, tolerant=True)
def causal_softmax_into(s, scale, exp_c):
    """In place on scores s [B, NH, T, T]: p[t, u] = softmax_u(scale * s[t, u])
    over u <= t, exactly 0 for u > t; denominators in float64; exp by `exp_of`
    (`exp_c` = EXP_F32, read by float32 scores only).
    Twin: the mask + softmax lines of reference attention_forward."""
    B, NH, T, _ = s.shape
    for bh in prange(B * NH):
        b = bh // NH
        h = bh % NH
        for t in range(T):
            p = s[b, h, t]
            mx = p[0] * scale
            for u in range(t + 1):
                z = p[u] * scale
                p[u] = z
                if z > mx:
                    mx = z
            total = 0.0
            for u in range(t + 1):
                e = exp_of(p[u] - mx, exp_c)
                p[u] = e
                total += e
            inv = 1.0 / total
            for u in range(t + 1):
                p[u] = p[u] * inv
            for u in range(t + 1, T):
                p[u] = 0.0


@kernel(parallel=True, tolerant=True)
def softmax_xent_rows_into(logits, targets, inv_n, losses, dlogits, exp_c):
    """Fused softmax + cross-entropy of rows: losses[r] = log(sum exp(z - max z)) -
    (z[target] - max z); dlogits[r] = (softmax(z) - onehot(target)) * inv_n. `dlogits`
    may be `logits`. exp by `exp_of` (`exp_c` = EXP_F32, read by float32 rows only).
    Twin: reference cross_entropy_forward + cross_entropy_backward."""
    N, V = logits.shape
    for r in prange(N):
        row = logits[r]
        out = dlogits[r]
        mx = row[0]
        for j in range(1, V):
            mx = max(mx, row[j])
        zt = row[targets[r]] - mx
        total = 0.0  # float64: V terms
        for j in range(V):
            e = exp_of(row[j] - mx, exp_c)
            out[j] = e
            total += e
        losses[r] = np.log(total) - zt
        scale = inv_n / total
        for j in range(V):
            out[j] = out[j] * scale
        out[targets[r]] -= inv_n


@kernel
def mean_f64(values):
    """float64 mean, summed serially in row order. Twin: `nll.mean(dtype=np.float64)`
    in reference cross_entropy_forward."""
    s = 0.0
    for i in range(values.shape[0]):
        s += np.float64(values[i])
    return s / values.shape[0]
