"""Gradient norm, clipping and AdamW over the flat parameter buffer (SPEC §optimiser).

Twin of `reference/optim.py`. The schedule and the state container are
re-exported from there (nothing to optimise); the three passes over the flat
buffer are parallel Numba kernels over fixed chunks of `CHUNK` elements.

Dimension legend: P total number of parameters (length of the flat buffer).
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from reference.optim import AdamWState, adamw_init, learning_rate  # noqa: F401  (re-exported)
from reference.optim import adamw_scalars, check_max_norm

from reference.params import Params

from ._numba import CHUNK, kernel


# --- kernels ------------------------------------------------------------------
# Each parallel iteration takes its chunk as slices and loops from 0: indexing
# the whole buffer over range(lo, hi) made Numba keep its negative-index
# wraparound in the loop, which stopped LLVM vectorising it (AdamW and the
# finiteness scan measured 5-8x slower that way).
@kernel(parallel=True)
def _sumsq_chunks_into(g, chunk, partial):
    """partial[c] = sum over chunk c of float64(g)^2, in eight interleaved
    float64 sums (element i into sum i % 8) added pairwise at the end: eight
    independent chains instead of one (a single chain is bound by the add
    latency, ~4x slower). The order is fixed by the data size alone.
    Twin: the float64 sum of squares in reference grad_norm."""
    P = g.shape[0]
    n_chunks = partial.shape[0]
    for c in prange(n_chunks):
        gc = g[c * chunk:min(c * chunk + chunk, P)]
        n = gc.shape[0]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
        for i in range(0, n - n % 8, 8):
            x0, x1, x2, x3 = np.float64(gc[i]), np.float64(gc[i + 1]), np.float64(gc[i + 2]), np.float64(gc[i + 3])
            x4, x5, x6, x7 = np.float64(gc[i + 4]), np.float64(gc[i + 5]), np.float64(gc[i + 6]), np.float64(gc[i + 7])
            s0 += x0 * x0
            s1 += x1 * x1
            s2 += x2 * x2
            s3 += x3 * x3
            s4 += x4 * x4
            s5 += x5 * x5
            s6 += x6 * x6
            s7 += x7 * x7
        for i in range(n - n % 8, n):
            x = np.float64(gc[i])
            s0 += x * x
        partial[c] = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@kernel(parallel=True)
def _scale_into(g, scale, chunk):
    """g *= scale (float32 scalar), elementwise. Twin: the clip in reference clip_grad_norm."""
    P = g.shape[0]
    n_chunks = (P + chunk - 1) // chunk
    for c in prange(n_chunks):
        gc = g[c * chunk:min(c * chunk + chunk, P)]
        for i in range(gc.shape[0]):
            gc[i] = gc[i] * scale


@kernel(parallel=True)
def _adamw_into(p, g, m, v, decayed, decay, b1, one_minus_b1, b2, one_minus_b2,
                bc1, bc2, lr, eps, chunk):
    """One AdamW step in place, every scalar already a float32, in the exact
    float32 operation order of SPEC §optimiser (fastmath off: no FMA
    contraction, so bitwise equal to the NumPy expression order).
    Twin: reference adamw_step."""
    P = p.shape[0]
    n_chunks = (P + chunk - 1) // chunk
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(lo + chunk, P)
        pc, gc, mc, vc, dc = p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], decayed[lo:hi]
        for i in range(hi - lo):
            pi = pc[i]
            gi = gc[i]
            if dc[i]:
                pi = pi * decay
            mi = b1 * mc[i] + one_minus_b1 * gi
            vi = b2 * vc[i] + one_minus_b2 * gi * gi
            mc[i] = mi
            vc[i] = vi
            mhat = mi / bc1
            vhat = vi / bc2
            pc[i] = pi - lr * mhat / (np.sqrt(vhat) + eps)


# --- flat-buffer helpers (arrays in, arrays out) ------------------------------
def _n_chunks(size: int) -> int:
    return max(1, (size + CHUNK - 1) // CHUNK)


def sum_of_squares(flat: np.ndarray) -> float:
    """float64 sum of squares of a flat float32 buffer, in fixed chunks."""
    partial = np.empty(_n_chunks(flat.size), dtype=np.float64)
    _sumsq_chunks_into(flat, CHUNK, partial)
    return float(np.sum(partial))  # pairwise over a fixed number of chunks: deterministic


_MASKS: dict = {}


def _decay_mask_u8(params) -> np.ndarray:
    """The flat decay mask as uint8, built once per Config (it never changes)."""
    key = params.config
    mask = _MASKS.get(key)
    if mask is None:
        mask = np.zeros(params.data.size, dtype=np.uint8)  # built directly: no bool transient
        for spec in params.table:
            if spec.decayed:
                start = params.offset(spec.name)
                mask[start:start + spec.size] = 1
        _MASKS[key] = mask
    return mask


# --- public API (twins of reference/optim.py) ----------------------------------
def grad_norm(grads: Params) -> float:
    """Global L2 norm over every gradient, accumulated in float64 (SPEC §optimiser)."""
    return float(np.sqrt(sum_of_squares(grads.data)))


def clip_grad_norm(grads: Params, max_norm: float = 1.0) -> float:
    """Scale every gradient in place so the global norm is at most `max_norm`;
    returns the pre-clip norm. Same rule as reference: ratio in float64,
    rounded once to the gradient dtype; a non-finite norm leaves them untouched."""
    max_norm = check_max_norm(max_norm)
    norm = grad_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        _scale_into(grads.data, grads.dtype.type(max_norm / norm), CHUNK)
    return norm


def adamw_step(params: Params, grads: Params, state: AdamWState, lr: float,
               beta1: float = 0.9, beta2: float = 0.95, eps: float = 1e-8,
               weight_decay: float = 0.1) -> None:
    """One AdamW step in place, bitwise equal to reference adamw_step (SPEC §optimiser):
    the same scalar preparation, then one parallel pass over the flat buffer."""
    decay, b1, omb1, b2, omb2, bc1, bc2, lr_f, eps_f = adamw_scalars(
        params, grads, state, lr, beta1, beta2, eps, weight_decay)
    _adamw_into(p=params.data, g=grads.data, m=state.m.data, v=state.v.data, decayed=_decay_mask_u8(params),
                decay=decay, b1=b1, one_minus_b1=omb1, b2=b2, one_minus_b2=omb2, bc1=bc1, bc2=bc2, lr=lr_f,
                eps=eps_f, chunk=CHUNK)
