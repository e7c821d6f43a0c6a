"""Fused softmax + cross-entropy, forward and backward in one pass (SPEC section 2).

Twin of `reference/loss.py`. One row (position) per parallel iteration: the
row's max, log-sum-exp, its loss term and its gradient row
`(softmax - onehot) / (B*T)` are computed together, so the backward is a
read of the stored gradient. The mean of the per-row terms is taken in
float64, in row order (independent of the thread count).

Dimension legend: B batch, T time, V vocab, N = B*T rows.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from reference.loss import check_cross_entropy_args

from ._numba import kernel
from ._softmax import EXP_F32, softmax_xent_f32_into

@kernel(parallel=True, tolerant=True)
def _softmax_xent_into(logits, targets, inv_n, losses, dlogits):
    """losses[r] = log(sum exp(z - max z)) - (z[target] - max z);
    dlogits[r] = (softmax(z) - onehot(target)) * inv_n. `dlogits` may be `logits`.
    Twin: reference cross_entropy_forward + cross_entropy_backward."""
    N, V = logits.shape
    for r in prange(N):
        mx = logits[r, 0]
        for j in range(1, V):
            if logits[r, j] > mx:
                mx = logits[r, j]
        zt = logits[r, targets[r]] - mx
        total = 0.0  # float64: V terms
        for j in range(V):
            e = np.exp(logits[r, j] - mx)
            dlogits[r, j] = e
            total += e
        losses[r] = np.log(total) - zt
        scale = inv_n / total
        for j in range(V):
            dlogits[r, j] = dlogits[r, j] * scale
        dlogits[r, targets[r]] -= inv_n


@kernel
def _mean_f64(values):
    """float64 mean, summed serially in row order."""
    s = 0.0
    for i in range(values.shape[0]):
        s += np.float64(values[i])
    return s / values.shape[0]


def softmax_xent_into(logits2, targets1, losses, dlogits2, mean_over: int | None = None) -> float:
    """Fill per-row losses and the gradient rows `(softmax - onehot) * F(1/n)`,
    n = mean_over or the N rows (SPEC 2.3); return the mean loss over the N rows (float64)."""
    N = logits2.shape[0]
    inv_n = logits2.dtype.type(1.0 / (N if mean_over is None else mean_over))
    if logits2.dtype == np.float32:
        softmax_xent_f32_into(logits2, targets1, inv_n, losses, dlogits2, *EXP_F32)
    else:
        _softmax_xent_into(logits2, targets1, inv_n, losses, dlogits2)
    return float(_mean_f64(losses))


def cross_entropy_forward(logits, targets):
    """Mean over the B*T positions of -log softmax(logits)[target] (max-subtracted)."""
    targets = check_cross_entropy_args(logits, targets)
    B, T, V = logits.shape
    logits2 = np.ascontiguousarray(logits).reshape(B * T, V)
    t1 = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
    losses = np.empty(B * T, dtype=logits.dtype)
    dlogits = np.empty_like(logits2)
    loss = softmax_xent_into(logits2, t1, losses, dlogits)
    return loss, (dlogits.reshape(B, T, V),)


def cross_entropy_backward(cache):
    """dlogits = (softmax(logits) - onehot(targets)) / (B*T), computed by the forward."""
    (dlogits,) = cache
    return dlogits.copy()
