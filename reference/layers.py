"""Forward/backward pairs for every layer of the model (SPEC §model).

Dimension legend: B batch, T time, C n_embd, V vocab, NH heads, hs = C/NH,
N = any number of leading axes.

Each `*_forward` returns `(out, cache)`; the matching `*_backward(dout, cache)`
returns the gradients in the order of the forward's inputs. A cache holds only
what its backward needs (SPEC §activation-memory counts the bytes). Every function
computes in the dtype of its floating-point inputs (float32 or float64) and
returns new arrays. The comment above each backward line repeats the forward
line it differentiates.
"""
from __future__ import annotations

import math

import numpy as np

from .dropout import dropout_backward, dropout_forward

LN_EPS = 1e-5  # LayerNorm: inside the square root, biased variance (SPEC §forward)
GELU_C = math.sqrt(2.0 / math.pi)  # tanh-approximation GELU constants (SPEC §forward)
GELU_A = 0.044715

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# --- input checks --------------------------------------------------------------
def _check_float(name: str, a, ndim: int | None = None, min_ndim: int | None = None) -> np.ndarray:
    """`a` must be a float32/float64 ndarray (of rank `ndim`, or at least `min_ndim`)."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have rank {ndim}, got shape {a.shape}")
    if min_ndim is not None and a.ndim < min_ndim:
        raise ValueError(f"{name} must have rank >= {min_ndim}, got shape {a.shape}")
    return a


def _check_same_dtype(ref_name: str, ref: np.ndarray, **others) -> None:
    for name, a in others.items():
        if a is not None and a.dtype != ref.dtype:
            raise ValueError(f"{name} has dtype {a.dtype} but {ref_name} has dtype {ref.dtype}; "
                             "every float input of a layer must share one dtype")


def check_token_ids(name: str, tokens, vocab_size: int) -> np.ndarray:
    """`tokens` must be an integer ndarray of rank 2 [B, T], B, T >= 1, ids in [0, vocab_size)."""
    if not isinstance(tokens, np.ndarray):
        raise ValueError(f"{name} must be a numpy integer array [B, T], got {type(tokens).__name__}")
    if tokens.dtype.kind not in "iu":
        raise ValueError(f"{name} must have an integer dtype, got {tokens.dtype}")
    if tokens.ndim != 2:
        raise ValueError(f"{name} must have rank 2 [B, T], got shape {tokens.shape}")
    if tokens.size == 0:
        raise ValueError(f"{name} must be non-empty (B >= 1, T >= 1), got shape {tokens.shape}")
    lo, hi = int(tokens.min()), int(tokens.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        where = tuple(int(i) for i in np.argwhere(tokens == bad)[0])
        raise ValueError(f"{name} contains id {bad} at index {where}, outside [0, {vocab_size})")
    return tokens


# --- embedding -----------------------------------------------------------------
def check_embedding_args(tokens, wte, wpe) -> np.ndarray:
    """wte [V, C] and wpe [block_size, C] of one float dtype; tokens int [B, T]
    with ids in [0, V) and T <= block_size. Returns the checked tokens."""
    _check_float("wte", wte, ndim=2)
    _check_float("wpe", wpe, ndim=2)
    _check_same_dtype("wte", wte, wpe=wpe)
    if wte.shape[1] != wpe.shape[1]:
        raise ValueError(f"wte {wte.shape} and wpe {wpe.shape} must have the same width C")
    tokens = check_token_ids("tokens", tokens, wte.shape[0])
    B, T = tokens.shape
    if T > wpe.shape[0]:
        raise ValueError(f"tokens has T={T} positions but wpe holds only block_size={wpe.shape[0]}")
    return tokens


def embedding_forward(tokens, wte, wpe):
    """out[b, t] = wte[tokens[b, t]] + wpe[t].

    tokens int [B, T], wte [V, C], wpe [block_size, C] -> out [B, T, C]."""
    tokens = check_embedding_args(tokens, wte, wpe)
    B, T = tokens.shape
    out = wte[tokens] + wpe[:T]  # (B, T, C)
    cache = (tokens, wte.shape, wpe.shape)
    return out, cache


def embedding_backward(dout, cache):
    """dwte[v] = sum of dout[b, t] over positions with tokens[b, t] == v;
    dwpe[t] = sum_b dout[b, t] (rows >= T are zero)."""
    tokens, wte_shape, wpe_shape = cache
    B, T = tokens.shape
    # out = wte[tokens] + wpe[:T]
    dwte = np.zeros(wte_shape, dtype=dout.dtype)  # (V, C)
    np.add.at(dwte, tokens.reshape(-1), dout.reshape(B * T, -1))  # scatter-add, repeats accumulate
    dwpe = np.zeros(wpe_shape, dtype=dout.dtype)  # (block_size, C)
    dwpe[:T] = dout.sum(axis=0)  # (T, C)
    return dwte, dwpe


# --- layernorm -----------------------------------------------------------------
def check_layernorm_args(x, gamma, beta) -> None:
    """x [N..., C], gamma [C], beta [C], one float dtype."""
    _check_float("x", x, min_ndim=1)
    _check_float("gamma", gamma, ndim=1)
    _check_float("beta", beta, ndim=1)
    _check_same_dtype("x", x, gamma=gamma, beta=beta)
    C = x.shape[-1]
    if gamma.shape != (C,) or beta.shape != (C,):
        raise ValueError(f"gamma {gamma.shape} and beta {beta.shape} must both be ({C},) to match x {x.shape}")


def layernorm_forward(x, gamma, beta):
    """out = (x - mean) * rstd * gamma + beta over the last axis,
    mean = sum(x)/C, var = sum((x - mean)^2)/C (biased), rstd = 1/sqrt(var + 1e-5).

    x [N..., C], gamma [C], beta [C] -> out [N..., C]."""
    check_layernorm_args(x, gamma, beta)
    mean = x.mean(axis=-1, keepdims=True)  # (N..., 1)
    xc = x - mean  # (N..., C)
    var = (xc * xc).mean(axis=-1, keepdims=True)  # (N..., 1)
    rstd = 1.0 / np.sqrt(var + LN_EPS)  # (N..., 1)
    xhat = xc * rstd  # (N..., C)
    out = xhat * gamma + beta  # (N..., C)
    cache = (xhat, rstd, gamma)
    return out, cache


def layernorm_backward(dout, cache):
    """dbeta = sum dout; dgamma = sum dout * xhat;
    dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma
    (means over the last axis; derivation in SPEC §backward)."""
    xhat, rstd, gamma = cache
    lead = tuple(range(dout.ndim - 1))
    # out = xhat * gamma + beta
    dbeta = dout.sum(axis=lead)  # (C,)
    dgamma = (dout * xhat).sum(axis=lead)  # (C,)
    g = dout * gamma  # (N..., C) = dL/dxhat
    # xhat = (x - mean) * rstd, with mean and rstd functions of x
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))  # (N..., C)
    return dx, dgamma, dbeta


# --- linear --------------------------------------------------------------------
def check_linear_args(x, w, b=None) -> None:
    """x [N..., in], w [in, out], b [out] or None, one float dtype."""
    _check_float("x", x, min_ndim=1)
    _check_float("w", w, ndim=2)
    if b is not None:
        _check_float("b", b, ndim=1)
    _check_same_dtype("x", x, w=w, b=b)
    if x.shape[-1] != w.shape[0]:
        raise ValueError(f"x {x.shape} last axis must equal w {w.shape} rows (w is [in, out])")
    if b is not None and b.shape != (w.shape[1],):
        raise ValueError(f"b {b.shape} must be ({w.shape[1]},) to match w {w.shape}")


def linear_forward(x, w, b=None):
    """out = x @ w + b. x [N..., in], w [in, out], b [out] or None -> out [N..., out]."""
    check_linear_args(x, w, b)
    out = x @ w  # (N..., out)
    if b is not None:
        out += b
    cache = (x, w, b is not None)
    return out, cache


def linear_backward(dout, cache):
    """dx = dout @ w^T; dw = x^T @ dout (summed over all leading axes);
    db = sum dout (None when the forward had no bias)."""
    x, w, has_bias = cache
    n_in, n_out = w.shape
    # out = x @ w + b
    dx = dout @ w.T  # (N..., in)
    dw = x.reshape(-1, n_in).T @ dout.reshape(-1, n_out)  # (in, out)
    db = dout.reshape(-1, n_out).sum(axis=0) if has_bias else None  # (out,)
    return dx, dw, db


# --- attention -----------------------------------------------------------------
def _split_heads(a, n_heads):
    B, T, C = a.shape
    return a.reshape(B, T, n_heads, C // n_heads).transpose(0, 2, 1, 3)  # (B, NH, T, hs)


def _merge_heads(a):
    B, NH, T, hs = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, NH * hs)  # (B, T, C)


def _causal_bias(T, dtype):
    """[T, T]: 0 where u <= t, -inf where u > t (adding 0 leaves a score unchanged)."""
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T)
    return np.where(future, -np.inf, 0.0).astype(dtype)


def check_attention_args(q, k, v, n_heads) -> None:
    """q, k, v [B, T, C] of one float dtype; n_heads a positive int dividing C."""
    _check_float("q", q, ndim=3)
    _check_float("k", k, ndim=3)
    _check_float("v", v, ndim=3)
    _check_same_dtype("q", q, k=k, v=v)
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q {q.shape}, k {k.shape} and v {v.shape} must have the same shape [B, T, C]")
    if isinstance(n_heads, bool) or not isinstance(n_heads, (int, np.integer)) or n_heads < 1:
        raise ValueError(f"n_heads must be a positive int, got {n_heads!r}")
    C = q.shape[2]
    if C % n_heads != 0:
        raise ValueError(f"n_heads ({n_heads}) must divide C ({C})")


def attention_forward(q, k, v, n_heads):
    """Multi-head causal self-attention on projected q, k, v [B, T, C] -> [B, T, C]
    (merged heads, before the out projection).

    Per head: s = (q @ k^T) * (1/sqrt(hs)); s[t, u] = -inf for u > t;
    p = exp(s - max_u s) / sum_u exp(s - max_u s) (future positions get exactly 0);
    y = p @ v."""
    check_attention_args(q, k, v, n_heads)
    return _attention_forward(q, k, v, n_heads)


def _attention_forward(q, k, v, n_heads, keep=None, drop_scale=None):
    """attention_forward, with dropout on the probabilities when `keep`
    [B, NH, T, T] (the site-1 mask, SPEC §dropout) is given: y = drop(p) @ v,
    kept elements times `drop_scale`."""
    B, T, C = q.shape
    scale = 1.0 / math.sqrt(C // n_heads)
    qh, kh, vh = (_split_heads(a, n_heads) for a in (q, k, v))  # (B, NH, T, hs) views
    s = qh @ kh.transpose(0, 1, 3, 2)  # (B, NH, T, T)
    s *= scale
    s += _causal_bias(T, s.dtype)  # (T, T) broadcast: 0 on and below the diagonal, -inf above
    s -= s.max(axis=-1, keepdims=True)  # the diagonal is never masked: max is finite
    p = np.exp(s, out=s)  # exp(-inf) = 0 exactly
    p /= p.sum(axis=-1, keepdims=True)  # (B, NH, T, T)
    pd = p if keep is None else dropout_forward(p, keep, drop_scale)  # (B, NH, T, T)
    y = _merge_heads(pd @ vh)  # (B, T, C)
    cache = (q, k, v, p, n_heads, keep, drop_scale)
    return y, cache


def attention_backward(dout, cache):
    """dp = dy @ v^T; dv = p^T @ dy; ds = p * (dp - sum_u dp * p);
    dq = ds @ k * scale; dk = ds^T @ q * scale (per head; SPEC §backward)."""
    q, k, v, p, n_heads, keep, drop_scale = cache
    B, T, C = q.shape
    scale = 1.0 / math.sqrt(C // n_heads)
    qh, kh, vh = (_split_heads(a, n_heads) for a in (q, k, v))  # (B, NH, T, hs)
    dy = _split_heads(dout, n_heads)  # (B, NH, T, hs)
    # y = pd @ v, pd = drop(p) (pd = p without dropout)
    pd = p if keep is None else dropout_forward(p, keep, drop_scale)  # (B, NH, T, T)
    dp = dy @ vh.transpose(0, 1, 3, 2)  # (B, NH, T, T) = dL/dpd
    dvh = pd.transpose(0, 1, 3, 2) @ dy  # (B, NH, T, hs)
    if keep is not None:
        dp = dropout_backward(dp, keep, drop_scale)  # (B, NH, T, T) = dL/dp, the forward's mask
    # p = softmax(s) along u; masked entries have p = 0, hence ds = 0
    ds = dp
    ds -= (dp * p).sum(axis=-1, keepdims=True)
    ds *= p  # (B, NH, T, T)
    # s = q @ k^T * scale
    dqh = (ds @ kh) * scale  # (B, NH, T, hs)
    dkh = (ds.transpose(0, 1, 3, 2) @ qh) * scale  # (B, NH, T, hs)
    return _merge_heads(dqh), _merge_heads(dkh), _merge_heads(dvh)


# --- gelu ----------------------------------------------------------------------
def check_gelu_args(x) -> None:
    """x: a float32/float64 array (any shape)."""
    _check_float("x", x)


def gelu_forward(x):
    """out = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    check_gelu_args(x)
    u = GELU_C * (x + GELU_A * x * x * x)
    out = 0.5 * x * (1.0 + np.tanh(u))
    cache = (x,)
    return out, cache


