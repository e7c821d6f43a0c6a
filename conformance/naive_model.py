"""Pure-Python loop oracles for the model (SPEC §model), independent of any
implementation: plain Python floats (float64) and nested lists, written
straight from the equations, one element at a time. Backward passes use the
full Jacobians (never the simplified closed forms the implementations use), so
an algebra slip in a closed form cannot hide in both.

Only for tiny inputs: everything is O(T^2 * C) Python arithmetic.
"""
from __future__ import annotations

import math

import numpy as np

LN_EPS = 1e-5
GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


def tolist(a) -> list:
    return np.asarray(a, dtype=np.float64).tolist()


# --- layernorm over one row --------------------------------------------------
def layernorm_row(x: list[float], gamma: list[float], beta: list[float]) -> list[float]:
    C = len(x)
    mean = sum(x) / C
    var = sum((xi - mean) ** 2 for xi in x) / C
    rstd = 1.0 / math.sqrt(var + LN_EPS)
    return [(x[j] - mean) * rstd * gamma[j] + beta[j] for j in range(C)]


def layernorm_row_backward(dout: list[float], x: list[float], gamma: list[float]):
    """dx_i = sum_j dout_j gamma_j d xhat_j / d x_i with the full Jacobian
    d xhat_j / d x_i = rstd (delta_ij - 1/C) - rstd xhat_i xhat_j / C
    (from xhat_j = (x_j - mean) rstd, d rstd / d x_i = -rstd^3 (x_i - mean) / C).
    Returns (dx, dgamma_row, dbeta_row)."""
    C = len(x)
    mean = sum(x) / C
    var = sum((xi - mean) ** 2 for xi in x) / C
    rstd = 1.0 / math.sqrt(var + LN_EPS)
    xhat = [(xj - mean) * rstd for xj in x]
    dx = []
    for i in range(C):
        total = 0.0
        for j in range(C):
            jac = rstd * ((1.0 if i == j else 0.0) - 1.0 / C) - rstd * xhat[i] * xhat[j] / C
            total += dout[j] * gamma[j] * jac
        dx.append(total)
    dgamma = [dout[j] * xhat[j] for j in range(C)]
    dbeta = list(dout)
    return dx, dgamma, dbeta


# --- single-head causal attention -----------------------------------------------
def attention_head(q: list[list[float]], k: list[list[float]], v: list[list[float]]):
    """One head, one sequence: q, k, v [T][hs] -> (y [T][hs], p [T][T]).
    p[t][u] = exp(s[t][u]) / sum_{u' <= t} exp(s[t][u']) for u <= t, else 0,
    s[t][u] = (q[t] . k[u]) / sqrt(hs)."""
    T, hs = len(q), len(q[0])
    scale = 1.0 / math.sqrt(hs)
    p = [[0.0] * T for _ in range(T)]
    y = [[0.0] * hs for _ in range(T)]
    for t in range(T):
        s = [scale * sum(q[t][d] * k[u][d] for d in range(hs)) for u in range(t + 1)]
        m = max(s)
        e = [math.exp(si - m) for si in s]
        z = sum(e)
        for u in range(t + 1):
            p[t][u] = e[u] / z
        for d in range(hs):
            y[t][d] = sum(p[t][u] * v[u][d] for u in range(t + 1))
    return y, p


def attention_head_backward(dy, q, k, v):
    """Gradients (dq, dk, dv) of one head via the full softmax Jacobian
    d p[t][u'] / d s[t][u] = p[t][u'] (delta_{u'u} - p[t][u])."""
    T, hs = len(q), len(q[0])
    scale = 1.0 / math.sqrt(hs)
    _, p = attention_head(q, k, v)
    dq = [[0.0] * hs for _ in range(T)]
    dk = [[0.0] * hs for _ in range(T)]
    dv = [[0.0] * hs for _ in range(T)]
    for t in range(T):
        dp = [sum(dy[t][d] * v[u][d] for d in range(hs)) for u in range(t + 1)]
        for u in range(t + 1):
            for d in range(hs):
                dv[u][d] += p[t][u] * dy[t][d]
        for u in range(t + 1):
            ds = sum(dp[w] * p[t][w] * ((1.0 if w == u else 0.0) - p[t][u]) for w in range(t + 1))
            for d in range(hs):
                dq[t][d] += scale * ds * k[u][d]
                dk[u][d] += scale * ds * q[t][d]
    return dq, dk, dv


