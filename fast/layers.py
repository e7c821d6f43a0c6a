"""Layer kernels and the public forward/backward pairs (SPEC sections 2 and 9).

Twin of `reference/layers.py` (the maths and the derivations live there).
Rows: every activation is a 2-D array [N, width] with N = B*T rows, so
linear layers are one BLAS sgemm with a preallocated output; the kernels here
do the rest. Parallel split (never by thread count):
- row kernels (layernorm, GELU, bias, softmax): one row per prange iteration;
- column sums (bias and LayerNorm parameter gradients): fixed chunks of
  `ROW_CHUNK` rows fill their own partial sums, which are then added in
  chunk order, serially after the parallel loop (one parallel region); the
  backward's column sums are taken in the pass that writes their input
  (LayerNorm backward, GELU backward, head merge), which then owns chunks
  of rows too;
- attention: q k^T and p v per head as batched BLAS sgemm; the causal
  softmax and its backward one (batch, head) per iteration, which owns its
  [T, T] block;
- embedding backward: one vocabulary row (resp. position) per iteration,
  summing its occurrences in row order.
Kernels checked to a tolerance (SPEC section 8) use the tolerant fastmath
flags of `fast/_numba.py`.

Dimension legend: B batch, T time, C n_embd, V vocab, NH heads, hs = C/NH,
N = B*T rows, F = width of a row (C, 4C or V).
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from reference.layers import (GELU_A, GELU_C, LN_EPS, _check_float, check_attention_args,
                              check_embedding_args, check_layernorm_args, check_linear_args)

from ._blas import Product, matmul_into, matmuls_into
from ._numba import kernel
from ._softmax import EXP_F32, causal_softmax_f32_into

ROW_CHUNK = 64  # rows per parallel iteration of the column-sum kernels (fixed: thread-independent)


# --- row kernels ------------------------------------------------------------------
# float32 tanh as a rational function: Eigen's generic_fast_tanh_float (odd
# degree-13 numerator, even degree-6 denominator, input clamped to +-7.9053).
# Pure arithmetic, so the GELU loops vectorise (8x faster than libm tanhf
# here); max relative error 2.6e-7 over the float32 range (TANH_F32_REL,
# checked in conformance/test_fast.py). float64 data uses np.tanh. The
# coefficients are unpacked into locals before each kernel's loop: written
# inline as np.float32(...) calls inside the loop they stop LLVM vectorising.
_TANH_F32 = tuple(np.float32(v) for v in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
    1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,  # a13 .. a1
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03,  # b6 .. b0
    7.90531110763549805))  # clamp


@kernel(tolerant=True, inline=True)
def _tanh_rational(u, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl):
    """tanh(u) as the odd rational p(u^2) u / q(u^2), u clamped to [-cl, cl];
    the coefficients come in as arguments (the callers unpack _TANH_F32 once,
    before their loops) and it is inlined, so the loops vectorise."""
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
def _gelu_rational(v, gc, ga, half, one, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl):
    """float32 GELU of one value with the rational tanh (inlined like `_tanh_rational`)."""
    u = gc * (v + ga * v * v * v)
    th = _tanh_rational(u, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl)
    return half * v * (one + th)


@kernel(tolerant=True, inline=True)
def _gelu_grad_rational(v, gc, ga, half, one, three, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl):
    """float32 d gelu / dv at v with the rational tanh (inlined like `_tanh_rational`)."""
    u = gc * (v + ga * v * v * v)
    th = _tanh_rational(u, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl)
    du = gc * (one + three * ga * v * v)
    return half * (one + th) + half * v * (one - th * th) * du


@kernel(tolerant=True)
def _tanh_f32(u):
    """The float32 rational tanh of one value (for tests; the GELU kernels inline it)."""
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl = _TANH_F32
    return _tanh_rational(u, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl)


@kernel(parallel=True, tolerant=True)
def _bias_gelu_forward_f32_into(h, bias, gc, ga, g):
    """float32 `_bias_gelu_forward_into` with the rational tanh inlined."""
    N, F = h.shape
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl = _TANH_F32
    half = np.float32(0.5)
    one = np.float32(1.0)
    for r in prange(N):
        hr = h[r]
        gr = g[r]
        for c in range(F):
            x = hr[c] + bias[c]
            hr[c] = x
            gr[c] = _gelu_rational(x, gc, ga, half, one, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl)


@kernel(parallel=True, tolerant=True)
def _gelu_forward_f32_into(x, gc, ga, out):
    """float32 `_gelu_forward_into` with the rational tanh inlined."""
    N, F = x.shape
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl = _TANH_F32
    half = np.float32(0.5)
    one = np.float32(1.0)
    for r in prange(N):
        xr = x[r]
        orow = out[r]
        for c in range(F):
            orow[c] = _gelu_rational(xr[c], gc, ga, half, one, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl)


@kernel(parallel=True, tolerant=True)
def _gelu_backward_f32_inplace(d, x, gc, ga):
    """float32 `_gelu_backward_inplace` with the rational tanh inlined."""
    N, F = x.shape
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl = _TANH_F32
    half = np.float32(0.5)
    one = np.float32(1.0)
    three = np.float32(3.0)
    for r in prange(N):
        xr = x[r]
        dr = d[r]
        for c in range(F):
            dr[c] = dr[c] * _gelu_grad_rational(xr[c], gc, ga, half, one, three, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl)


@kernel(parallel=True, tolerant=True)
def _embedding_forward_into(tokens, wte, wpe, T, out):
    """out[r] = wte[tokens[r]] + wpe[r % T]. Twin: reference embedding_forward."""
    N, C = out.shape
    for r in prange(N):
        tok = tokens[r]
        t = r % T
        for c in range(C):
            out[r, c] = wte[tok, c] + wpe[t, c]


@kernel
def _bucket_rows(tokens, V, starts, rows):
    """Counting sort of the rows by token id: token v's rows, in increasing
    order, are rows[starts[v]:starts[v+1]]."""
    starts[:] = 0
    for r in range(tokens.shape[0]):
        starts[tokens[r] + 1] += 1
    for v in range(V):
        starts[v + 1] += starts[v]
    fill = starts[:V].copy()
    for r in range(tokens.shape[0]):
        v = tokens[r]
        rows[fill[v]] = r
        fill[v] += 1


@kernel(parallel=True, tolerant=True)
def _embedding_backward_into(dout, starts, rows, T, dwte, dwpe):
    """dwte[v] = sum of dout over v's rows (owned by v); dwpe[t] = sum over b
    of dout[b*T + t] (owned by t). Twin: reference embedding_backward."""
    N, C = dout.shape
    V = dwte.shape[0]
    for v in prange(V):
        for c in range(C):
            dwte[v, c] = 0.0
        for s in range(starts[v], starts[v + 1]):
            r = rows[s]
            for c in range(C):
                dwte[v, c] += dout[r, c]
    B = N // T
    for t in prange(dwpe.shape[0]):
        for c in range(C):
            dwpe[t, c] = 0.0
        if t < T:
            for b in range(B):
                for c in range(C):
                    dwpe[t, c] += dout[b * T + t, c]


@kernel(parallel=True, tolerant=True)
def _layernorm_forward_into(x, gamma, beta, eps, out, mean, rstd):
    """out = (x - mean) * rstd * gamma + beta per row; saves mean and rstd.
    Twin: reference layernorm_forward."""
    N, C = x.shape
    for r in prange(N):
        s = np.float32(0.0)
        for c in range(C):
            s += x[r, c]
        m = s / C
        s2 = np.float32(0.0)
        for c in range(C):
            d = x[r, c] - m
            s2 += d * d
        rs = 1.0 / np.sqrt(s2 / C + eps)
        mean[r] = m
        rstd[r] = rs
        for c in range(C):
            out[r, c] = (x[r, c] - m) * rs * gamma[c] + beta[c]


@kernel(parallel=True, tolerant=True)
def _residual_layernorm_forward_into(x, a, bias, gamma, beta, eps, x1, out, mean, rstd):
    """x1 = x + a + bias (residual add of a projection and its bias), then
    out = layernorm(x1). Twin: the residual lines of reference block_forward
    followed by layernorm_forward."""
    N, C = x.shape
    for r in prange(N):
        s = np.float32(0.0)
        for c in range(C):
            val = x[r, c] + (a[r, c] + bias[c])
            x1[r, c] = val
            s += val
        m = s / C
        s2 = np.float32(0.0)
        for c in range(C):
            d = x1[r, c] - m
            s2 += d * d
        rs = 1.0 / np.sqrt(s2 / C + eps)
        mean[r] = m
        rstd[r] = rs
        for c in range(C):
            out[r, c] = (x1[r, c] - m) * rs * gamma[c] + beta[c]


@kernel(tolerant=True, inline=True)
def _chunk_sums_into(partial, n_chunks, out):
    """out[c] = partial[0, c] + partial[1, c] + ... in chunk order (serial; the
    tail of the column-sum kernels, after their parallel loop over chunks: a
    second parallel loop over the columns cost a second parallel region, whose
    start and join outweighed these n_chunks x F adds)."""
    F = out.shape[0]
    for c in range(F):
        out[c] = partial[0, c]
    for ch in range(1, n_chunks):
        p = partial[ch]
        for c in range(F):
            out[c] += p[c]


@kernel(parallel=True, tolerant=True)
def _layernorm_backward_grads_into(dout, x, mean, rstd, gamma, dres, has_res, dx, rows, pg, pb, dgamma, dbeta,
                                   with_sum, ps, dsum):
    """dx = [dres +] rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma,
    per row (`dres`, added when `has_res`, is the residual gradient passing
    around the LayerNorm; it may be `dx` itself), and dgamma = sum_rows dout *
    xhat, dbeta = sum_rows dout, in one pass and one parallel region (SPEC
    10.2): fixed chunks of `rows` rows each write their dx rows and fill their
    partial rows of dgamma and dbeta (pg, pb [n_chunks, C]); with `with_sum`,
    also of dsum = the column sums of dx (ps; the bias gradient of the
    projection that produced this LayerNorm's input, whose branch gradient dx
    is). The partials are summed in chunk order after the loop.
    Twin: reference layernorm_backward."""
    N, C = x.shape
    n_chunks = (N + rows - 1) // rows
    for ch in prange(n_chunks):
        g = pg[ch]
        b = pb[ch]
        q = ps[ch]
        for c in range(C):
            g[c] = 0.0
            b[c] = 0.0
            q[c] = 0.0
        for r in range(ch * rows, min(ch * rows + rows, N)):
            m = mean[r]
            rs = rstd[r]
            dr = dout[r]
            xr = x[r]
            sg = np.float32(0.0)
            sgx = np.float32(0.0)
            for c in range(C):
                gv = dr[c] * gamma[c]
                sg += gv
                sgx += gv * ((xr[c] - m) * rs)
            sg = sg / C
            sgx = sgx / C
            for c in range(C):
                d = dr[c]
                xhat = (xr[c] - m) * rs
                g[c] += d * xhat
                b[c] += d
            if has_res:
                for c in range(C):
                    xhat = (xr[c] - m) * rs
                    dx[r, c] = rs * (dr[c] * gamma[c] - sg - xhat * sgx) + dres[r, c]
            else:
                for c in range(C):
                    xhat = (xr[c] - m) * rs
                    dx[r, c] = rs * (dr[c] * gamma[c] - sg - xhat * sgx)
            if with_sum:
                dxr = dx[r]
                for c in range(C):
                    q[c] += dxr[c]
    _chunk_sums_into(pg, n_chunks, dgamma)
    _chunk_sums_into(pb, n_chunks, dbeta)
    if with_sum:
        _chunk_sums_into(ps, n_chunks, dsum)


@kernel(parallel=True, tolerant=True)
def _gelu_backward_f32_colsum_inplace(d, x, gc, ga, rows, partial, db):
    """`_gelu_backward_f32_inplace` and the column sums of its result (the fc1
    bias gradient, `_colsum_into`) in one pass and one parallel region: fixed
    chunks of `rows` rows; partials summed in chunk order after the loop."""
    N, F = x.shape
    n_chunks = (N + rows - 1) // rows
    a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl = _TANH_F32
    half = np.float32(0.5)
    one = np.float32(1.0)
    three = np.float32(3.0)
    for ch in prange(n_chunks):
        p = partial[ch]
        for c in range(F):
            p[c] = 0.0
        for r in range(ch * rows, min(ch * rows + rows, N)):
            xr = x[r]
            dr = d[r]
            for c in range(F):
                dr[c] = dr[c] * _gelu_grad_rational(xr[c], gc, ga, half, one, three, a13, a11, a9, a7, a5, a3, a1, b6, b4, b2, b0, cl)
            for c in range(F):
                p[c] += dr[c]
    _chunk_sums_into(partial, n_chunks, db)


@kernel(parallel=True, tolerant=True)
def _colsum_into(d, rows, partial, out):
    """out[c] = sum over rows of d[r, c] (bias gradients): fixed chunks of
    `rows` rows fill their own partial row (partial [n_chunks, F]), then the
    partials are summed in chunk order, serially (one parallel region)."""
    N, F = d.shape
    n_chunks = (N + rows - 1) // rows
    for ch in prange(n_chunks):
        p = partial[ch]
        for c in range(F):
            p[c] = 0.0
        for r in range(ch * rows, min(ch * rows + rows, N)):
            for c in range(F):
                p[c] += d[r, c]
    _chunk_sums_into(partial, n_chunks, out)


def n_row_chunks(N: int) -> int:
    return max(1, -(-N // ROW_CHUNK))


@kernel(parallel=True, tolerant=True)
def _add_bias_into(a, bias):
    """a += bias, per row (after an sgemm). Twin: `out += b` in reference linear_forward."""
    N, F = a.shape
    for r in prange(N):
        for c in range(F):
            a[r, c] += bias[c]


@kernel(parallel=True, tolerant=True)
def _add_bias3_into(q, k, v, bq, bk, bv):
    """q += bq, k += bk, v += bv, per row (the three attention projections)."""
    N, F = q.shape
    for r in prange(N):
        for c in range(F):
            q[r, c] += bq[c]
            k[r, c] += bk[c]
            v[r, c] += bv[c]


@kernel(parallel=True, tolerant=True)
def _bias_gelu_forward_into(h, bias, gc, ga, g):
    """h += bias (in place: h becomes the GELU input, kept for backward), then
    g = 0.5 h (1 + tanh(gc (h + ga h^3))). Twin: reference gelu_forward."""
    N, F = h.shape
    half = np.float32(0.5)  # exact constants: stay float32 for float32 data
    one = np.float32(1.0)
    for r in prange(N):
        for c in range(F):
            x = h[r, c] + bias[c]
            h[r, c] = x
            u = gc * (x + ga * x * x * x)
            th = np.tanh(u)
            g[r, c] = half * x * (one + th)


@kernel(parallel=True, tolerant=True)
def _gelu_forward_into(x, gc, ga, out):
    """out = 0.5 x (1 + tanh(gc (x + ga x^3))), elementwise over rows."""
    N, F = x.shape
    half = np.float32(0.5)  # exact constants: stay float32 for float32 data
    one = np.float32(1.0)
    for r in prange(N):
        for c in range(F):
            v = x[r, c]
            u = gc * (v + ga * v * v * v)
            th = np.tanh(u)
            out[r, c] = half * v * (one + th)


@kernel(parallel=True, tolerant=True)
def _gelu_backward_inplace(d, x, gc, ga):
    """d = d * (0.5 (1 + th) + 0.5 x (1 - th^2) gc (1 + 3 ga x^2)), in place.
    In place on purpose: with a separate output that may alias `d` (the
    backward pass reuses its buffer), LLVM's runtime overlap check fails and
    the loop runs scalar (measured 8x slower); one array read and written at
    the same index vectorises. Twin: reference gelu_backward."""
    N, F = x.shape
    half = np.float32(0.5)  # exact constants: stay float32 for float32 data
    one = np.float32(1.0)
    three = np.float32(3.0)
    for r in prange(N):
        for c in range(F):
            v = x[r, c]
            u = gc * (v + ga * v * v * v)
            th = np.tanh(u)
            du = gc * (one + three * ga * v * v)
            d[r, c] = d[r, c] * (half * (one + th) + half * v * (one - th * th) * du)


# --- attention ------------------------------------------------------------------
# Layout: per (b, h) head-split arrays [B, NH, T, hs]; the two products per head
# (q k^T and p v, and their backward) are batched BLAS sgemm calls
# (np.matmul over the leading [B, NH] axes, preallocated outputs); the kernels
# below do the head split/merge, the causal softmax and its backward, one
# (b, h) per parallel iteration (it owns its [T, hs] / [T, T] slices).
# The loops below index row slices from 0 (`q[r, c0:c0 + hs]`, not
# `q[r, c0 + d]`): an offset index keeps Numba's negative-index wraparound in
# the loop and LLVM then does not vectorise it (measured 5-10x slower).
@kernel(parallel=True, tolerant=True)
def _split_heads_bias_into(q, k, v, bq, bk, bv, B, T, NH, qh, kh, vh):
    """qh[b, h, t, d] = q[b*T + t, h*hs + d] + bq[h*hs + d] (same for k, v)."""
    hs = qh.shape[3]
    for bh in prange(B * NH):
        b = bh // NH
        h = bh % NH
        c0 = h * hs
        bqh, bkh, bvh = bq[c0:c0 + hs], bk[c0:c0 + hs], bv[c0:c0 + hs]
        for t in range(T):
            r = b * T + t
            qr, kr, vr = q[r, c0:c0 + hs], k[r, c0:c0 + hs], v[r, c0:c0 + hs]
            qo, ko, vo = qh[b, h, t], kh[b, h, t], vh[b, h, t]
            for d in range(hs):
                qo[d] = qr[d] + bqh[d]
                ko[d] = kr[d] + bkh[d]
                vo[d] = vr[d] + bvh[d]


@kernel(parallel=True)
def _split_heads_into(a, B, T, NH, ah):
    """ah[b, h, t, d] = a[b*T + t, h*hs + d]."""
    hs = ah.shape[3]
    for bh in prange(B * NH):
        b = bh // NH
        h = bh % NH
        for t in range(T):
            ar = a[b * T + t, h * hs:h * hs + hs]
            ao = ah[b, h, t]
            for d in range(hs):
                ao[d] = ar[d]


@kernel(parallel=True)
def _merge_heads_into(ah, B, T, NH, a):
    """a[b*T + t, h*hs + d] = ah[b, h, t, d]."""
    hs = ah.shape[3]
    for bt in prange(B * T):
        b = bt // T
        t = bt % T
        for h in range(NH):
            ao = a[bt, h * hs:h * hs + hs]
            ar = ah[b, h, t]
            for d in range(hs):
                ao[d] = ar[d]


@kernel(parallel=True, tolerant=True)
def _merge_heads_bias_grads_into(dqh, dkh, dvh, B, T, NH, rows, partial, dq, dk, dv, dbq, dbk, dbv):
    """The backward of `_split_heads_bias_into` in one pass and one parallel
    region: fixed chunks of `rows` rows (b*T + t) each write their rows
    dq[b*T + t, h*hs + d] = dqh[b, h, t, d] (same for k, v) and fill their
    partial rows of the bias gradients (partial [n_chunks, >= 3C]: q, k, v
    side by side), db[h*hs + d] = sum over (b, t) of dqh[b, h, t, d]; the
    partials are summed in chunk order after the loop."""
    hs = dqh.shape[3]
    C = NH * hs
    N = B * T
    n_chunks = (N + rows - 1) // rows
    for ch in prange(n_chunks):
        p = partial[ch]
        pq, pk, pv = p[0:C], p[C:2 * C], p[2 * C:3 * C]
        for c in range(C):
            pq[c] = 0.0
            pk[c] = 0.0
            pv[c] = 0.0
        for bt in range(ch * rows, min(ch * rows + rows, N)):
            b = bt // T
            t = bt % T
            for h in range(NH):
                c0 = h * hs
                qo, ko, vo = dq[bt, c0:c0 + hs], dk[bt, c0:c0 + hs], dv[bt, c0:c0 + hs]
                sq, sk, sv = pq[c0:c0 + hs], pk[c0:c0 + hs], pv[c0:c0 + hs]
                qr, kr, vr = dqh[b, h, t], dkh[b, h, t], dvh[b, h, t]
                for d in range(hs):
                    qo[d] = qr[d]
                    ko[d] = kr[d]
                    vo[d] = vr[d]
                    sq[d] += qr[d]
                    sk[d] += kr[d]
                    sv[d] += vr[d]
    for c in range(C):
        dbq[c] = partial[0, c]
        dbk[c] = partial[0, C + c]
        dbv[c] = partial[0, 2 * C + c]
    for ch in range(1, n_chunks):
        p = partial[ch]
        pq, pk, pv = p[0:C], p[C:2 * C], p[2 * C:3 * C]
        for c in range(C):
            dbq[c] += pq[c]
            dbk[c] += pk[c]
            dbv[c] += pv[c]


@kernel(parallel=True, tolerant=True)
def _causal_softmax_into(s, scale):
    """In place on scores s [B, NH, T, T]: p[t, u] = softmax_u(scale * s[t, u])
    over u <= t; exactly 0 for u > t. Twin: the mask + softmax lines of
    reference attention_forward."""
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
                e = np.exp(p[u] - mx)
                p[u] = e
                total += e
            inv = 1.0 / total
            for u in range(t + 1):
                p[u] = p[u] * inv
            for u in range(t + 1, T):
                p[u] = 0.0


@kernel(parallel=True, tolerant=True)
def _softmax_backward_into(p, dp, scale):
    """In place on dp [B, NH, T, T]: ds = p (dp - sum_u dp p) * scale (the
    gradient of the pre-scale scores). Masked entries have p = 0, so ds = 0.
    Twin: the softmax lines of reference attention_backward."""
    B, NH, T, _ = p.shape
    for bh in prange(B * NH):
        b = bh // NH
        h = bh % NH
        for t in range(T):
            pr = p[b, h, t]
            dr = dp[b, h, t]
            acc = np.float32(0.0)
            for u in range(t + 1):
                acc += dr[u] * pr[u]
            for u in range(t + 1):
                dr[u] = pr[u] * (dr[u] - acc) * scale
            for u in range(t + 1, T):
                dr[u] = 0.0


def _launcher(mm, layer):
    """(site, *products) -> one launch: through the model workspace's `mm` (plans kept
    per call site and layer), or fast/_blas.py's own plan cache."""
    if mm is None:
        return lambda site, *products: matmuls_into(products)
    return lambda site, *products: mm((site, layer), *products)


