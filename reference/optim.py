"""Gradient norm and clipping, AdamW, learning-rate schedule (SPEC §optimiser).

Dimension legend: P total number of scalar parameters (the flat buffer of a
`Params`); every array below is `[P]`.

AdamW is written so that another implementation can match it bit for bit:
every hyperparameter is rounded to the parameter dtype once, the derived
scalars (`1 - lr*wd`, `1 - b1`, `1 - b2`, the bias corrections) are computed
in float64 from those rounded values and rounded once more, and the
per-element arithmetic is done in the parameter dtype in exactly the order
written in SPEC §optimiser (NumPy never promotes: every scalar is a NumPy
scalar of the parameter dtype).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .params import Params

SCHEDULES = ("constant", "cosine")


# --- gradient norm and clipping -------------------------------------------
def grad_norm(grads: Params) -> float:
    """Global L2 norm `sqrt(sum g^2)` over every gradient, accumulated in float64."""
    g = grads.data.astype(np.float64)  # [P]
    return float(np.sqrt(np.dot(g, g)))


def check_max_norm(max_norm) -> float:
    """clip_grad_norm's `max_norm` as a float: positive and finite, else ValueError."""
    max_norm = float(max_norm)
    if not (math.isfinite(max_norm) and max_norm > 0.0):
        raise ValueError(f"clip_grad_norm: max_norm must be a positive finite number, got {max_norm!r}")
    return max_norm


def clip_grad_norm(grads: Params, max_norm: float = 1.0) -> float:
    """Scale every gradient in place so the global norm is at most `max_norm`.

    If `norm > max_norm`: `g *= dtype(max_norm / norm)` (the ratio computed in
    float64, rounded once). Returns the pre-clip norm, which is what the
    training log records. A non-finite norm leaves the gradients untouched
    (the trainer stops on it; scaling by 0 or NaN would hide the cause).
    """
    max_norm = check_max_norm(max_norm)
    norm = grad_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = grads.dtype.type(max_norm / norm)
        grads.data *= scale  # [P]
    return norm


# --- AdamW ------------------------------------------------------------------
@dataclass
class AdamWState:
    """AdamW moments and step count; `m`, `v` are `Params` shaped like the model."""

    m: Params  # first moment, zeros at init
    v: Params  # second moment, zeros at init
    step: int = 0  # t: number of AdamW steps taken (bias correction uses t after += 1)
    beta1: float = 0.9  # as used by the last step (recorded in training checkpoints)
    beta2: float = 0.95
    eps: float = 1e-8


def adamw_init(params: Params) -> AdamWState:
    """Zero moments of the same shape and dtype as `params`, step 0."""
    return AdamWState(m=params.zeros_like(), v=params.zeros_like(), step=0)


def _check_hyper(name: str, value, low: float, high: float | None, low_open: bool = False) -> float:
    value = float(value)
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        bound = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"adamw_step: {name} must be in {bound}, got {value!r}")
    return value


def adamw_scalars(params: Params, grads: Params, state: AdamWState, lr, beta1, beta2, eps, weight_decay):
    """The checks and the scalar half of one AdamW step (SPEC §optimiser), shared
    by every implementation's adamw_step so they agree bit for bit: validates the
    buffers and hyperparameters, advances `state.step`, records the rounded
    betas/eps in `state`, and returns the float32 (parameter dtype) scalars
    (decay, b1, 1-b1, b2, 1-b2, bc1, bc2, lr, eps)."""
    if grads.data.shape != params.data.shape or grads.dtype != params.dtype:
        raise ValueError(f"adamw_step: grads {grads.data.shape} {grads.dtype} do not match "
                         f"params {params.data.shape} {params.dtype}")
    for name, moment in (("state.m", state.m), ("state.v", state.v)):
        if moment.data.shape != params.data.shape or moment.dtype != params.dtype:
            raise ValueError(f"adamw_step: {name} {moment.data.shape} {moment.dtype} does not match "
                             f"params {params.data.shape} {params.dtype}")
    lr = _check_hyper("lr", lr, 0.0, None)
    beta1 = _check_hyper("beta1", beta1, 0.0, 1.0)
    beta2 = _check_hyper("beta2", beta2, 0.0, 1.0)
    eps = _check_hyper("eps", eps, 0.0, None, low_open=True)
    weight_decay = _check_hyper("weight_decay", weight_decay, 0.0, None)

    F = params.dtype.type
    state.step += 1
    t = state.step
    lr_f, b1, b2, eps_f, wd = F(lr), F(beta1), F(beta2), F(eps), F(weight_decay)
    decay = F(1.0 - float(lr_f) * float(wd))
    omb1 = F(1.0 - float(b1))
    omb2 = F(1.0 - float(b2))
    bc1 = F(1.0 - math.pow(float(b1), t))
    bc2 = F(1.0 - math.pow(float(b2), t))
    state.beta1, state.beta2, state.eps = float(b1), float(b2), float(eps_f)
    return decay, b1, omb1, b2, omb2, bc1, bc2, lr_f, eps_f


