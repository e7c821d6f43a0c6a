"""The GPT-2 model, forward and backward over a batch, on preallocated workspaces
(SPEC §model and §performance).

Twin of `reference/model.py`. Every activation is a 2-D [N, width] row block
(N = B*T); linear layers are BLAS sgemm calls writing into preallocated
outputs (`np.matmul(..., out=...)`), weight gradients are written straight
into their views of the gradient buffer; the kernels are those of the
family modules (fast/_embedding.py, _layernorm.py, _attention.py, _gelu.py,
_colsum.py, _softmax.py) and fast/dropout.py. Fusions: bias + residual add +
the next LayerNorm in one pass; fc1 bias + GELU; softmax + cross-entropy +
its gradient.

Workspaces: one `_Workspace` per (config, B, T, dtype) holds every
activation and gradient scratch buffer. `forward` leases one from a pool;
the cache keeps the lease; `backward` (or dropping the cache) returns it.
A training loop therefore runs on one workspace and two alternating
gradient buffers, and allocates nothing per step but the logits it returns
(a copy) and the cache's copies of tokens and targets.

Dimension legend: B batch, T time, C n_embd, V vocab, L n_layers, NH heads,
F = 4C MLP width, N = B*T rows.
"""
from __future__ import annotations

import math
import sys
import threading

import numpy as np
from numba import prange

from reference.dropout import ATTENTION, ATTENTION_OUTPUT, EMBEDDING, MLP_OUTPUT, check_dropout_key, dropout_scale
from reference.dropout import dropout_threshold
from reference.layers import GELU_A, GELU_C, LN_EPS
from reference.model import check_accumulate_args, check_backward_inputs, check_inputs
from reference.model import check_params as _reference_check_params
from reference.params import BLOCK_TENSORS, Params

from ._attention import (attention_backward_heads, attention_forward_heads, merge_heads_bias_grads_into,
                         merge_heads_into, split_heads_bias_into, split_heads_into)
from ._blas import Chain, Product, matmuls_into, single_threaded_blas
from ._colsum import ROW_CHUNK, colsum_into, n_row_chunks
from ._embedding import bucket_rows, embedding_backward_into, embedding_forward_into
from ._gelu import bias_gelu_forward_into, gelu_backward_colsum_inplace
from ._layernorm import layernorm_backward_grads_into, layernorm_forward_into, residual_layernorm_forward_into
from ._numba import CHUNK, kernel
from .dropout import (attention_dropout_backward_inplace, attention_dropout_into, dropout_backward_into,
                      dropout_rows_inplace, key_words, site_c2)
from .loss import softmax_xent_into


@kernel(parallel=True)
def _chunk_finite(bits, exp_mask, chunk, ok):
    """ok[c] = every value of chunk c is finite, from the values' bit
    patterns (`bits`: the float buffer viewed as unsigned integers of its
    width): a value is inf or NaN exactly when its exponent bits
    (`exp_mask`) are all ones, i.e. when (bits & exp_mask) ^ exp_mask is 0.
    An integer minimum with no early exit, so the loop vectorises (a float
    isfinite with a break did not: 5x slower)."""
    P = bits.shape[0]
    for c in prange(ok.shape[0]):
        seg = bits[c * chunk:min((c + 1) * chunk, P)]  # a slice looped from 0: see fast/optim.py
        low = exp_mask
        for i in range(seg.shape[0]):
            v = (seg[i] & exp_mask) ^ exp_mask
            low = v if v < low else low
        ok[c] = low != 0


# unsigned integer of each float's width, and its exponent bits
_EXPONENT_BITS = {np.dtype(np.float32): (np.uint32, 0x7F800000), np.dtype(np.float64): (np.uint64, 0x7FF0000000000000)}


