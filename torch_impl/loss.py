"""Cross-entropy loss through autograd (SPEC §forward, §backward).

Dimension legend: B batch, T time, V vocab.
"""
from __future__ import annotations

import torch

from reference.loss import check_cross_entropy_args

from ._autograd import tensor_of, to_numpy, token_tensor


def summed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """sum over the B*T positions of -log softmax(logits)[target] (log_softmax
    subtracts the row maximum), each term in the logits dtype, the sum in
    float64: a float64 0-dim tensor. The loss is this over B*T; a backward
    seeded with 1/n differentiates the share of a mean over n positions."""
    nll = -torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])[..., 0]  # (B, T)
    return nll.to(torch.float64).sum()


def seed(n: int) -> torch.Tensor:
    """The upstream gradient of the summed loss for a mean over n positions: 1/n in float64."""
    return torch.tensor(1.0 / n, dtype=torch.float64)


def cross_entropy_forward(logits, targets):
    """logits [B, T, V] float32/float64, targets int [B, T] -> (loss: float, cache)."""
    targets = check_cross_entropy_args(logits, targets)
    leaf = tensor_of(logits).requires_grad_(True)
    with torch.enable_grad():
        total = summed_cross_entropy(leaf, token_tensor(targets))
    n = targets.size
    return total.item() / n, (total, leaf, n)


def cross_entropy_backward(cache):
    """dlogits = (softmax(logits) - onehot(targets)) / (B*T), by autograd."""
    total, leaf, n = cache
    (dlogits,) = torch.autograd.grad(total, leaf, grad_outputs=seed(n), retain_graph=True)
    return to_numpy(dlogits)