def attention_forward_heads(qh, kh, vh, scale, att, yh, drop=None, mm=None, layer=0):
    """att = causal_softmax(scale * qh @ kh^T); yh = att @ vh (all [B, NH, ...]).
    With `drop` (a function of att returning the dropped probabilities pd,
    SPEC 2.7: fast/dropout.py), yh = pd @ vh and att keeps p for backward.
    The products skip what the causal mask zeroes (fast/_blas.py CAUSAL_KINDS;
    pd, like p, is 0 past the diagonal). `mm`, `layer`: the model workspace's
    launcher and the layer (see _launcher)."""
    run = _launcher(mm, layer)
    run("scores", Product(qh, kh.transpose(0, 1, 3, 2), att, "scores"))  # (B, NH, T, T), u <= t only
    if att.dtype == np.float32:  # exp vectorised (fast/_softmax.py)
        causal_softmax_f32_into(att, scale, *EXP_F32)
    else:
        _causal_softmax_into(att, scale)
    pd = att if drop is None else drop(att)  # (B, NH, T, T)
    run("pv", Product(pd, vh, yh, "lower"))  # (B, NH, T, hs)


def attention_backward_heads(dyh, qh, kh, vh, att, scale, ds, dqh, dkh, dvh, pd=None, drop_backward=None,
                             mm=None, layer=0):
    """Gradients (dqh, dkh, dvh) [B, NH, T, hs]; `ds` [B, NH, T, T] is scratch.
    With dropout: `pd` the dropped probabilities of the forward and
    `drop_backward(dpd, pd)` turning dL/dpd into dL/dp in place (SPEC 2.7).
    Past the diagonal ds is left unwritten by the product and zeroed by the
    kernels after it (the dropout backward selects 0 where pd = 0).
    Independent products share a launch."""
    run = _launcher(mm, layer)
    run("d pv", Product(dyh, vh.transpose(0, 1, 3, 2), ds, "scores"),  # dp (B, NH, T, T), u <= t only
        Product((att if pd is None else pd).transpose(0, 1, 3, 2), dyh, dvh, "upper"))  # (B, NH, T, hs)
    if pd is not None:
        drop_backward(ds, pd)  # dL/dp: the forward's mask
    _softmax_backward_into(att, ds, scale)  # ds = p (dp - sum dp p) * scale
    run("d scores", Product(ds, kh, dqh, "lower"),  # (B, NH, T, hs)
        Product(ds.transpose(0, 1, 3, 2), qh, dkh, "upper"))  # (B, NH, T, hs)


