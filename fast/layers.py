"""The public forward/backward pairs of the layers (SPEC §model and §performance).

Twin of `reference/layers.py` (the maths and the derivations live there):
same signatures, same checks. Each pair validates, allocates and reshapes
to 2-D rows [N, width] (N = B*T), runs linear layers as BLAS sgemm with a
preallocated output (fast/_blas.py), and calls the kernels of one family
module: fast/_embedding.py, fast/_layernorm.py, fast/_colsum.py (bias add
and bias gradients), fast/_attention.py, fast/_gelu.py; the loss is
fast/loss.py. The model (fast/model.py) calls the same kernels on its
workspace, fused where a pass can do two things.

Dimension legend: B batch, T time, C n_embd, V vocab, NH heads, hs = C/NH,
N = B*T rows.
"""
from __future__ import annotations

import math

import numpy as np

from reference.layers import (GELU_A, GELU_C, LN_EPS, check_attention_args, check_embedding_args,
                              check_gelu_args, check_layernorm_args, check_linear_args)

from ._attention import attention_backward_heads, attention_forward_heads, merge_heads_into, split_heads_bias_into
from ._attention import split_heads_into
from ._blas import matmul_into
from ._colsum import ROW_CHUNK, add_bias_into, colsum_into, n_row_chunks
from ._embedding import bucket_rows, embedding_backward_into, embedding_forward_into
from ._gelu import gelu_backward_inplace, gelu_forward_into
from ._layernorm import layernorm_backward_grads_into, layernorm_forward_into


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
    embedding_forward_into(flat, np.ascontiguousarray(wte), np.ascontiguousarray(wpe), T, out)
    return out.reshape(B, T, C), (flat, T, wte.shape, wpe.shape)


def embedding_backward(dout, cache):
    """(dwte, dwpe): scatter-add by token id, race-free by ownership."""
    flat, T, wte_shape, wpe_shape = cache
    V = wte_shape[0]
    starts = np.empty(V + 1, dtype=np.int64)
    rows = np.empty(flat.size, dtype=np.int64)
    bucket_rows(flat, V, starts, rows)
    dwte = np.empty(wte_shape, dtype=dout.dtype)
    dwpe = np.empty(wpe_shape, dtype=dout.dtype)
    embedding_backward_into(_rows(dout), starts, rows, T, dwte, dwpe)
    return dwte, dwpe


def layernorm_forward(x, gamma, beta):
    """LayerNorm over the last axis, biased variance, eps 1e-5 (SPEC §model)."""
    check_layernorm_args(x, gamma, beta)
    x2 = _rows(x)  # (N, C)
    out = np.empty_like(x2)
    mean = np.empty(x2.shape[0], dtype=x.dtype)
    rstd = np.empty(x2.shape[0], dtype=x.dtype)
    layernorm_forward_into(x2, gamma, beta, _scalar(x.dtype, LN_EPS), out, mean, rstd)
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
    layernorm_backward_grads_into(dout=d2, x=x2, mean=mean, rstd=rstd, gamma=gamma, dres=dx, has_res=False, dx=dx,
                                  rows=ROW_CHUNK, pg=pg, pb=pb, dgamma=dgamma, dbeta=dbeta,
                                  with_sum=False, ps=ps, dsum=ps[0])
    return dx.reshape(shape), dgamma, dbeta


def linear_forward(x, w, b=None):
    """out = x @ w + b (BLAS on 2-D rows)."""
    check_linear_args(x, w, b)
    x2 = _rows(x)  # (N, in)
    out = np.empty((x2.shape[0], w.shape[1]), dtype=x.dtype)
    sgemm_into(x2, w, out)
    if b is not None:
        add_bias_into(out, b)
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
        colsum_into(d2, ROW_CHUNK, partial, db)
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
    split_heads_bias_into(q=_rows(q), k=_rows(k), v=_rows(v), bq=zero, bk=zero, bv=zero, B=B, T=T, NH=NH,
                          qh=qh, kh=kh, vh=vh)
    att = np.empty((B, NH, T, T), dtype=q.dtype)
    attention_forward_heads(qh, kh, vh, scale, att, yh)
    y = np.empty((B * T, C), dtype=q.dtype)
    merge_heads_into(yh, B, T, NH, y)
    return y.reshape(B, T, C), (qh, kh, vh, att, scale)


def attention_backward(dout, cache):
    """(dq, dk, dv)."""
    qh, kh, vh, att, scale = cache
    B, NH, T, hs = qh.shape
    C = NH * hs
    dyh = np.empty_like(qh)
    split_heads_into(_rows(dout), B, T, NH, dyh)
    ds = np.empty_like(att)
    dqh, dkh, dvh = np.empty_like(qh), np.empty_like(qh), np.empty_like(qh)
    attention_backward_heads(dyh=dyh, qh=qh, kh=kh, vh=vh, att=att, scale=scale, ds=ds, dqh=dqh, dkh=dkh, dvh=dvh)
    out = []
    for dh in (dqh, dkh, dvh):
        d = np.empty((B * T, C), dtype=qh.dtype)
        merge_heads_into(dh, B, T, NH, d)
        out.append(d.reshape(B, T, C))
    return tuple(out)


def gelu_forward(x):
    """out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    check_gelu_args(x)
    if x.ndim == 0:
        x2 = x.reshape(1, 1)
    else:
        x2 = _rows(x)
    out = np.empty_like(x2)
    gelu_forward_into(x2, _scalar(x.dtype, GELU_C), _scalar(x.dtype, GELU_A), out)
    return out.reshape(x.shape), (x2, x.shape)


def gelu_backward(dout, cache):
    """dx = dout * gelu'(x)."""
    x2, shape = cache
    dx = np.array(dout, dtype=x2.dtype, order="C").reshape(x2.shape)  # a copy: the kernel works in place
    gelu_backward_inplace(dx, x2, _scalar(x2.dtype, GELU_C), _scalar(x2.dtype, GELU_A))
    return dx.reshape(shape)
