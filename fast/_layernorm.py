"""LayerNorm kernels: forward, the residual add fused with it, and the backward
with its parameter gradients (SPEC §model and §fast-model).

Parallel split: the forwards one row per prange iteration; the backward fixed
chunks of `rows` (ROW_CHUNK) rows, each writing its rows of dx and its
partial column sums, added in chunk order after the loop (fast/_colsum.py).
Sums over a row in float32 (vectorised); eps inside the square root.

Dimension legend: N rows (B*T), C n_embd.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._colsum import chunk_sums_into
from ._numba import kernel


@kernel(tolerant=True, inline=True)
def normalize_row_into(xr, s, gamma, beta, eps, out):
    """One row of LayerNorm, given the row xr [C] and its sum s: m = s / C,
    rs = 1 / sqrt(mean((xr - m)^2) + eps), out = (xr - m) * rs * gamma + beta;
    returns (m, rs). Twin: reference layernorm_forward, for one row."""
    C = xr.shape[0]
    m = s / C
    s2 = np.float32(0.0)
    for c in range(C):
        d = xr[c] - m
        s2 += d * d
    rs = 1.0 / np.sqrt(s2 / C + eps)
    for c in range(C):
        out[c] = (xr[c] - m) * rs * gamma[c] + beta[c]
    return m, rs


@kernel(tolerant=True, inline=True)
def layernorm_row_into(xr, gamma, beta, eps, out):
    """out = layernorm(xr) for one row xr [C]; returns its (mean, rstd).
    Twin: reference layernorm_forward, for one row."""
    s = np.float32(0.0)
    for c in range(xr.shape[0]):
        s += xr[c]
    return normalize_row_into(xr, s, gamma, beta, eps, out)


@kernel(parallel=True, tolerant=True)
def layernorm_forward_into(x, gamma, beta, eps, out, mean, rstd):
    """out = (x - mean) * rstd * gamma + beta per row; saves mean and rstd.
    Twin: reference layernorm_forward."""
    for r in prange(x.shape[0]):
        m, rs = layernorm_row_into(x[r], gamma, beta, eps, out[r])
        mean[r] = m
        rstd[r] = rs


@kernel(parallel=True, tolerant=True)
def residual_layernorm_forward_into(x, a, bias, gamma, beta, eps, x1, out, mean, rstd):
    """x1 = x + a + bias (residual add of a projection and its bias), then
    out = layernorm(x1), the row's sum taken in the same pass as the add.
    Twin: the residual lines of reference block_forward followed by layernorm_forward."""
    N, C = x.shape
    for r in prange(N):
        s = np.float32(0.0)
        for c in range(C):
            val = x[r, c] + (a[r, c] + bias[c])
            x1[r, c] = val
            s += val
        m, rs = normalize_row_into(x1[r], s, gamma, beta, eps, out[r])
        mean[r] = m
        rstd[r] = rs


@kernel(parallel=True, tolerant=True)
def layernorm_backward_grads_into(dout, x, mean, rstd, gamma, dres, has_res, dx, rows, pg, pb, dgamma, dbeta,
                                  with_sum, ps, dsum):
    """dx = [dres +] rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma,
    per row (`dres`, added when `has_res`, is the residual gradient passing
    around the LayerNorm; it may be `dx` itself), and dgamma = sum_rows dout *
    xhat, dbeta = sum_rows dout, in one pass and one parallel region (SPEC §parallel-split): fixed chunks of `rows` rows each write their dx rows and fill their
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
    chunk_sums_into(pg, n_chunks, dgamma)
    chunk_sums_into(pb, n_chunks, dbeta)
    if with_sum:
        chunk_sums_into(ps, n_chunks, dsum)