# --- helpers for the public pairs --------------------------------------------------
def _rows(a: np.ndarray) -> np.ndarray:
    """A C-contiguous 2-D [rows, last axis] view (or copy) of `a`."""
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


def _scalar(dtype, value):
    return np.dtype(dtype).type(value)


def sgemm_into(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b through BLAS with a preallocated output (fast/_blas.py)."""
    return matmul_into(a, b, out)


# --- public pairs (same signatures as reference.layers) ------------------------------
def embedding_forward(tokens, wte, wpe):
    """out[b, t] = wte[tokens[b, t]] + wpe[t]. tokens [B, T], wte [V, C], wpe [block_size, C]."""
    tokens = check_embedding_args(tokens, wte, wpe)
    B, T = tokens.shape
    C = wte.shape[1]
    flat = np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1)  # (N,)
    out = np.empty((B * T, C), dtype=wte.dtype)
    _embedding_forward_into(flat, np.ascontiguousarray(wte), np.ascontiguousarray(wpe), T, out)
    return out.reshape(B, T, C), (flat, T, wte.shape, wpe.shape)


def embedding_backward(dout, cache):
    """(dwte, dwpe): scatter-add by token id, race-free by ownership."""
    flat, T, wte_shape, wpe_shape = cache
    V = wte_shape[0]
    starts = np.empty(V + 1, dtype=np.int64)
    rows = np.empty(flat.size, dtype=np.int64)
    _bucket_rows(flat, V, starts, rows)
    dwte = np.empty(wte_shape, dtype=dout.dtype)
    dwpe = np.empty(wpe_shape, dtype=dout.dtype)
    _embedding_backward_into(_rows(dout), starts, rows, T, dwte, dwpe)
    return dwte, dwpe


def layernorm_forward(x, gamma, beta):
    """LayerNorm over the last axis, biased variance, eps 1e-5 (SPEC section 2)."""
    check_layernorm_args(x, gamma, beta)
    x2 = _rows(x)  # (N, C)
    out = np.empty_like(x2)
    mean = np.empty(x2.shape[0], dtype=x.dtype)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)
    _layernorm_forward_into(x2, gamma, beta, _scalar(x.dtype, LN_EPS), out, mean, rstd)
    return out.reshape(x.shape), (x2, mean, rstd, gamma, x.shape)


def layernorm_backward(dout, cache):
    """(dx, dgamma, dbeta)."""
    x2, mean, rstd, gamma, shape = cache
    d2 = _rows(dout)
    dx = np.empty_like(x2)
    dgamma = np.empty(gamma.shape, dtype=x2.dtype)
    dbeta = np.empty(gamma.shape, dtype=x2.dtype)
    pg = np.empty((n_row_chunks(x2.shape[0]), x2.shape[1]), dtype=x2.dtype)
    pb = np.empty_like(pg)
    ps = np.empty_like(pg)  # scratch: the column sums of dx are not asked for (with_sum False)
    _layernorm_backward_grads_into(d2, x2, mean, rstd, gamma, dx, False, dx, ROW_CHUNK, pg, pb, dgamma, dbeta,
                                   False, ps, ps[0])
    return dx.reshape(shape), dgamma, dbeta


def linear_forward(x, w, b=None):
    """out = x @ w + b (BLAS on 2-D rows)."""
    check_linear_args(x, w, b)
    x2 = _rows(x)  # (N, in)
    out = np.empty((x2.shape[0], w.shape[1]), dtype=x.dtype)
    sgemm_into(x2, w, out)
    if b is not None:
        _add_bias_into(out, b)
    return out.reshape(x.shape[:-1] + (w.shape[1],)), (x2, w, b is not None, x.shape)


def linear_backward(dout, cache):
    """(dx, dw, db): dx = dout @ w^T, dw = x^T @ dout, db = column sums (None without bias)."""
    x2, w, has_bias, shape = cache
    d2 = _rows(dout)  # (N, out)
    dx = np.empty((d2.shape[0], w.shape[0]), dtype=d2.dtype)
    sgemm_into(d2, w.T, dx)
    dw = np.empty(w.shape, dtype=d2.dtype)
    sgemm_into(x2.T, d2, dw)
    db = None
    if has_bias:
        db = np.empty(w.shape[1], dtype=d2.dtype)
        partial = np.empty((n_row_chunks(d2.shape[0]), d2.shape[1]), dtype=d2.dtype)
        _colsum_into(d2, ROW_CHUNK, partial, db)
    return dx.reshape(shape), dw, db


def attention_forward(q, k, v, n_heads):
    """Causal multi-head attention on projected q, k, v [B, T, C] -> [B, T, C]."""
    check_attention_args(q, k, v, n_heads)
    B, T, C = q.shape
    NH = int(n_heads)
    hs = C // NH
    scale = _scalar(q.dtype, 1.0 / math.sqrt(hs))
    zero = np.zeros(C, dtype=q.dtype)
    qh, kh, vh, yh = (np.empty((B, NH, T, hs), dtype=q.dtype) for _ in range(4))
    _split_heads_bias_into(_rows(q), _rows(k), _rows(v), zero, zero, zero, B, T, NH, qh, kh, vh)
    att = np.empty((B, NH, T, T), dtype=q.dtype)
    attention_forward_heads(qh, kh, vh, scale, att, yh)
    y = np.empty((B * T, C), dtype=q.dtype)
    _merge_heads_into(yh, B, T, NH, y)
    return y.reshape(B, T, C), (qh, kh, vh, att, scale)


def attention_backward(dout, cache):
    """(dq, dk, dv)."""
    qh, kh, vh, att, scale = cache
    B, NH, T, hs = qh.shape
    C = NH * hs
    dyh = np.empty_like(qh)
    _split_heads_into(_rows(dout), B, T, NH, dyh)
    ds = np.empty_like(att)
    dqh, dkh, dvh = np.empty_like(qh), np.empty_like(qh), np.empty_like(qh)
    attention_backward_heads(dyh, qh, kh, vh, att, scale, ds, dqh, dkh, dvh)
    out = []
    for dh in (dqh, dkh, dvh):
        d = np.empty((B * T, C), dtype=qh.dtype)
        _merge_heads_into(dh, B, T, NH, d)
        out.append(d.reshape(B, T, C))
    return tuple(out)


def gelu_forward(x):
    """out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    _check_float("x", x)
    if x.ndim == 0:
        x2 = x.reshape(1, 1)
    else:
        x2 = _rows(x)
    out = np.empty_like(x2)
    fn = _gelu_forward_f32_into if x.dtype == np.float32 else _gelu_forward_into
    fn(x2, _scalar(x.dtype, GELU_C), _scalar(x.dtype, GELU_A), out)
    return out.reshape(x.shape), (x2, x.shape)


def gelu_backward(dout, cache):
    """dx = dout * gelu'(x)."""
    x2, shape = cache
    dx = np.array(dout, dtype=x2.dtype, order="C").reshape(x2.shape)  # a copy: the kernel works in place
    fn = _gelu_backward_f32_inplace if x2.dtype == np.float32 else _gelu_backward_inplace
    fn(dx, x2, _scalar(x2.dtype, GELU_C), _scalar(x2.dtype, GELU_A))
    return dx.reshape(shape)
