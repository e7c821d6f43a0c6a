"""Gradient norm, clipping and AdamW as torch operations on the flat buffer (SPEC §optimiser).

Dimension legend: P total number of parameters; every tensor below is `[P]`
(or a contiguous slice of it) and views the caller's NumPy buffer, so the
in-place operations update `params.data`, `state.m`, `state.v` and
`grads.data` themselves.

Bit-for-bit agreement with SPEC §optimiser rests on these facts about
torch's CPU kernels (checked element by element against NumPy: the suite's
bitwise AdamW and clip tests, test_optim and test_agreement, and
tests/test_torch_impl.py for the square root):
- every call below is one elementwise kernel that rounds once per element
  (eager mode: nothing is fused across calls);
- `mul` and `div` are the plain IEEE operations; a scalar operand is
  converted to the tensor's dtype, and every scalar passed here is already
  an F value (reference.optim.adamw_scalars);
- `torch.sqrt` is *not* correctly rounded on CPU (vector-math routines, up
  to 1 ulp off): the square root is `_ieee.sqrt_rn`, which is;
- `add` and `sub` evaluate `a + alpha * b` as one fused multiply-add; with
  alpha = 1 (never given otherwise here) `fma(b, 1, a)` is `a + b` rounded
  once, so the fusion is exact. `torch.add(.., alpha=x)`, `addcmul`,
  `addcdiv` and `lerp` would fuse a real product and are not used;
- nothing is reassociated: each SPEC line is written as separate calls in
  its own order.
The buffer is walked in chunks of CHUNK elements with chunk-sized
temporaries: every operation is elementwise, so the chunking changes no
bit, and it keeps the temporaries in cache instead of allocating buffers
the size of the model (medium, 19.6M parameters, one thread, shared
machine: 4.0 s per AdamW step with whole-buffer temporaries, 0.45 s in
chunks; the reference 1.5-2.1 s).
The schedule and the state container are the reference's (pure Python).
"""
from __future__ import annotations

import math

import torch

from reference.optim import AdamWState, adamw_init, learning_rate  # noqa: F401  (re-exported)
from reference.optim import adamw_scalars, check_max_norm
from reference.params import Params

from ._autograd import view_of
from ._ieee import sqrt_rn_

CHUNK = 1 << 16  # elements per pass over the flat buffer (a float64 chunk is 512 KiB)


def _chunks(size: int):
    """Slices [lo, hi) of CHUNK elements covering range(size), in order."""
    for lo in range(0, size, CHUNK):
        yield slice(lo, min(lo + CHUNK, size))


def grad_norm(grads: Params) -> float:
    """sqrt(sum g^2) over every gradient, the squares summed in float64
    (per chunk by torch.dot, the chunk sums added in order)."""
    g = torch.from_numpy(grads.data if grads.data.flags.writeable else grads.data.copy())  # [P]
    wide = torch.empty(min(CHUNK, g.numel()), dtype=torch.float64)
    total = 0.0
    for sl in _chunks(g.numel()):
        w = wide[:sl.stop - sl.start]
        w.copy_(g[sl])  # exact widening
        total += float(torch.dot(w, w))
    return math.sqrt(total)


def clip_grad_norm(grads: Params, max_norm: float = 1.0) -> float:
    """If norm > max_norm: g *= F(max_norm / norm) in place (the ratio in
    float64, rounded once to the gradient dtype F). Returns the pre-clip norm;
    a non-finite norm leaves the gradients untouched."""
    max_norm = check_max_norm(max_norm)
    norm = grad_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = float(grads.dtype.type(max_norm / norm))  # an F value: mul converts it exactly
        view_of(grads.data).mul_(scale)  # [P]
    return norm


def adamw_step(params: Params, grads: Params, state: AdamWState, lr: float,
               beta1: float = 0.9, beta2: float = 0.95, eps: float = 1e-8,
               weight_decay: float = 0.1) -> None:
    """One AdamW step in place (SPEC §optimiser): the reference's scalar half,
    then per element, in F, one torch call per rounding:
        p = p * decay                      (decayed tensors only)
        m = b1 * m + omb1 * g
        v = b2 * v + omb2 * g * g          ((omb2 * g) * g)
        mhat = m / bc1;  vhat = v / bc2
        p = p - lr * mhat / (sqrt(vhat) + eps)   ((lr * mhat) / (sqrt(vhat) + eps))
    """
    scalars = adamw_scalars(params, grads, state, lr, beta1, beta2, eps, weight_decay)
    decay, b1, omb1, b2, omb2, bc1, bc2, lr_f, eps_f = (float(s) for s in scalars)  # F values
    p, g, m, v = (view_of(a) for a in (params.data, grads.data, state.m.data, state.v.data))  # [P] each
    for spec in params.table:
        if spec.decayed:
            start = params.offset(spec.name)
            p[start:start + spec.size].mul_(decay)
    n = min(CHUNK, p.numel())
    t, u = torch.empty(n, dtype=p.dtype), torch.empty(n, dtype=p.dtype)  # [CHUNK] temporaries
    wide = torch.empty(n, dtype=torch.float64)  # the square root's scratch
    for sl in _chunks(p.numel()):
        pc, gc, mc, vc = p[sl], g[sl], m[sl], v[sl]
        tc, uc, wc = t[:pc.numel()], u[:pc.numel()], wide[:pc.numel()]
        mc.mul_(b1).add_(torch.mul(gc, omb1, out=tc))  # m = b1 * m + omb1 * g
        vc.mul_(b2).add_(torch.mul(gc, omb2, out=tc).mul_(gc))  # v = b2 * v + (omb2 * g) * g
        sqrt_rn_(torch.div(vc, bc2, out=uc), wc).add_(eps_f)  # sqrt(vhat) + eps
        pc.sub_(torch.div(mc, bc1, out=tc).mul_(lr_f).div_(uc))  # p = p - (lr * mhat) / (sqrt(vhat) + eps)
