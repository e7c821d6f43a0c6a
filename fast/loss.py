"""Fused softmax + cross-entropy, forward and backward in one pass (SPEC §model).

Twin of `reference/loss.py`; the kernels are in fast/_softmax.py. One row
(position) per parallel iteration: the row's max, log-sum-exp, its loss term
and its gradient row `(softmax - onehot) / (B*T)` are computed together, so
the backward is a read of the stored gradient. The mean of the per-row terms is taken in
float64, in row order (independent of the thread count).

Dimension legend: B batch, T time, V vocab, N = B*T rows.
"""
from __future__ import annotations

import numpy as np

from reference.loss import check_cross_entropy_args

from ._softmax import EXP_F32, mean_f64, softmax_xent_rows_into


def softmax_xent_into(logits2, targets1, losses, dlogits2, mean_over: int | None = None) -> float:
    """Fill per-row losses and the gradient rows `(softmax - onehot) * F(1/n)`,
    n = mean_over or the N rows (SPEC §backward); return the mean loss over the N rows (float64)."""
    N = logits2.shape[0]
    inv_n = logits2.dtype.type(1.0 / (N if mean_over is None else mean_over))
    softmax_xent_rows_into(logits2, targets1, inv_n, losses, dlogits2, EXP_F32)
    return float(mean_f64(losses))


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
