"""Generation with a key/value cache (SPEC section 7).

Twin of `reference/generate.py`, which recomputes the whole forward over the
context for every new token. Here the prompt is run once through the
batched forward (`fast.model`), its keys and values per layer are kept, and
each new token costs one row through every layer: matrix-vector products
(BLAS) and attention of one query over the cached keys (a serial Numba
kernel: too little work per token to wake threads for). While the sequence fits in block_size the
positions never move, so the cache stays valid; once it is longer, the
context window slides (positions shift by one per token, as in the
reference) and every token re-runs the prefill on the last block_size tokens.

Drawing a token (SPEC section 7): temperature 0 is the argmax of the float32
logits, lowest id among equal maxima (`_argmax_first`). Otherwise the draw is
the reference's own `sample_token`, called on fast's logits: its cumulative
float64 sums go through NumPy's exp, and a Numba exp may differ from it in
the last bit, which would move a draw that falls on a boundary. Only the
logits are fast's; their tiny differences from the reference's (SPEC section
8) can only matter when two logits tie to within ~1e-6, which the conformance
suite checks does not happen on its models (test_agreement, test_fast).

Dimension legend: C n_embd, V vocab, L n_layers, NH heads, hs = C/NH,
S cached positions (<= block_size), F = 4C.
"""
from __future__ import annotations

import math

import numpy as np

from reference.generate import check_generate_args, sample_token
from reference.layers import GELU_A, GELU_C, LN_EPS

from ._blas import matmul_into, single_threaded_blas
from ._numba import kernel
from .model import POOL, check_params, forward_into


@kernel
def _argmax_first(x):
    """Index of the first maximum (NumPy's argmax rule)."""
    best = 0
    for i in range(1, x.shape[0]):
        if x[i] > x[best]:
            best = i
    return best


@kernel(tolerant=True)
def _layernorm_row_into(x, gamma, beta, eps, out):
    """LayerNorm of one row (twin: reference layernorm_forward)."""
    C = x.shape[0]
    s = np.float32(0.0)
    for c in range(C):
        s += x[c]
    m = s / C
    s2 = np.float32(0.0)
    for c in range(C):
        d = x[c] - m
        s2 += d * d
    rs = 1.0 / np.sqrt(s2 / C + eps)
    for c in range(C):
        out[c] = (x[c] - m) * rs * gamma[c] + beta[c]


@kernel(tolerant=True)
def _bias_gelu_row_into(h, bias, gc, ga, g):
    """g = gelu(h + bias) for one row (twin: reference gelu_forward)."""
    for c in range(h.shape[0]):
        x = h[c] + bias[c]
        g[c] = 0.5 * x * (1.0 + np.tanh(gc * (x + ga * x * x * x)))


@kernel(tolerant=True)
def _attend_one_into(q, bq, kc, vc, S, scale, probs, y):
    """One query row against S cached positions (serial: at most
    NH * block_size * hs multiply-adds, less than a thread wake-up costs on a
    loaded machine): for each head h, p = softmax(scale * (q_h + bq_h) . k_u) over u < S,
    y_h = sum_u p_u v_u. kc, vc [NH, block_size, hs]; probs [NH, block_size] scratch.
    Twin: one row of reference attention_forward."""
    NH, _, hs = kc.shape
    for h in range(NH):
        c0 = h * hs
        p = probs[h]
        mx = np.float32(-np.inf)
        for u in range(S):
            s = np.float32(0.0)
            for d in range(hs):
                s += (q[c0 + d] + bq[c0 + d]) * kc[h, u, d]
            s *= scale
            p[u] = s
            if s > mx:
                mx = s
        total = 0.0
        for u in range(S):
            e = np.exp(p[u] - mx)
            p[u] = e
            total += e
        inv = 1.0 / total
        for d in range(hs):
            y[c0 + d] = 0.0
        for u in range(S):
            w = p[u] * inv
            for d in range(hs):
                y[c0 + d] += w * vc[h, u, d]


@kernel
def _store_kv_into(k, bk, v, bv, pos, kc, vc):
    """kc[h, pos] = k_h + bk_h, vc[h, pos] = v_h + bv_h (the new position's key and value)."""
    NH, _, hs = kc.shape
    for h in range(NH):
        for d in range(hs):
            kc[h, pos, d] = k[h * hs + d] + bk[h * hs + d]
            vc[h, pos, d] = v[h * hs + d] + bv[h * hs + d]


