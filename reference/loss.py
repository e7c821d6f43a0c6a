"""Cross-entropy loss over all positions (SPEC §forward).

Dimension legend: B batch, T time, V vocab.
"""
from __future__ import annotations

import numpy as np

from .layers import _check_float, check_token_ids


def check_cross_entropy_args(logits, targets) -> np.ndarray:
    """logits float32/float64 [B, T, V]; targets int [B, T] with ids in [0, V).
    Returns the checked targets."""
    _check_float("logits", logits, ndim=3)
    B, T, V = logits.shape
    targets = check_token_ids("targets", targets, V)
    if targets.shape != (B, T):
        raise ValueError(f"targets shape {targets.shape} must equal logits shape[:2] {(B, T)}")
    return targets


def cross_entropy_forward(logits, targets):
    """loss = mean over the B*T positions of -log softmax(logits[b, t])[targets[b, t]],
    with max-subtraction: -log p = log(sum exp(z - max z)) - (z[target] - max z).

    logits [B, T, V] float32/float64, targets int [B, T] in [0, V) -> (loss: float, cache).
    Per-position terms are computed in the logits dtype; their mean is taken in float64."""
    targets = check_cross_entropy_args(logits, targets)
    z = logits - logits.max(axis=-1, keepdims=True)  # (B, T, V), max entry 0
    e = np.exp(z)  # (B, T, V)
    denom = e.sum(axis=-1, keepdims=True)  # (B, T, 1), >= 1
    z_target = np.take_along_axis(z, targets[..., None], axis=-1)  # (B, T, 1)
    nll = np.log(denom) - z_target  # (B, T, 1)
    loss = float(nll.mean(dtype=np.float64))
    probs = np.divide(e, denom, out=e)  # (B, T, V) softmax, in place over e
    cache = (probs, targets)
    return loss, cache


def cross_entropy_backward(cache):
    """dlogits = (softmax(logits) - onehot(targets)) / (B*T)."""
    probs, _ = cache
    B, T, _ = probs.shape
    return cross_entropy_backward_over(cache, B * T)


def cross_entropy_backward_over(cache, n: int):
    """dlogits = (softmax(logits) - onehot(targets)) / n: the gradient of this
    batch's share of a mean over n >= B*T positions (SPEC §backward, §micro-batches)."""
    probs, targets = cache
    # loss = sum_{b,t} (log sum_v exp z[b,t,v] - z[b,t,target]) / n
    dlogits = probs.copy()  # (B, T, V)
    p_target = np.take_along_axis(probs, targets[..., None], axis=-1)  # (B, T, 1)
    np.put_along_axis(dlogits, targets[..., None], p_target - 1, axis=-1)
    dlogits /= n  # the integer n in the dtype
    return dlogits
