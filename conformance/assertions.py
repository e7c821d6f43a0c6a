"""Assertion helpers that write the whole message: what was compared, the
metric against its limit (and the fraction of the limit used), the worst
index with both values, and the context (implementation, preset, B, T, seed).

Which metric for which quantity is SPEC §tolerances; the limits live in
conformance/tolerances.py.
"""
from __future__ import annotations

import numpy as np


def _context(context: dict | None) -> str:
    if not context:
        return ""
    return " [" + ", ".join(f"{k}={v}" for k, v in context.items()) + "]"


def _worst(got: np.ndarray, want: np.ndarray, err: np.ndarray) -> str:
    if err.size == 0:
        return ""
    flat = int(np.nanargmax(np.where(np.isnan(err), np.inf, err)))
    idx = np.unravel_index(flat, err.shape) if err.ndim else ()
    return (f"; worst at index {tuple(int(i) for i in idx)}: got {np.asarray(got)[idx].item()!r}, "
            f"expected {np.asarray(want)[idx].item()!r}")


def _check_shapes(name, got, want, context):
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape} != expected {want.shape}{_context(context)}")


def _compared(name, got, want, context, finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """got and want as float64 arrays of one shape; with `finite`, AssertionError at
    got's first non-finite value (a metric would hide where it is)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    _check_shapes(name, got, want, context)
    if finite and not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0]
        raise AssertionError(f"{name}: non-finite value at index {tuple(int(i) for i in bad)}{_context(context)}")
    return got, want


def assert_allclose_rel(name: str, got, want, rtol: float, context: dict | None = None,
                        atol: float = 0.0) -> None:
    """max |got - want| / max(|want|, atol-floor) <= rtol, elementwise."""
    got, want = _compared(name, got, want, context)
    denom = np.maximum(np.abs(want), atol if atol > 0 else np.finfo(np.float64).tiny)
    err = np.abs(got - want) / denom
    worst = float(err.max()) if err.size else 0.0
    if not worst <= rtol:
        raise AssertionError(
            f"{name}: max relative error {worst:.3e} > limit {rtol:.1e} "
            f"({worst / rtol:.1f}x the limit){_worst(got, want, err)}{_context(context)}"
        )


def assert_rel_norm(name: str, got, want, limit: float, context: dict | None = None,
                    scale: float | None = None, scale_name: str | None = None) -> float:
    """||got - want|| / ||want|| <= limit (SPEC §tolerances gradient metric). Returns the metric.

    `scale` replaces ||want|| as the denominator for a tensor that is zero in
    exact arithmetic (its computed value is rounding noise, so its own norm is
    no scale): e.g. the attention k.bias gradient against the k.weight
    gradient's norm (SPEC §tolerances); `scale_name` says what it is."""
    got, want = _compared(name, got, want, context, finite=False)  # a non-finite got fails the metric
    diff = got - want
    if scale is None:
        denom, label = float(np.linalg.norm(want)), "||expected||"
    else:
        denom, label = float(scale), scale_name or "scale"
    metric = float(np.linalg.norm(diff)) / denom if denom > 0 else float(np.linalg.norm(diff))
    if not metric <= limit:
        raise AssertionError(
            f"{name}: ||got - expected|| / {label} = {metric:.3e} > limit {limit:.1e} "
            f"({metric / limit:.1f}x the limit){_worst(got, want, np.abs(diff))}{_context(context)}"
        )
    return metric



def assert_grads_close(got, want, limit: float, context: dict | None = None, prefix: str = "") -> None:
    """Every gradient tensor of `want` (a Params) by assert_rel_norm; the
    attention k.bias gradient, zero in exact arithmetic (SPEC §backward), against
    the norm of the same block's k.weight gradient (SPEC §tolerances)."""
    for name in want.names():
        scale = {}
        if name.endswith(".k.bias"):
            weight = name[: -len("bias")] + "weight"
            scale = dict(scale=float(np.linalg.norm(want[weight])), scale_name=f"||{weight}||")
        assert_rel_norm(prefix + name, got[name], want[name], limit, context, **scale)

def assert_scaled_max(name: str, got, want, limit: float, context: dict | None = None) -> float:
    """max|got - want| / max|want| <= limit: the SPEC §tolerances metric for
    logits (and any tensor whose entries cross zero). Elementwise relative
    error explodes for entries near 0, where float32 rounding of a sum is
    relative to the summands, not to the result; scaling by the largest
    magnitude measures the error on the scale the values live on, and unlike a
    norm-relative metric it still sees one bad entry among many. Returns the metric."""
    got, want = _compared(name, got, want, context)
    scale = float(np.abs(want).max()) if want.size else 0.0
    diff = np.abs(got - want)
    metric = float(diff.max()) / scale if scale > 0 else (float(diff.max()) if diff.size else 0.0)
    if not metric <= limit:
        raise AssertionError(
            f"{name}: max|got - expected| / max|expected| = {metric:.3e} > limit {limit:.1e} "
            f"({metric / limit:.1f}x the limit; max|expected| = {scale:.4g}){_worst(got, want, diff)}"
            f"{_context(context)}"
        )
    return metric


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between float32 (or float64) arrays,
    as uint64: the number of representable values from one to the other
    (-0.0 and +0.0 are 0 apart; the largest distance, -inf to +inf in
    float64, is just below 2^64, so no integer type narrower than uint64
    holds it). Pure integer arithmetic: no overflow, no warning."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    uint = np.uint32 if a.dtype == np.float32 else np.uint64
    bits = 8 * a.dtype.itemsize
    sign = np.uint64(1) << np.uint64(bits - 1)

    def ordered(x):
        # sign-magnitude -> an unsigned line where order follows the value:
        # negatives below `sign` (reflected), positives from `sign` up
        u = x.view(uint).astype(np.uint64)
        magnitude = u & (sign - np.uint64(1))
        return np.where((u & sign) != 0, sign - magnitude, sign + magnitude)

    ua, ub = ordered(a), ordered(b)
    return np.where(ua >= ub, ua - ub, ub - ua)


def assert_within_ulp(name: str, got, want, limit: int, context: dict | None = None) -> None:
    """Same float dtype and shape, every element within `limit` units in the last place (+0 and -0 are 0
    apart; a NaN matches only a NaN); on failure the largest distance, how many elements exceed the limit
    and the worst index."""
    got = np.asarray(got)
    want = np.asarray(want)
    _check_shapes(name, got, want, context)
    if got.dtype != want.dtype or got.dtype.kind != "f":
        raise AssertionError(f"{name}: dtype {got.dtype}, expected {want.dtype} (a ulp comparison needs one "
                             f"float dtype){_context(context)}")
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    dist = np.where(nan_got & nan_want, 0, ulp_distance(got, want)).astype(np.float64)
    dist[nan_got != nan_want] = np.inf
    worst = float(dist.max(initial=0))
    if worst > limit:
        shown = "a NaN against a number" if worst == np.inf else f"{int(worst)} ulp"
        raise AssertionError(f"{name}: {shown} > limit {limit:g} ulp, {int(np.count_nonzero(dist > limit))} "
                             f"elements over{_worst(got, want, dist)}{_context(context)}")


def assert_bitwise(name: str, got, want, context: dict | None = None) -> None:
    """Identical bytes; on failure report how many elements differ and the ULP distance."""
    got = np.asarray(got)
    want = np.asarray(want)
    _check_shapes(name, got, want, context)
    if got.dtype != want.dtype:
        raise AssertionError(f"{name}: dtype {got.dtype} != expected {want.dtype}{_context(context)}")
    if got.tobytes() == want.tobytes():
        return
    # bytes per element; 1-d first: numpy cannot view a 0-d array as bytes of another size
    g_bytes = got.reshape(-1).view(np.uint8).reshape(got.size, -1)
    w_bytes = want.reshape(-1).view(np.uint8).reshape(want.size, -1)
    differ = (g_bytes != w_bytes).any(axis=-1).reshape(got.shape)
    count = int(np.count_nonzero(differ))
    msg = f"{name}: not bitwise equal: {count} of {got.size} elements differ"
    if got.dtype.kind == "f":
        ulps = ulp_distance(got, want).reshape(got.shape)
        msg += f", max {int(ulps.max())} ulp" + _worst(got, want, ulps.astype(np.float64))
    else:
        msg += _worst(got, want, differ.astype(np.float64))
    raise AssertionError(msg + _context(context))


def assert_bytes_equal(name: str, got: bytes, want: bytes, context: dict | None = None) -> None:
    """Identical byte strings; on failure name the first differing offset."""
    if got == want:
        return
    n = min(len(got), len(want))
    first = next((i for i in range(n) if got[i] != want[i]), n)
    raise AssertionError(
        f"{name}: bytes differ at offset {first} (lengths {len(got)} vs expected {len(want)}): "
        f"got {got[first:first + 16]!r}, expected {want[first:first + 16]!r}{_context(context)}"
    )