def check_params(params, name: str = "params") -> Params:
    """Same contract as reference.model.check_params (a Params of float32/64,
    every value finite), with a parallel scan; the reference names the culprit."""
    if not isinstance(params, Params) or params.dtype not in (np.float32, np.float64):
        return _reference_check_params(params, name)
    ok = np.empty(max(1, -(-params.data.size // CHUNK)), dtype=np.bool_)
    uint, exp_mask = _EXPONENT_BITS[params.dtype]
    _chunk_finite(params.data.view(uint), uint(exp_mask), CHUNK, ok)
    if not ok.all():
        _reference_check_params(params, name)  # raises, naming tensor, index and value
    return params


_PLANS_MAX = 1024  # plans kept per workspace (a few params and gradient buffers' worth)


def _where(flat: np.ndarray) -> tuple:
    """Address and stride of a flat parameter or gradient buffer: with the workspace's
    (config, B, T, dtype) they determine every operand of its matmuls."""
    return flat.__array_interface__["data"][0], flat.strides


class _Workspace:
    """Every buffer one forward + backward needs, for one (config, B, T, dtype)."""

    def __init__(self, config, B: int, T: int, dtype):
        C, L, V, NH = config.n_embd, config.n_layers, config.vocab_size, config.n_heads
        N, F = B * T, 4 * config.n_embd
        e = lambda *shape: np.empty(shape, dtype=dtype)  # noqa: E731
        self.key = (config, B, T, np.dtype(dtype))
        self.B, self.T, self.N = B, T, N
        # forward activations, kept for backward
        self.tokens = np.empty(N, dtype=np.int64)  # (N,)
        self.targets = np.empty(N, dtype=np.int64)  # (N,)
        self.x = e(L + 1, N, C)  # residual stream entering block l; x[L] enters ln_final
        self.x1 = e(L, N, C)  # residual stream after attention
        self.h1, self.h2 = e(L, N, C), e(L, N, C)  # ln1, ln2 outputs
        self.m1, self.r1, self.m2, self.r2 = e(L, N), e(L, N), e(L, N), e(L, N)  # mean, rstd
        hs = C // NH
        self.qh, self.kh, self.vh = (e(L, B, NH, T, hs) for _ in range(3))  # projections + bias, per head
        self.att = e(L, B, NH, T, T)  # attention probabilities
        self.yh = e(B, NH, T, hs)  # attention output per head (scratch)
        self.y = e(L, N, C)  # attention output, heads merged
        self.hpre, self.g = e(L, N, F), e(L, N, F)  # fc1 output (+bias), GELU output
        self.hf, self.mf, self.rf = e(N, C), e(N), e(N)  # ln_final output, mean, rstd
        self.logits, self.dlogits, self.losses = e(N, V), e(N, V), e(N)
        self.tmp = e(N, C)  # sgemm output before a fused residual kernel
        self.tq, self.tk, self.tv = e(N, C), e(N, C), e(N, C)  # q, k, v sgemm outputs
        # backward scratch
        self.dx, self.dx1, self.dh = e(N, C), e(N, C), e(N, C)
        self.dq, self.dk, self.dv, self.dy = e(N, C), e(N, C), e(N, C), e(N, C)
        self.dyh, self.dqh, self.dkh, self.dvh = (e(B, NH, T, hs) for _ in range(4))
        self.ds = e(B, NH, T, T)
        n_ch = n_row_chunks(N)
        self.partial, self.partial_c, self.partial2 = e(n_ch, F), e(n_ch, C), e(n_ch, C)  # column-sum partials
        self.db_next = e(C)  # column sums of dx: fc2.bias's gradient of the block below
        self.dg = e(N, F)
        self.starts = np.empty(V + 1, dtype=np.int64)
        self.rows = np.empty(N, dtype=np.int64)
        # dropout (SPEC §dropout), only when the config has p > 0: the byte masks of
        # sites 0, 2, 3, the dropped probabilities of site 1, a branch gradient
        self.drop = None  # the _Dropout of the last forward, None without dropout
        if config.dropout_rate > 0:
            u8 = lambda *shape: np.empty(shape, dtype=np.uint8)  # noqa: E731
            self.keep_emb, self.keep_out, self.keep_mlp = u8(N, C), u8(L, N, C), u8(L, N, C)
            self.attd = e(L, B, NH, T, T)  # pd = drop(att)
            self.dbr = e(N, C)  # gradient of a dropped branch
            self.zero_c = np.zeros(C, dtype=dtype)  # bias already added by the dropout kernel
        self.grads: list[Params] = []  # gradient buffers, reused when nobody else holds them
        self.dlogits_over = N  # the n of dlogits = (softmax - onehot) / n (backward's mean_over)
        self.acc_scratch: np.ndarray | None = None  # one region of gradients, for backward(accumulate=...)
        self.logits_out: list[np.ndarray] = []  # returned logits buffers, reused the same way
        self.has_targets = False
        self.generation = 0  # bumped by every acquire (see _Lease)
        # matmul launch plans (fast/_blas.py) by (call site, layer, params address, gradient
        # target address): the workspace's buffers never move, so these determine every operand
        self.plans: dict = {}
        self.plan_key: tuple = ()

    def matmuls(self, site, *products) -> None:
        """One launch of `products` (fast/_blas.py), its plan kept under `site` and plan_key."""
        if len(self.plans) > _PLANS_MAX:
            self.plans.clear()
        matmuls_into(products, self.plans, (site,) + self.plan_key)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in vars(self).values() if isinstance(a, np.ndarray))


class _Pool:
    """Free workspaces per key. `acquire` hands one out (bumping its
    generation: whatever it held is now stale); `release` takes it back."""

    def __init__(self):
        self.free: dict = {}
        self.lock = threading.Lock()

    def acquire(self, config, B, T, dtype) -> "_Lease":
        key = (config, B, T, np.dtype(dtype))
        with self.lock:
            stack = self.free.get(key)
            ws = stack.pop() if stack else None
        if ws is None:
            ws = _Workspace(config, B, T, dtype)
        ws.generation += 1
        return _Lease(self, ws)

    def release(self, lease: "_Lease") -> None:
        if not lease.active:
            return
        lease.active = False
        with self.lock:
            stack = self.free.setdefault(lease.ws.key, [])
            if len(stack) < 2:  # keep at most two idle workspaces per shape
                stack.append(lease.ws)

    def clear(self) -> None:
        with self.lock:
            self.free.clear()


POOL = _Pool()


class _Lease:
    """A workspace handed out by the pool, and the generation it was handed
    out at: while `ws.generation` is unchanged the activations are this
    lease's. Dropping the lease returns the workspace."""

    def __init__(self, pool: _Pool, ws: _Workspace):
        self.pool, self.ws, self.generation, self.active = pool, ws, ws.generation, True

    @property
    def valid(self) -> bool:
        return self.ws.generation == self.generation

    def __del__(self):
        try:
            self.pool.release(self)
        except Exception:  # interpreter shutdown
            pass


def _block_views(params: Params, i: int):
    return {name: params[f"blocks.{i}.{name}"] for name in BLOCK_TENSORS}


class _Dropout:
    """The scalars of one training forward's dropout (SPEC §dropout): the Philox
    key words, the step, the row offset, the threshold and the scale."""

    def __init__(self, key, p: float, dtype):
        self.key = key
        self.k0, self.k1 = key_words(key.seed)
        self.step = np.uint64(key.step)
        self.thr = np.uint64(dropout_threshold(p))
        self.scale = dropout_scale(p, dtype)

    def c2(self, layer: int, site: int) -> np.uint64:
        return site_c2(self.key.row_offset, layer, site)

    def rows(self, ws: _Workspace, x: np.ndarray, bias, layer: int, site: int, keep: np.ndarray) -> None:
        """Sites 0, 2, 3 in place on x [N, C] (after adding `bias`, if any); the mask into `keep`."""
        has_bias = bias is not None
        dropout_rows_inplace(x=x, bias=bias if has_bias else ws.zero_c, has_bias=has_bias, T=ws.T,
                             c2=self.c2(layer, site), c3=self.step, k0=self.k0, k1=self.k1, thr=self.thr,
                             scale=self.scale, keep=keep)


def forward_into(ws: _Workspace, params: Params, with_targets: bool, key=None) -> float | None:
    """The whole forward on workspace `ws` (tokens/targets already in it),
    with dropout when `key` (a DropoutKey) is given and p > 0.
    Returns the mean loss, or None without targets. Twin: reference forward."""
    config = params.config
    B, T = ws.B, ws.T
    L, NH = config.n_layers, config.n_heads
    F = params.dtype.type
    eps, gc, ga = F(LN_EPS), F(GELU_C), F(GELU_A)
    scale = F(1.0 / math.sqrt(config.n_embd // NH))
    drop = ws.drop = None if key is None or config.dropout_rate == 0.0 else _Dropout(key, config.dropout_rate,
                                                                                      params.dtype)
    embedding_forward_into(ws.tokens, params["token_embedding"], params["position_embedding"], T, ws.x[0])
    if drop is not None:  # x0 = drop(wte[tokens] + wpe[:T])
        drop.rows(ws, ws.x[0], None, 0, EMBEDDING, ws.keep_emb)
    w = _block_views(params, 0)
    layernorm_forward_into(ws.x[0], w["ln1.gamma"], w["ln1.beta"], eps, ws.h1[0], ws.m1[0], ws.r1[0])
    ws.plan_key = (_where(params.data),)
    mm = ws.matmuls
    for i in range(L):
        w = _block_views(params, i)
        h1 = ws.h1[i]
        mm(("qkv", i), Product(h1, w["q.weight"], ws.tq), Product(h1, w["k.weight"], ws.tk),
           Product(h1, w["v.weight"], ws.tv))  # (N, C) each
        split_heads_bias_into(q=ws.tq, k=ws.tk, v=ws.tv, bq=w["q.bias"], bk=w["k.bias"], bv=w["v.bias"],
                              B=B, T=T, NH=NH, qh=ws.qh[i], kh=ws.kh[i], vh=ws.vh[i])  # (B, NH, T, hs)
        att_drop = None
        if drop is not None:  # pd = drop(p), kept for backward
            def att_drop(att, i=i):
                attention_dropout_into(p=att, c2=drop.c2(i, ATTENTION), c3=drop.step, k0=drop.k0, k1=drop.k1,
                                       thr=drop.thr, scale=drop.scale, pd=ws.attd[i])
                return ws.attd[i]
        attention_forward_heads(qh=ws.qh[i], kh=ws.kh[i], vh=ws.vh[i], scale=scale, att=ws.att[i], yh=ws.yh,
                                drop=att_drop, mm=mm, layer=i)
        merge_heads_into(ws.yh, B, T, NH, ws.y[i])  # (N, C)
        mm(("out", i), Product(ws.y[i], w["out.weight"], ws.tmp))  # (N, C)
        # x1 = x + drop(y @ Wout + bout);  h2 = ln2(x1)
        bias = w["out.bias"]
        if drop is not None:
            drop.rows(ws, ws.tmp, bias, i, ATTENTION_OUTPUT, ws.keep_out[i])
            bias = ws.zero_c
        residual_layernorm_forward_into(x=ws.x[i], a=ws.tmp, bias=bias, gamma=w["ln2.gamma"], beta=w["ln2.beta"],
                                        eps=eps, x1=ws.x1[i], out=ws.h2[i], mean=ws.m2[i], rstd=ws.r2[i])
        mm(("fc1", i), Product(ws.h2[i], w["fc1.weight"], ws.hpre[i]))  # (N, F)
        bias_gelu_forward_into(ws.hpre[i], w["fc1.bias"], gc, ga, ws.g[i])
        mm(("fc2", i), Product(ws.g[i], w["fc2.weight"], ws.tmp))  # (N, C)
        # x_next = x1 + drop(gelu(...) @ W2 + b2);  then the next block's ln1 (or ln_final)
        bias = w["fc2.bias"]
        if drop is not None:
            drop.rows(ws, ws.tmp, bias, i, MLP_OUTPUT, ws.keep_mlp[i])
            bias = ws.zero_c
        if i + 1 < L:
            nxt = _block_views(params, i + 1)
            gamma, beta, out, m, r = nxt["ln1.gamma"], nxt["ln1.beta"], ws.h1[i + 1], ws.m1[i + 1], ws.r1[i + 1]
        else:
            gamma, beta, out, m, r = params["ln_final.gamma"], params["ln_final.beta"], ws.hf, ws.mf, ws.rf
        residual_layernorm_forward_into(x=ws.x1[i], a=ws.tmp, bias=bias, gamma=gamma, beta=beta, eps=eps,
                                        x1=ws.x[i + 1], out=out, mean=m, rstd=r)
    mm("logits", Product(ws.hf, params["output_weight"], ws.logits))  # (N, V)
    ws.has_targets = with_targets
    if not with_targets:
        return None
    ws.dlogits_over = ws.N
    return softmax_xent_into(ws.logits, ws.targets, ws.losses, ws.dlogits)


def _reuse_or_new(buffers: list, free, make):
    """The first of `buffers` that `free` says nobody else holds, else a new
    one from `make` (kept when fewer than two are): a loop that drops what it
    got back allocates nothing, and whatever a caller keeps is never reused."""
    for buf in buffers:
        if free(buf):
            return buf
    buf = make()
    if len(buffers) < 2:
        buffers.append(buf)
    return buf


# Reference counts of a buffer nobody else holds, as seen inside `free`: the
# workspace's list, getrefcount's argument and `_reuse_or_new`'s loop variable
# and parameter.
_HELD_BY_WORKSPACE_ONLY = 4


def _grads_buffer(ws: _Workspace, params: Params) -> Params:
    """A gradient Params of the workspace that nobody else holds (CPython
    reference counts: neither the Params nor its data is referenced outside
    the workspace), else a new one. A training loop holds the previous
    step's gradients while computing the next, so two buffers alternate.
    Every tensor is overwritten by backward, so no zero fill."""
    return _reuse_or_new(
        ws.grads,
        lambda g: (sys.getrefcount(g) == _HELD_BY_WORKSPACE_ONLY
                   and sys.getrefcount(g.data) == 2 + len(g._views)),
        lambda: Params(params.config, np.empty(params.data.size, dtype=params.dtype)))


def _logits_buffer(ws: _Workspace) -> np.ndarray:
    """A [B*T, V] buffer for the logits `forward` returns that nobody else
    holds (no array or view of it is alive outside the workspace), else a new
    one: a training loop drops each step's logits, so it allocates none."""
    return _reuse_or_new(ws.logits_out, lambda buf: sys.getrefcount(buf) == _HELD_BY_WORKSPACE_ONLY,
                         lambda: np.empty_like(ws.logits))


# The gradient buffer in three regions of consecutive tensors (table order),
# in the order backward_into finishes them.
def _regions(config) -> list[tuple[str, ...]]:
    head = ("ln_final.gamma", "ln_final.beta", "output_weight")
    blocks = [tuple(f"blocks.{i}.{name}" for name in BLOCK_TENSORS) for i in reversed(range(config.n_layers))]
    return [head, *blocks, ("token_embedding", "position_embedding")]


class _Sink:
    """Where backward_into writes each region of the gradients: straight into
    `grads`, or (backward's `accumulate`) into a region-sized scratch that is
    then added into `grads`, `grads = grads + g` elementwise (SPEC §backward): the
    same bytes as computing g whole and adding it, with one region of scratch
    (a block's tensors, ~12C^2 values) instead of a second gradient buffer."""

    def __init__(self, grads: Params, scratch: np.ndarray | None = None):
        self.grads, self.scratch, self.open = grads, scratch, None

    def region(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Views to write the named tensors' gradients into (a region of _regions)."""
        if self.scratch is None:
            return {name: self.grads[name] for name in names}
        lo = self.grads.offset(names[0])
        views, hi = {}, lo
        for name in names:
            view = self.grads[name]
            start = self.grads.offset(name) - lo
            views[name] = self.scratch[start:start + view.size].reshape(view.shape)
            hi = self.grads.offset(name) + view.size
        self.open = (lo, hi)
        return views

    def target(self):
        """Where the gradient views point (a key for the workspace's matmul plans)."""
        return (self.scratch is None, _where(self.grads.data if self.scratch is None else self.scratch))

    def commit(self) -> None:
        """The open region is complete: add it into the gradients (accumulate mode)."""
        if self.scratch is None:
            return
        lo, hi = self.open
        target = self.grads.data[lo:hi]
        np.add(target, self.scratch[:hi - lo], out=target)
        self.open = None


def _scratch(ws: _Workspace, params: Params) -> np.ndarray:
    """The workspace's scratch for one region of gradients (allocated on first use)."""
    if ws.acc_scratch is None:
        size = max(sum(params[name].size for name in names) for names in _regions(params.config))
        ws.acc_scratch = np.empty(size, dtype=params.dtype)
    return ws.acc_scratch


def backward_into(ws: _Workspace, params: Params, sink: _Sink) -> None:
    """Every parameter gradient of the loss (dlogits already in the
    workspace), written region by region through `sink`. Twin: reference backward."""
    config = params.config
    B, T = ws.B, ws.T
    L, NH = config.n_layers, config.n_heads
    F = params.dtype.type
    gc, ga = F(GELU_C), F(GELU_A)
    scale = F(1.0 / math.sqrt(config.n_embd // NH))
    pc = ws.partial_c  # column-sum partials [n_chunks, C] (a second set for LN beta)
    regions = _regions(config)
    drop = ws.drop  # the forward's dropout (None without): its masks are in the workspace

    def branch(d, keep):
        """The gradient of a dropped branch: d * scale where kept (the forward's mask), else 0."""
        if drop is None:
            return d
        dropout_backward_into(d, keep, drop.scale, ws.dbr)
        return ws.dbr

    ws.plan_key = (_where(params.data), sink.target())
    mm = ws.matmuls
    # logits = hf @ Wout
    gh = sink.region(regions[0])
    mm("d logits", Product(ws.hf.T, ws.dlogits, gh["output_weight"]),  # (C, V)
       Product(ws.dlogits, params["output_weight"].T, ws.dh))  # (N, C)
    # hf = ln_final(x[L])
    # (without dropout, the column sums of dx, fc2.bias's gradient of the last block, in the same pass)
    layernorm_backward_grads_into(dout=ws.dh, x=ws.x[L], mean=ws.mf, rstd=ws.rf, gamma=params["ln_final.gamma"],
                                  dres=ws.dx, has_res=False, dx=ws.dx, rows=ROW_CHUNK, pg=pc, pb=ws.partial2,
                                  dgamma=gh["ln_final.gamma"], dbeta=gh["ln_final.beta"],
                                  with_sum=drop is None, ps=ws.partial, dsum=ws.db_next)
    sink.commit()
    for i in reversed(range(L)):
        w = _block_views(params, i)
        gw = {name.split(".", 2)[2]: view for name, view in sink.region(regions[L - i]).items()}
        # x_next = x1 + drop(gelu(h2 @ W1 + b1) @ W2 + b2)
        dm = branch(ws.dx, ws.keep_mlp[i] if drop is not None else None)  # (N, C)
        if drop is None:  # summed by the LayerNorm backward that wrote dx
            gw["fc2.bias"][:] = ws.db_next
        else:
            colsum_into(dm, ROW_CHUNK, pc, gw["fc2.bias"])
        mm(("d fc2", i), Product(ws.g[i].T, dm, gw["fc2.weight"]),  # (F, C)
           Product(dm, w["fc2.weight"].T, ws.dg))  # (N, F)
        # dg = dg * gelu'(hpre), and fc1.bias's gradient, in one pass
        gelu_backward_colsum_inplace(d=ws.dg, x=ws.hpre[i], gc=gc, ga=ga, rows=ROW_CHUNK, partial=ws.partial,
                                     db=gw["fc1.bias"])
        mm(("d fc1", i), Product(ws.h2[i].T, ws.dg, gw["fc1.weight"]),  # (C, F)
           Product(ws.dg, w["fc1.weight"].T, ws.dh))  # (N, C)
        # h2 = ln2(x1): dx1 = dx + ln2'(dh)
        # (without dropout, out.bias's gradient, the column sums of dx1, in the same pass)
        layernorm_backward_grads_into(dout=ws.dh, x=ws.x1[i], mean=ws.m2[i], rstd=ws.r2[i], gamma=w["ln2.gamma"],
                                      dres=ws.dx, has_res=True, dx=ws.dx1, rows=ROW_CHUNK, pg=pc, pb=ws.partial2,
                                      dgamma=gw["ln2.gamma"], dbeta=gw["ln2.beta"],
                                      with_sum=drop is None, ps=ws.partial, dsum=gw["out.bias"])
        # x1 = x + drop(y @ Wout + bout)
        da = branch(ws.dx1, ws.keep_out[i] if drop is not None else None)  # (N, C)
        if drop is not None:
            colsum_into(da, ROW_CHUNK, pc, gw["out.bias"])
        mm(("d out", i), Product(ws.y[i].T, da, gw["out.weight"]),  # (C, C)
           Product(da, w["out.weight"].T, ws.dy))  # (N, C)
        # y = attention(q, k, v), with pd = drop(p) in place of p in y = pd v
        split_heads_into(ws.dy, B, T, NH, ws.dyh)
        pd, pd_backward = None, None
        if drop is not None:
            pd = ws.attd[i]

            def pd_backward(dpd, pd):
                attention_dropout_backward_inplace(dpd, pd, drop.scale)
        attention_backward_heads(dyh=ws.dyh, qh=ws.qh[i], kh=ws.kh[i], vh=ws.vh[i], att=ws.att[i], scale=scale,
                                 ds=ws.ds, dqh=ws.dqh, dkh=ws.dkh, dvh=ws.dvh, pd=pd, drop_backward=pd_backward,
                                 mm=mm, layer=i)
        # q, k, v = h1 @ W + b (heads merged back, bias gradients in the same launch)
        merge_heads_bias_grads_into(dqh=ws.dqh, dkh=ws.dkh, dvh=ws.dvh, B=B, T=T, NH=NH, rows=ROW_CHUNK,
                                    partial=ws.partial, dq=ws.dq, dk=ws.dk, dv=ws.dv,
                                    dbq=gw["q.bias"], dbk=gw["k.bias"], dbv=gw["v.bias"])
        h1t = ws.h1[i].T
        mm(("d qkv", i), Product(h1t, ws.dq, gw["q.weight"]), Product(h1t, ws.dk, gw["k.weight"]),
           Product(h1t, ws.dv, gw["v.weight"]),  # (C, C) each
           Chain(ws.dh, ((ws.dq, w["q.weight"].T), (ws.dk, w["k.weight"].T), (ws.dv, w["v.weight"].T))))  # (N, C)
        # h1 = ln1(x): dx = dx1 + ln1'(dh)
        # (without dropout, the column sums of dx: fc2.bias's gradient of the block below, kept in db_next)
        layernorm_backward_grads_into(dout=ws.dh, x=ws.x[i], mean=ws.m1[i], rstd=ws.r1[i], gamma=w["ln1.gamma"],
                                      dres=ws.dx1, has_res=True, dx=ws.dx, rows=ROW_CHUNK, pg=pc, pb=ws.partial2,
                                      dgamma=gw["ln1.gamma"], dbeta=gw["ln1.beta"],
                                      with_sum=drop is None and i > 0, ps=ws.partial, dsum=ws.db_next)
        sink.commit()
    # x[0] = drop(wte[tokens] + wpe[:T])
    dx0 = branch(ws.dx, ws.keep_emb if drop is not None else None)  # (N, C)
    ge = sink.region(regions[-1])
    bucket_rows(ws.tokens, config.vocab_size, ws.starts, ws.rows)
    embedding_backward_into(dx0, ws.starts, ws.rows, T, ge["token_embedding"], ge["position_embedding"])
    sink.commit()


# --- public API (same signatures as reference.model) ------------------------------
def forward(params, tokens, targets=None, dropout=None):
    """Logits [B, T, V] (an array nobody else holds), the mean loss (float or None) and an
    opaque cache for `backward` (it holds the workspace lease). `dropout`: None,
    or the DropoutKey of a training step (SPEC §dropout)."""
    check_params(params)
    config = params.config
    tokens, targets = check_inputs(config, tokens, targets)
    key = check_dropout_key(dropout)
    B, T = tokens.shape
    lease = POOL.acquire(config, B, T, params.dtype)
    ws = lease.ws
    ws.tokens[:] = tokens.reshape(-1)
    if targets is not None:
        ws.targets[:] = targets.reshape(-1)
    with single_threaded_blas():
        loss = forward_into(ws, params, targets is not None, key)
    out = _logits_buffer(ws)
    np.copyto(out, ws.logits)
    logits = out.reshape(B, T, config.vocab_size)
    cache = {"fast_lease": lease, "config": config, "dtype": params.dtype, "loss": loss, "dropout": key,
             "tokens": np.array(tokens, dtype=np.int64),
             "targets": None if targets is None else np.array(targets, dtype=np.int64)}
    return logits, loss, cache


def backward(params, cache, accumulate=None, mean_over=None):
    """Gradients of the mean loss with respect to every parameter, as a Params;
    with `mean_over` the loss is this batch's share of a mean over that many
    positions, with `accumulate` the gradients are added into it (SPEC §backward).

    The forward's workspace goes back to the pool when backward is done, so a
    training loop runs on one workspace. Should it have been handed out again
    before a (second) backward on the same cache, the forward is re-run on
    the cache's tokens first (the kernels are deterministic: same bytes)."""
    check_backward_inputs(params, cache, owner="fast.forward", marker="fast_lease")
    n = check_accumulate_args(params, cache["tokens"].size, accumulate, mean_over)
    lease = cache["fast_lease"]
    if not lease.valid:
        B, T = cache["tokens"].shape
        lease = POOL.acquire(params.config, B, T, params.dtype)
        lease.ws.tokens[:] = cache["tokens"].reshape(-1)
        lease.ws.targets[:] = cache["targets"].reshape(-1)
        with single_threaded_blas():
            forward_into(lease.ws, params, True, cache["dropout"])
        cache["fast_lease"] = lease
    ws = lease.ws
    with single_threaded_blas():
        if ws.dlogits_over != n:  # the loss gradient with another divisor (fused kernel re-run)
            softmax_xent_into(ws.logits, ws.targets, ws.losses, ws.dlogits, n)
            ws.dlogits_over = n
        if accumulate is None:
            grads = _grads_buffer(ws, params)
            backward_into(ws, params, _Sink(grads))
        else:
            grads = accumulate
            backward_into(ws, params, _Sink(grads, _scratch(ws, params)))
    POOL.release(lease)  # activations stay valid until the workspace is handed out again
    return grads
