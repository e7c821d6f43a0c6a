"""Where a training step's time goes (SPEC §step-benchmark), for any implementation:
the four phases (forward + loss, backward, clip, AdamW), and, for an
implementation whose matmuls go through one function (`fast._blas.matmuls_into`,
found as `<impl>._blas.matmuls_into`, or `matmul_into` in older trees, and
rebound in every module of the package that imported it), the time inside those matmuls: attention products
(batched over (batch, head)) apart from the 2-D ones, with their FLOPs, so
"GEMM vs the rest" is measured, not guessed.

Measured by `bench_components.py::test_step_where_time_goes` (one cell each)
and rendered by the report:

    feste bench --components -- -k "where_time_goes and small-8x128"

The wrappers cost ~1 us per matmul (about 100 per step); phases are timed
per step around the contract calls, so the parts add up to the step.
"""
from __future__ import annotations

import contextlib
import importlib
import statistics
import sys
import time

from .harness import LEARNING_RATE, MAX_NORM, TrainStep

PHASES = ("forward", "backward", "clip", "adamw")


def _flops(p) -> int:
    """Multiply-adds x 2 of one product (a, b, out, ...) or chain (out, ((a, b), ...)):
    full products, as SPEC §flops counts (a causal one does ~half)."""
    if len(p) == 2:  # fast._blas.Chain
        out, pairs = p
        return sum(2 * out.size * a.shape[-1] for a, _ in pairs)
    return 2 * p[2].size * p[0].shape[-1]


@contextlib.contextmanager
def timed_matmuls(impl, acc: dict):
    """Rebind the one function `<impl>._blas` runs every product through
    (`matmuls_into`, a launch of several products; else `matmul_into`) in the
    package's modules to a timing wrapper for the duration; yields False when
    the implementation has neither."""
    name = impl.__name__.split(".")[0]
    try:
        blas = importlib.import_module(f"{name}._blas")
    except ImportError:
        yield False
        return
    fname = "matmuls_into" if hasattr(blas, "matmuls_into") else "matmul_into"
    original = getattr(blas, fname, None)
    if original is None:
        yield False
        return
    holders = [m for key, m in list(sys.modules.items())
               if m is not None and (key == name or key.startswith(name + "."))
               and getattr(m, fname, None) is original]

    def record(products, seconds):
        kind = "attention gemm" if products[0][-2 if len(products[0]) == 2 else 2].ndim > 2 else "linear gemm"
        acc[kind] = acc.get(kind, 0.0) + seconds
        acc[kind + " flops"] = acc.get(kind + " flops", 0) + sum(_flops(p) for p in products)

    if fname == "matmuls_into":
        def wrapper(products, *args, **kw):
            start = time.perf_counter()
            result = original(products, *args, **kw)
            record(products, time.perf_counter() - start)
            return result
    else:
        def wrapper(a, b, out, **kw):
            start = time.perf_counter()
            result = original(a, b, out, **kw)
            record(((a, b, out),), time.perf_counter() - start)
            return result

    for m in holders:
        setattr(m, fname, wrapper)
    try:
        yield True
    finally:
        for m in holders:
            setattr(m, fname, original)


def profile(impl, preset: str, B: int, T: int, steps: int = 5, warmup: int = 2) -> dict:
    """Median seconds per step of each phase and of the matmuls inside forward
    and backward, over `steps` steps; GEMM FLOPs per step."""
    step = TrainStep(impl, impl.preset(preset), B, T, warmup=warmup)
    per_step: list[dict] = []
    with timed_matmuls(impl, {}) as has_gemm:
        pass
    for _ in range(steps):
        acc: dict = {}
        with timed_matmuls(impl, acc):
            t0 = time.perf_counter()
            _logits, _loss, cache = impl.forward(step.params, step.x, step.y)
            t1 = time.perf_counter()
            grads = impl.backward(step.params, cache)
            t2 = time.perf_counter()
        impl.clip_grad_norm(grads, MAX_NORM)
        t3 = time.perf_counter()
        impl.adamw_step(step.params, grads, step.state, LEARNING_RATE)
        t4 = time.perf_counter()
        del cache, grads, _logits
        acc.update(forward=t1 - t0, backward=t2 - t1, clip=t3 - t2, adamw=t4 - t3, step=t4 - t0)
        per_step.append(acc)
    keys = sorted({k for s in per_step for k in s})
    out = {k: statistics.median(s.get(k, 0.0) for s in per_step) for k in keys}
    out["has_gemm"] = has_gemm
    if has_gemm:
        out["gemm"] = out.get("linear gemm", 0.0) + out.get("attention gemm", 0.0)
        out["rest"] = out["step"] - out["gemm"]
    return out
