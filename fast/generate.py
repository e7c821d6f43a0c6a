"""Generation with a key/value cache (SPEC §training).

Twin of `reference/generate.py`, which recomputes the whole forward over the
context for every new token. Here the prompt is run once through the
batched forward (`fast.model`), its keys and values per layer are kept, and
each new token costs one row through every layer: one-row products by Numba
kernels that stream each weight once in fixed row chunks (parallel over the
chunks for large weights, SPEC §kv-cache; q, k and v as one [C, 3C] product, the
biases, residual adds and GELU fused into the kernels that sum the chunks'
partials), and attention of one query over the cached keys (a serial Numba
kernel: too little work per token to wake threads for). While the sequence fits in block_size the
positions never move, so the cache stays valid; once it is longer, the
context window slides (positions shift by one per token, as in the
reference) and every token re-runs the prefill on the last block_size tokens.

Drawing a token (SPEC §training): temperature 0 is the argmax of the float32
logits, lowest id among equal maxima (`_argmax_first`). Otherwise the draw is
the reference's own `sample_token`, called on fast's logits: its cumulative
float64 sums go through NumPy's exp, and a Numba exp may differ from it in
the last bit, which would move a draw that falls on a boundary. Only the
logits are fast's; their tiny differences from the reference's (SPEC §tolerances) can only matter when two logits tie to within ~1e-6, which the conformance
suite checks does not happen on its models (test_agreement, tests/fast_internals).

Dimension legend: C n_embd, V vocab, L n_layers, NH heads, hs = C/NH,
S cached positions (<= block_size), F = 4C.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from reference.generate import check_generate_args, sample_token
from reference.layers import GELU_A, GELU_C, LN_EPS

from ._blas import single_threaded_blas
from ._gelu import gelu_from_tanh, gelu_tanh_arg
from ._layernorm import layernorm_row_into
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
def _attend_one_into(q, kc, vc, S, scale, probs, y):
    """One query row against S cached positions (serial: at most
    NH * block_size * hs multiply-adds, less than a thread wake-up costs on a
    loaded machine): for each head h, p = softmax(scale * q_h . k_u) over u < S (q with its bias),
    y_h = sum_u p_u v_u. kc, vc [NH, block_size, hs]; probs [NH, block_size] scratch.
    Twin: one row of reference attention_forward."""
    NH, _, hs = kc.shape
    for h in range(NH):
        c0 = h * hs
        qh, yh = q[c0:c0 + hs], y[c0:c0 + hs]  # slices indexed from 0 vectorise (fast/_attention.py)
        p = probs[h]
        mx = np.float32(-np.inf)
        for u in range(S):
            kr = kc[h, u]
            s = np.float32(0.0)
            for d in range(hs):
                s += qh[d] * kr[d]
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
            yh[d] = 0.0
        for u in range(S):
            w = p[u] * inv
            vr = vc[h, u]
            for d in range(hs):
                yh[d] += w * vr[d]


@kernel
def _store_kv_into(k, v, pos, kc, vc):
    """kc[h, pos] = k_h, vc[h, pos] = v_h (the new position's key and value, biases included)."""
    NH, _, hs = kc.shape
    for h in range(NH):
        kh, vh = k[h * hs:h * hs + hs], v[h * hs:h * hs + hs]
        ko, vo = kc[h, pos], vc[h, pos]
        for d in range(hs):
            ko[d] = kh[d]
            vo[d] = vh[d]


# One-row products (SPEC §kv-cache): memory-bound, every weight read once per token.
# The weight's rows are cut into fixed chunks of ROW_CHUNK; each chunk streams
# its rows in order into its own partial output row, and the partials are
# added in chunk order by the kernel that consumes them. The cut depends on the
# shape only, so the bytes do not depend on the thread count; products of at
# least PARALLEL_MIN weights run their chunks in parallel, smaller ones serially
# (a thread wake-up costs more than they do).
ROW_CHUNK = 64
PARALLEL_MIN = 1 << 18


def _partials(K: int, N: int, dtype) -> np.ndarray:
    """Scratch for a one-row product x [K] @ W [K, N]: one partial row per chunk."""
    return np.empty((-(-K // ROW_CHUNK), N), dtype=dtype)


@kernel(tolerant=True)
def _chunk_rows_into(x, W, c, part):
    """part[c] = x[k0:k1] @ W[k0:k1] for chunk c (rows k0 = c * ROW_CHUNK up to
    ROW_CHUNK of them), one weight row at a time: the weight is read as one
    sequential stream (prefetch-friendly; interleaving four rows was measured
    1.5x slower on medium) and the partial row stays in L1.
    Twin: the product of reference linear_forward, for one row, before the sum."""
    K, N = W.shape
    k0 = c * ROW_CHUNK
    k1 = min(k0 + ROW_CHUNK, K)
    p = part[c]
    x0 = x[k0]
    for j in range(N):
        p[j] = x0 * W[k0, j]
    for k in range(k0 + 1, k1):
        xk = x[k]
        for j in range(N):
            p[j] += xk * W[k, j]


@kernel(tolerant=True)
def _rows_serial_into(x, W, part):
    """_chunk_rows_into for every chunk, in order."""
    for c in range(part.shape[0]):
        _chunk_rows_into(x, W, c, part)


@kernel(parallel=True, tolerant=True)
def _rows_parallel_into(x, W, part):
    """_chunk_rows_into with one chunk per parallel iteration (same bytes)."""
    for c in prange(part.shape[0]):
        _chunk_rows_into(x, W, c, part)


@kernel(tolerant=True)
def _gelu_chunk_rows_into(hpart, bias, gc, ga, g, W, c, part):
    """For chunk c (rows k0 = c * ROW_CHUNK up to ROW_CHUNK of them):
    g[k0:k1] = gelu(sum of hpart's partial rows (in order) + bias), by the
    formula of fast/_gelu.py with np.tanh and float64 `half`, `one` (the
    product rounded to float32 once; the sums are accumulated in hpart[0, k0:k1]),
    then part[c] = g[k0:k1] @ W[k0:k1] (_chunk_rows_into).
    Twin: reference gelu_forward then linear_forward, for one row."""
    k0 = c * ROW_CHUNK
    k1 = min(k0 + ROW_CHUNK, W.shape[0])
    s = hpart[0, k0:k1]
    for i in range(1, hpart.shape[0]):
        pi = hpart[i, k0:k1]
        for j in range(k1 - k0):
            s[j] += pi[j]
    bs, gs = bias[k0:k1], g[k0:k1]
    for j in range(k1 - k0):
        y = s[j] + bs[j]
        gs[j] = gelu_from_tanh(y, np.tanh(gelu_tanh_arg(y, gc, ga)), 0.5, 1.0)
    _chunk_rows_into(g, W, c, part)


@kernel(tolerant=True)
def _gelu_rows_serial_into(hpart, bias, gc, ga, g, W, part):
    """The MLP's second product with its GELU: _gelu_chunk_rows_into for every chunk, in order."""
    for c in range(part.shape[0]):
        _gelu_chunk_rows_into(hpart, bias, gc, ga, g, W, c, part)


@kernel(parallel=True, tolerant=True)
def _gelu_rows_parallel_into(hpart, bias, gc, ga, g, W, part):
    """_gelu_rows_serial_into with one chunk per parallel iteration (each
    computes the GELU of its own rows; same bytes)."""
    for c in prange(part.shape[0]):
        _gelu_chunk_rows_into(hpart, bias, gc, ga, g, W, c, part)


@kernel(tolerant=True)
def _sum_partials_into(part, bias, add, out):
    """y = sum of part's rows in order (accumulated in part[0]) + bias; out = y,
    or out += y if `add` (the residual). Twin: the sum and bias of reference
    linear_forward, and block_forward's residual add."""
    s = part[0]
    for c in range(1, part.shape[0]):
        for j in range(s.shape[0]):
            s[j] += part[c, j]
    if add:
        for j in range(out.shape[0]):
            out[j] += s[j] + bias[j]
    else:
        for j in range(out.shape[0]):
            out[j] = s[j] + bias[j]


@kernel(tolerant=True)
def _rows_into(x, W, part, parallel):
    """The one-row product's partials, in its parallel or serial form (same bytes)."""
    if parallel:
        _rows_parallel_into(x, W, part)
    else:
        _rows_serial_into(x, W, part)


@kernel(tolerant=True)
def _gelu_rows_into(hpart, bias, gc, ga, g, W, part, parallel):
    """The MLP's second product with its GELU, in its parallel or serial form (same bytes)."""
    if parallel:
        _gelu_rows_parallel_into(hpart, bias, gc, ga, g, W, part)
    else:
        _gelu_rows_serial_into(hpart, bias, gc, ga, g, W, part)


@kernel(tolerant=True)
def _decode_layer(x, h, y, qkv, g, kc, vc, pos, probs, scale, eps, gc, ga,
                  ln1_g, ln1_b, w_qkv, b_qkv, w_out, b_out, ln2_g, ln2_b, w_fc1, b_fc1, w_fc2, b_fc2,
                  p_qkv, p_out, p_fc1, p_fc2, par_qkv, par_out, par_fc1, par_fc2):
    """One block for the new position `pos`, in place on the residual row x
    [C]: x += attn(ln1(x)) over the cache (its key and value stored at pos
    first), then x += mlp(ln2(x)). h, y, qkv, g and the p_* partials are
    scratch; par_* pick each product's parallel form. One Numba call per
    layer (the products inside still run in parallel): eleven calls from
    Python cost ~0.2 ms per medium token in dispatch alone.
    Twin: reference block_forward, for one row."""
    C = x.shape[0]
    layernorm_row_into(x, ln1_g, ln1_b, eps, h)
    _rows_into(h, w_qkv, p_qkv, par_qkv)
    _sum_partials_into(p_qkv, b_qkv, False, qkv)
    _store_kv_into(qkv[C:2 * C], qkv[2 * C:], pos, kc, vc)
    _attend_one_into(qkv[:C], kc, vc, pos + 1, scale, probs, y)
    _rows_into(y, w_out, p_out, par_out)
    _sum_partials_into(p_out, b_out, True, x)
    layernorm_row_into(x, ln2_g, ln2_b, eps, h)
    _rows_into(h, w_fc1, p_fc1, par_fc1)
    _gelu_rows_into(p_fc1, b_fc1, gc, ga, g, w_fc2, p_fc2, par_fc2)
    _sum_partials_into(p_fc2, b_fc2, True, x)


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
        self.x, self.h, self.y = e(C), e(C), e(C)
        self.qkv = e(3 * C)  # q, k, v of the new position, biases included
        self.g = e(F)
        self.logits = e(V)
        self.probs = e(NH, Tmax)
        # partial sums of each product's row chunks
        self.part_qkv, self.part_out = _partials(C, 3 * C, dt), _partials(C, C, dt)
        self.part_fc1, self.part_fc2 = _partials(C, F, dt), _partials(F, C, dt)
        self.part_logits = _partials(C, V, dt)
        F_ = params.dtype.type
        self.eps, self.gc, self.ga = F_(LN_EPS), F_(GELU_C), F_(GELU_A)
        self.scale = F_(1.0 / math.sqrt(hs))
        self.no_bias = np.zeros(V, dtype=dt)  # the output projection has none
        self.out_parallel = params["output_weight"].size >= PARALLEL_MIN
        p = params
        self.layers = []  # per block: _decode_layer's weight arguments and parallel flags, by name
        for i in range(L):
            w = {n: p[f"blocks.{i}.{n}"] for n in (
                "ln1.gamma", "ln1.beta", "out.weight", "out.bias", "ln2.gamma", "ln2.beta",
                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
            # q, k, v side by side: one pass over the ln1 output for all three
            w["qkv.weight"] = np.concatenate([p[f"blocks.{i}.{n}.weight"] for n in "qkv"], axis=1)
            w["qkv.bias"] = np.concatenate([p[f"blocks.{i}.{n}.bias"] for n in "qkv"])
            # which products run their chunks in parallel (read at construction,
            # so a test may lower PARALLEL_MIN)
            self.layers.append(dict(
                ln1_g=w["ln1.gamma"], ln1_b=w["ln1.beta"], w_qkv=w["qkv.weight"], b_qkv=w["qkv.bias"],
                w_out=w["out.weight"], b_out=w["out.bias"], ln2_g=w["ln2.gamma"], ln2_b=w["ln2.beta"],
                w_fc1=w["fc1.weight"], b_fc1=w["fc1.bias"], w_fc2=w["fc2.weight"], b_fc2=w["fc2.bias"],
                **{f"par_{n}": w[f"{n}.weight"].size >= PARALLEL_MIN for n in ("qkv", "out", "fc1", "fc2")}))

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
        x, h = self.x, self.h
        np.add(p["token_embedding"][token], p["position_embedding"][pos], out=x)
        for i, layer in enumerate(self.layers):
            _decode_layer(x=x, h=h, y=self.y, qkv=self.qkv, g=self.g, kc=self.kc[i], vc=self.vc[i], pos=pos,
                          probs=self.probs, scale=self.scale, eps=self.eps, gc=self.gc, ga=self.ga,
                          p_qkv=self.part_qkv, p_out=self.part_out, p_fc1=self.part_fc1, p_fc2=self.part_fc2,
                          **layer)
        layernorm_row_into(x, p["ln_final.gamma"], p["ln_final.beta"], self.eps, h)
        _rows_into(h, p["output_weight"], self.part_logits, self.out_parallel)
        _sum_partials_into(self.part_logits, self.no_bias, False, self.logits)
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
    with single_threaded_blas():  # the prefill's products: _blas splits them; BLAS threads would only spin
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