def gelu_backward(dout, cache):
    """dx = dout * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2))."""
    (x,) = cache
    # out = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)
    # (in place: [B, T, 4C] temporaries are the largest of the backward, SPEC §activation-memory)
    th = np.tanh(GELU_C * (x + GELU_A * x * x * x))  # (N...) tanh u
    dx = 1.0 - th * th  # sech^2 u
    dx *= GELU_C * (1.0 + 3.0 * GELU_A * x * x)  # * du/dx
    dx *= 0.5 * x
    th += 1.0
    th *= 0.5
    dx += th  # d out / dx = 0.5 (1 + tanh u) + 0.5 x sech^2(u) du/dx
    dx *= dout
    return dx


# --- MLP and block (model-internal; not part of the contract) --------------------
def mlp_forward(x, w1, b1, w2, b2):
    """out = gelu(x @ w1 + b1) @ w2 + b2. x [N..., C], w1 [C, 4C], w2 [4C, C]."""
    h, fc1_cache = linear_forward(x, w1, b1)  # (N..., 4C)
    a, gelu_cache = gelu_forward(h)  # (N..., 4C)
    out, fc2_cache = linear_forward(a, w2, b2)  # (N..., C)
    return out, (fc1_cache, gelu_cache, fc2_cache)


def mlp_backward(dout, cache):
    """Gradients (dx, dw1, db1, dw2, db2)."""
    fc1_cache, gelu_cache, fc2_cache = cache
    da, dw2, db2 = linear_backward(dout, fc2_cache)
    dh = gelu_backward(da, gelu_cache)
    dx, dw1, db1 = linear_backward(dh, fc1_cache)
    return dx, dw1, db1, dw2, db2