class _Decoder:
    """Key/value cache and one-row buffers for one model."""

    def __init__(self, params):
        config = params.config
        C, L, NH, V = config.n_embd, config.n_layers, config.n_heads, config.vocab_size
        hs, Tmax, F = C // NH, config.block_size, 4 * C
        dt = params.dtype
        self.params, self.config = params, config
        self.kc = np.zeros((L, NH, Tmax, hs), dtype=dt)  # cached keys (+ bias)
        self.vc = np.zeros((L, NH, Tmax, hs), dtype=dt)  # cached values (+ bias)
        self.S = 0  # cached positions
        e = lambda *shape: np.empty(shape, dtype=dt)  # noqa: E731
        self.x, self.h, self.q, self.k, self.v, self.y, self.a = (e(C) for _ in range(7))
        self.f, self.g = e(F), e(F)
        self.logits = e(V)
        self.probs = e(NH, Tmax)
        F_ = params.dtype.type
        self.eps, self.gc, self.ga = F_(LN_EPS), F_(GELU_C), F_(GELU_A)
        self.scale = F_(1.0 / math.sqrt(hs))
        p = params
        self.w = [{n: p[f"blocks.{i}.{n}"] for n in (
            "ln1.gamma", "ln1.beta", "q.weight", "q.bias", "k.weight", "k.bias", "v.weight", "v.bias",
            "out.weight", "out.bias", "ln2.gamma", "ln2.beta", "fc1.weight", "fc1.bias",
            "fc2.weight", "fc2.bias")} for i in range(L)]

    def prefill(self, context: np.ndarray) -> np.ndarray:
        """Run the batched forward on `context` [S], keep its keys and values,
        return the logits of its last position [V]."""
        config = self.config
        S = context.size
        lease = POOL.acquire(config, 1, S, self.params.dtype)
        ws = lease.ws
        ws.tokens[:] = context
        forward_into(ws, self.params, with_targets=False)
        self.kc[:, :, :S] = ws.kh[:, 0]  # (L, NH, S, hs)
        self.vc[:, :, :S] = ws.vh[:, 0]
        self.S = S
        self.logits[:] = ws.logits[S - 1]
        return self.logits

    def step(self, token: int) -> np.ndarray:
        """Append `token` at position S; return the logits of that position [V]."""
        p, pos = self.params, self.S
        x, h, q, k, v, y, a, f, g = self.x, self.h, self.q, self.k, self.v, self.y, self.a, self.f, self.g
        np.add(p["token_embedding"][token], p["position_embedding"][pos], out=x)
        for i, w in enumerate(self.w):
            _layernorm_row_into(x, w["ln1.gamma"], w["ln1.beta"], self.eps, h)
            matmul_into(h, w["q.weight"], q)
            matmul_into(h, w["k.weight"], k)
            matmul_into(h, w["v.weight"], v)
            _store_kv_into(k, w["k.bias"], v, w["v.bias"], pos, self.kc[i], self.vc[i])
            _attend_one_into(q, w["q.bias"], self.kc[i], self.vc[i], pos + 1, self.scale, self.probs, y)
            matmul_into(y, w["out.weight"], a)
            x += a
            x += w["out.bias"]
            _layernorm_row_into(x, w["ln2.gamma"], w["ln2.beta"], self.eps, h)
            matmul_into(h, w["fc1.weight"], f)
            _bias_gelu_row_into(f, w["fc1.bias"], self.gc, self.ga, g)
            matmul_into(g, w["fc2.weight"], a)
            x += a
            x += w["fc2.bias"]
        _layernorm_row_into(x, p["ln_final.gamma"], p["ln_final.beta"], self.eps, h)
        matmul_into(h, p["output_weight"], self.logits)
        self.S = pos + 1
        return self.logits


def generate(params, prompt_ids, n_tokens, temperature=1.0, top_k=None, seed=0) -> np.ndarray:
    """The (possibly truncated) prompt followed by `n_tokens` new ids, int64
    [N + n_tokens]; same arguments, checks and drawing rule as reference.generate."""
    prompt = check_generate_args(params, prompt_ids, n_tokens, temperature, top_k, seed)
    check_params(params)
    block_size = params.config.block_size
    rng = np.random.default_rng(seed)
    ids = np.empty(prompt.size + int(n_tokens), dtype=np.int64)  # [N + n_tokens]
    ids[:prompt.size] = prompt
    if n_tokens == 0:
        return ids
    with single_threaded_blas():  # matrix-vector products: BLAS threads would only spin
        return _generate_into(ids, prompt, params, float(temperature), top_k, rng, block_size)


def _generate_into(ids, prompt, params, temperature, top_k, rng, block_size):
    decoder = _Decoder(params)
    logits = decoder.prefill(prompt)
    for n in range(prompt.size, ids.size):
        if n > prompt.size:  # logits for position n-1 given ids[:n]
            if n <= block_size:
                logits = decoder.step(int(ids[n - 1]))
            else:  # the window slides: positions shift, recompute on the last block_size tokens
                logits = decoder.prefill(ids[n - block_size:n])
        if not np.all(np.isfinite(logits)):
            raise ValueError("the model produced non-finite logits; cannot sample")
        if temperature == 0:
            ids[n] = _argmax_first(logits)
        else:
            ids[n] = sample_token(logits, temperature, top_k, rng)
    return ids
