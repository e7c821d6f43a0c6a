"""Attention kernels and drivers: head split and merge, the backward of the
causal softmax, and the per-head products (SPEC §model and §parallel-split).

Layout: per (b, h) head-split arrays [B, NH, T, hs]; the two products per head
(q k^T and p v, and their backward) are batched BLAS sgemm calls
(fast/_blas.py, preallocated outputs); the kernels here do the head
split/merge and the softmax backward, one (b, h) per parallel iteration (it
owns its [T, hs] / [T, T] slices). The causal softmax itself is
fast/_softmax.py's `causal_softmax_into`, beside the exp it shares with the loss.

The loops index row slices from 0 (`q[r, c0:c0 + hs]`, not `q[r, c0 + d]`): an
offset index keeps Numba's negative-index wraparound in the loop and LLVM then
does not vectorise it (measured 5-10x slower).

Dimension legend: B batch, T time, NH heads, hs = C/NH, N = B*T rows.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ._blas import Product, matmuls_into
from ._numba import kernel
from ._softmax import EXP_F32, causal_softmax_into


@kernel(parallel=True, tolerant=True)
def split_heads_bias_into(q, k, v, bq, bk, bv, B, T, NH, qh, kh, vh):
    """qh[b, h, t, d] = q[b*T + t, h*hs + d] + bq[h*hs + d] (same for k, v).
    Twin: the q, k, v bias adds of reference linear_forward, then `_split_heads`."""
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
def split_heads_into(a, B, T, NH, ah):
    """ah[b, h, t, d] = a[b*T + t, h*hs + d]. Twin: reference `_split_heads`."""
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
def merge_heads_into(ah, B, T, NH, a):
    """a[b*T + t, h*hs + d] = ah[b, h, t, d]. Twin: reference `_merge_heads`."""
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
def merge_heads_bias_grads_into(dqh, dkh, dvh, B, T, NH, rows, partial, dq, dk, dv, dbq, dbk, dbv):
    """The backward of `_split_heads_bias_into` in one pass and one parallel
    region: fixed chunks of `rows` rows (b*T + t) each write their rows
    dq[b*T + t, h*hs + d] = dqh[b, h, t, d] (same for k, v) and fill their
    partial rows of the bias gradients (partial [n_chunks, >= 3C]: q, k, v
    side by side), db[h*hs + d] = sum over (b, t) of dqh[b, h, t, d]; the
    partials are summed in chunk order after the loop. Twin: `_merge_heads` of
    reference attention_backward's gradients, then the `db` of linear_backward."""
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
def softmax_backward_into(p, dp, scale):
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
    SPEC §dropout: fast/dropout.py), yh = pd @ vh and att keeps p for backward.
    The products skip what the causal mask zeroes (fast/_blas.py CAUSAL_KINDS;
    pd, like p, is 0 past the diagonal). `mm`, `layer`: the model workspace's
    launcher and the layer (see _launcher)."""
    run = _launcher(mm, layer)
    run("scores", Product(qh, kh.transpose(0, 1, 3, 2), att, "scores"))  # (B, NH, T, T), u <= t only
    causal_softmax_into(att, scale, EXP_F32)  # in place: att = p
    pd = att if drop is None else drop(att)  # (B, NH, T, T)
    run("pv", Product(pd, vh, yh, "lower"))  # (B, NH, T, hs)


def attention_backward_heads(dyh, qh, kh, vh, att, scale, ds, dqh, dkh, dvh, pd=None, drop_backward=None,
                             mm=None, layer=0):
    """Gradients (dqh, dkh, dvh) [B, NH, T, hs]; `ds` [B, NH, T, T] is scratch.
    With dropout: `pd` the dropped probabilities of the forward and
    `drop_backward(dpd, pd)` turning dL/dpd into dL/dp in place (SPEC §dropout).
    Past the diagonal ds is left unwritten by the product and zeroed by the
    kernels after it (the dropout backward selects 0 where pd = 0).
    Independent products share a launch."""
    run = _launcher(mm, layer)
    run("d pv", Product(dyh, vh.transpose(0, 1, 3, 2), ds, "scores"),  # dp (B, NH, T, T), u <= t only
        Product((att if pd is None else pd).transpose(0, 1, 3, 2), dyh, dvh, "upper"))  # (B, NH, T, hs)
    if pd is not None:
        drop_backward(ds, pd)  # dL/dp: the forward's mask
    softmax_backward_into(att, ds, scale)  # ds = p (dp - sum dp p) * scale
    run("d scores", Product(ds, kh, dqh, "lower"),  # (B, NH, T, hs)
        Product(ds.transpose(0, 1, 3, 2), qh, dkh, "upper"))  # (B, NH, T, hs)