def attention(q, k, v, n_heads: int):
    """Multi-head: q, k, v [B][T][C] -> y [B][T][C], head h on columns h*hs:(h+1)*hs."""
    B, T, C = len(q), len(q[0]), len(q[0][0])
    hs = C // n_heads
    y = [[[0.0] * C for _ in range(T)] for _ in range(B)]
    for b in range(B):
        for h in range(n_heads):
            cols = range(h * hs, (h + 1) * hs)
            qh = [[q[b][t][c] for c in cols] for t in range(T)]
            kh = [[k[b][t][c] for c in cols] for t in range(T)]
            vh = [[v[b][t][c] for c in cols] for t in range(T)]
            yh, _ = attention_head(qh, kh, vh)
            for t in range(T):
                for i, c in enumerate(cols):
                    y[b][t][c] = yh[t][i]
    return y


# --- linear, gelu, embedding, cross-entropy ---------------------------------------
def linear_row(x: list[float], w: list[list[float]], b: list[float] | None) -> list[float]:
    n_in, n_out = len(w), len(w[0])
    return [sum(x[i] * w[i][j] for i in range(n_in)) + (b[j] if b is not None else 0.0) for j in range(n_out)]


def gelu(x: float) -> float:
    return 0.5 * x * (1.0 + math.tanh(GELU_C * (x + GELU_A * x ** 3)))


def gelu_derivative(x: float) -> float:
    """d/dx [0.5 x (1 + tanh u)] = 0.5 (1 + tanh u) + 0.5 x sech^2(u) u',
    u = c (x + a x^3), u' = c (1 + 3 a x^2), sech^2 = 1 / cosh^2."""
    u = GELU_C * (x + GELU_A * x ** 3)
    return 0.5 * (1.0 + math.tanh(u)) + 0.5 * x * GELU_C * (1.0 + 3.0 * GELU_A * x * x) / math.cosh(u) ** 2


def cross_entropy(logits, targets) -> tuple[float, list]:
    """Mean over positions of log(sum_v exp z_v) - z_target with max subtraction;
    also dlogits = (softmax - onehot) / (B*T). logits [B][T][V], targets [B][T]."""
    B, T, V = len(logits), len(logits[0]), len(logits[0][0])
    total = 0.0
    dlogits = [[[0.0] * V for _ in range(T)] for _ in range(B)]
    for b in range(B):
        for t in range(T):
            z = logits[b][t]
            m = max(z)
            zsum = sum(math.exp(zv - m) for zv in z)
            total += math.log(zsum) - (z[targets[b][t]] - m)
            for j in range(V):
                dlogits[b][t][j] = (math.exp(z[j] - m) / zsum - (1.0 if j == targets[b][t] else 0.0)) / (B * T)
    return total / (B * T), dlogits


# --- Philox4x32-10 and the dropout masks (SPEC §dropout) ---------------------------
def philox4x32_scalar(counter, key, rounds: int = 10) -> tuple[int, int, int, int]:
    """Philox4x32 on Python ints, one counter, written from the SC'11 paper's
    round function: (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2),
    hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), the key bumped by the Weyl constants
    after every round (the bump after the last is never used)."""
    c0, c1, c2, c3 = (int(c) for c in counter)
    k0, k1 = (int(k) for k in key)
    for r in range(rounds):
        hi0, lo0 = divmod(0xD2511F53 * c0, 2**32)
        hi1, lo1 = divmod(0xCD9E8D57 * c2, 2**32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + 0x9E3779B9) % 2**32, (k1 + 0xBB67AE85) % 2**32
    return c0, c1, c2, c3