# Block-local tensor names, in checkpoint order (reference.params.BLOCK_TENSORS).
def block_forward(x, w, n_heads, masks=None, scale=None):
    """One pre-LayerNorm transformer block:
    x1 = x + attn(ln1(x)) @ Wout + bout;  out = x1 + mlp(ln2(x1)).
    With dropout (SPEC §dropout), `masks` = the keep masks of sites 1, 2, 3
    ([B, NH, T, T], [B, T, C], [B, T, C]) and `scale` = F(1/(1-p)):
    the attention probabilities, the out projection and the MLP output are dropped.

    x [B, T, C]; `w` maps block-local names ("ln1.gamma", "q.weight", ...) to arrays."""
    keep_att, keep_out, keep_mlp = masks if masks is not None else (None, None, None)
    h1, ln1_cache = layernorm_forward(x, w["ln1.gamma"], w["ln1.beta"])  # (B, T, C)
    q, q_cache = linear_forward(h1, w["q.weight"], w["q.bias"])  # (B, T, C)
    k, k_cache = linear_forward(h1, w["k.weight"], w["k.bias"])  # (B, T, C)
    v, v_cache = linear_forward(h1, w["v.weight"], w["v.bias"])  # (B, T, C)
    y, attn_cache = _attention_forward(q, k, v, n_heads, keep_att, scale)  # (B, T, C)
    a, out_cache = linear_forward(y, w["out.weight"], w["out.bias"])  # (B, T, C)
    if keep_out is not None:
        a = dropout_forward(a, keep_out, scale)  # (B, T, C)
    x1 = x + a  # (B, T, C) residual
    h2, ln2_cache = layernorm_forward(x1, w["ln2.gamma"], w["ln2.beta"])  # (B, T, C)
    m, mlp_cache = mlp_forward(h2, w["fc1.weight"], w["fc1.bias"], w["fc2.weight"], w["fc2.bias"])
    if keep_mlp is not None:
        m = dropout_forward(m, keep_mlp, scale)  # (B, T, C)
    out = x1 + m  # (B, T, C) residual
    cache = (ln1_cache, q_cache, k_cache, v_cache, attn_cache, out_cache, ln2_cache, mlp_cache,
             keep_out, keep_mlp, scale)
    return out, cache