def adamw_step(params: Params, grads: Params, state: AdamWState, lr: float,
               beta1: float = 0.9, beta2: float = 0.95, eps: float = 1e-8,
               weight_decay: float = 0.1) -> None:
    """One AdamW step, in place on `params.data`, `state.m`, `state.v`; `state.step += 1`.

    SPEC §optimiser, with F the parameter dtype (float32 by default):
        t += 1
        lr, b1, b2, eps, wd = F(lr), F(beta1), F(beta2), F(eps), F(weight_decay)
        decay = F(1 - f64(lr) * f64(wd));  omb1 = F(1 - f64(b1));  omb2 = F(1 - f64(b2))
        bc1 = F(1 - pow(f64(b1), t));      bc2 = F(1 - pow(f64(b2), t))
        then per element, in F, left to right:
        p = p * decay                      (decayed tensors only)
        m = b1 * m + omb1 * g
        v = b2 * v + omb2 * g * g          ((omb2 * g) * g)
        mhat = m / bc1;  vhat = v / bc2
        p = p - lr * mhat / (sqrt(vhat) + eps)   ((lr * mhat) / (sqrt(vhat) + eps))
    """
    decay, b1, omb1, b2, omb2, bc1, bc2, lr_f, eps_f = adamw_scalars(
        params, grads, state, lr, beta1, beta2, eps, weight_decay)

    p, g, m, v = params.data, grads.data, state.m.data, state.v.data  # [P] each
    mask = params.decay_mask()  # [P] bool: the decayed weight matrices
    p[mask] = p[mask] * decay  # [P_decayed]
    m[...] = b1 * m + omb1 * g  # [P]
    v[...] = b2 * v + omb2 * g * g  # [P]
    mhat = m / bc1  # [P]
    vhat = v / bc2  # [P]
    p[...] = p - lr_f * mhat / (np.sqrt(vhat) + eps_f)  # [P]


# --- learning-rate schedule -------------------------------------------------
def learning_rate(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                  schedule: str = "constant", min_lr: float = 0.0) -> float:
    """The learning rate for (0-based) `step`, a pure function (SPEC §optimiser).

    Computed in float64 (adamw_step rounds it to float32 once):
        step < warmup_steps:  base_lr * step / warmup_steps      (step 0 -> 0.0)
        constant:             base_lr
        cosine:               progress = (step - warmup) / max(1, total - warmup)
                              progress >= 1: min_lr exactly
                              else base_lr - 0.5 * (base_lr - min_lr) * (1 - cos(pi * progress)),
                              clamped to [min_lr, base_lr] (progress 0 gives base_lr exactly)
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"learning_rate: step must be a non-negative int, got {step!r}")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
        raise ValueError(f"learning_rate: warmup_steps must be a non-negative int, got {warmup_steps!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 0:
        raise ValueError(f"learning_rate: total_steps must be a non-negative int, got {total_steps!r}")
    base_lr, min_lr = float(base_lr), float(min_lr)
    if not (math.isfinite(base_lr) and base_lr >= 0.0):
        raise ValueError(f"learning_rate: base_lr must be a non-negative finite number, got {base_lr!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"learning_rate: schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "cosine" and not (math.isfinite(min_lr) and 0.0 <= min_lr <= base_lr):
        raise ValueError(f"learning_rate: min_lr must be in [0, base_lr={base_lr}], got {min_lr!r}")
    step, warmup_steps, total_steps = int(step), int(warmup_steps), int(total_steps)
    if step < warmup_steps:
        return base_lr * step / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if progress >= 1.0:
        return min_lr
    # written from base_lr down, so that progress 0 gives base_lr exactly
    value = base_lr - 0.5 * (base_lr - min_lr) * (1.0 - math.cos(math.pi * progress))
    return min(base_lr, max(min_lr, value))