def dropout_word(seed: int, step: int, layer: int, site: int, b: int, t: int, h: int, j: int) -> int:
    """The 32-bit word of element j of the vector at (row b, position t,
    head h) of a site, from the SPEC §dropout layout, one element at a time."""
    counter = (j // 4, t + 2**16 * h, b + 2**16 * (4 * layer + site), step)
    return philox4x32_scalar(counter, (seed % 2**32, seed // 2**32))[j % 4]


def dropout_keep(seed, step, layer, site, shape, p, row_offset=0) -> np.ndarray:
    """The keep mask of SPEC §dropout by loops: word >= floor(float32(p) * 2^32)."""
    threshold = math.floor(float(np.float32(p)) * 2**32)
    keep = np.zeros(shape, dtype=bool)
    for index in np.ndindex(*shape):
        if site == 1:
            b, h, t, j = index
        else:
            (b, t, j), h = index, 0
        keep[index] = dropout_word(seed, step, layer, site, row_offset + b, t, h, j) >= threshold
    return keep


def dropout_scale64(p) -> float:
    """1 / (1 - p) for the float32 rate p, in float64 (the float32 scale of SPEC §dropout is its rounding)."""
    return 1.0 / (1.0 - float(np.float32(p)))


# --- the whole model ------------------------------------------------------------
def model_forward(tensors: dict[str, np.ndarray], config, tokens, dropout=None) -> list:
    """Logits [B][T][V] of the GPT-2 model of SPEC §model, from a dict of
    named parameter arrays (checkpoint names), one position at a time.
    `dropout` = (seed, step, scale) applies SPEC §dropout's four sites with the
    loop masks of `dropout_keep` and the given scale (the float32 or float64
    rounding of `dropout_scale64(config.dropout_rate)`)."""
    P = {name: tolist(a) for name, a in tensors.items()}
    tokens = np.asarray(tokens).tolist()
    B, T = len(tokens), len(tokens[0])
    C, NH = config.n_embd, config.n_heads
    hs = C // NH
    keep = None
    if dropout is not None and config.dropout_rate > 0:
        seed, step, scale = dropout

        def keep(layer, site, shape):
            return dropout_keep(seed, step, layer, site, shape, config.dropout_rate).tolist()

        def drop(x, kept):
            return [x[c] * scale if kept[c] else 0.0 for c in range(len(x))]
    x = [[[P["token_embedding"][tokens[b][t]][c] + P["position_embedding"][t][c] for c in range(C)]
          for t in range(T)] for b in range(B)]
    if keep is not None:
        k0 = keep(0, 0, (B, T, C))
        x = [[drop(x[b][t], k0[b][t]) for t in range(T)] for b in range(B)]
    for i in range(config.n_layers):
        w = {suffix: P[f"blocks.{i}.{suffix}"] for suffix in (
            "ln1.gamma", "ln1.beta", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
            "out.weight", "out.bias", "ln2.gamma", "ln2.beta", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
        h = [[layernorm_row(x[b][t], w["ln1.gamma"], w["ln1.beta"]) for t in range(T)] for b in range(B)]
        q = [[linear_row(h[b][t], w["q.weight"], w["q.bias"]) for t in range(T)] for b in range(B)]
        k = [[linear_row(h[b][t], w["k.weight"], w["k.bias"]) for t in range(T)] for b in range(B)]
        v = [[linear_row(h[b][t], w["v.weight"], w["v.bias"]) for t in range(T)] for b in range(B)]
        if keep is None:
            y = attention(q, k, v, NH)
        else:  # y = drop(p) @ v per head, from the single-head probabilities
            k1 = keep(i, 1, (B, NH, T, T))
            y = [[[0.0] * C for _ in range(T)] for _ in range(B)]
            for b in range(B):
                for h in range(NH):
                    cols = range(h * hs, (h + 1) * hs)
                    vh = [[v[b][t][c] for c in cols] for t in range(T)]
                    _, p = attention_head([[q[b][t][c] for c in cols] for t in range(T)],
                                          [[k[b][t][c] for c in cols] for t in range(T)], vh)
                    for t in range(T):
                        pd = drop(p[t], k1[b][h][t])
                        for n, c in enumerate(cols):
                            y[b][t][c] = sum(pd[u] * vh[u][n] for u in range(T))
            k2, k3 = keep(i, 2, (B, T, C)), keep(i, 3, (B, T, C))
        for b in range(B):
            for t in range(T):
                a = linear_row(y[b][t], w["out.weight"], w["out.bias"])
                if keep is not None:
                    a = drop(a, k2[b][t])
                x[b][t] = [x[b][t][c] + a[c] for c in range(C)]
                h2 = layernorm_row(x[b][t], w["ln2.gamma"], w["ln2.beta"])
                f = [gelu(z) for z in linear_row(h2, w["fc1.weight"], w["fc1.bias"])]
                m = linear_row(f, w["fc2.weight"], w["fc2.bias"])
                if keep is not None:
                    m = drop(m, k3[b][t])
                x[b][t] = [x[b][t][c] + m[c] for c in range(C)]
    return [[linear_row(layernorm_row(x[b][t], P["ln_final.gamma"], P["ln_final.beta"]), P["output_weight"], None)
             for t in range(T)] for b in range(B)]