def block_backward(dout, cache):
    """Returns (dx, grads) with grads a dict of block-local names -> arrays."""
    (ln1_cache, q_cache, k_cache, v_cache, attn_cache, out_cache, ln2_cache, mlp_cache,
     keep_out, keep_mlp, scale) = cache
    g = {}
    # out = x1 + drop(mlp(ln2(x1)))
    dm = dout if keep_mlp is None else dropout_backward(dout, keep_mlp, scale)  # (B, T, C)
    dh2, g["fc1.weight"], g["fc1.bias"], g["fc2.weight"], g["fc2.bias"] = mlp_backward(dm, mlp_cache)
    dx1_ln, g["ln2.gamma"], g["ln2.beta"] = layernorm_backward(dh2, ln2_cache)
    dx1 = dout + dx1_ln  # (B, T, C)
    # x1 = x + drop(attention(ln1(x)) @ Wout + bout)
    da = dx1 if keep_out is None else dropout_backward(dx1, keep_out, scale)  # (B, T, C)
    dy, g["out.weight"], g["out.bias"] = linear_backward(da, out_cache)
    dq, dk, dv = attention_backward(dy, attn_cache)
    dh1, g["q.weight"], g["q.bias"] = linear_backward(dq, q_cache)
    dh1_k, g["k.weight"], g["k.bias"] = linear_backward(dk, k_cache)
    dh1_v, g["v.weight"], g["v.bias"] = linear_backward(dv, v_cache)
    dh1 += dh1_k
    dh1 += dh1_v  # (B, T, C): ln1 output feeds q, k and v
    dx_ln, g["ln1.gamma"], g["ln1.beta"] = layernorm_backward(dh1, ln1_cache)
    dx = dx1 + dx_ln  # (B, T, C)
    return dx, g
