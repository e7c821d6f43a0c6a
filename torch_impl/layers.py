"""The layers as torch functions, and the contract's forward/backward pairs
through autograd (SPEC §forward, §backward).

Dimension legend: B batch, T time, C n_embd, V vocab, NH heads, hs = C/NH,
N = any number of leading axes.

The torch functions (`embedding`, `layernorm`, `linear`, `attention`, `gelu`)
are what the model is built from. Each public `*_forward` checks its
arguments with the reference's own checks (one check for every
implementation), runs the torch function with autograd on and returns
`(out, cache)`; `*_backward(dout, cache)` returns what autograd derives:
no backward formula is written here. Everything computes in the dtype of
its inputs (float32 or float64).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from reference.layers import (
    LN_EPS, check_attention_args, check_embedding_args, check_gelu_args, check_layernorm_args, check_linear_args,
)

from ._autograd import pair_backward, pair_forward, token_tensor


# --- the layers as torch functions ------------------------------------------------
def embedding(tokens: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
    """out[b, t] = wte[tokens[b, t]] + wpe[t]."""
    T = tokens.shape[1]
    return F.embedding(tokens, wte) + wpe[:T]  # (B, T, C)


def layernorm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """(x - mean) / sqrt(var + 1e-5) * gamma + beta over the last axis, biased variance."""
    return F.layer_norm(x, (x.shape[-1],), gamma, beta, LN_EPS)  # (N..., C)


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x @ w + b, w stored [in, out]: `F.linear` of the transposed view (one
    gemm with the bias as its addend: with autograd on, a separate
    broadcasting add costs three times the product on the suite's sizes)."""
    return F.linear(x, w.T, b)  # (N..., out)


@functools.lru_cache(maxsize=32)
def _future(T: int) -> torch.Tensor:
    """[T, T] bool, True where u > t (the positions attention must not see);
    one per T, never written. Made outside inference mode even when first
    asked for inside it (generation): an inference tensor could not be saved
    for a later backward."""
    with torch.inference_mode(False):
        return torch.ones(T, T, dtype=torch.bool).triu(1)


def drop(x: torch.Tensor, keep: torch.Tensor | None, scale: float | None) -> torch.Tensor:
    """x * scale where `keep`, +0.0 where not (SPEC §dropout; `scale` an F value,
    so the product is one rounding in F); x itself without a mask."""
    return x if keep is None else torch.where(keep, x * scale, 0.0)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_heads: int,
              keep: torch.Tensor | None = None, scale: float | None = None) -> torch.Tensor:
    """Causal multi-head attention on projected q, k, v [B, T, C], heads merged.
    Per head: s = (Q K^T) * (1/sqrt(hs)); future scores set to -inf (masked,
    not added: a huge future score cannot turn into NaN); p = softmax(s),
    exactly 0 in the future; y = drop(p) V, with the site-1 mask `keep`
    [B, NH, T, T] when given (SPEC §dropout)."""
    B, T, C = q.shape
    hs = C // n_heads
    qh, kh, vh = (a.reshape(B, T, n_heads, hs).transpose(1, 2) for a in (q, k, v))  # (B, NH, T, hs)
    s = (qh @ kh.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, NH, T, T)
    p = torch.softmax(s.masked_fill(_future(T), -math.inf), dim=-1)  # (B, NH, T, T)
    return (drop(p, keep, scale) @ vh).transpose(1, 2).reshape(B, T, C)  # (B, T, C)


def gelu(x: torch.Tensor) -> torch.Tensor:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): torch's tanh-approximate GELU."""
    return F.gelu(x, approximate="tanh")


# --- the contract's pairs ------------------------------------------------------------
def embedding_forward(tokens, wte, wpe):
    """out[b, t] = wte[tokens[b, t]] + wpe[t]. tokens int [B, T], wte [V, C], wpe [block_size, C]."""
    tokens = check_embedding_args(tokens, wte, wpe)
    ids = token_tensor(tokens)
    return pair_forward(lambda a, b: embedding(ids, a, b), (wte, wpe))


def embedding_backward(dout, cache):
    """(dwte, dwpe), by autograd."""
    return pair_backward(dout, cache)


def layernorm_forward(x, gamma, beta):
    """LayerNorm over the last axis. x [N..., C], gamma [C], beta [C]."""
    check_layernorm_args(x, gamma, beta)
    return pair_forward(layernorm, (x, gamma, beta))


def layernorm_backward(dout, cache):
    """(dx, dgamma, dbeta), by autograd."""
    return pair_backward(dout, cache)


def linear_forward(x, w, b=None):
    """out = x @ w + b. x [N..., in], w [in, out], b [out] or None."""
    check_linear_args(x, w, b)
    return pair_forward(linear, (x, w, b))


def linear_backward(dout, cache):
    """(dx, dw, db), by autograd; db is None when the forward had no bias."""
    return pair_backward(dout, cache)


def attention_forward(q, k, v, n_heads):
    """Causal multi-head attention, q, k, v [B, T, C] -> [B, T, C] (merged heads)."""
    check_attention_args(q, k, v, n_heads)
    return pair_forward(attention, (q, k, v), int(n_heads))


def attention_backward(dout, cache):
    """(dq, dk, dv), by autograd."""
    return pair_backward(dout, cache)


def gelu_forward(x):
    """Tanh-approximation GELU, elementwise."""
    check_gelu_args(x)
    return pair_forward(gelu, (x,))


def gelu_backward(dout, cache):
    """dx, by autograd."""
    (dx,) = pair_backward(dout, cache)
    return dx

